// The unit after every conv in ConvMixer: bias, exact GELU, BatchNorm2d (+ the block's residual),
// on z [N, C] (N = B·H·W, NHWC), vectorised over channels, threads splitting the rows.
//
//   u = GELU(z + bias) = x·Φ(x),   out = gamma·(u − mean)·rstd + beta (+ residual)
//
// Forward, training: (1) biasGeluBatchNormStatistics writes u (GELU's only evaluation) into out,
// or into a tensor kept for the backward, and per-thread float64 sums of (u − shift) and
// (u − shift)², shift = u of row 0 (shifted sums: no cancellation when the mean is large against
// the spread); (2) biasGeluBatchNormFinalize (thread 0) turns them into mean, rstd, the saved and
// running statistics and a per-channel table; (3) biasGeluBatchNormApply normalises u into out.
// Eval: Finalize from the running statistics, then Apply computing u on the fly.
// Backward (training statistics): BackwardStatistics sums dOut and dOut·(u − mean) per thread;
// BackwardApply forms dz = gamma·rstd·(dOut − ΣdOut/N − x̂·ΣdOut·x̂/N)·GELU'(x) and per-thread
// sums of dz, which sumPartials (depthwise.ts) adds into dBias. Φ(x), which u and GELU' need, is
// the costly part (about 60 instructions a vector, as much as the rest of a pass): with the
// forward's u kept, neither pass evaluates it (Φ = u/x); without, pass 1 evaluates it and leaves
// it in dz (unless dz aliases dOut) for pass 2.
//
// Tiling of the reductions: each thread walks its rows in blocks of ROWS_PER_BLOCK; within a block
// the channel vectors are outermost, so a vector's sums over the block's rows stay in float32
// registers (the rows give independent work to overlap) and reach the per-thread float64 partials
// in memory once per block. A 16-term float32 sum errs by at most 16 ulps of its terms' absolute
// sum, far inside the γ_N of any summation order that the tests' bounds allow; widening every term
// to float64 instead cost 15% of the training forward. (8 rows per block measured 40% slower in
// the backward statistics, 32 no faster than 16.)
import { addToFloat64, loadLanes, shareStart, storeLanes } from "./lanes";

const ROWS_PER_BLOCK = 16;

// ---- exact GELU in float32 ------------------------------------------------------------------

// The constants live in a table in memory: a broadcast load is one instruction, where V8 would
// rebuild an f32x4 constant from immediates at every use inside the loops.
const MATH_CONSTANTS = memory.data<f32>([
  // 0..10: P·log2(e), highest power first, P of degree 10 fitted to log(erfc(t))/t on [0, 4]
  0.12100236117839813, -0.7943028211593628, 2.318368673324585, -3.9289748668670654, 4.148275375366211,
  -2.483053207397461, 0.027450961992144585, 1.7789751291275024, -2.3738443851470947, -3.673708438873291,
  -1.627908706665039,
  // 11..18: 2^r = e^{r·ln2}, Taylor coefficients ln2^7/7! … ln2^0/0!
  1.5252733646775596e-05, 0.0001540352968731895, 0.0013333557872101665, 0.009618128649890423,
  0.05550410971045494, 0.24022650718688965, 0.6931471824645996, 1.0,
  // 19..: −125 (exp2's lower clamp), 127 (the float32 exponent bias), 1/√2, 4 (t's clamp), 1/4,
  // −1, 1, 1/√(2π), −log2(e)/2, ½, 2⁻⁶⁰
  -125, 127, 0.70710678, 4, 0.25, -1, 1, 0.39894228, -0.7213475108146667, 0.5, 8.673617379884035e-19,
]);
const CDF_POLYNOMIAL = 0, EXP2_TAYLOR = 11, EXP2_CLAMP = 19, EXPONENT_BIAS = 20, SQRT1_2 = 21, T_CLAMP = 22;
const QUARTER = 23, MINUS_ONE = 24, ONE = 25, DENSITY_SCALE = 26, MINUS_HALF_LOG2E = 27, HALF = 28;
const TINY = 29;

@inline function constant(index: i32): v128 {
  return v128.load32_splat(MATH_CONSTANTS + <usize>index * 4);
}

// The polynomials below are evaluated by Estrin's scheme (pairs c·s + c', joined by s², s⁴):
// dependency chains 4 or 5 deep instead of 7 or 10, because these loops are latency-bound.

