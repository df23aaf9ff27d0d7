// The WebGPU backend: the ops above the runtime (src/webgpu/runtime.ts: memory, the uniform ring,
// launch and submit), as tinygrad keeps a backend to an allocator, a compiler and a launcher. Each op
// checks its shapes (shapes.ts), picks a grid and launches one or a few WGSL kernels of shaders/.
// With --precision f16 the tensors allocated as activations are stored in half precision (see Storage).

import type {
  Backend,
  BatchNormGrads,
  BatchNormParams,
  BatchNormWeights,
  OptimizerHyper,
  Tensor,
} from "../backend.ts";
import { type GpuHandle, requestGpu } from "./device.ts";
import * as shapes from "../shapes.ts";
import { WG } from "./shader_constants.ts";
import { OPTIMIZER_CODE } from "../kernel_constants.ts";
import {
  chunking,
  columnSums,
  epilogueBindings,
  epilogueConstants,
  gemm,
  gemmTakesEpilogue,
  sumSlices,
  type UnitEpilogue,
} from "./reductions.ts";
import { GpuRuntime, type HeldProducer, type Traffic } from "./runtime.ts";
import type { KernelTime } from "./profiler.ts";
import type { GpuTensor, Precision } from "./tensor.ts";

/** The most chunks a conv epilogue's per-tile statistics are merged into for the normalising pass. */
const STATISTICS_CHUNKS = 32;

export type { KernelTime, Precision, Traffic };

export class WebGpuBackend extends GpuRuntime implements Backend {
  readonly name = "webgpu" as const;
  readonly description: string;
  readonly isFallback: boolean;

  private constructor(gpu: GpuHandle, precision: Precision, profile: boolean) {
    super(gpu.device, precision, profile);
    this.isFallback = gpu.isFallback;
    this.description = `webgpu: ${gpu.description}${precision === "f16" ? ", f16 activations" : ""}`;
  }

  /**
   * Opens the GPU (or uses `gpu`, already opened by requestGpu); throws when there is none, or
   * only a software one and allowFallback is false. `profile` times every dispatch with timestamp
   * queries (when the adapter has them; see takeProfile), for bench/webgpu_bench.ts. `precision`
   * "f16" stores the tensors allocated as activations in half precision (needs 'shader-f16'); arithmetic,
   * reductions, parameters and gradients stay f32.
   */
  static async create(
    options: { allowFallback?: boolean; gpu?: GpuHandle; profile?: boolean; precision?: Precision } = {},
  ): Promise<WebGpuBackend> {
    const gpu = options.gpu ?? await requestGpu(options);
    if (!gpu) {
      throw new Error(
        options.allowFallback === false
          ? "WebGPU: no hardware adapter found (software adapters were not allowed)"
          : "WebGPU: no adapter found (navigator.gpu.requestAdapter returned null)",
      );
    }
    const precision = options.precision ?? "f32";
    if (precision === "f16" && !gpu.device.features.has("shader-f16")) {
      throw new Error(`--precision f16: ${gpu.description} has no 'shader-f16' (use --precision f32)`);
    }
    return new WebGpuBackend(gpu, precision, options.profile ?? false);
  }

  // ---- stem -----------------------------------------------------------------------------------

  patchEmbedForward(images: Tensor, weight: Tensor, out: Tensor): void {
    const { H, W, C, p } = shapes.patchEmbedDims("patchEmbedForward", images, weight, out, "out");
    const o = this.gpu(out);
    this.launch(
      "patch_embed_forward.wgsl",
      {},
      [this.gpu(images), this.gpu(weight), o],
      { u32: [o.size, H, W, C, p] },
      this.grid1D(o.size),
    );
  }

