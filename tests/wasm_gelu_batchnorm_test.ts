// The WASM bias-GELU-BatchNorm in GELU's negative tail: with every input in [−9, −3], u = x·Φ(x)
// is −4e-3 … −1e-18 and BatchNorm divides by its tiny spread, so Φ needs relative accuracy there
// (an erf-based Φ = ½ + ½·erf computed by cancellation fails this by 10x). Every element within
// its bound (tests/bounds.ts: Φ's tail to 3e-6 relative) of the float64 reference.
import { WasmBackend } from "../src/wasm/backend.ts";
import { assertWithin, batchNormBackwardBound, batchNormForwardBound, WASM_ARITHMETIC } from "./bounds.ts";
import * as ref from "./reference.ts";

for (const threads of [1, 2]) {
  Deno.test(`wasm bias-GELU-BatchNorm in GELU's negative tail keeps its relative accuracy, ${threads} thread(s)`, async () => {
    const backend = await WasmBackend.create({ threads });
    try {
      const random = ref.seededRandom(23);
      const pair = (shape: number[], values: Float32Array) => {
        const t = backend.tensor(shape);
        backend.write(t, values);
        return { t, r: ref.refTensor(shape, values), e: new Float64Array(values.length) };
      };
      const C = 8, shape = [2, 5, 5, C], n = 2 * 5 * 5 * C;
      const z = pair(shape, ref.randomValues(n, random, 3).map((v) => v - 6));
      const [bias, beta, runningMean] = [0, 1, 2].map(() => pair([C], new Float32Array(C)));
      const [gamma, runningVar] = [0, 1].map(() => pair([C], new Float32Array(C).fill(1)));
      const saved = pair([2, C], new Float32Array(2 * C)), out = pair(shape, new Float32Array(n));
      const unit = ref.sides({ bias, gamma, beta, runningMean, runningVar });
      const geluOut = backend.tensor(shape);
      backend.biasGeluBatchNormForward(z.t, unit.t, saved.t, null, out.t, true, geluOut);
      const bounded = { z, bias, gamma, beta, runningMean, runningVar, saved, residual: null, out };
      batchNormForwardBound(WASM_ARITHMETIC, bounded, true);
      ref.biasGeluBatchNormForward(z.r, unit.r, saved.r, null, out.r, true);
      const expect = async (what: string, want: typeof out) =>
        assertWithin(what, await backend.read(want.t), want.r.data, want.e);
      await expect("out", out);
      await expect("saved", saved);

      // Φ evaluated again, then Φ = u/x from the forward's u.
      for (const kept of [null, geluOut]) {
        const dOut = pair(shape, ref.randomValues(n, random)), dz = pair(shape, new Float32Array(n));
        const [dBias, dGamma, dBeta] = [0, 1, 2].map(() => pair([C], new Float32Array(C)));
        const grads = ref.sides({ bias: dBias, gamma: dGamma, beta: dBeta });
        backend.biasGeluBatchNormBackward(z.t, unit.t, saved.t, dOut.t, dz.t, grads.t, kept);
        batchNormBackwardBound(WASM_ARITHMETIC, { z, bias, gamma, saved, dOut, dz, dBias, dGamma, dBeta });
        ref.biasGeluBatchNormBackward(z.r, unit.r, saved.r, dOut.r, dz.r, grads.r);
        const how = kept ? " (GELU output kept)" : "";
        await expect(`dz${how}`, dz);
        await expect(`dBias${how}`, dBias);
      }
    } finally {
      backend.dispose();
    }
  });
}
