// First level of the depthwise weight gradient dW[ty, tx, c] = Σ_{b, y, x} x[b, y+ty−pad,
// x+tx−pad, c] · dOut[b, y, x, c], a reduction over all B·H·W positions. Workgroup
// (x, tap, chunk) owns 64 channels × one tap × one chunk of image rows (b, y); its 4 lanes take
// every 4th row and walk it, then add up in workgroup memory: partial[chunk, tap, c].
// sum_slices.wgsl adds the chunks, so no thread loops over all of B·H·W.

struct Params {
  rows: u32, // B·H
  H: u32,
  W: u32,
  C: u32,
  k: u32,
  rowsPerChunk: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dOut: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let k = params.k;
  let pad = i32(k / 2u);
  let c = wid.x * 64u + lid.x;
  let tap = wid.y;
  let dy = i32(tap / k) - pad;
  let dx = i32(tap % k) - pad;
  let start = wid.z * params.rowsPerChunk;
  let end = min(params.rows, start + params.rowsPerChunk);
  let W = i32(params.W);
  let xStart = u32(max(0, -dx)); // output columns whose shifted input is inside the image
  let xEnd = u32(min(W, W - dx));
  var sum = 0.0;
  if (c < C) {
    for (var row = start + lid.y; row < end; row += 4u) {
      let y = i32(row % params.H);
      let yi = y + dy;
      if (yi < 0 || yi >= i32(params.H)) {
        continue;
      }
      let outRow = row * params.W;
      let inRow = (row - row % params.H + u32(yi)) * params.W;
      for (var xo = xStart; xo < xEnd; xo++) {
        sum += x[(inRow + u32(i32(xo) + dx)) * C + c] * dOut[(outRow + xo) * C + c];
      }
    }
  }
  lanes[lid.y * 64u + lid.x] = sum;
  workgroupBarrier();
  if (lid.y == 0u && c < C) {
    partial[(wid.z * k * k + tap) * C + c] = lanes[lid.x] + lanes[64u + lid.x] +
      lanes[128u + lid.x] + lanes[192u + lid.x];
  }
}
