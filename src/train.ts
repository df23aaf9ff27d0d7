// `deno task train`: sets up a run (backend, recipe, data, model, loaders, config.json) and hands
// it to a TrainingSession (src/training_session.ts), which owns the loop. Batches are decoded and
// augmented by CPU workers (src/data/loader.ts) while the backend runs the current step; the model
// and the optimizer state stay on the backend, and only the metrics tensor is read back.
//
// The run directory (src/run_dir.ts) holds config.json, metrics.jsonl (one line per epoch),
// last.safetensors (timm names) and the AdamW moments, saved as one atomic step at every epoch end,
// every few minutes, and on Ctrl-C/SIGTERM/SIGHUP, so --resume continues from the last save after
// any crash.
import { parseTrainArgs, TRAIN_USAGE, type TrainOptions, UsageError } from "./options.ts";
import { augmentConfig, PRESETS, type Recipe, ttaForBudget } from "./recipe.ts";
import type { Backend } from "./backend.ts";
import { selectBackend } from "./select_backend.ts";
import { ConvMixer } from "./model.ts";
import { loadCheckpoint, loadStateDict, type StateDict } from "./checkpoint.ts";
import { type Position, RunDir, type Saved } from "./run_dir.ts";
import { type Loaders, restoreTrainingState, TrainingSession } from "./training_session.ts";
import { currentRecipe, resumeChange, type RunConfig } from "./run_config.ts";
import { StoppedBySignal } from "./stop_signals.ts";
import { type CifarSplit, holdOut, openCifar } from "./data/cifar.ts";
import { BatchLoader } from "./data/loader.ts";
import { WeightAverage } from "./weight_average.ts";
import { patchWhiteningFilters } from "./stem_whitening.ts";
import { lowResolutionProblem } from "./low_resolution.ts";
import { machineFacts } from "./report/report.ts";
import { StepLog } from "./step_log.ts";

export async function train(options: TrainOptions): Promise<{ runDir: string; testAccuracy: number }> {
  const runDir = options.resume ?? options.out ?? `runs/${new Date().toISOString().replace(/[:.]/g, "-")}`;
  const folder = options.resume ? await RunDir.resume(runDir) : await RunDir.create(runDir);
  try {
    return await trainIn(folder, options);
  } finally {
    await folder.close();
  }
}

async function trainIn(
  folder: RunDir,
  options: TrainOptions,
): Promise<{ runDir: string; testAccuracy: number }> {
  const runDir = folder.path;
  const resumed = folder.config;
  const start: Position = folder.saved?.position ?? { step: 0, epoch: 0, batchInEpoch: 0 };
  const change = resumed ? resumeChange(runDir, resumed, options, start) : null;
  if (folder.saved) {
    console.error(`resume: step ${start.step}, epoch ${start.epoch + 1}, batch ${start.batchInEpoch}`);
  }
  const { backend, reason, onGpu } = await selectBackend(options.backend, {
    threads: options.workers,
    precision: options.precision,
  });
  console.error(`backend: ${backend.description} (${reason})`);
  try {
    const init = resumed ? (folder.saved ? undefined : resumed.init) : options.init;
    const initial = init ? await loadCheckpoint(init) : null;
    const run = resumed ?? resolveRunConfig(options, onGpu, initial?.config);
    if (change) run.changes = [...run.changes ?? [], change];
    const recipe = currentRecipe(run);
    const data = await openCifar(options.data);
    const splits = holdOut(data.train, run.val ?? 0);
    const from = { seed: run.seed, saved: folder.saved, initial: initial?.state ?? null };
    const { model, average } = startingModel(backend, recipe, from, splits.train);
    const loaders = await openLoaders(recipe, run, splits, data.test);
    const perEpoch = loaders.train.batchesPerEpoch;
    const lengthFromEpochs = !recipe.time && (run.totalSteps === undefined || change?.epochs !== undefined);
    if (lengthFromEpochs) {
      run.totalSteps = recipe.epochs * perEpoch;
      run.byEpochs = true;
    }
    // Only now, with data, model and loaders ready, does the run directory get its config.
    if (!resumed || change || lengthFromEpochs) await folder.writeConfig(run);
    const reporting = {
      machine: machineFacts(backend.description, reason),
      testSplit: data.test,
      stepLog: options.logEvery ? new StepLog(`${runDir}/steps.jsonl`, options.logEvery) : null,
    };
    const session = new TrainingSession(
      model,
      average,
      loaders,
      run,
      recipe,
      folder,
      options.steps,
      reporting,
    );
    try {
      return { runDir, testAccuracy: await session.run() };
    } finally {
      for (const loader of Object.values(loaders)) loader?.close();
    }
  } finally {
    backend.dispose();
  }
}

