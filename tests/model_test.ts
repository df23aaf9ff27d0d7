// The model's wiring (src/model.ts): a whole tiny ConvMixer on the float64 reference backend,
// every parameter's gradient against central finite differences of the training loss.
import assert from "node:assert";
import { loadStateDict, namedParameters, stateDict } from "../src/checkpoint.ts";
import { ConvMixer, unitsOf } from "../src/model.ts";
import { assertFiniteDifferences } from "./bounds.ts";
import { ReferenceBackend } from "./reference_backend.ts";
import { randomValues, seededRandom } from "./reference.ts";

function tinyModel(
  config: { hdim: number; depth: number; kernel: number; patch: number },
  batch: number,
  size: number,
) {
  const backend = new ReferenceBackend();
  const model = new ConvMixer(backend, { ...config, classes: 10 }, batch, size);
  model.initialize(7);
  const random = seededRandom(11);
  // Non-trivial BN affine parameters, so their gradients are exercised too.
  for (const unit of unitsOf(model.params)) {
    for (const t of [unit.gamma, unit.beta]) backend.write(t, randomValues(t.size, random, 1));
  }
  const a = model.setBatch(
    randomValues(batch * size * size * 3, random, 2),
    Float32Array.from({ length: batch }, () => Math.floor(random() * 10)),
  );
  return { backend, model, a, random };
}

for (
  const config of [
    { hdim: 5, depth: 2, kernel: 3, patch: 2, batch: 3, size: 8 },
    { hdim: 3, depth: 1, kernel: 5, patch: 1, batch: 2, size: 6 }, // batch 1 is degenerate (see model_fixtures.ts)
    { hdim: 6, depth: 1, kernel: 7, patch: 4, batch: 2, size: 16 },
    { hdim: 4, depth: 1, kernel: 3, patch: 3, batch: 2, size: 8 }, // 2×2 patches, 2 pixels never read
  ]
) {
  Deno.test(`ConvMixer-${config.hdim}/${config.depth} k${config.kernel} p${config.patch} B${config.batch}: every gradient matches finite differences`, () => {
    const { backend, model, a, random } = tinyModel(config, config.batch, config.size);
    const loss = () => {
      backend.fill(model.metrics, 0);
      model.forward(a, true);
      return backend.values(model.metrics)[0] / config.batch;
    };
    loss();
    model.backward(a);
    let checked = 0, largest = 0;
    const grads = namedParameters(model, model.grads);
    for (const [name, param] of namedParameters(model)) {
      const values = backend.values(param), grad = backend.values(grads.get(name)!);
      const indices = Array.from(
        { length: Math.min(4, values.length) },
        () => Math.floor(random() * values.length),
      );
      largest = Math.max(largest, assertFiniteDifferences(name, loss, values, grad, indices));
      checked += indices.length;
    }
    assert(checked > 20 && largest > 1e-3);
  });
}

Deno.test("state dict round trip keeps every parameter and counts BN batches", async () => {
  const { model } = tinyModel({ hdim: 4, depth: 2, kernel: 3, patch: 2 }, 2, 4);
  model.forward(model.activations(2), true);
  const state = await stateDict(model);
  assert.equal(state.get("blocks.1.3.num_batches_tracked")!.data[0], 1);
  assert.deepEqual(state.get("blocks.0.0.fn.0.weight")!.shape, [3, 3, 4]);
  const other = new ConvMixer(new ReferenceBackend(), model.config, 2, 4);
  loadStateDict(other, state);
  for (const [name, entry] of await stateDict(other)) {
    assert.deepEqual(entry.data, state.get(name)!.data, name);
  }
});
