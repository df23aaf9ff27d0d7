// One invocation of `task train` over a prepared run (src/train.ts sets it up): the epochs, one
// optimizer step at a time, the metrics read back while the next steps run, the evaluations and
// metrics line at each epoch's end, the --time calibration, and the saves (src/run_dir.ts), at
// every epoch end, every few minutes and on a stop signal.
import type { Recipe } from "./recipe.ts";
import type { ConvMixer } from "./model.ts";
import { epochKnots, learningRate, stepKnots } from "./schedule.ts";
import { CALIBRATION_STEPS, type StepCost, TimeBudget } from "./time_budget.ts";
import { cropStepCost, lowResolutionSteps, randomCrops } from "./low_resolution.ts";
import {
  loadOptimizerStateDict,
  loadStateDict,
  optimizerStateDict,
  type StateDict,
  stateDict,
} from "./checkpoint.ts";
import type { Position, RunDir, Saved } from "./run_dir.ts";
import type { RunConfig } from "./run_config.ts";
import { StoppedBySignal, StopSignals } from "./stop_signals.ts";
import type { CifarSplit } from "./data/cifar.ts";
import type { BatchLoader } from "./data/loader.ts";
import { evaluate, ttaViews } from "./evaluate.ts";
import { formatDuration, Progress } from "./progress.ts";
import type { WeightAverage } from "./weight_average.ts";
import { renderRunReport } from "./report/report.ts";
import type { StepLog } from "./step_log.ts";

const SAVE_INTERVAL_MS = 5 * 60 * 1000;
const METRIC_READS_PER_EPOCH = 20;
export interface Loaders {
  train: BatchLoader;
  val: BatchLoader | null;
  test: BatchLoader;
}

/**
 * One invocation of `task train` over a prepared model: the epochs, their evaluations and saves,
 * the calibration of a --time run, and stopping on a signal or at --steps.
 */
export class TrainingSession {
  readonly #perEpoch: number;
  readonly #signals = new StopSignals();
  #epochSums: Float32Array = new Float32Array(3); // the last epoch's (loss, correct, count) sums
  #lastSave = Date.now();
  readonly #budget: TimeBudget | null;
  #cropBuffer: Float32Array | null = null;

