// The library entry point as another Deno program uses it: only mod.ts (and a synthetic archive).
// Train a few steps, save and reload the checkpoint, then on each backend evaluate() and predict()
// must agree on every test record: the same class and the same probabilities.
import assert from "node:assert/strict";
import * as convmixer from "../mod.ts";
import { requestAdapter } from "../src/webgpu/device.ts";
import { officialFiles, writeTarGz } from "./make_cifar.ts";

const adapter = await requestAdapter();
if (!adapter && Deno.env.get("CI")) throw new Error("CI: no WebGPU adapter (install mesa-vulkan-drivers)");

const dir = await Deno.makeTempDir({ prefix: "convmixer-mod-test-" });
const archive = `${dir}/cifar.tar.gz`;
writeTarGz(archive, officialFiles(120));

const { runDir } = await convmixer.train(convmixer.trainOptions({
  data: archive,
  backend: "wasm",
  recipe: { hdim: 16, depth: 1, kernel: 3, patch: 4, batch: 20, epochs: 1 },
  steps: 4,
  out: `${dir}/run`,
}));

Deno.test("mod.ts: a checkpoint saved and loaded again holds the same tensors", async () => {
  const saved = await convmixer.loadCheckpoint(`${runDir}/last.safetensors`);
  await convmixer.saveCheckpoint(`${dir}/copy.safetensors`, saved.state);
  const again = await convmixer.loadCheckpoint(`${dir}/copy.safetensors`);
  assert.deepEqual(again.config, { hdim: 16, depth: 1, kernel: 3, patch: 4, classes: 10 });
  assert.deepEqual(again.state, saved.state);
});

for (const choice of ["wasm", "webgpu"] as const) {
  Deno.test({
    name: `mod.ts (${choice}): evaluate and predict agree on every test record`,
    ignore: choice === "webgpu" && !adapter,
    fn: async () => {
      const { config, state } = await convmixer.loadCheckpoint(`${runDir}/last.safetensors`);
      const { test } = await convmixer.openCifar(archive);
      const { backend } = await convmixer.selectBackend(choice);
      const loader = await convmixer.BatchLoader.create(test, {
        batch: 50,
        shuffle: false,
        seed: 0,
        augment: null,
        dropLast: false,
      });
      try {
        const model = new convmixer.ConvMixer(backend, config, 50);
        convmixer.loadStateDict(model, state);
        const evaluated = await convmixer.evaluate(model, loader, test.count, { keepLogits: true });
        const probabilities = await convmixer.predict(model, test.images);
        const analysis = convmixer.analyseLogits(evaluated.logits!, test.labels, 10);
        let correct = 0;
        for (let i = 0; i < test.count; i++) {
          const row = probabilities.subarray(i * 10, (i + 1) * 10);
          const logits = evaluated.logits!.subarray(i * 10, (i + 1) * 10);
          const top = convmixer.topClasses(row, 1)[0].class;
          assert.equal(top, logits.indexOf(Math.max(...logits)), `record ${i}`);
          if (top === test.labels[i]) correct++;
          const exp = logits.map((x) => Math.exp(x));
          const sum = exp.reduce((a, b) => a + b, 0);
          exp.forEach((e, c) => assert(Math.abs(e / sum - row[c]) < 1e-5, `record ${i} class ${c}`));
        }
        assert.equal(correct / test.count, evaluated.accuracy);
        assert.equal(analysis.confusion.flat().reduce((a, b) => a + b, 0), test.count);
      } finally {
        loader.close();
        backend.dispose();
      }
    },
  });
}
