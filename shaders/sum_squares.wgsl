// Σ g² for gradient-norm clipping: each of the (at most 256) workgroups walks the tensor with a
// grid stride, then a tree reduction in workgroup memory gives partial[workgroup], and
// sum_slices.wgsl (ACCUMULATE) adds the partials into sumSquares. A small tensor (most
// parameters) takes one workgroup that adds straight into sumSquares (DIRECT): one dispatch.

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;

override DIRECT: bool = false;

var<workgroup> sums: array<f32, WG_THREADS>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  var sum = 0.0;
  for (var i = wid.x * WG_THREADS + lid; i < params.n; i += groups.x * 256u) {
    sum += g[i] * g[i];
  }
  sums[lid] = sum;
  workgroupBarrier();
  for (var half = WG_THREADS / 2u; half > 0u; half /= 2u) {
    if (lid < half) {
      sums[lid] += sums[lid + half];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    if (DIRECT) {
      partial[0] += sums[0];
    } else {
      partial[wid.x] = sums[0];
    }
  }
}
