//!include gelu.wgsl
//!include row_lanes.wgsl
// Depthwise k×k conv, stride 1, 'same' zero padding: the ConvMixer's spatial mixing, one filter
// per channel. out[b, y, x, c] = Σ_{ty, tx} in[b, y+ty−pad, x+tx−pad, c] · w[ty, tx, c].
// The input gradient is the same conv with the kernel flipped (FLIP) added into dx (ACCUMULATE:
// the residual's gradient is already there).
// Workgroup (channel block, image b) on the row-lanes skeleton: WG_CHANNELS consecutive channels
// (consecutive threads take consecutive channels, so every load is a coalesced read, NHWC) ×
// WG_ROW_LANES lanes; lane l computes the columns l, l + WG_ROW_LANES, … of image b, 4 vertically
// adjacent outputs at a time: it walks the k+3 input rows they share once, so an input value is
// loaded once for up to 4 taps (k+3 instead of 4k rows).
//
// Epilogues for the bias-GELU-BatchNorm unit that reads out (the host fuses them where the unit
// follows the conv), one partial per image, so that unit needs no pass of its own to reduce out:
// STATISTICS: out is the unit's z; tilePartial[b] = (mean[C], M2[C]) of u = GELU(z + unitBias) as
//   stored (Welford per lane, the lanes merged with Chan's formula); merge_statistics.wgsl merges
//   the images.
// BACKWARD_SUMS: out is the unit's dOut (after the accumulation); tilePartial[b] = (Σ dOut[C],
//   Σ dOut·x̂[C]), x̂ = (GELU(z + unitBias) − mean)·invStd from the forward's saved = (mean, invStd).

struct Params {
  B: u32,
  H: u32,
  W: u32,
  C: u32,
  k: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias x_t = f32;
alias out_t = f32;
alias z_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;
@group(0) @binding(4) var<storage, read> unitBias: array<f32>;
@group(0) @binding(5) var<storage, read> z: array<z_t>; // BACKWARD_SUMS
@group(0) @binding(6) var<storage, read> saved: array<f32>; // BACKWARD_SUMS: (mean[C], invStd[C])
@group(0) @binding(7) var<storage, read_write> tilePartial: array<f32>; // [B, 2, C]

override FLIP: bool = false;
override ACCUMULATE: bool = false;
override STATISTICS: bool = false;
override BACKWARD_SUMS: bool = false;

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

/** The conv at rows y0..y0+3 of column xo of image b, channel c (rows past H are garbage). */
fn convRows(b: u32, y0: i32, xo: i32, c: u32) -> vec4<f32> {
  let C = params.C;
  let H = params.H;
  let W = params.W;
  let k = params.k;
  let pad = i32(k / 2u);
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
  return acc;
}

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let H = params.H;
  let W = params.W;
  let c = laneChannel(wid, lid);
  let b = wid.y;
  var stats = vec3<f32>(); // STATISTICS: Welford's (count, mean, M2) over this lane's outputs
  var sums = vec4<f32>(); // BACKWARD_SUMS: (Σ dOut, Σ dOut·x̂, ·, ·)
  if (c < C) {
    var bias = 0.0;
    var mean = 0.0;
    var invStd = 0.0;
    if (STATISTICS || BACKWARD_SUMS) {
      bias = unitBias[c];
    }
    if (BACKWARD_SUMS) {
      mean = saved[c];
      invStd = saved[C + c];
    }
    for (var xo = lid.y; xo < W; xo += WG_ROW_LANES) {
      for (var y0 = 0u; y0 < H; y0 += ROWS) {
        let acc = convRows(b, i32(y0), i32(xo), c);
        for (var r = 0u; r < ROWS && y0 + r < H; r++) {
          let at = ((b * H + y0 + r) * W + xo) * C + c;
          var v = acc[r];
          if (ACCUMULATE) {
            v += f32(out[at]);
          }
          let stored = out_t(v);
          out[at] = stored;
          if (STATISTICS) {
            let u = gelu(f32(stored) + bias);
            stats.x += 1.0;
            let delta = u - stats.y;
            stats.y += delta / stats.x;
            stats.z += delta * (u - stats.y);
          }
          if (BACKWARD_SUMS) {
            let xHat = (gelu(f32(z[at]) + bias) - mean) * invStd;
            sums.x += f32(stored);
            sums.y += f32(stored) * xHat;
          }
        }
      }
    }
  }
  if (STATISTICS) {
    let merged = mergeRowLanes(stats, lid);
    if (lid.y == 0u && c < C) {
      tilePartial[b * 2u * C + c] = merged.y;
      tilePartial[(b * 2u + 1u) * C + c] = merged.z;
    }
  }
  if (BACKWARD_SUMS) {
    let total = sumRowLanes(sums, lid);
    if (lid.y == 0u && c < C) {
      tilePartial[b * 2u * C + c] = total.x;
      tilePartial[(b * 2u + 1u) * C + c] = total.y;
    }
  }
}
