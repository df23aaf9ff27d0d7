// The weight average: average = decay·average + (1 − decay)·value, one thread per element
// (decay 0 copies value into average).

struct Params {
  n: u32,
  decay: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> average: array<f32>;
@group(0) @binding(2) var<storage, read> value: array<f32>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (i < params.n) {
    average[i] = params.decay * average[i] + (1.0 - params.decay) * value[i];
  }
}
