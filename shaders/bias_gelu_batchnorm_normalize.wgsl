//!include gelu.wgsl
// Last pass of biasGeluBatchNormForward, one thread per element of [N, C]:
//   out = gamma·(GELU(z + bias) − mean)·invStd + beta (+ residual, the ConvMixer block's skip).
// GELU is recomputed rather than stored: one more erf is cheaper than a round trip to memory.

struct Params {
  n: u32, // N·C
  C: u32,
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
@group(0) @binding(5) var<storage, read> stats: array<f32>; // (mean[C], invStd[C])
@group(0) @binding(6) var<storage, read> residual: array<residual_t>;
@group(0) @binding(7) var<storage, read_write> out: array<out_t>;

override HAS_RESIDUAL: bool = false;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (i >= params.n) {
    return;
  }
  let c = i % params.C;
  let u = gelu(f32(z[i]) + bias[c]);
  var y = gamma[c] * (u - stats[c]) * stats[params.C + c] + beta[c];
  if (HAS_RESIDUAL) {
    y += f32(residual[i]);
  }
  out[i] = out_t(y);
}
