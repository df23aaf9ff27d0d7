// Picks the backend: a real GPU adapter → WebGPU; a fallback adapter (lavapipe, SwiftShader) or
// none → WebAssembly. `--backend webgpu` runs on a fallback adapter too: that is how CI tests the
// WGSL kernels without a GPU.
import type { Backend } from "./backend.ts";
import type { BackendChoice } from "./options.ts";
import { WasmBackend } from "./wasm/backend.ts";
import { WebGpuBackend } from "./webgpu/backend.ts";
import { requestGpu } from "./webgpu/device.ts";

export interface Selected {
  backend: Backend;
  /** Why this backend runs, one line. */
  reason: string;
  /** A real GPU (not a CPU fallback adapter): the official recipe is the default. */
  onGpu: boolean;
}

export async function selectBackend(
  choice: BackendChoice,
  options: { threads?: number; precision?: "f32" | "f16" } = {},
): Promise<Selected> {
  const precision = options.precision ?? "f32";
  if (precision === "f16" && choice !== "webgpu") {
    throw new Error("--precision f16: needs --backend webgpu (the WASM backend computes in float32)");
  }
  if (choice === "wasm") {
    return { backend: await WasmBackend.create(options), reason: "--backend wasm", onGpu: false };
  }
  const gpu = "gpu" in navigator ? await requestGpu({ allowFallback: true }) : null;
  if (choice === "webgpu") {
    if (!gpu) {
      throw new Error(
        "--backend webgpu: no WebGPU adapter found (install a Vulkan driver, or use --backend wasm)",
      );
    }
    const backend = await WebGpuBackend.create({ allowFallback: true, gpu, precision });
    return { backend, reason: `--backend webgpu on ${gpu.description}`, onGpu: !gpu.isFallback };
  }
  if (gpu && !gpu.isFallback) {
    const backend = await WebGpuBackend.create({ allowFallback: false, gpu });
    return { backend, reason: `auto: a GPU adapter (${gpu.description})`, onGpu: true };
  }
  const why = gpu ? `the only WebGPU adapter is a CPU fallback (${gpu.description})` : "no WebGPU adapter";
  gpu?.device.destroy();
  return { backend: await WasmBackend.create(options), reason: `auto: ${why}`, onGpu: false };
}
