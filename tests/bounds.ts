// Per-element error bounds of the ops, derived from their arithmetic, and the assertion that uses
// them. A backend's result for element i must lie within SAFETY·bound_i of the float64 reference,
// bound_i a first-order bound on the rounding error of that element's own computation (the sizes of
// the terms it sums, the conditioning of its divisions and square roots, GELU's and exp's accuracy)
// plus the propagated errors of its inputs. So a small element is held to its own precision, not to
// that of the tensor's largest one (max|Δ| ≤ abs + rel·max|ref| never looked at a mean of −5e-4
// sitting next to a 1/std of 300).
//
// A Bounded is a float64 value with the bound on how far a backend's copy of it may be; each bound
// function below is called before the reference op (it needs the inputs as they were) and writes
// its outputs' bounds. Sums use γ_n = n·u for n terms, valid for any summation order (Higham,
// Accuracy and Stability of Numerical Algorithms, §3.1), u the unit roundoff.
import assert from "node:assert/strict";
import type { OptimizerHyper, TensorRole } from "../src/backend.ts";
import * as ref from "./reference.ts";
import type { RefTensor } from "./reference.ts";

/** The bounds are first order and the constants rounded; twice them still catches a wrong ulp·100. */
export const SAFETY = 2;

export const F32_UNIT = 2 ** -24;

/** What a backend's arithmetic promises. */
export interface Arithmetic {
  /** Unit roundoff of its arithmetic: 2⁻²⁴ for float32, 2⁻⁵³ for float64. */
  unit: number;
  /** Rounding of a tensor allocated as an activation (inputs and outputs): 0, or 2⁻¹¹ when they are f16. */
  storage: number;
  /** Relative error of GELU's Φ(−|x|) and of the density φ(x) (erf / exp approximations). */
  tail: number;
  /** Absolute error of Φ(−|x|) on top of that (where an approximation is clamped). */
  tailAbsolute: number;
}

/**
 * The WASM kernels: float32; Φ's tail to 3e-6 relative up to its clamp at |x| = 4√2, beyond which it
 * stays Φ(−4√2) = 7.6e-9 (asm/gelu_batchnorm.ts); φ's exp2 to 1e-8.
 */
export const WASM_ARITHMETIC: Arithmetic = { unit: F32_UNIT, storage: 0, tail: 3e-6, tailAbsolute: 7.6e-9 };

/**
 * The WGSL kernels: float32; Φ from erfc to 1.2e-7 relative (shaders/gelu.wgsl) through WGSL's exp,
 * accurate to 3 + 2|x| ulps: 67 ulps (4e-6) at the |x| = 32 of |z| = 8, the largest the tests feed.
 */
export const WEBGPU_ARITHMETIC: Arithmetic = { unit: F32_UNIT, storage: 0, tail: 5e-6, tailAbsolute: 0 };

/** A float64 value and the bound on how far a backend's copy of it may be from it. */
export interface Bounded {
  r: RefTensor;
  e: Float64Array;
  /** Allocated as an "activation" (stored in the backend's activation precision); absent: "state". */
  role?: TensorRole;
}

/** Asserts |actual_i − want_i| ≤ SAFETY·bound_i for every i; the failure names the worst element. */
export function assertWithin(
  what: string,
  actual: ArrayLike<number>,
  want: ArrayLike<number>,
  bound: ArrayLike<number>,
): void {
  assert.equal(actual.length, want.length, `${what}: ${actual.length} elements, want ${want.length}`);
  let worst = -1, worstRatio = 0, failures = 0;
  for (let i = 0; i < want.length; i++) {
    const error = Math.abs(actual[i] - want[i]), allowed = SAFETY * bound[i];
    if (error <= allowed) continue;
    failures++;
    const ratio = error / allowed; // NaN (a NaN result) and Infinity (a zero bound) count as worst
    if (worst < 0 || !(ratio <= worstRatio)) [worst, worstRatio] = [i, ratio];
  }
  if (worst >= 0) {
    const i = worst, error = Math.abs(actual[i] - want[i]);
    assert.fail(
      `${what}: ${failures} of ${want.length} elements outside their bound; worst at ${i}: ` +
        `got ${actual[i]}, want ${want[i]}, |Δ| ${error} > ${SAFETY}·${bound[i]}`,
    );
  }
}

