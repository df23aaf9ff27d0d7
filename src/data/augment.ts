// The Augmenter: runs asm/augment.ts over a batch in a WebAssembly memory of its own, with each
// sample's plan drawn by src/data/augment_plan.ts.
import { Arena, createSharedMemory, instantiate, loadWasmModule, type WasmExports } from "../wasm/module.ts";
import { IMAGE_BYTES } from "./cifar.ts";
import { type AugmentConfig, drawPlan, encodePlan, type Plan, PLAN_WORDS } from "./augment_plan.ts";

export const CIFAR_MEAN = [0.4914, 0.4822, 0.4465];
export const CIFAR_STD = [0.2471, 0.2435, 0.2616];

/**
 * Prepares batches with asm/augment.ts in a WebAssembly memory of its own (one per worker):
 * gathers the records, draws the plans, runs the kernel and copies the result out.
 */
export class Augmenter {
  #exports: WasmExports;
  #memory: WebAssembly.Memory;
  #records: number;
  #plans: number;
  #meanStd: number;
  #scratch: number;
  #out: number;

  private constructor(exports: WasmExports, memory: WebAssembly.Memory, readonly batch: number) {
    this.#exports = exports;
    this.#memory = memory;
    const arena = new Arena(memory, exports.heapBase());
    this.#records = arena.alloc(batch * IMAGE_BYTES);
    this.#plans = arena.alloc(batch * PLAN_WORDS * 4);
    this.#meanStd = arena.alloc(6 * 4);
    this.#scratch = arena.alloc((2 * IMAGE_BYTES + 256) * 4);
    this.#out = arena.alloc(batch * IMAGE_BYTES * 4);
    new Float32Array(memory.buffer, this.#meanStd, 6).set([...CIFAR_MEAN, ...CIFAR_STD]);
  }

  /** An augmenter for batches of up to `batch` images. */
  static async create(batch: number): Promise<Augmenter> {
    const memory = createSharedMemory();
    return new Augmenter(instantiate(await loadWasmModule(), memory), memory, batch);
  }

  /**
   * Normalised NHWC float32 images of the records `indices` of `images` (count×3072 CHW bytes);
   * with `config` (enabled) each is augmented by its plan for (seed, epoch, index).
   */
  run(
    images: Uint8Array,
    indices: ArrayLike<number>,
    config: AugmentConfig | null,
    seed: number,
    epoch: number,
  ): Float32Array<ArrayBuffer> {
    const records = this.#recordArea(indices.length);
    for (let i = 0; i < indices.length; i++) {
      const at = indices[i] * IMAGE_BYTES;
      records.set(images.subarray(at, at + IMAGE_BYTES), i * IMAGE_BYTES);
    }
    const augment = config !== null && config.enabled;
    if (augment) {
      for (let i = 0; i < indices.length; i++) {
        encodePlan(drawPlan(config, seed, epoch, indices[i]), this.#plan(i));
      }
    }
    return this.#execute(indices.length, augment);
  }

  /** Runs given plans (or none: decode + normalise only) over `records` (count×3072 bytes). */
  runPlans(records: Uint8Array, plans: Plan[] | null): Float32Array<ArrayBuffer> {
    const count = records.length / IMAGE_BYTES;
    this.#recordArea(count).set(records);
    plans?.forEach((plan, i) => encodePlan(plan, this.#plan(i)));
    return this.#execute(count, plans !== null);
  }

  #recordArea(count: number): Uint8Array {
    if (count > this.batch) {
      throw new Error(`augmenter: ${count} images, more than its batch of ${this.batch}`);
    }
    return new Uint8Array(this.#memory.buffer, this.#records, count * IMAGE_BYTES);
  }

  #plan(i: number): Int32Array {
    return new Int32Array(this.#memory.buffer, this.#plans + i * PLAN_WORDS * 4, PLAN_WORDS);
  }

  /** Runs the kernel and copies the images out of the (shared, so not transferable) memory. */
  #execute(count: number, withPlans: boolean): Float32Array<ArrayBuffer> {
    this.#exports.augmentBatch(
      this.#records,
      withPlans ? this.#plans : 0,
      count,
      this.#meanStd,
      this.#scratch,
      this.#out,
    );
    const out = new Float32Array(count * IMAGE_BYTES);
    out.set(new Float32Array(this.#memory.buffer, this.#out, count * IMAGE_BYTES));
    return out;
  }
}
