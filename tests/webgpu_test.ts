// The WebGPU backend (src/webgpu/, shaders/): every op against the float64 reference on the
// conformance harness's edge shapes (f32, and f16 activations), the whole model against PyTorch's
// fixtures and against the WASM backend over training steps, and what only this backend has:
// 128×128 GEMM tiles and split-K, many-chunk reductions, the uniform ring, its error messages.
// Here it runs on lavapipe (Mesa's CPU Vulkan); with no adapter at all the tests are skipped with
// a message, except under CI (CI set), where that is a failure.
import assert from "node:assert/strict";
import { WebGpuBackend } from "../src/webgpu/backend.ts";
import { F32_UNIT, WEBGPU_ARITHMETIC } from "./bounds.ts";
import { conformanceTests } from "./conformance.ts";
import { WasmBackend } from "../src/wasm/backend.ts";
import { checkTrainingAgreement } from "./model_agreement.ts";
import { assertClose, checkFixture, FIXTURES } from "./model_fixtures.ts";
import { ReferenceBackend } from "./reference_backend.ts";
import * as ref from "./reference.ts";

const adapter = "gpu" in navigator ? await navigator.gpu.requestAdapter() : null;
const noAdapter = adapter === null;
const noHalf = !adapter?.features.has("shader-f16");
if (noAdapter) {
  if (Deno.env.get("CI")) {
    Deno.test("WebGPU adapter is available under CI", () => {
      assert.fail("no WebGPU adapter: install a Vulkan driver (lavapipe: mesa-vulkan-drivers)");
    });
  } else {
    console.warn("webgpu_test: no WebGPU adapter found, skipping the WebGPU tests");
  }
}

if (!noAdapter) conformanceTests("webgpu", () => WebGpuBackend.create(), WEBGPU_ARITHMETIC);
// f16 activations: inputs round to 11 significant bits (4.9e-4 relative) before the f32 arithmetic.
if (!noHalf) {
  const f16 = { ...WEBGPU_ARITHMETIC, storage: 2 ** -11 };
  conformanceTests("webgpu f16", () => WebGpuBackend.create({ precision: "f16" }), f16);
} else if (!noAdapter) console.warn("webgpu_test: the adapter has no shader-f16, skipping the f16 tests");

// The whole model on the GPU against PyTorch (float64 fixtures): forward, every gradient, two
// clipped AdamW steps.
for (const name of FIXTURES) {
  Deno.test({
    name: `webgpu backend matches PyTorch on fixture ${name}`,
    ignore: noAdapter,
    sanitizeResources: false,
    async fn() {
      const backend = await WebGpuBackend.create();
      try {
        await checkFixture(backend, name, F32_UNIT);
      } finally {
        backend.dispose();
      }
    },
  });
}

Deno.test({
  name:
    "webgpu errors: a tensor over the binding limit names the batch that fits; bad writes; use after dispose",
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
      const t = (shape: number[]) => backend.tensor(shape);
      assert.throws(
        () => backend.linearForward(t([5, 4]), t([3, 4]), null, t([5, 4])),
        /linearForward: out \[5, 4\] must be \[5, 3\]/,
      );
      assert.throws(
        () => backend.depthwiseConvForward(t([1, 4, 4, 2]), t([2, 2, 2]), t([1, 4, 4, 2])),
        /depthwiseConvForward: weight \[2, 2, 2\] must be \[k, k, 2\] with k odd/,
      );
      const [c, x] = [t([2]), t([1, 2, 2, 2])];
      const unit = { bias: c, gamma: c, beta: c, runningMean: c, runningVar: c };
      assert.throws(
        () => backend.biasGeluBatchNormForward(x, unit, t([2, 2]), x, x, true),
        /residual may not alias out/,
      );
    } finally {
      backend.dispose();
    }
    assert.throws(() => backend.tensor([3]), /used after dispose/);
  },
});

