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
//
// After that the budget watches the pace: these virtual machines can slow down within a run (a
// 15-minute default on an AMD EPYC machine went at 165 ms per step in its first estimate, 207 by
// its peak and 290-315 after it, and ended 90 s late). Every WATCH_MS of steps it projects the end
// from the last window's step time, and where that end passes the budget it cuts the run to the
// steps that fit the budget less its margin: the decay steepens from there, the peak stays. Sized
// from that one slow window alone, cuts overshot (two 15-minute defaults on the AMD machine, whose
// steps sped up again after their cuts, ended 79 and 53 s early), so a cut is sized at the mean of
// the window's pace and the pace since the first estimate (where the slowness lasts, the next windows
// cut the rest); and where the end would come early, the run is lengthened to the steps that fit
// at the slower of those two paces, if that adds at least MIN_LENGTHENING_MS of steps (the decay
// flattens from there). One window's pace alone swings ±15% on these machines (161–227 ms per
// step within minutes), and lengthening on it undid and redid cuts every minute. Such a run
// prints each change, and --total-steps N --peak-step P replays it only up to the first.
//
// Steps need not cost the same: the low-resolution phase's crop steps (src/low_resolution.ts) do a
// fraction of a whole-image step's work. The budget counts steps in whole-image steps (`stepCost`,
// from the model's arithmetic) and times that unit, so a window of crop steps sizes the whole-image
// steps after it; where the ratio is off on some machine, the watch corrects it after the switch.
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
/** Steps' time between two checks of the pace once the length is fixed. */
const WATCH_MS = 30_000;
/**
 * The least a run is lengthened by, in steps' time: with the margin, a dead band of about a minute
 * in which the windows' swings change nothing (10 or 15 s let simulated ±15% swings through).
 */
const MIN_LENGTHENING_MS = 30_000;

/** What a run costs besides its steps, in evaluated images. */
export interface EvaluationLoad {
  /** Images evaluated at each epoch's end (the validation split, times the TTA views). */
  perEpoch: number;
  /** Images evaluated at the run's end (the test set, times the TTA views). */
  atEnd: number;
}

/** A step's work in whole-image steps, for step `step` (0-based) of a run of `totalSteps` (undefined: not yet sized). */
export type StepCost = (step: number, totalSteps: number | undefined) => number;

/** The clock at a step: the steps done, their cost in whole-image steps, performance.now(). */
interface Clock {
  step: number;
  units: number;
  at: number;
}

export class TimeBudget {
  #clock: Clock | null = null;
  /** Whole-image steps done since the budget started counting. */
  #units = 0;
  #forwardMsPerImage = NaN;
  #firstStepMs = NaN; // the first estimate's step time: evaluations are scaled by the pace against it
  #secondAt: number | null = null; // the step of the second estimate, once the first is made
  /** The clock from the first estimate on: the run's pace over minutes, for the watch. */
  #sinceFirst: Clock | null = null;
  /** performance.now() at which the run should end (NaN until the first estimate). */
  projectedEnd = NaN;

  constructor(
    readonly seconds: number,
    readonly stepsPerEpoch: number,
    readonly evaluation: EvaluationLoad,
    readonly config: RunConfig,
    readonly now: () => number = () => performance.now(),
    readonly stepCost: StepCost = () => 1,
  ) {}

