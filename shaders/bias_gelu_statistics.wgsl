//!include gelu.wgsl
//!include row_lanes.wgsl
// First pass of biasGeluBatchNormForward (training): u = GELU(z + bias) and its per-channel
// statistics over a chunk of rows of [N, C], in one read of z, on the row-lanes skeleton: each lane
// runs Welford's update over its rows (stable even when |mean| ≫ std), the lanes merge with Chan's
// formula: partial[chunk] = (mean[C], M2[C]). bias_gelu_batchnorm_normalize.wgsl merges the chunks.

struct Params {
  R: u32,
  C: u32,
  rowsPerChunk: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias z_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> z: array<z_t>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = laneChannel(wid, lid);
  let rows = laneRows(wid.z, params.rowsPerChunk, params.R, lid);
  var count = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  if (c < C) {
    let b = bias[c];
    for (var r = rows.x; r < rows.y; r += WG_ROW_LANES) {
      let u = gelu(f32(z[r * C + c]) + b);
      count += 1.0;
      let delta = u - mean;
      mean += delta / count;
      m2 += delta * (u - mean);
    }
  }
  let merged = mergeRowLanes(vec3<f32>(count, mean, m2), lid);
  if (lid.y == 0u && c < C) {
    partial[wid.z * 2u * C + c] = merged.y;
    partial[(wid.z * 2u + 1u) * C + c] = merged.z;
  }
}
