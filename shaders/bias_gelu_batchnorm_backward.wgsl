//!include gelu.wgsl
//!include row_lanes.wgsl
// Second pass of biasGeluBatchNormBackward, on the row-lanes skeleton. Every workgroup first adds
// the chunks of batchnorm_backward_sums.wgsl for its channels, or the one chunk sum_slices.wgsl made
// of the per-tile sums of a conv's BACKWARD_SUMS epilogue (gemm.wgsl, depthwise_conv.wgsl); its
// lanes take every WG_ROW_LANES-th chunk; the partials are a few KB, read from cache, so no
// separate pass adds them: sums = (Σ dOut, Σ dOut·x̂), which the workgroups of chunk 0 write out as dBeta and dGamma.
// Then, for its chunk of rows,
//   du = gamma·invStd·(dOut − Σ dOut/N − x̂·Σ dOut·x̂/N),  dz = du·GELU'(z + bias),
// and the first level of dBias = Σ dz: dzPartial[chunk, c]; sum_slices.wgsl adds those chunks.
// dOut and dz may be the same buffer (both bound read_write; each element is read before it is
// written, by the same thread).

struct Params {
  R: u32,
  C: u32,
  rowsPerChunk: u32,
  chunks: u32, // of sumPartial
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias z_t = f32;
alias dOut_t = f32;
alias dz_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> z: array<z_t>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> saved: array<f32>; // (mean[C], invStd[C])
@group(0) @binding(5) var<storage, read> sumPartial: array<f32>; // [chunks, 2, C]: (Σ dOut, Σ dOut·x̂)
@group(0) @binding(6) var<storage, read_write> dOut: array<dOut_t>;
@group(0) @binding(7) var<storage, read_write> dz: array<dz_t>;
@group(0) @binding(8) var<storage, read_write> dzPartial: array<f32>;
@group(0) @binding(9) var<storage, read_write> dGamma: array<f32>;
@group(0) @binding(10) var<storage, read_write> dBeta: array<f32>;

/** (Σ dOut, Σ dOut·x̂) of channel c over the whole batch, in every lane (every thread must call it). */
fn channelSums(c: u32, lid: vec3<u32>) -> vec2<f32> {
  let C = params.C;
  var sum = vec4<f32>();
  if (c < C) {
    for (var chunk = lid.y; chunk < params.chunks; chunk += WG_ROW_LANES) {
      sum.x += sumPartial[chunk * 2u * C + c];
      sum.y += sumPartial[(chunk * 2u + 1u) * C + c];
    }
  }
  return sumRowLanes(sum, lid).xy;
}

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = laneChannel(wid, lid);
  let rows = laneRows(wid.z, params.rowsPerChunk, params.R, lid);
  let sums = channelSums(c, lid);
  if (wid.z == 0u && lid.y == 0u && c < C) {
    dBeta[c] = sums.x;
    dGamma[c] = sums.y;
  }
  var sumDz = 0.0;
  if (c < C) {
    let b = bias[c];
    let mean = saved[c];
    let invStd = saved[C + c];
    let scale = gamma[c] * invStd;
    let meanDOut = sums.x / f32(params.R);
    let meanDOutXhat = sums.y / f32(params.R);
    for (var r = rows.x; r < rows.y; r += WG_ROW_LANES) {
      let i = r * C + c;
      let x = f32(z[i]) + b;
      let xhat = (gelu(x) - mean) * invStd;
      let g = scale * (f32(dOut[i]) - meanDOut - xhat * meanDOutXhat) * geluGrad(x);
      dz[i] = dz_t(g);
      sumDz += g;
    }
  }
  let total = sumRowLanes(vec4<f32>(sumDz, 0.0, 0.0, 0.0), lid);
  if (lid.y == 0u && c < C) {
    dzPartial[wid.z * C + c] = total.x;
  }
}
