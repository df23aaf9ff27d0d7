// The CPU's peak f32x4 multiply-add rate, for `task bench`'s "achieved vs peak" column, built as
// a module of its own (build/peak.wasm) so the production one holds only what training runs: eight
// independent accumulators (enough to hide the FMA latency on two FMA ports), no memory traffic.
// 64 FLOPs per iteration. x and y derive from the arguments so the compiler cannot fold them into
// memory operands of every FMA (which would measure loads, not multiply-adds).
export function fmaPeak(iterations: i32, thread: i32, threads: i32): f32 {
  const x = f32x4.splat(0.999999 + <f32>thread * 1e-9);
  const y = f32x4.splat(<f32>threads * 1e-9);
  let a0 = f32x4.splat(1.0), a1 = f32x4.splat(1.1), a2 = f32x4.splat(1.2), a3 = f32x4.splat(1.3);
  let a4 = f32x4.splat(1.4), a5 = f32x4.splat(1.5), a6 = f32x4.splat(1.6), a7 = f32x4.splat(1.7);
  for (let i = 0; i < iterations; i++) {
    a0 = f32x4.relaxed_madd(x, y, a0);
    a1 = f32x4.relaxed_madd(x, y, a1);
    a2 = f32x4.relaxed_madd(x, y, a2);
    a3 = f32x4.relaxed_madd(x, y, a3);
    a4 = f32x4.relaxed_madd(x, y, a4);
    a5 = f32x4.relaxed_madd(x, y, a5);
    a6 = f32x4.relaxed_madd(x, y, a6);
    a7 = f32x4.relaxed_madd(x, y, a7);
  }
  const sum = f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7)));
  return f32x4.extract_lane(sum, 0);
}
