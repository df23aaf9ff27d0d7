// First level of a column sum (the bias gradient Σ rows of dOut [R, C]): workgroup (x, chunk)
// owns 64 channels × one chunk of rowsPerChunk rows; its 4 lanes of 64 threads take every 4th
// row (consecutive threads read consecutive channels), then add up in workgroup memory.
// partial[chunk, c]; sum_slices.wgsl adds the chunks.

struct Params {
  R: u32,
  C: u32,
  rowsPerChunk: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias x_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * 64u + lid.x;
  let start = wid.z * params.rowsPerChunk;
  let end = min(params.R, start + params.rowsPerChunk);
  var sum = 0.0;
  if (c < params.C) {
    for (var r = start + lid.y; r < end; r += 4u) {
      sum += f32(x[r * params.C + c]);
    }
  }
  lanes[lid.y * 64u + lid.x] = sum;
  workgroupBarrier();
  if (lid.y == 0u && c < params.C) {
    partial[wid.z * params.C + c] = lanes[lid.x] + lanes[64u + lid.x] + lanes[128u + lid.x] +
      lanes[192u + lid.x];
  }
}
