// The WASM backend's ops: each Backend op checks its shapes (src/shapes.ts), takes the scratch
// its kernels need and launches them (asm/) on every thread of the pool. Memory, tensors and
// threads are the runtime's (backend.ts, the subclass); this file only launches. Reductions are
// two-level: each thread writes float64 partials into scratch, a second kernel combines them (no
// atomics, deterministic). src/backend.ts has each op's semantics.
import type {
  BatchNormGrads,
  BatchNormParams,
  BatchNormWeights,
  OptimizerHyper,
  Tensor,
} from "../backend.ts";
import * as shapes from "../shapes.ts";
import type { ThreadPool } from "./threads.ts";
import { alignUp } from "./module.ts";
import { BATCHNORM_EPS, BATCHNORM_MOMENTUM, OPTIMIZER_CODE } from "../kernel_constants.ts";

/** A kernel argument: a number, or a tensor passed as its byte offset (null: 0, "none"). */
type KernelArg = number | Tensor | null;

/** One GEMM call: C[M,N] = alpha·op(A)·op(B) + beta·C (+ bias[N] per row); a, b, c, bias: tensors or byte offsets. */
export interface GemmArgs {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha?: number;
  a: KernelArg;
  lda: number;
  b: KernelArg;
  ldb: number;
  /** 0 (C is not read) or 1 (accumulate); default 0. */
  beta?: number;
  c: KernelArg;
  ldc: number;
  /** bias[N], or null (the default) for none. */
  bias?: KernelArg;
  /** Byte offset of gemmScratchBytes() bytes; default this.scratch(). */
  scratch?: number;
}

/** Floats in one per-channel row padded to whole f32x4 vectors (the kernels' partial layout). */
function paddedChannels(C: number): number {
  return Math.ceil(C / 4) * 4;
}

export abstract class WasmOps {
  abstract readonly pool: ThreadPool;
  /** Scratch of at least `bytes`, 64-byte aligned, reused: valid until the next scratch() call. */
  abstract scratch(bytes: number): number;
  /** The byte offset of one of this backend's tensors (the one place a Tensor is cast). */
  abstract offset(t: Tensor): number;
  /** A fresh view of t's elements (memory may have grown). */
  abstract f32(t: Tensor): Float32Array;

  /** Runs exports[kernel](...args, thread, threads) on every thread. */
  protected run(kernel: string, args: KernelArg[]): void {
    this.pool.run(kernel, args.map((a) => (typeof a === "number" ? a : a === null ? 0 : this.offset(a))));
  }

  // ---- GEMM (asm/gemm.ts): the linear layers and the stem ---------------------------------------

  /** Scratch bytes one GEMM needs on all threads. */
  gemmScratchBytes(): number {
    return this.pool.threads * (this.pool.exports.gemmScratchBytes() as number);
  }

  gemm(g: GemmArgs): void {
    if (g.M === 0 || g.N === 0) return;
    const scratch = g.scratch ?? this.scratch(this.gemmScratchBytes());
    const { transA, transB, M, N, K, alpha = 1, a, lda, b, ldb, beta = 0, c, ldc, bias = null } = g;
    this.run("gemm", [+transA, +transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc, bias, scratch]);
  }

  // ---- stem: patch embedding (im2col, then a GEMM) ----------------------------------------------

