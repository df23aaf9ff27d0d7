// Checks any Backend against the float64 reference (tests/reference.ts), op by op, on random
// shapes chosen to hit the edges: k 3/5/7/9/11, p 1/2/4, batch 1, channel counts that are not
// multiples of 4 (the SIMD width) nor of 16/64 (GEMM tiles), odd N = B·H·W. Overwrite outputs start
// full of garbage (so a partial write fails); accumulate outputs start random. Results come back
// only through backend.read, so the same harness serves the WASM and the WebGPU backend:
//
//   conformanceTests("wasm", () => WasmBackend.create(), WASM_ARITHMETIC);
//
// Every element of an output must lie within its own bound (tests/bounds.ts), computed before each
// reference op from the inputs' values and bounds and the backend's arithmetic.
import assert from "node:assert/strict";
import type {
  Backend,
  BatchNormParams,
  BatchNormWeights,
  OptimizerHyper,
  Tensor,
  TensorRole,
} from "../src/backend.ts";
import * as ref from "./reference.ts";
import * as bounds from "./bounds.ts";
import type { Arithmetic, Bounded } from "./bounds.ts";

/** A backend tensor and its float64 twin, holding the same values up to the twin's bound e. */
export interface Pair extends Bounded {
  t: Tensor;
}

/** Builds pairs on one backend and compares them (also tests/webgpu_test.ts's own kernel checks). */
export class Harness {
  #random: () => number;

  constructor(readonly backend: Backend, readonly arithmetic: Arithmetic, seed = 20240611) {
    this.#random = ref.seededRandom(seed);
  }

