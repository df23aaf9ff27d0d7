// The float64 reference with every op's inputs and results perturbed by a random relative error of
// at most `unit` (multiplied by 1 + δ, δ uniform in [−unit, unit]; the inputs only for that op):
// the rounding a backend of that precision applies when it reads and stores them, which also shows
// an op's own cancellation (AdamW's p·(1 − lr·wd) − step). Run a few times with different
// seeds beside the exact reference, it estimates element by element how far rounding can move each
// value of a whole model (stochastic arithmetic, as CESTAC: Vignes, 1993), where first-order
// worst-case bounds (tests/bounds.ts) compound through BatchNorm and the convs into uselessness.
import type { Backend, OptimizerHyper, Tensor } from "../src/backend.ts";
import { optimizerStep } from "./reference.ts";
import { ReferenceBackend } from "./reference_backend.ts";
import { seededRandom } from "./reference.ts";

/** The ops of the Backend interface: every method that computes (not memory management). */
const OPS = [
  "patchEmbedForward",
  "patchEmbedBackwardWeight",
  "depthwiseConvForward",
  "depthwiseConvBackwardInput",
  "depthwiseConvBackwardWeight",
  "linearForward",
  "linearBackwardInput",
  "linearBackwardWeight",
  "biasGeluBatchNormForward",
  "biasGeluBatchNormBackward",
  "averagePoolForward",
  "averagePoolBackward",
  "softmaxCrossEntropy",
  "accumulateSquares",
  "optimizerStep",
  "movingAverage",
] as const;

const isTensor = (arg: unknown): arg is Tensor => arg instanceof Object && "data" in arg;

export class PerturbedBackend extends ReferenceBackend {
  readonly #random: () => number;

  constructor(readonly unit: number, seed: number) {
    super();
    const random = this.#random = seededRandom(seed);
    for (const op of OPS) {
      const exact = (this[op] as (...args: unknown[]) => void).bind(this);
      this[op] = ((...args: unknown[]) => {
        // Tensors passed directly or in a record of tensors; the labels are class indices, not rounded.
        const rounded = args.flatMap((arg, i) =>
          isTensor(arg)
            ? (op === "softmaxCrossEntropy" && i === 1 ? [] : [arg])
            : arg instanceof Object
            ? Object.values(arg).filter(isTensor)
            : []
        );
        const data = rounded.map((t) => this.values(t));
        const original = data.map((d) => d.slice());
        for (const d of data) d.forEach((x, i) => (d[i] = x * (1 + unit * (2 * random() - 1))));
        const inputs = data.map((d) => d.slice());
        if (op === "optimizerStep") this.#roundedHyperStep(args as Parameters<Backend["optimizerStep"]>);
        else exact(...args);
        data.forEach((d, k) => {
          for (let i = 0; i < d.length; i++) {
            d[i] = d[i] === inputs[k][i] ? original[k][i] : d[i] * (1 + unit * (2 * random() - 1));
          }
        });
      }) as never;
    }
  }

  /**
   * AdamW with β1, β2 rounded (relative δ) in the moment updates but not in the bias corrections
   * 1 − β^t, as a kernel that takes β as float32 and the corrections from the host's float64 does:
   * the step is rescaled by c1(β')/c1(β) · √(c2(β)/c2(β')) (eps neglected), c the corrections.
   */
  #roundedHyperStep([param, grad, m, v, sumSquares, hyper]: Parameters<Backend["optimizerStep"]>): void {
    const round = (x: number) => x * (1 + this.unit * (2 * this.#random() - 1));
    const rounded: OptimizerHyper = { ...hyper, beta1: round(hyper.beta1), beta2: round(hyper.beta2) };
    const [p, g, mt, vt, s] = [param, grad, m, v, sumSquares].map((t) => ({
      shape: [...t.shape],
      data: this.values(t),
    }));
    const before = p.data.slice();
    optimizerStep(p, g, mt, vt, s, rounded);
    if (hyper.kind !== "adamw") return;
    const correction = (beta: number) => 1 - beta ** hyper.step;
    const rescale = correction(rounded.beta1) / correction(hyper.beta1) *
      Math.sqrt(correction(hyper.beta2) / correction(rounded.beta2));
    for (let i = 0; i < p.data.length; i++) {
      const decayed = before[i] * (1 - hyper.lr * hyper.weightDecay);
      p.data[i] = decayed - (decayed - p.data[i]) * rescale;
    }
  }
}
