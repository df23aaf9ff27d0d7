// The WebGPU backend (src/webgpu/, shaders/): every op against the float64 reference on the
// conformance harness's edge shapes (f32, and f16 activations), the whole model against PyTorch's
// fixtures and against the float64 reference over training steps, and what only this backend has:
// 128×128 GEMM tiles and split-K, many-chunk reductions, the uniform ring, its error messages.
// Here it runs on lavapipe (Mesa's CPU Vulkan); with no adapter at all the tests are skipped with
// a message, except under CI (CI set), where that is a failure.
import assert from "node:assert/strict";
import { WebGpuBackend } from "../src/webgpu/backend.ts";
import { requestAdapter } from "../src/webgpu/device.ts";
import { F32_UNIT, WEBGPU_ARITHMETIC } from "./bounds.ts";
import { conformanceTests, Harness } from "./conformance.ts";
import { checkTrainingAgreement } from "./model_agreement.ts";
import { checkFixture, FIXTURES } from "./model_fixtures.ts";
import * as ref from "./reference.ts";
import type { Tensor } from "../src/backend.ts";

const adapter = await requestAdapter();
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

// Deno's wgpu would open its GL backend too, loading libEGL, whose destructor races the threads that
// end during exit: one run in four aborted after every test had passed (src/webgpu/device.ts).
Deno.test({
  name: "on Linux the adapter comes from Vulkan alone: libEGL is never loaded into the process",
  ignore: noAdapter || Deno.build.os !== "linux",
  fn() {
    assert.ok(!Deno.readTextFileSync("/proc/self/maps").includes("libEGL"), "libEGL is mapped");
  },
});

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
    const h = new Harness(backend, WEBGPU_ARITHMETIC, 7);
    try {
      // [M, K, N]: 3×2×2 tiles; then M = 1100 rows, which dWeight contracts in 4 split-K slices.
      for (const [M, K, N] of [[300, 130, 135], [1100, 20, 131]]) {
        const what = `[${M},${K}]·[${N},${K}]ᵀ`;
        const x = h.random([M, K]), weight = h.random([N, K]), bias = h.random([N]), dOut = h.random([M, N]);
        const out = h.garbage([M, N]), dx = h.garbage([M, K]);
        const dWeight = h.garbage([N, K]), dBias = h.garbage([N]);
        backend.linearForward(x.t, weight.t, bias.t, out.t);
        backend.linearBackwardInput(dOut.t, weight.t, dx.t);
        backend.linearBackwardWeight(x.t, dOut.t, dWeight.t, dBias.t);
        h.linear(K + 1, [out], (v) => ref.linearForward(v(x), v(weight), v(bias), v(out)));
        h.linear(N, [dx], (v) => ref.linearBackwardInput(v(dOut), v(weight), v(dx)));
        h.linear(M, [dWeight, dBias], (v) => ref.linearBackwardWeight(v(x), v(dOut), v(dWeight), v(dBias)));
        ref.linearForward(x.r, weight.r, bias.r, out.r);
        ref.linearBackwardInput(dOut.r, weight.r, dx.r);
        ref.linearBackwardWeight(x.r, dOut.r, dWeight.r, dBias.r);
        await h.expectClose(`linearForward ${what}`, out);
        await h.expectClose(`linearBackwardInput ${what}`, dx);
        await h.expectClose(`linearBackwardWeight ${what}`, dWeight);
        await h.expectClose(`linearBackwardWeight dBias ${what}`, dBias);
      }
    } finally {
      backend.dispose();
    }
  },
});

// Several clipped AdamW steps of a small ConvMixer against the float64 reference, f32 and with f16
// activations (its twins perturbed at f16's 2⁻¹¹).
for (const precision of ["f32", "f16"] as const) {
  Deno.test({
    name: `webgpu (${precision}) agrees with the float64 reference over 5 training steps`,
    ignore: precision === "f16" ? noHalf : noAdapter,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const gpu = await WebGpuBackend.create({ precision });
      try {
        await checkTrainingAgreement(gpu, 5, precision === "f32" ? F32_UNIT : 2 ** -11);
      } finally {
        gpu.dispose();
      }
    },
  });
}

