// Depthwise k×k conv, stride 1, 'same' zero padding: the ConvMixer's spatial mixing, one filter
// per channel. out[b, y, x, c] = Σ_{ty, tx} in[b, y+ty−pad, x+tx−pad, c] · w[ty, tx, c].
// The input gradient is the same conv with the kernel flipped (FLIP) added into dx (ACCUMULATE:
// the residual's gradient is already there).
// Each thread computes 4 vertically adjacent outputs of one channel: it walks the k+3 input rows
// they share once, so an input value is loaded once for up to 4 taps (k+3 instead of 4k rows).
// Consecutive threads take consecutive channels, so every load is a coalesced row read (NHWC).

struct Params {
  n: u32, // threads: B·⌈H/4⌉·W·C
  H: u32,
  W: u32,
  C: u32,
  k: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias x_t = f32;
alias out_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;

override FLIP: bool = false;
override ACCUMULATE: bool = false;

const ROWS = WG_DEPTHWISE_ROWS;
const_assert ROWS == 4u; // the 4 rows' sums are one vec4

/** w[ty, tx, c] (flipped with FLIP), or 0 when row ty is outside the kernel. */
fn tap(ty: i32, tx: u32, c: u32) -> f32 {
  let k = params.k;
  if (ty < 0 || ty >= i32(k)) {
    return 0.0;
  }
  var index = u32(ty) * k + tx;
  if (FLIP) {
    index = k * k - 1u - index;
  }
  return weight[index * params.C + c];
}

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (o >= params.n) {
    return;
  }
  let C = params.C;
  let H = params.H;
  let W = params.W;
  let k = params.k;
  let pad = i32(k / 2u);
  let c = o % C;
  let pixel = o / C;
  let xo = i32(pixel % W);
  let yBlocks = (H + ROWS - 1u) / ROWS;
  let y0 = i32(((pixel / W) % yBlocks) * ROWS);
  let b = pixel / (W * yBlocks);
  var acc = vec4<f32>();
  for (var yi = max(0, y0 - pad); yi < min(i32(H), y0 + i32(ROWS) + pad); yi++) {
    let rowStart = (b * H + u32(yi)) * W;
    let ty = yi - y0 + pad; // the tap row for output row y0; y0 + r uses ty − r
    for (var tx = 0u; tx < k; tx++) {
      let xi = xo + i32(tx) - pad;
      if (xi < 0 || xi >= i32(W)) {
        continue;
      }
      let v = f32(x[(rowStart + u32(xi)) * C + c]);
      acc += v * vec4<f32>(tap(ty, tx, c), tap(ty - 1, tx, c), tap(ty - 2, tx, c), tap(ty - 3, tx, c));
    }
  }
  let first = ((b * H + u32(y0)) * W + u32(xo)) * C + c;
  for (var r = 0u; r < ROWS; r++) {
    if (u32(y0) + r < H) {
      let at = first + r * W * C;
      var v = acc[r];
      if (ACCUMULATE) {
        v += f32(out[at]);
      }
      out[at] = out_t(v);
    }
  }
}
