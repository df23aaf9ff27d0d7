// The WASM backend's non-GEMM layers: the shared shape checks (src/shapes.ts), then the kernels of asm/depthwise.ts,
// asm/gelu_batchnorm.ts, asm/head.ts and asm/optimizer.ts on every thread of the pool. Each
// function takes the WasmContext plus the arguments of the Backend method of the same name
// (src/backend.ts has the semantics). Reductions are two-level: each thread writes float64
// partials into scratch, and a second kernel combines them (no atomics, deterministic).
import type { BatchNormGrads, BatchNormParams, BatchNormWeights, OptimizerHyper } from "../backend.ts";
import * as shapes from "../shapes.ts";
import type { WasmContext, WasmTensor } from "./module.ts";

/** Floats in one per-channel row padded to whole f32x4 vectors (the kernels' partial layout). */
function paddedChannels(C: number): number {
  return Math.ceil(C / 4) * 4;
}

// ---- depthwise conv ----------------------------------------------------------------------------

/** [B, H, W, C, k]: the kernels' trailing arguments. */
function depthwiseDims(
  op: string,
  x: WasmTensor,
  weight: WasmTensor,
  out: WasmTensor,
  names: [string, string],
) {
  const { B, H, W, C, k } = shapes.depthwiseDims(op, x, weight, out, names);
  return [B, H, W, C, k];
}

/** Scratch for the per-thread rings of padded rows (and weight-gradient accumulators). */
function depthwiseScratch(ctx: WasmContext, dims: number[], extraBytes: number): number {
  const [, , W, C, k] = dims;
  const perThread = ctx.pool.exports.depthwiseScratchBytes(W, C, k) as number;
  return ctx.scratch(extraBytes + ctx.pool.threads * perThread) + extraBytes;
}

export function depthwiseConvForward(
  ctx: WasmContext,
  x: WasmTensor,
  weight: WasmTensor,
  out: WasmTensor,
): void {
  const dims = depthwiseDims("depthwiseConvForward", x, weight, out, ["x", "out"]);
  const scratch = depthwiseScratch(ctx, dims, 0);
  ctx.pool.run("depthwiseConvForward", [x.offset, weight.offset, out.offset, scratch, ...dims]);
}

export function depthwiseConvBackwardInput(
  ctx: WasmContext,
  dOut: WasmTensor,
  weight: WasmTensor,
  dx: WasmTensor,
): void {
  const dims = depthwiseDims("depthwiseConvBackwardInput", dOut, weight, dx, ["dOut", "dx"]);
  const scratch = depthwiseScratch(ctx, dims, 0);
  ctx.pool.run("depthwiseConvBackwardInput", [dOut.offset, weight.offset, dx.offset, scratch, ...dims]);
}

export function depthwiseConvBackwardWeight(
  ctx: WasmContext,
  x: WasmTensor,
  dOut: WasmTensor,
  dWeight: WasmTensor,
): void {
  const dims = depthwiseDims("depthwiseConvBackwardWeight", x, dWeight, dOut, ["x", "dOut"]);
  const size = dWeight.size,
    threads = ctx.pool.threads,
    partialBytes = Math.ceil(threads * size * 8 / 64) * 64;
  const scratch = depthwiseScratch(ctx, dims, partialBytes), partials = scratch - partialBytes;
  ctx.pool.run("depthwiseConvBackwardWeight", [x.offset, dOut.offset, partials, scratch, ...dims]);
  ctx.pool.run("sumPartials", [partials, threads, size, size, dWeight.offset]);
}

// ---- bias + GELU + BatchNorm ---------------------------------------------------------------------

export function biasGeluBatchNormForward(
  ctx: WasmContext,
  z: WasmTensor,
  unit: BatchNormParams<WasmTensor>,
  saved: WasmTensor,
  residual: WasmTensor | null,
  out: WasmTensor,
  training: boolean,
): void {
  const { C, R: N } = shapes.batchNormForwardDims(z, unit, saved, residual, out);
  shapes.check(
    residual?.offset !== out.offset,
    "biasGeluBatchNormForward",
    () => "residual may not alias out",
  );
  const { bias, gamma, beta, runningMean, runningVar } = unit;
  const threads = ctx.pool.threads, Cp = paddedChannels(C);
  const partialBytes = threads * Cp * 20, table = ctx.scratch(partialBytes + Cp * 12) + partialBytes;
  const partials = table - partialBytes;
  if (training) {
    ctx.pool.run("biasGeluBatchNormStatistics", [z.offset, bias.offset, out.offset, partials, N, C]);
  }
  ctx.pool.run("biasGeluBatchNormFinalize", [
    partials,
    threads,
    N,
    C,
    gamma.offset,
    beta.offset,
    runningMean.offset,
    runningVar.offset,
    saved.offset,
    table,
    training ? 1 : 0,
  ]);
  ctx.pool.run("biasGeluBatchNormApply", [
    z.offset,
    bias.offset,
    table,
    residual?.offset ?? 0,
    out.offset,
    N,
    C,
    training ? 1 : 0,
  ]);
}