// The GEMM's full-tile variant (FULL_TILES: no bounds checks) runs only at shapes like these.
for (const precision of ["f32", "f16"] as const) {
  Deno.test({
    name:
      `webgpu (${precision}) at ConvMixer-256 block shapes (full tiles, channel blocks, split-K) matches float64`,
    ignore: precision === "f16" ? noHalf : noAdapter,
    sanitizeResources: false,
    async fn() {
      const backend = await WebGpuBackend.create({ precision });
      const storage = precision === "f16" ? 2 ** -11 : 0;
      const h = new Harness(backend, { ...WEBGPU_ARITHMETIC, storage }, 13);
      const [B, H, W, C, k] = [2, 16, 16, 256, 5];
      const act = [B, H, W, C], M = B * H * W;
      try {
        const x = h.activation(act), dOut = h.random(act);
        const depthWeight = h.random([k, k, C], 0.2), pointWeight = h.random([C, C], 0.1);
        const outs = {
          depthwise: h.garbage(act, "activation"),
          depthwiseDx: h.random(act), // accumulates
          depthwiseDWeight: h.garbage([k, k, C]),
          pointwise: h.garbage([M, C], "activation"),
          pointwiseDx: h.garbage([M, C]),
          pointwiseDWeight: h.garbage([C, C]),
        };
        backend.depthwiseConvForward(x.t, depthWeight.t, outs.depthwise.t);
        h.linear(
          k * k,
          [outs.depthwise],
          (v) => ref.depthwiseConvForward(v(x), v(depthWeight), v(outs.depthwise)),
        );
        ref.depthwiseConvForward(x.r, depthWeight.r, outs.depthwise.r);
        backend.depthwiseConvBackwardInput(dOut.t, depthWeight.t, outs.depthwiseDx.t);
        h.linear(
          k * k + 1,
          [outs.depthwiseDx],
          (v) => ref.depthwiseConvBackwardInput(v(dOut), v(depthWeight), v(outs.depthwiseDx)),
        );
        ref.depthwiseConvBackwardInput(dOut.r, depthWeight.r, outs.depthwiseDx.r);
        backend.depthwiseConvBackwardWeight(x.t, dOut.t, outs.depthwiseDWeight.t);
        h.linear(
          M,
          [outs.depthwiseDWeight],
          (v) => ref.depthwiseConvBackwardWeight(v(x), v(dOut), v(outs.depthwiseDWeight)),
        );
        ref.depthwiseConvBackwardWeight(x.r, dOut.r, outs.depthwiseDWeight.r);
        // The [M, C] views of x and dOut: the same values and bounds.
        const [xm, dm] = [x, dOut].map((p) => ({
          t: backend.view(p.t, [M, C]),
          r: ref.refTensor([M, C], p.r.data),
          e: p.e,
          role: p.role,
        }));
        backend.linearForward(xm.t, pointWeight.t, null, outs.pointwise.t);
        h.linear(
          C,
          [outs.pointwise],
          (v) => ref.linearForward(v(xm), v(pointWeight), null, v(outs.pointwise)),
        );
        ref.linearForward(xm.r, pointWeight.r, null, outs.pointwise.r);
        backend.linearBackwardInput(dm.t, pointWeight.t, outs.pointwiseDx.t);
        h.linear(
          C,
          [outs.pointwiseDx],
          (v) => ref.linearBackwardInput(v(dm), v(pointWeight), v(outs.pointwiseDx)),
        );
        ref.linearBackwardInput(dm.r, pointWeight.r, outs.pointwiseDx.r);
        backend.linearBackwardWeight(xm.t, dm.t, outs.pointwiseDWeight.t, null);
        h.linear(
          M,
          [outs.pointwiseDWeight],
          (v) => ref.linearBackwardWeight(v(xm), v(dm), v(outs.pointwiseDWeight), null),
        );
        ref.linearBackwardWeight(xm.r, dm.r, outs.pointwiseDWeight.r, null);
        for (const [what, out] of Object.entries(outs)) await h.expectClose(what, out);
      } finally {
        backend.dispose();
      }
    },
  });
}

