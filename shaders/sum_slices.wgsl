// Second level of every two-level reduction, a column sum of the [slices, len] partials:
//   out[i] (+)= Σ_z partial[z·len + i] (+ bias[i % S]),  i < len,
// and in the same dispatch, where the runtime held one back to join this one (a unit's dBias), a
// second plain sum outB[i] = Σ_z partialB[z·lenB + i]: the first `groups` workgroups do the first
// sum, the rest the second. The partials are split-K products of gemm.wgsl (len = R·S, a few to
// tens of slices) or per-chunk sums of the row reductions (len = a few C, hundreds of slices). A
// workgroup of WG_THREADS threads owns WG_THREADS/lanes consecutive outputs; its lanes take every
// lanes-th slice, then a tree in workgroup memory adds the lanes, so no thread walks hundreds of
// slices one dependent load after another, and few slices (lanes = 1) cost no tree at all.
// Also, with one slice, the converting copy that uploads f16 tensors.

struct Params {
  len: u32,
  slices: u32,
  S: u32,
  lanes: u32, // 1, 2, 4, ..., WG_THREADS
  groups: u32,
  lenB: u32,
  slicesB: u32,
  lanesB: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias out_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<out_t>;
@group(0) @binding(4) var<storage, read> partialB: array<f32>;
@group(0) @binding(5) var<storage, read_write> outB: array<f32>;

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

var<workgroup> sliceLanes: array<f32, WG_THREADS>;

/**
 * Σ_z partial[z·len + i] (or partialB's) over the slices, valid in every lane. `lanes` and `second`
 * are the same across the workgroup, so every thread reaches the barriers.
 */
fn sumSliceLanes(i: u32, lid: u32, len: u32, slices: u32, lanes: u32, second: bool) -> f32 {
  let outputs = WG_THREADS / lanes;
  var sum = 0.0;
  if (i < len) {
    for (var z = lid / outputs; z < slices; z += lanes) {
      if (second) {
        sum += partialB[z * len + i];
      } else {
        sum += partial[z * len + i];
      }
    }
  }
  if (lanes > 1u) {
    sliceLanes[lid] = sum;
    workgroupBarrier();
    for (var half = lanes / 2u; half > 0u; half /= 2u) {
      if (lid / outputs < half) {
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
  let w = wid.y * groups.x + wid.x;
  let second = w >= params.groups;
  let lanes = select(params.lanes, params.lanesB, second);
  let outputs = WG_THREADS / lanes;
  let i = select(w, w - params.groups, second) * outputs + lid % outputs;
  let first = lid < outputs;
  if (second) {
    let sum = sumSliceLanes(i, lid, params.lenB, params.slicesB, lanes, true);
    if (first && i < params.lenB) {
      outB[i] = sum;
    }
    return;
  }
  var sum = sumSliceLanes(i, lid, params.len, params.slices, lanes, false);
  if (first && i < params.len) {
    if (HAS_BIAS) {
      sum += bias[i % params.S];
    }
    if (ACCUMULATE) {
      sum += f32(out[i]);
    }
    out[i] = out_t(sum);
  }
}
