// Where a training step's time goes, op by op: the model runs through a proxy of the backend that
// times every call (the WASM backend runs each op before returning, so a call's wall time is the
// op's time). Each op's work is counted from its arguments' shapes: FLOPs for the convolutions and
// GEMMs (against the measured SIMD FMA peak), and for the elementwise ops the bytes they must move
// at least (each input read once, each output written once).
import type { Backend, Tensor } from "../src/backend.ts";
import { ConvMixer, type ConvMixerConfig } from "../src/model.ts";

export interface OpRow {
  op: string;
  callsPerStep: number;
  msPerStep: number;
  shareOfStep: number;
  gflops?: number;
  percentOfPeak?: number;
  gbPerS?: number;
}

const numel = (t: Tensor | null) => (t === null ? 0 : t.size);
const rows = (t: Tensor) => t.size / t.shape[t.shape.length - 1];

/** [op label, FLOPs (0: memory-bound), bytes moved] of one call. */
type Work = (...args: (Tensor | null | boolean | number | object)[]) => [string, number, number];

const WORK: Record<string, Work> = {
  patchEmbedForward: (
    images,
    weight,
    out,
  ) => [
    "patch embed forward",
    2 * numel(out as Tensor) * numel(weight as Tensor) / (weight as Tensor).shape[0],
    0,
  ],
  patchEmbedBackwardWeight: (
    images,
    dOut,
    dWeight,
  ) => [
    "patch embed dWeight",
    2 * numel(dOut as Tensor) * numel(dWeight as Tensor) / (dWeight as Tensor).shape[0],
    0,
  ],
  depthwiseConvForward: (
    x,
    weight,
  ) => ["depthwise forward", 2 * numel(x as Tensor) * numel(weight as Tensor) / (x as Tensor).shape[3], 0],
  depthwiseConvBackwardInput: (
    dOut,
    weight,
  ) => ["depthwise dx", 2 * numel(dOut as Tensor) * numel(weight as Tensor) / (dOut as Tensor).shape[3], 0],
  depthwiseConvBackwardWeight: (
    x,
    dOut,
    dWeight,
  ) => ["depthwise dWeight", 2 * numel(x as Tensor) * numel(dWeight as Tensor) / (x as Tensor).shape[3], 0],
  linearForward: (
    x,
    weight,
  ) => [gemmLabel("forward", weight as Tensor), 2 * rows(x as Tensor) * numel(weight as Tensor), 0],
  linearBackwardInput: (
    dOut,
    weight,
  ) => [gemmLabel("dx", weight as Tensor), 2 * rows(dOut as Tensor) * numel(weight as Tensor), 0],
  linearBackwardWeight: (
    x,
    dOut,
    dWeight,
  ) => [gemmLabel("dWeight", dWeight as Tensor), 2 * rows(x as Tensor) * numel(dWeight as Tensor), 0],
  biasGeluBatchNormForward: (z, _b, _g, _be, _m, _v, _s, residual, out, training) => [
    `bias-GELU-BN forward${training ? "" : " (eval)"}`,
    0,
    4 * (numel(z as Tensor) + numel(residual as Tensor | null) + numel(out as Tensor)),
  ],
  biasGeluBatchNormBackward: (
    z,
    _b,
    _g,
    _s,
    dOut,
    dz,
  ) => ["bias-GELU-BN backward", 0, 4 * (numel(z as Tensor) + numel(dOut as Tensor) + numel(dz as Tensor))],
  averagePoolForward: (
    x,
    out,
  ) => ["average pool forward", 0, 4 * (numel(x as Tensor) + numel(out as Tensor))],
  averagePoolBackward: (
    dOut,
    dx,
  ) => ["average pool backward", 0, 4 * (numel(dOut as Tensor) + numel(dx as Tensor))],
  softmaxCrossEntropy: (logits) => ["softmax cross-entropy", 0, 8 * numel(logits as Tensor)],
  accumulateSquares: (g) => ["gradient norm", 0, 4 * numel(g as Tensor)],
  optimizerStep: (param) => ["AdamW", 0, 4 * 7 * numel(param as Tensor)],
  movingAverage: (average) => ["weight average", 0, 4 * 3 * numel(average as Tensor)],
};

function gemmLabel(pass: string, weight: Tensor): string {
  return `${weight.shape[0] === 10 || weight.shape[1] === 10 ? "head" : "pointwise"} ${pass}`;
}

/** The backend with every op timed into `totals` (label → ms, calls, FLOPs, bytes). */
function timed(
  backend: Backend,
  totals: Map<string, { ms: number; calls: number; flops: number; bytes: number }>,
) {
  return new Proxy(backend, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      const work = WORK[prop as string];
      if (typeof value !== "function") return value;
      if (!work) return value.bind(target);
      return (...args: Parameters<Work>) => {
        const start = performance.now();
        const result = value.apply(target, args);
        const ms = performance.now() - start;
        const [label, flops, bytes] = work(...args);
        const total = totals.get(label) ?? { ms: 0, calls: 0, flops: 0, bytes: 0 };
        totals.set(label, {
          ms: total.ms + ms,
          calls: total.calls + 1,
          flops: total.flops + flops,
          bytes: total.bytes + bytes,
        });
        return result;
      };
    },
  });
}

/** Per-op table of `steps` training steps (after one warm-up step) on a synchronous backend. */
export function stepProfile(
  backend: Backend,
  config: ConvMixerConfig,
  batch: number,
  steps: number,
  peakGflops: number,
): OpRow[] {
  const totals = new Map<string, { ms: number; calls: number; flops: number; bytes: number }>();
  const model = new ConvMixer(timed(backend, totals), config, batch);
  model.initialize(0);
  const images = Float32Array.from({ length: batch * 32 * 32 * 3 }, () => Math.random() * 2 - 1);
  const a = model.setBatch(images, Float32Array.from({ length: batch }, (_, i) => i % 10));
  const hyper = {
    kind: "adamw" as const,
    lr: 1e-3,
    weightDecay: 5e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    clipNorm: 1,
  };
  for (let i = 0; i <= steps; i++) {
    if (i === 1) totals.clear(); // step 0 warms up
    model.forward(a, true);
    model.backward(a);
    model.step({ ...hyper, step: i + 1 });
  }
  const stepMs = [...totals.values()].reduce((s, t) => s + t.ms, 0) / steps;
  return [...totals].map(([op, t]) => {
    const seconds = t.ms / 1000;
    const gflops = t.flops > 0 ? t.flops / seconds / 1e9 : undefined;
    return {
      op,
      callsPerStep: t.calls / steps,
      msPerStep: t.ms / steps,
      shareOfStep: t.ms / steps / stepMs,
      gflops,
      percentOfPeak: gflops === undefined ? undefined : (100 * gflops) / peakGflops,
      gbPerS: t.bytes > 0 ? t.bytes / seconds / 1e9 : undefined,
    };
  }).sort((x, y) => y.msPerStep - x.msPerStep);
}
