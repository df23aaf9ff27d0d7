// Agreement with PyTorch: the fixtures of tools/make_fixtures.py (timm's ConvMixer, float64) replayed
// through src/model.ts on any backend — eval logits, one training forward (logits, loss, BN running
// statistics), every gradient, and two AdamW steps with gradient-norm clipping.
import assert from "node:assert";
import type { Backend, Tensor } from "../src/backend.ts";
import { loadCheckpoint, loadStateDict, namedParameters, namedStatistics } from "../src/checkpoint.ts";
import { ConvMixer } from "../src/model.ts";
import { readSafetensors } from "../src/safetensors.ts";

export const FIXTURES = ["k3p1", "k5p2", "k7p2b1", "k9p4"];
const dir = new URL("./fixtures/", import.meta.url).pathname;

/** max |actual − expected| ≤ abs + rel · max |expected|, elementwise over the whole tensor. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rel: number,
  what: string,
) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0, worst = 0, at = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= worst)) [worst, at] = [error, i];
  }
  assert(
    worst <= rel * scale + 1e-7,
    `${what}: error ${worst} at ${at} (${actual[at]} vs ${expected[at]}), scale ${scale}`,
  );
}

const norm = (x: Float32Array) => Math.sqrt(x.reduce((sum, v) => sum + v * v, 0));

/** timm's depthwise [C, 1, k, k] → ours [k, k, C]; every other tensor has the same order. */
function toOurLayout(name: string, data: Float32Array, t: Tensor): Float32Array {
  if (!/\.0\.fn\.0\.weight$/.test(name)) return data;
  const [k, , C] = t.shape, out = new Float32Array(data.length);
  for (let c = 0; c < C; c++) for (let i = 0; i < k * k; i++) out[i * C + c] = data[c * k * k + i];
  return out;
}

export async function checkFixture(backend: Backend, name: string, rel: number) {
  const { config, state } = await loadCheckpoint(`${dir}${name}.model.safetensors`);
  const { tensors: io, metadata } = await readSafetensors(`${dir}${name}.io.safetensors`);
  const get = (key: string) => io.get(key)!.data as Float32Array;
  const batch = Number(metadata.batch), size = Number(metadata.image_size);
  const model = new ConvMixer(backend, config, batch, size);
  loadStateDict(model, state);
  const a = model.setBatch(get("images"), get("labels"));
  const read = (t: Tensor) => backend.read(t);

  assertClose(await read(model.forward(a, false)), get("logits_eval"), rel, `${name} logits_eval`);

  const hyper = {
    kind: "adamw" as const,
    lr: Number(metadata.lr),
    weightDecay: Number(metadata.weight_decay),
    beta1: Number(metadata.beta1),
    beta2: Number(metadata.beta2),
    eps: Number(metadata.eps),
    clipNorm: Number(metadata.max_norm),
  };
  for (const step of [1, 2]) {
    backend.fill(model.metrics, 0);
    const logits = model.forward(a, true);
    const [lossSum, , count] = await read(model.metrics);
    assertClose([lossSum / count], get(step === 1 ? "loss" : "loss2"), rel, `${name} loss (step ${step})`);
    model.backward(a);
    if (step === 1) {
      assertClose(await read(logits), get("logits_train"), rel, `${name} logits_train`);
      for (const [key, t] of namedStatistics(model)) {
        assertClose(await read(t), get(`running.${key}`), rel, `${name} ${key}`);
      }
      for (const [key, t] of namedParameters(model, model.grads)) {
        assertClose(await read(t), toOurLayout(key, get(`grad.${key}`), t), rel, `${name} grad.${key}`);
      }
    }
    model.step({ ...hyper, step });
    const prefix = step === 1 ? "after_step" : "after_step2";
    for (const [key, t] of namedParameters(model)) {
      // With batch 1 the last BatchNorm normalises over exactly the positions the pool averages, so
      // pooled = β and every earlier gradient is 0 up to rounding (~1e-17 in PyTorch's float64).
      // AdamW's first step moves such a parameter by lr·g/(|g|+eps): the sign of rounding noise.
      if (norm(get(`grad.${key}`)) < 1e-9 * Number(get("grad_norm")[0])) continue;
      assertClose(
        await read(t),
        toOurLayout(key, get(`${prefix}.${key}`), t),
        rel,
        `${name} ${prefix}.${key}`,
      );
    }
  }
}
