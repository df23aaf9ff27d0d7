// Two backends run the same small ConvMixer for several AdamW steps (with clipping) on the same
// batches; their losses, parameters and BN statistics must stay together (float32 rounding only).
//
// Held to max|Δ| ≤ rel·max|ref| + 1e-7 per tensor, not to per-element bounds, because none can be
// derived here: AdamW's step lr·m̂/(√v̂ + eps) is ≈ ±lr for a gradient near zero whatever its size,
// so a rounding-sized difference in g flips a parameter by up to 2·lr, and from the next step on
// every element downstream of it moves by O(lr) — the run is chaotic at element level after a step
// or two. A first-order bound (tests/bounds.ts) then caps at the largest step and proves nothing;
// the perturbed-runs estimate of tests/model_fixtures.ts needs a float64 side and a few runs that
// happen to flip the same elements (and the f16 check compares two float32 backends). Each op is
// held element by element in tests/conformance.ts, the model in tests/model_fixtures.ts (two steps
// against PyTorch); this check catches a backend that drifts as a whole over several steps.
import assert from "node:assert/strict";
import type { Backend } from "../src/backend.ts";
import { loadStateDict, stateDict } from "../src/checkpoint.ts";
import { ConvMixer } from "../src/model.ts";
import { randomValues, seededRandom } from "./reference.ts";

export async function checkTrainingAgreement(a: Backend, b: Backend, steps: number, rel: number) {
  const config = { hdim: 12, depth: 2, kernel: 5, patch: 2, classes: 10 };
  const batch = 6, size = 12;
  const models = [a, b].map((backend) => new ConvMixer(backend, config, batch, size));
  models[0].initialize(3);
  loadStateDict(models[1], await stateDict(models[0]));
  const random = seededRandom(9);
  for (let step = 1; step <= steps; step++) {
    const images = randomValues(batch * size * size * 3, random, 2);
    const labels = Float32Array.from({ length: batch }, () => Math.floor(random() * 10));
    const losses: number[] = [];
    for (const model of models) {
      const x = model.setBatch(images, labels);
      model.backend.fill(model.metrics, 0);
      model.forward(x, true);
      model.backward(x);
      model.step({
        kind: "adamw",
        lr: 0.01,
        weightDecay: 0.05,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        step,
        clipNorm: 1,
      });
      const [loss, , count] = await model.backend.read(model.metrics);
      losses.push(loss / count);
    }
    assertClose([losses[1]], [losses[0]], rel, `loss at step ${step}`);
  }
  const [stateA, stateB] = [await stateDict(models[0]), await stateDict(models[1])];
  for (const [name, t] of stateA) {
    assertClose(stateB.get(name)!.data, t.data, rel, `${name} after ${steps} steps`);
  }
  const eval0 = await a.read(models[0].forward(models[0].activations(batch), false));
  const eval1 = await b.read(models[1].forward(models[1].activations(batch), false));
  assertClose(eval1, eval0, rel, "eval logits");
}

/** max |actual − expected| ≤ rel · max |expected| + 1e-7 over the tensor (see the top). */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0, worst = 0, at = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= worst)) [worst, at] = [error, i];
  }
  assert.ok(
    worst <= rel * scale + 1e-7,
    `${what}: error ${worst} at ${at} (${actual[at]} vs ${expected[at]}), scale ${scale}`,
  );
}
