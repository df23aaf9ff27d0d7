// Patch embedding (the stem): a conv with kernel p and stride p, so each output pixel sees its
// own p×p×3 patch. out[b, i, j, c] = Σ_{ch, dy, dx} images[b, i·p+dy, j·p+dx, ch] · W[c, ch, dy, dx].
// One thread per output element (consecutive threads: consecutive channels of one pixel, which
// share the patch reads); the contraction is only 3·p² long.

struct Params {
  n: u32, // B·(H/p)·(W/p)·C
  H: u32,
  W: u32,
  C: u32,
  p: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias images_t = f32;
alias out_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> images: array<images_t>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (o >= params.n) {
    return;
  }
  let p = params.p;
  let Wp = params.W / p;
  let Hp = params.H / p;
  let c = o % params.C;
  let pixel = o / params.C;
  let j = pixel % Wp;
  let i = (pixel / Wp) % Hp;
  let b = pixel / (Wp * Hp);
  var sum = 0.0;
  for (var dy = 0u; dy < p; dy++) {
    let rowStart = ((b * params.H + i * p + dy) * params.W + j * p) * 3u;
    for (var dx = 0u; dx < p; dx++) {
      for (var ch = 0u; ch < 3u; ch++) {
        sum += f32(images[rowStart + dx * 3u + ch]) * weight[((c * 3u + ch) * p + dy) * p + dx];
      }
    }
  }
  out[o] = out_t(sum);
}
