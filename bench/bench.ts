// `deno task bench`: CPU (WASM) vs GPU (WebGPU) vs PyTorch, side by side in one run.
// For each model and backend: forward, backward and full training-step time (medians), images/s,
// achieved GFLOP/s against the device's peak, memory held, and the step time when batches come from
// the real data pipeline (CPU workers decoding and augmenting while the step runs) next to the same
// steps on a fixed batch — equal times mean the data preparation is hidden; and per model, where the
// WASM step's time goes op by op (bench/step_profile.ts). Writes JSON and an SVG (drawn as
// the run report's charts: src/report/charts.ts).
//
//   deno task bench [--models 256/8,cpu] [--backends wasm,webgpu] [--batch 128] [--steps 5]
//                   [--torch cpu|cuda|none] [--data PATH] [--out bench/results]
//   deno task bench --chart-from bench/results.json    redraws the SVG of an earlier run, measuring nothing
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend.ts";
import { ConvMixer, type ConvMixerConfig, convMixerFlops } from "../src/model.ts";
import { augmentConfig, PRESETS, type Recipe } from "../src/recipe.ts";
import { WasmBackend } from "../src/wasm/backend.ts";
import { createSharedMemory } from "../src/wasm/module.ts";
import { ThreadPool } from "../src/wasm/threads.ts";
import { WebGpuBackend } from "../src/webgpu/backend.ts";
import { requestGpu } from "../src/webgpu/device.ts";
import { openCifar } from "../src/data/cifar.ts";
import { BatchLoader } from "../src/data/loader.ts";
import { gemmBench } from "./gemm_bench.ts";
import { depthwiseBench } from "./depthwise_bench.ts";
import { BENCH_HYPER, stepTraffic, webgpuKernelRows } from "./webgpu_bench.ts";
import { dataBench } from "./data_bench.ts";
import { stepProfile } from "./step_profile.ts";
import { barChart } from "../src/report/charts.ts";

interface Row {
  model: string;
  backend: string;
  device: string;
  batch: number;
  forwardMs: number;
  backwardMs: number;
  stepMs: number;
  /** Per step over a run of steps fed by the data pipeline, and the same run on one fixed batch. */
  pipelinedStepMs?: number;
  fixedBatchStepMs?: number;
  imagesPerS: number;
  gflops: number;
  peakGflops?: number;
  memoryMiB?: number;
  /** WebGPU: dispatches recorded by one training step, and the bytes they bind (a model: Traffic). */
  dispatchesPerStep?: number;
  bytesPerStep?: number;
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string", default: "256/8,cpu" },
    backends: { type: "string", default: "wasm,webgpu" },
    batch: { type: "string", default: "128" },
    steps: { type: "string", default: "5" },
    torch: { type: "string", default: "cpu" },
    data: { type: "string" },
    out: { type: "string", default: "bench/results" },
    "chart-from": { type: "string" },
  },
  strict: true,
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function modelOf(name: string): { label: string; config: ConvMixerConfig; recipe: Recipe } {
  if (name === "cpu") {
    const r = PRESETS.cpu;
    return {
      label: `ConvMixer-${r.hdim}/${r.depth} k${r.kernel} p${r.patch} (cpu default)`,
      config: configOf(r),
      recipe: r,
    };
  }
  const [hdim, depth] = name.split("/").map(Number);
  const recipe = { ...PRESETS.official, hdim, depth };
  return { label: `ConvMixer-${hdim}/${depth} k5 p2`, config: configOf(recipe), recipe };
}

function configOf(r: Recipe): ConvMixerConfig {
  return { hdim: r.hdim, depth: r.depth, kernel: r.kernel, patch: r.patch, classes: 10 };
}

async function time(backend: Backend, fn: () => void): Promise<number> {
  const start = performance.now();
  fn();
  await backend.flush();
  return performance.now() - start;
}

/**
 * The peak f32x4 FMA rate of `threads` WASM threads, measured with build/peak.wasm (asm/peak.ts,
 * kept out of the production module) on a pool of its own.
 */
