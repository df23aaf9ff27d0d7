// Agreement with PyTorch: the fixtures of tools/make_fixtures.py (timm's ConvMixer, float64) replayed
// through src/model.ts on any backend — eval logits, one training forward (logits, loss, BN running
// statistics, each layer's activations), every gradient, and two AdamW steps with gradient-norm clipping — each element within
// a bound estimated for it by perturbed float64 runs alongside (tests/perturbed_backend.ts).
import type { Backend, Tensor } from "../src/backend.ts";
import { loadCheckpoint, loadStateDict, namedParameters, namedStatistics } from "../src/checkpoint.ts";
import { ConvMixer } from "../src/model.ts";
import { readSafetensors } from "../src/safetensors.ts";
import { assertWithin } from "./bounds.ts";
import { PerturbedBackend } from "./perturbed_backend.ts";
import { ReferenceBackend } from "./reference_backend.ts";

// (k7p2b1, batch 1, only has noise for gradients: tools/make_fixtures.py.)
export const FIXTURES = ["k3p1", "k5p2", "k7p2b4", "k9p4"];
const dir = new URL("./fixtures/", import.meta.url).pathname;

type Activations = ReturnType<ConvMixer["setBatch"]>;

/** timm's depthwise [C, 1, k, k] → ours [k, k, C]; every other tensor has the same order. */
function toOurLayout(name: string, data: Float32Array, t: Tensor): Float32Array {
  if (!/\.0\.fn\.0\.weight$/.test(name)) return data;
  const [k, , C] = t.shape, out = new Float32Array(data.length);
  for (let c = 0; c < C; c++) for (let i = 0; i < k * k; i++) out[i * C + c] = data[c * k * k + i];
  return out;
}

/**
 * How many perturbed runs estimate the rounding error, and how far past their spread an error may go
 * (lavapipe reached 0.76 of the bound at 16, the WASM kernels 0.38: 32 leaves room for other GPUs).
 */
const PERTURBED_RUNS = 3, SPREAD_FACTOR = 32;

/** The float64 reference, then PERTURBED_RUNS copies of it perturbed at `unit`. */
export function perturbedTwins(unit: number): ReferenceBackend[] {
  const twins = [new ReferenceBackend()];
  for (let seed = 1; seed <= PERTURBED_RUNS; seed++) twins.push(new PerturbedBackend(unit, seed));
  return twins;
}

/**
 * The value twins[0] holds in tensors[0] (twin k's copy in tensors[k]) and the bound of a backend's
 * copy of it divided by scale: (SPREAD_FACTOR·spread_i + 4·unit·|x_i|)/scale, spread_i the largest move
 * of the perturbed runs, 4 units of the value itself for an element that happened not to move.
 */
export function twinBound(twins: ReferenceBackend[], tensors: Tensor[], unit: number, scale = 1) {
  const [value, ...perturbed] = tensors.map((t, k) => twins[k].values(t));
  const bound = value.map((x, i) => {
    const spread = Math.max(...perturbed.map((p) => Math.abs(p[i] - x)));
    return (SPREAD_FACTOR * spread + 4 * unit * Math.abs(x)) / scale;
  });
  return { value, bound };
}

/**
 * Replays the fixture on `backend` and, call for call, on the float64 reference and PERTURBED_RUNS
 * copies of it perturbed at the backend's unit roundoff (tests/perturbed_backend.ts). Element i must
 * lie within SAFETY·(SPREAD_FACTOR·spread_i + 4·unit·|x_i| + |expected_i|·2⁻²³) of PyTorch's value:
 * spread_i the largest move of the perturbed runs, 4 units of the value itself for an element that
 * happened not to move, and the float32 roundings of the stored value and of the value read back
 * (the float64 reference's), each at most |expected|·2⁻²⁴.
 */
export async function checkFixture(backend: Backend, name: string, unit: number) {
  const { config, state } = await loadCheckpoint(`${dir}${name}.model.safetensors`);
  const { tensors: io, metadata } = await readSafetensors(`${dir}${name}.io.safetensors`);
  const get = (key: string) => io.get(key)!.data as Float32Array;
  const batch = Number(metadata.batch), size = Number(metadata.image_size);
  const twins = perturbedTwins(unit);
  const models = [backend, ...twins].map((b) => new ConvMixer(b, config, batch, size));
  const inputs = models.map((m) => (loadStateDict(m, state), m.setBatch(get("images"), get("labels"))));
  const model = models[0];
  const all = (run: (m: ConvMixer, i: number) => void) => models.forEach(run);
  const read = (t: Tensor) => backend.read(t);
  /** The bound of the value that twin tensors `pick(model)` hold. */
  const bound = (pick: (m: ConvMixer) => Tensor, scale = 1) =>
    twinBound(twins, models.slice(1).map(pick), unit, scale).bound;
  const expectClose = (actual: ArrayLike<number>, expected: Float32Array, b: Float64Array, what: string) =>
    assertWithin(`${name} ${what}`, actual, expected, b.map((x, i) => x + Math.abs(expected[i]) * 2 ** -23));
  const check = async (pick: (m: ConvMixer) => Tensor, expected: Float32Array, what: string) =>
    expectClose(await read(pick(model)), expected, bound(pick), what);

  // The eval logits are compared after the train forward's layers (below), so that a wrong layer is
  // named by its own check first; the logits buffer is reused, so they are read now.
  const evalLogits = models.map((m, i) => m.forward(inputs[i], false));
  const pickEval = (m: ConvMixer) => evalLogits[models.indexOf(m)];
  const evalRead = { actual: await read(pickEval(model)), bound: bound(pickEval) };

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
    all((m) => m.backend.fill(m.metrics, 0));
    const logits = models.map((m, i) => m.forward(inputs[i], true));
    if (step === 1) {
      // The stored activations layer by layer from the stem, so a failure names the first wrong layer.
      const activation = (pick: (a: Activations) => Tensor, key: string) =>
        check((m) => pick(inputs[models.indexOf(m)]), get(key), key);
      await activation((a) => a.blockInput[0], "act.stem");
      for (let i = 0; i < config.depth; i++) await activation((a) => a.blockInput[i + 1], `act.blocks.${i}`);
      await activation((a) => a.pooled, "act.pool");
      expectClose(evalRead.actual, get("logits_eval"), evalRead.bound, "logits_eval");
    }
    const [lossSum, , count] = await read(model.metrics);
    const lossBound = bound((m) => m.metrics, count).subarray(0, 1);
    expectClose([lossSum / count], get(step === 1 ? "loss" : "loss2"), lossBound, `loss (step ${step})`);
    all((m, i) => m.backward(inputs[i]));
    if (step === 1) {
      await check((m) => logits[models.indexOf(m)], get("logits_train"), "logits_train");
      for (const key of namedStatistics(model).keys()) {
        await check((m) => namedStatistics(m).get(key)!, get(`running.${key}`), key);
      }
      for (const [key, t] of namedParameters(model, model.grads)) {
        const grad = (m: ConvMixer) => namedParameters(m, m.grads).get(key)!;
        await check(grad, toOurLayout(key, get(`grad.${key}`), t), `grad.${key}`);
      }
    }
    all((m) => m.step({ ...hyper, step }));
    const prefix = step === 1 ? "after_step" : "after_step2";
    for (const [key, t] of namedParameters(model)) {
      await check(
        (m) => namedParameters(m).get(key)!,
        toOurLayout(key, get(`${prefix}.${key}`), t),
        `${prefix}.${key}`,
      );
    }
  }
}