/** Float64's unit roundoff. */
const F64_UNIT = 2 ** -53;

/**
 * Central differences D(h) = (L(x + h) − L(x − h))/2h of a float64 loss() with respect to
 * values[i], i in `indices` (default: all), against analytic, each element within its own bound:
 * D(h)'s truncation h²·L‴/6, estimated from the same difference at 2h (D(2h) − D(h) ≈ 3·h²·L‴/6,
 * so |D(2h) − D(h)| covers it three times), plus the rounding of the two losses divided by the
 * step, ε·|L|/h: ε = 32·u allows a loss (a float64 sum of tens to hundreds of terms, some
 * cancelling) a rounding of 32 ulps of itself (measured: BN dz needs 8·u·1.7, the others under
 * 8·u). Returns the largest |analytic| checked, so a caller can refuse a check of zeros.
 */
export function assertFiniteDifferences(
  what: string,
  loss: () => number,
  values: Float64Array,
  analytic: ArrayLike<number>,
  indices: readonly number[] = Array.from(values, (_, i) => i),
): number {
  const bound: number[] = [], numeric: number[] = [], want: number[] = [];
  const at = (i: number, x: number) => (values[i] = x, loss());
  for (const i of indices) {
    const saved = values[i], h = 1e-5 * Math.max(1, Math.abs(saved));
    // [D(step), max |L(x ± step)|], divided by the distance actually taken (x ± step rounds).
    const difference = (step: number) => {
      const [plus, minus] = [at(i, saved + step), at(i, saved - step)];
      return [(plus - minus) / ((saved + step) - (saved - step)), Math.max(Math.abs(plus), Math.abs(minus))];
    };
    const [[narrow, magnitude], [wide]] = [difference(h), difference(2 * h)];
    values[i] = saved;
    numeric.push(narrow);
    bound.push(Math.abs(wide - narrow) + 32 * F64_UNIT * magnitude / h);
    want.push(analytic[i]);
  }
  assertWithin(`${what}: analytic vs finite difference`, want, numeric, bound);
  return Math.max(0, ...want.map(Math.abs));
}

/** The rounding of storing a tensor, on top of the arithmetic's: f16 activations. */
function storageUnit(a: Arithmetic, x: { role?: TensorRole }): number {
  return x.role === "activation" ? a.storage : 0;
}

/** The bound of a freshly written input: exact, or rounded to f16 if it is a stored activation. */
export function writtenBound(a: Arithmetic, r: RefTensor, role: TensorRole): Float64Array {
  return r.data.map((x) => storageUnit(a, { role }) * Math.abs(x));
}

/**
 * An op that is a sum of at most `terms` products per element, linear in each input (conv, linear,
 * pool, Σg²; an accumulated output counts as an input): `call` runs its reference on |values| (Σ|terms|
 * per element) and on |values| + bounds; the difference is the propagated input error, and
 * (terms + 2)·u of the second the rounding (γ_n for the sum, one for each product, one for the store).
 */
export function linearBound(
  a: Arithmetic,
  terms: number,
  outputs: Bounded[],
  call: (value: (x: Bounded) => RefTensor) => void,
): void {
  const run = (withBounds: boolean) => {
    const copies = new Map<Bounded, RefTensor>();
    const value = (x: Bounded) => {
      if (!copies.has(x)) {
        copies.set(
          x,
          ref.refTensor(x.r.shape, x.r.data.map((v, i) => Math.abs(v) + (withBounds ? x.e[i] : 0))),
        );
      }
      return copies.get(x)!;
    };
    call(value);
    return outputs.map((x) => value(x).data);
  };
  const [magnitude, widened] = [run(false), run(true)];
  outputs.forEach((x, k) => {
    const rounding = (terms + 2) * a.unit + storageUnit(a, x);
    for (let i = 0; i < x.e.length; i++) {
      x.e[i] = widened[k][i] - magnitude[k][i] + rounding * widened[k][i];
    }
  });
}