  constructor(
    readonly model: ConvMixer,
    readonly average: WeightAverage | null,
    readonly loaders: Loaders,
    readonly config: RunConfig,
    readonly recipe: Recipe,
    readonly folder: RunDir,
    readonly stopAtStep: number | undefined,
    readonly reporting: { machine: Record<string, string>; testSplit: CifarSplit; stepLog: StepLog | null },
  ) {
    this.#perEpoch = loaders.train.batchesPerEpoch;
    this.position = folder.saved?.position ?? { step: 0, epoch: 0, batchInEpoch: 0 };
    const views = ttaViews(recipe.tta).length;
    const evaluation = { perEpoch: (loaders.val?.records ?? 0) * views, atEnd: loaders.test.records * views };
    this.#budget = recipe.time && config.totalSteps === undefined
      ? new TimeBudget(recipe.time, this.#perEpoch, evaluation, config, undefined, this.#stepCost())
      : null;
  }

  position: Position;

  async run(): Promise<number> {
    let testAccuracy = NaN;
    try {
      while (!this.#finished()) {
        const line = await this.#trainEpoch();
        if (this.#signals.received) break; // saved already; an evaluation would delay the exit
        const endStarted = performance.now();
        testAccuracy = await this.#endEpoch(line, this.#finished());
        this.#budget?.exclude(performance.now() - endStarted);
      }
    } finally {
      this.#signals.dispose();
    }
    const signal = this.#signals.received;
    if (signal) {
      throw new StoppedBySignal(
        signal,
        `stopped by ${signal} at step ${this.position.step}, saved; continue with --resume ${this.folder.path}`,
      );
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
    const { totalSteps, peakStep, byEpochs } = this.config, recipe = this.recipe;
    if (byEpochs) {
      return learningRate(recipe.schedule, recipe.lr, epochKnots(recipe.epochs, this.#perEpoch), step);
    }
    if (totalSteps === undefined || step < CALIBRATION_STEPS) return 0;
    return learningRate(recipe.schedule, recipe.lr, stepKnots(totalSteps, peakStep), step);
  }

  /** Trains the rest of the current epoch (or up to the run's end); returns its metrics line. */
  async #trainEpoch(): Promise<Record<string, number | boolean | undefined>> {
    const { epoch, batchInEpoch: first } = this.position;
    const started = performance.now();
    this.#startEpochMetrics(first);
    const total = this.config.totalSteps;
    const epochs = total === undefined ? "?" : Math.ceil(total / this.#perEpoch);
    const batchImages = this.recipe.batch;
    const progress = new EpochProgress(
      new Progress(`epoch ${epoch + 1}/${epochs}`, this.#perEpoch * batchImages, "img"),
      this.model,
      first * batchImages,
      () => this.#budget?.projectedEnd ?? NaN,
    );
    const readEvery = Math.max(1, Math.floor(this.#perEpoch / METRIC_READS_PER_EPOCH));
    let lr = 0, images = 0;
    for await (const batch of this.loaders.train.epoch(epoch, first)) {
      const a = this.#upload(batch);
      lr = this.#trainStep(a, batch.index);
      images += batch.count;
      if (this.#budget) await this.#measure(this.#budget, batch);
      if ((batch.index + 1) % readEvery === 0) await progress.request(images, lr, this.position);
      const atEnd = this.#finished(), stop = this.#signals.received !== null;
      if (atEnd || stop || Date.now() - this.#lastSave > SAVE_INTERVAL_MS) {
        const sums = await progress.sums(this.position);
        if (!atEnd) await this.#save(sums);
      }
      if (atEnd || stop) break;
    }
    this.#epochSums = await progress.sums(this.position);
    const [lossSum, correct, count] = this.#epochSums;
    const seconds = (performance.now() - started) / 1000;
    progress.done();
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
   * Uploads a training batch: in the low-resolution phase, as random crops (src/low_resolution.ts),
   * cut into one buffer of the largest batch (setBatch copies them out before the next batch).
   */
  #upload({ images, labels }: { images: Float32Array; labels: Float32Array }) {
    const step = this.position.step, { cropSize, batch } = this.recipe;
    if (!this.#onCrops(step, this.config.totalSteps)) return this.model.setBatch(images, labels);
    this.#cropBuffer ??= new Float32Array(batch * cropSize * cropSize * 3);
    const crops = randomCrops(images, labels.length, cropSize, this.config.seed, step, this.#cropBuffer);
    return this.model.setBatch(crops, labels);
  }

  /** Whether step `step` of a run of `totalSteps` trains on crops (not yet sized: a --time run's first steps, all crops). */
  #onCrops(step: number, totalSteps: number | undefined): boolean {
    return step < lowResolutionSteps(this.recipe, totalSteps ?? Infinity, this.config.peakStep);
  }

  /** The budget's cost of a step: a crop step's share of a whole-image step in the low-resolution phase. */
  #stepCost(): StepCost {
    const cropCost = cropStepCost(this.recipe);
    return (step, totalSteps) => this.#onCrops(step, totalSteps) ? cropCost : 1;
  }

  /** The epoch's metric sums start at zero, or where the save being resumed left them. */
  #startEpochMetrics(first: number) {
    const { backend, metrics } = this.model, saved = this.folder.saved;
    const resuming = saved !== null && this.position.step === saved.position.step && first > 0;
    if (resuming) backend.write(metrics, saved.epochMetrics);
    else backend.fill(metrics, 0);
    this.reporting.stepLog?.startEpoch();
  }

  /** One optimizer step on the uploaded batch `a` (batch `index` of the epoch); returns its lr. */
  #trainStep(a: ReturnType<ConvMixer["activations"]>, index: number): number {
    const { model, recipe } = this, step = this.position.step, lr = this.#lr(step);
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
    this.position = { step: step + 1, epoch: this.position.epoch, batchInEpoch: index + 1 };
    this.reporting.stepLog?.afterStep(step + 1, lr, () => model.backend.read(model.metrics));
    return lr;
  }

  /** A --time run's sizing and watch of its pace (src/time_budget.ts), after each step on `batch`. */
  async #measure(budget: TimeBudget, batch: { images: Float32Array; labels: Float32Array }) {
    const { backend } = this.model;
    const timeForward = async () => {
      const started = performance.now();
      const metrics = await backend.read(this.model.metrics);
      // Evaluation sees whole images, also while the steps train on crops.
      const a = this.model.setBatch(batch.images, batch.labels);
      await backend.read(this.model.forward(a, false));
      backend.write(this.model.metrics, metrics); // the timing forward leaves the epoch's metrics alone
      return (performance.now() - started) / a.labels.size;
    };
    const line = await budget.afterStep(this.position.step, () => backend.flush(), timeForward);
    if (line === null) return;
    await this.folder.writeConfig(this.config);
    console.error(`\n${line}`);
  }

  /** Evaluation (validation every epoch; the test set at the end), the metrics line, the save. */
  async #endEpoch(line: Record<string, number | boolean | undefined>, last: boolean): Promise<number> {
    await this.reporting.stepLog?.flush();
    const tta = this.recipe.tta;
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
    await this.folder.appendMetrics(line);
    const { machine, testSplit } = this.reporting;
    await this.folder.writeReport(
      await renderRunReport(this.folder.path, {
        machine,
        test: testLogits && { split: testSplit, logits: testLogits },
      }),
    );
    console.error(epochSummary(line));
    if (this.position.batchInEpoch === this.#perEpoch) {
      this.position = { ...this.position, epoch: this.position.epoch + 1, batchInEpoch: 0 };
    }
    // A finished epoch's sums are in its line; a partial one (the run's or --steps' end) keeps them.
    const sums = this.position.batchInEpoch === 0 ? new Float32Array(3) : this.#epochSums;
    await this.#save(sums);
    return testAccuracy;
  }

  /** One atomic save (src/run_dir.ts) of the model, the optimizer and the epoch's metric sums so far. */
  async #save(epochMetrics: Float32Array) {
    const { state, moments } = await trainingState(this.model, this.average);
    await this.folder.save(state, moments, this.position, this.#perEpoch, epochMetrics);
    this.#lastSave = Date.now();
  }
}

/**
 * An epoch's progress line from the metric sums on the device, read back without waiting: a read
 * requested at one step resolves later and is shown at the next request (or at sums()).
 */
class EpochProgress {
  #pending: { read: Promise<Float32Array>; images: number; lr: number; at: Position } | null = null;
  #last: Float32Array = new Float32Array(3);

  constructor(
    readonly progress: Progress,
    readonly model: ConvMixer,
    readonly imagesBefore: number, // images of the epoch trained before this command (a resume)
    readonly projectedEnd: () => number,
  ) {}

  /** Shows the pending read, if any, and starts a new one. */
  async request(images: number, lr: number, at: Position) {
    await this.#show();
    this.#pending = { read: this.model.backend.read(this.model.metrics), images, lr, at };
  }

  /** The sums after all queued work (loss, correct, count), once the pending read is shown. */
  async sums(at: Position): Promise<Float32Array> {
    await this.#show();
    const sums = await this.model.backend.read(this.model.metrics);
    checkFinite(sums[0] / sums[2], at);
    this.#last = sums;
    return sums;
  }

  /** The final line, from the last sums(). */
  done() {
    const [loss, correct, count] = this.#last;
    this.progress.done(`loss ${(loss / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}%`);
  }

  async #show() {
    if (!this.#pending) return;
    const { read, images, lr, at } = this.#pending;
    this.#pending = null;
    const [loss, correct, count] = await read;
    checkFinite(loss / count, at);
    const end = this.projectedEnd();
    const ends = Number.isFinite(end)
      ? ` · run ends in ${formatDuration(Math.max(0, end - performance.now()) / 1000)}`
      : "";
    this.progress.update(
      this.imagesBefore + images,
      `loss ${(loss / count).toFixed(3)} acc ${(100 * correct / count).toFixed(1)}% lr ${
        lr.toPrecision(3)
      }${ends}`,
    );
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

function checkFinite(loss: number, at: Position) {
  if (!Number.isFinite(loss)) {
    throw new Error(
      `non-finite training loss (${loss}) near step ${at.step} (epoch ${at.epoch + 1}); ` +
        `the last checkpoint is intact — lower --lr or set --clip-norm, then --resume`,
    );
  }
}

/** Prefix of the online weights among the optimizer state of a run with a weight average. */
const ONLINE = "online.";

/**
 * What a save holds: the model (timm names; the weight average when there is one) and the optimizer
 * state (AdamW moments, and under a weight average the online weights it trains).
 */
async function trainingState(
  model: ConvMixer,
  average: WeightAverage | null,
): Promise<{ state: StateDict; moments: StateDict }> {
  const moments = await optimizerStateDict(model);
  const online = await stateDict(model);
  if (!average) return { state: online, moments };
  for (const [name, entry] of online) moments.set(`${ONLINE}${name}`, entry);
  return { state: await average.withAverage(() => stateDict(model)), moments };
}

export function restoreTrainingState(model: ConvMixer, average: WeightAverage | null, saved: Saved) {
  const optimizer: StateDict = new Map(), online: StateDict = new Map();
  for (const [name, entry] of saved.optimizer) {
    if (name.startsWith(ONLINE)) online.set(name.slice(ONLINE.length), entry);
    else optimizer.set(name, entry);
  }
  loadStateDict(model, saved.state);
  if (average) {
    average.reset(); // the checkpoint holds the average; the online weights follow
    loadStateDict(model, new Map([...saved.state, ...online]));
  }
  loadOptimizerStateDict(model, optimizer);
}
