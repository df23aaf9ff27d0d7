// The WASM bias-GELU-BatchNorm in GELU's negative tail: with every input in [−9, −3], u = x·Φ(x)
// is −4e-3 … −1e-18 and BatchNorm divides by its tiny spread, so Φ needs relative accuracy there
// (an erf-based Φ = ½ + ½·erf computed by cancellation fails this by 10x). Tolerances: a few times
// the float32 kernel's errors, against the float64 reference.
import assert from "node:assert/strict";
import { WasmBackend } from "../src/wasm/backend.ts";
import * as ref from "./reference.ts";

/** max|actual − want| relative to max|want|. */
function relativeError(actual: Float32Array, want: ref.RefTensor): number {
  let scale = 0, worst = 0;
  for (let i = 0; i < actual.length; i++) {
    scale = Math.max(scale, Math.abs(want.data[i]));
    const error = Math.abs(actual[i] - want.data[i]);
    if (!(error <= worst)) worst = error; // NaN counts as the worst
  }
  return worst / scale;
}

for (const threads of [1, 2]) {
  Deno.test(`wasm bias-GELU-BatchNorm in GELU's negative tail keeps its relative accuracy, ${threads} thread(s)`, async () => {
    const backend = await WasmBackend.create({ threads });
    try {
      const random = ref.seededRandom(23);
      const pair = (shape: number[], values: Float32Array) => {
        const t = backend.tensor(shape);
        backend.write(t, values);
        return { t, r: ref.refTensor(shape, values) };
      };
      const C = 8, shape = [2, 5, 5, C], n = 2 * 5 * 5 * C;
      const z = pair(shape, ref.randomValues(n, random, 3).map((v) => v - 6));
      const [bias, beta, runningMean] = [0, 1, 2].map(() => pair([C], new Float32Array(C)));
      const [gamma, runningVar] = [0, 1].map(() => pair([C], new Float32Array(C).fill(1)));
      const saved = pair([2, C], new Float32Array(2 * C)), out = pair(shape, new Float32Array(n));
      const unit = ref.sides({ bias, gamma, beta, runningMean, runningVar });
      backend.biasGeluBatchNormForward(z.t, unit.t, saved.t, null, out.t, true);
      ref.biasGeluBatchNormForward(z.r, unit.r, saved.r, null, out.r, true);
      const checks: [string, number, number][] = [
        ["out", relativeError(await backend.read(out.t), out.r), 2e-5],
        ["saved", relativeError(await backend.read(saved.t), saved.r), 4e-6],
      ];

      const dOut = pair(shape, ref.randomValues(n, random)), dz = pair(shape, new Float32Array(n));
      const [dBias, dGamma, dBeta] = [0, 1, 2].map(() => pair([C], new Float32Array(C)));
      const grads = ref.sides({ bias: dBias, gamma: dGamma, beta: dBeta });
      backend.biasGeluBatchNormBackward(z.t, unit.t, saved.t, dOut.t, dz.t, grads.t);
      ref.biasGeluBatchNormBackward(z.r, unit.r, saved.r, dOut.r, dz.r, grads.r);
      checks.push(["dz", relativeError(await backend.read(dz.t), dz.r), 4e-6]);
      checks.push(["dBias", relativeError(await backend.read(dBias.t), dBias.r), 1e-5]);
      for (const [what, error, allowed] of checks) {
        assert.ok(error <= allowed, `${what}: relative error ${error} > ${allowed}`);
      }
    } finally {
      backend.dispose();
    }
  });
}