Deno.test({
  name: "webgpu GEMM over several 128×128 tiles with ragged edges, and split-K over a long contraction",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const random = ref.seededRandom(7);
    const pair = (shape: number[]) => {
      const values = ref.randomValues(shape.reduce((p, q) => p * q, 1), random);
      const t = backend.tensor(shape);
      backend.write(t, values);
      return { t, r: ref.refTensor(shape, values) };
    };
    try {
      // [M, K, N]: 3×2×2 tiles; then M = 1100 rows, which dWeight contracts in 4 split-K slices.
      for (const [M, K, N] of [[300, 130, 135], [1100, 20, 131]]) {
        const what = `[${M},${K}]·[${N},${K}]ᵀ`;
        const x = pair([M, K]), weight = pair([N, K]), bias = pair([N]), dOut = pair([M, N]);
        const out = ref.refTensor([M, N]), dx = ref.refTensor([M, K]);
        const dWeight = ref.refTensor([N, K]), dBias = ref.refTensor([N]);
        const [outT, dxT, dWeightT, dBiasT] = [[M, N], [M, K], [N, K], [N]].map((s) => backend.tensor(s));
        backend.linearForward(x.t, weight.t, bias.t, outT);
        backend.linearBackwardInput(dOut.t, weight.t, dxT);
        backend.linearBackwardWeight(x.t, dOut.t, dWeightT, dBiasT);
        ref.linearForward(x.r, weight.r, bias.r, out);
        ref.linearBackwardInput(dOut.r, weight.r, dx);
        ref.linearBackwardWeight(x.r, dOut.r, dWeight, dBias);
        assertClose(await backend.read(outT), out.data, 1e-5, `linearForward ${what}`);
        assertClose(await backend.read(dxT), dx.data, 1e-5, `linearBackwardInput ${what}`);
        assertClose(await backend.read(dWeightT), dWeight.data, 1e-5, `linearBackwardWeight ${what}`);
        assertClose(await backend.read(dBiasT), dBias.data, 1e-5, `linearBackwardWeight dBias ${what}`);
      }
    } finally {
      backend.dispose();
    }
  },
});

// Several clipped AdamW steps of a small ConvMixer against the float64 reference backend, and
// with f16 activations against the WASM backend (float32).
for (const precision of ["f32", "f16"] as const) {
  Deno.test({
    name: `webgpu (${precision}) agrees with ${
      precision === "f32" ? "the float64 reference" : "wasm"
    } over 5 training steps`,
    ignore: precision === "f16" ? noHalf : noAdapter,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const gpu = await WebGpuBackend.create({ precision });
      const other = precision === "f32" ? new ReferenceBackend() : await WasmBackend.create({ threads: 1 });
      try {
        await checkTrainingAgreement(other, gpu, 5, precision === "f32" ? 5e-4 : 5e-3);
      } finally {
        gpu.dispose();
        other.dispose();
      }
    },
  });
}

Deno.test({
  name: "webgpu at ConvMixer-256 block shapes (full tiles, channel blocks, split-K) matches float64",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const random = ref.seededRandom(13);
    const pair = (shape: number[], scale = 1) => {
      const values = ref.randomValues(shape.reduce((p, q) => p * q, 1), random, scale);
      const t = backend.tensor(shape);
      backend.write(t, values);
      return { t, r: ref.refTensor(shape, values) };
    };
    const [B, H, W, C, k] = [2, 16, 16, 256, 5];
    const act = [B, H, W, C], M = B * H * W;
    try {
      const x = pair(act),
        dOut = pair(act),
        depthWeight = pair([k, k, C], 0.2),
        pointWeight = pair([C, C], 0.1);
      const outs = {
        depthwise: pair(act),
        depthwiseDx: pair(act),
        depthwiseDWeight: pair([k, k, C]),
        pointwise: pair([M, C]),
        pointwiseDx: pair([M, C]),
        pointwiseDWeight: pair([C, C]),
      };
      backend.depthwiseConvForward(x.t, depthWeight.t, outs.depthwise.t);
      ref.depthwiseConvForward(x.r, depthWeight.r, outs.depthwise.r);
      backend.depthwiseConvBackwardInput(dOut.t, depthWeight.t, outs.depthwiseDx.t);
      ref.depthwiseConvBackwardInput(dOut.r, depthWeight.r, outs.depthwiseDx.r);
      backend.depthwiseConvBackwardWeight(x.t, dOut.t, outs.depthwiseDWeight.t);
      ref.depthwiseConvBackwardWeight(x.r, dOut.r, outs.depthwiseDWeight.r);
      const [xm, dm] = [x, dOut].map((p) => ({
        t: backend.view(p.t, [M, C]),
        r: ref.refTensor([M, C], p.r.data),
      }));
      backend.linearForward(xm.t, pointWeight.t, null, outs.pointwise.t);
      ref.linearForward(xm.r, pointWeight.r, null, outs.pointwise.r);
      backend.linearBackwardInput(dm.t, pointWeight.t, outs.pointwiseDx.t);
      ref.linearBackwardInput(dm.r, pointWeight.r, outs.pointwiseDx.r);
      backend.linearBackwardWeight(xm.t, dm.t, outs.pointwiseDWeight.t, null);
      ref.linearBackwardWeight(xm.r, dm.r, outs.pointwiseDWeight.r, null);
      for (const [what, out] of Object.entries(outs)) {
        assertClose(await backend.read(out.t), out.r.data, 1e-5, what);
      }
    } finally {
      backend.dispose();
    }
  },
});

