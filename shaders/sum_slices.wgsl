//!include slice_lanes.wgsl
// Second level of every two-level reduction, a column sum of the [slices, len] partials:
//   out[i] (+)= Σ_z partial[z·len + i] (+ bias[i % S]),  i < len.
// The partials are split-K products of gemm.wgsl (len = R·S, a few to tens of slices) or
// per-chunk sums of the row reductions (len = a few C, hundreds of slices); the lanes and their
// tree are slice_lanes.wgsl's. Also, with one slice, the converting copy that uploads f16 tensors.

struct Params {
  len: u32,
  slices: u32,
  S: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias out_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override LANES: u32 = 16u; // 1, 2, 4, ..., 256

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let at = sliceLane(wid, groups, lid);
  let i = at.x;
  var sum = sumSliceLanes(i, at.y, lid, params.len, params.slices);
  if (at.y == 0u && i < params.len) {
    if (HAS_BIAS) {
      sum += bias[i % params.S];
    }
    if (ACCUMULATE) {
      sum += f32(out[i]);
    }
    out[i] = out_t(sum);
  }
}
