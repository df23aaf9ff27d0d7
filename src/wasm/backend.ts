// The CPU backend: every op is a WebAssembly SIMD kernel (asm/) run on all threads of a pool over
// one shared memory, synchronously, before the method returns. The linear layers and the patch
// embedding are GEMMs (asm/gemm.ts) and live here; the other layers are in layer_ops.ts.
import {
  type Backend,
  type BatchNormGrads,
  type BatchNormParams,
  type BatchNormWeights,
  numel,
  type OptimizerHyper,
  type Tensor,
} from "../backend.ts";
import * as shapes from "../shapes.ts";
import * as layerOps from "./layer_ops.ts";
import {
  alignUp,
  Arena,
  createSharedMemory,
  loadWasmModule,
  WASM_MEMORY_LIMIT_BYTES,
  type WasmContext,
  type WasmTensor,
} from "./module.ts";
import { ThreadPool } from "./threads.ts";

/** One GEMM call: C[M,N] = alpha·op(A)·op(B) + beta·C (+ bias[N] per row); offsets in bytes. */
export interface GemmArgs {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha?: number;
  a: number;
  lda: number;
  b: number;
  ldb: number;
  /** 0 (C is not read) or 1 (accumulate); default 0. */
  beta?: number;
  c: number;
  ldc: number;
  /** Byte offset of bias[N], or 0 for none. */
  bias?: number;
  /** Byte offset of gemmScratchBytes(threads) bytes; default ctx.scratch(). */
  scratch?: number;
}

/** Scratch bytes one GEMM needs on `threads` threads. */
export function gemmScratchBytes(ctx: WasmContext): number {
  return ctx.pool.threads * (ctx.pool.exports.gemmScratchBytes() as number);
}

/** Runs asm/gemm.ts on every thread of the pool. */
export function gemm(ctx: WasmContext, g: GemmArgs): void {
  if (g.M === 0 || g.N === 0) return;
  const scratch = g.scratch ?? ctx.scratch(gemmScratchBytes(ctx));
  ctx.pool.run("gemm", [
    g.transA ? 1 : 0,
    g.transB ? 1 : 0,
    g.M,
    g.N,
    g.K,
    g.alpha ?? 1,
    g.a,
    g.lda,
    g.b,
    g.ldb,
    g.beta ?? 0,
    g.c,
    g.ldc,
    g.bias ?? 0,
    scratch,
  ]);
}

function shapeText(t: Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(`wasm backend: ${message()}`);
}

/** The element count of a shape of non-negative integers. */
function sizeOf(op: string, shape: readonly number[]): number {
  check(shape.every((d) => Number.isInteger(d) && d >= 0), () => `${op}: bad shape [${shape.join(", ")}]`);
  return numel(shape);
}

export class WasmBackend implements Backend {
  readonly name = "wasm";
  readonly description: string;
  readonly ctx: WasmContext;
  readonly #arena: Arena;
  readonly #pool: ThreadPool;

  /** The shared memory's size: tensors, plus the largest scratch any kernel has asked for. */
  /** Everything lives in one 32-bit memory: the model trims its activations to fit (src/model.ts). */
  readonly memoryLimitBytes = WASM_MEMORY_LIMIT_BYTES;

  get allocatedBytes(): number {
    return this.ctx.memory.buffer.byteLength;
  }

  private constructor(arena: Arena, pool: ThreadPool) {
    this.#arena = arena;
    this.#pool = pool;
    const memory = arena.memory;
    this.ctx = {
      memory,
      pool,
      scratch: (bytes) => arena.scratch(bytes),
      f32: (t) => new Float32Array(memory.buffer, t.offset, t.size),
    };
    this.description = `wasm: WebAssembly SIMD on ${pool.threads} thread${pool.threads === 1 ? "" : "s"}`;
  }

  static async create(options: { threads?: number } = {}): Promise<WasmBackend> {
    const module = await loadWasmModule();
    const memory = createSharedMemory();
    const pool = await ThreadPool.create(module, memory, options.threads ?? navigator.hardwareConcurrency);
    return new WasmBackend(new Arena(memory, pool.exports.heapBase()), pool);
  }

  // ---- memory ---------------------------------------------------------------------------------

