// ConvMixer checkpoints: safetensors files holding exactly timm's `convmixer` state dict, so a
// checkpoint loads in PyTorch (`model.load_state_dict(safetensors.torch.load_file(path))`) and a
// timm-named state dict written by PyTorch loads here.
//
// Our in-memory layouts differ from timm's in three places, converted on save and load:
//   blocks.{i}.0.fn.0.weight  depthwise   ours [k, k, C] (a tap is one vector over channels), timm [C, 1, k, k]
//   blocks.{i}.1.weight       pointwise   ours [C, C], timm [C, C, 1, 1] (same bytes)
//   *.num_batches_tracked     BN counter  ours shape [] in a 1-element Float32Array, timm I64 scalar
// Everything else is float32 in timm's shape. Float16 files load too (converted to float32).
import type { Tensor } from "./backend.ts";
import { type ConvMixer, type ConvMixerConfig, parameterList, type ParameterTensors } from "./model.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "./safetensors.ts";

export type { ConvMixerConfig };

/** Parameters and BN statistics keyed by timm names, in our layouts (above). */
export type StateDict = Map<string, { shape: number[]; data: Float32Array }>;

const batchNormNames = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"];

type UnitKind = "stem" | "depthwise" | "pointwise";

/** timm's module prefixes of each unit's conv and BatchNorm, in the model's unitsOf order. */
function unitPrefixes(depth: number): { kind: UnitKind; conv: string; bn: string }[] {
  const blocks = Array.from({ length: depth }, (_, i) => [
    { kind: "depthwise" as const, conv: `blocks.${i}.0.fn.0`, bn: `blocks.${i}.0.fn.2` },
    { kind: "pointwise" as const, conv: `blocks.${i}.1`, bn: `blocks.${i}.3` },
  ]);
  return [{ kind: "stem", conv: "stem.0", bn: "stem.2" }, ...blocks.flat()];
}

/** timm's names of the typed parameters (model.ts): the one mapping, for saving and loading. */
function parameterNames(depth: number): string[] {
  const units = unitPrefixes(depth).flatMap(({ conv, bn }) => [
    `${conv}.weight`,
    `${conv}.bias`,
    `${bn}.weight`,
    `${bn}.bias`,
  ]);
  return [...units, "head.weight", "head.bias"]; // parameterList's order
}

function zip(names: string[], tensors: Tensor[]): Map<string, Tensor> {
  return new Map(names.map((name, i) => [name, tensors[i]]));
}

/** `tensors` (the parameters, their gradients or a moment) under timm's names. */
export function namedParameters(
  model: ConvMixer,
  tensors: ParameterTensors = model.params,
): Map<string, Tensor> {
  return zip(parameterNames(model.config.depth), parameterList(tensors));
}

/** BatchNorm's running statistics under timm's names, in ConvMixer.runningStatistics order. */
export function namedStatistics(model: ConvMixer): Map<string, Tensor> {
  const names = unitPrefixes(model.config.depth).map(({ bn }) => bn);
  return zip(names.flatMap((bn) => [`${bn}.running_mean`, `${bn}.running_var`]), model.runningStatistics());
}

/** Every tensor a checkpoint holds: the parameters and the running statistics. */
function namedState(model: ConvMixer): Map<string, Tensor> {
  return new Map([...namedParameters(model), ...namedStatistics(model)]);
}

/** The state dict in our layouts (above), read from the device. */
export async function stateDict(model: ConvMixer): Promise<StateDict> {
  const state: StateDict = new Map();
  const named = [...namedState(model)];
  const values = await model.backend.readMany(named.map(([, t]) => t)); // one read-back, not one per tensor
  named.forEach(([name, t], i) => state.set(name, { shape: [...t.shape], data: values[i] }));
  for (const { bn } of unitPrefixes(model.config.depth)) {
    state.set(`${bn}.num_batches_tracked`, { shape: [], data: Float32Array.of(model.numBatchesTracked) });
  }
  return state;
}

export function loadStateDict(model: ConvMixer, state: StateDict) {
  for (const [name, t] of namedState(model)) {
    const entry = state.get(name);
    if (!entry) throw new Error(`state dict lacks ${name}`);
    if (entry.data.length !== t.size) {
      throw new Error(`${name}: ${entry.data.length} values, expected shape [${t.shape}]`);
    }
    model.backend.write(t, entry.data);
  }
  model.numBatchesTracked = state.get("stem.2.num_batches_tracked")?.data[0] ?? 0;
}

