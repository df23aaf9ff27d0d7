// A backend runs a small ConvMixer for several AdamW steps (with clipping) beside the float64
// reference and perturbed copies of it (tests/model_fixtures.ts's twins); its losses, parameters,
// BN statistics and eval logits must stay within each element's bound estimated from the twins'
// spread; every other step on smaller images. (Over 5 steps the run is not chaotic element by element: perturbed at 2⁻²⁴, no parameter
// moved by more than 1e-4, a hundredth of lr = 0.01; the median by 3e-6 relative.)
import type { Backend, Tensor } from "../src/backend.ts";
import { loadStateDict, namedParameters, namedStatistics, stateDict } from "../src/checkpoint.ts";
import { type ActivationMemory, ConvMixer } from "../src/model.ts";
import assert from "node:assert";
import { assertWithin } from "./bounds.ts";
import { perturbedTwins, twinBound } from "./model_fixtures.ts";
import { randomValues, seededRandom } from "./reference.ts";

/** `unit`: the backend's rounding, 2⁻²⁴ for float32 (2⁻¹¹ over-estimates f16 activations: every value). */
export async function checkTrainingAgreement(
  backend: Backend,
  steps: number,
  unit: number,
  memory: ActivationMemory = {},
) {
  const config = { hdim: 12, depth: 2, kernel: 5, patch: 2, classes: 10 };
  const batch = 6, size = 12;
  const twins = perturbedTwins(unit);
  const models = [backend, ...twins].map((b, i) =>
    new ConvMixer(b, config, batch, size, i === 0 ? memory : {})
  );
  if (memory.keepGeluOutput !== undefined) {
    assert.equal(models[0].keepsGeluOutput, memory.keepGeluOutput && backend.reusesGeluOutput === true);
  }
  models[0].initialize(3);
  const initial = await stateDict(models[0]);
  for (const m of models.slice(1)) loadStateDict(m, initial);
  const expect = async (what: string, pick: (m: ConvMixer) => Tensor) => {
    const { value, bound } = twinBound(twins, models.slice(1).map(pick), unit);
    assertWithin(what, await backend.read(pick(models[0])), value, bound);
  };
  const random = seededRandom(9);
  for (let step = 1; step <= steps; step++) {
    // Every other step on smaller images (views of the full-size activations), as the
    // low-resolution phase trains on crops: 8 pixels, 4×4 tokens against 6×6.
    const side = step % 2 === 0 ? 8 : size;
    const images = randomValues(batch * side * side * 3, random, 2);
    const labels = Float32Array.from({ length: batch }, () => Math.floor(random() * 10));
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
    }
    await expect(`loss sum at step ${step}`, (m) => m.metrics);
  }
  const named = (m: ConvMixer) => new Map([...namedParameters(m), ...namedStatistics(m)]);
  for (const name of named(models[0]).keys()) {
    await expect(`${name} after ${steps} steps`, (m) => named(m).get(name)!);
  }
  const logits = models.map((m) => m.forward(m.activations(batch), false));
  await expect("eval logits", (m) => logits[models.indexOf(m)]);
}
