//!include row_lanes.wgsl
// First level of a column sum (the bias gradient Σ rows of dOut [R, C]) on the row-lanes skeleton:
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

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = laneChannel(wid, lid);
  let rows = laneRows(wid.z, params.rowsPerChunk, params.R, lid);
  var sum = 0.0;
  if (c < params.C) {
    for (var r = rows.x; r < rows.y; r += WG_ROW_LANES) {
      sum += f32(x[r * params.C + c]);
    }
  }
  let total = sumRowLanes(vec4<f32>(sum, 0.0, 0.0, 0.0), lid);
  if (lid.y == 0u && c < params.C) {
    partial[wid.z * params.C + c] = total.x;
  }
}
