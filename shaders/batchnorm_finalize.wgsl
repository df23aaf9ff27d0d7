//!include chan_merge.wgsl
// Second pass of biasGeluBatchNormForward. TRAINING: merges the chunks' (mean, M2) with Chan's
// formula into the batch mean and biased variance, writes stats = (mean, 1/√(var + eps)) (the
// layer's `saved`) and updates the running statistics (BATCHNORM_MOMENTUM, unbiased variance) as
// torch.nn.BatchNorm2d does. A workgroup owns WG_FINALIZE_CHANNELS channels; its WG_FINALIZE_LANES
// lanes merge every WG_FINALIZE_LANES-th chunk, then a tree in workgroup memory merges the lanes. Eval: stats from the running statistics.

struct Params {
  R: u32,
  C: u32,
  rowsPerChunk: u32,
  chunks: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> runningMean: array<f32>;
@group(0) @binding(3) var<storage, read_write> runningVar: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;

override TRAINING: bool = true;

const LANE_SLOTS = WG_FINALIZE_CHANNELS * WG_FINALIZE_LANES;
var<workgroup> laneCount: array<f32, LANE_SLOTS>;
var<workgroup> laneMean: array<f32, LANE_SLOTS>;
var<workgroup> laneM2: array<f32, LANE_SLOTS>;

@compute @workgroup_size(WG_FINALIZE_CHANNELS, WG_FINALIZE_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = wid.x * WG_FINALIZE_CHANNELS + lid.x;
  if (!TRAINING) {
    if (lid.y == 0u && c < C) {
      stats[c] = runningMean[c];
      stats[C + c] = 1.0 / sqrt(runningVar[c] + BATCHNORM_EPS);
    }
    return;
  }
  var acc = vec3<f32>(); // (count, mean, M2)
  if (c < C) {
    for (var chunk = lid.y; chunk < params.chunks; chunk += WG_FINALIZE_LANES) {
      let n = f32(min(params.rowsPerChunk, params.R - chunk * params.rowsPerChunk));
      acc = chanMerge(acc, vec3<f32>(n, partial[chunk * 2u * C + c], partial[(chunk * 2u + 1u) * C + c]));
    }
  }
  let slot = lid.y * WG_FINALIZE_CHANNELS + lid.x;
  laneCount[slot] = acc.x;
  laneMean[slot] = acc.y;
  laneM2[slot] = acc.z;
  workgroupBarrier();
  for (var half = WG_FINALIZE_LANES / 2u; half > 0u; half /= 2u) {
    if (lid.y < half) {
      let other = slot + half * WG_FINALIZE_CHANNELS;
      let merged = chanMerge(
        vec3<f32>(laneCount[slot], laneMean[slot], laneM2[slot]),
        vec3<f32>(laneCount[other], laneMean[other], laneM2[other]),
      );
      laneCount[slot] = merged.x;
      laneMean[slot] = merged.y;
      laneM2[slot] = merged.z;
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < C) {
    let count = laneCount[lid.x];
    let mean = laneMean[lid.x];
    let variance = laneM2[lid.x] / count;
    stats[c] = mean;
    stats[C + c] = 1.0 / sqrt(variance + BATCHNORM_EPS);
    runningMean[c] = (1.0 - BATCHNORM_MOMENTUM) * runningMean[c] + BATCHNORM_MOMENTUM * mean;
    runningVar[c] = (1.0 - BATCHNORM_MOMENTUM) * runningVar[c] +
      BATCHNORM_MOMENTUM * variance * count / (count - 1.0);
  }
}