  /** The stem's dimensions, and its patches [rows, 3·p·p] in scratch, followed by the GEMM's scratch. */
  #patches(op: string, images: Tensor, weight: Tensor, out: Tensor, outName: string) {
    const { B, H, W, C, p, pixels: rows } = shapes.patchEmbedDims(op, images, weight, out, outName);
    const K = 3 * p * p, patchBytes = alignUp(rows * K * 4);
    const patches = this.scratch(patchBytes + this.gemmScratchBytes());
    this.run("patchIm2col", [images, B, H, W, p, patches]);
    return { rows, C, K, patches, scratch: patches + patchBytes };
  }

  patchEmbedForward(images: Tensor, weight: Tensor, out: Tensor): void {
    const { rows, C, K, patches, scratch } = this.#patches("patchEmbedForward", images, weight, out, "out");
    this.gemm({
      transA: false,
      transB: true,
      M: rows,
      N: C,
      K,
      a: patches,
      lda: K,
      b: weight,
      ldb: K,
      c: out,
      ldc: C,
      scratch,
    });
  }

  patchEmbedBackwardWeight(images: Tensor, dOut: Tensor, dWeight: Tensor): void {
    const op = "patchEmbedBackwardWeight";
    const { rows, C, K, patches, scratch } = this.#patches(op, images, dWeight, dOut, "dOut");
    this.gemm({
      transA: true,
      transB: false,
      M: C,
      N: K,
      K: rows,
      a: dOut,
      lda: C,
      b: patches,
      ldb: K,
      c: dWeight,
      ldc: K,
      scratch,
    });
  }

  // ---- depthwise conv (asm/depthwise.ts) ----------------------------------------------------------

  /** The kernels' trailing [B, H, W, C, k], and the per-thread rings of padded rows after `extraBytes`. */
  #depthwise(op: string, x: Tensor, weight: Tensor, out: Tensor, names: [string, string], extraBytes = 0) {
    const { B, H, W, C, k } = shapes.depthwiseDims(op, x, weight, out, names);
    const perThread = this.pool.exports.depthwiseScratchBytes(W, C, k) as number;
    const scratch = this.scratch(extraBytes + this.pool.threads * perThread);
    return { dims: [B, H, W, C, k], extra: scratch, scratch: scratch + extraBytes };
  }

  depthwiseConvForward(x: Tensor, weight: Tensor, out: Tensor): void {
    const { dims, scratch } = this.#depthwise("depthwiseConvForward", x, weight, out, ["x", "out"]);
    this.run("depthwiseConvForward", [x, weight, out, scratch, ...dims]);
  }

  depthwiseConvBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    const op = "depthwiseConvBackwardInput";
    const { dims, scratch } = this.#depthwise(op, dOut, weight, dx, ["dOut", "dx"]);
    this.run(op, [dOut, weight, dx, scratch, ...dims]);
  }

  depthwiseConvBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor): void {
    const op = "depthwiseConvBackwardWeight", size = dWeight.size, threads = this.pool.threads;
    const partialBytes = alignUp(threads * size * 8); // each thread's float64 sums
    const { dims, extra: partials, scratch } = this.#depthwise(
      op,
      x,
      dWeight,
      dOut,
      ["x", "dOut"],
      partialBytes,
    );
    this.run(op, [x, dOut, partials, scratch, ...dims]);
    this.run("sumPartials", [partials, threads, size, size, dWeight]);
  }

  // ---- linear (pointwise conv and head): GEMMs ----------------------------------------------------

  linearForward(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor): void {
    const { M, N, K } = shapes.linearForwardDims(x, weight, bias, out);
    this.gemm({
      transA: false,
      transB: true,
      M,
      N,
      K,
      a: x,
      lda: K,
      b: weight,
      ldb: K,
      c: out,
      ldc: N,
      bias,
    });
  }

  linearBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    const { M, N, K } = shapes.linearBackwardInputDims(dOut, weight, dx);
    this.gemm({
      transA: false,
      transB: false,
      M,
      N: K,
      K: N,
      a: dOut,
      lda: N,
      b: weight,
      ldb: K,
      c: dx,
      ldc: K,
    });
  }

  linearBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null): void {
    const { M, N, K } = shapes.linearBackwardWeightDims(x, dOut, dWeight, dBias);
    this.gemm({
      transA: true,
      transB: false,
      M: N,
      N: K,
      K: M,
      a: dOut,
      lda: N,
      b: x,
      ldb: K,
      c: dWeight,
      ldc: K,
    });
    if (dBias !== null) this.run("columnSums", [dOut, M, N, dBias]);
  }

  // ---- bias + GELU + BatchNorm (asm/gelu_batchnorm.ts) --------------------------------------------

  biasGeluBatchNormForward(
    z: Tensor,
    unit: BatchNormParams,
    saved: Tensor,
    residual: Tensor | null,
    out: Tensor,
    training: boolean,
    geluOut: Tensor | null = null,
  ): void {
    const op = "biasGeluBatchNormForward";
    const { C, R: N } = shapes.batchNormForwardDims(z, unit, saved, residual, out, geluOut);
    shapes.check(
      residual === null || this.offset(residual) !== this.offset(out),
      op,
      () => "residual may not alias out",
    );
    const { bias, gamma, beta, runningMean, runningVar } = unit;
    const threads = this.pool.threads, Cp = paddedChannels(C);
    const partialBytes = threads * Cp * 20, table = this.scratch(partialBytes + Cp * 12) + partialBytes;
    const partials = table - partialBytes;
    // Training: u goes to geluOut when given (kept for the backward), else into out, normalised in place.
    const u = training ? geluOut ?? out : null;
    if (u !== null) this.run("biasGeluBatchNormStatistics", [z, bias, u, partials, N, C]);
    const finalize = [partials, threads, N, C, gamma, beta, runningMean, runningVar, saved, table];
    this.run("biasGeluBatchNormFinalize", [...finalize, +training, BATCHNORM_EPS, BATCHNORM_MOMENTUM]);
    this.run("biasGeluBatchNormApply", [z, bias, table, residual, u, out, N, C]);
  }

  biasGeluBatchNormBackward(
    z: Tensor,
    unit: BatchNormWeights,
    saved: Tensor,
    dOut: Tensor,
    dz: Tensor,
    grads: BatchNormGrads,
    geluOut: Tensor | null = null,
  ): void {
    const { C, R: N } = shapes.batchNormBackwardDims(z, unit, saved, dOut, dz, grads, geluOut);
    const { bias, gamma } = unit;
    const threads = this.pool.threads, Cp = paddedChannels(C);
    const statisticsBytes = threads * Cp * 16, tablesBytes = threads * Cp * 16;
    const partials = this.scratch(statisticsBytes + tablesBytes + threads * Cp * 8);
    const tables = partials + statisticsBytes, dzPartials = tables + tablesBytes;
    // Without the forward's u, and unless dz aliases dOut, pass 1 leaves Φ(z + bias) in dz for
    // pass 2 (one evaluation, not two).
    const cdfInDz = geluOut === null && this.offset(dz) !== this.offset(dOut);
    const statistics = [z, bias, saved, dOut, geluOut, partials, cdfInDz ? dz : 0, N, C];
    this.run("biasGeluBatchNormBackwardStatistics", statistics);
    const apply = [z, bias, gamma, saved, dOut, dz, geluOut, partials, tables, dzPartials];
    this.run("biasGeluBatchNormBackwardApply", [...apply, grads.gamma, grads.beta, N, C, +cdfInDz]);
    this.run("sumPartials", [dzPartials, threads, Cp, C, grads.bias]);
  }

  // ---- head (asm/head.ts) ---------------------------------------------------------------------------

  averagePoolForward(x: Tensor, out: Tensor): void {
    const { B, H, W, C } = shapes.averagePoolDims("averagePoolForward", x, out);
    this.run("averagePoolForward", [x, out, B, H * W, C]);
  }

  averagePoolBackward(dOut: Tensor, dx: Tensor): void {
    const { B, H, W, C } = shapes.averagePoolDims("averagePoolBackward", dx, dOut);
    this.run("averagePoolBackward", [dOut, dx, B, H * W, C]);
  }

  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
    dLogits: Tensor | null,
    metrics: Tensor,
    labelSmoothing: number,
  ): void {
    const op = "softmaxCrossEntropy";
    const { B, K } = shapes.crossEntropyDims(logits, labels, dLogits, metrics);
    const classes = this.f32(labels).every((label) => Number.isInteger(label) && label >= 0 && label < K);
    shapes.check(classes, op, () => `labels must be class indices in [0, ${K})`);
    this.run(op, [logits, labels, dLogits, metrics, B, K, labelSmoothing]);
  }

  // ---- optimizer (asm/optimizer.ts) -------------------------------------------------------------------

  accumulateSquares(g: Tensor, sumSquares: Tensor): void {
    shapes.squaresDims(sumSquares);
    this.run("accumulateSquares", [g, g.size, sumSquares]);
  }

  optimizerStep(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    sumSquares: Tensor,
    hyper: OptimizerHyper,
  ): void {
    const op = "optimizerStep";
    shapes.optimizerDims(param, grad, m, v, sumSquares);
    shapes.check(Object.hasOwn(OPTIMIZER_CODE, hyper.kind), op, () => `unknown optimizer ${hyper.kind}`);
    const { lr, weightDecay, beta1, beta2, eps, step, clipNorm } = hyper;
    const kind = OPTIMIZER_CODE[hyper.kind];
    this.run(op, [
      param,
      grad,
      m,
      v,
      sumSquares,
      param.size,
      kind,
      lr,
      weightDecay,
      beta1,
      beta2,
      eps,
      step,
      clipNorm,
    ]);
  }

  movingAverage(average: Tensor, value: Tensor, decay: number): void {
    shapes.movingAverageDims(average, value);
    this.run("movingAverage", [average, value, average.size, decay]);
  }
}