  /** Random values in [−scale, scale) on both sides. */
  random(shape: number[], scale = 1, role: TensorRole = "state"): Pair {
    return this.of(shape, ref.randomValues(shape.reduce((a, b) => a * b, 1), this.#random, scale), role);
  }

  /** A random tensor allocated as the model allocates its activations (f16 under --precision f16). */
  activation(shape: number[], scale = 1): Pair {
    return this.random(shape, scale, "activation");
  }

  /** Random values in [low, high) (e.g. positive variances). */
  uniform(shape: number[], low: number, high: number): Pair {
    const values = ref.randomValues(shape.reduce((a, b) => a * b, 1), this.#random, 1);
    return this.of(shape, values.map((x) => low + (x + 1) / 2 * (high - low)));
  }

  /** An overwrite output: garbage on both sides, so an element the op forgets to write fails. */
  garbage(shape: number[], role: TensorRole = "state"): Pair {
    return this.random(shape, 1e3, role);
  }

  /** biasGeluBatchNormForward on both sides, the outputs' bounds set (tests/bounds.ts). */
  batchNormForward(
    z: Pair,
    unit: BatchNormParams<Pair>,
    saved: Pair,
    residual: Pair | null,
    out: Pair,
    training: boolean,
    geluOut: Pair | null = null,
  ) {
    const sides = ref.sides(unit);
    const backend = this.backend;
    backend.biasGeluBatchNormForward(z.t, sides.t, saved.t, residual?.t ?? null, out.t, training, geluOut?.t);
    bounds.batchNormForwardBound(this.arithmetic, { z, ...unit, saved, residual, out }, training);
    ref.biasGeluBatchNormForward(z.r, sides.r, saved.r, residual?.r ?? null, out.r, training);
  }

  /** Fresh garbage gradients of a unit of C channels. */
  batchNormGrads(C: number) {
    const [dBias, dGamma, dBeta] = [0, 1, 2].map(() => this.garbage([C]));
    return { dBias, dGamma, dBeta };
  }

  /**
   * biasGeluBatchNormBackward on both sides into `grads` (fresh garbage by default; dz may be dOut);
   * returns them. geluOut: the last training forward's, or null (the reference needs neither).
   */
  batchNormBackward(
    z: Pair,
    unit: BatchNormWeights<Pair>,
    saved: Pair,
    dOut: Pair,
    dz: Pair,
    geluOut: Pair | null,
    grads = this.batchNormGrads(unit.bias.r.data.length),
  ) {
    const { dBias, dGamma, dBeta } = grads;
    const weights = ref.sides({ bias: unit.bias, gamma: unit.gamma });
    const sides = ref.sides({ bias: dBias, gamma: dGamma, beta: dBeta });
    this.backend.biasGeluBatchNormBackward(z.t, weights.t, saved.t, dOut.t, dz.t, sides.t, geluOut?.t);
    const { bias, gamma } = unit;
    bounds.batchNormBackwardBound(this.arithmetic, { z, bias, gamma, saved, dOut, dz, dBias, dGamma, dBeta });
    ref.biasGeluBatchNormBackward(z.r, weights.r, saved.r, dOut.r, dz.r, sides.r);
    return grads;
  }

  of(shape: number[], values: Float32Array, role: TensorRole = "state"): Pair {
    const t = this.backend.tensor(shape, role);
    this.backend.write(t, values);
    const r = ref.refTensor(shape, values);
    return { t, r, e: bounds.writtenBound(this.arithmetic, r, role), role };
  }

  /** Sets the outputs' bounds for an op summing at most `terms` products (see linearBound). */
  linear(terms: number, outputs: Pair[], call: (value: (x: Bounded) => ref.RefTensor) => void): void {
    bounds.linearBound(this.arithmetic, terms, outputs, call);
  }

  integer(max: number): number {
    return Math.floor(this.#random() * max);
  }

  /** Asserts that every element of the backend's tensor is within its bound of the reference. */
  async expectClose(what: string, pair: Pair): Promise<void> {
    bounds.assertWithin(`${what} [${pair.r.shape}]`, await this.backend.read(pair.t), pair.r.data, pair.e);
  }
}

/** Registers one Deno test, with a step per op family, running `name`'s backend against the reference. */
export function conformanceTests(
  name: string,
  makeBackend: () => Promise<Backend>,
  arithmetic: Arithmetic,
): void {
  Deno.test({
    name: `${name} backend matches the float64 reference`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      const backend = await makeBackend();
      const h = new Harness(backend, arithmetic);
      try {
        await t.step("write, read, fill, view, pack", () => memory(h));
        await t.step("patch embedding p 1/2/3/4", () => patchEmbed(h));
        await t.step("depthwise conv k 3/5/7/9/11: forward, dx (accumulate), dWeight", () => depthwise(h));
        await t.step("linear: bias / no bias, dBias / none, sizes off the tiles", () => linear(h));
        await t.step(
          "bias-GELU-BatchNorm: training, eval, residual, running stats, backward",
          () => batchNorm(h),
        );
        await t.step(
          "linear and depthwise conv, each then bias-GELU-BatchNorm, forward and backward (a backend may fuse them)",
          () => producerThenBatchNorm(h),
        );
        await t.step("average pool forward and backward", () => averagePool(h));
        await t.step("softmax cross-entropy: dLogits, ties, metrics accumulate", () => crossEntropy(h));
        await t.step(
          "accumulateSquares and optimizerStep: adamw / sgd / nesterov, clipping off / on / inactive",
          () => optimizer(h),
        );
        await t.step("movingAverage: decay 0 (copy), 0.9, 0.999", () => movingAverage(h));
        await t.step("partial batches through view()", () => partialBatch(h));
      } finally {
        backend.dispose();
      }
    },
  });
}

async function memory(h: Harness): Promise<void> {
  const b = h.backend, fresh = b.tensor([3, 5]);
  assert.deepEqual(await b.read(fresh), new Float32Array(15), "tensor() is zero-filled");
  const x = h.random([3, 5]);
  assert.deepEqual(await b.read(x.t), Float32Array.from(x.r.data), "write then read");
  const head = b.view(x.t, [2, 5]);
  assert.deepEqual(head.shape, [2, 5]);
  assert.equal(head.size, 10);
  b.fill(head, 2.5);
  const expected = Float32Array.from(x.r.data).fill(2.5, 0, 10);
  assert.deepEqual(await b.read(x.t), expected, "fill through a view changes only its elements");
  assert.deepEqual(await b.read(head), expected.subarray(0, 10), "read of a view");
  b.fill(x.t, -1);
  assert.deepEqual(await b.read(x.t), new Float32Array(15).fill(-1));

  // pack: separate tensors in one storage; `whole` holds them in order with zero padding between.
  const { whole, parts } = b.pack([[3], [2, 5], [7], [1, 1]]);
  assert.deepEqual(parts.map((p) => p.shape), [[3], [2, 5], [7], [1, 1]]);
  const values = parts.map((p, k) => Float32Array.from({ length: p.size }, (_, j) => 100 * (k + 1) + j));
  parts.forEach((p, k) => b.write(p, values[k]));
  b.fill(parts[2], 7); // an op's output at a part's offset
  values[2].fill(7);
  (await b.readMany(parts)).forEach((got, k) => assert.deepEqual(got, values[k], `pack part ${k}`));
  const nonzero = (await b.read(whole)).filter((v) => v !== 0);
  assert.deepEqual(
    nonzero,
    Float32Array.from(values.flatMap((v) => [...v])),
    "pack: whole is the parts in order",
  );
}

async function patchEmbed(h: Harness): Promise<void> {
  // `extra`: pixels past the last whole patch, which a stride-p conv without padding never reads.
  for (
    const [p, B, rows, cols, C, extra] of [
      [1, 1, 3, 5, 5, 0],
      [2, 3, 2, 3, 17, 0],
      [4, 1, 3, 3, 70, 0],
      [2, 1, 5, 5, 16, 1],
      [3, 2, 3, 2, 9, 2],
    ]
  ) {
    const images = h.activation([B, rows * p + extra, cols * p + extra, 3]);
    const weight = h.random([C, 3, p, p], 0.5);
    const out = h.garbage([B, rows, cols, C], "activation");
    h.backend.patchEmbedForward(images.t, weight.t, out.t);
    h.linear(3 * p * p, [out], (v) => ref.patchEmbedForward(v(images), v(weight), v(out)));
    ref.patchEmbedForward(images.r, weight.r, out.r);
    await h.expectClose(`patchEmbedForward p=${p}`, out);

    const dOut = h.random(out.r.shape), dWeight = h.garbage(weight.r.shape);
    h.backend.patchEmbedBackwardWeight(images.t, dOut.t, dWeight.t);
    h.linear(B * rows * cols, [dWeight], (v) => ref.patchEmbedBackwardWeight(v(images), v(dOut), v(dWeight)));
    ref.patchEmbedBackwardWeight(images.r, dOut.r, dWeight.r);
    await h.expectClose(`patchEmbedBackwardWeight p=${p}`, dWeight);
  }
}

async function depthwise(h: Harness): Promise<void> {
  const shapes = [ // [k, B, H, W, C]; k = 9 on a 5×7 image makes every tap hit the border.
    [3, 1, 5, 7, 3],
    [5, 2, 7, 5, 13],
    [7, 1, 9, 9, 20],
    [9, 1, 5, 7, 7],
    [9, 1, 11, 11, 70],
    [5, 1, 16, 16, 36],
    [11, 1, 6, 9, 6], // the weight gradient's taps in groups of 5, 5 and 1
  ];
  for (const [k, B, H, W, C] of shapes) {
    const what = `k=${k} [${B},${H},${W},${C}]`;
    const x = h.activation([B, H, W, C]), weight = h.random([k, k, C], 0.5);
    const out = h.garbage(x.r.shape, "activation");
    h.backend.depthwiseConvForward(x.t, weight.t, out.t);
    h.linear(k * k, [out], (v) => ref.depthwiseConvForward(v(x), v(weight), v(out)));
    ref.depthwiseConvForward(x.r, weight.r, out.r);
    await h.expectClose(`depthwiseConvForward ${what}`, out);

    const dOut = h.random(x.r.shape), dx = h.random(x.r.shape);
    h.backend.depthwiseConvBackwardInput(dOut.t, weight.t, dx.t);
    h.linear(k * k + 1, [dx], (v) => ref.depthwiseConvBackwardInput(v(dOut), v(weight), v(dx)));
    ref.depthwiseConvBackwardInput(dOut.r, weight.r, dx.r);
    await h.expectClose(`depthwiseConvBackwardInput (accumulate) ${what}`, dx);

    const dWeight = h.garbage(weight.r.shape);
    h.backend.depthwiseConvBackwardWeight(x.t, dOut.t, dWeight.t);
    h.linear(B * H * W, [dWeight], (v) => ref.depthwiseConvBackwardWeight(v(x), v(dOut), v(dWeight)));
    ref.depthwiseConvBackwardWeight(x.r, dOut.r, dWeight.r);
    await h.expectClose(`depthwiseConvBackwardWeight ${what}`, dWeight);
  }
}

async function linear(h: Harness): Promise<void> {
  const shapes = [[1, 3, 10], [37, 19, 10], [129, 70, 67], [65, 256, 17], [17, 5, 256]]; // [M, K, N]
  for (const [index, [M, K, N]] of shapes.entries()) {
    const withBias = index % 2 === 0, what = `[${M},${K}]·[${N},${K}]ᵀ ${withBias ? "bias" : "no bias"}`;
    const x = h.activation([M, K]), weight = h.random([N, K], 0.5), bias = withBias ? h.random([N]) : null;
    const out = h.garbage([M, N], "activation");
    h.backend.linearForward(x.t, weight.t, bias?.t ?? null, out.t);
    h.linear(K + 1, [out], (v) => ref.linearForward(v(x), v(weight), bias && v(bias), v(out)));
    ref.linearForward(x.r, weight.r, bias?.r ?? null, out.r);
    await h.expectClose(`linearForward ${what}`, out);

    const dOut = h.random([M, N]), dx = h.garbage([M, K]);
    h.backend.linearBackwardInput(dOut.t, weight.t, dx.t);
    h.linear(N, [dx], (v) => ref.linearBackwardInput(v(dOut), v(weight), v(dx)));
    ref.linearBackwardInput(dOut.r, weight.r, dx.r);
    await h.expectClose(`linearBackwardInput ${what}`, dx);

    const dWeight = h.garbage([N, K]), dBias = withBias ? h.garbage([N]) : null;
    h.backend.linearBackwardWeight(x.t, dOut.t, dWeight.t, dBias?.t ?? null);
    h.linear(
      M,
      dBias ? [dWeight, dBias] : [dWeight],
      (v) => ref.linearBackwardWeight(v(x), v(dOut), v(dWeight), dBias && v(dBias)),
    );
    ref.linearBackwardWeight(x.r, dOut.r, dWeight.r, dBias?.r ?? null);
    await h.expectClose(`linearBackwardWeight dWeight ${what}`, dWeight);
    if (dBias !== null) await h.expectClose(`linearBackwardWeight dBias ${what}`, dBias);
  }
}

async function batchNorm(h: Harness): Promise<void> {
  // zScale 8 reaches GELU's far tails (|z| > 5.7, where Φ is within 1e-8 of 0 or 1).
  for (
    const [B, H, W, C, zScale] of [[1, 3, 5, 7, 3], [2, 5, 5, 20, 8], [1, 7, 7, 67, 3], [3, 4, 4, 16, 1]]
  ) {
    const what = `[${B},${H},${W},${C}]`, shape = [B, H, W, C];
    const z = h.activation(shape, zScale), bias = h.random([C]), gamma = h.random([C]), beta = h.random([C]);
    const runningMean = h.random([C]), runningVar = h.uniform([C], 0.5, 1.5);
    const saved = h.garbage([2, C]), unit = { bias, gamma, beta, runningMean, runningVar };
    // The second training forward also keeps its GELU output, for the backward below.
    const geluOut = h.garbage(shape, "activation");
    for (const residual of [null, h.activation(shape)]) {
      const mode = `${what} residual ${residual === null ? "null" : "added"}`;
      const out = h.garbage(shape, "activation");
      h.batchNormForward(z, unit, saved, residual, out, true, residual === null ? null : geluOut);
      await h.expectClose(`biasGeluBatchNormForward training ${mode}`, out);
      await h.expectClose(`biasGeluBatchNormForward saved ${mode}`, saved);
      await h.expectClose(`biasGeluBatchNormForward runningMean ${mode}`, runningMean);
      await h.expectClose(`biasGeluBatchNormForward runningVar ${mode}`, runningVar);

      const evalOut = h.garbage(shape, "activation");
      h.batchNormForward(z, unit, saved, residual, evalOut, false);
      await h.expectClose(`biasGeluBatchNormForward eval ${mode}`, evalOut);
      await h.expectClose(`eval leaves saved alone ${mode}`, saved);
      await h.expectClose(`eval leaves runningMean alone ${mode}`, runningMean);
      await h.expectClose(`eval leaves runningVar alone ${mode}`, runningVar);
    }

    // Backward of the last training forward (saved holds its statistics); dz separate, then aliasing
    // dOut; GELU evaluated again, then read from the forward's output.
    for (const [aliased, kept] of [[false, null], [true, null], [false, geluOut], [true, geluOut]] as const) {
      const dOut = h.random(shape), dz = aliased ? dOut : h.garbage(shape);
      const { dBias, dGamma, dBeta } = h.batchNormBackward(z, { bias, gamma }, saved, dOut, dz, kept);
      const mode = `${what}${aliased ? " dz aliases dOut" : ""}${kept ? ", GELU output kept" : ""}`;
      await h.expectClose(`biasGeluBatchNormBackward dz ${mode}`, dz);
      await h.expectClose(`biasGeluBatchNormBackward dBias ${mode}`, dBias);
      await h.expectClose(`biasGeluBatchNormBackward dGamma ${mode}`, dGamma);
      await h.expectClose(`biasGeluBatchNormBackward dBeta ${mode}`, dBeta);
    }
  }
}

/** An op writing a unit's z (forward) or dOut (backward) on both sides, its output's bound set. */
type Producer = (out: Pair) => void;

/**
 * The pointwise and depthwise convs and the unit after each, as the model calls them: the WebGPU
 * backend reduces the unit's statistics (forward) and sums (backward) in the conv's epilogue, per
 * tile (a GEMM's 128 rows, a depthwise conv's image), so the shapes span several tiles with a
 * short last one, more than one tile of columns or block of channels, and more tiles than the
 * merged chunks (33 row tiles, 40 images). Every tensor is made before the conv, since a write
 * between the two ops launches the conv alone.
 */
async function producerThenBatchNorm(h: Harness): Promise<void> {
  for (
    const [B, H, W, K, C, N] of [[3, 10, 10, 19, 70, 9], [42, 10, 10, 8, 24, 5], [1, 16, 16, 16, 160, 33]]
  ) {
    const map = (channels: number) => [B, H, W, channels];
    const x = h.activation(map(K)), weight = h.random([C, K], 0.5);
    const dNext = h.random(map(N)), weightNext = h.random([N, C], 0.5);
    await unitAfter(h, `linear [${B * H * W},${K}]·[${C},${K}]ᵀ`, map(C), B === 3, (z) => {
      h.backend.linearForward(x.t, weight.t, null, z.t);
      h.linear(K, [z], (v) => ref.linearForward(v(x), v(weight), null, v(z)));
      ref.linearForward(x.r, weight.r, null, z.r);
    }, (dOut) => {
      h.backend.linearBackwardInput(dNext.t, weightNext.t, dOut.t);
      h.linear(N, [dOut], (v) => ref.linearBackwardInput(v(dNext), v(weightNext), v(dOut)));
      ref.linearBackwardInput(dNext.r, weightNext.r, dOut.r);
    });
  }
  for (const [k, B, H, W, C] of [[5, 3, 7, 5, 70], [3, 40, 4, 4, 6], [9, 2, 6, 9, 130]]) {
    const shape = [B, H, W, C], x = h.activation(shape), weight = h.random([k, k, C], 0.5);
    const dNext = h.random(shape);
    await unitAfter(h, `depthwise k=${k} [${shape}]`, shape, B !== 40, (z) => {
      h.backend.depthwiseConvForward(x.t, weight.t, z.t);
      h.linear(k * k, [z], (v) => ref.depthwiseConvForward(v(x), v(weight), v(z)));
      ref.depthwiseConvForward(x.r, weight.r, z.r);
    }, (dOut) => { // the input gradient adds into dOut, which holds the residual's gradient
      h.backend.depthwiseConvBackwardInput(dNext.t, weight.t, dOut.t);
      h.linear(k * k + 1, [dOut], (v) => ref.depthwiseConvBackwardInput(v(dNext), v(weight), v(dOut)));
      ref.depthwiseConvBackwardInput(dNext.r, weight.r, dOut.r);
    });
  }
}

/** A unit's training forward right after `forward` wrote its z, its backward right after `backward` wrote dOut. */
async function unitAfter(
  h: Harness,
  what: string,
  shape: number[],
  withResidual: boolean,
  forward: Producer,
  backward: Producer,
): Promise<void> {
  const C = shape[3], z = h.garbage(shape, "activation");
  const bias = h.random([C]), gamma = h.random([C]), beta = h.random([C]);
  const runningMean = h.random([C]), runningVar = h.uniform([C], 0.5, 1.5), saved = h.garbage([2, C]);
  const residual = withResidual ? h.activation(shape) : null, out = h.garbage(shape, "activation");
  forward(z);
  h.batchNormForward(z, { bias, gamma, beta, runningMean, runningVar }, saved, residual, out, true);
  for (const [name, pair] of Object.entries({ out, saved, runningMean, runningVar })) {
    await h.expectClose(`${what} → biasGeluBatchNormForward ${name}`, pair);
  }
  const dOut = h.random(shape), dz = h.garbage(shape), grads = h.batchNormGrads(C);
  backward(dOut);
  h.batchNormBackward(z, { bias, gamma }, saved, dOut, dz, null, grads);
  for (const [name, pair] of Object.entries({ dOut, dz, ...grads })) {
    await h.expectClose(`${what} → biasGeluBatchNormBackward ${name}`, pair);
  }
}

async function averagePool(h: Harness): Promise<void> {
  for (const shape of [[1, 3, 5, 7], [3, 4, 4, 20], [2, 5, 3, 67]]) {
    const x = h.activation(shape), out = h.garbage([shape[0], shape[3]]);
    h.backend.averagePoolForward(x.t, out.t);
    h.linear(shape[1] * shape[2], [out], (v) => ref.averagePoolForward(v(x), v(out)));
    ref.averagePoolForward(x.r, out.r);
    await h.expectClose(`averagePoolForward [${shape}]`, out);

    const dOut = h.random(out.r.shape), dx = h.garbage(shape);
    h.backend.averagePoolBackward(dOut.t, dx.t);
    h.linear(1, [dx], (v) => ref.averagePoolBackward(v(dOut), v(dx)));
    ref.averagePoolBackward(dOut.r, dx.r);
    await h.expectClose(`averagePoolBackward [${shape}]`, dx);
  }
}

async function crossEntropy(h: Harness): Promise<void> {
  const metrics = h.of([3], Float32Array.of(1.5, 2, 3));
  for (const [B, K] of [[1, 10], [7, 3], [33, 10]]) {
    const logits = h.random([B, K], 5);
    const labels = h.of([B], Float32Array.from({ length: B }, () => h.integer(K)));
    if (K >= 3) { // a three-way tie in the first row: the first maximum (index 0) is the prediction
      const row = Float32Array.from({ length: K }, (_, k) => (k < 3 ? 7 : -1));
      h.backend.write(h.backend.view(logits.t, [1, K]), row);
      logits.r.data.set(row);
    }
    for (
      const [dLogits, smoothing] of [[h.garbage([B, K]), 0], [h.garbage([B, K]), 0.2], [null, 0.1]] as const
    ) {
      const what = `[${B},${K}] ${dLogits === null ? "eval" : "training"} smoothing ${smoothing}`;
      h.backend.softmaxCrossEntropy(logits.t, labels.t, dLogits?.t ?? null, metrics.t, smoothing);
      bounds.crossEntropyBound(h.arithmetic, { logits, dLogits, metrics }, labels.r, smoothing);
      ref.softmaxCrossEntropy(logits.r, labels.r, dLogits?.r ?? null, metrics.r, smoothing);
      if (dLogits !== null) await h.expectClose(`softmaxCrossEntropy dLogits ${what}`, dLogits);
      const got = await h.backend.read(metrics.t);
      assert.deepEqual([got[1], got[2]], [metrics.r.data[1], metrics.r.data[2]], `correct, count ${what}`);
      await h.expectClose(`softmaxCrossEntropy metrics ${what}`, metrics);
    }
  }
  // An out-of-range, negative or fractional label is refused before anything reads out of bounds.
  const logits = h.random([4, 10]);
  for (const bad of [10, 1e9, -1, 2.5, NaN]) {
    const labels = h.of([4], Float32Array.of(1, 2, bad, 3));
    assert.throws(
      () => h.backend.softmaxCrossEntropy(logits.t, labels.t, null, metrics.t, 0),
      /labels must be class indices in \[0, 10\)/,
      `label ${bad}`,
    );
  }
  const labels = h.of([4], Float32Array.of(1, 2, 11, 3));
  h.backend.write(h.backend.view(labels.t, [2]), Float32Array.of(0, 0)); // the 11 stays past the view
  assert.throws(() => h.backend.softmaxCrossEntropy(logits.t, labels.t, null, metrics.t, 0), /class indices/);
  h.backend.fill(labels.t, 9);
  h.backend.softmaxCrossEntropy(logits.t, labels.t, null, metrics.t, 0);
}

async function optimizer(h: Harness): Promise<void> {
  const sizes = [7, 1031];
  const grads = sizes.map((size) => h.random([size]));
  const sumSquares = h.of([1], Float32Array.of(0.25));
  for (const g of grads) {
    h.backend.accumulateSquares(g.t, sumSquares.t);
    h.linear(g.r.data.length + 1, [sumSquares], (v) => ref.accumulateSquares(v(g), v(sumSquares)));
    ref.accumulateSquares(g.r, sumSquares.r);
  }
  await h.expectClose("accumulateSquares", sumSquares);
  const norm = Math.sqrt(sumSquares.r.data[0]);

  for (const kind of ["adamw", "sgd", "nesterov"] as const) {
    for (const clipNorm of [0, norm / 3, norm * 3]) {
      const hyper: OptimizerHyper = {
        kind,
        lr: 0.05,
        weightDecay: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        step: 3,
        clipNorm,
      };
      for (const [i, size] of sizes.entries()) {
        const what = `${kind} clipNorm ${
          clipNorm === 0 ? "0" : clipNorm < norm ? "active" : "inactive"
        } [${size}]`;
        const param = h.random([size]), m = h.random([size], 0.1), v = h.uniform([size], 1e-4, 1e-2);
        const before = Float64Array.from(param.r.data);
        h.backend.optimizerStep(param.t, grads[i].t, m.t, v.t, sumSquares.t, hyper);
        bounds.optimizerBound(h.arithmetic, { param, grad: grads[i], m, v, sumSquares }, hyper);
        ref.optimizerStep(param.r, grads[i].r, m.r, v.r, sumSquares.r, hyper);
        // Compare the update itself (p_new − p_old): it is ~lr, far smaller than p.
        const after = await h.backend.read(param.t);
        const update = (data: ArrayLike<number>) => Float32Array.from(before, (p, j) => data[j] - p);
        const step = h.of([size], update(after));
        step.r.data.set(Float64Array.from(before, (p, j) => param.r.data[j] - p));
        step.e.set(param.e.map((e, j) => e + h.arithmetic.unit * Math.abs(step.r.data[j]))); // the f32 update
        await h.expectClose(`optimizerStep update ${what}`, step);
        if (kind !== "sgd") await h.expectClose(`optimizerStep m ${what}`, m);
        if (kind === "adamw") await h.expectClose(`optimizerStep v ${what}`, v);
      }
    }
  }
}

async function movingAverage(h: Harness): Promise<void> {
  for (const size of [7, 1031]) {
    for (const decay of [0, 0.9, 0.999]) {
      const average = h.random([size]), value = h.random([size]);
      h.backend.movingAverage(average.t, value.t, decay);
      bounds.movingAverageBound(h.arithmetic, average, value, decay);
      ref.movingAverage(average.r, value.r, decay);
      await h.expectClose(`movingAverage [${size}] decay ${decay}`, average);
    }
  }
}

/** The last batch of an epoch is smaller: ops on views must touch only the view's elements. */
async function partialBatch(h: Harness): Promise<void> {
  const [B, b, H, W, C] = [4, 3, 5, 5, 7];
  const backend = h.backend;
  const x = h.activation([B, H, W, C]), weight = h.random([3, 3, C], 0.5);
  const z = h.garbage([B, H, W, C], "activation"), out = h.garbage([B, H, W, C], "activation");
  const pooled = h.garbage([B, C]);
  const bias = h.random([C]), gamma = h.random([C]), beta = h.random([C]);
  const runningMean = h.random([C]), runningVar = h.uniform([C], 0.5, 1.5), saved = h.garbage([2, C]);
  const view = (pair: Pair, shape: number[]): Pair => ({
    t: backend.view(pair.t, shape),
    r: { shape, data: pair.r.data.subarray(0, shape.reduce((p, q) => p * q, 1)) },
    e: pair.e.subarray(0, shape.reduce((p, q) => p * q, 1)),
    role: pair.role,
  });
  const [xv, zv, outv] = [x, z, out].map((pair) => view(pair, [b, H, W, C]));
  const pooledView = view(pooled, [b, C]);
  backend.depthwiseConvForward(xv.t, weight.t, zv.t);
  h.linear(9, [zv], (v) => ref.depthwiseConvForward(v(xv), v(weight), v(zv)));
  ref.depthwiseConvForward(xv.r, weight.r, zv.r);
  h.batchNormForward(zv, { bias, gamma, beta, runningMean, runningVar }, saved, xv, outv, true);
  backend.averagePoolForward(outv.t, pooledView.t);
  h.linear(H * W, [pooledView], (v) => ref.averagePoolForward(v(outv), v(pooledView)));
  ref.averagePoolForward(outv.r, pooledView.r);
  // The full tensors: the view's part computed, the last sample still garbage.
  await h.expectClose("depthwise on a view", z);
  await h.expectClose("bias-GELU-BN on a view", out);
  await h.expectClose("BN statistics of a partial batch", saved);
  await h.expectClose("running statistics of a partial batch", runningVar);
  await h.expectClose("average pool on a view", pooled);
}
