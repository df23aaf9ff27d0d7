// Channel vectors with a tail: the layer kernels walk a row of C channels four at a time, and
// the last vector of a row may hold fewer than 4 channels (C % 4). These load/store only `lanes`
// floats (the others read as 0), so one vector code path serves every C.

/** `lanes` (1..4) floats from p; the missing lanes are 0. */
@inline export function loadLanes(p: usize, lanes: i32): v128 {
  if (lanes == 4) return v128.load(p);
  let v = f32x4.replace_lane(f32x4.splat(0), 0, load<f32>(p));
  if (lanes > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (lanes > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Stores the first `lanes` (1..4) floats of v at p. */
@inline export function storeLanes(p: usize, v: v128, lanes: i32): void {
  if (lanes == 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (lanes > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (lanes > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

// Per-thread partial sums in float64: a block of rows is summed in float32 registers, and each
// block's f32x4 sum is widened and added into four doubles in memory.

/** Adds the 4 floats of v, widened to float64, into the 4 doubles at p. */
@inline export function addToFloat64(p: usize, v: v128): void {
  v128.store(p, f64x2.add(v128.load(p), f64x2.promote_low_f32x4(v)));
  const high = f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
  v128.store(p + 16, f64x2.add(v128.load(p + 16), high));
}

/** Rows [first, end) of `rows` that thread `thread` of `threads` owns: contiguous, balanced. */
@inline export function shareStart(rows: i32, thread: i32, threads: i32): i32 {
  return <i32>(<i64>rows * thread / threads);
}
