import { deepStrictEqual as assertEquals, notDeepStrictEqual, ok, rejects } from "node:assert/strict";
import { type Batch, BatchLoader } from "../src/data/loader.ts";
import { CIFAR_MEAN, CIFAR_STD } from "../src/data/augment.ts";
import { EVERY_AUGMENT_OP, makeSplit } from "./make_cifar.ts";

async function collect(loader: BatchLoader, epoch: number, start = 0): Promise<Batch[]> {
  const batches: Batch[] = [];
  for await (const batch of loader.epoch(epoch, start)) batches.push(batch);
  return batches;
}

function concat(arrays: Float32Array[]): Float32Array {
  const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) out.set(a, at), at += a.length;
  return out;
}

Deno.test("loader: no shuffle gives file order, decoded and normalised to NHWC; the last batch is partial", async () => {
  const split = makeSplit(23);
  const loader = await BatchLoader.create(split, {
    batch: 5,
    shuffle: false,
    seed: 1,
    augment: null,
    dropLast: false,
  });
  try {
    const batches = await collect(loader, 0);
    assertEquals(loader.batchesPerEpoch, 5);
    assertEquals(batches.map((b) => [b.index, b.count, b.images.length, b.labels.length]), [
      [0, 5, 5 * 3072, 5],
      [1, 5, 5 * 3072, 5],
      [2, 5, 5 * 3072, 5],
      [3, 5, 5 * 3072, 5],
      [4, 3, 3 * 3072, 3],
    ]);
    assertEquals(Array.from(concat(batches.map((b) => b.labels))), Array.from(split.labels));
    const images = concat(batches.map((b) => b.images));
    let worst = 0;
    for (let i = 0; i < 23; i++) {
      for (let p = 0; p < 1024; p++) {
        for (let c = 0; c < 3; c++) {
          const v = split.images[i * 3072 + c * 1024 + p];
          const expected = (v / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c];
          worst = Math.max(worst, Math.abs(images[(i * 1024 + p) * 3 + c] - expected));
        }
      }
    }
    ok(worst < 1e-6, `worst error ${worst}`);
  } finally {
    loader.close();
  }
});

Deno.test("loader: shuffle is a seeded permutation per epoch; dropLast drops the partial batch", async () => {
  const split = makeSplit(30);
  const options = { batch: 8, shuffle: true, seed: 7, augment: null, dropLast: true, workers: 2 };
  const a = await BatchLoader.create(split, options);
  const b = await BatchLoader.create(split, options);
  const c = await BatchLoader.create(split, { ...options, seed: 8, dropLast: false });
  const inOrder = await BatchLoader.create(split, { ...options, shuffle: false, dropLast: false });
  // a sample's identity: its label and first 16 normalised values
  const samples = async (loader: BatchLoader, e: number) =>
    (await collect(loader, e)).flatMap((x) =>
      Array.from(
        { length: x.count },
        (_, i) => `${x.labels[i]}:${x.images.subarray(i * 3072, i * 3072 + 16)}`,
      )
    );
  try {
    assertEquals([a.batchesPerEpoch, c.batchesPerEpoch], [3, 4]);
    const epoch0 = await samples(a, 0);
    assertEquals(epoch0.length, 24);
    assertEquals(await samples(b, 0), epoch0);
    notDeepStrictEqual(await samples(a, 1), epoch0);
    notDeepStrictEqual((await samples(c, 0)).slice(0, 24), epoch0);
    // a full epoch without dropLast holds every image exactly once, in a new order
    const fileOrder = await samples(inOrder, 0);
    const shuffled = await samples(c, 3);
    assertEquals(new Set(fileOrder).size, 30);
    notDeepStrictEqual(shuffled, fileOrder);
    assertEquals([...shuffled].sort(), [...fileOrder].sort());
  } finally {
    for (const loader of [a, b, c, inOrder]) loader.close();
  }
});

Deno.test("loader: startBatch resumes mid-epoch with the same batches", async () => {
  const split = makeSplit(40);
  const loader = await BatchLoader.create(split, {
    batch: 6,
    shuffle: true,
    seed: 3,
    augment: EVERY_AUGMENT_OP,
    dropLast: false,
  });
  try {
    const full = await collect(loader, 2);
    const resumed = await collect(loader, 2, 4);
    assertEquals(resumed.map((b) => b.index), [4, 5, 6]);
    assertEquals(resumed, full.slice(4));
    assertEquals(await collect(loader, 2, 7), []);
    await rejects(async () => await collect(loader, 2, 8), /startBatch: 8 is outside 0\.\.7/);
  } finally {
    loader.close();
  }
});

Deno.test("loader: augmented images depend on (seed, epoch, index) only, not on workers or batch size", async () => {
  const split = makeSplit(26);
  const run = async (workers: number, batch: number, epoch: number, seed = 5) => {
    const loader = await BatchLoader.create(split, {
      batch,
      shuffle: true,
      seed,
      augment: EVERY_AUGMENT_OP,
      dropLast: false,
      workers,
    });
    try {
      return concat((await collect(loader, epoch)).map((b) => b.images));
    } finally {
      loader.close();
    }
  };
  const one = await run(1, 4, 1);
  assertEquals(await run(3, 7, 1), one);
  notDeepStrictEqual(await run(1, 4, 2), one);
  notDeepStrictEqual(await run(1, 4, 1, 6), one);
  const plain = await BatchLoader.create(split, {
    batch: 4,
    shuffle: true,
    seed: 5,
    augment: null,
    dropLast: false,
  });
  notDeepStrictEqual(concat((await collect(plain, 1)).map((b) => b.images)), one);
  plain.close();
});

Deno.test("loader: bad options and use after close are clear errors", async () => {
  const split = makeSplit(10);
  const base = { batch: 4, shuffle: false, seed: 1, augment: null, dropLast: false };
  await rejects(BatchLoader.create(split, { ...base, batch: 0 }), /--batch: 0 is not a positive integer/);
  await rejects(
    BatchLoader.create(split, { ...base, batch: 11, dropLast: true }),
    /--batch: 11 is larger than the 10/,
  );
  await rejects(BatchLoader.create(split, { ...base, workers: 0 }), /--workers: 0/);
  const loader = await BatchLoader.create(split, base);
  loader.close();
  await rejects(collect(loader, 0), /batch loader closed/);
});
