// Second level of every two-level reduction, a column sum of the [slices, len] partials:
//   out[i] (+)= Σ_z partial[z·len + i] (+ bias[i % S]),  i < len.
// The partials are split-K products of gemm.wgsl (len = R·S, a few to tens of slices) or
// per-chunk sums of the row reductions (len = a few C, hundreds of slices). A workgroup of
// WG_THREADS threads owns WG_THREADS/LANES consecutive outputs; its LANES lanes take every
// LANES-th slice, then a tree in workgroup memory adds the lanes, so no thread walks hundreds of
// slices one dependent load after another, and few slices (LANES = 1) cost no tree at all.
// Also, with one slice, the converting copy that uploads f16 tensors.

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

var<workgroup> sliceLanes: array<f32, WG_THREADS>;

/** The output of thread lid and its lane: (output index, lane). */
fn sliceLane(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> vec2<u32> {
  let outputs = WG_THREADS / LANES;
  return vec2<u32>((wid.y * groups.x + wid.x) * outputs + lid % outputs, lid / outputs);
}

/** Σ_z partial[z·len + i] over the slices, valid in lane 0 (every thread must call it). */
fn sumSliceLanes(i: u32, lane: u32, lid: u32, len: u32, slices: u32) -> f32 {
  var sum = 0.0;
  if (i < len) {
    for (var z = lane; z < slices; z += LANES) {
      sum += partial[z * len + i];
    }
  }
  if (LANES > 1u) {
    let outputs = WG_THREADS / LANES;
    sliceLanes[lid] = sum;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
      if (lane < half) {
        sliceLanes[lid] += sliceLanes[lid + half * outputs];
      }
      workgroupBarrier();
    }
    sum = sliceLanes[lid % outputs];
  }
  return sum;
}

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
