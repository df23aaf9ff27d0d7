// The WASM depthwise conv at channel counts that are multiples of 256, where asm/depthwise.ts pads
// each ring pixel by 16 bytes (tests/conformance.ts covers the unpadded layout), against the
// float64 reference with the conformance bounds (tests/bounds.ts), on one thread and on two.
import { WasmBackend } from "../src/wasm/backend.ts";
import { assertWithin, type Bounded, linearBound, WASM_ARITHMETIC } from "./bounds.ts";
import * as ref from "./reference.ts";

function expectClose(what: string, actual: Float32Array, want: Bounded): void {
  assertWithin(what, actual, want.r.data, want.e);
}

/** The bound of an op summing `terms` products per element into `out`. */
function bound(terms: number, out: Bounded, call: (value: (x: Bounded) => ref.RefTensor) => void): void {
  linearBound(WASM_ARITHMETIC, terms, [out], call);
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
          return { t, r: ref.refTensor(shape, values), e: new Float64Array(values.length) };
        };
        const x = pair(shape), weight = pair([k, k, C], 0.5), dOut = pair(shape);
        const out = pair(shape, 1e3), dx = pair(shape), dWeight = pair([k, k, C], 1e3);

        backend.depthwiseConvForward(x.t, weight.t, out.t);
        bound(k * k, out, (v) => ref.depthwiseConvForward(v(x), v(weight), v(out)));
        ref.depthwiseConvForward(x.r, weight.r, out.r);
        expectClose(`depthwiseConvForward ${what}`, await backend.read(out.t), out);

        backend.depthwiseConvBackwardInput(dOut.t, weight.t, dx.t);
        bound(k * k + 1, dx, (v) => ref.depthwiseConvBackwardInput(v(dOut), v(weight), v(dx)));
        ref.depthwiseConvBackwardInput(dOut.r, weight.r, dx.r);
        expectClose(`depthwiseConvBackwardInput ${what}`, await backend.read(dx.t), dx);

        backend.depthwiseConvBackwardWeight(x.t, dOut.t, dWeight.t);
        bound(B * H * W, dWeight, (v) => ref.depthwiseConvBackwardWeight(v(x), v(dOut), v(dWeight)));
        ref.depthwiseConvBackwardWeight(x.r, dOut.r, dWeight.r);
        expectClose(`depthwiseConvBackwardWeight ${what}`, await backend.read(dWeight.t), dWeight);
      }
    } finally {
      backend.dispose();
    }
  });
}
