// The float64 reference of every Backend op (src/backend.ts): plain loops, no tricks, one function
// per op with the same name and argument order as the Backend method, forward and backward side by
// side. Each function writes its outputs into the RefTensor arguments with the op's own semantics
// ("overwrite" or "accumulate"), so a test can run the same call sequence on a backend and here.
// Layouts are the interface's: NHWC activations, depthwise weight [k, k, C], patch weight
// [C, 3, p, p], linear weight [N, K].
import type { BatchNormGrads, BatchNormParams, BatchNormWeights, OptimizerHyper } from "../src/backend.ts";

export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

/** A float64 tensor; zero-filled, or a copy of `data` (which must have prod(shape) elements). */
export function refTensor(shape: readonly number[], data?: ArrayLike<number>): RefTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  if (data !== undefined && data.length !== size) {
    throw new Error(`tests/reference.ts: data has ${data.length} elements, shape [${shape}] needs ${size}`);
  }
  return { shape: [...shape], data: data === undefined ? new Float64Array(size) : Float64Array.from(data) };
}

// ---- exact GELU: erf to ~1e-16 -----------------------------------------------------------------

const TWO_OVER_SQRT_PI = 1.1283791670955126;
const ONE_OVER_SQRT_PI = 0.5641895835477563;

/** erfc(x) for x >= 1.5 by its continued fraction e^{-x²}/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))). */
function erfcContinuedFraction(x: number): number {
  let t = x;
  for (let j = 120; j >= 1; j--) t = x + (j / 2) / t;
  return Math.exp(-x * x) * ONE_OVER_SQRT_PI / t;
}

/** erf(x) for |x| < 1.5 by the series 2/√π e^{-x²} Σ x(2x²)ⁿ/(1·3·…·(2n+1)) (all terms positive). */
function erfSeries(x: number): number {
  const twoX2 = 2 * x * x;
  let term = x, sum = x;
  for (let n = 0; Math.abs(term) > 1e-18 * Math.abs(sum); n++) {
    term *= twoX2 / (2 * n + 3);
    sum += term;
  }
  return TWO_OVER_SQRT_PI * Math.exp(-x * x) * sum;
}

export function erf(x: number): number {
  if (Math.abs(x) < 1.5) return erfSeries(x);
  return x > 0 ? 1 - erfcContinuedFraction(x) : erfcContinuedFraction(-x) - 1;
}

export function erfc(x: number): number {
  if (x >= 1.5) return erfcContinuedFraction(x);
  if (x <= -1.5) return 2 - erfcContinuedFraction(-x);
  return 1 - erfSeries(x);
}

/** GELU(x) = x·Φ(x), Φ the standard normal CDF = ½ erfc(−x/√2). */
export function gelu(x: number): number {
  return x * 0.5 * erfc(-x * Math.SQRT1_2);
}

/** GELU'(x) = Φ(x) + x·φ(x). */
export function geluDerivative(x: number): number {
  return 0.5 * erfc(-x * Math.SQRT1_2) + x * Math.exp(-0.5 * x * x) * ONE_OVER_SQRT_PI * Math.SQRT1_2;
}

// ---- stem: patch embedding (conv p×p, stride p) -------------------------------------------------

/** images [B, H, W, 3], weight [C, 3, p, p] → out [B, ⌊H/p⌋, ⌊W/p⌋, C] (overwrite), as torch's Conv2d. */
export function patchEmbedForward(images: RefTensor, weight: RefTensor, out: RefTensor): void {
  const [B, H, W] = images.shape, [C, , p] = weight.shape;
  const Ho = Math.floor(H / p), Wo = Math.floor(W / p);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Ho; i++) {
      for (let j = 0; j < Wo; j++) {
        for (let c = 0; c < C; c++) {
          let sum = 0;
          for (let ci = 0; ci < 3; ci++) {
            for (let di = 0; di < p; di++) {
              for (let dj = 0; dj < p; dj++) {
                sum += weight.data[((c * 3 + ci) * p + di) * p + dj] *
                  images.data[((b * H + i * p + di) * W + j * p + dj) * 3 + ci];
              }
            }
          }
          out.data[((b * Ho + i) * Wo + j) * C + c] = sum;
        }
      }
    }
  }
}

