// `deno task train`: owns the training loop. Batches are decoded and augmented by CPU workers
// (src/data/loader.ts) while the backend runs the current step; the model and the optimizer state
// stay on the backend, and only the metrics tensor is read back, a few times per epoch.
//
// The run directory holds config.json, metrics.jsonl (one line per epoch), last.safetensors (timm
// names) and last.optim.safetensors (AdamW moments + position), written atomically at every epoch end,
// every few minutes, and on Ctrl-C, so --resume continues from the last save after any crash.
import {
  augmentConfig,
  parseTrainArgs,
  PRESETS,
  type Recipe,
  TRAIN_USAGE,
  type TrainOptions,
  UsageError,
} from "./options.ts";
import { selectBackend } from "./select_backend.ts";
import { ConvMixer } from "./model.ts";
import { epochKnots, learningRate, stepKnots } from "./schedule.ts";
import { loadCheckpoint, saveCheckpoint, type StateDict } from "./checkpoint.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "./safetensors.ts";
import { type CifarSplit, holdOut, openCifar } from "./data/cifar.ts";
import { BatchLoader } from "./data/loader.ts";
import { evaluate } from "./evaluate.ts";
import { formatDuration, Progress } from "./progress.ts";
import { WeightAverage } from "./weight_average.ts";
import { patchWhiteningFilters } from "./stem_whitening.ts";
import { machineFacts, writeRunReport } from "./report/report.ts";
import { StepLog } from "./step_log.ts";

const SAVE_INTERVAL_MS = 5 * 60 * 1000;
const METRIC_READS_PER_EPOCH = 20;
/**
 * A run sized by --time trains its first CALIBRATION_STEPS steps at lr 0 (they still fill AdamW's
 * moments and the BatchNorm statistics) and times steps WARM_STEPS.. of them; then its length is fixed.
 */
const CALIBRATION_STEPS = 12;
const WARM_STEPS = 4;
/** Time a --time run keeps in reserve: for the epoch ends' saves, and a margin for the rest. */
const SAVE_RESERVE_MS = 1000;
const MARGIN_FRACTION = 0.015;

interface RunConfig {
  recipe: Recipe;
  seed: number;
  shuffle: boolean;
  init?: string;
  /** Training images held out for validation (the last ones). */
  val?: number;
  /** The run's length in optimizer steps: epochs × steps per epoch, or fixed by --time or --total-steps. */
  totalSteps?: number;
  /** Whether the schedule's breakpoints fall on whole epochs (the official script's way). */
  byEpochs?: boolean;
}

interface Position {
  step: number; // optimizer steps done
  epoch: number; // current epoch (0-based)
  batchInEpoch: number; // batches of `epoch` already done
}

interface Loaders {
  train: BatchLoader;
  val: BatchLoader | null;
  test: BatchLoader;
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
    if (resumed && options.recipe.epochs && run.byEpochs) {
      recipe.epochs = options.recipe.epochs;
      delete run.totalSteps; // recomputed from the new epoch count
    } else if (resumed && options.recipe.epochs) {
      console.error(`resume: this run's length is fixed at ${run.totalSteps} steps; --epochs is ignored`);
    }
    const data = await openCifar(options.data);
    const splits = holdOut(data.train, run.val ?? 0);
    const model = new ConvMixer(backend, modelConfig(recipe), recipe.batch);
    const average = recipe.ema > 0 ? new WeightAverage(model, recipe.ema) : null;
    let position: Position = { step: 0, epoch: 0, batchInEpoch: 0 };
    if (resumed) position = await loadTrainingState(model, average, runDir);
    else {
      if (initial) model.loadStateDict(initial.state);
      else model.initialize(run.seed, stemFilters(recipe, splits.train));
      average?.reset();
    }
    const loaders = await openLoaders(recipe, run, splits, data.test);
    const perEpoch = loaders.train.batchesPerEpoch;
    if (!recipe.time && run.totalSteps === undefined) {
      run.totalSteps = recipe.epochs * perEpoch;
      run.byEpochs = true;
    }
    // Only now, with data, model and loaders ready, does the run directory appear.
    await Deno.mkdir(runDir, { recursive: true });
    await writeAtomic(`${runDir}/config.json`, JSON.stringify(run, null, 2) + "\n");
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
      runDir,
      options.steps,
      position,
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

/**
 * One invocation of `task train` over a prepared model: the epochs, their evaluations and saves,
 * the calibration of a --time run, and stopping on a signal or at --steps.
 */
class TrainingSession {
  readonly #perEpoch: number;
  #stopRequested = false;
  #lastSave = Date.now();
  #projectedEnd = NaN; // performance.now() at which the run should end
  #clock: { step: number; at: number } | null = null; // when a --time run's timing began

