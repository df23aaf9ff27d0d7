// Test-set evaluation, shared by `task train` (every epoch) and `task eval`.
import type { ConvMixer } from "./model.ts";
import type { BatchLoader } from "./data/loader.ts";
import { Progress } from "./progress.ts";

export interface EvalResult {
  loss: number;
  accuracy: number;
  count: number;
  /** Per record in file order, when asked for: [count × classes] logits. */
  logits?: Float32Array;
}

export async function evaluate(
  model: ConvMixer,
  loader: BatchLoader,
  records: number,
  options: { keepLogits?: boolean; progress?: boolean } = {},
): Promise<EvalResult> {
  const { backend, config } = model;
  backend.fill(model.metrics, 0);
  const logits = options.keepLogits ? new Float32Array(records * config.classes) : undefined;
  const progress = options.progress ? new Progress("eval", records, "img") : null;
  let seen = 0;
  for await (const batch of loader.epoch(0)) {
    const a = model.setBatch(batch.images, batch.labels);
    const out = model.forward(a, false);
    if (logits) logits.set(await backend.read(out), seen * config.classes);
    seen += batch.count;
    progress?.update(seen);
  }
  const [lossSum, correct, count] = await backend.read(model.metrics);
  progress?.done();
  return { loss: lossSum / count, accuracy: correct / count, count, logits };
}