/** dWeight [C, 3, p, p] (overwrite) = Σ over patches of image pixel · dOut. */
export function patchEmbedBackwardWeight(images: RefTensor, dOut: RefTensor, dWeight: RefTensor): void {
  const [B, H, W] = images.shape, [C, , p] = dWeight.shape;
  const Ho = Math.floor(H / p), Wo = Math.floor(W / p);
  dWeight.data.fill(0);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Ho; i++) {
      for (let j = 0; j < Wo; j++) {
        for (let c = 0; c < C; c++) {
          const g = dOut.data[((b * Ho + i) * Wo + j) * C + c];
          for (let ci = 0; ci < 3; ci++) {
            for (let di = 0; di < p; di++) {
              for (let dj = 0; dj < p; dj++) {
                dWeight.data[((c * 3 + ci) * p + di) * p + dj] += g *
                  images.data[((b * H + i * p + di) * W + j * p + dj) * 3 + ci];
              }
            }
          }
        }
      }
    }
  }
}

// ---- depthwise conv k×k, stride 1, 'same' zero padding ------------------------------------------
// All three walk the same (output pixel, tap) pairs: forward gathers, the backwards scatter.

/** Calls visit(outIndex, inIndex, weightIndex) for every in-bounds (pixel, tap, channel). */
function forEachDepthwiseTap(
  shape: number[],
  k: number,
  visit: (outIndex: number, inIndex: number, weightIndex: number) => void,
): void {
  const [B, H, W, C] = shape, pad = (k - 1) / 2;
  for (let b = 0; b < B; b++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        for (let dy = 0; dy < k; dy++) {
          const yi = y + dy - pad;
          if (yi < 0 || yi >= H) continue;
          for (let dx = 0; dx < k; dx++) {
            const xi = x + dx - pad;
            if (xi < 0 || xi >= W) continue;
            for (let c = 0; c < C; c++) {
              visit(((b * H + y) * W + x) * C + c, ((b * H + yi) * W + xi) * C + c, (dy * k + dx) * C + c);
            }
          }
        }
      }
    }
  }
}

/** out[b,y,x,c] = Σ_{dy,dx} weight[dy,dx,c] · x[b, y+dy−pad, x+dx−pad, c] (overwrite). */
export function depthwiseConvForward(x: RefTensor, weight: RefTensor, out: RefTensor): void {
  out.data.fill(0);
  forEachDepthwiseTap(x.shape, weight.shape[0], (o, i, w) => {
    out.data[o] += weight.data[w] * x.data[i];
  });
}

/** dx += convᵀ(dOut) (accumulate). */
export function depthwiseConvBackwardInput(dOut: RefTensor, weight: RefTensor, dx: RefTensor): void {
  forEachDepthwiseTap(dOut.shape, weight.shape[0], (o, i, w) => {
    dx.data[i] += weight.data[w] * dOut.data[o];
  });
}

/** dWeight [k, k, C] (overwrite) = Σ over B·H·W of x-shifted · dOut. */
export function depthwiseConvBackwardWeight(x: RefTensor, dOut: RefTensor, dWeight: RefTensor): void {
  dWeight.data.fill(0);
  forEachDepthwiseTap(x.shape, dWeight.shape[0], (o, i, w) => {
    dWeight.data[w] += x.data[i] * dOut.data[o];
  });
}

// ---- linear: out [M, N] = x [M, K] · weightᵀ + bias ---------------------------------------------

export function linearForward(x: RefTensor, weight: RefTensor, bias: RefTensor | null, out: RefTensor): void {
  const [N, K] = weight.shape, M = x.data.length / K;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = bias === null ? 0 : bias.data[n];
      for (let k = 0; k < K; k++) sum += x.data[m * K + k] * weight.data[n * K + k];
      out.data[m * N + n] = sum;
    }
  }
}

/** dx [M, K] = dOut [M, N] · weight [N, K] (overwrite). */
export function linearBackwardInput(dOut: RefTensor, weight: RefTensor, dx: RefTensor): void {
  const [N, K] = weight.shape, M = dOut.data.length / N;
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let sum = 0;
      for (let n = 0; n < N; n++) sum += dOut.data[m * N + n] * weight.data[n * K + k];
      dx.data[m * K + k] = sum;
    }
  }
}

/** dWeight [N, K] = dOutᵀ · x; dBias [N] = Σ rows of dOut (both overwrite). */
export function linearBackwardWeight(
  x: RefTensor,
  dOut: RefTensor,
  dWeight: RefTensor,
  dBias: RefTensor | null,
): void {
  const [N, K] = dWeight.shape, M = x.data.length / K;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      let sum = 0;
      for (let m = 0; m < M; m++) sum += dOut.data[m * N + n] * x.data[m * K + k];
      dWeight.data[n * K + k] = sum;
    }
    if (dBias !== null) {
      let sum = 0;
      for (let m = 0; m < M; m++) sum += dOut.data[m * N + n];
      dBias.data[n] = sum;
    }
  }
}

