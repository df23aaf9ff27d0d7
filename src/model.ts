// ConvMixer ("Patches Are All You Need?", Trockman & Kolter), written once against the Backend.
//
//   stem:   z = PatchEmbed_p(x);            x0 = BN(GELU(z + b))
//   block:  s = BN(GELU(DepthwiseConv_k(x) + b)) + x      spatial mixing, with a residual
//           x' = BN(GELU(PointwiseConv(s) + b))            channel mixing
//   head:   logits = Linear(AveragePool(x_depth))
//
// Every conv is followed by GELU then BatchNorm (the paper puts the activation before the norm);
// the backend fuses bias + GELU + BN (+ residual) into one unit. As in llm.c, the state is typed
// structures allocated once: parameters (and, of the same structure, gradients and AdamW's
// moments), BatchNorm statistics and activations. As llm.c's one params_memory, the parameters,
// gradients, moments and running statistics each lie in one packed storage (Backend.pack), so
// AdamW, the gradient norm and the weight average are one op over the whole vector, not one per
// tensor. timm's names for them live in src/checkpoint.ts.
import type { Backend, BatchNormParams, OptimizerHyper, Tensor } from "./backend.ts";

export interface ConvMixerConfig {
  hdim: number;
  depth: number;
  kernel: number;
  patch: number;
  classes: number;
}

/** One value per conv → GELU → BatchNorm unit: the stem's, then each block's two. */
export interface ByUnit<U> {
  stem: U;
  blocks: { depthwise: U; pointwise: U }[];
}

/** A unit's trained tensors: its conv's weight and bias, BatchNorm's scale γ and shift β. */
export interface UnitParameters<T = Tensor> {
  weight: T;
  bias: T;
  gamma: T;
  beta: T;
}

/** llm.c's ParameterTensors: every trained tensor (gradients and moments have this structure too). */
export interface ParameterTensors<T = Tensor> extends ByUnit<UnitParameters<T>> {
  head: { weight: T; bias: T };
}

/** A unit's BatchNorm state: running statistics (checkpointed) and the last batch's (backward). */
export interface UnitStatistics<T = Tensor> {
  runningMean: T;
  runningVar: T;
  /** [2, C]: batch mean and 1/std from the last training forward. */
  saved: T;
}

type UnitKind = "stem" | "depthwise" | "pointwise";

/** The units of `m` in order: the stem, then each block's depthwise and pointwise unit. */
export function unitsOf<U>(m: ByUnit<U>): U[] {
  return [m.stem, ...m.blocks.flatMap((b) => [b.depthwise, b.pointwise])];
}

/** Every trained tensor in one fixed order: unit by unit (weight, bias, γ, β), then the head's. */
export function parameterList<T>(p: ParameterTensors<T>): T[] {
  const units = unitsOf(p).flatMap((u) => [u.weight, u.bias, u.gamma, u.beta]);
  return [...units, p.head.weight, p.head.bias];
}

/** How the model trades memory for time; each choice defaults to what fits the backend's memory. */
export interface ActivationMemory {
  recomputeDepthwise?: boolean;
  keepGeluOutput?: boolean;
}

/**
 * Activations of one batch size and image size: views of the full-size buffers (eval's last batch
 * is partial; the low-resolution phase's crops are smaller images, src/low_resolution.ts).
 */
interface Activations {
  images: Tensor; // [B, H, W, 3]
  labels: Tensor; // [B]
  stemPre: Tensor; // z of the stem
  blockInput: Tensor[]; // x_i, i = 0..depth (x_depth feeds the pool)
  depthwisePre: Tensor[]; // z of each depthwise unit (one shared buffer when recomputed)
  residualOut: Tensor[]; // s_i
  pointwisePre: Tensor[]; // z of each pointwise unit
  pooled: Tensor; // [B, C]
  logits: Tensor; // [B, classes]
  dLogits: Tensor;
  gradA: Tensor; // two [B, h, w, C] gradient buffers used in turn by the backward pass
  gradB: Tensor;
  dPooled: Tensor;
  geluOut?: Tensor[]; // u of each unit in unitsOf order, where kept (see keptGeluOutputs)
}

/** ParameterTensors over one pack: `vector` holds every parameter (and zero padding). */
export interface PackedParameters {
  tensors: ParameterTensors;
  vector: Tensor;
}