async function cpuPeakGflops(threads: number): Promise<number> {
  const url = new URL("../build/peak.wasm", import.meta.url);
  const pool = await ThreadPool.create(
    await WebAssembly.compile(await Deno.readFile(url)),
    createSharedMemory(),
    threads,
  );
  try {
    const iterations = 20_000_000;
    pool.run("fmaPeak", [iterations]); // the first call runs in V8's baseline tier
    const start = performance.now();
    pool.run("fmaPeak", [iterations]);
    return (64 * iterations * threads) / ((performance.now() - start) * 1e6);
  } finally {
    pool.close();
  }
}

/** fp32 (non-tensor-core) peaks of GPUs we have measured on; others are left blank. */
function gpuPeakGflops(description: string): number | undefined {
  if (/H100/.test(description)) return 66_900;
  if (/H200/.test(description)) return 66_900;
  return undefined;
}

async function benchModel(
  backend: Backend,
  device: string,
  name: string,
  batch: number,
  steps: number,
  train: Awaited<ReturnType<typeof openCifar>>["train"] | null,
  peakGflops?: number,
  recomputeDepthwise?: boolean,
): Promise<Row> {
  const { config, recipe } = modelOf(name);
  const label = modelOf(name).label + (recomputeDepthwise ? " (depthwise recomputed)" : "");
  const model = new ConvMixer(backend, config, batch, 32, { recomputeDepthwise });
  model.initialize(0);
  const images = Float32Array.from({ length: batch * 32 * 32 * 3 }, () => Math.random() * 2 - 1);
  const labels = Float32Array.from({ length: batch }, (_, i) => i % 10);
  const a = model.setBatch(images, labels);
  const hyper = BENCH_HYPER;
  const forward: number[] = [], forwardBackward: number[] = [], step: number[] = [];
  for (let i = 0; i < steps + 1; i++) { // the first round warms up (pipelines, caches)
    const f = await time(backend, () => model.forward(a, true));
    const fb = await time(backend, () => (model.forward(a, true), model.backward(a)));
    const s = await time(
      backend,
      () => (model.forward(a, true), model.backward(a), model.step({ ...hyper, step: i + 1 })),
    );
    if (i > 0) forward.push(f), forwardBackward.push(fb), step.push(s);
  }
  const stepMs = median(step);
  const gflops = (convMixerFlops(config).training * batch) / (stepMs * 1e6);
  const row: Row = {
    model: label,
    backend: backend.name,
    device,
    batch,
    forwardMs: median(forward),
    backwardMs: median(forwardBackward) - median(forward),
    stepMs,
    imagesPerS: (batch * 1000) / stepMs,
    gflops,
    peakGflops,
    memoryMiB: backend.allocatedBytes / 2 ** 20,
  };
  if (backend instanceof WebGpuBackend) {
    const traffic = await stepTraffic(
      backend,
      () => (model.forward(a, true), model.backward(a), model.step({ ...hyper, step: steps + 2 })),
    );
    row.dispatchesPerStep = traffic.dispatches;
    row.bytesPerStep = traffic.readBytes + traffic.writeBytes;
  }
  if (train) {
    // The training loop's shape: no flush between steps, the loader's workers prepare ahead.
    const augment = augmentConfig({ ...recipe, augment: true });
    const loader = await BatchLoader.create(train, {
      batch,
      shuffle: true,
      seed: 0,
      augment,
      dropLast: true,
    });
    const run = async (feed: boolean) => {
      let done = 0;
      const start = performance.now();
      for await (const b of loader.epoch(0)) {
        const batchTensors = feed ? model.setBatch(b.images, b.labels) : a;
        model.forward(batchTensors, true);
        model.backward(batchTensors);
        model.step({ ...hyper, step: 1 });
        if (++done === steps + 2) break;
      }
      await backend.flush();
      return (performance.now() - start) / done;
    };
    await run(true); // warm the workers
    row.pipelinedStepMs = await run(true);
    row.fixedBatchStepMs = await run(false);
    loader.close();
  }
  return row;
}

/** What one metrics read-back costs (fill + copy + mapAsync), why the trainer reads rarely. */
async function readbackLatency(backend: Backend) {
  const t = backend.tensor([3]), times: number[] = [];
  for (let i = 0; i < 21; i++) {
    backend.fill(t, i);
    const start = performance.now();
    await backend.read(t);
    times.push(performance.now() - start);
  }
  return { op: "read a 3-float tensor", medianMs: median(times), minMs: Math.min(...times) };
}

