// First level of the depthwise weight gradient dW[ty, tx, c] = Σ_{b, y, x} x[b, y+ty−pad,
// x+tx−pad, c] · dOut[b, y, x, c], a reduction over all B·H·W positions.
// Workgroup (channel block, (ty, tap quad), chunk) owns 64 channels × 4 horizontally adjacent
// taps (ty, 4q..4q+3) × one chunk of image rows (b, y). Its 4 lanes of 64 threads take every 4th
// row; walking a row, a thread keeps the 4 input values its taps see in a sliding window, so each
// step loads one input and one dOut value for 4 multiply-adds. The lanes add up in workgroup
// memory: partial[chunk, tap, c]; sum_slices.wgsl adds the chunks, so no thread loops over all
// of B·H·W.

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

var<workgroup> lanes: array<vec4<f32>, 256>;

/** x[row, column, c], or 0 outside the image's columns. */
fn input(rowStart: u32, column: i32, c: u32) -> f32 {
  if (column < 0 || column >= i32(params.W)) {
    return 0.0;
  }
  return f32(x[(rowStart + u32(column)) * params.C + c]);
}

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let k = params.k;
  let pad = i32(k / 2u);
  let quads = (k + 3u) / 4u;
  let c = wid.x * 64u + lid.x;
  let ty = wid.y / quads;
  let tx0 = (wid.y % quads) * 4u;
  let dy = i32(ty) - pad;
  let dx = i32(tx0) - pad; // input column of tap tx0 for output column 0
  let start = wid.z * params.rowsPerChunk;
  let end = min(params.rows, start + params.rowsPerChunk);
  let W = params.W;
  var acc = vec4<f32>();
  if (c < C) {
    for (var row = start + lid.y; row < end; row += 4u) {
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
  lanes[lid.y * 64u + lid.x] = acc;
  workgroupBarrier();
  if (lid.y == 0u && c < C) {
    let sum = lanes[lid.x] + lanes[64u + lid.x] + lanes[128u + lid.x] + lanes[192u + lid.x];
    for (var j = 0u; j < 4u; j++) {
      if (tx0 + j < k) {
        partial[(wid.z * k * k + ty * k + tx0 + j) * C + c] = sum[j];
      }
    }
  }
}