  constructor(
    readonly model: ConvMixer,
    readonly average: WeightAverage | null,
    readonly loaders: Loaders,
    readonly config: RunConfig,
    readonly runDir: string,
    readonly stopAtStep: number | undefined,
    public position: Position,
    readonly reporting: { machine: Record<string, string>; testSplit: CifarSplit; stepLog: StepLog | null },
  ) {
    this.#perEpoch = loaders.train.batchesPerEpoch;
  }

  get #recipe(): Recipe {
    return this.config.recipe;
  }

  async run(): Promise<number> {
    const onSignal = () => {
      this.#stopRequested = true;
      console.error("\ninterrupted: saving a checkpoint, then stopping (Ctrl-C again to abort)");
      Deno.removeSignalListener("SIGINT", onSignal);
    };
    Deno.addSignalListener("SIGINT", onSignal);
    let testAccuracy = NaN;
    try {
      while (!this.#finished()) {
        const line = await this.#trainEpoch();
        if (this.#stopRequested) break;
        const last = this.#finished();
        testAccuracy = await this.#endEpoch(line, last);
      }
    } finally {
      Deno.removeSignalListener("SIGINT", onSignal);
    }
    if (this.#stopRequested) {
      await this.#save();
      throw new Error(`stopped at step ${this.position.step}; continue with --resume ${this.runDir}`);
    }
    return testAccuracy;
  }

  /** Done with this command: the run's last step, or --steps. */
  #finished(): boolean {
    const { step } = this.position;
    const total = this.config.totalSteps;
    return (total !== undefined && step >= total) ||
      (this.stopAtStep !== undefined && step >= this.stopAtStep);
  }

