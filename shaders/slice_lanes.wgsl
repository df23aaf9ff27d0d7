// The skeleton of the second level of the two-level reductions, a column sum of [slices, len]
// partials: a workgroup of WG_THREADS threads owns WG_THREADS/LANES consecutive outputs; its LANES
// lanes take every LANES-th slice, then a tree in workgroup memory adds the lanes, so no thread
// walks hundreds of slices one dependent load after another, and few slices (LANES = 1) cost no
// tree at all. The including kernel declares `partial` and `override LANES: u32`.

var<workgroup> sliceLanes: array<f32, WG_THREADS>;

/** The output of thread lid and its lane: (output index, lane). */
fn sliceLane(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> vec2<u32> {
  let outputs = WG_THREADS / LANES;
  return vec2<u32>((wid.y * groups.x + wid.x) * outputs + lid % outputs, lid / outputs);
}

/** Σ_z partial[z·len + i] over the slices, valid in lane 0 (every thread must call it). */
fn sumSliceLanes(i: u32, lane: u32, lid: u32, len: u32, slices: u32) -> f32 {
  var sum = 0.0;
  if (i < len) {
    for (var z = lane; z < slices; z += LANES) {
      sum += partial[z * len + i];
    }
  }
  if (LANES > 1u) {
    let outputs = WG_THREADS / LANES;
    sliceLanes[lid] = sum;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
      if (lane < half) {
        sliceLanes[lid] += sliceLanes[lid + half * outputs];
      }
      workgroupBarrier();
    }
    sum = sliceLanes[lid % outputs];
  }
  return sum;
}
