//!include gelu.wgsl
// First pass of biasGeluBatchNormBackward: per-channel Σ dOut (= dBeta) and Σ dOut·x̂ (= dGamma),
// x̂ = (GELU(z + bias) − mean)·invStd, over a chunk of rows of [N, C]. Workgroup (x, chunk):
// 64 channels × rowsPerChunk rows, 4 lanes over every 4th row, summed in workgroup memory:
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

var<workgroup> laneDOut: array<f32, 256>;
var<workgroup> laneDOutXhat: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = wid.x * 64u + lid.x;
  let start = wid.z * params.rowsPerChunk;
  let end = min(params.R, start + params.rowsPerChunk);
  var sumDOut = 0.0;
  var sumDOutXhat = 0.0;
  if (c < C) {
    let b = bias[c];
    let mean = saved[c];
    let invStd = saved[C + c];
    for (var r = start + lid.y; r < end; r += 4u) {
      let d = f32(dOut[r * C + c]);
      sumDOut += d;
      sumDOutXhat += d * (gelu(f32(z[r * C + c]) + b) - mean) * invStd;
    }
  }
  let slot = lid.y * 64u + lid.x;
  laneDOut[slot] = sumDOut;
  laneDOutXhat[slot] = sumDOutXhat;
  workgroupBarrier();
  if (lid.y == 0u && c < C) {
    partial[wid.z * 2u * C + c] = laneDOut[lid.x] + laneDOut[64u + lid.x] + laneDOut[128u + lid.x] +
      laneDOut[192u + lid.x];
    partial[(wid.z * 2u + 1u) * C + c] = laneDOutXhat[lid.x] + laneDOutXhat[64u + lid.x] +
      laneDOutXhat[128u + lid.x] + laneDOutXhat[192u + lid.x];
  }
}
