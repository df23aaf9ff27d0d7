// A fork-join pool over the shared memory, OpenMP style: run() starts one kernel on every thread
// (the main thread is thread 0, plus threads-1 workers each with its own instance of the same
// module over the same memory) and returns when all are done. Each kernel takes
// (..., thread, threads) as its last two arguments and does its share of the work.
//
// The workers wait on a small shared control block (a short spin, then Atomics.wait); run()
// writes the kernel and its arguments there, bumps the generation and notifies. No messages are
// posted per call.
import { instantiate, type WasmExports } from "./module.ts";

// Control block layout (Int32 slots), shared with thread_worker.ts.
export const CONTROL = {
  generation: 0, // bumped by run(): workers wake on change
  remaining: 1, // workers still running the current kernel
  quit: 2, // 1: workers exit
  kernel: 3, // index into the sorted export names
  argCount: 4,
  failedThread: 5, // -1, or the first thread that trapped
  errorLength: 6, // UTF-16 units of its message, stored from errorText on
  errorText: 8,
  errorCapacity: 248,
  argsByteOffset: 1024, // Float64 arguments from here on
  maxArgs: 32,
} as const;
const CONTROL_BYTES = CONTROL.argsByteOffset + CONTROL.maxArgs * 8;

/**
 * How long a thread spins on the control block before it sleeps in Atomics.wait. A futex wake
 * costs tens of µs on these VMs (a round trip of pool.run measured 73 µs), and a training step of
 * the CPU default runs about 95 kernels, most a few ms apart or less, so a short spin catches the
 * next kernel (or the workers' end) without the sleep, while an idle pool still sleeps.
 */
const SPIN_MS = 0.2;

/** Returns once c[index] !== value: spins for up to SPIN_MS, then sleeps on it. */
export function awaitChange(c: Int32Array, index: number, value: number): void {
  const start = performance.now();
  for (let i = 1; Atomics.load(c, index) === value; i++) {
    if ((i & 63) === 0 && performance.now() - start > SPIN_MS) {
      while (Atomics.load(c, index) === value) Atomics.wait(c, index, value);
      return;
    }
    Atomics.pause();
  }
}

/** Export names in a fixed order, so a kernel travels as a small index. */
export function kernelNames(exports: WasmExports): string[] {
  return Object.keys(exports).filter((name) => typeof exports[name] === "function").sort();
}

export class ThreadPool {
  readonly #control: Int32Array;
  readonly #args: Float64Array;
  readonly #workers: Worker[];
  readonly #kernels: string[];
  #closed = false;

  /** The main thread's instance: for small single-threaded calls and queries. */
  readonly exports: WasmExports;

  private constructor(
    readonly threads: number,
    exports: WasmExports,
    control: SharedArrayBuffer,
    workers: Worker[],
  ) {
    this.exports = exports;
    this.#control = new Int32Array(control);
    this.#args = new Float64Array(control, CONTROL.argsByteOffset, CONTROL.maxArgs);
    this.#workers = workers;
    this.#kernels = kernelNames(exports);
  }

  static async create(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    threads: number = navigator.hardwareConcurrency,
  ): Promise<ThreadPool> {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new Error(`threads: expected a positive integer, got ${threads}`);
    }
    const exports = instantiate(module, memory);
    const control = new SharedArrayBuffer(CONTROL_BYTES);
    const workers: Worker[] = [];
    const ready: Promise<void>[] = [];
    for (let thread = 1; thread < threads; thread++) {
      const worker = new Worker(new URL("./thread_worker.ts", import.meta.url), { type: "module" });
      workers.push(worker);
      ready.push(
        new Promise((resolve, reject) => {
          worker.onmessage = () => resolve();
          worker.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`wasm thread ${thread} failed to start: ${e.message}`));
          };
        }),
      );
      worker.postMessage({ module, memory, control, thread, threads });
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      for (const w of workers) w.terminate();
      throw e;
    }
    return new ThreadPool(threads, exports, control, workers);
  }

  /** Runs exports[kernel](...args, thread, threads) on every thread; returns when all are done. */
  run(kernel: string, args: number[]): void {
    if (this.#closed) throw new Error(`wasm thread pool: run("${kernel}") after close()`);
    const fn = this.exports[kernel];
    if (typeof fn !== "function") throw new Error(`wasm: no kernel named "${kernel}" in the module`);
    const c = this.#control;
    if (this.threads > 1) {
      if (args.length > CONTROL.maxArgs) throw new Error(`wasm: ${kernel} has more than 32 arguments`);
      this.#args.set(args);
      c[CONTROL.kernel] = this.#kernels.indexOf(kernel);
      c[CONTROL.argCount] = args.length;
      c[CONTROL.failedThread] = -1;
      Atomics.store(c, CONTROL.remaining, this.threads - 1);
      Atomics.add(c, CONTROL.generation, 1);
      Atomics.notify(c, CONTROL.generation);
    }
    let mainError: unknown = null;
    try {
      fn(...args, 0, this.threads);
    } catch (e) {
      mainError = e;
    }
    for (let left; (left = Atomics.load(c, CONTROL.remaining)) !== 0;) {
      awaitChange(c, CONTROL.remaining, left);
    }
    if (mainError !== null) {
      throw new Error(
        `wasm kernel ${kernel} failed on thread 0: ${(mainError as Error).message ?? mainError}`,
      );
    }
    if (this.threads > 1 && c[CONTROL.failedThread] >= 0) {
      const length = c[CONTROL.errorLength];
      const text = String.fromCharCode(...c.subarray(CONTROL.errorText, CONTROL.errorText + length));
      throw new Error(`wasm kernel ${kernel} failed on thread ${c[CONTROL.failedThread]}: ${text}`);
    }
  }

  /** Stops the workers; the pool cannot be used afterwards. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#control, CONTROL.quit, 1);
    Atomics.add(this.#control, CONTROL.generation, 1);
    Atomics.notify(this.#control, CONTROL.generation);
    for (const worker of this.#workers) worker.terminate();
  }
}