Deno.test({
  name:
    "webgpu accumulateSquares: one workgroup for small tensors, two levels (1 or 4 lanes per output) for large ones",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const random = ref.seededRandom(17);
    try {
      const sumSquares = backend.tensor([1]);
      backend.fill(sumSquares, 0.5);
      let want = 0.5;
      for (const n of [3, 16384, 16385, 70001, 40 * 16384]) {
        const values = ref.randomValues(n, random);
        const g = backend.tensor([n]);
        backend.write(g, values);
        backend.accumulateSquares(g, sumSquares);
        want += values.reduce((sum, v) => sum + v * v, 0);
        assertClose(await backend.read(sumSquares), [want], 1e-6, `after [${n}]`);
      }
    } finally {
      backend.dispose();
    }
  },
});

Deno.test({
  name: "webgpu bias-GELU-BatchNorm over hundreds of row chunks, with a mean far larger than the std",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const random = ref.seededRandom(19);
    const pair = (shape: number[], values: Float32Array) => {
      const t = backend.tensor(shape);
      backend.write(t, values);
      return { t, r: ref.refTensor(shape, values) };
    };
    const randomPair = (shape: number[], scale = 1) =>
      pair(shape, ref.randomValues(shape.reduce((p, q) => p * q, 1), random, scale));
    const [B, H, W, C] = [3, 16, 16, 20], shape = [B, H, W, C];
    try {
      // Channels c < 10 sit at 40 ± 0.5: a one-pass Σu² − (Σu)² would lose the variance in float32.
      const zValues = ref.randomValues(B * H * W * C, random, 0.5).map((v, i) => v + (i % C < 10 ? 40 : 0));
      const z = pair(shape, zValues), residual = randomPair(shape);
      const [bias, gamma, beta, runningMean] = [0, 1, 2, 3].map(() => randomPair([C]));
      const runningVar = pair([C], new Float32Array(C).fill(1));
      const saved = randomPair([2, C]), out = randomPair(shape);
      const unit = ref.sides({ bias, gamma, beta, runningMean, runningVar });
      backend.biasGeluBatchNormForward(z.t, unit.t, saved.t, residual.t, out.t, true);
      ref.biasGeluBatchNormForward(z.r, unit.r, saved.r, residual.r, out.r, true);
      for (const [what, p] of Object.entries({ out, saved, runningMean, runningVar })) {
        assertClose(await backend.read(p.t), p.r.data, 2e-5, `forward ${what}`);
      }
      const dOut = randomPair(shape), dz = randomPair(shape);
      const [dBias, dGamma, dBeta] = [0, 1, 2].map(() => randomPair([C]));
      const grads = ref.sides({ bias: dBias, gamma: dGamma, beta: dBeta });
      backend.biasGeluBatchNormBackward(z.t, unit.t, saved.t, dOut.t, dz.t, grads.t);
      ref.biasGeluBatchNormBackward(z.r, unit.r, saved.r, dOut.r, dz.r, grads.r);
      for (const [what, p] of Object.entries({ dz, dBias, dGamma, dBeta })) {
        assertClose(await backend.read(p.t), p.r.data, 1e-4, `backward ${what}`);
      }
    } finally {
      backend.dispose();
    }
  },
});

Deno.test({
  name: "webgpu records past its 1024 uniform slots: the full ring is submitted, per-dispatch values kept",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    try {
      // fill(x[0..i], i) for i = n−1 down to 0 leaves x[j] = j, only if every dispatch saw its own values.
      const n = 1100;
      const x = backend.tensor([n]);
      for (let i = n - 1; i >= 0; i--) backend.fill(backend.view(x, [i + 1]), i);
      assert.deepEqual(await backend.read(x), Float32Array.from({ length: n }, (_, j) => j));
    } finally {
      backend.dispose();
    }
  },
});