/** average = decay·average + (1 − decay)·value; (1 − decay) from a rounded decay is off by u·decay. */
export function movingAverageBound(a: Arithmetic, average: Bounded, value: Bounded, decay: number): void {
  for (let i = 0; i < average.e.length; i++) {
    const kept = decay * Math.abs(average.r.data[i]), taken = (1 - decay) * Math.abs(value.r.data[i]);
    average.e[i] = decay * average.e[i] + (1 - decay) * value.e[i] +
      a.unit * (4 * (kept + taken) + decay * Math.abs(value.r.data[i]));
  }
}

// ---- bias + GELU + BatchNorm ---------------------------------------------------------------------

/** The recomputed GELU of every element, with its bound, from z + bias. */
interface GeluTerms {
  s: Float64Array; // z + bias
  u: Float64Array; // GELU(s)
  du: Float64Array; // its bound
}

/**
 * s = z + bias is off by the inputs' bounds and one rounding; GELU(s) = max(s, 0) − |s|·Φ(−|s|) then
 * by GELU'(s)·Δs (GELU' grows like s² in the tail: a rounded s matters there), Φ's relative error
 * on |s|·Φ(−|s|), and two roundings.
 */
function geluTerms(a: Arithmetic, z: Bounded, bias: Bounded): GeluTerms {
  const C = bias.r.data.length, n = z.r.data.length;
  const s = new Float64Array(n), u = new Float64Array(n), du = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % C;
    s[i] = z.r.data[i] + bias.r.data[c];
    const ds = z.e[i] + bias.e[c] + a.unit * Math.abs(s[i]);
    const tailTerm = Math.abs(s[i]) * 0.5 * ref.erfc(Math.abs(s[i]) * Math.SQRT1_2);
    const tailBound = (a.tail + a.unit) * tailTerm + Math.abs(s[i]) * a.tailAbsolute;
    u[i] = ref.gelu(s[i]);
    du[i] = Math.abs(ref.geluDerivative(s[i])) * ds + tailBound + a.unit * Math.abs(u[i]);
  }
  return { s, u, du };
}

/** 1/√(v + eps) off by ½·rstd³·Δv and a few roundings (add, square root, divide). */
function rstdBound(a: Arithmetic, rstd: number, dVariance: number): number {
  return 0.5 * rstd ** 3 * dVariance + 4 * a.unit * rstd;
}

export interface BatchNormForwardArgs {
  z: Bounded;
  bias: Bounded;
  gamma: Bounded;
  beta: Bounded;
  runningMean: Bounded;
  runningVar: Bounded;
  saved: Bounded;
  residual: Bounded | null;
  out: Bounded;
}

/**
 * Bounds of biasGeluBatchNormForward's outputs (and, training, of saved and the running statistics).
 * mean = Σu/N: the u's bounds averaged and γ_N·mean|u|. The variance: 2/N·Σ|u − mean|·Δu, and
 * γ_N·σ·√(σ² + mean²) for the summation (Welford / shifted sums: relative error n·u·κ, κ = √(1 +
 * mean²/σ²), Chan, Golub & LeVeque 1983). out = gamma·x̂ + beta (+ residual), x̂ = (u − mean)·rstd.
 */
