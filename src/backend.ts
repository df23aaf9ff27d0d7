// The one interface both backends implement (WASM SIMD on the CPU, WGSL on WebGPU). The model
// (src/model.ts) and the trainer are written once against it.
//
// Conventions
// - Every tensor is float32, allocated once by the backend and reused for the whole run.
//   Class labels travel as float32 holding small integers (exact).
// - Activations are channels-last (NHWC): an activation [B, H, W, C] is also the matrix
//   [B·H·W, C], so the pointwise conv is a plain GEMM and depthwise/BatchNorm vectorise over C.
// - Parameter layouts are PyTorch's except the depthwise weight, kept as [k, k, C] so a tap is
//   one vector over channels (checkpoints convert on save/load, src/checkpoint.ts).
// - Ops are enqueued in call order. On WebGPU nothing is read back until `read`; the WASM
//   backend runs each op before returning.
// - "overwrite" outputs are fully written; "accumulate" outputs are added to (dx += ...).
// - Inputs and outputs of one call never alias unless stated.

export interface Tensor {
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly size: number;
}

/** The optimizers both backends implement (the --optimizer choices). */
export const OPTIMIZER_KINDS = ["adamw", "sgd", "nesterov"] as const;
export type OptimizerKind = typeof OPTIMIZER_KINDS[number];

export interface OptimizerHyper {
  kind: OptimizerKind;
  lr: number;
  weightDecay: number;
  /** AdamW's first-moment decay; Nesterov SGD's momentum. */
  beta1: number;
  beta2: number;
  eps: number;
  /** 1-based step count, for AdamW's bias correction. */
  step: number;
  /** Clip gradients to this global L2 norm (0 = no clipping). */
  clipNorm: number;
}

/**
 * One conv → GELU → BatchNorm unit's per-channel tensors, each [C]: the conv's bias, BatchNorm's
 * scale and shift (trained), and its running statistics (updated by training forwards). A record,
 * not positional arguments: five tensors of one shape would swap silently.
 */
export type BatchNormParams<T = Tensor> = {
  bias: T;
  gamma: T;
  beta: T;
  runningMean: T;
  runningVar: T;
};

/** What the backward pass reads of a unit (a whole BatchNormParams also fits). */
export type BatchNormWeights<T = Tensor> = Pick<BatchNormParams<T>, "bias" | "gamma">;

/** The gradients of a unit's trained tensors, each [C]. */
export type BatchNormGrads<T = Tensor> = Pick<BatchNormParams<T>, "bias" | "gamma" | "beta">;

/**
 * What a tensor holds, declared when it is allocated. "activation": a forward activation the
 * backward pass reads back, which a backend may store in reduced precision (WebGPU's
 * --precision f16, halving its traffic); "state" (the default): parameters, gradients, moments,
 * statistics and everything else, always float32.
 */
export type TensorRole = "state" | "activation";

/** Tensors packed in one storage (Backend.pack). */
export interface Packed {
  whole: Tensor;
  parts: Tensor[];
}

export interface Backend {
  readonly name: string;
  /** One line for logs: the device and how it is used. */
  readonly description: string;
  /** Bytes of memory the backend holds for tensors and scratch (the bench's memory column). */
  readonly allocatedBytes: number;
  /** The most bytes of tensors the backend can hold at all, where that is a hard limit. */
  readonly memoryLimitBytes?: number;
  /**
   * Whether biasGeluBatchNormBackward gets faster from the training forward's GELU output (its
   * `geluOut`): the model then keeps one more activation per unit for it, where memory allows.
   */
  readonly reusesGeluOutput?: boolean;

  // ---- memory -------------------------------------------------------------------------------
  /** A zero-filled tensor; its role decides how it is stored (see TensorRole). */
  tensor(shape: readonly number[], role?: TensorRole): Tensor;
  /** A tensor that shares `t`'s storage: the first prod(shape) elements (partial batches). */
  view(t: Tensor, shape: readonly number[]): Tensor;
  /**
   * State tensors of these shapes in one storage, each part aligned as the backend's ops need, and
   * `whole`, one vector over all of them: the elementwise ops and sums that treat every parameter
   * alike (AdamW, the gradient norm, the weight average) then run once, not once per tensor. The
   * padding between parts is zero-filled and stays zero under those ops (each maps zeros to zero).
   */
  pack(shapes: readonly (readonly number[])[]): Packed;
  /** Copies host data into t (data.length == t.size). */
  write(t: Tensor, data: Float32Array): void;
  /** Copies t to the host after all queued work. */
  read(t: Tensor): Promise<Float32Array>;
  /** read for many tensors at once (a checkpoint): on WebGPU one copy each into one staging map. */
  readMany(tensors: readonly Tensor[]): Promise<Float32Array[]>;
  /** Sets every element of t to value. */
  fill(t: Tensor, value: number): void;
  /** Resolves when all queued work has finished. */
  flush(): Promise<void>;
  dispose(): void;

  // ---- stem: patch embedding, a conv with kernel p and stride p (no bias here) ---------------
  /** images [B, H, W, 3], weight [C, 3, p, p], out [B, ⌊H/p⌋, ⌊W/p⌋, C] (overwrite), as torch's Conv2d. */
  patchEmbedForward(images: Tensor, weight: Tensor, out: Tensor): void;
  /** dWeight [C, 3, p, p] (overwrite) from images and dOut [B, ⌊H/p⌋, ⌊W/p⌋, C]. */
  patchEmbedBackwardWeight(images: Tensor, dOut: Tensor, dWeight: Tensor): void;

