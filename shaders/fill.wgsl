// out[i] = value, one thread per element.

struct Params {
  n: u32,
  value: f32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias out_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<out_t>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (i < params.n) {
    out[i] = out_t(params.value);
  }
}
