// Second pass of biasGeluBatchNormForward, one thread per channel. TRAINING: merges the chunks'
// (mean, M2) with Chan's formula into the batch mean and biased variance, writes
// stats = (mean, 1/√(var + 1e-5)) (the layer's `saved`) and updates the running statistics
// (momentum 0.1, unbiased variance) as torch.nn.BatchNorm2d does. Eval: stats from the running
// statistics.

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

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let C = params.C;
  let c = gid.x;
  if (c >= C) {
    return;
  }
  if (!TRAINING) {
    stats[c] = runningMean[c];
    stats[C + c] = 1.0 / sqrt(runningVar[c] + 1e-5);
    return;
  }
  var count = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var chunk = 0u; chunk < params.chunks; chunk++) {
    let n = f32(min(params.rowsPerChunk, params.R - chunk * params.rowsPerChunk));
    let total = count + n;
    let delta = partial[chunk * 2u * C + c] - mean;
    mean += delta * n / total;
    m2 += partial[(chunk * 2u + 1u) * C + c] + delta * delta * count * n / total;
    count = total;
  }
  let variance = m2 / count;
  stats[c] = mean;
  stats[C + c] = 1.0 / sqrt(variance + 1e-5);
  runningMean[c] = 0.9 * runningMean[c] + 0.1 * mean;
  runningVar[c] = 0.9 * runningVar[c] + 0.1 * variance * count / (count - 1.0);
}