  /** A run sized in steps trains its first CALIBRATION_STEPS at lr 0 whether or not it measures them. */
  #lr(step: number): number {
    const { totalSteps, recipe, byEpochs } = this.config;
    if (byEpochs) {
      return learningRate(recipe.schedule, recipe.lr, epochKnots(recipe.epochs, this.#perEpoch), step);
    }
    if (totalSteps === undefined || step < CALIBRATION_STEPS) return 0;
    return learningRate(recipe.schedule, recipe.lr, stepKnots(totalSteps), step);
  }

  /** Trains the rest of the current epoch (or up to the run's end); returns its metrics line. */
  async #trainEpoch(): Promise<Record<string, number | boolean | undefined>> {
    const { model } = this;
    const recipe = this.#recipe;
    const { backend } = model;
    const epoch = this.position.epoch;
    const first = this.position.batchInEpoch;
    const started = performance.now();
    backend.fill(model.metrics, 0);
    this.reporting.stepLog?.startEpoch();
    const total = this.config.totalSteps;
    const epochs = total === undefined ? "?" : Math.ceil(total / this.#perEpoch);
    const progress = new Progress(`epoch ${epoch + 1}/${epochs}`, this.#perEpoch * recipe.batch, "img");
    const readEvery = Math.max(1, Math.floor(this.#perEpoch / METRIC_READS_PER_EPOCH));
    // Metrics are read back without waiting: the read resolves later and is shown on a later step.
    let pendingRead: Promise<Float32Array> | null = null;
    let readAt = { images: 0, lr: 0 };
    let lr = 0, images = 0;
    const show = async () => {
      if (!pendingRead) return;
      const [loss, correct, count] = await pendingRead;
      pendingRead = null;
      checkFinite(loss / count, this.position);
      const end = Number.isFinite(this.#projectedEnd)
        ? ` · run ends in ${formatDuration((this.#projectedEnd - performance.now()) / 1000)}`
        : "";
      progress.update(
        readAt.images + first * recipe.batch,
        `loss ${(loss / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}% ` +
          `lr ${readAt.lr.toPrecision(3)}${end}`,
      );
    };
    for await (const batch of this.loaders.train.epoch(epoch, first)) {
      const step = this.position.step;
      lr = this.#lr(step);
      const a = model.setBatch(batch.images, batch.labels);
      model.forward(a, true, recipe.labelSmoothing);
      model.backward(a);
      model.step({
        kind: recipe.optimizer,
        lr,
        weightDecay: recipe.wd,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        step: step + 1,
        clipNorm: recipe.clipNorm,
      });
      this.average?.update(step + 1);
      this.position = { step: step + 1, epoch, batchInEpoch: batch.index + 1 };
      images += batch.count;
      this.reporting.stepLog?.afterStep(step + 1, lr, () => backend.read(model.metrics));
      if (recipe.time && this.config.totalSteps === undefined) await this.#calibrate(a);
      if ((batch.index + 1) % readEvery === 0) {
        await show();
        readAt = { images, lr };
        pendingRead = backend.read(model.metrics);
      }
      const atEnd = this.#finished();
      if (atEnd || this.#stopRequested || Date.now() - this.#lastSave > SAVE_INTERVAL_MS) {
        await show();
        const [loss, , count] = await backend.read(model.metrics);
        checkFinite(loss / count, this.position);
        if (!atEnd && !this.#stopRequested) await this.#save();
      }
      if (atEnd || this.#stopRequested) break;
    }
    await show();
    const [lossSum, correct, count] = await backend.read(model.metrics);
    checkFinite(lossSum / count, this.position);
    const seconds = (performance.now() - started) / 1000;
    progress.done(`loss ${(lossSum / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}%`);
    return {
      epoch: epoch + 1,
      step: this.position.step,
      train_loss: lossSum / count,
      train_acc: correct / count,
      lr,
      images_per_s: images / seconds,
      seconds,
      partial: this.position.batchInEpoch < this.#perEpoch || undefined,
    };
  }

  /**
   * During a --time run's first steps: step WARM_STEPS starts the clock; CALIBRATION_STEPS − WARM_STEPS
   * steps later it times one evaluation batch too and fixes the run's length so that training,
   * every evaluation and the saves end within the budget (counted from the process's start).
   */
  async #calibrate(a: ReturnType<ConvMixer["activations"]>) {
    const { step } = this.position;
    const { backend } = this.model;
    if (this.#clock === null) { // from WARM_STEPS on (or from the first step after a resume)
      if (step < WARM_STEPS) return;
      await backend.flush();
      this.#clock = { step, at: performance.now() };
      return;
    }
    if (step < this.#clock.step + CALIBRATION_STEPS - WARM_STEPS) return;
    await backend.flush();
    const stepMs = (performance.now() - this.#clock.at) / (step - this.#clock.step);
    const forwardStarted = performance.now();
    const metrics = await backend.read(this.model.metrics);
    await backend.read(this.model.forward(a, false));
    backend.write(this.model.metrics, metrics); // the timing forward leaves the epoch's metrics alone
    const forwardMsPerImage = (performance.now() - forwardStarted) / a.batch;
    const recipe = this.#recipe;
    const views = recipe.tta === "flip" ? 2 : 1;
    const testMs = this.loaders.test.records * views * forwardMsPerImage;
    const budgetMs = recipe.time * 1000 * (1 - MARGIN_FRACTION);
    // Each epoch costs its steps, one validation pass and one save.
    const perStepMs = stepMs +
      ((this.loaders.val?.records ?? 0) * views * forwardMsPerImage + SAVE_RESERVE_MS) /
        this.#perEpoch;
    const left = budgetMs - performance.now() - testMs - SAVE_RESERVE_MS;
    const totalSteps = step + Math.max(0, Math.floor(left / perStepMs));
    this.config.totalSteps = totalSteps;
    this.#projectedEnd = performance.now() + (totalSteps - step) * perStepMs + testMs;
    await writeAtomic(`${this.runDir}/config.json`, JSON.stringify(this.config, null, 2) + "\n");
    console.error(
      `\n--time ${recipe.time} s: ${stepMs.toFixed(1)} ms per step, ${
        (forwardMsPerImage * 1000).toFixed(0)
      } µs per evaluated image → ${totalSteps} steps (${(totalSteps / this.#perEpoch).toFixed(2)} epochs)`,
    );
  }

  /** Evaluation (validation every epoch; the test set at the end), the metrics line, the save. */
  async #endEpoch(line: Record<string, number | boolean | undefined>, last: boolean): Promise<number> {
    await this.reporting.stepLog?.flush();
    const tta = this.#recipe.tta;
    const evaluateSplit = (loader: BatchLoader) => {
      const run = () =>
        evaluate(this.model, loader, loader.records, { tta, keepLogits: loader === this.loaders.test });
      return this.average ? this.average.withAverage(run) : run();
    };
    let testAccuracy = NaN;
    let testLogits: Float32Array | undefined;
    if (this.loaders.val) {
      const val = await evaluateSplit(this.loaders.val);
      Object.assign(line, { val_loss: val.loss, val_acc: val.accuracy });
    }
    if (last) {
      const test = await evaluateSplit(this.loaders.test);
      Object.assign(line, { test_loss: test.loss, test_acc: test.accuracy });
      testAccuracy = test.accuracy;
      testLogits = test.logits;
    }
    await Deno.writeTextFile(`${this.runDir}/metrics.jsonl`, JSON.stringify(line) + "\n", { append: true });
    const { machine, testSplit } = this.reporting;
    await writeRunReport(this.runDir, {
      machine,
      test: testLogits && { split: testSplit, logits: testLogits },
    });
    console.error(epochSummary(line));
    if (this.position.batchInEpoch === this.#perEpoch) {
      this.position = { ...this.position, epoch: this.position.epoch + 1, batchInEpoch: 0 };
    }
    await this.#save();
    return testAccuracy;
  }

  async #save() {
    await saveTrainingState(this.model, this.average, this.runDir, this.position, this.#perEpoch);
    this.#lastSave = Date.now();
  }
}

function epochSummary(line: Record<string, number | boolean | undefined>): string {
  const part = (name: string, loss: unknown, acc: unknown) =>
    typeof loss === "number"
      ? ` | ${name} loss ${loss.toFixed(4)} acc ${(100 * (acc as number)).toFixed(2)}%`
      : "";
  return `epoch ${line.epoch}:` + part("train", line.train_loss, line.train_acc).slice(2) +
    part("val", line.val_loss, line.val_acc) + part("test", line.test_loss, line.test_acc) +
    ` | ${(line.images_per_s as number).toFixed(0)} img/s, ${(line.seconds as number).toFixed(0)} s`;
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
  return {
    recipe,
    seed: options.seed,
    shuffle: options.shuffle,
    init: options.init,
    val: options.val,
    totalSteps: options.totalSteps,
  };
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

/**
 * The model checkpoint (timm names; the weight average when there is one) and the optimizer file
 * (AdamW moments, the online weights under the average, and the position).
 */
async function saveTrainingState(
  model: ConvMixer,
  average: WeightAverage | null,
  runDir: string,
  at: Position,
  perEpoch: number,
) {
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
  let checkpoint = await model.stateDict();
  if (average) {
    for (const [name, { shape, data }] of checkpoint) {
      moments.set(`${ONLINE}${name}`, { dtype: "F32", shape, data });
    }
    checkpoint = await average.withAverage(() => model.stateDict());
  }
  // The moments first: both files carry the position, and resume refuses a mismatched pair.
  await writeSafetensors(`${runDir}/last.optim.safetensors`, moments, position);
  await saveCheckpoint(`${runDir}/last.safetensors`, checkpoint, position);
}

/** Prefix of the online weights in the optimizer file of a run with a weight average. */
const ONLINE = "online.";

async function loadTrainingState(
  model: ConvMixer,
  average: WeightAverage | null,
  runDir: string,
): Promise<Position> {
  const checkpoint = await loadCheckpoint(`${runDir}/last.safetensors`);
  const moments = await readSafetensors(`${runDir}/last.optim.safetensors`);
  const step = moments.metadata.step;
  if (step === undefined || checkpoint.metadata?.step !== step) {
    throw new Error(`${runDir}: last.safetensors and last.optim.safetensors are from different steps`);
  }
  const optimizerState: StateDict = new Map();
  const online: StateDict = new Map();
  for (const [name, t] of moments.tensors) {
    if (t.dtype !== "F32") {
      throw new Error(`${runDir}/last.optim.safetensors: ${name} is ${t.dtype}, expected F32`);
    }
    const entry = { shape: t.shape, data: t.data as Float32Array };
    if (name.startsWith(ONLINE)) online.set(name.slice(ONLINE.length), entry);
    else optimizerState.set(name, entry);
  }
  model.loadStateDict(checkpoint.state);
  if (average) {
    average.reset(); // the checkpoint holds the average; the online weights follow
    model.loadStateDict(new Map([...checkpoint.state, ...online]));
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