  /**
   * Called after each optimizer step `step` (the count done) of a --time run, with `flush` (waits
   * for the queued work) and `timeForward` (ms per evaluated image). Returns a line to print when
   * it fixed or changed config's totalSteps and peakStep, else null.
   */
  async afterStep(
    step: number,
    flush: () => Promise<void>,
    timeForward: () => Promise<number>,
  ): Promise<string | null> {
    this.#units += this.stepCost(step - 1, this.config.totalSteps);
    if (this.#clock === null) { // from WARM_STEPS on (or from the first step after a resume)
      if (step < WARM_STEPS) return null;
      await flush();
      this.#clock = this.#now(step);
      return null;
    }
    if (this.config.totalSteps !== undefined && this.#secondAt === null) {
      return await this.#watch(step, flush);
    }
    const first = this.#secondAt === null;
    if (first ? step < this.#clock.step + CALIBRATION_STEPS - WARM_STEPS : step < this.#secondAt!) {
      return null;
    }
    await flush();
    const from = this.#clock.step, stepMs = this.#paceSince(this.#clock);
    if (first) {
      this.#forwardMsPerImage = await timeForward();
      this.#firstStepMs = stepMs;
    }
    const totalSteps = this.#size(step, stepMs);
    this.config.totalSteps = totalSteps;
    if (first) {
      const peakStep = Math.round((totalSteps * 2) / 5);
      this.config.peakStep = peakStep;
      this.#secondAt = peakStep - step >= MIN_SECOND_WINDOW ? peakStep : null;
    } else {
      this.#secondAt = null;
    }
    this.#clock = this.#now(step);
    if (first) this.#sinceFirst = { ...this.#clock };
    const epochs = (totalSteps / this.stepsPerEpoch).toFixed(2);
    const perImageUs = (this.#forwardMsPerImage * 1000).toFixed(0);
    return `--time ${this.seconds} s: ${stepMs.toFixed(1)} ms per ${this.#unit} (steps ${from}–${step})` +
      (first ? `, ${perImageUs} µs per evaluated image` : "") +
      ` → ${totalSteps} steps (${epochs} epochs), lr peak at step ${this.config.peakStep}` +
      (this.#secondAt === null ? "" : `; measured again at step ${this.#secondAt}`);
  }

  /** Once the length is fixed: every WATCH_MS, the end projected from the last window's pace. */
  async #watch(step: number, flush: () => Promise<void>): Promise<string | null> {
    const clock = this.#clock!;
    if (this.now() - clock.at < WATCH_MS) return null;
    await flush();
    const stepMs = this.#paceSince(clock);
    this.#clock = this.#now(step);
    const planned = this.config.totalSteps!;
    this.#size(step, stepMs, planned);
    const lateMs = this.projectedEnd - this.seconds * 1000;
    const sinceMs = this.#paceSince(this.#sinceFirst!);
    if (lateMs <= 0) return this.#lengthen(clock.step, step, Math.max(stepMs, sinceMs), -lateMs);
    // Sized at the mean of the window's pace and the pace since the first estimate, where that is
    // faster: a slow window alone overshoots when the steps speed up again, and if they do not, the
    // next windows cut the rest.
    const sizingMs = Math.min(stepMs, (stepMs + sinceMs) / 2);
    this.config.totalSteps = Math.max(step + 1, this.#size(step, sizingMs));
    this.#size(step, stepMs, this.config.totalSteps);
    const epochs = (this.config.totalSteps / this.stepsPerEpoch).toFixed(2);
    return `--time ${this.seconds} s would end ${(lateMs / 1000).toFixed(0)} s late at ` +
      `${stepMs.toFixed(1)} ms per ${this.#unit} (steps ${clock.step}–${step}): cut from ${planned} to ` +
      `${this.config.totalSteps} steps (${epochs} epochs), the decay steepened from step ${step}`;
  }

  /**
   * Lengthens the run to the steps that fit at `paceMs` (the slower of the last window's pace, the
   * window from step `from`, and the pace since the first estimate), where that adds at least
   * MIN_LENGTHENING_MS of steps.
   */
  #lengthen(from: number, step: number, paceMs: number, earlyMs: number): string | null {
    const planned = this.config.totalSteps!, fitting = this.#size(step, paceMs);
    if ((fitting - planned) * paceMs < MIN_LENGTHENING_MS) {
      this.#size(step, paceMs, planned);
      return null;
    }
    this.config.totalSteps = fitting; // #size above projected the end for exactly this length
    const epochs = (fitting / this.stepsPerEpoch).toFixed(2), early = (earlyMs / 1000).toFixed(0);
    const pace = `${paceMs.toFixed(1)} ms per ${this.#unit}`;
    return `--time ${this.seconds} s would end ${early} s early (steps ${from}–${step}), ` +
      `and at ${pace} (the slower of that window and the pace since the first ` +
      `estimate) fits ${fitting - planned} more steps: lengthened from ${planned} to ${fitting} steps ` +
      `(${epochs} epochs), the decay flattened from step ${step}`;
  }

  /** Leaves `ms` (an epoch end's evaluation and save) out of the step timing. */
  exclude(ms: number) {
    if (this.#clock) this.#clock.at += ms;
    if (this.#sinceFirst) this.#sinceFirst.at += ms;
  }

  #now(step: number): Clock {
    return { step, units: this.#units, at: this.now() };
  }

  /** Milliseconds per whole-image step since `clock`. */
  #paceSince(clock: Clock): number {
    return (this.now() - clock.at) / (this.#units - clock.units);
  }

  /** What the printed paces are per: a step, or a whole-image step where steps differ. */
  get #unit(): string {
    return this.stepCost(0, undefined) === 1 ? "step" : "whole-image step";
  }

  /** Whole-image steps that steps from..to − 1 of a run of `to` steps cost. */
  #unitsUpTo(from: number, to: number): number {
    let units = 0;
    for (let s = from; s < to; s++) units += this.stepCost(s, to);
    return units;
  }

  /**
   * The run's length at `stepMs` per whole-image step: the steps done plus those that fit in what
   * is left of the budget. Sets projectedEnd for a run of `totalSteps` (default: that length).
   */
  #size(step: number, stepMs: number, totalSteps?: number): number {
    // Evaluations are forward passes: they slow down with the steps.
    const pace = Number.isFinite(this.#firstStepMs) ? stepMs / this.#firstStepMs : 1;
    const evaluatedMs = (images: number) => images * this.#forwardMsPerImage * pace;
    const budgetMs = this.seconds * 1000 * (1 - MARGIN_FRACTION);
    // Each epoch costs its steps, one validation pass and one save.
    const epochEndPerStepMs = (evaluatedMs(this.evaluation.perEpoch) + SAVE_RESERVE_MS) / this.stepsPerEpoch;
    const remainingMs = (total: number) =>
      this.#unitsUpTo(step, total) * stepMs + (total - step) * epochEndPerStepMs;
    const testMs = evaluatedMs(this.evaluation.atEnd);
    const left = budgetMs - this.now() - testMs - SAVE_RESERVE_MS;
    // The longest run whose remaining steps fit (remainingMs grows with the length): doubling, then bisection.
    let fits = step, over = step + 1;
    while (remainingMs(over) <= left) [fits, over] = [over, step + 2 * (over - step)];
    while (over - fits > 1) {
      const middle = Math.floor((fits + over) / 2);
      if (remainingMs(middle) <= left) fits = middle;
      else over = middle;
    }
    this.projectedEnd = this.now() + remainingMs(totalSteps ?? fits) + testMs;
    return fits;
  }
}