export class ConvMixer {
  readonly params: ParameterTensors;
  readonly grads: ParameterTensors;
  /** All parameters as one vector (padding zero), for the ops that treat them alike. */
  readonly parameterVector: Tensor;
  private readonly gradVector: Tensor;
  readonly statistics: ByUnit<UnitStatistics>;
  /** Every unit's running mean and variance as one vector (the weight average's other half). */
  readonly runningStatisticsVector: Tensor;
  /** timm's `num_batches_tracked`: every BN has seen the same number of training batches. */
  numBatchesTracked = 0;
  readonly metrics: Tensor; // [3]: Σ loss, Σ correct, Σ count (see Backend.softmaxCrossEntropy)
  readonly tokens: number; // h = w = ⌊imageSize / patch⌋
  /**
   * Whether the backward pass recomputes each depthwise conv's output instead of keeping one per
   * block: where every activation would not fit the backend's memory (ConvMixer-256/8 at batch 512
   * in a 4 GiB WebAssembly memory). The conv is cheap (k²·C per pixel against the pointwise C²)
   * and deterministic, so the gradients are bit-for-bit the same.
   */
  readonly recomputeDepthwise: boolean;
  /**
   * Whether the training forward keeps each unit's GELU output u for the backward, which then
   * skips GELU's costly Φ (a backend's choice, Backend.reusesGeluOutput): one more activation per
   * unit, allocated on the first training batch (evaluation never holds them) and only where they
   * fit beside the others without recomputing the depthwise convs.
   */
  readonly keepsGeluOutput: boolean;
  /** Each unit's tensors as the fused BatchNorm op takes them (records built once). */
  private readonly batchNorm: ByUnit<BatchNormParams>;
  private readonly full: Activations;
  private readonly views = new Map<string, Activations>();
  /** AdamW's first and second moments, allocated on first use (eval never needs them). */
  #moments: { m: PackedParameters; v: PackedParameters } | null = null;
  private readonly sumSquares: Tensor;

  constructor(
    readonly backend: Backend,
    readonly config: ConvMixerConfig,
    readonly maxBatch: number,
    readonly imageSize = 32,
    memory: ActivationMemory = {},
  ) {
    const { hdim: C, depth, kernel: k, patch: p } = config;
    if (p > imageSize) throw new Error(`--patch ${p} is larger than the ${imageSize}-pixel images`);
    if (k % 2 !== 1) throw new Error(`--kernel ${k} must be odd ('same' padding)`);
    this.tokens = Math.floor(imageSize / p);
    ({ tensors: this.params, vector: this.parameterVector } = this.allocateParameters());
    ({ tensors: this.grads, vector: this.gradVector } = this.allocateParameters());
    // Running mean and variance of every unit in one pack, in runningStatistics()'s order.
    const running = backend.pack(Array(2 * (2 * depth + 1)).fill([C]));
    this.runningStatisticsVector = running.whole;
    this.statistics = mapUnits(byUnit(depth, () => null), (_, u) => ({
      runningMean: running.parts[2 * u],
      runningVar: running.parts[2 * u + 1],
      saved: backend.tensor([2, C]),
    }));
    const statistics = unitsOf(this.statistics);
    this.batchNorm = mapUnits(this.params, ({ bias, gamma, beta }, i) => {
      const { runningMean, runningVar } = statistics[i];
      return { bias, gamma, beta, runningMean, runningVar };
    });
    this.metrics = backend.tensor([3]);
    this.sumSquares = backend.tensor([1]);
    const activationBytes = 4 * maxBatch *
      (imageSize * imageSize * 3 + this.tokens ** 2 * C * (4 * depth + 4));
    const limit = 0.95 * (backend.memoryLimitBytes ?? Infinity);
    this.recomputeDepthwise = memory.recomputeDepthwise ?? activationBytes + backend.allocatedBytes > limit;
    const geluBytes = 4 * maxBatch * this.tokens ** 2 * C * (2 * depth + 1);
    this.keepsGeluOutput = backend.reusesGeluOutput === true && (memory.keepGeluOutput ??
      (!this.recomputeDepthwise && activationBytes + geluBytes + backend.allocatedBytes <= limit));
    this.full = this.allocateActivations(maxBatch);
  }

