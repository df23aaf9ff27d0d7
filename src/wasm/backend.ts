// The CPU backend as a runtime: one shared WebAssembly memory with an llm.c-style arena (every
// tensor allocated once at start-up, never freed; the free space above serves as scratch), the
// tensors in it, and a thread pool over it (threads.ts). The ops (kernel launches) are the
// superclass's, ops.ts; every op runs synchronously on all threads before its method returns.
import type { Backend, Packed, Tensor } from "../backend.ts";
import { numel } from "../backend.ts";
import { alignUp, Arena, createSharedMemory, loadWasmModule, WASM_MEMORY_LIMIT_BYTES } from "./module.ts";
import { WasmOps } from "./ops.ts";
import { ThreadPool } from "./threads.ts";

/** A tensor of one WasmBackend: `size` floats at byte `offset` (64-byte aligned) of its memory. */
class WasmTensor implements Tensor {
  constructor(
    readonly shape: readonly number[],
    readonly size: number,
    readonly offset: number,
    readonly memory: WebAssembly.Memory,
  ) {}
}

function shapeText(t: Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(`wasm backend: ${message()}`);
}

/** The element count of a shape of non-negative integers. */
function sizeOf(op: string, shape: readonly number[]): number {
  check(shape.every((d) => Number.isInteger(d) && d >= 0), () => `${op}: bad shape [${shape.join(", ")}]`);
  return numel(shape);
}

export class WasmBackend extends WasmOps implements Backend {
  readonly name = "wasm";
  readonly description: string;
  readonly #arena: Arena;
  /** Everything lives in one 32-bit memory: the model trims its activations to fit (src/model.ts). */
  readonly memoryLimitBytes = WASM_MEMORY_LIMIT_BYTES;
  /** With the forward's u the backward never evaluates Φ: 3× faster statistics pass (asm/gelu_batchnorm.ts). */
  readonly reusesGeluOutput = true;

  private constructor(arena: Arena, readonly pool: ThreadPool) {
    super();
    this.#arena = arena;
    this.description = `wasm: WebAssembly SIMD on ${pool.threads} thread${pool.threads === 1 ? "" : "s"}`;
  }

  static async create(options: { threads?: number } = {}): Promise<WasmBackend> {
    const module = await loadWasmModule();
    const memory = createSharedMemory();
    const pool = await ThreadPool.create(module, memory, options.threads ?? navigator.hardwareConcurrency);
    return new WasmBackend(new Arena(memory, pool.exports.heapBase()), pool);
  }

  /** The shared memory's size: tensors, plus the largest scratch any kernel has asked for. */
  get allocatedBytes(): number {
    return this.#arena.memory.buffer.byteLength;
  }

  offset(t: Tensor): number {
    if (!(t instanceof WasmTensor) || t.memory !== this.#arena.memory) {
      throw new Error(`wasm backend: tensor ${shapeText(t)} was not created by this backend`);
    }
    return t.offset;
  }

  f32(t: Tensor): Float32Array {
    return new Float32Array(this.#arena.memory.buffer, this.offset(t), t.size);
  }

  scratch(bytes: number): number {
    return this.#arena.scratch(bytes);
  }

  // ---- memory ---------------------------------------------------------------------------------

  tensor(shape: readonly number[]): Tensor {
    const size = sizeOf("tensor", shape);
    const t = new WasmTensor([...shape], size, this.#arena.alloc(size * 4), this.#arena.memory);
    this.f32(t).fill(0);
    return t;
  }

  view(t: Tensor, shape: readonly number[]): Tensor {
    const size = sizeOf("view", shape);
    check(size <= t.size, () => `view: [${shape.join(", ")}] is larger than ${shapeText(t)}`);
    return new WasmTensor([...shape], size, this.offset(t), this.#arena.memory);
  }

  /** Parts at the arena's alignment, as separately allocated tensors would be. */
  pack(shapes: readonly (readonly number[])[]): Packed {
    const offsets: number[] = [];
    let bytes = 0;
    for (const shape of shapes) {
      offsets.push(bytes);
      bytes = alignUp(bytes + 4 * sizeOf("pack", shape));
    }
    const whole = this.tensor([bytes / 4]);
    const parts = shapes.map((shape, i) =>
      new WasmTensor([...shape], numel(shape), this.offset(whole) + offsets[i], this.#arena.memory)
    );
    return { whole, parts };
  }

  write(t: Tensor, data: Float32Array): void {
    check(data.length === t.size, () => `write: ${data.length} values for a tensor ${shapeText(t)}`);
    this.f32(t).set(data);
  }

  read(t: Tensor): Promise<Float32Array> {
    return Promise.resolve(this.f32(t).slice());
  }

  readMany(tensors: readonly Tensor[]): Promise<Float32Array[]> {
    return Promise.all(tensors.map((t) => this.read(t)));
  }

  fill(t: Tensor, value: number): void {
    this.f32(t).fill(value);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {
    this.pool.close();
  }
}
