// The compiled WebAssembly module (build/convmixer.wasm) and its memories, shared by the CPU
// backend (backend.ts) and the data layer's augmenter (src/data/augment.ts): loading, a shared
// linear memory, instantiation over it, and an llm.c-style arena. The TypeScript side owns all
// memory: buffers are byte offsets handed out once by a bump allocator and never freed, and the
// kernels (asm/) take those offsets plus integer dimensions. Imports nothing, so both can use it.
export type WasmExports = Record<string, (...args: number[]) => number | void> & { heapBase(): number };

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536; // 4 GiB: the most a 32-bit WebAssembly memory can address.
export const WASM_MEMORY_LIMIT_BYTES = MAX_PAGES * PAGE_BYTES;
const ALIGN = 64; // a cache line: no two threads' outputs share one, and v128 loads are aligned.

const wasmUrl = new URL("../../build/convmixer.wasm", import.meta.url);
let compiled: Promise<WebAssembly.Module> | null = null;

/** Compiles build/convmixer.wasm once per process. */
export function loadWasmModule(): Promise<WebAssembly.Module> {
  compiled ??= (async () => {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = await Deno.readFile(wasmUrl);
    } catch {
      throw new Error(`${wasmUrl.pathname} is missing: run \`deno task build\` first`);
    }
    return await WebAssembly.compile(bytes);
  })();
  return compiled;
}

/** The shared memory every thread's instance imports (the module is built with --importMemory). */
export function createSharedMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: 256, maximum: MAX_PAGES, shared: true });
}

/** Instantiates the module over `memory` (synchronously: the module is already compiled). */
export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): WasmExports {
  const instance = new WebAssembly.Instance(module, {
    env: {
      memory,
      // Only reachable if the module is ever built with assertions on.
      abort(message: number, file: number, line: number, column: number) {
        const text = (ptr: number) => {
          if (ptr === 0) return "";
          const bytes = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
          return String.fromCharCode(...new Uint16Array(memory.buffer.slice(ptr, ptr + bytes)));
        };
        throw new Error(`wasm abort: ${text(message)} at ${text(file)}:${line}:${column}`);
      },
    },
  });
  return instance.exports as unknown as WasmExports;
}

/**
 * A bump allocator over the shared memory, starting at the module's heap base. Everything is
 * allocated once at start-up; the free space above the last allocation serves as scratch.
 */
export class Arena {
  #top: number;

  constructor(readonly memory: WebAssembly.Memory, heapBase: number) {
    this.#top = alignUp(heapBase);
  }

  /** Bytes in use (tensors only, scratch excluded). */
  get used(): number {
    return this.#top;
  }

  /** `bytes` of fresh memory, 64-byte aligned (contents undefined: may be old scratch). */
  alloc(bytes: number): number {
    const offset = this.#top;
    this.#ensure(offset + bytes, bytes);
    this.#top = alignUp(offset + bytes);
    return offset;
  }

  /** At least `bytes` above the last allocation; valid until the next alloc() or scratch(). */
  scratch(bytes: number): number {
    this.#ensure(this.#top + bytes, bytes);
    return this.#top;
  }

  #ensure(end: number, asked: number): void {
    const pages = Math.ceil(end / PAGE_BYTES);
    const have = this.memory.buffer.byteLength / PAGE_BYTES;
    if (pages <= have) return;
    if (pages > MAX_PAGES) {
      throw new Error(
        `wasm memory: asked for ${asked} bytes with ${this.#top} already in use, beyond the 4 GiB a ` +
          `WebAssembly memory can hold: use a smaller --batch`,
      );
    }
    this.memory.grow(pages - have);
  }
}

export function alignUp(bytes: number): number {
  return Math.ceil(bytes / ALIGN) * ALIGN;
}