export function batchNormForwardBound(a: Arithmetic, x: BatchNormForwardArgs, training: boolean): void {
  const { u, du } = geluTerms(a, x.z, x.bias);
  const C = x.bias.r.data.length, N = u.length / C;
  const gammaN = (N + 2) * a.unit, momentum = ref.BATCH_NORM_MOMENTUM;
  for (let c = 0; c < C; c++) {
    let mean = x.runningMean.r.data[c], variance = x.runningVar.r.data[c];
    let dMean = x.runningMean.e[c], dVariance = x.runningVar.e[c];
    if (training) {
      let sum = 0, sumAbs = 0, sumBound = 0;
      for (let n = 0; n < N; n++) {
        [sum, sumAbs, sumBound] = [
          sum + u[n * C + c],
          sumAbs + Math.abs(u[n * C + c]),
          sumBound + du[n * C + c],
        ];
      }
      mean = sum / N;
      dMean = (sumBound + gammaN * sumAbs) / N;
      let squares = 0, spread = 0;
      for (let n = 0; n < N; n++) {
        squares += (u[n * C + c] - mean) ** 2;
        spread += Math.abs(u[n * C + c] - mean) * du[n * C + c];
      }
      variance = squares / N;
      dVariance = 2 * spread / N + gammaN * Math.sqrt(variance * (variance + mean * mean));
    }
    const rstd = 1 / Math.sqrt(variance + ref.BATCH_NORM_EPS), dRstd = rstdBound(a, rstd, dVariance);
    if (training) {
      x.saved.e[c] = dMean + a.unit * Math.abs(mean);
      x.saved.e[C + c] = dRstd;
      const [oldMean, oldVar] = [x.runningMean.r.data[c], x.runningVar.r.data[c]];
      const unbiased = N / (N - 1);
      x.runningMean.e[c] = (1 - momentum) * x.runningMean.e[c] + momentum * dMean +
        4 * a.unit * (Math.abs(oldMean) + momentum * Math.abs(mean));
      x.runningVar.e[c] = (1 - momentum) * x.runningVar.e[c] + momentum * unbiased * dVariance +
        4 * a.unit * (Math.abs(oldVar) + momentum * unbiased * variance);
    }
    const gamma = x.gamma.r.data[c], beta = x.beta.r.data[c];
    for (let n = 0; n < N; n++) {
      const i = n * C + c, centred = u[i] - mean, xHat = centred * rstd;
      const dXHat = (du[i] + dMean + a.unit * Math.abs(centred)) * rstd + Math.abs(centred) * dRstd +
        a.unit * Math.abs(xHat);
      const residual = x.residual === null ? 0 : Math.abs(x.residual.r.data[i]);
      const dResidual = x.residual === null ? 0 : x.residual.e[i];
      const terms = Math.abs(gamma * xHat) + Math.abs(beta) + residual;
      x.out.e[i] = Math.abs(gamma) * dXHat + x.gamma.e[c] * Math.abs(xHat) + x.beta.e[c] + dResidual +
        3 * a.unit * terms + storageUnit(a, x.out) * terms;
    }
  }
}

export interface BatchNormBackwardArgs {
  z: Bounded;
  bias: Bounded;
  gamma: Bounded;
  saved: Bounded;
  dOut: Bounded;
  dz: Bounded;
  dBias: Bounded;
  dGamma: Bounded;
  dBeta: Bounded;
}

/**
 * Bounds of biasGeluBatchNormBackward's outputs, term by term of
 *   dBeta = ΣdOut, dGamma = ΣdOut·x̂, du = gamma·rstd·(dOut − dBeta/N − x̂·dGamma/N), dz = du·GELU'(s),
 * with x̂ recomputed from u and the saved statistics (whose bounds carry the forward's error) and
 * GELU' = Φ(s) + s·φ(s) off by |GELU''(s)|·Δs and the tail's relative error.
 */
