//!include row_lanes.wgsl
// First level of the patch-embedding weight gradient
//   dW[c, ch, dy, dx] = Σ_{b, i, j} dOut[b, i, j, c] · images[b, i·p+dy, j·p+dx, ch],
// a contraction over all B·(H/p)·(W/p) output pixels, on the row-lanes skeleton with a pixel as
// the row and one tap (ch, dy, dx) per workgroup y: partial[chunk, c, tap]. sum_slices.wgsl adds
// the chunks.

struct Params {
  pixels: u32, // B·(H/p)·(W/p)
  H: u32,
  W: u32,
  C: u32,
  p: u32,
  pixelsPerChunk: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias images_t = f32;
alias dOut_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> images: array<images_t>;
@group(0) @binding(2) var<storage, read> dOut: array<dOut_t>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let p = params.p;
  let taps = 3u * p * p;
  let c = laneChannel(wid, lid);
  let tap = wid.y; // (ch·p + dy)·p + dx
  let ch = tap / (p * p);
  let dy = (tap / p) % p;
  let dx = tap % p;
  let Wp = params.W / p;
  let Hp = params.H / p;
  let pixels = laneRows(wid.z, params.pixelsPerChunk, params.pixels, lid);
  var sum = 0.0;
  if (c < params.C) {
    for (var pixel = pixels.x; pixel < pixels.y; pixel += WG_ROW_LANES) {
      let j = pixel % Wp;
      let i = (pixel / Wp) % Hp;
      let b = pixel / (Wp * Hp);
      let image = f32(images[((b * params.H + i * p + dy) * params.W + j * p + dx) * 3u + ch]);
      sum += image * f32(dOut[pixel * params.C + c]);
    }
  }
  let total = sumRowLanes(vec4<f32>(sum, 0.0, 0.0, 0.0), lid);
  if (lid.y == 0u && c < params.C) {
    partial[(wid.z * params.C + c) * taps + tap] = total.x;
  }
}
