// `deno task train`: owns the training loop. Batches are decoded and augmented by CPU workers
// (src/data/loader.ts) while the backend runs the current step; the model and the optimizer state
// stay on the backend, and only the metrics tensor is read back, a few times per epoch.
//
// The run directory holds config.json, metrics.jsonl (one line per epoch), last.safetensors (timm
// names) and last.optim.safetensors (AdamW moments + position), written atomically at every epoch end,
// every few minutes, and on Ctrl-C, so --resume continues from the last save after any crash.
import {
  parseTrainArgs,
  PRESETS,
  type Recipe,
  TRAIN_USAGE,
  type TrainOptions,
  UsageError,
} from "./options.ts";
import { selectBackend } from "./select_backend.ts";
import { ConvMixer } from "./model.ts";
import { learningRate } from "./schedule.ts";
import { loadCheckpoint, saveCheckpoint, type StateDict } from "./checkpoint.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "./safetensors.ts";
import { openCifar } from "./data/cifar.ts";
import { BatchLoader } from "./data/loader.ts";
import { evaluate } from "./evaluate.ts";
import { Progress } from "./progress.ts";
import { machineFacts, writeRunReport } from "./report/report.ts";
import { StepLog } from "./step_log.ts";

const SAVE_INTERVAL_MS = 5 * 60 * 1000;
const METRIC_READS_PER_EPOCH = 20;

interface RunConfig {
  recipe: Recipe;
  seed: number;
  shuffle: boolean;
  init?: string;
}

interface Position {
  step: number; // optimizer steps done
  epoch: number; // current epoch (0-based)
  batchInEpoch: number; // batches of `epoch` already done
}

