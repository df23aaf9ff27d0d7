// The WASM depthwise conv at channel counts that are multiples of 256, where asm/depthwise.ts pads
// each ring pixel by 16 bytes (tests/conformance.ts covers the unpadded layout), against the
// float64 reference with the conformance tolerance, on one thread and on two.
import assert from "node:assert/strict";
import { WasmBackend } from "../src/wasm/backend.ts";
import * as ref from "./reference.ts";

const tolerance = { rel: 2e-6, abs: 1e-7 };

function expectClose(what: string, actual: Float32Array, want: ref.RefTensor): void {
  let scale = 0, worst = 0;
  for (let i = 0; i < actual.length; i++) {
    scale = Math.max(scale, Math.abs(want.data[i]));
    const error = Math.abs(actual[i] - want.data[i]);
    if (!(error <= worst)) worst = error; // NaN counts as the worst
  }
  const allowed = tolerance.abs + tolerance.rel * scale;
  assert.ok(worst <= allowed, `${what}: |Δ| ${worst} > ${allowed}`);
}

for (const threads of [1, 2]) {
  Deno.test(`wasm depthwise conv with padded ring pixels (C % 256 == 0), ${threads} thread(s)`, async () => {
    const backend = await WasmBackend.create({ threads });
    try {
      const random = ref.seededRandom(7 + threads);
      for (const [k, B, H, W, C] of [[5, 1, 5, 6, 256], [3, 2, 3, 4, 512], [9, 1, 4, 5, 256]]) {
        const what = `k=${k} [${B},${H},${W},${C}]`, shape = [B, H, W, C];
        const pair = (shape: number[], scale = 1) => {
          const values = ref.randomValues(shape.reduce((a, b) => a * b, 1), random, scale);
          const t = backend.tensor(shape);
          backend.write(t, values);
          return { t, r: ref.refTensor(shape, values) };
        };
        const x = pair(shape), weight = pair([k, k, C], 0.5), dOut = pair(shape);
        const out = pair(shape, 1e3), dx = pair(shape), dWeight = pair([k, k, C], 1e3);

        backend.depthwiseConvForward(x.t, weight.t, out.t);
        ref.depthwiseConvForward(x.r, weight.r, out.r);
        expectClose(`depthwiseConvForward ${what}`, await backend.read(out.t), out.r);

        backend.depthwiseConvBackwardInput(dOut.t, weight.t, dx.t);
        ref.depthwiseConvBackwardInput(dOut.r, weight.r, dx.r);
        expectClose(`depthwiseConvBackwardInput ${what}`, await backend.read(dx.t), dx.r);

        backend.depthwiseConvBackwardWeight(x.t, dOut.t, dWeight.t);
        ref.depthwiseConvBackwardWeight(x.r, dOut.r, dWeight.r);
        expectClose(`depthwiseConvBackwardWeight ${what}`, await backend.read(dWeight.t), dWeight.r);
      }
    } finally {
      backend.dispose();
    }
  });
}