/** c[i]·s + c[i + 1], for a table of coefficients c stored highest power first. */
@inline function pair(i: i32, s: v128): v128 {
  return f32x4.relaxed_madd(constant(i), s, constant(i + 1));
}

/** 2^y for y <= 0: y = n + r, n = round(y), |r| <= ½ (exact), 2^r by its Taylor polynomial (error < 1e-8). */
@inline function exp2NonPositive(y: v128): v128 {
  y = f32x4.pmax(y, constant(EXP2_CLAMP));
  const n = f32x4.nearest(y), r = f32x4.sub(y, n), r2 = f32x4.mul(r, r);
  const r7to4 = f32x4.relaxed_madd(pair(EXP2_TAYLOR, r), r2, pair(EXP2_TAYLOR + 2, r));
  const r3to0 = f32x4.relaxed_madd(pair(EXP2_TAYLOR + 4, r), r2, pair(EXP2_TAYLOR + 6, r));
  const p = f32x4.relaxed_madd(r7to4, f32x4.mul(r2, r2), r3to0);
  // 2^n built in the exponent bits; n + 127 is in [2, 127], so the plain truncation is exact.
  const twoToN = i32x4.shl(i32x4.relaxed_trunc_f32x4_s(f32x4.add(n, constant(EXPONENT_BIAS))), 23);
  return f32x4.mul(p, twoToN);
}

/**
 * Φ(−|x|) = ½·erfc(t), t = |x|/√2, the standard normal CDF's lower tail, from |x|.
 * erfc(t) = exp(t·P(t/4)) with P of degree 10 fitted to log(erfc(t))/t on [0, 4] (t is clamped
 * there: Φ(−5.66) < 1e-8), computed as 2^(t·P(t/4)·log2(e) − 1), the −1 for the ½.
 * |error| < 1e-7 everywhere and relative error < 3e-6, which matters: BatchNorm magnifies a
 * channel whose inputs all lie in GELU's negative tail. (Eigen's and XLA's rational float erf made
 * this unit 2x faster, but it forms ½ + ½·erf by cancellation: 10x larger errors in that tail,
 * tests/wasm_gelu_batchnorm_test.ts.)
 */
@inline function lowerTail(absX: v128): v128 {
  const t = f32x4.pmin(f32x4.mul(absX, constant(SQRT1_2)), constant(T_CLAMP));
  const s = f32x4.mul(t, constant(QUARTER)), s2 = f32x4.mul(s, s), s4 = f32x4.mul(s2, s2);
  const s10to7 = f32x4.relaxed_madd(pair(CDF_POLYNOMIAL, s), s2, pair(CDF_POLYNOMIAL + 2, s));
  const s6to3 = f32x4.relaxed_madd(pair(CDF_POLYNOMIAL + 4, s), s2, pair(CDF_POLYNOMIAL + 6, s));
  const s2to0 = f32x4.relaxed_madd(constant(CDF_POLYNOMIAL + 8), s2, pair(CDF_POLYNOMIAL + 9, s));
  const p = f32x4.relaxed_madd(f32x4.relaxed_madd(s10to7, s4, s6to3), f32x4.mul(s2, s), s2to0);
  return exp2NonPositive(f32x4.relaxed_madd(p, t, constant(MINUS_ONE)));
}

/** Φ(x), the standard normal CDF: the lower tail for x < 0, 1 − the tail otherwise. */
@inline function normalCdf(x: v128): v128 {
  const tail = lowerTail(f32x4.abs(x));
  return v128.bitselect(tail, f32x4.sub(constant(ONE), tail), f32x4.lt(x, f32x4.splat(0)));
}

/** GELU(x) = x·Φ(x) = max(x, 0) − |x|·Φ(−|x|): one fused step from the tail, no select. */
@inline function gelu(x: v128): v128 {
  const absX = f32x4.abs(x);
  return f32x4.relaxed_nmadd(absX, lowerTail(absX), f32x4.pmax(x, f32x4.splat(0)));
}

/** φ(x) = 2^{−x²·log2(e)/2}/√(2π), the standard normal density. */
@inline function normalDensity(x: v128): v128 {
  const y = f32x4.mul(f32x4.mul(x, x), constant(MINUS_HALF_LOG2E));
  return f32x4.mul(exp2NonPositive(y), constant(DENSITY_SCALE));
}