export async function train(options: TrainOptions): Promise<{ runDir: string; testAccuracy: number }> {
  const runDir = options.resume ?? options.out ?? `runs/${new Date().toISOString().replace(/[:.]/g, "-")}`;
  const resumed = options.resume ? await readRunConfig(runDir) : null;
  if (!resumed && existsSync(`${runDir}/config.json`)) {
    throw new UsageError(
      `--out ${runDir} already holds a run: continue it with --resume ${runDir}, or pick another --out`,
    );
  }
  const { backend, reason, onGpu } = await selectBackend(options.backend, {
    threads: options.workers,
    precision: options.precision,
  });
  console.error(`backend: ${backend.description} (${reason})`);
  try {
    const initial = options.init ? await loadCheckpoint(options.init) : null;
    const run = resumed ?? resolveRunConfig(options, onGpu, initial?.config);
    const { recipe } = run;
    if (resumed && Object.keys(options.recipe).some((k) => k !== "epochs")) {
      console.error(`resume: the recipe comes from ${runDir}/config.json; only --epochs may change it`);
    }
    if (resumed && options.recipe.epochs) recipe.epochs = options.recipe.epochs;
    const data = await openCifar(options.data);
    const modelConfig = {
      hdim: recipe.hdim,
      depth: recipe.depth,
      kernel: recipe.kernel,
      patch: recipe.patch,
      classes: 10,
    };
    const model = new ConvMixer(backend, modelConfig, recipe.batch);
    let position: Position = { step: 0, epoch: 0, batchInEpoch: 0 };
    if (resumed) position = await loadTrainingState(model, runDir);
    else if (initial) model.loadStateDict(initial.state);
    else model.initialize(run.seed);

    const augment = recipe.augment
      ? {
        enabled: true,
        scale: recipe.scale,
        raN: recipe.raN,
        raM: recipe.raM,
        jitter: recipe.jitter,
        reprob: recipe.reprob,
      }
      : null;
    const trainLoader = await BatchLoader.create(data.train, {
      batch: recipe.batch,
      shuffle: run.shuffle,
      seed: run.seed,
      augment,
      dropLast: true,
    });
    const testLoader = await BatchLoader.create(data.test, {
      batch: recipe.batch,
      shuffle: false,
      seed: 0,
      augment: null,
      dropLast: false,
    });
    if (trainLoader.batchesPerEpoch === 0) {
      throw new Error(`--batch ${recipe.batch} is larger than the ${data.train.count} training records`);
    }
    // Only now, with data, model and loaders ready, does the run directory appear.
    await Deno.mkdir(runDir, { recursive: true });
    await writeAtomic(`${runDir}/config.json`, JSON.stringify(run, null, 2) + "\n");
    const stepLog = options.logEvery ? new StepLog(`${runDir}/steps.jsonl`, options.logEvery) : null;
    let stopRequested = false;
    const onInterrupt = () => {
      stopRequested = true;
      console.error("\ninterrupted: saving a checkpoint, then stopping (Ctrl-C again to abort)");
      Deno.removeSignalListener("SIGINT", onInterrupt);
    };
    Deno.addSignalListener("SIGINT", onInterrupt);
    let testAccuracy = NaN;
    try {
      const perEpoch = trainLoader.batchesPerEpoch;
      const readEvery = Math.max(1, Math.floor(perEpoch / METRIC_READS_PER_EPOCH));
      let lastSave = Date.now();
      for (let epoch = position.epoch; epoch < recipe.epochs; epoch++) {
        const started = performance.now();
        backend.fill(model.metrics, 0);
        stepLog?.startEpoch();
        const progress = new Progress(`epoch ${epoch + 1}/${recipe.epochs}`, perEpoch * recipe.batch, "img");
        // Metrics are read back without waiting: the read resolves later and is shown on a later step.
        let pendingRead: Promise<Float32Array> | null = null;
        let readAt = { images: 0, lr: 0 };
        let lr = 0, images = 0;
        const first = epoch === position.epoch ? position.batchInEpoch : 0;
        const show = ([loss, correct, count]: Float32Array) => {
          checkFinite(loss / count, position);
          progress.update(
            readAt.images + first * recipe.batch,
            `loss ${(loss / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}% ` +
              `lr ${readAt.lr.toPrecision(3)}`,
          );
        };
        for await (const batch of trainLoader.epoch(epoch, first)) {
          lr = learningRate(recipe.schedule, recipe.lr, recipe.epochs, epoch, batch.index, perEpoch);
          const a = model.setBatch(batch.images, batch.labels);
          model.forward(a, true);
          model.backward(a);
          model.step({
            kind: recipe.optimizer,
            lr,
            weightDecay: recipe.wd,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: position.step + 1,
            clipNorm: recipe.clipNorm,
          });
          position = { step: position.step + 1, epoch, batchInEpoch: batch.index + 1 };
          images += batch.count;
          stepLog?.afterStep(position.step, lr, () => backend.read(model.metrics));
          if ((batch.index + 1) % readEvery === 0) {
            if (pendingRead) show(await pendingRead);
            readAt = { images, lr };
            pendingRead = backend.read(model.metrics);
          }
          const stepLimit = options.steps !== undefined && position.step >= options.steps;
          if (stepLimit || stopRequested || Date.now() - lastSave > SAVE_INTERVAL_MS) {
            if (pendingRead) show(await pendingRead);
            pendingRead = null;
            const [loss, , count] = await backend.read(model.metrics);
            checkFinite(loss / count, position);
            await saveTrainingState(model, runDir, position, perEpoch);
            lastSave = Date.now();
          }
          if (stepLimit || stopRequested) break;
        }
        if (pendingRead) await pendingRead;
        const [lossSum, correct, count] = await backend.read(model.metrics);
        checkFinite(lossSum / count, position);
        const seconds = (performance.now() - started) / 1000;
        progress.done(`loss ${(lossSum / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}%`);
        await stepLog?.flush();
        const test = await evaluate(model, testLoader, data.test.count, { keepLogits: true });
        testAccuracy = test.accuracy;
        const line = {
          epoch: epoch + 1,
          step: position.step,
          train_loss: lossSum / count,
          train_acc: correct / count,
          test_loss: test.loss,
          test_acc: test.accuracy,
          lr,
          images_per_s: images / seconds,
          seconds,
          partial: position.batchInEpoch < perEpoch || undefined,
        };
        await Deno.writeTextFile(`${runDir}/metrics.jsonl`, JSON.stringify(line) + "\n", { append: true });
        const machine = machineFacts(backend.description, reason);
        await writeRunReport(runDir, { machine, test: { split: data.test, logits: test.logits! } });
        console.error(
          `epoch ${epoch + 1}: train loss ${line.train_loss.toFixed(4)} acc ${
            (100 * line.train_acc).toFixed(2)
          }% | ` +
            `test loss ${test.loss.toFixed(4)} acc ${(100 * test.accuracy).toFixed(2)}% | ` +
            `${line.images_per_s.toFixed(0)} img/s, ${seconds.toFixed(0)} s`,
        );
        if (position.batchInEpoch === perEpoch) position = { ...position, epoch: epoch + 1, batchInEpoch: 0 };
        await saveTrainingState(model, runDir, position, perEpoch);
        lastSave = Date.now();
        if (stopRequested || (options.steps !== undefined && position.step >= options.steps)) break;
      }
    } finally {
      Deno.removeSignalListener("SIGINT", onInterrupt);
      trainLoader.close();
      testLoader.close();
    }
    if (stopRequested) {
      throw new Error(`stopped at step ${position.step}; continue with --resume ${runDir}`);
    }
    return { runDir, testAccuracy };
  } finally {
    backend.dispose();
  }
}