export function batchNormBackwardBound(a: Arithmetic, x: BatchNormBackwardArgs): void {
  const { s, u, du } = geluTerms(a, x.z, x.bias);
  const C = x.bias.r.data.length, N = u.length / C, gammaN = (N + 2) * a.unit;
  const dOut = x.dOut.r.data, dOutBound = Float64Array.from(x.dOut.e); // dz may alias dOut
  for (let c = 0; c < C; c++) {
    const mean = x.saved.r.data[c], rstd = x.saved.r.data[C + c];
    const dMean = x.saved.e[c], dRstd = x.saved.e[C + c], gamma = x.gamma.r.data[c];
    const xHat = new Float64Array(N), dXHat = new Float64Array(N);
    let dBeta = 0, dBetaAbs = 0, dBetaBound = 0, dGamma = 0, dGammaAbs = 0, dGammaBound = 0;
    for (let n = 0; n < N; n++) {
      const i = n * C + c, centred = u[i] - mean;
      xHat[n] = centred * rstd;
      dXHat[n] = (du[i] + dMean + a.unit * Math.abs(centred)) * rstd + Math.abs(centred) * dRstd +
        a.unit * Math.abs(xHat[n]);
      dBeta += dOut[i];
      dBetaAbs += Math.abs(dOut[i]);
      dBetaBound += dOutBound[i];
      dGamma += dOut[i] * xHat[n];
      dGammaAbs += Math.abs(dOut[i] * xHat[n]);
      dGammaBound += dOutBound[i] * Math.abs(xHat[n]) + Math.abs(dOut[i]) * dXHat[n];
    }
    dBetaBound += gammaN * dBetaAbs;
    dGammaBound += gammaN * dGammaAbs;
    let dBiasAbs = 0, dBiasBound = 0;
    for (let n = 0; n < N; n++) {
      const i = n * C + c;
      const inner = dOut[i] - dBeta / N - xHat[n] * dGamma / N;
      const innerTerms = Math.abs(dOut[i]) + Math.abs(dBeta) / N + Math.abs(xHat[n] * dGamma) / N;
      const dInner = dOutBound[i] + dBetaBound / N +
        (dXHat[n] * Math.abs(dGamma) + Math.abs(xHat[n]) * dGammaBound) / N +
        4 * a.unit * innerTerms;
      const dU = gamma * rstd * inner;
      const dUBound = Math.abs(gamma) * rstd * dInner +
        (x.gamma.e[c] * rstd + Math.abs(gamma) * dRstd) * Math.abs(inner) +
        2 * a.unit * Math.abs(dU);
      const slope = ref.geluDerivative(s[i]), density = Math.exp(-0.5 * s[i] * s[i]) / Math.sqrt(2 * Math.PI);
      const ds = x.z.e[i] + x.bias.e[c] + a.unit * Math.abs(s[i]);
      const cdf = 0.5 * ref.erfc(-s[i] * Math.SQRT1_2);
      const slopeBound = density * Math.abs(2 - s[i] * s[i]) * ds +
        (a.tail + 2 * a.unit) * (cdf + Math.abs(s[i]) * density) + a.tailAbsolute;
      const dz = dU * slope;
      const dzBound = dUBound * Math.abs(slope) + Math.abs(dU) * slopeBound +
        (a.unit + storageUnit(a, x.dz)) * Math.abs(dz);
      x.dz.e[i] = dzBound;
      dBiasAbs += Math.abs(dz);
      dBiasBound += dzBound;
    }
    x.dBeta.e[c] = dBetaBound;
    x.dGamma.e[c] = dGammaBound;
    x.dBias.e[c] = dBiasBound + gammaN * dBiasAbs;
  }
}

// ---- head and optimizer ----------------------------------------------------------------------------

export interface CrossEntropyArgs {
  logits: Bounded;
  dLogits: Bounded | null;
  metrics: Bounded;
}

/**
 * softmaxCrossEntropy: with t = z − max, exp(t) off by (3 + 2|t|) ulps (WGSL's exp accuracy) and the
 * logits' bounds; Σexp by γ_K; p = exp/Σ; dLogits = (p − q)/B. The loss log Σ − Σq·t: log's error
 * (3 ulps, or 2⁻²¹ absolute near 1) and γ_K of its terms; metrics[0] += Σ_b loss by γ_B.
 */