// ---- bias + exact GELU + BatchNorm2d (+ residual) -----------------------------------------------

export const BATCH_NORM_EPS = 1e-5;
export const BATCH_NORM_MOMENTUM = 0.1;

/** u = GELU(z + bias); out = gamma·(u − mean)·rstd + beta (+ residual). See Backend for the rest. */
export function biasGeluBatchNormForward(
  z: RefTensor,
  unit: BatchNormParams<RefTensor>,
  saved: RefTensor,
  residual: RefTensor | null,
  out: RefTensor,
  training: boolean,
): void {
  const { bias, gamma, beta, runningMean, runningVar } = unit;
  const C = bias.data.length, N = z.data.length / C;
  const u = z.data.map((value, i) => gelu(value + bias.data[i % C]));
  for (let c = 0; c < C; c++) {
    let mean: number, variance: number;
    if (training) {
      mean = 0;
      for (let n = 0; n < N; n++) mean += u[n * C + c];
      mean /= N;
      variance = 0;
      for (let n = 0; n < N; n++) variance += (u[n * C + c] - mean) ** 2;
      variance /= N;
    } else {
      mean = runningMean.data[c];
      variance = runningVar.data[c];
    }
    const rstd = 1 / Math.sqrt(variance + BATCH_NORM_EPS);
    if (training) {
      saved.data[c] = mean;
      saved.data[C + c] = rstd;
      runningMean.data[c] = (1 - BATCH_NORM_MOMENTUM) * runningMean.data[c] + BATCH_NORM_MOMENTUM * mean;
      runningVar.data[c] = (1 - BATCH_NORM_MOMENTUM) * runningVar.data[c] +
        BATCH_NORM_MOMENTUM * variance * N / (N - 1);
    }
    for (let n = 0; n < N; n++) {
      const i = n * C + c;
      out.data[i] = gamma.data[c] * (u[i] - mean) * rstd + beta.data[c] +
        (residual === null ? 0 : residual.data[i]);
    }
  }
}

/**
 * Backward through the batch statistics (training mode), with x̂ = (u − mean)·rstd:
 *   dBeta = Σ dOut, dGamma = Σ dOut·x̂, du = gamma·rstd·(dOut − dBeta/N − x̂·dGamma/N),
 *   dz = du·GELU'(z + bias), dBias = Σ dz.  dz may alias dOut.
 */
export function biasGeluBatchNormBackward(
  z: RefTensor,
  unit: BatchNormWeights<RefTensor>,
  saved: RefTensor,
  dOut: RefTensor,
  dz: RefTensor,
  grads: BatchNormGrads<RefTensor>,
): void {
  const { bias, gamma } = unit, { bias: dBias, gamma: dGamma, beta: dBeta } = grads;
  const C = bias.data.length, N = z.data.length / C;
  for (let c = 0; c < C; c++) {
    const mean = saved.data[c], rstd = saved.data[C + c];
    const xHat = (n: number) => (gelu(z.data[n * C + c] + bias.data[c]) - mean) * rstd;
    let sumDOut = 0, sumDOutXHat = 0;
    for (let n = 0; n < N; n++) {
      sumDOut += dOut.data[n * C + c];
      sumDOutXHat += dOut.data[n * C + c] * xHat(n);
    }
    dBeta.data[c] = sumDOut;
    dGamma.data[c] = sumDOutXHat;
    let sumDz = 0;
    for (let n = 0; n < N; n++) {
      const i = n * C + c;
      const du = gamma.data[c] * rstd * (dOut.data[i] - sumDOut / N - xHat(n) * sumDOutXHat / N);
      dz.data[i] = du * geluDerivative(z.data[i] + bias.data[c]);
      sumDz += dz.data[i];
    }
    dBias.data[c] = sumDz;
  }
}

// ---- head: global average pool and softmax cross-entropy ----------------------------------------

/** x [B, H, W, C] → out [B, C], the mean over H·W (overwrite). */
export function averagePoolForward(x: RefTensor, out: RefTensor): void {
  const [B, H, W, C] = x.shape;
  out.data.fill(0);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < H * W; s++) {
      for (let c = 0; c < C; c++) out.data[b * C + c] += x.data[(b * H * W + s) * C + c] / (H * W);
    }
  }
}

/** dx [B, H, W, C] = dOut [B, C] / (H·W), broadcast (overwrite). */
export function averagePoolBackward(dOut: RefTensor, dx: RefTensor): void {
  const [B, H, W, C] = dx.shape;
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < H * W; s++) {
      for (let c = 0; c < C; c++) dx.data[(b * H * W + s) * C + c] = dOut.data[b * C + c] / (H * W);
    }
  }
}