function resolveRunConfig(
  options: TrainOptions,
  onGpu: boolean,
  initial?: { hdim: number; depth: number; kernel: number; patch: number },
): RunConfig {
  const preset = PRESETS[options.preset ?? (onGpu ? "official" : "cpu")];
  const recipe: Recipe = { ...preset, ...options.recipe };
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
  return { recipe, seed: options.seed, shuffle: options.shuffle, init: options.init };
}

async function readRunConfig(runDir: string): Promise<RunConfig> {
  const path = `${runDir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    throw new UsageError(`--resume ${runDir}: no ${path} (not a run directory)`);
  }
  try {
    return JSON.parse(text) as RunConfig;
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

function checkFinite(loss: number, at: Position) {
  if (!Number.isFinite(loss)) {
    throw new Error(
      `non-finite training loss (${loss}) near step ${at.step} (epoch ${at.epoch + 1}); ` +
        `the last checkpoint is intact — lower --lr or set --clip-norm, then --resume`,
    );
  }
}

async function saveTrainingState(model: ConvMixer, runDir: string, at: Position, perEpoch: number) {
  const position = {
    step: String(at.step),
    epoch: String(at.epoch),
    batch_in_epoch: String(at.batchInEpoch),
    batches_per_epoch: String(perEpoch),
  };
  const moments = new Map<string, SafeTensor>();
  for (const [name, { shape, data }] of await model.optimizerStateDict()) {
    moments.set(name, { dtype: "F32", shape, data });
  }
  // The moments first: both files carry the position, and resume refuses a mismatched pair.
  await writeSafetensors(`${runDir}/last.optim.safetensors`, moments, position);
  await saveCheckpoint(`${runDir}/last.safetensors`, await model.stateDict(), position);
}

async function loadTrainingState(model: ConvMixer, runDir: string): Promise<Position> {
  const checkpoint = await loadCheckpoint(`${runDir}/last.safetensors`);
  const moments = await readSafetensors(`${runDir}/last.optim.safetensors`);
  const step = moments.metadata.step;
  if (step === undefined || checkpoint.metadata?.step !== step) {
    throw new Error(`${runDir}: last.safetensors and last.optim.safetensors are from different steps`);
  }
  model.loadStateDict(checkpoint.state);
  const optimizerState: StateDict = new Map();
  for (const [name, t] of moments.tensors) {
    if (t.dtype !== "F32") {
      throw new Error(`${runDir}/last.optim.safetensors: ${name} is ${t.dtype}, expected F32`);
    }
    optimizerState.set(name, { shape: t.shape, data: t.data as Float32Array });
  }
  model.loadOptimizerStateDict(optimizerState);
  const position = {
    step: Number(step),
    epoch: Number(moments.metadata.epoch),
    batchInEpoch: Number(moments.metadata.batch_in_epoch),
  };
  console.error(`resume: step ${position.step}, epoch ${position.epoch + 1}, batch ${position.batchInEpoch}`);
  return position;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function writeAtomic(path: string, text: string) {
  const temporary = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(temporary, text);
  await Deno.rename(temporary, path);
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
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