async function torchRow(name: string, batch: number, steps: number, device: string): Promise<Row | null> {
  const { label, config } = modelOf(name);
  const args = [
    "bench/pytorch_bench.py",
    ...["--hdim", config.hdim, "--depth", config.depth, "--kernel", config.kernel, "--patch", config.patch]
      .map(String),
    ...["--batch", batch, "--steps", steps, "--warmup", 1, "--threads", navigator.hardwareConcurrency].map(
      String,
    ),
    "--device",
    device,
  ];
  try {
    const out = await new Deno.Command("/usr/bin/python3", { args, stderr: "piped" }).output();
    if (!out.success) {
      console.error(
        `pytorch (${device}) skipped: ${new TextDecoder().decode(out.stderr).trim().split("\n").pop()}`,
      );
      return null;
    }
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    const best = (x: Record<string, { median_ms: number }>, key: string) =>
      x[x[key] as unknown as string].median_ms;
    const stepMs = best(r.train_step, "best"), forwardMs = best(r.forward, "best");
    return {
      model: label,
      backend: `pytorch ${r.framework.split(" ")[1]}`,
      device: r.device,
      batch,
      forwardMs,
      backwardMs: NaN, // PyTorch's script times the whole step and an eval forward only
      stepMs,
      imagesPerS: (batch * 1000) / stepMs,
      gflops: (convMixerFlops(config).training * batch) / (stepMs * 1e6),
    };
  } catch {
    console.error("pytorch skipped: /usr/bin/python3 with torch not found");
    return null;
  }
}