  /** A conv's weight shape and fan-in (PyTorch's init bound is 1/√fan_in). */
  private convShape(kind: UnitKind): { shape: number[]; fanIn: number } {
    const { hdim: C, kernel: k, patch: p } = this.config;
    if (kind === "stem") return { shape: [C, 3, p, p], fanIn: 3 * p * p };
    if (kind === "depthwise") return { shape: [k, k, C], fanIn: k * k };
    return { shape: [C, C], fanIn: C };
  }

  /** One pack of every parameter's shape, in parameterList's order, and the structure over it. */
  private allocateParameters(): PackedParameters {
    const { hdim: C, depth, classes } = this.config;
    const unitShapes = (kind: UnitKind) => [this.convShape(kind).shape, [C], [C], [C]];
    const shapes = [...unitsOf(byUnit(depth, unitShapes)).flat(), [classes, C], [classes]];
    const { whole, parts } = this.backend.pack(shapes);
    const next = () => parts.shift()!;
    const units = byUnit(depth, () => ({ weight: next(), bias: next(), gamma: next(), beta: next() }));
    return { tensors: { ...units, head: { weight: next(), bias: next() } }, vector: whole };
  }

  /** The spatial maps the backward pass reads back are "activation"s (f16 under WebGPU's --precision f16). */
  private allocateActivations(B: number): Activations {
    const t = (shape: number[]) => this.backend.tensor(shape);
    const act = (shape: number[]) => this.backend.tensor(shape, "activation");
    const { hdim: C, depth, classes } = this.config;
    const map = [B, this.tokens, this.tokens, C];
    const many = (n: number) => Array.from({ length: n }, () => act(map));
    return {
      images: act([B, this.imageSize, this.imageSize, 3]),
      labels: t([B]),
      stemPre: act(map),
      blockInput: many(depth + 1),
      depthwisePre: this.recomputeDepthwise ? Array(depth).fill(act(map)) : many(depth),
      residualOut: many(depth),
      pointwisePre: many(depth),
      pooled: t([B, C]),
      logits: t([B, classes]),
      dLogits: t([B, classes]),
      gradA: t(map),
      gradB: t(map),
      dPooled: t([B, C]),
    };
  }

  /** Each unit's tensor for its GELU output (unitsOf order); empty where they are not kept. */
  private keptGeluOutputs(a: Activations): Tensor[] {
    if (!this.keepsGeluOutput) return [];
    const full = this.full;
    full.geluOut ??= Array.from(
      { length: 2 * this.config.depth + 1 },
      () => this.backend.tensor(full.stemPre.shape, "activation"),
    );
    a.geluOut ??= full.geluOut.map((t) => this.backend.view(t, a.stemPre.shape));
    return a.geluOut;
  }

  /**
   * Views of the full-size buffers for a smaller batch or smaller images (allocated once per pair):
   * the spatial maps of `imageSize`-pixel images are ⌊imageSize / p⌋ tokens a side.
   */
  activations(batch: number, imageSize = this.imageSize): Activations {
    if (batch === this.maxBatch && imageSize === this.imageSize) return this.full;
    if (batch < 1 || batch > this.maxBatch) throw new Error(`batch ${batch} outside 1..${this.maxBatch}`);
    const { patch: p } = this.config;
    if (!Number.isInteger(imageSize) || imageSize < p || imageSize > this.imageSize) {
      throw new Error(`images of ${imageSize} pixels outside ${p}..${this.imageSize}`);
    }
    const key = `${batch}×${imageSize}`;
    let views = this.views.get(key);
    if (!views) {
      const tokens = Math.floor(imageSize / p);
      const perImage = (t: Tensor) => t.shape.length === 4 ? [tokens, tokens, t.shape[3]] : t.shape.slice(1);
      const view = (t: Tensor) => this.backend.view(t, [batch, ...perImage(t)]);
      const entries = Object.entries(this.full).map(([name, x]) => [
        name,
        name === "images"
          ? this.backend.view(x, [batch, imageSize, imageSize, 3])
          : Array.isArray(x)
          ? x.map(view)
          : view(x),
      ]);
      views = Object.fromEntries(entries) as Activations;
      this.views.set(key, views);
    }
    return views;
  }

  /** Uploads one batch: images [B, S, S, 3] normalised NHWC (S ≤ the model's image size), labels [B]. */
  setBatch(images: Float32Array, labels: Float32Array): Activations {
    const a = this.activations(labels.length, Math.sqrt(images.length / (3 * labels.length)));
    this.backend.write(a.images, images);
    this.backend.write(a.labels, labels);
    return a;
  }

