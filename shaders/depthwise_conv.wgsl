// Depthwise k×k conv, stride 1, 'same' zero padding: the ConvMixer's spatial mixing, one filter
// per channel. out[b, y, x, c] = Σ_{ty, tx} in[b, y+ty−pad, x+tx−pad, c] · w[ty, tx, c].
// The input gradient is the same conv with the kernel flipped (FLIP) added into dx (ACCUMULATE,
// the residual's gradient is already there). One thread per output element; consecutive
// threads take consecutive channels, so every tap is a coalesced row read (NHWC).

struct Params {
  n: u32, // B·H·W·C
  H: u32,
  W: u32,
  C: u32,
  k: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override FLIP: bool = false;
override ACCUMULATE: bool = false;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * groups.x + wid.x) * 256u + lid;
  if (o >= params.n) {
    return;
  }
  let C = params.C;
  let k = params.k;
  let pad = i32(k / 2u);
  let c = o % C;
  let pixel = o / C;
  let xo = i32(pixel % params.W);
  let yo = i32((pixel / params.W) % params.H);
  let b = pixel / (params.W * params.H);
  var sum = 0.0;
  for (var ty = 0u; ty < k; ty++) {
    let yi = yo + i32(ty) - pad;
    if (yi < 0 || yi >= i32(params.H)) {
      continue;
    }
    let rowStart = (b * params.H + u32(yi)) * params.W;
    for (var tx = 0u; tx < k; tx++) {
      let xi = xo + i32(tx) - pad;
      if (xi < 0 || xi >= i32(params.W)) {
        continue;
      }
      var tap = ty * k + tx;
      if (FLIP) {
        tap = k * k - 1u - tap;
      }
      sum += x[(rowStart + u32(xi)) * C + c] * weight[tap * C + c];
    }
  }
  if (ACCUMULATE) {
    sum += out[o];
  }
  out[o] = sum;
}
