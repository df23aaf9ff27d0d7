// One worker thread of the pool (threads.ts): its own instance of the module over the shared
// memory, waiting (threads.ts: awaitChange) until run() publishes a kernel, then its share of it.
/// <reference lib="deno.worker" />
import { instantiate } from "./module.ts";
import { awaitChange, CONTROL, kernelNames } from "./threads.ts";

interface Start {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  thread: number;
  threads: number;
}

self.onmessage = (event: MessageEvent<Start>) => {
  const { module, memory, control, thread, threads } = event.data;
  const exports = instantiate(module, memory);
  const kernels = kernelNames(exports);
  const c = new Int32Array(control);
  const args = new Float64Array(control, CONTROL.argsByteOffset, CONTROL.maxArgs);
  let seen = Atomics.load(c, CONTROL.generation);
  self.postMessage("ready");
  for (;;) {
    awaitChange(c, CONTROL.generation, seen);
    seen = Atomics.load(c, CONTROL.generation);
    if (Atomics.load(c, CONTROL.quit) === 1) break;
    const kernel = kernels[c[CONTROL.kernel]];
    try {
      exports[kernel](...args.subarray(0, c[CONTROL.argCount]), thread, threads);
    } catch (e) {
      if (Atomics.compareExchange(c, CONTROL.failedThread, -1, thread) === -1) {
        const text = String((e as Error).message ?? e).slice(0, CONTROL.errorCapacity);
        for (let i = 0; i < text.length; i++) c[CONTROL.errorText + i] = text.charCodeAt(i);
        c[CONTROL.errorLength] = text.length;
      }
    }
    if (Atomics.sub(c, CONTROL.remaining, 1) === 1) Atomics.notify(c, CONTROL.remaining);
  }
  self.close();
};