  // ---- forward ------------------------------------------------------------------------------

  /**
   * Forward pass through the logits; with `training`, BN uses batch statistics, and the loss
   * gradient (against labels smoothed by `labelSmoothing`) lands in a.dLogits. Metrics (loss,
   * correct, count) accumulate into this.metrics.
   */
  forward(a: Activations, training: boolean, labelSmoothing = 0): Tensor {
    const be = this.backend, { stem, blocks, head } = this.params, bn = this.batchNorm;
    const saved = this.statistics, kept = training ? this.keptGeluOutputs(a) : [];
    be.patchEmbedForward(a.images, stem.weight, a.stemPre);
    be.biasGeluBatchNormForward(
      a.stemPre,
      bn.stem,
      saved.stem.saved,
      null,
      a.blockInput[0],
      training,
      kept[0],
    );
    blocks.forEach(({ depthwise, pointwise }, i) => {
      const [x, z, s, unit, stats] = [
        a.blockInput[i],
        a.depthwisePre[i],
        a.residualOut[i],
        bn.blocks[i],
        saved.blocks[i],
      ];
      be.depthwiseConvForward(x, depthwise.weight, z);
      be.biasGeluBatchNormForward(z, unit.depthwise, stats.depthwise.saved, x, s, training, kept[1 + 2 * i]);
      be.linearForward(s, pointwise.weight, null, a.pointwisePre[i]);
      be.biasGeluBatchNormForward(
        a.pointwisePre[i],
        unit.pointwise,
        stats.pointwise.saved,
        null,
        a.blockInput[i + 1],
        training,
        kept[2 + 2 * i],
      );
    });
    be.averagePoolForward(a.blockInput[blocks.length], a.pooled);
    be.linearForward(a.pooled, head.weight, head.bias, a.logits);
    be.softmaxCrossEntropy(a.logits, a.labels, training ? a.dLogits : null, this.metrics, labelSmoothing);
    if (training) this.numBatchesTracked++;
    return a.logits;
  }

  // ---- backward -----------------------------------------------------------------------------

  /** Backward of the last training forward: every gradient in this.grads is overwritten. */
  backward(a: Activations) {
    const be = this.backend, { blocks, head } = this.params, g = this.grads, bn = this.batchNorm;
    const saved = this.statistics, kept = this.keptGeluOutputs(a);
    be.linearBackwardWeight(a.pooled, a.dLogits, g.head.weight, g.head.bias);
    be.linearBackwardInput(a.dLogits, head.weight, a.dPooled);
    // dx holds the gradient of the current block's output; gradB is the scratch for dz.
    const dx = a.gradA, dz = a.gradB;
    be.averagePoolBackward(a.dPooled, dx);
    for (let i = blocks.length - 1; i >= 0; i--) {
      const { depthwise, pointwise } = blocks[i],
        gb = g.blocks[i],
        unit = bn.blocks[i],
        stats = saved.blocks[i];
      // x_{i+1} = BN(GELU(pointwise(s_i) + b))
      be.biasGeluBatchNormBackward(
        a.pointwisePre[i],
        unit.pointwise,
        stats.pointwise.saved,
        dx,
        dz,
        gb.pointwise,
        kept[2 + 2 * i],
      );
      be.linearBackwardWeight(a.residualOut[i], dz, gb.pointwise.weight, null);
      be.linearBackwardInput(dz, pointwise.weight, dx); // dx now holds ds_i
      // s_i = BN(GELU(depthwise(x_i) + b)) + x_i: ds_i reaches x_i directly and through the conv.
      if (this.recomputeDepthwise) {
        be.depthwiseConvForward(a.blockInput[i], depthwise.weight, a.depthwisePre[i]);
      }
      be.biasGeluBatchNormBackward(
        a.depthwisePre[i],
        unit.depthwise,
        stats.depthwise.saved,
        dx,
        dz,
        gb.depthwise,
        kept[1 + 2 * i],
      );
      be.depthwiseConvBackwardWeight(a.blockInput[i], dz, gb.depthwise.weight);
      be.depthwiseConvBackwardInput(dz, depthwise.weight, dx); // dx += convᵀ(dz)
    }
    be.biasGeluBatchNormBackward(a.stemPre, bn.stem, saved.stem.saved, dx, dz, g.stem, kept[0]);
    be.patchEmbedBackwardWeight(a.images, dz, g.stem.weight);
  }