function table(rows: Row[]): string {
  const f = (
    x: number | undefined,
    digits = 1,
  ) => (x === undefined || Number.isNaN(x) ? "—" : x.toFixed(digits));
  const lines = [
    "| model | backend | device | batch | fwd ms | bwd ms | step ms | img/s | GFLOP/s | % peak | step fed by loader / fixed ms | MiB | dispatches / GB per step (model) |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.model} | ${r.backend} | ${r.device} | ${r.batch} | ${f(r.forwardMs)} | ${f(r.backwardMs)} | ${
        f(r.stepMs)
      } | ` +
        `${f(r.imagesPerS)} | ${f(r.gflops)} | ${
          r.peakGflops ? f((100 * r.gflops) / r.peakGflops, 0) : "—"
        } | ` +
        `${r.pipelinedStepMs ? `${f(r.pipelinedStepMs)} / ${f(r.fixedBatchStepMs)}` : "—"} | ${
          f(r.memoryMiB, 0)
        } | ${r.dispatchesPerStep ? `${r.dispatchesPerStep} / ${f(r.bytesPerStep! / 1e9, 2)}` : "—"} |`,
    );
  }
  return lines.join("\n");
}

/** Horizontal bars of training images/s, grouped by model. */
function chart(rows: Row[]): string {
  const models = [...new Set(rows.map((r) => r.model))];
  const ordered = models.flatMap((model) => rows.filter((r) => r.model === model));
  return barChart({
    title: "Training throughput (images/s, higher is better)",
    labels: ordered.map((r) => `${r.model} · ${r.backend} · ${r.device.slice(0, 36)}`),
    values: ordered.map((r) => r.imagesPerS),
    colors: ordered.map((
      r,
    ) => (r.backend.startsWith("pytorch") ? "#888888" : r.backend === "webgpu" ? "#2a9d5c" : "#3b6fc6")),
    format: (v) => `${v.toFixed(1)} img/s`,
    width: 960,
  }) + "\n";
}

if (import.meta.main && flags["chart-from"]) {
  const { rows } = JSON.parse(await Deno.readTextFile(flags["chart-from"])) as { rows: Row[] };
  await Deno.writeTextFile(`${flags.out}.svg`, chart(rows));
  console.error(`wrote ${flags.out}.svg from ${flags["chart-from"]}`);
} else if (import.meta.main) {
  const models = flags.models.split(",");
  const batch = Number(flags.batch), steps = Number(flags.steps);
  const backends = flags.backends.split(",");
  let train = null;
  try {
    train = (await openCifar(flags.data)).train;
  } catch (e) {
    console.error(`data pipeline figures skipped: ${(e as Error).message}`);
  }
  const rows: Row[] = [];
  const kernels: Record<string, unknown[]> = {};
  if (backends.includes("wasm")) {
    const peak = await cpuPeakGflops(navigator.hardwareConcurrency);
    // Each model in a fresh memory (the arena never frees), so the memory column is the model's own;
    // ConvMixer-256/8 also as the official recipe runs it on the CPU at batch 512 (src/model.ts).
    const runs: [string, boolean][] = models.flatMap((name): [string, boolean][] =>
      name === "256/8" ? [[name, false], [name, true]] : [[name, false]]
    );
    for (const [name, recompute] of runs) {
      console.error(`wasm: ${name}${recompute ? " (depthwise recomputed)" : ""}…`);
      const backend = await WasmBackend.create();
      rows.push(await benchModel(backend, backend.description, name, batch, steps, train, peak, recompute));
      backend.dispose();
    }
    console.error("wasm step profile…");
    kernels.wasmStepProfile = [];
    for (const name of models) {
      const profiled = await WasmBackend.create(); // a fresh memory: the arena never frees
      const { label, config } = modelOf(name);
      const ops = stepProfile(profiled, config, batch, steps, peak);
      kernels.wasmStepProfile.push(...ops.map((op) => ({ model: label, ...op })));
      profiled.dispose();
    }
    console.error("wasm kernels…");
    kernels.wasmGemm = await gemmBench([1, 2], steps);
    kernels.wasmDepthwiseAndUnits = await depthwiseBench([1, 2], steps);
    if (train) kernels.dataPipeline = await dataBench(train, { batch });
  }
  if (backends.includes("webgpu")) {
    const gpu = "gpu" in navigator ? await requestGpu({ allowFallback: true }) : null;
    if (!gpu) console.error("webgpu: no adapter found");
    else {
      const backend = await WebGpuBackend.create({ allowFallback: true, gpu });
      // A CPU fallback adapter (lavapipe) runs ~3 GFLOP/s: only the small model, at a small batch.
      const list = gpu.isFallback ? ["cpu"] : models;
      const gpuBatch = gpu.isFallback ? 8 : batch;
      for (const name of list) {
        console.error(`webgpu (${gpu.description}): ${name}…`);
        rows.push(
          await benchModel(
            backend,
            gpu.description,
            name,
            gpuBatch,
            gpu.isFallback ? 2 : steps,
            train,
            gpuPeakGflops(gpu.description),
          ),
        );
      }
      kernels.webgpuReadback = [await readbackLatency(backend)];
      backend.dispose();
      console.error("webgpu kernels…");
      const profiled = await WebGpuBackend.create({ allowFallback: true, profile: true }); // dispose() destroyed the device
      const { hdim, kernel, patch } = modelOf(list[0]).config;
      kernels.webgpu = await webgpuKernelRows(profiled, {
        batch: gpuBatch,
        hdim,
        kernel,
        patch,
        repeats: steps,
      });
      profiled.dispose();
    }
  }
  if (flags.torch !== "none") {
    for (const name of models) {
      console.error(`pytorch ${flags.torch}: ${name}…`);
      const row = await torchRow(name, batch, steps, flags.torch);
      if (row) rows.push(row);
    }
  }
  console.log(table(rows));
  for (const [name, list] of Object.entries(kernels)) {
    console.log(`\n${name}:`);
    console.table(list);
  }
  for (const model of new Set(rows.map((r) => r.model))) {
    const torch = rows.find((r) => r.model === model && r.backend.startsWith("pytorch"));
    for (const r of rows.filter((r) => r.model === model && r !== torch && torch)) {
      console.log(
        `${model}: ${r.backend} / ${torch!.backend} training throughput = ${
          (r.imagesPerS / torch!.imagesPerS).toFixed(2)
        }×`,
      );
    }
  }
  await Deno.writeTextFile(
    `${flags.out}.json`,
    JSON.stringify({ date: new Date().toISOString(), rows, kernels }, null, 1) + "\n",
  );
  await Deno.writeTextFile(`${flags.out}.svg`, chart(rows));
  console.error(`wrote ${flags.out}.json and ${flags.out}.svg`);
}