export function crossEntropyBound(
  a: Arithmetic,
  x: CrossEntropyArgs,
  labels: RefTensor,
  smoothing: number,
): void {
  const [B, K] = x.logits.r.shape, z = x.logits.r.data, dz = x.logits.e;
  let lossSum = Math.abs(x.metrics.r.data[0]), lossBound = x.metrics.e[0];
  for (let b = 0; b < B; b++) {
    const row = (k: number) => b * K + k;
    let best = 0;
    for (let k = 1; k < K; k++) if (z[row(k)] > z[row(best)]) best = k;
    const max = z[row(best)], exps = new Float64Array(K), expBounds = new Float64Array(K);
    let sum = 0, sumBound = 0;
    for (let k = 0; k < K; k++) {
      const t = z[row(k)] - max;
      exps[k] = Math.exp(t);
      expBounds[k] = exps[k] * ((4 + 2 * Math.abs(t)) * a.unit + dz[row(k)] + dz[row(best)]);
      sum += exps[k];
      sumBound += expBounds[k];
    }
    sumBound += (K + 2) * a.unit * sum;
    const logSum = Math.log(sum);
    const logBound = sumBound / sum + 8 * a.unit * Math.max(1, Math.abs(logSum));
    const target = (k: number) => (k === labels.data[b] ? 1 - smoothing : 0) + smoothing / K;
    let lossTerms = Math.abs(max) + Math.abs(logSum), lossInputBound = dz[row(best)];
    for (let k = 0; k < K; k++) {
      lossTerms += target(k) * Math.abs(z[row(k)]);
      lossInputBound += target(k) * dz[row(k)];
      if (x.dLogits !== null) {
        const p = exps[k] / sum;
        x.dLogits.e[row(k)] = (p * (expBounds[k] / exps[k] + sumBound / sum + a.unit) +
          3 * a.unit * (p + target(k))) / B;
      }
    }
    lossSum += lossTerms;
    lossBound += logBound + lossInputBound + (K + 3) * a.unit * lossTerms;
  }
  x.metrics.e[0] = lossBound + (B + 2) * a.unit * lossSum;
}

export interface OptimizerArgs {
  param: Bounded;
  grad: Bounded;
  m: Bounded;
  v: Bounded;
  sumSquares: Bounded;
}

/**
 * optimizerStep, element by element: the clip factor (½·ΔS/S relative, when it acts), g·clip, then
 * AdamW's moments (a rounded β makes 1 − β off by u·β: u·(|m| + |g|) whichever β), the bias
 * corrections 1 − β^t (from a rounded β: relative t·u·β^t/(1 − β^t), large for β2 near 1), and the
 * step lr·m̂/(√v̂ + eps); or SGD's lr·(g + wd·p); or Nesterov's (nesterovBound). The new p is
 * stored: u·|p|. A step whose bound would pass its largest possible size (g lost in its own
 * rounding) is bounded by that size instead.
 */
