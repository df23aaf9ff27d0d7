//!include row_lanes.wgsl
// First level of the depthwise weight gradient dW[ty, tx, c] = Σ_{b, y, x} x[b, y+ty−pad,
// x+tx−pad, c] · dOut[b, y, x, c], a reduction over all B·H·W positions.
// On the row-lanes skeleton with an image row (b, y) as the row: workgroup (channel block,
// (ty, tap group), chunk) owns WG_DEPTHWISE_TAPS = 8 horizontally adjacent taps (ty, 8q..8q+7),
// a whole kernel row up to k = 8; walking a row, a thread keeps the 8 input values its taps see in
// a sliding window (two vec4s), so each step loads one input and one dOut value for up to 8
// multiply-adds, and the k = 5 kernel reads x and dOut once per kernel row (k times), not twice.
// partial[chunk, tap, c]; sum_slices.wgsl adds the chunks, so no thread loops over all of B·H·W.

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

const_assert WG_DEPTHWISE_TAPS == 8u; // the sliding window is two vec4s

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
  let groups = (k + 7u) / 8u;
  let c = laneChannel(wid, lid);
  let ty = wid.y / groups;
  let tx0 = (wid.y % groups) * 8u;
  let dy = i32(ty) - pad;
  let dx = i32(tx0) - pad; // input column of tap tx0 for output column 0
  let rows = laneRows(wid.z, params.rowsPerChunk, params.rows, lid);
  let W = params.W;
  var acc = vec4<f32>(); // taps tx0..tx0+3
  var accHigh = vec4<f32>(); // taps tx0+4..tx0+7
  if (c < C) {
    for (var row = rows.x; row < rows.y; row += WG_ROW_LANES) {
      let y = row % params.H;
      let yi = i32(y) + dy;
      if (yi < 0 || yi >= i32(params.H)) {
        continue;
      }
      let inRow = (row - y + u32(yi)) * W;
      let outRow = row * W;
      var window = vec4<f32>(
        input(inRow, dx, c), input(inRow, dx + 1, c), input(inRow, dx + 2, c), input(inRow, dx + 3, c),
      );
      var windowHigh = vec4<f32>(input(inRow, dx + 4, c), input(inRow, dx + 5, c), input(inRow, dx + 6, c), 0.0);
      for (var xo = 0u; xo < W; xo++) {
        windowHigh.w = input(inRow, i32(xo) + dx + 7, c);
        let g = f32(dOut[(outRow + xo) * C + c]);
        acc += window * g;
        accHigh += windowHigh * g;
        window = vec4<f32>(window.yzw, windowHigh.x);
        windowHigh = windowHigh.yzww;
      }
    }
  }
  let sum = sumRowLanes(acc, lid);
  let sumHigh = sumRowLanes(accHigh, lid);
  if (lid.y == 0u && c < C) {
    for (var j = 0u; j < 8u; j++) {
      if (tx0 + j < k) {
        partial[(wid.z * k * k + ty * k + tx0 + j) * C + c] = select(sumHigh[j % 4u], sum[j % 4u], j < 4u);
      }
    }
  }
}
