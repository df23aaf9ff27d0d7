// Second pass of biasGeluBatchNormForward. TRAINING: merges the chunks' (mean, M2) with Chan's
// formula into the batch mean and biased variance, writes stats = (mean, 1/√(var + 1e-5)) (the
// layer's `saved`) and updates the running statistics (momentum 0.1, unbiased variance) as
// torch.nn.BatchNorm2d does. A workgroup owns 16 channels; its 16 lanes merge every 16th chunk,
// then a tree in workgroup memory merges the lanes. Eval: stats from the running statistics.

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

var<workgroup> laneCount: array<f32, 256>;
var<workgroup> laneMean: array<f32, 256>;
var<workgroup> laneM2: array<f32, 256>;

/** Chan et al.: (count, mean, M2) of the union of two disjoint sets. */
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let count = a.x + b.x;
  if (b.x == 0.0) {
    return a;
  }
  let delta = b.y - a.y;
  return vec3<f32>(count, a.y + delta * b.x / count, a.z + b.z + delta * delta * a.x * b.x / count);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = wid.x * 16u + lid.x;
  if (!TRAINING) {
    if (lid.y == 0u && c < C) {
      stats[c] = runningMean[c];
      stats[C + c] = 1.0 / sqrt(runningVar[c] + 1e-5);
    }
    return;
  }
  var acc = vec3<f32>(); // (count, mean, M2)
  if (c < C) {
    for (var chunk = lid.y; chunk < params.chunks; chunk += 16u) {
      let n = f32(min(params.rowsPerChunk, params.R - chunk * params.rowsPerChunk));
      acc = merge(acc, vec3<f32>(n, partial[chunk * 2u * C + c], partial[(chunk * 2u + 1u) * C + c]));
    }
  }
  let slot = lid.y * 16u + lid.x;
  laneCount[slot] = acc.x;
  laneMean[slot] = acc.y;
  laneM2[slot] = acc.z;
  workgroupBarrier();
  for (var half = 8u; half > 0u; half /= 2u) {
    if (lid.y < half) {
      let other = slot + half * 16u;
      let merged = merge(
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
    stats[C + c] = 1.0 / sqrt(variance + 1e-5);
    runningMean[c] = 0.9 * runningMean[c] + 0.1 * mean;
    runningVar[c] = 0.9 * runningVar[c] + 0.1 * variance * count / (count - 1.0);
  }
}
