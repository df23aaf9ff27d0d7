// Global average pool before the head: out[b, c] = mean over H·W of x[b, ·, ·, c]. One thread
// per (b, c); consecutive threads read consecutive channels of each pixel.

struct Params {
  n: u32, // B·C
  HW: u32,
  C: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = (wid.y * groups.x + wid.x) * 256u + lid;
  if (o >= params.n) {
    return;
  }
  let c = o % params.C;
  let b = o / params.C;
  var sum = 0.0;
  for (var p = 0u; p < params.HW; p++) {
    sum += x[(b * params.HW + p) * params.C + c];
  }
  out[o] = sum / f32(params.HW);
}