/**
 * Φ(x) = u/x from u = GELU(x): a relative error of u's plus one rounding, in both tails (a product
 * and a quotient keep relative accuracy). ½ where |x| < 2⁻⁶⁰, where u may be subnormal (Φ − ½ is
 * below 2⁻⁶¹ there).
 */
@inline function cdfFromGelu(u: v128, x: v128): v128 {
  return v128.bitselect(f32x4.div(u, x), constant(HALF), f32x4.gt(f32x4.abs(x), constant(TINY)));
}

/** Floats of one padded per-channel row: C rounded up to whole vectors. */
@inline function paddedChannels(C: i32): i32 {
  return (C + 3) & ~3;
}

// ---- forward -----------------------------------------------------------------------------------

/**
 * Training pass 1. For its rows, thread t writes u = GELU(z + bias) into u and fills its
 * partial at partials + t·5·Cp·4 bytes (Cp = C rounded up to 4): shift f32 [Cp], then
 * Σ(u − shift) f64 [Cp], Σ(u − shift)² f64 [Cp].
 */
export function biasGeluBatchNormStatistics(
  z: usize, bias: usize, u: usize, partials: usize, N: i32, C: i32, thread: i32, threads: i32,
): void {
  const Cp = paddedChannels(C), rowBytes = <usize>C * 4;
  const shift = partials + <usize>thread * Cp * 20, sums = shift + <usize>Cp * 4, squares = sums + <usize>Cp * 8;
  memory.fill(sums, 0, <usize>Cp * 16);
  for (let c = 0; c < C; c += 4) {
    const lanes = min(4, C - c), at = <usize>c * 4;
    v128.store(shift + at, gelu(f32x4.add(loadLanes(z + at, lanes), loadLanes(bias + at, lanes))));
  }
  const n1 = shareStart(N, thread + 1, threads);
  for (let n0 = shareStart(N, thread, threads); n0 < n1; n0 += ROWS_PER_BLOCK) {
    const rows = min(ROWS_PER_BLOCK, n1 - n0);
    for (let c = 0; c < C; c += 4) {
      const lanes = min(4, C - c), at = <usize>c * 4;
      const b = loadLanes(bias + at, lanes), s = v128.load(shift + at);
      let sum = f32x4.splat(0), square = sum;
      for (let i = 0; i < rows; i++) {
        const element = <usize>(n0 + i) * rowBytes + at;
        const value = gelu(f32x4.add(loadLanes(z + element, lanes), b));
        storeLanes(u + element, value, lanes);
        const d = f32x4.sub(value, s);
        sum = f32x4.add(sum, d);
        square = f32x4.relaxed_madd(d, d, square);
      }
      addToFloat64(sums + at * 2, sum);
      addToFloat64(squares + at * 2, square);
    }
  }
}

/**
 * Thread 0 only (eps, momentum: src/kernel_constants.ts). training: combines the `count` partials into mean and (biased) var, writes saved
 * [2, C] = (mean, rstd) and the running statistics (unbiased var). eval: mean and var are the
 * running statistics. Either way writes table [3, Cp] = (mean, gamma·rstd, beta) for Apply.
 */
export function biasGeluBatchNormFinalize(
  partials: usize, count: i32, N: i32, C: i32, gamma: usize, beta: usize,
  runningMean: usize, runningVar: usize, saved: usize, table: usize, training: i32,
  eps: f64, momentum: f64, thread: i32, threads: i32,
): void {
  if (thread != 0) return;
  const Cp = paddedChannels(C);
  memory.fill(table, 0, <usize>Cp * 12);
  for (let c = 0; c < C; c++) {
    const at = <usize>c * 4;
    let mean: f64, variance: f64;
    if (training) {
      let sum: f64 = 0, squares: f64 = 0;
      for (let p = 0; p < count; p++) {
        const partial = partials + <usize>p * Cp * 20 + <usize>Cp * 4;
        sum += load<f64>(partial + at * 2);
        squares += load<f64>(partial + <usize>Cp * 8 + at * 2);
      }
      const meanShift = sum / N;
      mean = <f64>load<f32>(partials + at) + meanShift;
      variance = max(squares / N - meanShift * meanShift, 0);
      store<f32>(saved + at, <f32>mean);
      store<f32>(saved + <usize>C * 4 + at, <f32>(1 / Math.sqrt(variance + eps)));
      store<f32>(runningMean + at, <f32>((1 - momentum) * load<f32>(runningMean + at) + momentum * mean));
      const unbiased = variance * N / (N - 1);
      store<f32>(runningVar + at, <f32>((1 - momentum) * load<f32>(runningVar + at) + momentum * unbiased));
    } else {
      mean = load<f32>(runningMean + at);
      variance = load<f32>(runningVar + at);
    }
    store<f32>(table + at, <f32>mean);
    store<f32>(table + <usize>Cp * 4 + at, <f32>(load<f32>(gamma + at) / Math.sqrt(variance + eps)));
    store<f32>(table + <usize>Cp * 8 + at, load<f32>(beta + at));
  }
}

