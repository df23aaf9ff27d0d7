//!include gelu.wgsl
//!include row_lanes.wgsl
// First pass of biasGeluBatchNormBackward: per-channel Σ dOut (= dBeta) and Σ dOut·x̂ (= dGamma),
// x̂ = (GELU(z + bias) − mean)·invStd, over a chunk of rows of [N, C] on the row-lanes skeleton:
// partial[chunk] = (Σ dOut [C], Σ dOut·x̂ [C]); sum_slices.wgsl adds the chunks.

struct Params {
  R: u32,
  C: u32,
  rowsPerChunk: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias z_t = f32;
alias dOut_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> z: array<z_t>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> saved: array<f32>; // (mean[C], invStd[C])
@group(0) @binding(4) var<storage, read> dOut: array<dOut_t>;
@group(0) @binding(5) var<storage, read_write> partial: array<f32>;

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = laneChannel(wid, lid);
  let rows = laneRows(wid.z, params.rowsPerChunk, params.R, lid);
  var sumDOut = 0.0;
  var sumDOutXhat = 0.0;
  if (c < C) {
    let b = bias[c];
    let mean = saved[c];
    let invStd = saved[C + c];
    for (var r = rows.x; r < rows.y; r += WG_ROW_LANES) {
      let d = f32(dOut[r * C + c]);
      sumDOut += d;
      sumDOutXhat += d * (gelu(f32(z[r * C + c]) + b) - mean) * invStd;
    }
  }
  let total = sumRowLanes(vec4<f32>(sumDOut, sumDOutXhat, 0.0, 0.0), lid);
  if (lid.y == 0u && c < C) {
    partial[wid.z * 2u * C + c] = total.x;
    partial[(wid.z * 2u + 1u) * C + c] = total.y;
  }
}
