// Second level of every two-level reduction, a column sum of the [slices, len] partials:
//   out[i] (+)= Σ_z partial[offset + z·stride + i] (+ bias[i % S]),  i < len.
// The partials are split-K products of gemm.wgsl (len = R·S, a few to tens of slices) or
// per-chunk sums of the row reductions (len = a few C, hundreds of slices). A workgroup of 256
// threads owns 256/LANES consecutive outputs; its LANES lanes take every LANES-th slice, then a
// tree in workgroup memory adds the lanes, so no thread walks hundreds of slices one dependent
// load after another, and few slices (LANES = 1) cost no tree at all. Also, with one slice, the
// converting copy that uploads f16 tensors.

struct Params {
  len: u32,
  slices: u32,
  stride: u32,
  offset: u32,
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

var<workgroup> lanes: array<f32, WG_THREADS>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let outputs = WG_THREADS / LANES;
  let column = lid % outputs;
  let lane = lid / outputs;
  let i = (wid.y * groups.x + wid.x) * outputs + column;
  var sum = 0.0;
  if (i < params.len) {
    for (var z = lane; z < params.slices; z += LANES) {
      sum += partial[params.offset + z * params.stride + i];
    }
  }
  if (LANES > 1u) {
    lanes[lid] = sum;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
      if (lane < half) {
        lanes[lid] += lanes[lid + half * outputs];
      }
      workgroupBarrier();
    }
    sum = lanes[column];
  }
  if (lane == 0u && i < params.len) {
    if (HAS_BIAS) {
      sum += bias[i % params.S];
    }
    if (ACCUMULATE) {
      sum += f32(out[i]);
    }
    out[i] = out_t(sum);
  }
}
