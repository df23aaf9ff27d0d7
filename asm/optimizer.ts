// The optimizer: global-norm gradient clipping and one AdamW or SGD step per parameter tensor,
// with everything (including the clipping factor) computed here: nothing is read back to JS.
import { loadLanes, shareStart, storeLanes } from "./lanes";

/** sumSquares [1] += Σ g² over g [size], summed in float64 on thread 0 (one tensor is small). */
export function accumulateSquares(g: usize, size: i32, sumSquares: usize, thread: i32, threads: i32): void {
  if (thread != 0) return;
  let low = f64x2.splat(0), high = f64x2.splat(0);
  for (let i = 0; i < size; i += 4) {
    const v = loadLanes(g + <usize>i * 4, min(4, size - i)), square = f32x4.mul(v, v);
    low = f64x2.add(low, f64x2.promote_low_f32x4(square));
    high = f64x2.add(high, f64x2.promote_low_f32x4(v128.shuffle<f32>(square, square, 2, 3, 0, 1)));
  }
  const total = f64x2.add(low, high);
  const sum = f64x2.extract_lane(total, 0) + f64x2.extract_lane(total, 1);
  store<f32>(sumSquares, <f32>(<f64>load<f32>(sumSquares) + sum));
}

/**
 * One step over param, grad, m, v [size]; threads split the elements (in whole vectors).
 * g is first scaled by min(1, clipNorm/(√sumSquares + 1e-6)) when clipNorm > 0. Then
 *   adamw (kind 0): p −= lr·wd·p; m = β1·m + (1−β1)g; v = β2·v + (1−β2)g²;
 *                   p −= lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps)
 *   sgd (kind 1):   p −= lr·(g + wd·p)
 *   nesterov (kind 2, torch SGD with momentum β1, nesterov): d = g + wd·p; m = β1·m + d;
 *                   p −= lr·(d + β1·m)
 */
export function optimizerStep(
  param: usize, grad: usize, m: usize, v: usize, sumSquares: usize, size: i32, kind: i32,
  lr: f32, weightDecay: f32, beta1: f32, beta2: f32, eps: f32, step: i32, clipNorm: f32,
  thread: i32, threads: i32,
): void {
  let clip: f32 = 1;
  if (clipNorm > 0) clip = min<f32>(1, clipNorm / (<f32>Math.sqrt(load<f32>(sumSquares)) + 1e-6));
  const scale = f32x4.splat(clip), lrv = f32x4.splat(lr), decay = f32x4.splat(1 - lr * weightDecay);
  const b1 = f32x4.splat(beta1), b2 = f32x4.splat(beta2);
  const oneMinusB1 = f32x4.splat(1 - beta1), oneMinusB2 = f32x4.splat(1 - beta2);
  const stepSize = f32x4.splat(<f32>(<f64>lr / (1 - Math.pow(<f64>beta1, <f64>step))));
  const rootCorrection = f32x4.splat(<f32>(1 / Math.sqrt(1 - Math.pow(<f64>beta2, <f64>step))));
  const epsv = f32x4.splat(eps), wd = f32x4.splat(weightDecay);
  const vectors = (size + 3) >> 2;
  const i1 = shareStart(vectors, thread + 1, threads) * 4;
  for (let i = shareStart(vectors, thread, threads) * 4; i < i1; i += 4) {
    const lanes = min(4, size - i), at = <usize>i * 4;
    const g = f32x4.mul(loadLanes(grad + at, lanes), scale);
    let p = loadLanes(param + at, lanes);
    if (kind == 0) {
      const mi = f32x4.relaxed_madd(b1, loadLanes(m + at, lanes), f32x4.mul(oneMinusB1, g));
      const vi = f32x4.relaxed_madd(b2, loadLanes(v + at, lanes), f32x4.mul(oneMinusB2, f32x4.mul(g, g)));
      const denominator = f32x4.relaxed_madd(f32x4.sqrt(vi), rootCorrection, epsv);
      p = f32x4.sub(f32x4.mul(p, decay), f32x4.div(f32x4.mul(stepSize, mi), denominator));
      storeLanes(m + at, mi, lanes);
      storeLanes(v + at, vi, lanes);
    } else if (kind == 1) {
      p = f32x4.sub(p, f32x4.mul(lrv, f32x4.relaxed_madd(wd, p, g)));
    } else {
      const d = f32x4.relaxed_madd(wd, p, g), mi = f32x4.relaxed_madd(b1, loadLanes(m + at, lanes), d);
      p = f32x4.sub(p, f32x4.mul(lrv, f32x4.relaxed_madd(b1, mi, d)));
      storeLanes(m + at, mi, lanes);
    }
    storeLanes(param + at, p, lanes);
  }
}

/**
 * average = decay·average + (1 − decay)·value over [size] (the weight average; decay 0 copies);
 * threads split the elements in whole vectors.
 */
export function movingAverage(average: usize, value: usize, size: i32, decay: f32, thread: i32, threads: i32): void {
  const keep = f32x4.splat(decay), take = f32x4.splat(1 - decay);
  const vectors = (size + 3) >> 2;
  const i1 = shareStart(vectors, thread + 1, threads) * 4;
  for (let i = shareStart(vectors, thread, threads) * 4; i < i1; i += 4) {
    const lanes = min(4, size - i), at = <usize>i * 4;
    const mixed = f32x4.add(f32x4.mul(keep, loadLanes(average + at, lanes)), f32x4.mul(take, loadLanes(value + at, lanes)));
    storeLanes(average + at, mixed, lanes);
  }
}