/** AdamW's moments, as `exp_avg.<name>` and `exp_avg_sq.<name>`, for resuming. */
export async function optimizerStateDict(model: ConvMixer): Promise<StateDict> {
  const entries = optimizerEntries(model);
  const values = await model.backend.readMany(entries.map(([, t]) => t));
  return new Map(entries.map(([key, t], i) => [key, { shape: [...t.shape], data: values[i] }]));
}

export function loadOptimizerStateDict(model: ConvMixer, state: StateDict) {
  for (const [key, t] of optimizerEntries(model)) {
    const entry = state.get(key);
    if (!entry || entry.data.length !== t.size) {
      throw new Error(`optimizer state lacks ${key} of [${t.shape}]`);
    }
    model.backend.write(t, entry.data);
  }
}

/** Each parameter's m then v, under their state-dict keys. */
function optimizerEntries(model: ConvMixer): [string, Tensor][] {
  const { m, v } = model.moments;
  const vs = [...namedParameters(model, v).values()];
  return [...namedParameters(model, m)].flatMap((
    [name, t],
    i,
  ) => [[`exp_avg.${name}`, t], [`exp_avg_sq.${name}`, vs[i]]]);
}

/** timm's state-dict names and shapes for a ConvMixer, in timm's (module registration) order. */
export function expectedShapes(config: ConvMixerConfig): Map<string, number[]> {
  const { hdim: C, depth, kernel: k, patch: p, classes } = config;
  const convShapes = { stem: [C, 3, p, p], depthwise: [C, 1, k, k], pointwise: [C, C, 1, 1] };
  const shapes = new Map<string, number[]>();
  unitPrefixes(depth).forEach(({ kind, conv, bn }) => {
    shapes.set(`${conv}.weight`, convShapes[kind]);
    shapes.set(`${conv}.bias`, [C]);
    for (const name of batchNormNames) shapes.set(`${bn}.${name}`, name === "num_batches_tracked" ? [] : [C]);
  });
  shapes.set("head.weight", [classes, C]);
  shapes.set("head.bias", [classes]);
  return shapes;
}

const isDepthwise = (name: string) => /^blocks\.\d+\.0\.fn\.0\.weight$/.test(name);
const isPointwise = (name: string) => /^blocks\.\d+\.1\.weight$/.test(name);
const isCounter = (name: string) => name.endsWith(".num_batches_tracked");

/** Our shape of a tensor whose timm shape is given. */
function ourShape(name: string, timm: number[]): number[] {
  if (isDepthwise(name)) return [timm[2], timm[3], timm[0]];
  if (isPointwise(name)) return [timm[0], timm[1]];
  return timm;
}

/** Reads the config off the shapes (timm's or ours); throws `where: problem` if they do not say. */
function inferConfig(where: string, shapes: Map<string, number[]>, layout: "timm" | "ours"): ConvMixerConfig {
  const shape = (name: string, rank: number, expected: string) => {
    const s = shapes.get(name);
    if (!s) throw new Error(`${where}: missing tensor '${name}' (cannot infer the model config)`);
    if (s.length !== rank) {
      throw new Error(`${where}: tensor '${name}' has shape [${s}], expected ${expected}`);
    }
    return s;
  };
  const [hdim, , patch] = shape("stem.0.weight", 4, "[hdim, 3, patch, patch]");
  const depthwise = layout === "timm"
    ? shape("blocks.0.0.fn.0.weight", 4, "[hdim, 1, kernel, kernel]")[2]
    : shape("blocks.0.0.fn.0.weight", 3, "[kernel, kernel, hdim]")[0];
  const [classes] = shape("head.weight", 2, "[classes, hdim]");
  // Depth from the highest block index, so a block with a missing tensor shows up as "missing".
  let depth = 0;
  for (const name of shapes.keys()) {
    const match = /^blocks\.(\d+)\./.exec(name);
    if (match) depth = Math.max(depth, Number(match[1]) + 1);
  }
  return { hdim, depth, kernel: depthwise, patch, classes };
}

/** Checks the names are exactly the expected set and every shape matches; throws one line. */
function checkShapes(
  where: string,
  actual: Map<string, number[]>,
  expected: Map<string, number[]>,
  model: string,
) {
  const list = (names: string[]) =>
    names.slice(0, 8).join(", ") + (names.length > 8 ? `, … (${names.length} in all)` : "");
  const missing = [...expected.keys()].filter((name) => !actual.has(name));
  const unexpected = [...actual.keys()].filter((name) => !expected.has(name));
  if (missing.length > 0 || unexpected.length > 0) {
    const parts = [];
    if (missing.length > 0) parts.push(`missing ${list(missing)}`);
    if (unexpected.length > 0) parts.push(`unexpected ${list(unexpected)}`);
    throw new Error(`${where}: not a ${model} state dict: ${parts.join("; ")}`);
  }
  for (const [name, shape] of expected) {
    const got = actual.get(name)!;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new Error(`${where}: tensor '${name}' has shape [${got}], expected [${shape}] for ${model}`);
    }
  }
}

