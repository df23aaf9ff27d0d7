// Evaluation of a split (validation or test), shared by `task train` and `task eval`.
//
// Without test-time augmentation the loss and accuracy accumulate on the device (the model's
// metrics tensor) and nothing but that tensor is read back. With test-time augmentation each batch
// also runs as other label-preserving views (ttaViews) and their logits are averaged, so the logits
// come back per batch and the metrics are computed here, in float64.
import type { ConvMixer } from "./model.ts";
import type { BatchLoader } from "./data/loader.ts";
import { Progress } from "./progress.ts";

export type TestTimeAugmentation = "none" | "flip" | "flip-translate";

/** One view of a batch of images [B, 32, 32, 3] and the weight of its logits in the mean. */
export interface TtaView {
  view: (images: Float32Array) => Float32Array;
  weight: number;
}

/**
 * The views of a test-time augmentation. "flip": the image and its mirror, half each. "flip-translate"
 * (airbench's): those two at a quarter each, and both shifted by (+1, +1) and by (−1, −1) pixels
 * (reflect padding, as F.pad(mode="reflect") then a crop) at an eighth each: with 4×4 patches a
 * one-pixel shift is a different cut of the image into patches.
 */
export function ttaViews(tta: TestTimeAugmentation): TtaView[] {
  const identity = (images: Float32Array) => images;
  if (tta === "none") return [{ view: identity, weight: 1 }];
  const flips = [{ view: identity, weight: 0.5 }, { view: mirror, weight: 0.5 }];
  if (tta === "flip") return flips;
  const shifts = [1, -1].flatMap((d) =>
    flips.map(({ view }) => ({
      view: (images: Float32Array) => shiftReflect(view(images), d, d),
      weight: 1 / 8,
    }))
  );
  return [...flips.map(({ view }) => ({ view, weight: 1 / 4 })), ...shifts];
}

export interface EvalResult {
  loss: number;
  accuracy: number;
  count: number;
  /** Per record in file order, when asked for: [count × classes] logits (averaged under TTA). */
  logits?: Float32Array;
}

export interface EvalOptions {
  keepLogits?: boolean;
  progress?: boolean;
  tta?: TestTimeAugmentation;
}

export async function evaluate(
  model: ConvMixer,
  loader: BatchLoader,
  records: number,
  options: EvalOptions = {},
): Promise<EvalResult> {
  const { backend, config } = model;
  const tta = options.tta ?? "none";
  backend.fill(model.metrics, 0);
  const logits = options.keepLogits || tta !== "none"
    ? new Float32Array(records * config.classes)
    : undefined;
  const labels = new Uint8Array(records);
  const progress = options.progress ? new Progress("eval", records, "img") : null;
  const views = ttaViews(tta);
  let seen = 0;
  for await (const batch of loader.epoch(0)) {
    if (!logits) model.forward(model.setBatch(batch.images, batch.labels), false);
    else {
      const mean = new Float64Array(batch.count * config.classes);
      for (const { view, weight } of views) {
        const out = await backend.read(
          model.forward(model.setBatch(view(batch.images), batch.labels), false),
        );
        for (let i = 0; i < mean.length; i++) mean[i] += weight * out[i];
      }
      logits.set(mean, seen * config.classes);
      labels.set(batch.labels, seen);
    }
    seen += batch.count;
    progress?.update(seen);
  }
  progress?.done();
  if (tta === "none") {
    const [lossSum, correct, count] = await backend.read(model.metrics);
    return { loss: lossSum / count, accuracy: correct / count, count, logits };
  }
  return { ...crossEntropyMetrics(logits!, labels, config.classes), logits };
}

/** Images [B, H, W, 3] (NHWC, square) mirrored left to right: RandomHorizontalFlip's view. */
export function mirror(images: Float32Array, side = 32): Float32Array {
  const out = new Float32Array(images.length);
  const row = side * 3;
  for (let r = 0; r < images.length / row; r++) {
    for (let x = 0; x < side; x++) {
      const from = r * row + x * 3, to = r * row + (side - 1 - x) * 3;
      out[to] = images[from];
      out[to + 1] = images[from + 1];
      out[to + 2] = images[from + 2];
    }
  }
  return out;
}

/**
 * Images [B, H, W, 3] (NHWC, square) shifted by (dx, dy) pixels, |dx|, |dy| < side, the pixels
 * shifted in mirrored about the edge (reflect padding, the edge pixel not repeated).
 */
export function shiftReflect(images: Float32Array, dx: number, dy: number, side = 32): Float32Array {
  const reflect = (i: number) => (i < 0 ? -i : i >= side ? 2 * (side - 1) - i : i);
  const out = new Float32Array(images.length);
  for (let b = 0; b < images.length / (side * side * 3); b++) {
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const from = ((b * side + reflect(y - dy)) * side + reflect(x - dx)) * 3;
        const to = ((b * side + y) * side + x) * 3;
        out[to] = images[from];
        out[to + 1] = images[from + 1];
        out[to + 2] = images[from + 2];
      }
    }
  }
  return out;
}

/** Mean cross-entropy and accuracy (first maximum wins, as on the device) of logits [N, K]. */
export function crossEntropyMetrics(
  logits: Float32Array,
  labels: Uint8Array,
  classes: number,
): { loss: number; accuracy: number; count: number } {
  let lossSum = 0, correct = 0;
  for (let i = 0; i < labels.length; i++) {
    const row = logits.subarray(i * classes, (i + 1) * classes);
    let argmax = 0;
    for (let k = 1; k < classes; k++) if (row[k] > row[argmax]) argmax = k;
    let sumExp = 0;
    for (let k = 0; k < classes; k++) sumExp += Math.exp(row[k] - row[argmax]);
    lossSum += row[argmax] + Math.log(sumExp) - row[labels[i]];
    if (argmax === labels[i]) correct++;
  }
  return { loss: lossSum / labels.length, accuracy: correct / labels.length, count: labels.length };
}