export function biasGeluBatchNormBackward(
  ctx: WasmContext,
  z: WasmTensor,
  unit: BatchNormWeights<WasmTensor>,
  saved: WasmTensor,
  dOut: WasmTensor,
  dz: WasmTensor,
  grads: BatchNormGrads<WasmTensor>,
): void {
  const { C, R: N } = shapes.batchNormBackwardDims(z, unit, saved, dOut, dz, grads);
  const { bias, gamma } = unit, { bias: dBias, gamma: dGamma, beta: dBeta } = grads;
  const threads = ctx.pool.threads, Cp = paddedChannels(C);
  const statisticsBytes = threads * Cp * 16, tablesBytes = threads * Cp * 16;
  const partials = ctx.scratch(statisticsBytes + tablesBytes + threads * Cp * 8);
  const tables = partials + statisticsBytes, dzPartials = tables + tablesBytes;
  // Unless dz aliases dOut, pass 1 leaves Φ(z + bias) in dz for pass 2 (one evaluation, not two).
  const cdfInDz = dz.offset !== dOut.offset;
  ctx.pool.run("biasGeluBatchNormBackwardStatistics", [
    z.offset,
    bias.offset,
    saved.offset,
    dOut.offset,
    partials,
    cdfInDz ? dz.offset : 0,
    N,
    C,
  ]);
  ctx.pool.run("biasGeluBatchNormBackwardApply", [
    z.offset,
    bias.offset,
    gamma.offset,
    saved.offset,
    dOut.offset,
    dz.offset,
    partials,
    tables,
    dzPartials,
    dGamma.offset,
    dBeta.offset,
    N,
    C,
    cdfInDz ? 1 : 0,
  ]);
  ctx.pool.run("sumPartials", [dzPartials, threads, Cp, C, dBias.offset]);
}

// ---- head ------------------------------------------------------------------------------------------

/** [B, H·W, C]: the kernels' trailing arguments. */
function poolDims(op: string, x: WasmTensor, pooled: WasmTensor) {
  const { B, H, W, C } = shapes.averagePoolDims(op, x, pooled);
  return [B, H * W, C];
}

export function averagePoolForward(ctx: WasmContext, x: WasmTensor, out: WasmTensor): void {
  const dims = poolDims("averagePoolForward", x, out);
  ctx.pool.run("averagePoolForward", [x.offset, out.offset, ...dims]);
}

export function averagePoolBackward(ctx: WasmContext, dOut: WasmTensor, dx: WasmTensor): void {
  const dims = poolDims("averagePoolBackward", dx, dOut);
  ctx.pool.run("averagePoolBackward", [dOut.offset, dx.offset, ...dims]);
}

export function softmaxCrossEntropy(
  ctx: WasmContext,
  logits: WasmTensor,
  labels: WasmTensor,
  dLogits: WasmTensor | null,
  metrics: WasmTensor,
  labelSmoothing: number,
): void {
  const { B, K } = shapes.crossEntropyDims(logits, labels, dLogits, metrics);
  const labelValues = ctx.f32(labels);
  shapes.check(
    labelValues.every((label) => Number.isInteger(label) && label >= 0 && label < K),
    "softmaxCrossEntropy",
    () => `labels must be class indices in [0, ${K})`,
  );
  ctx.pool.run("softmaxCrossEntropy", [
    logits.offset,
    labels.offset,
    dLogits?.offset ?? 0,
    metrics.offset,
    B,
    K,
    labelSmoothing,
  ]);
}

// ---- optimizer ----------------------------------------------------------------------------------------

export function accumulateSquares(ctx: WasmContext, g: WasmTensor, sumSquares: WasmTensor): void {
  shapes.squaresDims(sumSquares);
  ctx.pool.run("accumulateSquares", [g.offset, g.size, sumSquares.offset]);
}

export function optimizerStep(
  ctx: WasmContext,
  param: WasmTensor,
  grad: WasmTensor,
  m: WasmTensor,
  v: WasmTensor,
  sumSquares: WasmTensor,
  hyper: OptimizerHyper,
): void {
  shapes.optimizerDims(param, grad, m, v, sumSquares);
  shapes.check(
    hyper.kind === "adamw" || hyper.kind === "sgd",
    "optimizerStep",
    () => `unknown optimizer ${hyper.kind}`,
  );
  ctx.pool.run("optimizerStep", [
    param.offset,
    grad.offset,
    m.offset,
    v.offset,
    sumSquares.offset,
    param.size,
    hyper.kind === "adamw" ? 0 : 1,
    hyper.lr,
    hyper.weightDecay,
    hyper.beta1,
    hyper.beta2,
    hyper.eps,
    hyper.step,
    hyper.clipNorm,
  ]);
}

export function movingAverage(ctx: WasmContext, average: WasmTensor, value: WasmTensor, decay: number): void {
  shapes.movingAverageDims(average, value);
  ctx.pool.run("movingAverage", [average.offset, value.offset, average.size, decay]);
}
