// Speed of the WASM depthwise conv (asm/depthwise.ts) and the bias-GELU-BatchNorm unit
// (asm/gelu_batchnorm.ts) at ConvMixer-256/8's shape: batch 128, 16×16 tokens, 256 channels,
// k = 5 and 9, on 1 and 2 threads, median of several runs; --channels adds other widths and
// --ops picks the families (depthwise, gelu).
//   deno run -A bench/depthwise_bench.ts [--threads 1,2] [--runs 5] [--channels 256,128] [--ops gelu]
// GFLOP/s count the conv's nominal 2·k²·B·H·W·C (the zero-padding taps included); the GELU-BN
// rows report elements per nanosecond instead (its cost is the erf/exp polynomials, not a FLOP count).
import { parseArgs } from "node:util";
import { WasmBackend } from "../src/wasm/backend.ts";

export interface DepthwiseBenchRow {
  op: string;
  shape: string;
  threads: number;
  milliseconds: number;
  /** Depthwise rows only. */
  gflops: number | null;
  elementsPerNs: number;
}

const [B, H, W] = [128, 16, 16];
export type DepthwiseBenchFamily = "depthwise" | "gelu";

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function timeMedian(runs: number, fn: () => void): number {
  for (let warm = 0; warm < 3; warm++) fn(); // V8 tiers hot WASM functions up after a few calls
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    fn();
    times.push(performance.now() - start);
  }
  return median(times);
}

/** Times every op on each thread count; returns one row per (op, threads). */
export async function depthwiseBench(
  threadCounts: number[] = [1, 2],
  runs = 5,
  channelCounts: number[] = [256],
  families: DepthwiseBenchFamily[] = ["depthwise", "gelu"],
): Promise<DepthwiseBenchRow[]> {
  const rows: DepthwiseBenchRow[] = [];
  const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  for (const C of channelCounts) {
    for (const threads of threadCounts) {
      const elements = B * H * W * C, shape = `[${B},${H},${W},${C}]`;
      const backend = await WasmBackend.create({ threads });
      try {
        const x = backend.tensor([B, H, W, C]), out = backend.tensor([B, H, W, C]);
        const dOut = backend.tensor([B, H, W, C]), dx = backend.tensor([B, H, W, C]);
        backend.write(x, random(elements));
        backend.write(dOut, random(elements));
        const row = (op: string, milliseconds: number, flops: number | null) =>
          rows.push({
            op,
            shape,
            threads,
            milliseconds,
            gflops: flops === null ? null : flops / (milliseconds * 1e6),
            elementsPerNs: elements / (milliseconds * 1e6),
          });

        for (const k of families.includes("depthwise") ? [5, 9] : []) {
          const weight = backend.tensor([k, k, C]), dWeight = backend.tensor([k, k, C]);
          backend.write(weight, random(k * k * C));
          const flops = 2 * k * k * elements;
          row(
            `depthwise forward k=${k}`,
            timeMedian(runs, () => backend.depthwiseConvForward(x, weight, out)),
            flops,
          );
          row(
            `depthwise dx k=${k}`,
            timeMedian(runs, () => backend.depthwiseConvBackwardInput(dOut, weight, dx)),
            flops,
          );
          row(
            `depthwise dWeight k=${k}`,
            timeMedian(runs, () => backend.depthwiseConvBackwardWeight(x, dOut, dWeight)),
            flops,
          );
        }

        if (!families.includes("gelu")) continue;
        const perChannel = () => backend.tensor([C]);
        const [bias, gamma, beta, runningMean, runningVar, dBias, dGamma, dBeta] = Array.from(
          { length: 8 },
          perChannel,
        );
        const saved = backend.tensor([2, C]);
        const unit = { bias, gamma, beta, runningMean, runningVar };
        const grads = { bias: dBias, gamma: dGamma, beta: dBeta };
        backend.fill(gamma, 1);
        backend.fill(runningVar, 1);
        // Without and with u kept for the backward (the model keeps it where the backend reuses it).
        const geluOut = backend.tensor(x.shape);
        for (const kept of [null, geluOut]) {
          const how = kept ? ", GELU output kept" : "";
          const forward = () => backend.biasGeluBatchNormForward(x, unit, saved, dOut, out, true, kept);
          row(`bias-GELU-BN forward (training, residual${how})`, timeMedian(runs, forward), null);
          const backward = () => backend.biasGeluBatchNormBackward(x, unit, saved, dOut, dx, grads, kept);
          row(`bias-GELU-BN backward${kept ? " (GELU output kept)" : ""}`, timeMedian(runs, backward), null);
        }
        row(
          "bias-GELU-BN forward (eval)",
          timeMedian(
            runs,
            () => backend.biasGeluBatchNormForward(x, unit, saved, null, out, false),
          ),
          null,
        );
      } finally {
        backend.dispose();
      }
    }
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      threads: { type: "string" },
      runs: { type: "string" },
      channels: { type: "string" },
      ops: { type: "string" },
    },
  });
  const threadCounts = (values.threads ?? "1,2").split(",").map(Number);
  const channelCounts = (values.channels ?? "256").split(",").map(Number);
  const families = (values.ops ?? "depthwise,gelu").split(",") as DepthwiseBenchFamily[];
  const runs = Number(values.runs ?? "5");
  const positive = (n: number) => Number.isInteger(n) && n >= 1;
  if (!threadCounts.every(positive) || !channelCounts.every(positive) || !positive(runs)) {
    throw new Error(
      "depthwise_bench: --threads and --channels take positive integers like 1,2 and --runs a positive count",
    );
  }
  if (!families.every((f) => f === "depthwise" || f === "gelu")) {
    throw new Error(`depthwise_bench: --ops takes depthwise and/or gelu, got ${values.ops}`);
  }
  console.log(
    `op at ${B}×${H}×${W}×C                                 threads        ms   GFLOP/s   elements/ns`,
  );
  for (const row of await depthwiseBench(threadCounts, runs, channelCounts, families)) {
    console.log(
      `${(row.op + " " + row.shape).padEnd(55)}${String(row.threads).padStart(7)}${
        row.milliseconds.toFixed(2).padStart(10)
      }` +
        `${(row.gflops === null ? "-" : row.gflops.toFixed(1)).padStart(10)}${
          row.elementsPerNs.toFixed(2).padStart(14)
        }`,
    );
  }
}
