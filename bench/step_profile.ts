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
const channels = (t: Tensor) => t.shape[t.shape.length - 1];

/** An op call's label, FLOPs (0: memory-bound) and least bytes moved, from its arguments. */
type Work = (t: (Tensor | null)[], flag?: unknown) => [string, number, number];
const flops = (label: string, count: number): [string, number, number] => [label, count, 0];
const bytes = (label: string, ...tensors: (Tensor | null)[]): [string, number, number] => [
  label,
  0,
  4 * tensors.reduce((sum, t) => sum + numel(t), 0),
];

// Convolutions: 2 FLOPs per multiply-add over the output (or dOut) and the filter's taps per channel.
const WORK: Record<string, Work> = {
  patchEmbedForward: ([_, w, out]) => flops("patch embed forward", 2 * out!.size * w!.size / w!.shape[0]),
  patchEmbedBackwardWeight: ([_, dOut, dW]) =>
    flops("patch embed dWeight", 2 * dOut!.size * dW!.size / dW!.shape[0]),
  depthwiseConvForward: ([x, w]) => flops("depthwise forward", 2 * x!.size * w!.size / channels(x!)),
  depthwiseConvBackwardInput: ([dOut, w]) =>
    flops("depthwise dx", 2 * dOut!.size * w!.size / channels(dOut!)),
  depthwiseConvBackwardWeight: ([x, _, dW]) =>
    flops("depthwise dWeight", 2 * x!.size * dW!.size / channels(x!)),
  linearForward: ([x, w]) => flops(gemmLabel("forward", w!), 2 * rows(x!) * w!.size),
  linearBackwardInput: ([dOut, w]) => flops(gemmLabel("dx", w!), 2 * rows(dOut!) * w!.size),
  linearBackwardWeight: ([x, _, dW]) => flops(gemmLabel("dWeight", dW!), 2 * rows(x!) * dW!.size),
  biasGeluBatchNormForward: (t, training) =>
    bytes(`bias-GELU-BN forward${training ? "" : " (eval)"}`, t[0], t[3], t[4]), // z, residual, out
  biasGeluBatchNormBackward: (t) => bytes("bias-GELU-BN backward", t[0], t[3], t[4]), // z, dOut, dz
  averagePoolForward: ([x, out]) => bytes("average pool forward", x, out),
  averagePoolBackward: ([dOut, dx]) => bytes("average pool backward", dOut, dx),
  softmaxCrossEntropy: ([logits, _, dLogits]) => bytes("softmax cross-entropy", logits, dLogits),
  accumulateSquares: ([g]) => bytes("gradient norm", g),
  optimizerStep: ([p, g, m, v]) => bytes("AdamW", p, p, g, m, m, v, v), // p, m, v read and written
  movingAverage: ([average, value]) => bytes("weight average", average, average, value),
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
      return (...args: unknown[]) => {
        const start = performance.now();
        const result = value.apply(target, args);
        const ms = performance.now() - start;
        // args[5]: biasGeluBatchNormForward's training flag (the only op with one).
        const [label, flops, bytes] = work(args as (Tensor | null)[], args[5]);
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
