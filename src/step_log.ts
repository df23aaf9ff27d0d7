// `--log-every N`: RUNDIR/steps.jsonl gets one JSON line per N optimizer steps: the mean loss and the
// accuracy over the steps since the previous line, the learning rate of the last of them, and the
// images/s over that stretch. The metrics are read without waiting (the backend's read resolves
// later); lines are appended in step order.
interface Mark {
  loss: number;
  correct: number;
  count: number;
  ms: number;
}

export class StepLog {
  #last: Mark = { loss: 0, correct: 0, count: 0, ms: performance.now() };
  #writes: Promise<void> = Promise.resolve();

  constructor(readonly path: string, readonly every: number) {}

  /** The epoch's metrics were just reset: the next line counts from here. */
  startEpoch(): void {
    const ms = performance.now();
    this.#writes = this.#writes.then(() => void (this.#last = { loss: 0, correct: 0, count: 0, ms }));
  }

  /** After optimizer step `step`: when it is due, reads the epoch's metrics and appends a line. */
  afterStep(step: number, lr: number, readMetrics: () => Promise<Float32Array>): void {
    if (step % this.every !== 0) return;
    const ms = performance.now();
    const metrics = readMetrics();
    this.#writes = this.#writes.then(async () => {
      const [loss, correct, count] = await metrics;
      const from = this.#last;
      this.#last = { loss, correct, count, ms };
      const images = count - from.count;
      const line = {
        step,
        loss: (loss - from.loss) / images,
        accuracy: (correct - from.correct) / images,
        lr,
        images_per_s: (images / (ms - from.ms)) * 1000,
      };
      await Deno.writeTextFile(this.path, JSON.stringify(line) + "\n", { append: true });
    });
  }

  /** Resolves when every line so far is written (rejects if a write failed). */
  flush(): Promise<void> {
    return this.#writes;
  }
}