Deno.test({
  name:
    "webgpu accumulateSquares: one workgroup for small tensors, two levels (1 or 4 lanes per output) for large ones",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const h = new Harness(backend, WEBGPU_ARITHMETIC, 17);
    try {
      const sumSquares = h.of([1], Float32Array.of(0.5));
      for (const n of [3, 16384, 16385, 70001, 40 * 16384]) {
        const g = h.random([n]);
        backend.accumulateSquares(g.t, sumSquares.t);
        // Bounded by its summation tree (src/webgpu/backend.ts, sum_squares.wgsl), not by n terms in a
        // row: a thread's ≤ ⌈n/(256·groups)⌉ strided terms, the 256-lane tree's 8 levels, the ≤ groups
        // partials, the accumulate. No term sees more additions than that (Higham §4.2).
        const groups = Math.max(1, Math.min(256, Math.ceil(n / (256 * 64))));
        const depth = Math.ceil(n / (256 * groups)) + 8 + groups + 1;
        h.linear(depth, [sumSquares], (v) => ref.accumulateSquares(v(g), v(sumSquares)));
        ref.accumulateSquares(g.r, sumSquares.r);
        await h.expectClose(`after [${n}]`, sumSquares);
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
    const h = new Harness(backend, WEBGPU_ARITHMETIC, 19);
    const [B, H, W, C] = [3, 16, 16, 20], shape = [B, H, W, C];
    try {
      // Channels c < 10 sit at 40 ± 0.5: a one-pass Σu² − (Σu)² would lose the variance in float32.
      const spread = h.random(shape, 0.5).r.data;
      const z = h.of(shape, Float32Array.from(spread, (v, i) => v + (i % C < 10 ? 40 : 0)));
      const residual = h.random(shape);
      const [bias, gamma, beta, runningMean] = [0, 1, 2, 3].map(() => h.random([C]));
      const runningVar = h.of([C], new Float32Array(C).fill(1));
      const saved = h.garbage([2, C]), out = h.garbage(shape);
      h.batchNormForward(z, { bias, gamma, beta, runningMean, runningVar }, saved, residual, out, true);
      for (const [what, p] of Object.entries({ out, saved, runningMean, runningVar })) {
        await h.expectClose(`forward ${what}`, p);
      }
      const dOut = h.random(shape), dz = h.garbage(shape);
      const { dBias, dGamma, dBeta } = h.batchNormBackward(z, { bias, gamma }, saved, dOut, dz, null);
      for (const [what, p] of Object.entries({ dz, dBias, dGamma, dBeta })) {
        await h.expectClose(`backward ${what}`, p);
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

// A unit's dBias sum is held back to share a dispatch with the next sum (src/webgpu/runtime.ts,
// deferSum): whatever reads or writes its tensors first must find it done, bit for bit as alone.
Deno.test({
  name: "webgpu: a held-back dBias sum joins the next sum, and runs first where anything touches it",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const h = new Harness(backend, WEBGPU_ARITHMETIC, 11);
    try {
      const C = 24, rows = [3, 10, 100]; // B·H·W = 3000 rows: several chunks
      const t = (shape: number[]) => h.random(shape).t, zeros = (shape: number[]) => backend.tensor(shape);
      const unit = { bias: t([C]), gamma: t([C]), beta: t([C]), runningMean: t([C]), runningVar: t([C]) };
      const saved = zeros([2, C]);
      const unitBackward = (z: Tensor, dOut: Tensor, dBias: Tensor) => {
        backend.biasGeluBatchNormForward(z, unit, saved, null, zeros([...rows, C]), true);
        backend.biasGeluBatchNormBackward(z, unit, saved, dOut, zeros([...rows, C]), {
          bias: dBias,
          gamma: zeros([C]),
          beta: zeros([C]),
        });
      };
      const [zA, dOutA, zB, dOutB] = [0, 1, 2, 3].map(() => t([...rows, C]));
      const alone = zeros([C]);
      unitBackward(zA, dOutA, alone);
      const want = await backend.read(alone); // a read runs it
      const [beforeNext, filled, asBias, joined] = [0, 1, 2, 3].map(() => zeros([C]));
      unitBackward(zA, dOutA, beforeNext);
      unitBackward(zB, dOutB, zeros([C])); // B's passes write A's partials' scratch
      unitBackward(zA, dOutA, filled);
      backend.fill(filled, 0); // written after its sum
      unitBackward(zA, dOutA, asBias);
      const out = zeros([1, C]), one = zeros([1, 1]);
      backend.fill(one, 1);
      backend.linearForward(one, zeros([C, 1]), asBias, out); // read as a bias: out = asBias
      // A weight gradient's split-K sum takes the held sum along: forward 2, backward 2 (its sums,
      // then dz and the dBias partials), the GEMM's partial products, one sum for dWeight and dBias.
      const [M, K, N] = [1100, 20, 131];
      const x = t([M, K]), dOut = t([M, N]), dWeight = zeros([N, K]), dWeightAlone = zeros([N, K]);
      await backend.flush();
      backend.takeTraffic();
      unitBackward(zA, dOutA, joined);
      backend.linearBackwardWeight(x, dOut, dWeight, null);
      assert.equal(backend.takeTraffic().dispatches, 6);
      backend.linearBackwardWeight(x, dOut, dWeightAlone, null);
      const [a, b, c, d, e, f] = await backend.readMany([
        beforeNext,
        filled,
        out,
        joined,
        dWeight,
        dWeightAlone,
      ]);
      assert.deepEqual(a, want, "the next unit's passes came first");
      assert.deepEqual(b, new Float32Array(C), "the fill came first");
      assert.deepEqual(c, want, "the GEMM read its bias before the sum");
      assert.deepEqual(d, want, "the joined sum's dBias");
      assert.deepEqual(e, f, "the joined sum's dWeight");
    } finally {
      backend.dispose();
    }
  },
});

// A GEMM or depthwise conv is held back until the next op, for a unit reading exactly its output to
// take it with its reduction as the epilogue (src/webgpu/runtime.ts, holdProducer): anything else
// that comes first must find it done, and a unit on other elements must not take it.
Deno.test({
  name: "webgpu: a conv held back for the unit after it runs first where anything else comes between",
  ignore: noAdapter,
  sanitizeResources: false,
  async fn() {
    const backend = await WebGpuBackend.create();
    const h = new Harness(backend, WEBGPU_ARITHMETIC, 29);
    try {
      const [B, H, C] = [2, 6, 20], map = [B, H, H, C], t = (shape: number[]) => h.random(shape).t;
      const x = t(map), weight = t([C, C]), dwWeight = t([5, 5, C]), zeros = () => backend.tensor(map);
      const unit = { bias: t([C]), gamma: t([C]), beta: t([C]), runningMean: t([C]), runningVar: t([C]) };
      const convs = {
        linear: (out: Tensor) => backend.linearForward(x, weight, null, out),
        depthwise: (out: Tensor) => backend.depthwiseConvForward(x, dwWeight, out),
      };
      for (const [name, conv] of Object.entries(convs)) {
        const alone = zeros();
        conv(alone);
        const want = await backend.read(alone);
        // A write to the conv's input: the conv ran on the old values.
        const beforeWrite = zeros(), xBackup = await backend.read(x);
        conv(beforeWrite);
        backend.write(x, new Float32Array(x.size));
        assert.deepEqual(await backend.read(beforeWrite), want, `${name}: the conv ran before the write`);
        backend.write(x, xBackup);
        // A unit on a prefix view of the conv's output (a partial batch) does not take the conv.
        const z = zeros(), part = backend.view(z, [1, H, H, C]), outPart = backend.tensor([1, H, H, C]);
        const viewAlone = backend.tensor([1, H, H, C]), savedA = backend.tensor([2, C]);
        const savedB = backend.tensor([2, C]), outAlone = backend.tensor([1, H, H, C]);
        conv(z);
        backend.biasGeluBatchNormForward(part, unit, savedA, null, outPart, true);
        backend.write(viewAlone, (await backend.read(z)).subarray(0, part.size));
        backend.biasGeluBatchNormForward(viewAlone, unit, savedB, null, outAlone, true);
        assert.deepEqual(await backend.read(z), want, `${name}: the conv's output`);
        assert.deepEqual(
          await backend.read(savedA),
          await backend.read(savedB),
          `${name}: the view's statistics`,
        );
        assert.deepEqual(
          await backend.read(outPart),
          await backend.read(outAlone),
          `${name}: the unit on the view`,
        );
      }
    } finally {
      backend.dispose();
    }
  },
});

// readMany packs tensors into one staging buffer: odd sizes (unaligned ends), a view, a tensor
// twice and, with f16, an activation stored in half precision beside f32 state.
for (const precision of ["f32", "f16"] as const) {
  Deno.test({
    name: `webgpu readMany (${precision}) returns each tensor's values, packed at aligned offsets`,
    ignore: precision === "f16" ? noHalf : noAdapter,
    sanitizeResources: false,
    async fn() {
      const backend = await WebGpuBackend.create({ precision });
      try {
        const tensors = [[1], [3], [5], [17]].map((shape) => backend.tensor(shape));
        tensors.push(backend.tensor([2, 3, 3, 5], "activation"));
        const half = tensors.map((t) => backend.gpu(t).storage.half);
        assert.deepEqual(
          half,
          [false, false, false, false, precision === "f16"],
          "f16 only for the activation",
        );
        // Integers below 2048 are exact in f16.
        const values = tensors.map((t, k) => Float32Array.from({ length: t.size }, (_, j) => 100 * k + j));
        tensors.forEach((t, k) => backend.write(t, values[k]));
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
    const h = new Harness(backend, WEBGPU_ARITHMETIC, 23);
    const shape = [2, 5, 5, 8], C = 8;
    try {
      // u = z·Φ(z) is −4e-3 … −1e-18 here: 1 + erf(z/√2) computed by cancellation would be noise.
      const z = h.uniform(shape, -9, -3);
      const [bias, beta, runningMean] = [0, 1, 2].map(() => h.of([C], new Float32Array(C)));
      const [gamma, runningVar] = [0, 1].map(() => h.of([C], new Float32Array(C).fill(1)));
      const saved = h.garbage([2, C]), out = h.garbage(shape);
      h.batchNormForward(z, { bias, gamma, beta, runningMean, runningVar }, saved, null, out, true);
      await h.expectClose("out", out);
      await h.expectClose("saved", saved);
      const dOut = h.random(shape), dz = h.garbage(shape);
      const { dBias } = h.batchNormBackward(z, { bias, gamma }, saved, dOut, dz, null);
      await h.expectClose("dz", dz);
      await h.expectClose("dBias", dBias);
    } finally {
      backend.dispose();
    }
  },
});