  tensor(shape: readonly number[]): WasmTensor {
    const size = sizeOf("tensor", shape);
    const t: WasmTensor = { shape: [...shape], size, offset: this.#arena.alloc(size * 4) };
    this.ctx.f32(t).fill(0);
    return t;
  }

  view(t: Tensor, shape: readonly number[]): WasmTensor {
    const size = sizeOf("view", shape);
    check(size <= t.size, () => `view: [${shape.join(", ")}] is larger than ${shapeText(t)}`);
    return { shape: [...shape], size, offset: (t as WasmTensor).offset };
  }

  write(t: Tensor, data: Float32Array): void {
    check(data.length === t.size, () => `write: ${data.length} values for a tensor ${shapeText(t)}`);
    this.ctx.f32(t as WasmTensor).set(data);
  }

  read(t: Tensor): Promise<Float32Array> {
    return Promise.resolve(this.ctx.f32(t as WasmTensor).slice());
  }

  readMany(tensors: readonly Tensor[]): Promise<Float32Array[]> {
    return Promise.all(tensors.map((t) => this.read(t)));
  }

  fill(t: Tensor, value: number): void {
    this.ctx.f32(t as WasmTensor).fill(value);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {
    this.#pool.close();
  }

  // ---- stem: patch embedding (im2col, then a GEMM) ----------------------------------------------

  /** The stem's dimensions, and the patch rows B·H/p·W/p. */
  #patchDims(op: string, images: Tensor, weight: Tensor, out: Tensor, outName: string) {
    const { B, H, W, C, p } = shapes.patchEmbedDims(op, images, weight, out, outName);
    return [B, H, W, C, p, B * (H / p) * (W / p)];
  }

  /** images → patch rows [B·H/p·W/p, 3·p·p] in scratch, followed by the GEMM's scratch. */
  #im2col(images: Tensor, B: number, H: number, W: number, p: number, rows: number): [number, number] {
    const patchBytes = alignUp(rows * 3 * p * p * 4);
    const patches = this.ctx.scratch(patchBytes + gemmScratchBytes(this.ctx));
    this.#pool.run("patchIm2col", [(images as WasmTensor).offset, B, H, W, p, patches]);
    return [patches, patches + patchBytes];
  }

  patchEmbedForward(images: Tensor, weight: Tensor, out: Tensor): void {
    const [B, H, W, C, p, rows] = this.#patchDims("patchEmbedForward", images, weight, out, "out");
    const K = 3 * p * p;
    const [patches, scratch] = this.#im2col(images, B, H, W, p, rows);
    gemm(this.ctx, {
      transA: false,
      transB: true,
      M: rows,
      N: C,
      K,
      a: patches,
      lda: K,
      b: (weight as WasmTensor).offset,
      ldb: K,
      c: (out as WasmTensor).offset,
      ldc: C,
      scratch,
    });
  }

  patchEmbedBackwardWeight(images: Tensor, dOut: Tensor, dWeight: Tensor): void {
    const [B, H, W, C, p, rows] = this.#patchDims("patchEmbedBackwardWeight", images, dWeight, dOut, "dOut");
    const K = 3 * p * p;
    const [patches, scratch] = this.#im2col(images, B, H, W, p, rows);
    gemm(this.ctx, {
      transA: true,
      transB: false,
      M: C,
      N: K,
      K: rows,
      a: (dOut as WasmTensor).offset,
      lda: C,
      b: patches,
      ldb: K,
      c: (dWeight as WasmTensor).offset,
      ldc: K,
      scratch,
    });
  }

  // ---- depthwise conv ---------------------------------------------------------------------------

  depthwiseConvForward(x: Tensor, weight: Tensor, out: Tensor): void {
    layerOps.depthwiseConvForward(this.ctx, x as WasmTensor, weight as WasmTensor, out as WasmTensor);
  }

  depthwiseConvBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    layerOps.depthwiseConvBackwardInput(this.ctx, dOut as WasmTensor, weight as WasmTensor, dx as WasmTensor);
  }

  depthwiseConvBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor): void {
    layerOps.depthwiseConvBackwardWeight(
      this.ctx,
      x as WasmTensor,
      dOut as WasmTensor,
      dWeight as WasmTensor,
    );
  }

  // ---- linear (pointwise conv and head): GEMMs ----------------------------------------------------

  linearForward(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor): void {
    const { M, N, K } = shapes.linearForwardDims(x, weight, bias, out);
    gemm(this.ctx, {
      transA: false,
      transB: true,
      M,
      N,
      K,
      a: (x as WasmTensor).offset,
      lda: K,
      b: (weight as WasmTensor).offset,
      ldb: K,
      c: (out as WasmTensor).offset,
      ldc: N,
      bias: bias === null ? 0 : (bias as WasmTensor).offset,
    });
  }

  linearBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    const { M, N, K } = shapes.linearBackwardInputDims(dOut, weight, dx);
    gemm(this.ctx, {
      transA: false,
      transB: false,
      M,
      N: K,
      K: N,
      a: (dOut as WasmTensor).offset,
      lda: N,
      b: (weight as WasmTensor).offset,
      ldb: K,
      c: (dx as WasmTensor).offset,
      ldc: K,
    });
  }

  linearBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null): void {
    const { M, N, K } = shapes.linearBackwardWeightDims(x, dOut, dWeight, dBias);
    gemm(this.ctx, {
      transA: true,
      transB: false,
      M: N,
      N: K,
      K: M,
      a: (dOut as WasmTensor).offset,
      lda: N,
      b: (x as WasmTensor).offset,
      ldb: K,
      c: (dWeight as WasmTensor).offset,
      ldc: K,
    });
    if (dBias !== null) {
      this.#pool.run("columnSums", [(dOut as WasmTensor).offset, M, N, (dBias as WasmTensor).offset]);
    }
  }

  // ---- bias + GELU + BatchNorm ------------------------------------------------------------------

  biasGeluBatchNormForward(
    z: Tensor,
    unit: BatchNormParams,
    saved: Tensor,
    residual: Tensor | null,
    out: Tensor,
    training: boolean,
  ): void {
    layerOps.biasGeluBatchNormForward(
      this.ctx,
      z as WasmTensor,
      unit as BatchNormParams<WasmTensor>,
      saved as WasmTensor,
      residual as WasmTensor | null,
      out as WasmTensor,
      training,
    );
  }

  biasGeluBatchNormBackward(
    z: Tensor,
    unit: BatchNormWeights,
    saved: Tensor,
    dOut: Tensor,
    dz: Tensor,
    grads: BatchNormGrads,
  ): void {
    layerOps.biasGeluBatchNormBackward(
      this.ctx,
      z as WasmTensor,
      unit as BatchNormWeights<WasmTensor>,
      saved as WasmTensor,
      dOut as WasmTensor,
      dz as WasmTensor,
      grads as BatchNormGrads<WasmTensor>,
    );
  }

  // ---- head -------------------------------------------------------------------------------------

  averagePoolForward(x: Tensor, out: Tensor): void {
    layerOps.averagePoolForward(this.ctx, x as WasmTensor, out as WasmTensor);
  }

  averagePoolBackward(dOut: Tensor, dx: Tensor): void {
    layerOps.averagePoolBackward(this.ctx, dOut as WasmTensor, dx as WasmTensor);
  }

  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
    dLogits: Tensor | null,
    metrics: Tensor,
    labelSmoothing: number,
  ): void {
    layerOps.softmaxCrossEntropy(
      this.ctx,
      logits as WasmTensor,
      labels as WasmTensor,
      dLogits as WasmTensor | null,
      metrics as WasmTensor,
      labelSmoothing,
    );
  }

  // ---- optimizer --------------------------------------------------------------------------------

  accumulateSquares(g: Tensor, sumSquares: Tensor): void {
    layerOps.accumulateSquares(this.ctx, g as WasmTensor, sumSquares as WasmTensor);
  }

  optimizerStep(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    sumSquares: Tensor,
    hyper: OptimizerHyper,
  ): void {
    layerOps.optimizerStep(
      this.ctx,
      param as WasmTensor,
      grad as WasmTensor,
      m as WasmTensor,
      v as WasmTensor,
      sumSquares as WasmTensor,
      hyper,
    );
  }

  movingAverage(average: Tensor, value: Tensor, decay: number): void {
    layerOps.movingAverage(this.ctx, average as WasmTensor, value as WasmTensor, decay);
  }
}