/**
 * Mean cross-entropy against q = (1 − ε)·onehot + ε/K, straight from the definition −Σ q·log p;
 * dLogits = (softmax − q)/B; metrics += (Σ loss, # correct, B).
 */
export function softmaxCrossEntropy(
  logits: RefTensor,
  labels: RefTensor,
  dLogits: RefTensor | null,
  metrics: RefTensor,
  labelSmoothing = 0,
): void {
  const [B, K] = logits.shape;
  for (let b = 0; b < B; b++) {
    const row = logits.data.subarray(b * K, (b + 1) * K), label = labels.data[b];
    let argmax = 0;
    for (let k = 1; k < K; k++) if (row[k] > row[argmax]) argmax = k;
    let sumExp = 0;
    for (let k = 0; k < K; k++) sumExp += Math.exp(row[k] - row[argmax]);
    const logSumExp = row[argmax] + Math.log(sumExp);
    const target = (k: number) => (k === label ? 1 - labelSmoothing : 0) + labelSmoothing / K;
    for (let k = 0; k < K; k++) metrics.data[0] -= target(k) * (row[k] - logSumExp);
    metrics.data[1] += argmax === label ? 1 : 0;
    if (dLogits !== null) {
      for (let k = 0; k < K; k++) dLogits.data[b * K + k] = (Math.exp(row[k] - logSumExp) - target(k)) / B;
    }
  }
  metrics.data[2] += B;
}

// ---- optimizer ------------------------------------------------------------------------------------

/** sumSquares [1] += Σ g². */
export function accumulateSquares(g: RefTensor, sumSquares: RefTensor): void {
  for (const value of g.data) sumSquares.data[0] += value * value;
}

/** One AdamW, SGD or Nesterov SGD step after optional global-norm clipping (torch semantics, see Backend). */
export function optimizerStep(
  param: RefTensor,
  grad: RefTensor,
  m: RefTensor,
  v: RefTensor,
  sumSquares: RefTensor,
  hyper: OptimizerHyper,
): void {
  const scale = hyper.clipNorm > 0 ? Math.min(1, hyper.clipNorm / (Math.sqrt(sumSquares.data[0]) + 1e-6)) : 1;
  for (let i = 0; i < param.data.length; i++) {
    const g = grad.data[i] * scale;
    if (hyper.kind === "sgd") {
      param.data[i] -= hyper.lr * (g + hyper.weightDecay * param.data[i]);
      continue;
    }
    if (hyper.kind === "nesterov") {
      const d = g + hyper.weightDecay * param.data[i];
      m.data[i] = hyper.beta1 * m.data[i] + d;
      param.data[i] -= hyper.lr * (d + hyper.beta1 * m.data[i]);
      continue;
    }
    param.data[i] -= hyper.lr * hyper.weightDecay * param.data[i];
    m.data[i] = hyper.beta1 * m.data[i] + (1 - hyper.beta1) * g;
    v.data[i] = hyper.beta2 * v.data[i] + (1 - hyper.beta2) * g * g;
    const mHat = m.data[i] / (1 - hyper.beta1 ** hyper.step);
    const vHat = v.data[i] / (1 - hyper.beta2 ** hyper.step);
    param.data[i] -= hyper.lr * mHat / (Math.sqrt(vHat) + hyper.eps);
  }
}

/** average = decay·average + (1 − decay)·value. */
export function movingAverage(average: RefTensor, value: RefTensor, decay: number): void {
  for (let i = 0; i < average.data.length; i++) {
    average.data[i] = decay * average.data[i] + (1 - decay) * value.data[i];
  }
}

// ---- test data ------------------------------------------------------------------------------------

/** A seeded uniform [0, 1) generator (mulberry32), so every test shape and value is reproducible. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [−scale, scale), rounded to float32 so a float32 backend sees the same inputs. */
export function randomValues(size: number, random: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: size }, () => (2 * random() - 1) * scale);
}

/** A record of (tested, reference) tensor pairs as one record per side: a BatchNorm unit's tensors. */
export function sides<K extends string, T>(
  pairs: Record<K, { t: T; r: RefTensor }>,
): { t: Record<K, T>; r: Record<K, RefTensor> } {
  const entries = Object.entries<{ t: T; r: RefTensor }>(pairs);
  return {
    t: Object.fromEntries(entries.map(([k, p]) => [k, p.t])) as Record<K, T>,
    r: Object.fromEntries(entries.map(([k, p]) => [k, p.r])) as Record<K, RefTensor>,
  };
}
