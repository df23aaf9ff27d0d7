//!include gelu.wgsl
//!include row_lanes.wgsl
// Second and last pass of biasGeluBatchNormForward, on the row-lanes skeleton:
//   out = gamma·(GELU(z + bias) − mean)·invStd + beta (+ residual, the ConvMixer block's skip).
// TRAINING: every workgroup first merges the chunks' (mean, M2) of bias_gelu_statistics.wgsl (or of
// merge_statistics.wgsl, after a conv's epilogue) for its channels with Chan's formula (its lanes
// take every WG_ROW_LANES-th chunk; the partials are a few KB, read from cache), so no separate
// finalize pass is dispatched; the workgroups of chunk 0 write saved = (mean, 1/√(var + eps))
// and update the running statistics (BATCHNORM_MOMENTUM, unbiased variance) as torch.nn.BatchNorm2d
// does. Eval: mean and var are the running statistics.
// GELU is recomputed rather than stored: one more erf is cheaper than a round trip to memory.

struct Params {
  R: u32,
  C: u32,
  rowsPerChunk: u32,
  statsRowsPerChunk: u32, // TRAINING: the statistics' chunks, of statsRowsPerChunk rows (the last short)
  statsChunks: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias z_t = f32;
alias residual_t = f32;
alias out_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> z: array<z_t>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read> partial: array<f32>; // [chunks, 2, C]: (mean, M2)
@group(0) @binding(6) var<storage, read_write> runningMean: array<f32>;
@group(0) @binding(7) var<storage, read_write> runningVar: array<f32>;
@group(0) @binding(8) var<storage, read_write> saved: array<f32>; // (mean[C], invStd[C])
@group(0) @binding(9) var<storage, read> residual: array<residual_t>;
@group(0) @binding(10) var<storage, read_write> out: array<out_t>;

override TRAINING: bool = true;
override HAS_RESIDUAL: bool = false;

/** The batch's (count, mean, M2) of channel c, valid in every lane (every thread must call it). */
fn batchStatistics(c: u32, lid: vec3<u32>) -> vec3<f32> {
  let C = params.C;
  var acc = vec3<f32>();
  if (c < C) {
    for (var chunk = lid.y; chunk < params.statsChunks; chunk += WG_ROW_LANES) {
      let n = f32(min(params.statsRowsPerChunk, params.R - chunk * params.statsRowsPerChunk));
      acc = chanMerge(acc, vec3<f32>(n, partial[chunk * 2u * C + c], partial[(chunk * 2u + 1u) * C + c]));
    }
  }
  return mergeRowLanes(acc, lid);
}

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = laneChannel(wid, lid);
  var mean = 0.0;
  var variance = 0.0;
  if (TRAINING) {
    let batch = batchStatistics(c, lid);
    mean = batch.y;
    variance = batch.z / batch.x;
    if (wid.z == 0u && lid.y == 0u && c < C) {
      saved[c] = mean;
      saved[C + c] = 1.0 / sqrt(variance + BATCHNORM_EPS);
      runningMean[c] = (1.0 - BATCHNORM_MOMENTUM) * runningMean[c] + BATCHNORM_MOMENTUM * mean;
      runningVar[c] = (1.0 - BATCHNORM_MOMENTUM) * runningVar[c] +
        BATCHNORM_MOMENTUM * variance * batch.x / (batch.x - 1.0);
    }
  } else if (c < C) {
    mean = runningMean[c];
    variance = runningVar[c];
  }
  if (c >= C) {
    return;
  }
  let b = bias[c];
  let scale = gamma[c] * (1.0 / sqrt(variance + BATCHNORM_EPS));
  let shift = beta[c];
  let rows = laneRows(wid.z, params.rowsPerChunk, params.R, lid);
  for (var r = rows.x; r < rows.y; r += WG_ROW_LANES) {
    let i = r * C + c;
    var y = (gelu(f32(z[i]) + b) - mean) * scale + shift;
    if (HAS_RESIDUAL) {
      y += f32(residual[i]);
    }
    out[i] = out_t(y);
  }
}
