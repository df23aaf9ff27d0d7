//!include slice_lanes.wgsl
// Last pass of biasGeluBatchNormBackward: dBias[c] = Σ_chunk partial[chunk, c] (the dz sums of
// bias_gelu_batchnorm_backward.wgsl), and the channel sums the backward pass used, (Σ dOut,
// Σ dOut·x̂), written out as dBeta and dGamma: one dispatch where sum_slices.wgsl needed three.

struct Params {
  C: u32,
  chunks: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> sums: array<f32>; // (Σ dOut[C], Σ dOut·x̂[C])
@group(0) @binding(3) var<storage, read_write> dBias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dGamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> dBeta: array<f32>;

override LANES: u32 = 16u; // 1, 2, 4, ..., 256

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let at = sliceLane(wid, groups, lid);
  let c = at.x;
  let sum = sumSliceLanes(c, at.y, lid, params.C, params.chunks);
  if (at.y == 0u && c < params.C) {
    dBias[c] = sum;
    dBeta[c] = sums[c];
    dGamma[c] = sums[params.C + c];
  }
}
