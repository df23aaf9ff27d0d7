//!include row_lanes.wgsl
// First level of the depthwise weight gradient dW[ty, tx, c] = Σ_{b, y, x} x[b, y+ty−pad,
// x+tx−pad, c] · dOut[b, y, x, c], a reduction over all B·H·W positions.
// On the row-lanes skeleton with an image row (b, y) as the row: workgroup (channel block,
// (ty, tap quad), chunk) owns WG_DEPTHWISE_TAPS = 4 horizontally adjacent taps (ty, 4q..4q+3);
// walking a row, a thread keeps the 4 input values its taps see in a sliding window (a vec4), so
// each step loads one input and one dOut value for 4 multiply-adds. partial[chunk, tap, c];
// sum_slices.wgsl adds the chunks, so no thread loops over all of B·H·W.

struct Params {
  rows: u32, // B·H
  H: u32,
  W: u32,
  C: u32,
  k: u32,
  rowsPerChunk: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias x_t = f32;
alias dOut_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read> dOut: array<dOut_t>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

const_assert WG_DEPTHWISE_TAPS == 4u; // the sliding window is a vec4

/** x[row, column, c], or 0 outside the image's columns. */
fn input(rowStart: u32, column: i32, c: u32) -> f32 {
  if (column < 0 || column >= i32(params.W)) {
    return 0.0;
  }
  return f32(x[(rowStart + u32(column)) * params.C + c]);
}

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let k = params.k;
  let pad = i32(k / 2u);
  let quads = (k + 3u) / 4u;
  let c = laneChannel(wid, lid);
  let ty = wid.y / quads;
  let tx0 = (wid.y % quads) * 4u;
  let dy = i32(ty) - pad;
  let dx = i32(tx0) - pad; // input column of tap tx0 for output column 0
  let rows = laneRows(wid.z, params.rowsPerChunk, params.rows, lid);
  let W = params.W;
  var acc = vec4<f32>();
  if (c < C) {
    for (var row = rows.x; row < rows.y; row += WG_ROW_LANES) {
      let y = row % params.H;
      let yi = i32(y) + dy;
      if (yi < 0 || yi >= i32(params.H)) {
        continue;
      }
      let inRow = (row - y + u32(yi)) * W;
      let outRow = row * W;
      var window = vec4<f32>(input(inRow, dx, c), input(inRow, dx + 1, c), input(inRow, dx + 2, c), 0.0);
      for (var xo = 0u; xo < W; xo++) {
        window.w = input(inRow, i32(xo) + dx + 3, c);
        acc += window * f32(dOut[(outRow + xo) * C + c]);
        window = window.yzww;
      }
    }
  }
  let sum = sumRowLanes(acc, lid);
  if (lid.y == 0u && c < C) {
    for (var j = 0u; j < 4u; j++) {
      if (tx0 + j < k) {
        partial[(wid.z * k * k + ty * k + tx0 + j) * C + c] = sum[j];
      }
    }
  }
}
