// A run's config.json: the recipe, seed, data order and starting weights, plus the changes made on
// --resume (--lr, --clip-norm, --epochs), each with the step it applies from. The recipe a resumed run
// trains with is the original one with every change applied in order.
import { type TrainOptions, UsageError } from "./options.ts";
import { PAPER_METHODS, PRESETS, type Recipe } from "./recipe.ts";
import { OPTIMIZER_KINDS } from "./backend.ts";
import { lowResolutionProblem } from "./low_resolution.ts";

export interface RunChange {
  /** The first optimizer step trained with the change. */
  step: number;
  lr?: number;
  clipNorm?: number;
  epochs?: number;
}

export interface RunConfig {
  recipe: Recipe;
  seed: number;
  shuffle: boolean;
  init?: string;
  /** Training images held out for validation (the last ones). */
  val?: number;
  /** The run's length in optimizer steps: epochs × steps per epoch, or fixed by --time or --total-steps. */
  totalSteps?: number;
  /** The one-cycle's peak in optimizer steps, where a --time run's first estimate put it (else 2/5 of totalSteps). */
  peakStep?: number;
  /** Whether the schedule's breakpoints fall on whole epochs (the official script's way). */
  byEpochs?: boolean;
  changes?: RunChange[];
}

/** What --resume may change; every other recipe flag is fixed by config.json. */
const CHANGEABLE = ["lr", "clipNorm", "epochs"] as const;
const INTEGERS = new Set(["hdim", "depth", "kernel", "patch", "batch", "epochs", "raN", "raM", "cropSize"]);
const POSITIVE = new Set(["hdim", "kernel", "patch", "batch", "epochs", "lr", "scale", "cropFraction"]);

