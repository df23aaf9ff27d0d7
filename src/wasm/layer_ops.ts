// The WASM backend's non-GEMM layers: shape checks, then the kernels of asm/depthwise.ts,
// asm/gelu_batchnorm.ts, asm/head.ts and asm/optimizer.ts on every thread of the pool. Each
// function takes the WasmContext plus the arguments of the Backend method of the same name
// (src/backend.ts has the semantics). Reductions are two-level: each thread writes float64
// partials into scratch, and a second kernel combines them (no atomics, deterministic).
import type { OptimizerHyper, Tensor } from "../backend.ts";
import type { WasmContext, WasmTensor } from "./module.ts";

function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(`wasm backend: ${message()}`);
}

function shapeText(t: Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

function sameShape(a: Tensor, b: Tensor): boolean {
  return a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

/** Checks an NHWC activation; returns [B, H, W, C]. */
function nhwc(op: string, name: string, t: Tensor): [number, number, number, number] {
  check(t.shape.length === 4, () => `${op}: ${name} ${shapeText(t)} must be [B, H, W, C]`);
  return t.shape as [number, number, number, number];
}

/** Floats in one per-channel row padded to whole f32x4 vectors (the kernels' partial layout). */
function paddedChannels(C: number): number {
  return Math.ceil(C / 4) * 4;
}

// ---- depthwise conv ----------------------------------------------------------------------------

/** Checks x, weight [k, k, C] (k odd), out; returns [B, H, W, C, k]. */
function depthwiseShapes(op: string, x: Tensor, weight: Tensor, out: Tensor, outName: string): number[] {
  const [B, H, W, C] = nhwc(op, "input", x);
  const k = weight.shape[0];
  check(
    weight.shape.length === 3 && weight.shape[1] === k && weight.shape[2] === C && k % 2 === 1,
    () => `${op}: weight ${shapeText(weight)} must be [k, k, ${C}] with k odd`,
  );
  check(sameShape(x, out), () => `${op}: ${outName} ${shapeText(out)} must be ${shapeText(x)}`);
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
  const dims = depthwiseShapes("depthwiseConvForward", x, weight, out, "out");
  const scratch = depthwiseScratch(ctx, dims, 0);
  ctx.pool.run("depthwiseConvForward", [x.offset, weight.offset, out.offset, scratch, ...dims]);
}

export function depthwiseConvBackwardInput(
  ctx: WasmContext,
  dOut: WasmTensor,
  weight: WasmTensor,
  dx: WasmTensor,
): void {
  const dims = depthwiseShapes("depthwiseConvBackwardInput", dOut, weight, dx, "dx");
  const scratch = depthwiseScratch(ctx, dims, 0);
  ctx.pool.run("depthwiseConvBackwardInput", [dOut.offset, weight.offset, dx.offset, scratch, ...dims]);
}

export function depthwiseConvBackwardWeight(
  ctx: WasmContext,
  x: WasmTensor,
  dOut: WasmTensor,
  dWeight: WasmTensor,
): void {
  const dims = depthwiseShapes("depthwiseConvBackwardWeight", x, dWeight, dOut, "dOut");
  const size = dWeight.size,
    threads = ctx.pool.threads,
    partialBytes = Math.ceil(threads * size * 8 / 64) * 64;
  const scratch = depthwiseScratch(ctx, dims, partialBytes), partials = scratch - partialBytes;
  ctx.pool.run("depthwiseConvBackwardWeight", [x.offset, dOut.offset, partials, scratch, ...dims]);
  ctx.pool.run("sumPartials", [partials, threads, size, size, dWeight.offset]);
}

// ---- bias + GELU + BatchNorm ---------------------------------------------------------------------

/** Checks z [..., C] against the per-channel vectors; returns [N, C]. */
function batchNormShapes(
  op: string,
  z: Tensor,
  perChannel: Record<string, Tensor>,
  saved: Tensor,
): [number, number] {
  const C = perChannel.bias.size;
  check(
    z.shape.length >= 2 && z.shape[z.shape.length - 1] === C,
    () => `${op}: z ${shapeText(z)} must end in C = ${C} (the bias length)`,
  );
  for (const [name, t] of Object.entries(perChannel)) {
    check(t.size === C, () => `${op}: ${name} ${shapeText(t)} must have ${C} elements`);
  }
  check(saved.size === 2 * C, () => `${op}: saved ${shapeText(saved)} must be [2, ${C}]`);
  return [z.size / C, C];
}

export function biasGeluBatchNormForward(
  ctx: WasmContext,
  z: WasmTensor,
  bias: WasmTensor,
  gamma: WasmTensor,
  beta: WasmTensor,
  runningMean: WasmTensor,
  runningVar: WasmTensor,
  saved: WasmTensor,
  residual: WasmTensor | null,
  out: WasmTensor,
  training: boolean,
): void {
  const op = "biasGeluBatchNormForward";
  const [N, C] = batchNormShapes(op, z, { bias, gamma, beta, runningMean, runningVar }, saved);
  check(sameShape(z, out), () => `${op}: out ${shapeText(out)} must be ${shapeText(z)}`);
  check(
    residual === null || (sameShape(z, residual) && residual.offset !== out.offset),
    () => `${op}: residual ${shapeText(residual!)} must be ${shapeText(z)} and not alias out`,
  );
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
  bias: WasmTensor,
  gamma: WasmTensor,
  saved: WasmTensor,
  dOut: WasmTensor,
  dz: WasmTensor,
  dBias: WasmTensor,
  dGamma: WasmTensor,
  dBeta: WasmTensor,
): void {
  const op = "biasGeluBatchNormBackward";
  const [N, C] = batchNormShapes(op, z, { bias, gamma, dBias, dGamma, dBeta }, saved);
  check(
    sameShape(z, dOut) && sameShape(z, dz),
    () => `${op}: dOut ${shapeText(dOut)} and dz ${shapeText(dz)} must be ${shapeText(z)}`,
  );
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

function poolShapes(op: string, x: Tensor, pooled: Tensor, pooledName: string): number[] {
  const [B, H, W, C] = nhwc(op, "activation", x);
  check(
    pooled.shape.length === 2 && pooled.shape[0] === B && pooled.shape[1] === C,
    () => `${op}: ${pooledName} ${shapeText(pooled)} must be [${B}, ${C}]`,
  );
  return [B, H * W, C];
}

export function averagePoolForward(ctx: WasmContext, x: WasmTensor, out: WasmTensor): void {
  const dims = poolShapes("averagePoolForward", x, out, "out");
  ctx.pool.run("averagePoolForward", [x.offset, out.offset, ...dims]);
}

export function averagePoolBackward(ctx: WasmContext, dOut: WasmTensor, dx: WasmTensor): void {
  const dims = poolShapes("averagePoolBackward", dx, dOut, "dOut");
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
  const op = "softmaxCrossEntropy";
  check(logits.shape.length === 2, () => `${op}: logits ${shapeText(logits)} must be [B, K]`);
  const [B, K] = logits.shape;
  check(labels.size === B, () => `${op}: labels ${shapeText(labels)} must be [${B}]`);
  check(
    dLogits === null || sameShape(dLogits, logits),
    () => `${op}: dLogits ${shapeText(dLogits!)} must be ${shapeText(logits)}`,
  );
  check(metrics.size === 3, () => `${op}: metrics ${shapeText(metrics)} must be [3]`);
  const labelValues = ctx.f32(labels);
  check(
    labelValues.every((label) => Number.isInteger(label) && label >= 0 && label < K),
    () => `${op}: labels must be class indices in [0, ${K})`,
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
  check(sumSquares.size === 1, () => `accumulateSquares: sumSquares ${shapeText(sumSquares)} must be [1]`);
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
  check(
    [grad, m, v].every((t) => t.size === param.size),
    () => `optimizerStep: grad, m, v must have the ${param.size} elements of param ${shapeText(param)}`,
  );
  check(sumSquares.size === 1, () => `optimizerStep: sumSquares ${shapeText(sumSquares)} must be [1]`);
  check(
    hyper.kind === "adamw" || hyper.kind === "sgd",
    () => `optimizerStep: unknown optimizer ${hyper.kind}`,
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
  check(
    value.size === average.size,
    () => `movingAverage: value ${shapeText(value)} must have the ${average.size} elements of average`,
  );
  ctx.pool.run("movingAverage", [average.offset, value.offset, average.size, decay]);
}
