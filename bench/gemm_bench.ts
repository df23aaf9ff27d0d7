// GFLOP/s of the WASM GEMM (asm/gemm.ts) on ConvMixer-256/8's shapes at batch 128 and 16×16
// tokens (patch size 2 on 32×32 images), on 1 and 2 threads, median of several runs.
//   deno run -A bench/gemm_bench.ts [--threads 1,2] [--runs 5]
import { parseArgs } from "node:util";
import { WasmBackend } from "../src/wasm/backend.ts";
import type { GemmArgs } from "../src/wasm/ops.ts";

export interface GemmBenchRow {
  shape: string;
  threads: number;
  M: number;
  N: number;
  K: number;
  milliseconds: number;
  gflops: number;
}

const TOKENS = 128 * 16 * 16;
const SHAPES: { shape: string; transA: boolean; transB: boolean; M: number; N: number; K: number }[] = [
  { shape: "pointwise forward x·Wᵀ", transA: false, transB: true, M: TOKENS, N: 256, K: 256 },
  { shape: "pointwise dx = dOut·W", transA: false, transB: false, M: TOKENS, N: 256, K: 256 },
  { shape: "pointwise dW = dOutᵀ·x", transA: true, transB: false, M: 256, N: 256, K: TOKENS },
  { shape: "patch embed forward (p=2)", transA: false, transB: true, M: TOKENS, N: 256, K: 12 },
  { shape: "patch embed dW (p=2)", transA: true, transB: false, M: 256, N: 12, K: TOKENS },
  { shape: "head forward", transA: false, transB: true, M: 128, N: 10, K: 256 },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Times every shape on each thread count; returns one row per (shape, threads). */
export async function gemmBench(threadCounts: number[] = [1, 2], runs = 5): Promise<GemmBenchRow[]> {
  const rows: GemmBenchRow[] = [];
  for (const threads of threadCounts) {
    const backend = await WasmBackend.create({ threads });
    try {
      for (const { shape, transA, transB, M, N, K } of SHAPES) {
        const a = backend.tensor([M * K]);
        const b = backend.tensor([K * N]);
        const c = backend.tensor([M * N]);
        backend.write(a, Float32Array.from({ length: a.size }, () => Math.random() - 0.5));
        backend.write(b, Float32Array.from({ length: b.size }, () => Math.random() - 0.5));
        const args: GemmArgs = {
          transA,
          transB,
          M,
          N,
          K,
          a: a,
          lda: transA ? M : K,
          b: b,
          ldb: transB ? K : N,
          c: c,
          ldc: N,
        };
        // Small shapes repeat inside one timing so that the clock's resolution does not matter.
        const repeats = Math.max(1, Math.ceil(2e8 / (2 * M * N * K)));
        backend.gemm(args);
        const times: number[] = [];
        for (let run = 0; run < runs; run++) {
          const start = performance.now();
          for (let r = 0; r < repeats; r++) backend.gemm(args);
          times.push((performance.now() - start) / repeats);
        }
        const milliseconds = median(times);
        rows.push({ shape, threads, M, N, K, milliseconds, gflops: (2 * M * N * K) / (milliseconds * 1e6) });
      }
    } finally {
      backend.dispose();
    }
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { threads: { type: "string" }, runs: { type: "string" } } });
  const threadCounts = (values.threads ?? "1,2").split(",").map(Number);
  const runs = Number(values.runs ?? "5");
  if (threadCounts.some((t) => !Number.isInteger(t) || t < 1) || !(runs >= 1)) {
    throw new Error("gemm_bench: --threads takes positive integers like 1,2 and --runs a positive count");
  }
  console.log("shape                          threads  M×N×K                  ms      GFLOP/s");
  for (const row of await gemmBench(threadCounts, runs)) {
    console.log(
      `${row.shape.padEnd(31)}${String(row.threads).padStart(7)}  ${
        `${row.M}×${row.N}×${row.K}`.padEnd(20)
      }` +
        `${row.milliseconds.toFixed(2).padStart(8)}  ${row.gflops.toFixed(1).padStart(9)}`,
    );
  }
}
