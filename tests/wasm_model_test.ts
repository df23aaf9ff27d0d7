// The whole model on the WASM backend: PyTorch's fixtures (float32 kernels vs float64 PyTorch),
// and agreement with the float64 reference backend over several training steps.
import assert from "node:assert";
import { WasmBackend } from "../src/wasm/backend.ts";
import { stateDict } from "../src/checkpoint.ts";
import { ConvMixer } from "../src/model.ts";
import { randomValues, seededRandom } from "./reference.ts";
import { F32_UNIT } from "./bounds.ts";
import { checkFixture, FIXTURES } from "./model_fixtures.ts";
import { checkTrainingAgreement } from "./model_agreement.ts";

for (const threads of [1, 2]) {
  for (const name of FIXTURES) {
    Deno.test(`wasm (${threads} threads) matches PyTorch on fixture ${name}`, async () => {
      const backend = await WasmBackend.create({ threads });
      try {
        await checkFixture(backend, name, F32_UNIT);
      } finally {
        backend.dispose();
      }
    });
  }
}

for (const keepGeluOutput of [true, false]) {
  const how = keepGeluOutput ? "the forward's GELU outputs kept" : "GELU evaluated again";
  Deno.test(`wasm and the float64 reference agree after 5 training steps, ${how}`, async () => {
    const backend = await WasmBackend.create();
    try {
      await checkTrainingAgreement(backend, 5, F32_UNIT, { keepGeluOutput });
    } finally {
      backend.dispose();
    }
  });
}

/** From seed 1: three clipped AdamW steps on seeded random `side`-pixel images, labels 0, 1, …. */
function trainThreeSteps(model: ConvMixer, side: number) {
  model.initialize(1);
  const random = seededRandom(2), batch = model.maxBatch;
  const labels = Float32Array.from({ length: batch }, (_, i) => i);
  for (let step = 1; step <= 3; step++) {
    const a = model.setBatch(randomValues(batch * side * side * 3, random, 2), labels);
    model.forward(a, true);
    model.backward(a);
    const hyper = { lr: 0.01, weightDecay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, clipNorm: 1 };
    model.step({ kind: "adamw", step, ...hyper });
  }
}

Deno.test("recomputing the depthwise outputs in the backward pass trains bit for bit as keeping them", async () => {
  const config = { hdim: 24, depth: 3, kernel: 5, patch: 2, classes: 10 };
  const states = [];
  for (const recompute of [false, true]) {
    const backend = await WasmBackend.create({ threads: 2 });
    try {
      // GELU evaluated again on both sides: a kept u rounds differently from x·Φ(x).
      const model = new ConvMixer(backend, config, 6, 32, {
        recomputeDepthwise: recompute,
        keepGeluOutput: false,
      });
      assert.equal(model.recomputeDepthwise, recompute);
      trainThreeSteps(model, 32);
      states.push(await stateDict(model));
    } finally {
      backend.dispose();
    }
  }
  for (const [name, t] of states[0]) assert.deepEqual(states[1].get(name)!.data, t.data, name);
});

Deno.test("a model sized for 16-pixel images trains on 8-pixel crops bit for bit as one sized for them", async () => {
  // The low-resolution phase (src/low_resolution.ts) runs smaller images through views of the
  // full-size activations; every kernel sees the same shapes as in a model built for the crops.
  const config = { hdim: 12, depth: 2, kernel: 3, patch: 2, classes: 10 };
  const states = [];
  for (const modelSize of [16, 8]) {
    const backend = await WasmBackend.create({ threads: 2 });
    try {
      const model = new ConvMixer(backend, config, 4, modelSize);
      assert(model.keepsGeluOutput);
      trainThreeSteps(model, 8);
      const logits = await backend.read(model.forward(model.activations(4, 8), false));
      states.push({ state: await stateDict(model), logits });
    } finally {
      backend.dispose();
    }
  }
  for (const [name, t] of states[0].state) assert.deepEqual(states[1].state.get(name)!.data, t.data, name);
  assert.deepEqual(states[0].logits, states[1].logits);
});
