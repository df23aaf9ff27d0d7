// Backward of the global average pool: dx[b, h, w, c] = dOut[b, c] / (H·W), one thread per
// element of dx.

struct Params {
  n: u32, // B·H·W·C
  HW: u32,
  C: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias dx_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dOut: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<dx_t>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (i >= params.n) {
    return;
  }
  let c = i % params.C;
  let b = i / (params.HW * params.C);
  dx[i] = dx_t(dOut[b * params.C + c] / f32(params.HW));
}
