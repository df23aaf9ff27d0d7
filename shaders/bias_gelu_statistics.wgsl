//!include gelu.wgsl
// First pass of biasGeluBatchNormForward (training): u = GELU(z + bias) and its per-channel
// statistics over a chunk of rows of [N, C], in one read of z. Workgroup (x, chunk) owns 64
// channels × rowsPerChunk rows; each of 4 lanes runs Welford's update over every 4th row (stable
// even when |mean| ≫ std), the lanes merge with Chan's formula: partial[chunk] = (mean[C], M2[C]).
// batchnorm_finalize.wgsl merges the chunks.

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

var<workgroup> laneCount: array<f32, 256>;
var<workgroup> laneMean: array<f32, 256>;
var<workgroup> laneM2: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = wid.x * 64u + lid.x;
  let start = wid.z * params.rowsPerChunk;
  let end = min(params.R, start + params.rowsPerChunk);
  var count = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  if (c < C) {
    let b = bias[c];
    for (var r = start + lid.y; r < end; r += 4u) {
      let u = gelu(f32(z[r * C + c]) + b);
      count += 1.0;
      let delta = u - mean;
      mean += delta / count;
      m2 += delta * (u - mean);
    }
  }
  let slot = lid.y * 64u + lid.x;
  laneCount[slot] = count;
  laneMean[slot] = mean;
  laneM2[slot] = m2;
  workgroupBarrier();
  if (lid.y == 0u && c < C) {
    for (var lane = 1u; lane < 4u; lane++) {
      let n = laneCount[lane * 64u + lid.x];
      if (n > 0.0) {
        let total = count + n;
        let delta = laneMean[lane * 64u + lid.x] - mean;
        mean += delta * n / total;
        m2 += laneM2[lane * 64u + lid.x] + delta * delta * count * n / total;
        count = total;
      }
    }
    partial[wid.z * 2u * C + c] = mean;
    partial[(wid.z * 2u + 1u) * C + c] = m2;
  }
}
