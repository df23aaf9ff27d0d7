// Second level of every two-level reduction:
//   out[i] (+)= Σ_z partial[offset + z·stride + i] (+ bias[i % S]),  i < len.
// One thread per output; the slices are the split-K partial products of gemm.wgsl or the
// per-chunk sums of the row reductions, so each thread adds a few hundred values at most.

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * groups.x + wid.x) * 256u + lid;
  if (i >= params.len) {
    return;
  }
  var sum = 0.0;
  for (var z = 0u; z < params.slices; z++) {
    sum += partial[params.offset + z * params.stride + i];
  }
  if (HAS_BIAS) {
    sum += bias[i % params.S];
  }
  if (ACCUMULATE) {
    sum += out[i];
  }
  out[i] = sum;
}
