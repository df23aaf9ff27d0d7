// Batches for the trainer, prepared ahead of use by data workers (src/data/augment_worker.ts) so
// that decoding and augmentation overlap the model's compute. The order is a seeded permutation
// per (seed, epoch) and each sample's augmentation depends on (seed, epoch, index) only, so a run
// is reproducible whatever the worker count, and resuming can start mid-epoch (startBatch).
import { epochOrder } from "./random.ts";
import type { CifarSplit } from "./cifar.ts";
import type { BatchReply, WorkerInit, WorkerJob, WorkerReply } from "./augment_worker.ts";

export type { AugmentConfig } from "./augment_plan.ts";
import type { AugmentConfig } from "./augment_plan.ts";

export interface Batch {
  /** count×32×32×3 normalised float32, NHWC. */
  images: Float32Array;
  /** count class labels as float32. */
  labels: Float32Array;
  count: number;
  /** Position of the batch in its epoch. */
  index: number;
}

export interface LoaderOptions {
  batch: number;
  shuffle: boolean;
  seed: number;
  /** null (or enabled: false): decode + normalise only, as for evaluation. */
  augment: AugmentConfig | null;
  /** Drop the last partial batch. */
  dropLast: boolean;
  /** Data workers (default: half the cores, 1..4). */
  workers?: number;
  /** Batches prepared ahead (default: 2 per worker, at least 2). */
  prefetch?: number;
}

interface Pending {
  resolve(reply: BatchReply): void;
  reject(error: Error): void;
}

export class BatchLoader {
  readonly batchesPerEpoch: number;
  /** Records in the split. */
  readonly records: number;
  readonly #split: CifarSplit;
  readonly #options: LoaderOptions;
  readonly #workers: Worker[];
  readonly #prefetch: number;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  #closed = false;

  private constructor(split: CifarSplit, options: LoaderOptions, workers: Worker[]) {
    this.#split = split;
    this.#options = options;
    this.#workers = workers;
    this.#prefetch = options.prefetch ?? Math.max(2, 2 * workers.length);
    this.records = split.count;
    this.batchesPerEpoch = options.dropLast
      ? Math.floor(split.count / options.batch)
      : Math.ceil(split.count / options.batch);
    for (const worker of workers) {
      worker.onmessage = (event: MessageEvent<WorkerReply>) => this.#settle(event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        this.#failAll(new Error(`data worker failed: ${event.message}`));
      };
    }
  }

  static async create(split: CifarSplit, options: LoaderOptions): Promise<BatchLoader> {
    const { batch, dropLast } = options;
    if (!Number.isInteger(batch) || batch < 1) throw new Error(`--batch: ${batch} is not a positive integer`);
    if (dropLast && batch > split.count) {
      throw new Error(
        `--batch: ${batch} is larger than the ${split.count} images, and the last partial batch is dropped`,
      );
    }
    const count = options.workers ?? Math.min(4, Math.max(1, Math.floor(navigator.hardwareConcurrency / 2)));
    if (!Number.isInteger(count) || count < 1) {
      throw new Error(`--workers: ${count} is not a positive integer`);
    }
    if (options.prefetch !== undefined && !(Number.isInteger(options.prefetch) && options.prefetch >= 1)) {
      throw new Error(`prefetch: ${options.prefetch} is not a positive integer`);
    }
    // The workers share the images; copy them into shared memory once if they are not there yet.
    let images = split.images;
    if (!(images.buffer instanceof SharedArrayBuffer)) {
      images = new Uint8Array(new SharedArrayBuffer(split.images.length));
      images.set(split.images);
    }
    const workers = Array.from(
      { length: count },
      () => new Worker(new URL("./augment_worker.ts", import.meta.url), { type: "module" }),
    );
    const loader = new BatchLoader({ ...split, images }, options, workers);
    const init = (): WorkerInit => ({
      kind: "init",
      id: loader.#nextId++,
      images,
      labels: split.labels,
      batch,
      augment: options.augment,
      seed: options.seed,
    });
    try {
      await Promise.all(workers.map((worker) => loader.#request(worker, init())));
    } catch (e) {
      loader.close();
      throw e;
    }
    return loader;
  }

  /** The batches of epoch `e` in order, from batch `startBatch` (to resume mid-epoch). */
  epoch(e: number, startBatch = 0): AsyncIterable<Batch> {
    if (!Number.isInteger(startBatch) || startBatch < 0 || startBatch > this.batchesPerEpoch) {
      throw new Error(`startBatch: ${startBatch} is outside 0..${this.batchesPerEpoch}`);
    }
    return this.#batches(e, startBatch);
  }

  async *#batches(e: number, startBatch: number): AsyncGenerator<Batch> {
    const { batch, shuffle, seed } = this.#options;
    const count = this.#split.count;
    const order = epochOrder(count, seed, e, shuffle);
    const inFlight: Promise<Batch>[] = [];
    let next = startBatch;
    const submit = () => {
      const index = next++;
      const indices = order.slice(index * batch, Math.min((index + 1) * batch, count));
      const size = indices.length; // the indices are transferred to the worker
      const worker = this.#workers[index % this.#workers.length];
      const job: WorkerJob = { kind: "job", id: this.#nextId++, epoch: e, indices };
      const reply = this.#request(worker, job, [indices.buffer])
        .then(({ images, labels }) => ({ images, labels, count: size, index }));
      reply.catch(() => {}); // a consumer that stops early leaves replies nobody awaits
      inFlight.push(reply);
    };
    while (next < this.batchesPerEpoch && inFlight.length < this.#prefetch) submit();
    while (inFlight.length > 0) {
      const ready = await inFlight.shift()!;
      if (next < this.batchesPerEpoch) submit();
      yield ready;
    }
  }

  /** Stops the workers; pending batches fail. The loader cannot be used afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const worker of this.#workers) worker.terminate();
    this.#failAll(new Error("batch loader closed"));
  }

  #request(
    worker: Worker,
    message: WorkerInit | WorkerJob,
    transfer: Transferable[] = [],
  ): Promise<BatchReply> {
    if (this.#closed) return Promise.reject(new Error("batch loader closed"));
    return new Promise((resolve, reject) => {
      this.#pending.set(message.id, { resolve, reject });
      worker.postMessage(message, transfer);
    });
  }

  #settle(reply: WorkerReply): void {
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    this.#pending.delete(reply.id);
    if ("error" in reply) pending.reject(new Error(reply.error));
    else pending.resolve(reply);
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}
