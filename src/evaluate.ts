// Evaluation of a split (validation or test), shared by `task train` and `task eval`.
//
// Without test-time augmentation the loss and accuracy accumulate on the device (the model's
// metrics tensor) and nothing but that tensor is read back. With `tta: "flip"` each batch also
// runs mirrored and the two logits are averaged (a flip is a label-preserving view the model was
// trained on), so the logits come back per batch and the metrics are computed here, in float64.
import type { ConvMixer } from "./model.ts";
import type { BatchLoader } from "./data/loader.ts";
import { Progress } from "./progress.ts";

export type TestTimeAugmentation = "none" | "flip";

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
  let seen = 0;
  for await (const batch of loader.epoch(0)) {
    const out = model.forward(model.setBatch(batch.images, batch.labels), false);
    if (logits) {
      const plain = await backend.read(out);
      if (tta === "flip") {
        const mirrored = await backend.read(
          model.forward(model.setBatch(mirror(batch.images), batch.labels), false),
        );
        for (let i = 0; i < plain.length; i++) plain[i] = 0.5 * (plain[i] + mirrored[i]);
      }
      logits.set(plain, seen * config.classes);
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
