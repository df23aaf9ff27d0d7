import assert from "node:assert/strict";
import {
  type ConvMixerConfig,
  expectedShapes,
  halfToFloat,
  loadCheckpoint,
  saveCheckpoint,
  type StateDict,
} from "../src/checkpoint.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "../src/safetensors.ts";

const dir = await Deno.makeTempDir({ prefix: "checkpoint_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const fixtures = new URL("./fixtures/", import.meta.url).pathname;
const fixtureNames = ["k5p2", "k3p1", "k9p4", "k7p2b1"];

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const config: ConvMixerConfig = { hdim: 5, depth: 2, kernel: 3, patch: 2, classes: 4 };

/** A state dict in our layouts with distinct pseudo-random values (counters hold 17). */
function randomState(c: ConvMixerConfig): StateDict {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5;
  const state: StateDict = new Map();
  for (const [name, timm] of expectedShapes(c)) {
    const shape = name.endsWith(".0.fn.0.weight")
      ? [c.kernel, c.kernel, c.hdim]
      : /^blocks\.\d+\.1\.weight$/.test(name)
      ? [c.hdim, c.hdim]
      : timm;
    const data = name.endsWith("num_batches_tracked")
      ? Float32Array.of(17)
      : Float32Array.from({ length: numel(shape) }, next);
    state.set(name, { shape, data });
  }
  return state;
}

async function rejects(promise: Promise<unknown>, message: string | RegExp) {
  await assert.rejects(promise, (e: Error) => {
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

Deno.test("expectedShapes lists timm's ConvMixer state dict in module order", () => {
  const shapes = expectedShapes(config);
  assert.equal(shapes.size, 7 + 14 * config.depth + 2);
  assert.deepEqual([...shapes.keys()].slice(0, 9), [
    "stem.0.weight",
    "stem.0.bias",
    "stem.2.weight",
    "stem.2.bias",
    "stem.2.running_mean",
    "stem.2.running_var",
    "stem.2.num_batches_tracked",
    "blocks.0.0.fn.0.weight",
    "blocks.0.0.fn.0.bias",
  ]);
  assert.deepEqual(shapes.get("stem.0.weight"), [5, 3, 2, 2]);
  assert.deepEqual(shapes.get("stem.2.num_batches_tracked"), []);
  assert.deepEqual(shapes.get("blocks.1.0.fn.0.weight"), [5, 1, 3, 3]);
  assert.deepEqual(shapes.get("blocks.1.0.fn.2.running_var"), [5]);
  assert.deepEqual(shapes.get("blocks.1.1.weight"), [5, 5, 1, 1]);
  assert.deepEqual(shapes.get("blocks.1.3.num_batches_tracked"), []);
  assert.deepEqual(shapes.get("head.weight"), [4, 5]);
  assert.deepEqual([...shapes.keys()].slice(-2), ["head.weight", "head.bias"]);
});

Deno.test("save then load returns the same config and state; the file is in timm's layout", async () => {
  const state = randomState(config);
  const path = `${dir}/round.safetensors`;
  await saveCheckpoint(path, state, { epoch: "3" });
  const loaded = await loadCheckpoint(path);
  assert.deepEqual(loaded.config, config);
  assert.deepEqual(loaded.metadata, { format: "pt", epoch: "3" });
  assert.deepEqual(loaded.state, state);

  const { tensors } = await readSafetensors(path);
  assert.deepEqual([...tensors.keys()], [...expectedShapes(config).keys()]);
  const { hdim: C, kernel: k } = config;
  const ours = state.get("blocks.1.0.fn.0.weight")!.data;
  const timm = tensors.get("blocks.1.0.fn.0.weight")!;
  assert.deepEqual(timm.shape, [C, 1, k, k]);
  for (let c = 0; c < C; c++) {
    for (let ky = 0; ky < k; ky++) {
      for (let kx = 0; kx < k; kx++) {
        assert.equal(timm.data[(c * k + ky) * k + kx], ours[(ky * k + kx) * C + c]);
      }
    }
  }
  assert.deepEqual(tensors.get("blocks.0.1.weight")?.shape, [C, C, 1, 1]);
  assert.deepEqual(tensors.get("blocks.0.1.weight")?.data, state.get("blocks.0.1.weight")!.data);
  assert.deepEqual(tensors.get("blocks.0.3.num_batches_tracked"), {
    dtype: "I64",
    shape: [],
    data: BigInt64Array.of(17n),
  });
});

for (const name of fixtureNames) {
  Deno.test(`loads the PyTorch-written fixture ${name} and saves it back unchanged`, async () => {
    const path = `${fixtures}${name}.model.safetensors`;
    const { config: c, state, metadata } = await loadCheckpoint(path);
    for (const key of ["hdim", "depth", "kernel", "patch", "classes"] as const) {
      assert.equal(String(c[key]), metadata[key]);
    }
    assert.deepEqual([...state.keys()], [...expectedShapes(c).keys()]);
    assert.deepEqual(state.get("blocks.0.0.fn.0.weight")?.shape, [c.kernel, c.kernel, c.hdim]);
    assert.deepEqual(state.get("blocks.0.1.weight")?.shape, [c.hdim, c.hdim]);
    assert.deepEqual(state.get("stem.2.num_batches_tracked"), { shape: [], data: Float32Array.of(3) });

    // Our file holds exactly PyTorch's tensors: same names, dtypes, shapes and bytes.
    const copy = `${dir}/${name}.safetensors`;
    await saveCheckpoint(copy, state);
    const theirs = (await readSafetensors(path)).tensors;
    const ours = (await readSafetensors(copy)).tensors;
    assert.deepEqual(ours, theirs);
  });
}

/** The timm-layout tensors of a valid checkpoint, to be spoiled one way at a time. */
async function timmTensors(): Promise<Map<string, SafeTensor>> {
  const path = `${dir}/valid.safetensors`;
  await saveCheckpoint(path, randomState(config));
  return (await readSafetensors(path)).tensors;
}

async function loadSpoiled(label: string, spoil: (t: Map<string, SafeTensor>) => void) {
  const tensors = await timmTensors();
  spoil(tensors);
  const path = `${dir}/${label}.safetensors`;
  await writeSafetensors(path, tensors);
  return { path, promise: loadCheckpoint(path) };
}

const model = "ConvMixer-5/2 (kernel 3, patch 2, 4 classes)";
const f32 = (shape: number[]): SafeTensor => ({ dtype: "F32", shape, data: new Float32Array(numel(shape)) });

Deno.test("rejects missing, unexpected and renamed tensors, listing them", async () => {
  let r = await loadSpoiled("missing", (t) => t.delete("blocks.1.3.running_var"));
  await rejects(r.promise, `${r.path}: not a ${model} state dict: missing blocks.1.3.running_var`);
  r = await loadSpoiled("unexpected", (t) => t.set("head.extra", f32([4])));
  await rejects(r.promise, `${r.path}: not a ${model} state dict: unexpected head.extra`);
  r = await loadSpoiled("renamed", (t) => {
    t.set("stem.1.weight", t.get("stem.2.weight")!);
    t.delete("stem.2.weight");
  });
  await rejects(
    r.promise,
    `${r.path}: not a ${model} state dict: missing stem.2.weight; unexpected stem.1.weight`,
  );
  r = await loadSpoiled("prefixed", (t) => {
    for (const [name, v] of [...t]) if (name.startsWith("blocks.1.")) t.set(`module.${name}`, v).delete(name);
  });
  await rejects(
    r.promise,
    /ConvMixer-5\/1 .* state dict: unexpected module\.blocks\.1\.0\.fn\.0\.weight, .*, … \(14 in all\)$/,
  );
  r = await loadSpoiled("nodepthwise", (t) => t.delete("blocks.0.0.fn.0.weight"));
  await rejects(
    r.promise,
    `${r.path}: missing tensor 'blocks.0.0.fn.0.weight' (cannot infer the model config)`,
  );
  r = await loadSpoiled("nohead", (t) => t.delete("head.weight"));
  await rejects(r.promise, `${r.path}: missing tensor 'head.weight' (cannot infer the model config)`);
  r = await loadSpoiled("gap", (t) => t.set("blocks.3.1.bias", f32([5])));
  await rejects(r.promise, /ConvMixer-5\/4 .* state dict: missing blocks\.2\.0\.fn\.0\.weight, /);
});

Deno.test("rejects wrong shapes", async () => {
  let r = await loadSpoiled("headbias", (t) => t.set("head.bias", f32([11])));
  await rejects(r.promise, `${r.path}: tensor 'head.bias' has shape [11], expected [4] for ${model}`);
  r = await loadSpoiled("stemrank", (t) => t.set("stem.0.weight", f32([5, 3, 4])));
  await rejects(
    r.promise,
    `${r.path}: tensor 'stem.0.weight' has shape [5,3,4], expected [hdim, 3, patch, patch]`,
  );
  r = await loadSpoiled("rect", (t) => t.set("blocks.1.0.fn.0.weight", f32([5, 1, 3, 5])));
  await rejects(
    r.promise,
    `${r.path}: tensor 'blocks.1.0.fn.0.weight' has shape [5,1,3,5], expected [5,1,3,3] for ${model}`,
  );
  r = await loadSpoiled("pointwise", (t) => t.set("blocks.0.1.weight", f32([5, 5])));
  await rejects(
    r.promise,
    `${r.path}: tensor 'blocks.0.1.weight' has shape [5,5], expected [5,5,1,1] for ${model}`,
  );
  r = await loadSpoiled("grey", (t) => t.set("stem.0.weight", f32([5, 1, 2, 2])));
  await rejects(
    r.promise,
    `${r.path}: tensor 'stem.0.weight' has shape [5,1,2,2], expected [5,3,2,2] for ${model}`,
  );
});

Deno.test("rejects wrong dtypes and accepts float16 weights", async () => {
  let r = await loadSpoiled("counter", (t) => t.set("stem.2.num_batches_tracked", f32([])));
  await rejects(r.promise, `${r.path}: tensor 'stem.2.num_batches_tracked' has dtype F32, expected I64`);
  r = await loadSpoiled(
    "int",
    (t) => t.set("head.bias", { dtype: "I64", shape: [4], data: new BigInt64Array(4) }),
  );
  await rejects(r.promise, `${r.path}: tensor 'head.bias' has dtype I64, expected F32 (or F16)`);
  r = await loadSpoiled("half", (t) => {
    t.set("head.bias", { dtype: "F16", shape: [4], data: Uint16Array.of(0x3c00, 0xc000, 0x3800, 0x0001) });
  });
  const { state } = await r.promise;
  assert.deepEqual(state.get("head.bias")?.data, Float32Array.of(1, -2, 0.5, 2 ** -24));
});

Deno.test("halfToFloat decodes normals, subnormals, zeros, infinities and NaN", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0400), 2 ** -14);
  assert.equal(halfToFloat(0x03ff), 1023 * 2 ** -24);
  assert.equal(halfToFloat(0x3555), 0.333251953125);
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  assert.equal(halfToFloat(0xfc00), -Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

Deno.test("file-level damage surfaces as the reader's one-line errors", async () => {
  const bytes = await Deno.readFile(`${fixtures}k5p2.model.safetensors`);
  const path = `${dir}/damaged.safetensors`;
  await Deno.writeFile(path, bytes.subarray(0, bytes.length - 10));
  await rejects(loadCheckpoint(path), new RegExp(`^${path}: tensor 'head.bias' data_offsets .* run past`));
  const corrupt = bytes.slice();
  corrupt[8] = "[".charCodeAt(0);
  await Deno.writeFile(path, corrupt);
  await rejects(loadCheckpoint(path), new RegExp(`^${path}: header is not valid JSON`));
  const far = bytes.slice();
  new DataView(far.buffer).setBigUint64(0, 1n << 33n, true);
  await Deno.writeFile(path, far);
  await rejects(loadCheckpoint(path), new RegExp(`^${path}: header length 8589934592 exceeds`));
});

Deno.test("saveCheckpoint checks the state dict and writes nothing when it is wrong", async () => {
  const path = `${dir}/unwritten.safetensors`;
  const where = `${path}: state dict`;
  const missing = randomState(config);
  missing.delete("blocks.0.3.weight");
  await rejects(
    saveCheckpoint(path, missing),
    `${where}: not a ${model} state dict: missing blocks.0.3.weight`,
  );
  const timmLayout = randomState(config);
  timmLayout.set("blocks.0.0.fn.0.weight", { shape: [5, 1, 3, 3], data: new Float32Array(45) });
  await rejects(
    saveCheckpoint(path, timmLayout),
    `${where}: tensor 'blocks.0.0.fn.0.weight' has shape [5,1,3,3], expected [kernel, kernel, hdim]`,
  );
  const pointwise = randomState(config);
  pointwise.set("blocks.1.1.weight", { shape: [5, 5, 1, 1], data: new Float32Array(25) });
  await rejects(
    saveCheckpoint(path, pointwise),
    `${where}: tensor 'blocks.1.1.weight' has shape [5,5,1,1], expected [5,5] for ${model}`,
  );
  const short = randomState(config);
  short.set("head.bias", { shape: [4], data: new Float32Array(3) });
  await rejects(saveCheckpoint(path, short), `${where}: tensor 'head.bias' has 3 values for shape [4]`);
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
});