/** Parses and checks config.json's text; every problem throws one line naming the file. */
export function parseRunConfig(path: string, text: string): RunConfig {
  const fail = (problem: string): never => {
    throw new UsageError(`${path}: ${problem} (not a config.json this program wrote; start a new run)`);
  };
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (e) {
    fail(`not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(config)) return fail("not a JSON object");
  const { recipe, seed, shuffle, init, changes, val, totalSteps, peakStep, byEpochs } = config;
  if (!isObject(recipe)) return fail("'recipe' is missing or not an object");
  // Runs from before a method existed trained without it.
  for (const [key, off] of Object.entries(PAPER_METHODS)) if (!(key in recipe)) recipe[key] = off;
  for (const [key, example] of Object.entries(PRESETS.official)) {
    const value = recipe[key];
    if (typeof value !== typeof example) {
      fail(`recipe.${key} is ${JSON.stringify(value)}, not a ${typeof example}`);
    }
    if (typeof value === "number") {
      checkNumber(`recipe.${key}`, value, INTEGERS.has(key), POSITIVE.has(key), fail);
    }
  }
  if (!(OPTIMIZER_KINDS as readonly string[]).includes(recipe.optimizer as string)) {
    fail(`recipe.optimizer ${recipe.optimizer} is unknown`);
  }
  if (!["onecycle", "constant"].includes(recipe.schedule as string)) {
    fail(`recipe.schedule ${recipe.schedule} is unknown`);
  }
  if ((recipe.kernel as number) % 2 === 0) fail(`recipe.kernel ${recipe.kernel} is not odd`);
  if ((recipe.patch as number) > 32) fail(`recipe.patch ${recipe.patch} is larger than the 32-pixel images`);
  const cropProblem = lowResolutionProblem(recipe as unknown as Recipe);
  if (cropProblem) fail(`recipe.${cropProblem}`);
  if (typeof seed !== "number") fail(`seed is ${JSON.stringify(seed)}, not a number`);
  checkNumber("seed", seed as number, true, false, fail);
  if (typeof shuffle !== "boolean") fail(`shuffle is ${JSON.stringify(shuffle)}, not true or false`);
  if (init !== undefined && typeof init !== "string") fail(`init is ${JSON.stringify(init)}, not a path`);
  for (const [name, value] of Object.entries({ val, totalSteps, peakStep })) {
    if (value === undefined) continue;
    if (typeof value !== "number") fail(`${name} is ${JSON.stringify(value)}, not a number`);
    checkNumber(name, value as number, true, name !== "val", fail);
  }
  if (byEpochs !== undefined && typeof byEpochs !== "boolean") {
    fail(`byEpochs is ${JSON.stringify(byEpochs)}, not true or false`);
  }
  if (changes !== undefined && !Array.isArray(changes)) fail("'changes' is not a list");
  for (const [i, change] of ((changes ?? []) as unknown[]).entries()) {
    if (!isObject(change)) return fail(`changes[${i}] is not an object`);
    for (const [key, value] of Object.entries(change)) {
      if (key !== "step" && !(CHANGEABLE as readonly string[]).includes(key)) {
        fail(`changes[${i}].${key} is unknown`);
      }
      if (typeof value !== "number") fail(`changes[${i}].${key} is ${JSON.stringify(value)}, not a number`);
      checkNumber(
        `changes[${i}].${key}`,
        value as number,
        key === "step" || key === "epochs",
        key !== "step" && key !== "clipNorm",
        fail,
      );
    }
    if (change.step === undefined) fail(`changes[${i}] has no step`);
  }
  return config as unknown as RunConfig;
}

function checkNumber(
  name: string,
  value: number,
  integer: boolean,
  positive: boolean,
  fail: (problem: string) => never,
) {
  if (!Number.isFinite(value) || value < 0 || (positive && value === 0)) {
    fail(`${name} is ${value}, not a ${positive ? "positive" : "non-negative"} number`);
  }
  if (integer && !Number.isInteger(value)) fail(`${name} is ${value}, not an integer`);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** The recipe a resumed run trains with: the original with every change applied in order. */
export function currentRecipe(config: RunConfig): Recipe {
  const recipe = { ...config.recipe };
  for (const { step: _, ...change } of config.changes ?? []) Object.assign(recipe, change);
  return recipe;
}

/**
 * The flags given to --resume, checked against a run at `step` with `epochsDone` finished epochs.
 * Returns the change to record (null when none) and prints one line for it and one per ignored flag;
 * an impossible --epochs or --steps throws one line.
 */
export function resumeChange(
  runDir: string,
  config: RunConfig,
  options: TrainOptions,
  at: { step: number; epoch: number },
): RunChange | null {
  const recipe = currentRecipe(config);
  const change: RunChange = { step: at.step + 1 };
  for (const key of CHANGEABLE) {
    const value = options.recipe[key];
    if (value !== undefined && value !== recipe[key]) change[key] = value;
  }
  // A run sized by --time or --total-steps has a fixed number of steps, not of epochs.
  const bySteps = config.byEpochs !== true && (recipe.time > 0 || config.totalSteps !== undefined);
  if (bySteps && change.epochs !== undefined) {
    console.error(
      `resume: --epochs ${change.epochs} ignored: the run's length is fixed in steps (${
        config.totalSteps ?? "chosen by --time"
      })`,
    );
    delete change.epochs;
  }
  if (bySteps && config.totalSteps !== undefined && at.step >= config.totalSteps) {
    throw new UsageError(`--resume ${runDir}: the run is complete (step ${at.step} of ${config.totalSteps})`);
  }
  if (change.epochs !== undefined && change.epochs <= at.epoch) {
    throw new UsageError(
      `--epochs ${change.epochs}: ${runDir} has already done ${at.epoch} epochs (step ${at.step}); ` +
        `pass N > ${at.epoch}`,
    );
  }
  if (!bySteps && change.epochs === undefined && recipe.epochs <= at.epoch) {
    throw new UsageError(
      `--resume ${runDir}: the run is complete (${at.epoch} of ${recipe.epochs} epochs, step ${at.step}); ` +
        `pass --epochs N with N > ${at.epoch} to train longer`,
    );
  }
  if (options.steps !== undefined && options.steps <= at.step) {
    throw new UsageError(`--steps ${options.steps}: ${runDir} is already at step ${at.step}`);
  }
  for (const line of ignoredFlags(config, recipe, options)) console.error(line);
  if (Object.keys(change).length === 1) return null;
  const what = Object.entries(change).filter(([key]) => key !== "step").map(([key, value]) =>
    `--${flagName(key)} ${recipe[key as keyof Recipe]} → ${value}`
  );
  console.error(`resume: ${what.join(", ")} from step ${change.step} (recorded in ${runDir}/config.json)`);
  return change;
}

function ignoredFlags(config: RunConfig, recipe: Recipe, options: TrainOptions): string[] {
  const lines: string[] = [];
  const ignored = (flag: string, given: unknown, kept: unknown) =>
    lines.push(`resume: --${flag} ${given} ignored: the run keeps ${kept} (from config.json)`);
  for (const [key, value] of Object.entries(options.recipe) as [keyof Recipe, unknown][]) {
    if (!(CHANGEABLE as readonly string[]).includes(key) && value !== recipe[key]) {
      ignored(
        flagName(key),
        value === false ? "none" : value,
        recipe[key] === true ? "augmentation" : recipe[key],
      );
    }
  }
  const given = new Set(options.flagsGiven);
  if (given.has("seed") && options.seed !== config.seed) ignored("seed", options.seed, config.seed);
  if (given.has("no-shuffle") && config.shuffle) lines.push("resume: --no-shuffle ignored: the run shuffles");
  if (given.has("init") && options.init !== config.init) {
    ignored("init", options.init, config.init ?? "no --init");
  }
  if (given.has("preset")) {
    lines.push(`resume: --preset ${options.preset} ignored: the recipe is in config.json`);
  }
  if (given.has("out")) lines.push(`resume: --out ignored: the run stays in its folder`);
  if (given.has("val") && options.val !== (config.val ?? 0)) ignored("val", options.val, config.val ?? 0);
  if (given.has("total-steps")) {
    ignored("total-steps", options.totalSteps, config.totalSteps ?? "the --time budget");
  }
  if (given.has("peak-step")) {
    ignored("peak-step", options.peakStep, config.peakStep ?? "the peak at 2/5 of the steps");
  }
  return lines;
}

/** The command-line flag of a recipe key: clipNorm → clip-norm, raN → ra-n. */
function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
