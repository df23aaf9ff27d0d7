// Per-op GPU time of the WebGPU backend at one ConvMixer block's shapes (medians). With the
// adapter's 'timestamp-query' every dispatch is timed on the GPU; otherwise the time is taken on
// the CPU around a flush (which then includes a submit and a wait).
//
//   deno run -A bench/webgpu_bench.ts [--batch 128] [--hdim 256] [--kernel 5] [--patch 2] [--repeats 7]
//                                     [--precision f32|f16] [--step-traffic --depth 8]
//
// --step-traffic instead counts one training step of ConvMixer-hdim/depth: its dispatches and the
// bytes they bind (the model of src/webgpu/runtime.ts's Traffic), recorded but not run.
// bench/bench.ts calls webgpuKernelRows for its per-kernel table and stepTraffic for its rows.
import { parseArgs } from "node:util";
import type { Tensor } from "../src/backend.ts";
import { ConvMixer } from "../src/model.ts";
import { type Traffic, WebGpuBackend } from "../src/webgpu/backend.ts";

export interface KernelBenchOptions {
  batch: number;
  hdim: number;
  kernel: number;
  patch: number;
  /** Timed runs per op (the median is reported); default 7. */
  repeats?: number;
  /** CIFAR-10: 32. */
  imageSize?: number;
}

export interface KernelRow {
  op: string;
  shape: string;
  /** Median time of one call, all its dispatches. */
  ms: number;
  /** Arithmetic rate, for ops that do arithmetic; else undefined. */
  gflops?: number;
  /** Memory traffic (the minimum each op must move) per second. */
  gbPerS: number;
  /** The kernels the op dispatched, with their share of the time (GPU timing only). */
  kernels: string;
  /** "gpu" (timestamp queries) or "cpu" (around flush). */
  timing: "gpu" | "cpu";
}

interface Case {
  op: string;
  shape: string;
  flops: number;
  bytes: number;
  run: () => void;
}

/** The optimizer settings the benches step with (the official recipe's AdamW, clipped). */
export const BENCH_HYPER = {
  kind: "adamw" as const,
  lr: 1e-3,
  weightDecay: 0.005,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  clipNorm: 1,
};

/** The dispatches and bound bytes of `step` (one training step), after it ran to completion. */
export async function stepTraffic(backend: WebGpuBackend, step: () => void): Promise<Traffic> {
  await backend.flush();
  backend.takeTraffic();
  step();
  const traffic = backend.takeTraffic();
  await backend.flush();
  return traffic;
}