/**
 * out = (u − mean)·scale + beta (+ residual, when residual != 0) from Finalize's table, u read
 * from u (after Statistics; it may be out) or, when u = 0, computed as GELU(z + bias) (eval).
 */
export function biasGeluBatchNormApply(
  z: usize, bias: usize, table: usize, residual: usize, u: usize, out: usize, N: i32, C: i32,
  thread: i32, threads: i32,
): void {
  const Cp = paddedChannels(C), rowBytes = <usize>C * 4;
  const means = table, scales = table + <usize>Cp * 4, betas = table + <usize>Cp * 8;
  const n1 = shareStart(N, thread + 1, threads);
  for (let n = shareStart(N, thread, threads); n < n1; n++) {
    const row = <usize>n * rowBytes;
    for (let c = 0; c < C; c += 4) {
      const lanes = min(4, C - c), at = <usize>c * 4;
      const value = u != 0
        ? loadLanes(u + row + at, lanes)
        : gelu(f32x4.add(loadLanes(z + row + at, lanes), loadLanes(bias + at, lanes)));
      let y = f32x4.relaxed_madd(
        f32x4.sub(value, v128.load(means + at)), v128.load(scales + at), v128.load(betas + at),
      );
      if (residual != 0) y = f32x4.add(y, loadLanes(residual + row + at, lanes));
      storeLanes(out + row + at, y, lanes);
    }
  }
}

// ---- backward ----------------------------------------------------------------------------------

/**
 * Backward pass 1: thread t fills partials + t·2·Cp·8 bytes with ΣdOut f64 [Cp], then
 * ΣdOut·(u − mean) f64 [Cp] over its rows (BackwardApply scales it by rstd into ΣdOut·x̂).
 * u is read from the forward's kept tensor (u != 0) or evaluated from z; in that case, when
 * cdf != 0 (dz, when it does not alias dOut), Φ(x) is stored there for BackwardApply.
 */
export function biasGeluBatchNormBackwardStatistics(
  z: usize, bias: usize, saved: usize, dOut: usize, u: usize, partials: usize, cdf: usize, N: i32,
  C: i32, thread: i32, threads: i32,
): void {
  const Cp = paddedChannels(C), rowBytes = <usize>C * 4;
  const sums = partials + <usize>thread * Cp * 16, products = sums + <usize>Cp * 8;
  memory.fill(sums, 0, <usize>Cp * 16);
  const n1 = shareStart(N, thread + 1, threads);
  for (let n0 = shareStart(N, thread, threads); n0 < n1; n0 += ROWS_PER_BLOCK) {
    const rows = min(ROWS_PER_BLOCK, n1 - n0);
    for (let c = 0; c < C; c += 4) {
      const lanes = min(4, C - c), at = <usize>c * 4;
      const b = loadLanes(bias + at, lanes), mean = loadLanes(saved + at, lanes);
      let sum = f32x4.splat(0), product = sum;
      for (let i = 0; i < rows; i++) {
        const element = <usize>(n0 + i) * rowBytes + at;
        const g = loadLanes(dOut + element, lanes);
        let value: v128;
        if (u != 0) {
          value = loadLanes(u + element, lanes);
        } else {
          const x = f32x4.add(loadLanes(z + element, lanes), b), p = normalCdf(x);
          if (cdf != 0) storeLanes(cdf + element, p, lanes);
          value = f32x4.mul(x, p);
        }
        sum = f32x4.add(sum, g);
        product = f32x4.relaxed_madd(g, f32x4.sub(value, mean), product);
      }
      addToFloat64(sums + at * 2, sum);
      addToFloat64(products + at * 2, product);
    }
  }
}

