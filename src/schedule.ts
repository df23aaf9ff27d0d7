// The official ConvMixer CIFAR-10 learning-rate schedule, evaluated per iteration: a piecewise-linear
// one-cycle, 0 → lr_max at 2/5 of the epochs → lr_max/20 at 4/5 → 0 at the end. Like the official
// script, iteration i of an epoch uses the time epoch + (i + 1)/iterationsPerEpoch.
export type ScheduleKind = "onecycle" | "constant";

export function learningRate(
  kind: ScheduleKind,
  lrMax: number,
  epochs: number,
  epoch: number,
  iteration: number,
  iterationsPerEpoch: number,
): number {
  if (kind === "constant") return lrMax;
  const t = epoch + (iteration + 1) / iterationsPerEpoch;
  return interpolate(t, [0, (epochs * 2) / 5, (epochs * 4) / 5, epochs], [0, lrMax, lrMax / 20, 0]);
}

/** numpy.interp: linear between knots, clamped to the end values outside them. */
function interpolate(t: number, xs: number[], ys: number[]): number {
  if (t <= xs[0]) return ys[0];
  for (let i = 1; i < xs.length; i++) {
    if (t <= xs[i]) return ys[i - 1] + ((t - xs[i - 1]) / (xs[i] - xs[i - 1])) * (ys[i] - ys[i - 1]);
  }
  return ys[ys.length - 1];
}