export function optimizerBound(a: Arithmetic, x: OptimizerArgs, hyper: OptimizerHyper): void {
  const u = a.unit, sumSquares = x.sumSquares.r.data[0], norm = Math.sqrt(sumSquares);
  const clipping = hyper.clipNorm > 0 && hyper.clipNorm < norm + 1e-6;
  const clip = clipping ? hyper.clipNorm / (norm + 1e-6) : 1;
  const clipBound = clipping ? clip * (0.5 * x.sumSquares.e[0] / sumSquares + 4 * u) : 0;
  const correction = (beta: number) => {
    const c = 1 - beta ** hyper.step;
    return [c, c * (hyper.step * u * beta ** hyper.step / c + u)];
  };
  const [c1, c1Bound] = correction(hyper.beta1), [c2, c2Bound] = correction(hyper.beta2);
  for (let i = 0; i < x.param.r.data.length; i++) {
    const p = x.param.r.data[i], g = x.grad.r.data[i] * clip;
    const gBound = x.grad.e[i] * clip + Math.abs(x.grad.r.data[i]) * clipBound + u * Math.abs(g);
    if (hyper.kind === "sgd") {
      const update = hyper.lr * (g + hyper.weightDecay * p);
      x.param.e[i] = x.param.e[i] * (1 + hyper.lr * hyper.weightDecay) + hyper.lr * gBound +
        4 * u * hyper.lr * (Math.abs(g) + hyper.weightDecay * Math.abs(p)) + u * Math.abs(p - update);
      continue;
    }
    if (hyper.kind === "nesterov") {
      nesterovBound(a, x, hyper, i, g, gBound);
      continue;
    }
    const [m0, v0] = [x.m.r.data[i], x.v.r.data[i]];
    const m = hyper.beta1 * m0 + (1 - hyper.beta1) * g, v = hyper.beta2 * v0 + (1 - hyper.beta2) * g * g;
    const mBound = hyper.beta1 * x.m.e[i] + (1 - hyper.beta1) * gBound + 4 * u * (Math.abs(m0) + Math.abs(g));
    const vBound = hyper.beta2 * x.v.e[i] + (1 - hyper.beta2) * (2 * Math.abs(g) + gBound) * gBound +
      4 * u * (v0 + g * g);
    const mHat = m / c1, vHat = v / c2, root = Math.sqrt(vHat), denominator = root + hyper.eps;
    const mHatBound = mBound / c1 + Math.abs(mHat) * c1Bound / c1 + 2 * u * Math.abs(mHat);
    const vHatBound = vBound / c2 + vHat * c2Bound / c2 + 2 * u * vHat;
    const rootBound = Math.min(0.5 * vHatBound / Math.max(root, 1e-300), Math.sqrt(vHatBound)) + 2 * u * root;
    const step = hyper.lr * mHat / denominator;
    let stepBound = hyper.lr *
        (mHatBound / denominator + Math.abs(mHat) * (rootBound + u * denominator) / denominator ** 2) +
      4 * u * Math.abs(step);
    const largest = hyper.lr * (Math.abs(mHat) + mHatBound) / (Math.max(root - rootBound, 0) + hyper.eps);
    stepBound = Math.min(stepBound, Math.abs(step) + largest);
    const decayed = p * (1 - hyper.lr * hyper.weightDecay);
    x.param.e[i] = x.param.e[i] + 3 * u * Math.abs(p) + stepBound + u * Math.abs(decayed - step);
    x.m.e[i] = mBound;
    x.v.e[i] = vBound;
  }
}

/**
 * Nesterov SGD for element i from g = the clipped gradient (error gBound): d = g + wd·p and
 * m = β1·m + d, each product and sum rounded (β1 and wd as float32: u each), then
 * p −= lr·(d + β1·m). p's own error reaches the new p through d twice (d, β1·m): ×(1 + lr·wd·(1 + β1)).
 */
function nesterovBound(
  a: Arithmetic,
  x: OptimizerArgs,
  hyper: OptimizerHyper,
  i: number,
  g: number,
  gBound: number,
) {
  const u = a.unit, p = x.param.r.data[i], m0 = x.m.r.data[i], beta = hyper.beta1, wd = hyper.weightDecay;
  const d = g + wd * p, m = beta * m0 + d;
  const dRounding = gBound + 3 * u * (Math.abs(g) + wd * Math.abs(p));
  const mRounding = beta * x.m.e[i] + dRounding + 3 * u * (beta * Math.abs(m0) + Math.abs(d));
  const step = hyper.lr * (d + beta * m);
  const stepBound = hyper.lr * (dRounding + beta * mRounding) +
    4 * u * hyper.lr * (Math.abs(d) + beta * Math.abs(m));
  x.m.e[i] = mRounding + wd * x.param.e[i];
  x.param.e[i] = x.param.e[i] * (1 + hyper.lr * wd * (1 + beta)) + stepBound + u * Math.abs(p - step);
}
