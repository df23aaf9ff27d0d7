// The learning-rate schedule, evaluated per optimizer step. "onecycle" is the official ConvMixer
// CIFAR-10 schedule: piecewise linear, 0 → lr_max at 2/5 of the run → lr_max/20 at 4/5 → 0 at the
// end, where the official script puts the breakpoints at whole epochs (epochs*2//5, epochs*4//5)
// and step i of an epoch uses the time epoch + (i + 1)/stepsPerEpoch. A run sized by a time
// budget has no whole number of epochs, so its breakpoints fall at 2/5 and 4/5 of its steps (the
// peak where the budget's first estimate put it: src/time_budget.ts).
export type ScheduleKind = "onecycle" | "constant";

/** The one-cycle's breakpoints in optimizer steps: [0, peak, decay end, total]. */
export type Knots = readonly [number, number, number, number];

/** Breakpoints of a run of whole epochs, as the official script's integer division puts them. */
export function epochKnots(epochs: number, stepsPerEpoch: number): Knots {
  const at = (epoch: number) => epoch * stepsPerEpoch;
  return [0, at(Math.floor((epochs * 2) / 5)), at(Math.floor((epochs * 4) / 5)), at(epochs)];
}

/**
 * Breakpoints of a run of `totalSteps` steps (a time budget), peaking at 2/5 of them or at
 * `peakStep`; then the decay keeps its shape over the steps after the peak (lr_max/20 at 2/3 of
 * them, as 4/5 is of the way from 2/5 to the end).
 */
export function stepKnots(totalSteps: number, peakStep?: number): Knots {
  if (peakStep === undefined) return [0, (totalSteps * 2) / 5, (totalSteps * 4) / 5, totalSteps];
  return [0, peakStep, peakStep + ((totalSteps - peakStep) * 2) / 3, totalSteps];
}

/** The learning rate of optimizer step `step` (0-based). */
export function learningRate(kind: ScheduleKind, lrMax: number, knots: Knots, step: number): number {
  if (kind === "constant") return lrMax;
  return interpolate(step + 1, knots, [0, lrMax, lrMax / 20, 0]);
}

/** numpy.interp: linear between knots, clamped to the end values outside them. */
function interpolate(t: number, xs: readonly number[], ys: readonly number[]): number {
  if (t <= xs[0]) return ys[0];
  for (let i = 1; i < xs.length; i++) {
    if (t <= xs[i]) return ys[i - 1] + ((t - xs[i - 1]) / (xs[i] - xs[i - 1])) * (ys[i] - ys[i - 1]);
  }
  return ys[ys.length - 1];
}
