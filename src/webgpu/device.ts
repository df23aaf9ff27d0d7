// Opens a WebGPU device with the adapter's largest limits (big activations need the full
// maxStorageBufferBindingSize) and shader-f16 when offered. Uses Deno's built-in navigator.gpu
// and its own lib types.
import { tmpdir } from "node:os";

export interface GpuHandle {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** A software adapter (lavapipe/llvmpipe, SwiftShader, WARP): correct but slow. */
  isFallback: boolean;
  /** One line naming the adapter. */
  description: string;
}

/** The limits worth raising to the adapter's maximum for large tensors and big workgroups. */
const raisedLimits = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

function isSoftwareAdapter(info: GPUAdapterInfo): boolean {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|warp|software|\bcpu\b/.test(text);
}

/**
 * Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" when it is unset (most
 * servers and containers), which reads like a failure; compute needs no display, so give them a
 * private directory (mode 0700, as the XDG spec asks) before the first adapter request.
 */
function provideRuntimeDir(): void {
  try {
    if (Deno.env.get("XDG_RUNTIME_DIR")) return;
    const dir = `${tmpdir()}/convmixer-runtime-${Deno.uid()}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const info = Deno.statSync(dir);
    if (info.uid !== Deno.uid() || (info.mode! & 0o077) !== 0) return; // not ours alone: leave it unset
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // Without env/write permissions the driver's line stays; nothing else depends on it.
  }
}

/**
 * On Linux, Deno's wgpu opens its GL backend beside Vulkan unless told otherwise, which loads
 * libEGL; libEGL's destructor then races threads that end during the process's exit, and about
 * one run in four aborts after everything passed ("free(): invalid pointer", "corrupted size vs.
 * prev_size": the backtrace is in libEGL's fini and a thread's TSD destructors). Vulkan is what
 * these kernels want anyway (GL adapters have neither shader-f16 nor timestamp queries), so ask for
 * it alone, unless the user chose a backend with DENO_WEBGPU_BACKEND.
 */
function preferVulkan(): void {
  try {
    if (Deno.build.os === "linux" && Deno.env.get("DENO_WEBGPU_BACKEND") === undefined) {
      Deno.env.set("DENO_WEBGPU_BACKEND", "vulkan");
    }
  } catch {
    // Without env permission wgpu picks its backends itself.
  }
}

/** navigator.gpu.requestAdapter after the environment above: every adapter request goes through it. */
export async function requestAdapter(options?: GPURequestAdapterOptions): Promise<GPUAdapter | null> {
  if (typeof navigator === "undefined" || !("gpu" in navigator)) return null;
  provideRuntimeDir();
  preferVulkan();
  return await navigator.gpu.requestAdapter(options);
}

/**
 * The device, or null when there is no adapter (or only a software one and allowFallback is
 * false; allowFallback defaults to true).
 */
export async function requestGpu(options: { allowFallback?: boolean } = {}): Promise<GpuHandle | null> {
  const allowFallback = options.allowFallback ?? true;
  const adapter = await requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const info = adapter.info;
  const isFallback = Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter) ||
    isSoftwareAdapter(info);
  if (isFallback && !allowFallback) return null;

  const requiredLimits: Record<string, number> = {};
  for (const name of raisedLimits) requiredLimits[name] = adapter.limits[name];
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has("shader-f16")) requiredFeatures.push("shader-f16");
  if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });

  const name = info.description || [info.vendor, info.architecture, info.device].filter((s) => s).join(" ");
  const description = `${name || "unknown adapter"}${isFallback ? " (software fallback)" : ""}`;
  return { adapter, device, isFallback, description };
}
