// Opens a WebGPU device with the adapter's largest limits (big activations need the full
// maxStorageBufferBindingSize) and shader-f16 when offered. Uses Deno's built-in navigator.gpu
// and its own lib types.

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
 * The device, or null when there is no adapter (or only a software one and allowFallback is
 * false; allowFallback defaults to true).
 */
export async function requestGpu(options: { allowFallback?: boolean } = {}): Promise<GpuHandle | null> {
  const allowFallback = options.allowFallback ?? true;
  if (typeof navigator === "undefined" || !("gpu" in navigator)) return null;
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
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