  patchEmbedBackwardWeight(images: Tensor, dOut: Tensor, dWeight: Tensor): void {
    const { H, W, C, p, pixels } = shapes.patchEmbedDims(
      "patchEmbedBackwardWeight",
      images,
      dWeight,
      dOut,
      "dOut",
    );
    const taps = 3 * p * p;
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const { rowsPerChunk, chunks } = chunking(pixels, cBlocks * taps);
    const partial = this.scratch("partial", chunks * C * taps);
    this.launch(
      "patch_embed_backward_weight.wgsl",
      {},
      [this.gpu(images), this.gpu(dOut), partial],
      { u32: [pixels, H, W, C, p, rowsPerChunk] },
      [cBlocks, taps, chunks],
    );
    sumSlices(this, partial, chunks, C * taps, this.gpu(dWeight), null, false);
  }

  // ---- depthwise conv -------------------------------------------------------------------------

  depthwiseConvForward(x: Tensor, weight: Tensor, out: Tensor): void {
    const dims = shapes.depthwiseDims("depthwiseConvForward", x, weight, out, ["x", "out"]);
    this.depthwiseConv(dims, x, weight, out, false);
  }

  depthwiseConvBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    const dims = shapes.depthwiseDims("depthwiseConvBackwardInput", dOut, weight, dx, ["dOut", "dx"]);
    this.depthwiseConv(dims, dOut, weight, dx, true);
  }

  depthwiseConvBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor): void {
    const { B, H, W, C, k } = shapes.depthwiseDims("depthwiseConvBackwardWeight", x, dWeight, dOut, [
      "x",
      "dOut",
    ]);
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const tapGroups = k * Math.ceil(k / WG.DEPTHWISE_TAPS); // (row, adjacent taps) per workgroup
    const { rowsPerChunk, chunks } = chunking(B * H, cBlocks * tapGroups);
    const partial = this.scratch("partial", chunks * k * k * C);
    this.launch(
      "depthwise_conv_backward_weight.wgsl",
      {},
      [this.gpu(x), this.gpu(dOut), partial],
      { u32: [B * H, H, W, C, k, rowsPerChunk] },
      [cBlocks, tapGroups, chunks],
    );
    sumSlices(this, partial, chunks, k * k * C, this.gpu(dWeight), null, false);
  }

  /**
   * The forward conv, or (transposed) the input gradient: the kernel flipped, added into out. Held
   * back for the unit that reads out (one tile per image).
   */
  private depthwiseConv(
    { B, H, W, C, k }: ReturnType<typeof shapes.depthwiseDims>,
    x: Tensor,
    weight: Tensor,
    out: Tensor,
    backward: boolean,
  ): void {
    const [xT, weightT, outT] = [this.gpu(x), this.gpu(weight), this.gpu(out)];
    const launch = (epilogue: UnitEpilogue | null) =>
      this.launch(
        "depthwise_conv.wgsl",
        { FLIP: backward, ACCUMULATE: backward, ...epilogueConstants(epilogue) },
        [xT, weightT, outT, ...epilogueBindings(this, epilogue)],
        { u32: [B, H, W, C, k] },
        [Math.ceil(C / WG.CHANNELS), B, 1],
      );
    this.holdProducer({ out: outT, tiles: B, rowsPerTile: H * W, launch });
  }

  // ---- linear ---------------------------------------------------------------------------------

  linearForward(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor): void {
    const op = "linearForward";
    const [N, K] = weight.shape;
    const M = shapes.linearDims(op, x, weight, "x", K);
    shapes.linearOutput(op, "out", out, M * N, `[${M}, ${N}]`);
    shapes.linearOutput(op, "bias", bias, N, `[${N}]`);
    const [xT, weightT, outT] = [this.gpu(x), this.gpu(weight), this.gpu(out)];
    const transpose = { TRANS_A: false, TRANS_B: true };
    if (bias || !gemmTakesEpilogue(M, N, K)) {
      gemm(this, xT, weightT, bias && this.gpu(bias), outT, M, N, K, transpose);
      return;
    }
    // A pointwise conv: the unit after it may take this GEMM with its statistics as the epilogue.
    this.holdGemm(outT, M, (epilogue) => gemm(this, xT, weightT, null, outT, M, N, K, transpose, epilogue));
  }

  linearBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    const [N, K] = weight.shape;
    const M = shapes.linearDims("linearBackwardInput", dOut, weight, "dOut", N);
    shapes.linearOutput("linearBackwardInput", "dx", dx, M * K, `[${M}, ${K}]`);
    const [dOutT, weightT, dxT] = [this.gpu(dOut), this.gpu(weight), this.gpu(dx)];
    const transpose = { TRANS_A: false, TRANS_B: false };
    if (!gemmTakesEpilogue(M, K, N)) {
      gemm(this, dOutT, weightT, null, dxT, M, K, N, transpose);
      return;
    }
    // dx may be the dOut of the unit before: its backward may take this GEMM with its sums.
    this.holdGemm(dxT, M, (epilogue) => gemm(this, dOutT, weightT, null, dxT, M, K, N, transpose, epilogue));
  }

  /** Holds a GEMM writing out [R, ·] back for the unit after it (tiles of GEMM_TILE rows). */
  private holdGemm(out: GpuTensor, R: number, launch: HeldProducer["launch"]): void {
    this.holdProducer({ out, tiles: Math.ceil(R / WG.GEMM_TILE), rowsPerTile: WG.GEMM_TILE, launch });
  }

  linearBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null): void {
    const op = "linearBackwardWeight";
    const [N, K] = dWeight.shape;
    const M = shapes.linearDims(op, x, dWeight, "x", K);
    shapes.linearOutput(op, "dOut", dOut, M * N, `[${M}, ${N}]`);
    shapes.linearOutput(op, "dBias", dBias, N, `[${N}]`);
    const d = this.gpu(dOut);
    gemm(this, d, this.gpu(x), null, this.gpu(dWeight), N, K, M, { TRANS_A: true, TRANS_B: false });
    if (dBias) columnSums(this, d, M, N, this.gpu(dBias));
  }

  // ---- bias + GELU + BatchNorm ----------------------------------------------------------------

  biasGeluBatchNormForward(
    z: Tensor,
    unit: BatchNormParams,
    saved: Tensor,
    residual: Tensor | null,
    out: Tensor,
    training: boolean,
    geluOut: Tensor | null = null, // checked, not used: the WGSL backward evaluates GELU again
  ): void {
    const op = "biasGeluBatchNormForward";
    const { C, R } = shapes.batchNormForwardDims(z, unit, saved, residual, out, geluOut);
    const { bias, gamma, beta, runningMean, runningVar } = unit;
    if (residual && this.gpu(residual).storage === this.gpu(out).storage) {
      throw new Error(`webgpu ${op}: residual may not alias out`);
    }
    // Training: the statistics per chunk of rows (in the epilogue of the GEMM or depthwise conv that
    // has just written z, where one has), then one pass that merges them and normalises.
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const { rowsPerChunk, chunks } = chunking(R, cBlocks);
    const producer = this.takeProducer(this.gpu(z));
    if (!training) producer?.launch(null);
    const stats = !training
      ? { partial: this.placeholder, rowsPerChunk, chunks: 0 }
      : producer
      ? this.statisticsFromProducer(producer, bias, R, C)
      : this.statisticsPass(z, bias, R, C, rowsPerChunk, chunks);
    this.launch(
      "bias_gelu_batchnorm_normalize.wgsl",
      { TRAINING: training, HAS_RESIDUAL: residual !== null },
      [
        this.gpu(z),
        this.gpu(bias),
        this.gpu(gamma),
        this.gpu(beta),
        stats.partial,
        this.gpu(runningMean),
        this.gpu(runningVar),
        this.gpu(saved), // written in training only
        residual ? this.gpu(residual) : this.placeholder,
        this.gpu(out),
      ],
      { u32: [R, C, rowsPerChunk, stats.rowsPerChunk, stats.chunks] },
      [cBlocks, 1, chunks],
    );
  }

  /** The statistics of GELU(z + bias) per chunk of rows, in a pass of their own over z. */
  private statisticsPass(
    z: Tensor,
    bias: Tensor,
    R: number,
    C: number,
    rowsPerChunk: number,
    chunks: number,
  ) {
    const partial = this.scratch("partial", chunks * 2 * C);
    this.launch(
      "bias_gelu_statistics.wgsl",
      {},
      [this.gpu(z), this.gpu(bias), partial],
      { u32: [R, C, rowsPerChunk] },
      [Math.ceil(C / WG.CHANNELS), 1, chunks],
    );
    return { partial, rowsPerChunk, chunks };
  }

  /**
   * The statistics of GELU(z + bias) from the GEMM or conv that writes z, in its epilogue (one
   * partial per tile of rows), merged into at most STATISTICS_CHUNKS chunks for the normalising pass.
   */
  private statisticsFromProducer(producer: HeldProducer, bias: Tensor, R: number, C: number) {
    const { tiles, rowsPerTile } = producer, tilePartial = this.scratch("tilePartial", tiles * 2 * C);
    producer.launch({ kind: "statistics", bias: this.gpu(bias), partial: tilePartial });
    const tilesPerChunk = Math.ceil(tiles / STATISTICS_CHUNKS), chunks = Math.ceil(tiles / tilesPerChunk);
    const partial = this.scratch("partial", chunks * 2 * C);
    this.launch(
      "merge_statistics.wgsl",
      {},
      [tilePartial, partial],
      { u32: [R, C, tiles, tilesPerChunk, rowsPerTile] },
      [Math.ceil(C / WG.CHANNELS), 1, chunks],
    );
    return { partial, rowsPerChunk: tilesPerChunk * rowsPerTile, chunks };
  }

  biasGeluBatchNormBackward(
    z: Tensor,
    unit: BatchNormWeights,
    saved: Tensor,
    dOut: Tensor,
    dz: Tensor,
    grads: BatchNormGrads,
    geluOut: Tensor | null = null, // checked, not used
  ): void {
    const { C, R } = shapes.batchNormBackwardDims(z, unit, saved, dOut, dz, grads, geluOut);
    const { bias, gamma } = unit, { bias: dBias, gamma: dGamma, beta: dBeta } = grads;
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const { rowsPerChunk, chunks } = chunking(R, cBlocks);
    const [zT, biasT, savedT] = [this.gpu(z), this.gpu(bias), this.gpu(saved)];
    const producer = this.takeProducer(this.gpu(dOut));
    const sumChunks = producer ? 1 : chunks, sums = this.scratch("partial", sumChunks * 2 * C);
    if (producer) {
      // The GEMM or conv that writes dOut sums per tile in its epilogue; one sum_slices adds the tiles.
      const tilePartial = this.scratch("tilePartial", producer.tiles * 2 * C);
      producer.launch({ kind: "backwardSums", bias: biasT, z: zT, saved: savedT, partial: tilePartial });
      sumSlices(this, tilePartial, producer.tiles, 2 * C, sums, null, false);
    } else {
      this.launch(
        "batchnorm_backward_sums.wgsl",
        {},
        [zT, biasT, savedT, this.gpu(dOut), sums],
        { u32: [R, C, rowsPerChunk] },
        [cBlocks, 1, chunks],
      );
    }
    const dzPartial = this.scratch("dzPartial", chunks * C);
    this.launch(
      "bias_gelu_batchnorm_backward.wgsl",
      {},
      [
        zT,
        biasT,
        this.gpu(gamma),
        savedT,
        sums,
        this.gpu(dOut),
        this.gpu(dz),
        dzPartial,
        this.gpu(dGamma),
        this.gpu(dBeta),
      ],
      { u32: [R, C, rowsPerChunk, sumChunks] },
      [cBlocks, 1, chunks],
    );
    this.deferSum({ partial: dzPartial, slices: chunks, len: C, out: this.gpu(dBias) });
  }

  // ---- head -----------------------------------------------------------------------------------

  averagePoolForward(x: Tensor, out: Tensor): void {
    const { B, H, W, C } = shapes.averagePoolDims("averagePoolForward", x, out);
    this.launch(
      "average_pool_forward.wgsl",
      {},
      [this.gpu(x), this.gpu(out)],
      { u32: [B, H * W, C] },
      [Math.ceil(C / WG.POOL_CHANNELS), B, 1],
    );
  }

  averagePoolBackward(dOut: Tensor, dx: Tensor): void {
    const { H, W, C } = shapes.averagePoolDims("averagePoolBackward", dx, dOut);
    this.launch(
      "average_pool_backward.wgsl",
      {},
      [this.gpu(dOut), this.gpu(dx)],
      { u32: [dx.size, H * W, C] },
      this.grid1D(dx.size),
    );
  }

  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
    dLogits: Tensor | null,
    metrics: Tensor,
    labelSmoothing: number,
  ): void {
    const { B, K } = shapes.crossEntropyDims(logits, labels, dLogits, metrics);
    if (!(this.gpu(labels).storage.labelBound <= K)) {
      throw new Error(`webgpu softmaxCrossEntropy: labels must be class indices in [0, ${K})`);
    }
    this.launch(
      "softmax_cross_entropy.wgsl",
      { HAS_GRAD: dLogits !== null },
      [this.gpu(logits), this.gpu(labels), dLogits ? this.gpu(dLogits) : this.placeholder, this.gpu(metrics)],
      { u32: [B, K], f32: [labelSmoothing] },
      [1, 1, 1],
    );
  }

  // ---- optimizer ------------------------------------------------------------------------------

  accumulateSquares(g: Tensor, sumSquares: Tensor): void {
    shapes.squaresDims(sumSquares);
    const n = g.size;
    const groups = Math.max(1, Math.min(256, Math.ceil(n / (WG.THREADS * 64))));
    if (groups === 1) {
      this.launch(
        "sum_squares.wgsl",
        { DIRECT: true },
        [this.gpu(g), this.gpu(sumSquares)],
        { u32: [n] },
        [
          1,
          1,
          1,
        ],
      );
      return;
    }
    const partial = this.scratch("squares", groups);
    this.launch("sum_squares.wgsl", { DIRECT: false }, [this.gpu(g), partial], { u32: [n] }, [
      groups,
      1,
      1,
    ]);
    sumSlices(this, partial, groups, 1, this.gpu(sumSquares), null, true);
  }

  optimizerStep(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    sumSquares: Tensor,
    hyper: OptimizerHyper,
  ): void {
    if (!(Object.hasOwn(OPTIMIZER_CODE, hyper.kind))) {
      throw new Error(`webgpu optimizerStep: unknown optimizer "${hyper.kind}"`);
    }
    shapes.optimizerDims(param, grad, m, v, sumSquares);
    const p = this.gpu(param);
    this.launch(
      "optimizer_step.wgsl",
      {},
      [p, this.gpu(grad), this.gpu(m), this.gpu(v), this.gpu(sumSquares)],
      {
        u32: [p.size, OPTIMIZER_CODE[hyper.kind]],
        f32: [
          hyper.lr,
          hyper.weightDecay,
          hyper.beta1,
          hyper.beta2,
          hyper.eps,
          1 - Math.pow(hyper.beta1, hyper.step),
          1 - Math.pow(hyper.beta2, hyper.step),
          hyper.clipNorm,
        ],
      },
      this.grid1D(p.size),
    );
  }

  movingAverage(average: Tensor, value: Tensor, decay: number): void {
    shapes.movingAverageDims(average, value);
    const a = this.gpu(average);
    this.launch(
      "moving_average.wgsl",
      {},
      [a, this.gpu(value)],
      { u32: [a.size], f32: [decay] },
      this.grid1D(a.size),
    );
  }
}
