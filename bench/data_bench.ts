// Images/s of batch preparation: decode + normalise only (eval) and the official ConvMixer CIFAR
// recipe (src/options.ts: flip, RandAugment n=2 m=12; scale 1, no jitter or erasing), first in one thread (the kernel's own speed: what one worker delivers), then through the
// BatchLoader with 1..N workers (workers, messages and transfers included). Medians of several runs.
//   deno run -A bench/data_bench.ts [--data PATH] [--batch 128] [--workers 1,2] [--runs 5]
import { parseArgs } from "node:util";
import { Augmenter } from "../src/data/augment.ts";
import type { AugmentConfig } from "../src/data/augment_plan.ts";
import { epochOrder } from "../src/data/random.ts";
import { type CifarSplit, openCifar } from "../src/data/cifar.ts";
import { BatchLoader } from "../src/data/loader.ts";
import { augmentConfig, PRESETS } from "../src/recipe.ts";

export interface DataBenchRow {
  recipe: "none" | "official";
  /** "kernel": one thread calling the Augmenter directly; "loader": BatchLoader end to end. */
  path: "kernel" | "loader";
  workers: number;
  batch: number;
  imagesPerS: number;
}

export const OFFICIAL_RECIPE: AugmentConfig = augmentConfig(PRESETS.official)!;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Random images standing in for CIFAR-10 when no archive is given (speed does not depend on content). */
function syntheticSplit(count: number): CifarSplit {
  const images = new Uint8Array(new SharedArrayBuffer(count * 3072));
  for (let i = 0; i < images.length; i++) images[i] = Math.imul(i, 2654435761) >>> 24;
  return { images, labels: Uint8Array.from({ length: count }, (_, i) => i % 10), count };
}

export async function dataBench(
  split: CifarSplit,
  { batch = 128, workerCounts = [1, 2], runs = 5, batchesPerRun = 20 } = {},
): Promise<DataBenchRow[]> {
  const rows: DataBenchRow[] = [];
  const recipes = [["none", null], ["official", OFFICIAL_RECIPE]] as const;
  const augmenter = await Augmenter.create(batch);
  const order = epochOrder(split.count, 0, 0, true);
  for (const [recipe, config] of recipes) {
    const times: number[] = [];
    for (let run = 0; run < runs + 1; run++) {
      const start = performance.now();
      for (let b = 0; b < batchesPerRun; b++) {
        const at = ((run * batchesPerRun + b) * batch) % (split.count - batch);
        augmenter.run(split.images, order.subarray(at, at + batch), config, 0, run);
      }
      if (run > 0) times.push(performance.now() - start); // the first run warms up
    }
    rows.push({
      recipe,
      path: "kernel",
      workers: 1,
      batch,
      imagesPerS: (batch * batchesPerRun * 1000) / median(times),
    });
    for (const workers of workerCounts) {
      const loader = await BatchLoader.create(split, {
        batch,
        shuffle: true,
        seed: 0,
        augment: config,
        dropLast: true,
        workers,
      });
      try {
        const times: number[] = [];
        for (let run = 0; run < runs + 1; run++) {
          const start = performance.now();
          let n = 0;
          for await (const _ of loader.epoch(run)) if (++n === batchesPerRun) break;
          if (run > 0) times.push(performance.now() - start);
        }
        rows.push({
          recipe,
          path: "loader",
          workers,
          batch,
          imagesPerS: (batch * batchesPerRun * 1000) / median(times),
        });
      } finally {
        loader.close();
      }
    }
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      data: { type: "string" },
      batch: { type: "string", default: "128" },
      workers: { type: "string", default: "1,2" },
      runs: { type: "string", default: "5" },
    },
    strict: true,
  });
  const split = values.data ? (await openCifar(values.data)).train : syntheticSplit(10_000);
  const rows = await dataBench(split, {
    batch: Number(values.batch),
    workerCounts: values.workers.split(",").map(Number),
    runs: Number(values.runs),
  });
  console.table(rows.map((r) => ({ ...r, imagesPerS: Math.round(r.imagesPerS) })));
}