// The bench's traffic model (src/webgpu/runtime.ts): one count per dispatch, the bound bytes of
// read-only bindings as read and of read_write ones as written, the placeholder not at all.
Deno.test({
  name: "webgpu counts dispatches and the bytes of their bound ranges, by declared access",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    try {
      const x = backend.tensor([6, 5]), w = backend.tensor([3, 5]), b = backend.tensor([3]);
      const out = backend.tensor([6, 3]);
      backend.takeTraffic();
      backend.fill(x, 1); // fill.wgsl writes x
      backend.linearForward(x, w, b, out); // one gemm.wgsl (K = 5: no split-K): reads x, w, b; writes out
      assert.deepEqual(backend.takeTraffic(), {
        dispatches: 2,
        readBytes: 4 * (30 + 15 + 3),
        writeBytes: 4 * (30 + 18),
      });
      backend.linearForward(x, w, null, out);
      assert.deepEqual(backend.takeTraffic(), { dispatches: 1, readBytes: 4 * 45, writeBytes: 4 * 18 });
      await backend.flush();
    } finally {
      backend.dispose();
    }
  },
});

// readMany packs tensors into one staging buffer: odd sizes (unaligned ends), a view, a tensor
// twice and, with f16, one stored in half precision beside ones still waiting on the host.
for (const precision of ["f32", "f16"] as const) {
  Deno.test({
    name: `webgpu readMany (${precision}) returns each tensor's values, packed at aligned offsets`,
    ignore: precision === "f16" ? noHalf : noAdapter,
    sanitizeResources: false,
    async fn() {
      const backend = await WebGpuBackend.create({ precision });
      try {
        const tensors = [[1], [3], [5], [17], [2, 3, 3, 5]].map((shape) => backend.tensor(shape));
        // Integers below 2048 are exact in f16.
        const values = tensors.map((t, k) => Float32Array.from({ length: t.size }, (_, j) => 100 * k + j));
        tensors.forEach((t, k) => backend.write(t, values[k]));
        backend.averagePoolForward(tensors[4], backend.tensor([2, 5])); // binds it: f16 with --precision f16
        const read = [...tensors, backend.view(tensors[3], [6]), tensors[0]];
        const want = [...values, values[3].subarray(0, 6), values[0]];
        const got = await backend.readMany(read);
        got.forEach((g, i) => assert.deepEqual(g, want[i], `tensor ${i}`));
      } finally {
        backend.dispose();
      }
    },
  });
}

Deno.test({
  name: "webgpu bias-GELU-BatchNorm in GELU's negative tail (z in [−9, −3]) keeps its relative accuracy",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const random = ref.seededRandom(23);
    const pair = (shape: number[], values: Float32Array) => {
      const t = backend.tensor(shape);
      backend.write(t, values);
      return { t, r: ref.refTensor(shape, values) };
    };
    const shape = [2, 5, 5, 8], C = 8, n = 2 * 5 * 5 * 8;
    try {
      // u = z·Φ(z) is −4e-3 … −1e-18 here: 1 + erf(z/√2) computed by cancellation would be noise.
      const z = pair(shape, ref.randomValues(n, random, 3).map((v) => v - 6));
      const [bias, beta, runningMean] = [0, 1, 2].map(() => pair([C], new Float32Array(C)));
      const [gamma, runningVar] = [0, 1].map(() => pair([C], new Float32Array(C).fill(1)));
      const saved = pair([2, C], new Float32Array(2 * C)), out = pair(shape, new Float32Array(n));
      const unit = ref.sides({ bias, gamma, beta, runningMean, runningVar });
      backend.biasGeluBatchNormForward(z.t, unit.t, saved.t, null, out.t, true);
      ref.biasGeluBatchNormForward(z.r, unit.r, saved.r, null, out.r, true);
      assertClose(await backend.read(out.t), out.r.data, 2e-5, "out");
      assertClose(await backend.read(saved.t), saved.r.data, 2e-5, "saved");
      const dOut = pair(shape, ref.randomValues(n, random)), dz = pair(shape, new Float32Array(n));
      const [dBias, dGamma, dBeta] = [0, 1, 2].map(() => pair([C], new Float32Array(C)));
      const grads = ref.sides({ bias: dBias, gamma: dGamma, beta: dBeta });
      backend.biasGeluBatchNormBackward(z.t, unit.t, saved.t, dOut.t, dz.t, grads.t);
      ref.biasGeluBatchNormBackward(z.r, unit.r, saved.r, dOut.r, dz.r, grads.r);
      assertClose(await backend.read(dz.t), dz.r.data, 1e-4, "dz");
      assertClose(await backend.read(dBias.t), dBias.r.data, 1e-4, "dBias");
    } finally {
      backend.dispose();
    }
  },
});
