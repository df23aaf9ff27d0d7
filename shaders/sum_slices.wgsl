// Second level of every two-level reduction, a column sum of the [slices, len] partials:
//   out[i] (+)= Σ_z partial[offset + z·stride + i] (+ bias[i % S]),  i < len.
// The partials are split-K products of gemm.wgsl (len = R·S, tens of slices) or per-chunk sums
// of the row reductions (len = a few C, hundreds of slices). A workgroup owns 16 consecutive
// outputs; its 16 lanes take every 16th slice, then a tree in workgroup memory adds the lanes,
// so no thread walks hundreds of slices one dependent load after another.

struct Params {
  len: u32,
  slices: u32,
  stride: u32,
  offset: u32,
  S: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;

var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * groups.x + wid.x) * 16u + lid.x;
  var sum = 0.0;
  if (i < params.len) {
    for (var z = lid.y; z < params.slices; z += 16u) {
      sum += partial[params.offset + z * params.stride + i];
    }
  }
  let slot = lid.y * 16u + lid.x;
  lanes[slot] = sum;
  workgroupBarrier();
  for (var half = 8u; half > 0u; half /= 2u) {
    if (lid.y < half) {
      lanes[slot] += lanes[slot + half * 16u];
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && i < params.len) {
    var total = lanes[lid.x];
    if (HAS_BIAS) {
      total += bias[i % params.S];
    }
    if (ACCUMULATE) {
      total += out[i];
    }
    out[i] = total;
  }
}
