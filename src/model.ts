// ConvMixer ("Patches Are All You Need?", Trockman & Kolter), written once against the Backend.
//
//   stem:   z = PatchEmbed_p(x);            x0 = BN(GELU(z + b))
//   block:  s = BN(GELU(DepthwiseConv_k(x) + b)) + x      spatial mixing, with a residual
//           x' = BN(GELU(PointwiseConv(s) + b))            channel mixing
//   head:   logits = Linear(AveragePool(x_depth))
//
// Every conv is followed by GELU then BatchNorm (the paper puts the activation before the norm);
// the backend fuses bias + GELU + BN (+ residual) into one unit. Parameters are keyed by timm's
// state-dict names so checkpoints load in PyTorch unchanged.
import type { Backend, BatchNormParams, OptimizerHyper, Tensor } from "./backend.ts";
import type { ConvMixerConfig, StateDict } from "./checkpoint.ts";

export type { ConvMixerConfig };

/** A conv → GELU → BN unit's names and tensors (timm: conv at `conv`, BN at `bn`). */
interface Unit {
  conv: string; // prefix of the conv's weight and bias
  bn: string; // prefix of the BatchNorm's weight, bias, running stats
  saved: Tensor; // [2, C]: batch mean and 1/std from the last training forward
}

/** Activations of one batch size: views of the full-batch buffers (eval's last batch is partial). */
interface Activations {
  batch: number;
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
}

export class ConvMixer {
  readonly params: Map<string, Tensor> = new Map(); // trainable, timm names
  readonly grads: Map<string, Tensor> = new Map();
  readonly buffers: Map<string, Tensor> = new Map(); // BN running statistics
  /** timm's `num_batches_tracked`: every BN has seen the same number of training batches. */
  numBatchesTracked = 0;
  readonly metrics: Tensor; // [3]: Σ loss, Σ correct, Σ count (see Backend.softmaxCrossEntropy)
  readonly tokens: number; // h = w = imageSize / patch
  /**
   * Whether the backward pass recomputes each depthwise conv's output instead of keeping one per
   * block: where every activation would not fit the backend's memory (ConvMixer-256/8 at batch 512
   * in a 4 GiB WebAssembly memory). The conv is cheap (k²·C per pixel against the pointwise C²)
   * and deterministic, so the gradients are bit-for-bit the same.
   */
  readonly recomputeDepthwise: boolean;
  private readonly stem: Unit;
  private readonly blocks: { depthwise: Unit; pointwise: Unit }[] = [];
  private readonly full: Activations;
  private readonly byBatch = new Map<number, Activations>();
  private readonly optimizerState = new Map<string, { m: Tensor; v: Tensor }>();
  private readonly sumSquares: Tensor;

  constructor(
    readonly backend: Backend,
    readonly config: ConvMixerConfig,
    readonly maxBatch: number,
    readonly imageSize = 32,
    recomputeDepthwise?: boolean, // default: only where the activations would not fit
  ) {
    const { hdim: C, depth, kernel: k, patch: p, classes } = config;
    if (imageSize % p !== 0) throw new Error(`image size ${imageSize} is not divisible by --patch ${p}`);
    if (k % 2 !== 1) throw new Error(`--kernel ${k} must be odd ('same' padding)`);
    this.tokens = imageSize / p;
    const param = (name: string, shape: number[]) => {
      this.params.set(name, backend.tensor(shape));
      this.grads.set(name, backend.tensor(shape));
    };
    const unit = (conv: string, bn: string, weightShape: number[]): Unit => {
      param(`${conv}.weight`, weightShape);
      param(`${conv}.bias`, [C]);
      param(`${bn}.weight`, [C]);
      param(`${bn}.bias`, [C]);
      this.buffers.set(`${bn}.running_mean`, backend.tensor([C]));
      this.buffers.set(`${bn}.running_var`, backend.tensor([C]));
      return { conv, bn, saved: backend.tensor([2, C]) };
    };
    this.stem = unit("stem.0", "stem.2", [C, 3, p, p]);
    for (let i = 0; i < depth; i++) {
      this.blocks.push({
        depthwise: unit(`blocks.${i}.0.fn.0`, `blocks.${i}.0.fn.2`, [k, k, C]),
        pointwise: unit(`blocks.${i}.1`, `blocks.${i}.3`, [C, C]),
      });
    }
    param("head.weight", [classes, C]);
    param("head.bias", [classes]);
    this.metrics = backend.tensor([3]);
    this.sumSquares = backend.tensor([1]);
    const activationBytes = 4 * maxBatch *
      (imageSize * imageSize * 3 + this.tokens ** 2 * C * (4 * depth + 4));
    this.recomputeDepthwise = recomputeDepthwise ??
      activationBytes + backend.allocatedBytes > 0.95 * (backend.memoryLimitBytes ?? Infinity);
    this.full = this.allocateActivations(maxBatch);
  }

