// Sizing a --time run: how many optimizer steps fit the budget, measured on the run itself.
//
// Two estimates. The first, after CALIBRATION_STEPS steps at lr 0, fixes the one-cycle's peak
// (2/5 of the steps it predicts) and a provisional length. The second, at the peak, measures the
// steps since the first (minutes of them, where the first had ~30 s of the run's noisiest phase,
// loader and JIT warming up: on the AMD machine it measured 710 ms per step for a run that then
// went at ~590) and fixes the length; the epoch ends' evaluations and saves in between are
// excluded from that window, being counted on their own. The steps before the second estimate are all in the warm-up,
// whose slope depends on the peak alone, so `--total-steps N --peak-step P` replays the run
// exactly: the decay's knots at 4/5 of N and N are only reached after the second estimate.
import type { RunConfig } from "./run_config.ts";

/**
 * A run sized in steps trains its first CALIBRATION_STEPS steps at lr 0 (they still fill AdamW's
 * moments and the BatchNorm statistics); a --time run times steps WARM_STEPS.. of them. The
 * window is long because these machines' speed wanders: 4-step windows of one run measured
 * 188–301 images/s, and 8 steps (the first choice) came out 5% faster than the run's average.
 */
export const CALIBRATION_STEPS = 40;
const WARM_STEPS = 8;
/** The second estimate needs at least this many steps after the first, or it is skipped. */
const MIN_SECOND_WINDOW = 40;
/** Time a --time run keeps in reserve: for the epoch ends' saves, and a margin for the rest. */
const SAVE_RESERVE_MS = 1000;
const MARGIN_FRACTION = 0.03;

/** What a run costs besides its steps, in evaluated images. */
export interface EvaluationLoad {
  /** Images evaluated at each epoch's end (the validation split, times the TTA views). */
  perEpoch: number;
  /** Images evaluated at the run's end (the test set, times the TTA views). */
  atEnd: number;
}

export class TimeBudget {
  #clock: { step: number; at: number } | null = null;
  #forwardMsPerImage = NaN;
  #secondAt: number | null = null; // the step of the second estimate, once the first is made
  /** performance.now() at which the run should end (NaN until the first estimate). */
  projectedEnd = NaN;

  constructor(
    readonly seconds: number,
    readonly stepsPerEpoch: number,
    readonly evaluation: EvaluationLoad,
    readonly config: RunConfig,
  ) {}

  /** Whether the run's length is still to be measured (a resumed run keeps what config.json has). */
  get measuring(): boolean {
    return this.config.totalSteps === undefined || this.#secondAt !== null;
  }

  /**
   * Called after each optimizer step `step` (the count done) while measuring, with `flush`
   * (waits for the queued work) and `timeForward` (ms per evaluated image). Returns a line to
   * print when it fixed or changed config's totalSteps and peakStep, else null.
   */
  async afterStep(
    step: number,
    flush: () => Promise<void>,
    timeForward: () => Promise<number>,
  ): Promise<string | null> {
    if (this.#clock === null) { // from WARM_STEPS on (or from the first step after a resume)
      if (step < WARM_STEPS) return null;
      await flush();
      this.#clock = { step, at: performance.now() };
      return null;
    }
    const first = this.#secondAt === null;
    if (first ? step < this.#clock.step + CALIBRATION_STEPS - WARM_STEPS : step < this.#secondAt!) {
      return null;
    }
    await flush();
    const from = this.#clock.step, stepMs = (performance.now() - this.#clock.at) / (step - from);
    if (first) this.#forwardMsPerImage = await timeForward();
    const totalSteps = this.#size(step, stepMs);
    this.config.totalSteps = totalSteps;
    if (first) {
      const peakStep = Math.round((totalSteps * 2) / 5);
      this.config.peakStep = peakStep;
      this.#secondAt = peakStep - step >= MIN_SECOND_WINDOW ? peakStep : null;
      this.#clock = { step, at: performance.now() };
    } else {
      this.#secondAt = null;
    }
    const epochs = (totalSteps / this.stepsPerEpoch).toFixed(2);
    const perImageUs = (this.#forwardMsPerImage * 1000).toFixed(0);
    return `--time ${this.seconds} s: ${stepMs.toFixed(1)} ms per step (steps ${from}–${step})` +
      (first ? `, ${perImageUs} µs per evaluated image` : "") +
      ` → ${totalSteps} steps (${epochs} epochs), lr peak at step ${this.config.peakStep}` +
      (this.#secondAt === null ? "" : `; measured again at step ${this.#secondAt}`);
  }

  /** Leaves `ms` (an epoch end's evaluation and save) out of the step timing. */
  exclude(ms: number) {
    if (this.#clock) this.#clock.at += ms;
  }

  /** The run's length: the steps done plus those that fit in what is left of the budget. */
  #size(step: number, stepMs: number): number {
    const evaluatedMs = (images: number) => images * this.#forwardMsPerImage;
    const budgetMs = this.seconds * 1000 * (1 - MARGIN_FRACTION);
    // Each epoch costs its steps, one validation pass and one save.
    const perStepMs = stepMs + (evaluatedMs(this.evaluation.perEpoch) + SAVE_RESERVE_MS) / this.stepsPerEpoch;
    const testMs = evaluatedMs(this.evaluation.atEnd);
    const left = budgetMs - performance.now() - testMs - SAVE_RESERVE_MS;
    const totalSteps = step + Math.max(0, Math.floor(left / perStepMs));
    this.projectedEnd = performance.now() + (totalSteps - step) * perStepMs + testMs;
    return totalSteps;
  }
}
