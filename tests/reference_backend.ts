// The float64 reference (tests/reference.ts) behind the Backend interface, so the model code itself
// (src/model.ts: the wiring of forward, backward and optimizer) can be checked by finite differences
// and against PyTorch without float32 noise. Views share storage like the real backends'.
import type {
  Backend,
  BatchNormGrads,
  BatchNormParams,
  BatchNormWeights,
  OptimizerHyper,
  Packed,
  Tensor,
} from "../src/backend.ts";
import * as ref from "./reference.ts";

type ReferenceTensor = ref.RefTensor & { size: number };

const r = (t: Tensor) => t as unknown as ReferenceTensor;
const rn = (t: Tensor | null) => (t === null ? null : r(t));
/** A record of tensors (a BatchNorm unit, its gradients) as the reference's tensors. */
const records = <K extends string>(record: Record<K, Tensor>) =>
  Object.fromEntries(Object.entries<Tensor>(record).map(([k, t]) => [k, r(t)])) as Record<K, ReferenceTensor>;

export class ReferenceBackend implements Backend {
  readonly name = "reference";
  readonly description = "float64 reference (tests/reference.ts)";
  allocatedBytes = 0;

  tensor(shape: readonly number[]): Tensor {
    const t = ref.refTensor(shape);
    this.allocatedBytes += t.data.byteLength;
    return Object.assign(t, { size: t.data.length }) as Tensor;
  }
  /** Parts at multiples of 4 elements, each followed by at least one of zero padding (as alignment leaves). */
  pack(shapes: readonly (readonly number[])[]): Packed {
    const sizes = shapes.map((shape) => shape.reduce((a, b) => a * b, 1)), starts: number[] = [];
    let total = 0;
    for (const size of sizes) starts.push(total), total += Math.ceil((size + 1) / 4) * 4;
    const whole = this.tensor([total]);
    const parts = shapes.map((shape, i) =>
      ({
        shape: [...shape],
        size: sizes[i],
        data: r(whole).data.subarray(starts[i], starts[i] + sizes[i]),
      }) as Tensor
    );
    return { whole, parts };
  }
  view(t: Tensor, shape: readonly number[]): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size > t.size) throw new Error(`view [${shape}] larger than [${t.shape}]`);
    return { shape: [...shape], size, data: r(t).data.subarray(0, size) } as Tensor;
  }
  write(t: Tensor, data: Float32Array) {
    if (data.length !== t.size) throw new Error(`write: ${data.length} values into [${t.shape}]`);
    r(t).data.set(data);
  }
  read(t: Tensor): Promise<Float32Array> {
    return Promise.resolve(Float32Array.from(r(t).data));
  }
  readMany(tensors: readonly Tensor[]): Promise<Float32Array[]> {
    return Promise.all(tensors.map((t) => this.read(t)));
  }
  /** The float64 values, for finite-difference checks. */
  values(t: Tensor): Float64Array {
    return r(t).data;
  }
  fill(t: Tensor, value: number) {
    r(t).data.fill(value);
  }
  flush() {
    return Promise.resolve();
  }
  dispose() {}

  patchEmbedForward(images: Tensor, weight: Tensor, out: Tensor) {
    ref.patchEmbedForward(r(images), r(weight), r(out));
  }
  patchEmbedBackwardWeight(images: Tensor, dOut: Tensor, dWeight: Tensor) {
    ref.patchEmbedBackwardWeight(r(images), r(dOut), r(dWeight));
  }
  depthwiseConvForward(x: Tensor, weight: Tensor, out: Tensor) {
    ref.depthwiseConvForward(r(x), r(weight), r(out));
  }
  depthwiseConvBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor) {
    ref.depthwiseConvBackwardInput(r(dOut), r(weight), r(dx));
  }
  depthwiseConvBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor) {
    ref.depthwiseConvBackwardWeight(r(x), r(dOut), r(dWeight));
  }
  linearForward(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor) {
    ref.linearForward(r(x), r(weight), rn(bias), r(out));
  }
  linearBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor) {
    ref.linearBackwardInput(r(dOut), r(weight), r(dx));
  }
  linearBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null) {
    ref.linearBackwardWeight(r(x), r(dOut), r(dWeight), rn(dBias));
  }
  biasGeluBatchNormForward(
    z: Tensor,
    unit: BatchNormParams,
    saved: Tensor,
    residual: Tensor | null,
    out: Tensor,
    training: boolean,
  ) {
    ref.biasGeluBatchNormForward(r(z), records(unit), r(saved), rn(residual), r(out), training);
  }
  biasGeluBatchNormBackward(
    z: Tensor,
    unit: BatchNormWeights,
    saved: Tensor,
    dOut: Tensor,
    dz: Tensor,
    grads: BatchNormGrads,
  ) {
    ref.biasGeluBatchNormBackward(r(z), records(unit), r(saved), r(dOut), r(dz), records(grads));
  }
  averagePoolForward(x: Tensor, out: Tensor) {
    ref.averagePoolForward(r(x), r(out));
  }
  averagePoolBackward(dOut: Tensor, dx: Tensor) {
    ref.averagePoolBackward(r(dOut), r(dx));
  }
  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
    dLogits: Tensor | null,
    metrics: Tensor,
    labelSmoothing: number,
  ) {
    ref.softmaxCrossEntropy(r(logits), r(labels), rn(dLogits), r(metrics), labelSmoothing);
  }
  accumulateSquares(g: Tensor, sumSquares: Tensor) {
    ref.accumulateSquares(r(g), r(sumSquares));
  }
  optimizerStep(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    sumSquares: Tensor,
    hyper: OptimizerHyper,
  ) {
    ref.optimizerStep(r(param), r(grad), r(m), r(v), r(sumSquares), hyper);
  }
  movingAverage(average: Tensor, value: Tensor, decay: number) {
    ref.movingAverage(r(average), r(value), decay);
  }
}
