// The shape contract of the Backend ops (src/backend.ts), written once for every backend: each
// check returns the dimensions the kernels need, or throws one line naming the op, the argument
// and the shape it must have (a kernel given wrong sizes would read out of bounds silently).
// What depends on a backend's memory (aliasing, label values) stays with the backend.
import type { BatchNormGrads, BatchNormParams, BatchNormWeights, Tensor } from "./backend.ts";

function text(t: Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

/** Throws `op: message` unless ok (also for the checks a backend adds on its own memory). */
export function check(ok: boolean, op: string, message: () => string): void {
  if (!ok) throw new Error(`${op}: ${message()}`);
}

/** [B, H, W, C] of a spatial activation. */
function spatial(op: string, name: string, t: Tensor): [number, number, number, number] {
  check(t.shape.length === 4, op, () => `${name} ${text(t)} must be [B, H, W, C]`);
  return t.shape as [number, number, number, number];
}

function sameShape(op: string, name: string, t: Tensor, like: Tensor): void {
  check(
    t.shape.length === like.shape.length && t.shape.every((d, i) => d === like.shape[i]),
    op,
    () => `${name} ${text(t)} must be ${text(like)}`,
  );
}

function sized(op: string, name: string, t: Tensor, size: number, shape: string): void {
  check(t.size === size, op, () => `${name} ${text(t)} must be ${shape}`);
}

export function patchEmbedDims(op: string, images: Tensor, weight: Tensor, out: Tensor, outName: string) {
  const [B, H, W, three] = spatial(op, "images", images);
  check(three === 3, op, () => `images ${text(images)} must have 3 channels`);
  const [C, , p] = weight.shape;
  check(
    weight.shape.length === 4 && weight.shape[1] === 3 && weight.shape[3] === p && p > 0,
    op,
    () => `weight ${text(weight)} must be [C, 3, p, p]`,
  );
  // A stride-p convolution without padding, as torch's Conv2d: rows and columns past the last whole
  // patch are not seen (patch 3 on 32 pixels: 10×10 patches, the last 2 rows and columns dropped).
  const Hp = Math.floor(H / p), Wp = Math.floor(W / p);
  check(Hp > 0 && Wp > 0, op, () => `images ${text(images)} are smaller than a p = ${p} patch`);
  sized(op, outName, out, B * Hp * Wp * C, `[${B}, ${Hp}, ${Wp}, ${C}]`);
  return { B, H, W, C, p, pixels: B * Hp * Wp };
}

export function depthwiseDims(op: string, x: Tensor, weight: Tensor, out: Tensor, names: [string, string]) {
  const [B, H, W, C] = spatial(op, names[0], x);
  const k = weight.shape[0];
  check(
    weight.shape.length === 3 && weight.shape[1] === k && weight.shape[2] === C && k % 2 === 1,
    op,
    () => `weight ${text(weight)} must be [k, k, ${C}] with k odd`,
  );
  sameShape(op, names[1], out, x);
  return { B, H, W, C, k };
}

/** A [N, K] weight and x seen as [M, K]: M = x.size / K. */
export function linearDims(op: string, x: Tensor, weight: Tensor, xName: string, K: number) {
  check(weight.shape.length === 2, op, () => `weight ${text(weight)} must be [N, K]`);
  check(
    x.shape.length >= 1 && x.shape[x.shape.length - 1] === K,
    op,
    () => `${xName} ${text(x)} must end in ${K}`,
  );
  return x.size / K;
}

export function linearOutput(op: string, name: string, t: Tensor | null, size: number, shape: string): void {
  if (t) sized(op, name, t, size, shape);
}

/** x [M, K] (any leading dims), weight [N, K], out [M, N], bias [N] or null. */
export function linearForwardDims(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor) {
  const op = "linearForward", [N, K] = weight.shape;
  const M = linearDims(op, x, weight, "x", K);
  linearOutput(op, "out", out, M * N, `[${M}, ${N}]`);
  linearOutput(op, "bias", bias, N, `[${N}]`);
  return { M, N, K };
}

/** dOut [M, N], weight [N, K], dx [M, K]. */
export function linearBackwardInputDims(dOut: Tensor, weight: Tensor, dx: Tensor) {
  const op = "linearBackwardInput", [N, K] = weight.shape;
  const M = linearDims(op, dOut, weight, "dOut", N);
  linearOutput(op, "dx", dx, M * K, `[${M}, ${K}]`);
  return { M, N, K };
}

/** x [M, K], dOut [M, N], dWeight [N, K], dBias [N] or null. */
export function linearBackwardWeightDims(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null) {
  const op = "linearBackwardWeight", [N, K] = dWeight.shape;
  const M = linearDims(op, x, dWeight, "x", K);
  linearOutput(op, "dOut", dOut, M * N, `[${M}, ${N}]`);
  linearOutput(op, "dBias", dBias, N, `[${N}]`);
  return { M, N, K };
}

/** z [B, H, W, C] against the unit's [C] vectors and saved [2, C]; returns C and the rows R = B·H·W. */
function batchNormDims(
  op: string,
  z: Tensor,
  channelTensors: Record<string, Tensor>,
  saved: Tensor,
  activations: Record<string, Tensor | null>,
) {
  const C = z.shape[z.shape.length - 1];
  spatial(op, "z", z);
  for (const [name, t] of Object.entries(channelTensors)) sized(op, name, t, C, `[${C}]`);
  sized(op, "saved", saved, 2 * C, `[2, ${C}]`);
  for (const [name, t] of Object.entries(activations)) if (t) sameShape(op, name, t, z);
  return { C, R: z.size / C };
}

export function batchNormForwardDims(
  z: Tensor,
  unit: BatchNormParams,
  saved: Tensor,
  residual: Tensor | null,
  out: Tensor,
  geluOut: Tensor | null,
) {
  return batchNormDims("biasGeluBatchNormForward", z, unit, saved, { residual, out, geluOut });
}

export function batchNormBackwardDims(
  z: Tensor,
  unit: BatchNormWeights,
  saved: Tensor,
  dOut: Tensor,
  dz: Tensor,
  grads: BatchNormGrads,
  geluOut: Tensor | null,
) {
  const { bias: dBias, gamma: dGamma, beta: dBeta } = grads;
  const channels = { ...unit, dBias, dGamma, dBeta };
  return batchNormDims("biasGeluBatchNormBackward", z, channels, saved, { dOut, dz, geluOut });
}

export function averagePoolDims(op: string, x: Tensor, pooled: Tensor) {
  const [B, H, W, C] = spatial(op, "x", x);
  sized(op, "pooled", pooled, B * C, `[${B}, ${C}]`);
  return { B, H, W, C };
}

export function crossEntropyDims(logits: Tensor, labels: Tensor, dLogits: Tensor | null, metrics: Tensor) {
  const op = "softmaxCrossEntropy";
  check(logits.shape.length === 2, op, () => `logits ${text(logits)} must be [B, K]`);
  const [B, K] = logits.shape;
  sized(op, "labels", labels, B, `[${B}]`);
  if (dLogits) sameShape(op, "dLogits", dLogits, logits);
  sized(op, "metrics", metrics, 3, "[3]");
  return { B, K };
}

export function optimizerDims(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, sumSquares: Tensor): void {
  const op = "optimizerStep";
  for (const [name, t] of Object.entries({ grad, m, v })) {
    sized(op, name, t, param.size, `${param.size} elements`);
  }
  sized(op, "sumSquares", sumSquares, 1, "[1]");
}

export function movingAverageDims(average: Tensor, value: Tensor): void {
  sized("movingAverage", "value", value, average.size, `the ${average.size} elements of average`);
}

export function squaresDims(sumSquares: Tensor): void {
  sized("accumulateSquares", "sumSquares", sumSquares, 1, "[1]");
}
