//!include chan_merge.wgsl
// The skeleton of the row reductions over a [rows, C] view (column sums, BatchNorm's sums and
// statistics, the weight gradients): workgroup (channel block, ·, chunk) has WG_CHANNELS ×
// WG_ROW_LANES threads and owns WG_CHANNELS consecutive channels of one chunk of rows; lane
// lid.y takes every WG_ROW_LANES-th row of the chunk (consecutive threads read consecutive
// channels, a coalesced row read), then the lanes add up in workgroup memory, every lane getting
// the total. The host writes partial[chunk, ·] from lane 0 and adds the chunks in a second pass
// (sum_slices.wgsl, or in the next kernel's workgroups: bias_gelu_batchnorm_normalize.wgsl).
// Kernels declare @workgroup_size(WG_CHANNELS, WG_ROW_LANES); a kernel may reduce more than once
// (each reduction starts with a barrier, so the previous one's reads are done).

var<workgroup> rowLanes: array<vec4<f32>, WG_CHANNELS * WG_ROW_LANES>;

/** The channel of thread lid in channel block wid.x. */
fn laneChannel(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
  return wid.x * WG_CHANNELS + lid.x;
}

/** [first row of this thread's lane, end) of chunk `chunk`: step WG_ROW_LANES from .x to .y. */
fn laneRows(chunk: u32, rowsPerChunk: u32, rows: u32, lid: vec3<u32>) -> vec2<u32> {
  let start = chunk * rowsPerChunk;
  return vec2<u32>(start + lid.y, min(rows, start + rowsPerChunk));
}

/** Σ over the lanes of each thread's value, lane 0 first, in every lane (every thread must call it). */
fn sumRowLanes(value: vec4<f32>, lid: vec3<u32>) -> vec4<f32> {
  workgroupBarrier();
  rowLanes[lid.y * WG_CHANNELS + lid.x] = value;
  workgroupBarrier();
  var sum = rowLanes[lid.x];
  for (var lane = 1u; lane < WG_ROW_LANES; lane++) {
    sum += rowLanes[lane * WG_CHANNELS + lid.x];
  }
  return sum;
}

/** The lanes' (count, mean, M2) merged with Chan's formula, lane 0 first, in every lane (every thread must call it). */
fn mergeRowLanes(stats: vec3<f32>, lid: vec3<u32>) -> vec3<f32> {
  workgroupBarrier();
  rowLanes[lid.y * WG_CHANNELS + lid.x] = vec4<f32>(stats, 0.0);
  workgroupBarrier();
  var merged = rowLanes[lid.x].xyz;
  for (var lane = 1u; lane < WG_ROW_LANES; lane++) {
    merged = chanMerge(merged, rowLanes[lane * WG_CHANNELS + lid.x].xyz);
  }
  return merged;
}