/** One training step of ConvMixer-hdim/depth at `batch` (the second: the first allocates the moments). */
async function countStep(
  backend: WebGpuBackend,
  options: { batch: number; hdim: number; depth: number; kernel: number; patch: number },
): Promise<Traffic> {
  const { batch, hdim, depth, kernel, patch } = options;
  const model = new ConvMixer(backend, { hdim, depth, kernel, patch, classes: 10 }, batch, 32);
  model.initialize(0);
  const images = Float32Array.from({ length: batch * 32 * 32 * 3 }, (_, i) => Math.sin(i));
  const a = model.setBatch(images, Float32Array.from({ length: batch }, (_, i) => i % 10));
  const train =
    (step: number) => () => (model.forward(a, true), model.backward(a), model.step({ ...BENCH_HYPER, step }));
  await stepTraffic(backend, train(1));
  return stepTraffic(backend, train(2));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Times every Backend op at ConvMixer-hdim/·, kernel k, patch p shapes on `backend`. */
export async function webgpuKernelRows(
  backend: WebGpuBackend,
  options: KernelBenchOptions,
): Promise<KernelRow[]> {
  const { batch: B, hdim: C, kernel: k, patch: p } = options;
  const image = options.imageSize ?? 32;
  const side = Math.floor(image / p);
  const M = B * side * side;
  const classes = 10;
  let seed = 1;
  const random = (shape: number[], scale = 1): Tensor => {
    const t = backend.tensor(shape);
    const data = new Float32Array(t.size);
    for (let i = 0; i < data.length; i++) {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      data[i] = (seed / 2 ** 32 * 2 - 1) * scale;
    }
    backend.write(t, data);
    return t;
  };
  const act = [B, side, side, C];
  const images = random([B, image, image, 3]);
  const patchWeight = random([C, 3, p, p], 0.1);
  const x = random(act), y = random(act), z = random(act), dOut = random(act), dx = random(act);
  const depthWeight = random([k, k, C], 0.1);
  const pointWeight = random([C, C], 0.1);
  const [bias, gamma, beta, runningMean, runningVar] = [0, 1, 2, 3, 4].map(() => random([C]));
  backend.fill(runningVar, 1);
  const saved = backend.tensor([2, C]);
  const [dBias, dGamma, dBeta] = [0, 1, 2].map(() => backend.tensor([C]));
  const unit = { bias, gamma, beta, runningMean, runningVar },
    grads = { bias: dBias, gamma: dGamma, beta: dBeta };
  const pooled = random([B, C]), dPooled = random([B, C]);
  const headWeight = random([classes, C], 0.1), headBias = random([classes]);
  const logits = random([B, classes]), dLogits = backend.tensor([B, classes]);
  const labels = backend.tensor([B]);
  backend.write(labels, Float32Array.from({ length: B }, (_, i) => i % classes));
  const metrics = backend.tensor([3]), sumSquares = backend.tensor([1]);
  const grad = random([C, C], 0.01), m = backend.tensor([C, C]), v = backend.tensor([C, C]);
  backend.biasGeluBatchNormForward(z, unit, saved, x, y, true);

  const actBytes = M * C * 4;
  const conv = 2 * M * C * k * k, gemm = 2 * M * C * C, stem = 2 * M * C * 3 * p * p;
  const cases: Case[] = [
    {
      op: "patchEmbedForward",
      shape: `[${B},${image},${image},3]→[${act}]`,
      flops: stem,
      bytes: B * image * image * 12 + actBytes,
      run: () => backend.patchEmbedForward(images, patchWeight, z),
    },
    {
      op: "patchEmbedBackwardWeight",
      shape: `[${act}]→[${C},3,${p},${p}]`,
      flops: stem,
      bytes: B * image * image * 12 + actBytes,
      run: () => backend.patchEmbedBackwardWeight(images, dOut, patchWeight),
    },
    {
      op: "depthwiseConvForward",
      shape: `[${act}] k${k}`,
      flops: conv,
      bytes: 2 * actBytes,
      run: () => backend.depthwiseConvForward(x, depthWeight, z),
    },
    {
      op: "depthwiseConvBackwardInput",
      shape: `[${act}] k${k}`,
      flops: conv,
      bytes: 3 * actBytes,
      run: () => backend.depthwiseConvBackwardInput(dOut, depthWeight, dx),
    },
    {
      op: "depthwiseConvBackwardWeight",
      shape: `[${act}] k${k}`,
      flops: conv,
      bytes: 2 * actBytes,
      run: () => backend.depthwiseConvBackwardWeight(x, dOut, depthWeight),
    },
    {
      op: "linearForward (pointwise)",
      shape: `[${M},${C}]·[${C},${C}]ᵀ`,
      flops: gemm,
      bytes: 2 * actBytes,
      run: () => backend.linearForward(x, pointWeight, null, z),
    },
    {
      op: "linearBackwardInput (pointwise)",
      shape: `[${M},${C}]·[${C},${C}]`,
      flops: gemm,
      bytes: 2 * actBytes,
      run: () => backend.linearBackwardInput(dOut, pointWeight, dx),
    },
    {
      op: "linearBackwardWeight (pointwise)",
      shape: `[${M},${C}]ᵀ·[${M},${C}]`,
      flops: gemm,
      bytes: 2 * actBytes,
      run: () => backend.linearBackwardWeight(x, dOut, pointWeight, null),
    },
    {
      op: "biasGeluBatchNormForward (training, residual)",
      shape: `[${act}]`,
      flops: 0,
      bytes: 3 * actBytes,
      run: () => backend.biasGeluBatchNormForward(z, unit, saved, x, y, true),
    },
    {
      op: "biasGeluBatchNormBackward",
      shape: `[${act}]`,
      flops: 0,
      bytes: 3 * actBytes,
      run: () => backend.biasGeluBatchNormBackward(z, unit, saved, dOut, dx, grads),
    },
    {
      op: "averagePoolForward",
      shape: `[${act}]→[${B},${C}]`,
      flops: 0,
      bytes: actBytes,
      run: () => backend.averagePoolForward(x, pooled),
    },
    {
      op: "averagePoolBackward",
      shape: `[${B},${C}]→[${act}]`,
      flops: 0,
      bytes: actBytes,
      run: () => backend.averagePoolBackward(dPooled, dx),
    },
    {
      op: "head linearForward + backward",
      shape: `[${B},${C}]·[${classes},${C}]ᵀ`,
      flops: 3 * 2 * B * C * classes,
      bytes: 3 * B * C * 4,
      run: () => {
        backend.linearForward(pooled, headWeight, headBias, logits);
        backend.linearBackwardInput(logits, headWeight, dPooled);
        backend.linearBackwardWeight(pooled, logits, headWeight, headBias);
      },
    },
    {
      op: "softmaxCrossEntropy",
      shape: `[${B},${classes}]`,
      flops: 0,
      bytes: 2 * B * classes * 4,
      run: () => backend.softmaxCrossEntropy(logits, labels, dLogits, metrics, 0),
    },
    {
      op: "accumulateSquares + optimizerStep (adamw)",
      shape: `[${C},${C}]`,
      flops: 0,
      bytes: 7 * C * C * 4,
      run: () => {
        backend.accumulateSquares(grad, sumSquares);
        backend.optimizerStep(pointWeight, grad, m, v, sumSquares, {
          kind: "adamw",
          lr: 1e-3,
          weightDecay: 0.01,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          step: 1,
          clipNorm: 1,
        });
      },
    },
  ];

  const rows: KernelRow[] = [];
  const repeats = options.repeats ?? 7;
  for (const c of cases) {
    c.run(); // warm-up: pipelines, bind groups, scratch
    await backend.takeProfile();
    const times: number[] = [];
    let kernels = new Map<string, number>();
    for (let r = 0; r < repeats; r++) {
      const start = performance.now();
      c.run();
      const profile = await backend.takeProfile();
      const cpuMs = performance.now() - start;
      if (backend.profiling) {
        times.push(profile.reduce((sum, kt) => sum + kt.ms, 0));
        kernels = new Map(profile.map((kt) => [kt.kernel, kt.ms]));
      } else {
        times.push(cpuMs);
      }
    }
    const ms = median(times);
    const total = [...kernels.values()].reduce((a, b) => a + b, 0);
    rows.push({
      op: c.op,
      shape: c.shape,
      ms,
      gflops: c.flops ? c.flops / ms / 1e6 : undefined,
      gbPerS: c.bytes / ms / 1e6,
      kernels: [...kernels].map(([name, t]) => `${name} ${Math.round(100 * t / total)}%`).join(", "),
      timing: backend.profiling ? "gpu" : "cpu",
    });
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      batch: { type: "string" },
      hdim: { type: "string", default: "256" },
      kernel: { type: "string", default: "5" },
      patch: { type: "string", default: "2" },
      repeats: { type: "string", default: "7" },
      precision: { type: "string", default: "f32" },
      "step-traffic": { type: "boolean", default: false },
      depth: { type: "string", default: "8" },
    },
    strict: true,
  });
  const precision = values.precision;
  if (precision !== "f32" && precision !== "f16") {
    throw new Error(`bench/webgpu_bench.ts: --precision must be f32 or f16, not "${precision}"`);
  }
  const backend = await WebGpuBackend.create({ profile: !values["step-traffic"], precision });
  // A software adapter (lavapipe) manages ~3 GFLOP/s: default to a tiny batch there.
  const batch = Number(values.batch ?? (backend.isFallback ? 2 : 128));
  const options = {
    batch,
    hdim: Number(values.hdim),
    kernel: Number(values.kernel),
    patch: Number(values.patch),
    repeats: Number(values.repeats),
  };
  for (const [flag, value] of Object.entries(options)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`bench/webgpu_bench.ts: --${flag} must be a positive integer`);
    }
  }
  if (values["step-traffic"]) {
    // The counts are taken as the kernels are recorded and depend only on the shapes, so nothing is
    // submitted: a batch-512 step would take minutes on a software adapter.
    backend.device.queue.submit = () => {};
    const depth = Number(values.depth);
    const t = await countStep(backend, { ...options, depth });
    const gb = (bytes: number) => (bytes / 1e9).toFixed(3);
    console.log(
      `ConvMixer-${options.hdim}/${depth} k${options.kernel} p${options.patch}, batch ${batch}, ${precision}: ` +
        `${t.dispatches} dispatches per step, ${gb(t.readBytes)} GB read + ${
          gb(t.writeBytes)
        } GB written = ` +
        `${gb(t.readBytes + t.writeBytes)} GB bound per step (model: whole bound ranges, as declared)`,
    );
    console.log(
      JSON.stringify({ dispatchesPerStep: t.dispatches, bytesPerStep: t.readBytes + t.writeBytes, ...t }),
    );
    backend.dispose();
    Deno.exit(0);
  }
  console.log(
    `${backend.description}, batch ${batch}, ${backend.profiling ? "GPU timestamps" : "CPU timing"}`,
  );
  const rows = await webgpuKernelRows(backend, options);
  console.log("| op | shape | ms | GFLOP/s | GB/s | kernels |\n|---|---|---:|---:|---:|---|");
  for (const r of rows) {
    console.log(
      `| ${r.op} | ${r.shape} | ${r.ms.toFixed(3)} | ${r.gflops?.toFixed(1) ?? ""} | ${
        r.gbPerS.toFixed(1)
      } | ${r.kernels} |`,
    );
  }
  backend.dispose();
}