/** The model at this command's start: the save being resumed, --init's weights, or a fresh one. */
function startingModel(
  backend: Backend,
  recipe: Recipe,
  { seed, saved, initial }: { seed: number; saved: Saved | null; initial: StateDict | null },
  train: CifarSplit,
): { model: ConvMixer; average: WeightAverage | null } {
  const model = new ConvMixer(backend, modelConfig(recipe), recipe.batch);
  const average = recipe.ema > 0 ? new WeightAverage(model, recipe.ema) : null;
  if (saved) restoreTrainingState(model, average, saved);
  else {
    if (initial) loadStateDict(model, initial);
    else model.initialize(seed, stemFilters(recipe, train));
    average?.reset();
  }
  return { model, average };
}

function modelConfig(recipe: Recipe) {
  const { hdim, depth, kernel, patch } = recipe;
  return { hdim, depth, kernel, patch, classes: 10 };
}

function stemFilters(recipe: Recipe, train: CifarSplit): Float32Array | undefined {
  if (recipe.stemInit !== "whiten") return undefined;
  return patchWhiteningFilters(train.images, train.count, recipe.patch);
}

async function openLoaders(
  recipe: Recipe,
  run: RunConfig,
  splits: { train: CifarSplit; val: CifarSplit | null },
  test: CifarSplit,
): Promise<Loaders> {
  const trainLoader = await BatchLoader.create(splits.train, {
    batch: recipe.batch,
    shuffle: run.shuffle,
    seed: run.seed,
    augment: augmentConfig(recipe),
    dropLast: true,
  });
  const evaluation = (split: CifarSplit) =>
    BatchLoader.create(split, {
      batch: recipe.batch,
      shuffle: false,
      seed: 0,
      augment: null,
      dropLast: false,
    });
  if (trainLoader.batchesPerEpoch === 0) {
    throw new Error(`--batch ${recipe.batch} is larger than the ${splits.train.count} training records`);
  }
  return {
    train: trainLoader,
    val: splits.val ? await evaluation(splits.val) : null,
    test: await evaluation(test),
  };
}

function resolveRunConfig(
  options: TrainOptions,
  onGpu: boolean,
  initial?: { hdim: number; depth: number; kernel: number; patch: number },
): RunConfig {
  const preset = PRESETS[options.preset ?? (onGpu ? "official" : "cpu")];
  const recipe: Recipe = { ...preset, ...options.recipe };
  recipe.tta = ttaForBudget(recipe, options.recipe.tta);
  if (initial) {
    for (const key of ["hdim", "depth", "kernel", "patch"] as const) {
      if (options.recipe[key] !== undefined && options.recipe[key] !== initial[key]) {
        throw new UsageError(
          `--${key} ${options.recipe[key]} conflicts with --init ${options.init} (${key} ${initial[key]})`,
        );
      }
      recipe[key] = initial[key];
    }
  }
  const cropProblem = lowResolutionProblem(recipe);
  if (cropProblem) throw new UsageError(`--${cropProblem}`);
  return {
    recipe,
    seed: options.seed,
    shuffle: options.shuffle,
    init: options.init,
    val: options.val,
    totalSteps: options.totalSteps,
    peakStep: options.peakStep,
  };
}

if (import.meta.main) {
  try {
    const options = parseTrainArgs(Deno.args);
    if (options.help) {
      console.log(TRAIN_USAGE);
      Deno.exit(0);
    }
    const { runDir, testAccuracy } = await train(options);
    console.error(`done: test accuracy ${(100 * testAccuracy).toFixed(2)}%, run in ${runDir}`);
    Deno.exit(0);
  } catch (e) {
    console.error(`train: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : e instanceof StoppedBySignal ? e.exitCode : 1);
  }
}
