// A moving average of the weights (Polyak averaging, as timm's ModelEmaV2): after every optimizer
// step, average = d·average + (1 − d)·weights over the parameters and the BatchNorm running
// statistics, with the usual warm-up d_t = min(d, (1 + t)/(10 + t)) so the random initialisation
// is forgotten quickly in a short run. Evaluation and the saved checkpoint use the average; the
// optimizer keeps training the online weights. All of it stays on the backend, one op per packed
// vector (the parameters', the running statistics').
import type { Tensor } from "./backend.ts";
import type { ConvMixer } from "./model.ts";

export class WeightAverage {
  /** The averaged tensors, and a scratch copy of the online ones while the average is swapped in. */
  readonly #tensors: Tensor[];
  readonly #average: Tensor[];
  readonly #online: Tensor[];
  #swapped = false;

  constructor(readonly model: ConvMixer, readonly decay: number) {
    this.#tensors = [model.parameterVector, model.runningStatisticsVector];
    const copy = () => this.#tensors.map((t) => model.backend.tensor(t.shape));
    this.#average = copy();
    this.#online = copy();
    this.reset();
  }

  /** The average restarts from the current weights. */
  reset() {
    this.#tensors.forEach((t, i) => this.model.backend.movingAverage(this.#average[i], t, 0));
  }

  /** Folds in the weights after optimizer step `step` (1-based). */
  update(step: number) {
    const decay = Math.min(this.decay, (1 + step) / (10 + step));
    this.#tensors.forEach((t, i) => this.model.backend.movingAverage(this.#average[i], t, decay));
  }

  /** Runs `use` with the averaged weights in the model, then puts the online weights back. */
  async withAverage<T>(use: () => Promise<T>): Promise<T> {
    if (this.#swapped) throw new Error("WeightAverage.withAverage: already swapped in");
    this.#copy(this.#online, "in");
    this.#copy(this.#average, "out");
    this.#swapped = true;
    try {
      return await use();
    } finally {
      this.#copy(this.#online, "out");
      this.#swapped = false;
    }
  }

  /** Copies between the model's tensors and `store`: "in" stores the model's, "out" loads them. */
  #copy(store: Tensor[], direction: "in" | "out") {
    const { backend } = this.model;
    this.#tensors.forEach((t, i) => {
      if (direction === "in") backend.movingAverage(store[i], t, 0);
      else backend.movingAverage(t, store[i], 0);
    });
  }
}