function describe(c: ConvMixerConfig): string {
  return `ConvMixer-${c.hdim}/${c.depth} (kernel ${c.kernel}, patch ${c.patch}, ${c.classes} classes)`;
}

/** Float16 bits → number (IEEE 754 binary16: 1 sign, 5 exponent, 10 fraction bits). */
export function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** [C, 1, k, k] (timm) → [k, k, C] (ours). */
function depthwiseToOurs(timm: Float32Array, C: number, k: number): Float32Array {
  const ours = new Float32Array(timm.length);
  for (let c = 0; c < C; c++) for (let t = 0; t < k * k; t++) ours[t * C + c] = timm[c * k * k + t];
  return ours;
}

/** [k, k, C] (ours) → [C, 1, k, k] (timm). */
function depthwiseToTimm(ours: Float32Array, C: number, k: number): Float32Array {
  const timm = new Float32Array(ours.length);
  for (let c = 0; c < C; c++) for (let t = 0; t < k * k; t++) timm[c * k * k + t] = ours[t * C + c];
  return timm;
}

/**
 * Writes `state` (our layouts) as timm's state dict: float32 tensors in timm's shapes, the BN
 * counters as int64. Atomic (see writeSafetensors). metadata is stored with {"format": "pt"}.
 */
export async function saveCheckpoint(
  path: string,
  state: StateDict,
  metadata: Record<string, string> = {},
): Promise<void> {
  const where = `${path}: state dict`;
  const shapes = new Map([...state].map(([name, t]) => [name, t.shape]));
  const config = inferConfig(where, shapes, "ours");
  const timmShapes = expectedShapes(config);
  checkShapes(where, shapes, new Map([...timmShapes].map(([n, s]) => [n, ourShape(n, s)])), describe(config));

  const tensors = new Map<string, SafeTensor>();
  for (const [name, shape] of timmShapes) {
    const { data } = state.get(name)!;
    if (data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new Error(`${where}: tensor '${name}' has ${data.length} values for shape [${shape}]`);
    }
    if (isCounter(name)) {
      tensors.set(name, { dtype: "I64", shape, data: BigInt64Array.of(BigInt(Math.round(data[0]))) });
    } else if (isDepthwise(name)) {
      tensors.set(name, { dtype: "F32", shape, data: depthwiseToTimm(data, config.hdim, config.kernel) });
    } else {
      tensors.set(name, { dtype: "F32", shape, data });
    }
  }
  await writeSafetensors(path, tensors, { format: "pt", ...metadata });
}

/**
 * Reads a timm ConvMixer state dict (ours or PyTorch's), infers the config from its shapes, checks
 * the names are exactly timm's and the shapes and dtypes match, and converts to our layouts.
 */
export async function loadCheckpoint(
  path: string,
): Promise<{ config: ConvMixerConfig; state: StateDict; metadata: Record<string, string> }> {
  const { tensors, metadata } = await readSafetensors(path);
  const shapes = new Map([...tensors].map(([name, t]) => [name, t.shape]));
  const config = inferConfig(path, shapes, "timm");
  const expected = expectedShapes(config);
  checkShapes(path, shapes, expected, describe(config));

  const state: StateDict = new Map();
  for (const [name, shape] of expected) {
    const t = tensors.get(name)!;
    let data: Float32Array;
    if (isCounter(name)) {
      if (t.dtype !== "I64") throw new Error(`${path}: tensor '${name}' has dtype ${t.dtype}, expected I64`);
      data = Float32Array.of(Number((t.data as BigInt64Array)[0]));
    } else if (t.dtype === "F32") {
      data = t.data as Float32Array;
    } else if (t.dtype === "F16") {
      data = Float32Array.from(t.data as Uint16Array, halfToFloat);
    } else {
      throw new Error(`${path}: tensor '${name}' has dtype ${t.dtype}, expected F32 (or F16)`);
    }
    if (isDepthwise(name)) data = depthwiseToOurs(data, config.hdim, config.kernel);
    state.set(name, { shape: ourShape(name, shape), data });
  }
  return { config, state, metadata };
}
