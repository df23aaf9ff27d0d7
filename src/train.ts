// `deno task train`: owns the training loop. Batches are decoded and augmented by CPU workers
// (src/data/loader.ts) while the backend runs the current step; the model and the optimizer state
// stay on the backend, and only the metrics tensor is read back, a few times per epoch.
//
// The run directory (src/run_dir.ts) holds config.json, metrics.jsonl (one line per epoch),
// last.safetensors (timm names) and the AdamW moments, saved as one atomic step at every epoch end,
// every few minutes, and on Ctrl-C/SIGTERM/SIGHUP, so --resume continues from the last save after
// any crash.
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
import { loadCheckpoint } from "./checkpoint.ts";
import { type Position, RunDir } from "./run_dir.ts";
import { currentRecipe, resumeChange, type RunConfig } from "./run_config.ts";
import { StoppedBySignal, StopSignals } from "./stop_signals.ts";
import { openCifar } from "./data/cifar.ts";
import { BatchLoader } from "./data/loader.ts";
import { evaluate } from "./evaluate.ts";
import { Progress } from "./progress.ts";

const SAVE_INTERVAL_MS = 5 * 60 * 1000;
const METRIC_READS_PER_EPOCH = 20;

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
    const modelConfig = {
      hdim: recipe.hdim,
      depth: recipe.depth,
      kernel: recipe.kernel,
      patch: recipe.patch,
      classes: 10,
    };
    const model = new ConvMixer(backend, modelConfig, recipe.batch);
    let position = start;
    if (folder.saved) {
      model.loadStateDict(folder.saved.state);
      model.loadOptimizerStateDict(folder.saved.optimizer);
    } else if (initial) model.loadStateDict(initial.state);
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
    // Only now, with data, model and loaders ready, does the run directory get its config.
    if (!resumed || change) await folder.writeConfig(run);
    const signals = new StopSignals();
    let testAccuracy = NaN;
    try {
      const perEpoch = trainLoader.batchesPerEpoch;
      const readEvery = Math.max(1, Math.floor(perEpoch / METRIC_READS_PER_EPOCH));
      let lastSave = Date.now();
      for (let epoch = position.epoch; epoch < recipe.epochs; epoch++) {
        const started = performance.now();
        if (epoch === start.epoch && folder.saved) backend.write(model.metrics, folder.saved.epochMetrics);
        else backend.fill(model.metrics, 0);
        const progress = new Progress(`epoch ${epoch + 1}/${recipe.epochs}`, perEpoch * recipe.batch, "img");
        // Metrics are read back without waiting: the read resolves later and is shown on a later step.
        let pendingRead: Promise<Float32Array> | null = null;
        let readAt = { images: 0, ms: 0, lr: 0 };
        let lr = 0, images = 0;
        const first = epoch === position.epoch ? position.batchInEpoch : 0;
        const show = ([loss, correct, count]: Float32Array) => {
          checkFinite(loss / count, position);
          progress.update(
            readAt.images + first * recipe.batch,
            `loss ${(loss / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}% ` +
              `lr ${readAt.lr.toPrecision(3)} ${(readAt.images / readAt.ms * 1000).toFixed(0)} img/s`,
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
          if ((batch.index + 1) % readEvery === 0) {
            if (pendingRead) show(await pendingRead);
            readAt = { images, ms: performance.now() - started, lr };
            pendingRead = backend.read(model.metrics);
          }
          const stepLimit = options.steps !== undefined && position.step >= options.steps;
          if (signals.received || Date.now() - lastSave > SAVE_INTERVAL_MS) {
            if (pendingRead) show(await pendingRead);
            pendingRead = null;
            const sums = await backend.read(model.metrics);
            checkFinite(sums[0] / sums[2], position);
            await folder.save(model, position, perEpoch, sums);
            lastSave = Date.now();
          }
          if (stepLimit || signals.received) break;
        }
        if (signals.received) break; // saved above; the epoch's evaluation would delay the exit
        if (pendingRead) await pendingRead;
        const [lossSum, correct, count] = await backend.read(model.metrics);
        checkFinite(lossSum / count, position);
        const seconds = (performance.now() - started) / 1000;
        progress.done(`loss ${(lossSum / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}%`);
        const test = await evaluate(model, testLoader, data.test.count);
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
        await folder.appendMetrics(line);
        console.error(
          `epoch ${epoch + 1}: train loss ${line.train_loss.toFixed(4)} acc ${
            (100 * line.train_acc).toFixed(2)
          }% | ` +
            `test loss ${test.loss.toFixed(4)} acc ${(100 * test.accuracy).toFixed(2)}% | ` +
            `${line.images_per_s.toFixed(0)} img/s, ${seconds.toFixed(0)} s`,
        );
        if (position.batchInEpoch === perEpoch) position = { ...position, epoch: epoch + 1, batchInEpoch: 0 };
        const sums = position.batchInEpoch === 0
          ? new Float32Array(3)
          : Float32Array.of(lossSum, correct, count);
        await folder.save(model, position, perEpoch, sums);
        lastSave = Date.now();
        if (signals.received || (options.steps !== undefined && position.step >= options.steps)) break;
      }
    } finally {
      signals.dispose();
      trainLoader.close();
      testLoader.close();
    }
    if (signals.received) {
      throw new StoppedBySignal(
        signals.received,
        `stopped by ${signals.received} at step ${position.step}, saved; continue with --resume ${runDir}`,
      );
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

function checkFinite(loss: number, at: Position) {
  if (!Number.isFinite(loss)) {
    throw new Error(
      `non-finite training loss (${loss}) near step ${at.step} (epoch ${at.epoch + 1}); ` +
        `the last checkpoint is intact — lower --lr or set --clip-norm, then --resume`,
    );
  }
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
