// Global average pool before the head: out[b, c] = mean over H·W of x[b, ·, ·, c]. Workgroup
// (channel block, b) owns WG_POOL_CHANNELS channels of one image; its WG_POOL_LANES lanes take
// every WG_POOL_LANES-th pixel (consecutive threads read consecutive channels) and add up in workgroup memory.

struct Params {
  B: u32,
  HW: u32,
  C: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias x_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<x_t>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> lanes: array<f32, WG_POOL_CHANNELS * WG_POOL_LANES>;

@compute @workgroup_size(WG_POOL_CHANNELS, WG_POOL_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = wid.x * WG_POOL_CHANNELS + lid.x;
  let b = wid.y;
  var sum = 0.0;
  if (c < C) {
    for (var p = lid.y; p < params.HW; p += WG_POOL_LANES) {
      sum += f32(x[(b * params.HW + p) * C + c]);
    }
  }
  let slot = lid.y * WG_POOL_CHANNELS + lid.x;
  lanes[slot] = sum;
  workgroupBarrier();
  for (var half = WG_POOL_LANES / 2u; half > 0u; half /= 2u) {
    if (lid.y < half) {
      lanes[slot] += lanes[slot + half * WG_POOL_CHANNELS];
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < C) {
    out[b * C + c] = lanes[lid.x] / f32(params.HW);
  }
}
