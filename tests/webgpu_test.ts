// The WebGPU backend (src/webgpu/, shaders/) against the float64 reference on the conformance
// harness's edge shapes, plus what only this backend has: its limits check and split-K paths.
// Here it runs on lavapipe (Mesa's CPU Vulkan); with no adapter at all the tests are skipped with
// a message, except under CI (CI set), where that is a failure.
import assert from "node:assert/strict";
import { maxBatchForLimits, WebGpuBackend } from "../src/webgpu/backend.ts";
import { conformanceTests } from "./conformance.ts";

const adapter = "gpu" in navigator ? await navigator.gpu.requestAdapter() : null;
const noAdapter = adapter === null;
if (noAdapter) {
  if (Deno.env.get("CI")) {
    Deno.test("WebGPU adapter is available under CI", () => {
      assert.fail("no WebGPU adapter: install a Vulkan driver (lavapipe: mesa-vulkan-drivers)");
    });
  } else {
    console.warn("webgpu_test: no WebGPU adapter found, skipping the WebGPU tests");
  }
}

/** Float32 on the GPU against float64: sums of up to a few hundred terms, erf to 1.5e-7. */
const tolerance = { rel: 2e-5, abs: 1e-6 };

if (!noAdapter) conformanceTests("webgpu", () => WebGpuBackend.create(), tolerance);

Deno.test("maxBatchForLimits: the largest activation fits one binding", () => {
  const limits = { maxStorageBufferBindingSize: 128 << 20, maxBufferSize: 256 << 20 };
  // ConvMixer-256/8 on 32×32 images with p 2: 16·16·256 floats = 256 KiB per sample.
  assert.equal(maxBatchForLimits(limits, { dim: 256, patchSize: 2, imageSize: 32 }), 512);
  // p 1 keeps the full resolution: 1 MiB per sample.
  assert.equal(maxBatchForLimits(limits, { dim: 256, patchSize: 1, imageSize: 32 }), 128);
});

Deno.test({
  name: "webgpu tensor over the binding limit names the batch that fits",
  ignore: noAdapter,
  async fn() {
    const backend = await WebGpuBackend.create();
    try {
      const limit = backend.device.limits.maxStorageBufferBindingSize;
      const perSample = 16 * 16 * 256 * 4;
      const batch = Math.floor(limit / perSample) + 1;
      assert.throws(
        () => backend.tensor([batch, 16, 16, 256]),
        new RegExp(`maxStorageBufferBindingSize.*at most ${batch - 1} rows`),
      );
      assert.throws(
        () => backend.write(backend.tensor([3]), new Float32Array(2)),
        /2 values for a tensor of 3/,
      );
    } finally {
      backend.dispose();
    }
  },
});