/**
 * Backward pass 2. Every thread combines the `threads` partials of pass 1 into its own table at
 * tables + t·4·Cp·4 bytes: (mean, gamma·rstd, ΣdOut/N, rstd·ΣdOut·x̂/N); thread 0 writes dBeta = ΣdOut
 * and dGamma = ΣdOut·x̂. Then, for its rows, with x̂ = (u − mean)·rstd,
 *   dz = gamma·rstd·(dOut − ΣdOut/N − x̂·ΣdOut·x̂/N)·GELU'(x),  GELU'(x) = Φ(x) + x·φ(x)
 * (dz may alias dOut), and Σdz into the f64 [Cp] at dzPartials + t·Cp·8 bytes. u and Φ(x) come
 * from the forward's kept u (u != 0; Φ = u/x), or else u = x·Φ(x) with Φ read from dz when
 * cdfInDz (pass 1 stored it) or evaluated again.
 */
export function biasGeluBatchNormBackwardApply(
  z: usize, bias: usize, gamma: usize, saved: usize, dOut: usize, dz: usize, u: usize, partials: usize,
  tables: usize, dzPartials: usize, dGamma: usize, dBeta: usize, N: i32, C: i32, cdfInDz: i32,
  thread: i32, threads: i32,
): void {
  const Cp = paddedChannels(C), rowBytes = <usize>C * 4;
  const means = tables + <usize>thread * Cp * 16, scales = means + <usize>Cp * 4;
  const meanDOut = means + <usize>Cp * 8, centredSlope = means + <usize>Cp * 12;
  memory.fill(means, 0, <usize>Cp * 16);
  for (let c = 0; c < C; c++) {
    const at = <usize>c * 4;
    let sum: f64 = 0, product: f64 = 0;
    for (let p = 0; p < threads; p++) {
      sum += load<f64>(partials + <usize>p * Cp * 16 + at * 2);
      product += load<f64>(partials + <usize>p * Cp * 16 + <usize>Cp * 8 + at * 2);
    }
    const rstd: f64 = load<f32>(saved + <usize>C * 4 + at);
    store<f32>(means + at, load<f32>(saved + at));
    store<f32>(scales + at, load<f32>(gamma + at) * <f32>rstd);
    store<f32>(meanDOut + at, <f32>(sum / N));
    store<f32>(centredSlope + at, <f32>(rstd * rstd * product / N));
    if (thread == 0) {
      store<f32>(dBeta + at, <f32>sum);
      store<f32>(dGamma + at, <f32>(rstd * product));
    }
  }
  const dzSums = dzPartials + <usize>thread * Cp * 8;
  memory.fill(dzSums, 0, <usize>Cp * 8);
  const n1 = shareStart(N, thread + 1, threads);
  for (let n0 = shareStart(N, thread, threads); n0 < n1; n0 += ROWS_PER_BLOCK) {
    const rows = min(ROWS_PER_BLOCK, n1 - n0);
    for (let c = 0; c < C; c += 4) {
      const lanes = min(4, C - c), at = <usize>c * 4;
      const b = loadLanes(bias + at, lanes), mean = v128.load(means + at), scale = v128.load(scales + at);
      const meanG = v128.load(meanDOut + at), slopeOfCentred = v128.load(centredSlope + at);
      let sum = f32x4.splat(0);
      for (let i = 0; i < rows; i++) {
        const element = <usize>(n0 + i) * rowBytes + at;
        const x = f32x4.add(loadLanes(z + element, lanes), b);
        let cdf: v128, value: v128;
        if (u != 0) {
          value = loadLanes(u + element, lanes);
          cdf = cdfFromGelu(value, x);
        } else {
          cdf = cdfInDz ? loadLanes(dz + element, lanes) : normalCdf(x);
          value = f32x4.mul(x, cdf);
        }
        // x̂·ΣdOut·x̂/N = (u − mean)·slopeOfCentred, slopeOfCentred = rstd²·Σ dOut·(u − mean) / N
        const centred = f32x4.sub(loadLanes(dOut + element, lanes), meanG);
        const du = f32x4.relaxed_nmadd(f32x4.sub(value, mean), slopeOfCentred, centred);
        const g = f32x4.mul(f32x4.mul(du, scale), f32x4.relaxed_madd(x, normalDensity(x), cdf));
        storeLanes(dz + element, g, lanes);
        sum = f32x4.add(sum, g);
      }
      addToFloat64(dzSums + at * 2, sum);
    }
  }
}