  // ---- optimizer ------------------------------------------------------------------------------

  /**
   * One optimizer step over every parameter, clipping by the global gradient norm on the device:
   * one pass over the packed vectors (AdamW is elementwise; the padding stays zero).
   */
  step(hyper: OptimizerHyper) {
    const be = this.backend;
    if (hyper.clipNorm > 0) {
      be.fill(this.sumSquares, 0);
      be.accumulateSquares(this.gradVector, this.sumSquares);
    }
    const { m, v } = this.#packedMoments();
    be.optimizerStep(this.parameterVector, this.gradVector, m.vector, v.vector, this.sumSquares, hyper);
  }

  /** AdamW's moments m and v, of the parameters' structure. */
  get moments(): { m: ParameterTensors; v: ParameterTensors } {
    const { m, v } = this.#packedMoments();
    return { m: m.tensors, v: v.tensors };
  }

  #packedMoments(): { m: PackedParameters; v: PackedParameters } {
    return this.#moments ??= { m: this.allocateParameters(), v: this.allocateParameters() };
  }

  // ---- state ------------------------------------------------------------------------------------

  /** Every unit's running mean and variance, unit by unit. */
  runningStatistics(): Tensor[] {
    return unitsOf(this.statistics).flatMap((s) => [s.runningMean, s.runningVar]);
  }

  /**
   * PyTorch's default initialisation: conv/linear weights and biases U(±1/√fan_in), BN γ=1, β=0.
   * `stemFilters` [n, 3, p, p] (n ≤ C, e.g. patch-whitening filters) replace the first n stem filters.
   */
  initialize(seed: number, stemFilters?: Float32Array) {
    const random = mulberry32(seed), be = this.backend;
    const uniform = (t: Tensor, fanIn: number) => {
      const bound = 1 / Math.sqrt(fanIn);
      const data = Float32Array.from({ length: t.size }, () => (2 * random() - 1) * bound);
      if (t === this.params.stem.weight && stemFilters) data.set(stemFilters.subarray(0, data.length));
      be.write(t, data);
    };
    const unit = (u: UnitParameters, kind: UnitKind) => {
      const { fanIn } = this.convShape(kind);
      uniform(u.weight, fanIn);
      uniform(u.bias, fanIn);
      be.fill(u.gamma, 1);
      be.fill(u.beta, 0);
    };
    unit(this.params.stem, "stem");
    for (const b of this.params.blocks) unit(b.depthwise, "depthwise"), unit(b.pointwise, "pointwise");
    uniform(this.params.head.weight, this.config.hdim);
    uniform(this.params.head.bias, this.config.hdim);
    for (const s of unitsOf(this.statistics)) be.fill(s.runningMean, 0), be.fill(s.runningVar, 1);
    this.numBatchesTracked = 0;
  }
}

/** f of every unit of `m`, with the unit's index in unitsOf order. */
function mapUnits<U, V>(m: ByUnit<U>, f: (u: U, index: number) => V): ByUnit<V> {
  return {
    stem: f(m.stem, 0),
    blocks: m.blocks.map((b, i) => ({
      depthwise: f(b.depthwise, 1 + 2 * i),
      pointwise: f(b.pointwise, 2 + 2 * i),
    })),
  };
}

/** `make(kind)` for every unit of a ConvMixer of `depth` blocks. */
function byUnit<U>(depth: number, make: (kind: UnitKind) => U): ByUnit<U> {
  const stem = make("stem");
  return {
    stem,
    blocks: Array.from(
      { length: depth },
      () => ({ depthwise: make("depthwise"), pointwise: make("pointwise") }),
    ),
  };
}

/** A small seeded PRNG (Mulberry32) for reproducible initialisation. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Multiply-accumulates of one image's forward pass, ×2 for FLOPs; backward costs about twice that. */
export function convMixerFlops(
  config: ConvMixerConfig,
  imageSize = 32,
): { forward: number; training: number } {
  const { hdim: C, depth, kernel: k, patch: p, classes } = config;
  const tokens = Math.floor(imageSize / p) ** 2;
  const macs = tokens * C * 3 * p * p + depth * tokens * C * (k * k + C) + C * classes;
  return { forward: 2 * macs, training: 6 * macs };
}
