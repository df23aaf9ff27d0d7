// A data worker: holds the split's images (shared, not copied) and an Augmenter with a WebAssembly
// memory of its own, and answers each batch request with transferred image and label buffers.
import { Augmenter } from "./augment.ts";
import type { AugmentConfig } from "./augment_plan.ts";

export interface WorkerInit {
  kind: "init";
  id: number;
  images: Uint8Array;
  labels: Uint8Array;
  batch: number;
  augment: AugmentConfig | null;
  seed: number;
}

export interface WorkerJob {
  kind: "job";
  id: number;
  epoch: number;
  indices: Int32Array;
}

export interface BatchReply {
  id: number;
  images: Float32Array<ArrayBuffer>;
  labels: Float32Array<ArrayBuffer>;
}

export type WorkerReply = BatchReply | { id: number; error: string };

// The worker's global scope, typed here: a `deno.worker` lib directive would retype the globals of
// every module that imports the message types above (and JSR refuses such directives).
const worker = self as unknown as {
  onmessage: ((event: MessageEvent<WorkerInit | WorkerJob>) => void) | null;
  postMessage(message: WorkerReply, transfer?: Transferable[]): void;
};

let ready: Promise<{ init: WorkerInit; augmenter: Augmenter }> | null = null;

worker.onmessage = async (event: MessageEvent<WorkerInit | WorkerJob>) => {
  const message = event.data;
  if (message.kind === "init") {
    ready = Augmenter.create(message.batch).then((augmenter) => ({ init: message, augmenter }));
    try {
      await ready;
      worker.postMessage({ id: message.id, images: new Float32Array(0), labels: new Float32Array(0) });
    } catch (e) {
      worker.postMessage({ id: message.id, error: (e as Error).message });
    }
    return;
  }
  try {
    const { init, augmenter } = await ready!;
    const images = augmenter.run(init.images, message.indices, init.augment, init.seed, message.epoch);
    const labels = Float32Array.from(message.indices, (i) => init.labels[i]);
    const reply: BatchReply = { id: message.id, images, labels };
    worker.postMessage(reply, [images.buffer, labels.buffer]);
  } catch (e) {
    worker.postMessage({ id: message.id, error: (e as Error).message });
  }
};