  private allocateActivations(B: number): Activations {
    const t = (shape: number[]) => this.backend.tensor(shape);
    const { hdim: C, depth, classes } = this.config;
    const map = [B, this.tokens, this.tokens, C];
    const many = (n: number) => Array.from({ length: n }, () => t(map));
    return {
      batch: B,
      images: t([B, this.imageSize, this.imageSize, 3]),
      labels: t([B]),
      stemPre: t(map),
      blockInput: many(depth + 1),
      depthwisePre: this.recomputeDepthwise ? Array(depth).fill(t(map)) : many(depth),
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

  /** Views of the full-batch buffers for a smaller batch (allocated once per size). */
  activations(batch: number): Activations {
    if (batch === this.maxBatch) return this.full;
    if (batch < 1 || batch > this.maxBatch) throw new Error(`batch ${batch} outside 1..${this.maxBatch}`);
    let views = this.byBatch.get(batch);
    if (!views) {
      const v = (t: Tensor) => this.backend.view(t, [batch, ...t.shape.slice(1)]);
      const f = this.full;
      views = {
        batch,
        images: v(f.images),
        labels: v(f.labels),
        stemPre: v(f.stemPre),
        blockInput: f.blockInput.map(v),
        depthwisePre: f.depthwisePre.map(v),
        residualOut: f.residualOut.map(v),
        pointwisePre: f.pointwisePre.map(v),
        pooled: v(f.pooled),
        logits: v(f.logits),
        dLogits: v(f.dLogits),
        gradA: v(f.gradA),
        gradB: v(f.gradB),
        dPooled: v(f.dPooled),
      };
      this.byBatch.set(batch, views);
    }
    return views;
  }

  /** Uploads one batch: images [B, H, W, 3] normalised NHWC, labels [B]. */
  setBatch(images: Float32Array, labels: Float32Array): Activations {
    const a = this.activations(labels.length);
    this.backend.write(a.images, images);
    this.backend.write(a.labels, labels);
    return a;
  }

  // ---- forward ------------------------------------------------------------------------------

  private unitForward(u: Unit, z: Tensor, residual: Tensor | null, out: Tensor, training: boolean) {
    this.backend.biasGeluBatchNormForward(z, this.unitParams(u), u.saved, residual, out, training);
  }

  private unitParams(u: Unit): BatchNormParams {
    const p = (n: string) => this.params.get(n)!;
    const b = (n: string) => this.buffers.get(n)!;
    return {
      bias: p(`${u.conv}.bias`),
      gamma: p(`${u.bn}.weight`),
      beta: p(`${u.bn}.bias`),
      runningMean: b(`${u.bn}.running_mean`),
      runningVar: b(`${u.bn}.running_var`),
    };
  }

  /**
   * Forward pass through the logits; with `training`, BN uses batch statistics, and the loss
   * gradient (against labels smoothed by `labelSmoothing`) lands in a.dLogits. Metrics (loss,
   * correct, count) accumulate into this.metrics.
   */
  forward(a: Activations, training: boolean, labelSmoothing = 0): Tensor {
    const be = this.backend;
    const p = (n: string) => this.params.get(n)!;
    be.patchEmbedForward(a.images, p("stem.0.weight"), a.stemPre);
    this.unitForward(this.stem, a.stemPre, null, a.blockInput[0], training);
    this.blocks.forEach(({ depthwise, pointwise }, i) => {
      be.depthwiseConvForward(a.blockInput[i], p(`${depthwise.conv}.weight`), a.depthwisePre[i]);
      this.unitForward(depthwise, a.depthwisePre[i], a.blockInput[i], a.residualOut[i], training);
      be.linearForward(a.residualOut[i], p(`${pointwise.conv}.weight`), null, a.pointwisePre[i]);
      this.unitForward(pointwise, a.pointwisePre[i], null, a.blockInput[i + 1], training);
    });
    be.averagePoolForward(a.blockInput[this.blocks.length], a.pooled);
    be.linearForward(a.pooled, p("head.weight"), p("head.bias"), a.logits);
    be.softmaxCrossEntropy(a.logits, a.labels, training ? a.dLogits : null, this.metrics, labelSmoothing);
    if (training) this.numBatchesTracked++;
    return a.logits;
  }

  // ---- backward -----------------------------------------------------------------------------

  private unitBackward(u: Unit, z: Tensor, dOut: Tensor, dz: Tensor) {
    const g = (n: string) => this.grads.get(n)!;
    const grads = { bias: g(`${u.conv}.bias`), gamma: g(`${u.bn}.weight`), beta: g(`${u.bn}.bias`) };
    this.backend.biasGeluBatchNormBackward(z, this.unitParams(u), u.saved, dOut, dz, grads);
  }

  /** Backward of the last training forward: every gradient in this.grads is overwritten. */
  backward(a: Activations) {
    const be = this.backend;
    const p = (n: string) => this.params.get(n)!;
    const g = (n: string) => this.grads.get(n)!;
    be.linearBackwardWeight(a.pooled, a.dLogits, g("head.weight"), g("head.bias"));
    be.linearBackwardInput(a.dLogits, p("head.weight"), a.dPooled);
    // dx holds the gradient of the current block's output; gradB is the scratch for dz.
    const dx = a.gradA, dz = a.gradB;
    be.averagePoolBackward(a.dPooled, dx);
    for (let i = this.blocks.length - 1; i >= 0; i--) {
      const { depthwise, pointwise } = this.blocks[i];
      // x_{i+1} = BN(GELU(pointwise(s_i) + b))
      this.unitBackward(pointwise, a.pointwisePre[i], dx, dz);
      be.linearBackwardWeight(a.residualOut[i], dz, g(`${pointwise.conv}.weight`), null);
      be.linearBackwardInput(dz, p(`${pointwise.conv}.weight`), dx); // dx now holds ds_i
      // s_i = BN(GELU(depthwise(x_i) + b)) + x_i: ds_i reaches x_i directly and through the conv.
      if (this.recomputeDepthwise) {
        be.depthwiseConvForward(a.blockInput[i], p(`${depthwise.conv}.weight`), a.depthwisePre[i]);
      }
      this.unitBackward(depthwise, a.depthwisePre[i], dx, dz);
      be.depthwiseConvBackwardWeight(a.blockInput[i], dz, g(`${depthwise.conv}.weight`));
      be.depthwiseConvBackwardInput(dz, p(`${depthwise.conv}.weight`), dx); // dx += convᵀ(dz)
    }
    this.unitBackward(this.stem, a.stemPre, dx, dz);
    be.patchEmbedBackwardWeight(a.images, dz, g("stem.0.weight"));
  }

  // ---- optimizer ------------------------------------------------------------------------------

  /** One optimizer step over every parameter, clipping by the global gradient norm on the device. */
  step(hyper: OptimizerHyper) {
    const be = this.backend;
    if (hyper.clipNorm > 0) {
      be.fill(this.sumSquares, 0);
      for (const g of this.grads.values()) be.accumulateSquares(g, this.sumSquares);
    }
    for (const [name, param] of this.params) {
      be.optimizerStep(param, this.grads.get(name)!, ...this.moments(name), this.sumSquares, hyper);
    }
  }

  private moments(name: string): [Tensor, Tensor] {
    let s = this.optimizerState.get(name);
    if (!s) {
      const shape = this.params.get(name)!.shape;
      s = { m: this.backend.tensor(shape), v: this.backend.tensor(shape) };
      this.optimizerState.set(name, s);
    }
    return [s.m, s.v];
  }

  // ---- state ------------------------------------------------------------------------------------

  /**
   * PyTorch's default initialisation: conv/linear weights and biases U(±1/√fan_in), BN γ=1, β=0.
   * `stemFilters` [n, 3, p, p] (n ≤ C, e.g. patch-whitening filters) replace the first n stem filters.
   */
  initialize(seed: number, stemFilters?: Float32Array) {
    const random = mulberry32(seed);
    const { hdim: C, kernel: k, patch: p } = this.config;
    const fanIn = (name: string) =>
      name.startsWith("stem.0") ? 3 * p * p : name.includes(".fn.0") ? k * k : C; // pointwise and head: C
    for (const [name, t] of this.params) {
      const isBatchNorm = /^(stem\.2|blocks\.\d+\.(0\.fn\.2|3))\./.test(name);
      const data = new Float32Array(t.size);
      if (isBatchNorm) data.fill(name.endsWith(".weight") ? 1 : 0);
      else {
        const bound = 1 / Math.sqrt(fanIn(name));
        for (let i = 0; i < data.length; i++) data[i] = (2 * random() - 1) * bound;
        if (name === "stem.0.weight" && stemFilters) data.set(stemFilters.subarray(0, data.length));
      }
      this.backend.write(t, data);
    }
    for (const [name, t] of this.buffers) this.backend.fill(t, name.endsWith("running_var") ? 1 : 0);
    this.numBatchesTracked = 0;
  }

  /** The state dict in our layouts (see src/checkpoint.ts), read from the device. */
  async stateDict(): Promise<StateDict> {
    const state: StateDict = new Map();
    const tensors = [...this.params, ...this.buffers];
    const values = await this.backend.readMany(tensors.map(([, t]) => t));
    tensors.forEach(([name, t], i) => state.set(name, { shape: [...t.shape], data: values[i] }));
    for (const bn of this.batchNormPrefixes()) {
      state.set(`${bn}.num_batches_tracked`, { shape: [], data: Float32Array.of(this.numBatchesTracked) });
    }
    return state;
  }

  loadStateDict(state: StateDict) {
    for (const [name, t] of [...this.params, ...this.buffers]) {
      const entry = state.get(name);
      if (!entry) throw new Error(`state dict lacks ${name}`);
      if (entry.data.length !== t.size) {
        throw new Error(`${name}: ${entry.data.length} values, expected shape [${t.shape}]`);
      }
      this.backend.write(t, entry.data);
    }
    this.numBatchesTracked = state.get("stem.2.num_batches_tracked")?.data[0] ?? 0;
  }

  /** AdamW moments (m, v) per parameter, for resuming. */
  async optimizerStateDict(): Promise<StateDict> {
    const state: StateDict = new Map();
    const names = [...this.params.keys()];
    const values = await this.backend.readMany(names.flatMap((name) => this.moments(name)));
    names.forEach((name, i) => {
      const [m, v] = this.moments(name);
      state.set(`exp_avg.${name}`, { shape: [...m.shape], data: values[2 * i] });
      state.set(`exp_avg_sq.${name}`, { shape: [...v.shape], data: values[2 * i + 1] });
    });
    return state;
  }

  loadOptimizerStateDict(state: StateDict) {
    for (const name of this.params.keys()) {
      const [m, v] = this.moments(name);
      for (const [key, t] of [[`exp_avg.${name}`, m], [`exp_avg_sq.${name}`, v]] as const) {
        const entry = state.get(key);
        if (!entry || entry.data.length !== t.size) {
          throw new Error(`optimizer state lacks ${key} of [${t.shape}]`);
        }
        this.backend.write(t, entry.data);
      }
    }
  }

  private batchNormPrefixes(): string[] {
    return [this.stem.bn, ...this.blocks.flatMap((b) => [b.depthwise.bn, b.pointwise.bn])];
  }
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
  const tokens = (imageSize / p) ** 2;
  const macs = tokens * C * 3 * p * p + depth * tokens * C * (k * k + C) + C * classes;
  return { forward: 2 * macs, training: 6 * macs };
}