  // ---- depthwise conv k×k, stride 1, 'same' zero padding (k odd, pad (k-1)/2), no bias -------
  /** x [B, H, W, C], weight [k, k, C], out [B, H, W, C] (overwrite). */
  depthwiseConvForward(x: Tensor, weight: Tensor, out: Tensor): void;
  /** dx [B, H, W, C] (accumulate: dx += convᵀ(dOut)); the residual's gradient is already in dx. */
  depthwiseConvBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void;
  /** dWeight [k, k, C] (overwrite) = Σ over B·H·W of x-shifted · dOut. */
  depthwiseConvBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor): void;

  // ---- linear: the pointwise conv (bias null, applied later) and the head ---------------------
  /** out [M, N] = x [M, K] · weightᵀ (weight [N, K]) + bias [N] (bias may be null). Overwrite. */
  linearForward(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor): void;
  /** dx [M, K] = dOut [M, N] · weight [N, K] (overwrite). */
  linearBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void;
  /** dWeight [N, K] = dOutᵀ · x; dBias [N] = Σ rows of dOut (both overwrite; dBias may be null). */
  linearBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null): void;

  // ---- the unit after every conv: bias, exact GELU, BatchNorm2d (+ the block's residual) ----
  /**
   * u = GELU(z + bias) (exact, erf);  out = gamma·(u − mean)/√(var + eps) + beta (+ residual), with
   * eps = 1e-5 and momentum m = 0.1 (BATCHNORM_EPS, BATCHNORM_MOMENTUM in src/kernel_constants.ts).
   * z, out, residual: [B, H, W, C] seen as [N, C], N = B·H·W; every tensor of `unit`: [C].
   * training: mean/var are the batch's (biased var), saved [2, C] gets (mean, 1/√(var+eps)), and
   *   runningMean = (1 − m)·runningMean + m·mean, runningVar = (1 − m)·runningVar + m·var·N/(N−1).
   * eval: mean/var are the running statistics; saved and running* are not written.
   * residual may be null; it may not alias out.
   * geluOut: null, or [N, C] that a training forward may fill with u for the backward, which is
   * then given the same tensor (where reusesGeluOutput; other backends ignore it).
   */
  biasGeluBatchNormForward(
    z: Tensor,
    unit: BatchNormParams,
    saved: Tensor,
    residual: Tensor | null,
    out: Tensor,
    training: boolean,
    geluOut?: Tensor | null,
  ): void;
  /**
   * Backward of the training-mode forward (the residual's gradient is dOut itself, handled by the
   * caller). dz [N, C] (overwrite; may alias dOut); every tensor of `grads`: [C] (overwrite).
   * geluOut: that forward's, or null.
   */
  biasGeluBatchNormBackward(
    z: Tensor,
    unit: BatchNormWeights,
    saved: Tensor,
    dOut: Tensor,
    dz: Tensor,
    grads: BatchNormGrads,
    geluOut?: Tensor | null,
  ): void;

  // ---- head -----------------------------------------------------------------------------------
  /** x [B, H, W, C] → out [B, C], the mean over H·W (overwrite). */
  averagePoolForward(x: Tensor, out: Tensor): void;
  /** dx [B, H, W, C] = dOut [B, C] / (H·W), broadcast (overwrite). */
  averagePoolBackward(dOut: Tensor, dx: Tensor): void;
  /**
   * Softmax cross-entropy, mean over the batch. logits [B, K], labels [B] (class index as f32),
   * against the target q = (1 − ε)·onehot + ε/K, ε = labelSmoothing (torch's cross_entropy with
   * label_smoothing; 0 is the plain loss): per-sample loss = logsumexp(z) − Σ q·z.
   * dLogits [B, K] = (softmax − q)/B (overwrite; null in eval).
   * metrics [3] accumulates: += Σ per-sample loss, += number correct (argmax == label, first max
   * wins), += B. Nothing is read back.
   */
  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
    dLogits: Tensor | null,
    metrics: Tensor,
    labelSmoothing: number,
  ): void;

  // ---- optimizer --------------------------------------------------------------------------------
  /** sumSquares [1] += Σ g² (gradient-norm clipping: call for every gradient, then update). */
  accumulateSquares(g: Tensor, sumSquares: Tensor): void;
  /**
   * One step for one parameter. g is scaled by min(1, clipNorm/(√sumSquares + 1e-6)) first when
   * clipNorm > 0 (torch.nn.utils.clip_grad_norm_). Then
   *  adamw (torch.optim.AdamW): p −= lr·wd·p; m = β1·m + (1−β1)g; v = β2·v + (1−β2)g²;
   *         p −= lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps)
   *  sgd (torch.optim.SGD, no momentum): p −= lr·(g + wd·p)   (m, v unused)
   *  nesterov (torch.optim.SGD(momentum=β1, nesterov=True)): d = g + wd·p; m = β1·m + d;
   *         p −= lr·(d + β1·m)   (v unused)
   */
  optimizerStep(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    sumSquares: Tensor,
    hyper: OptimizerHyper,
  ): void;
  /** average = decay·average + (1 − decay)·value, elementwise (same size; decay 0 copies). */
  movingAverage(average: Tensor, value: Tensor, decay: number): void;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
