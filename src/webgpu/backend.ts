// The WebGPU backend: every op is one or a few compute dispatches of the WGSL kernels in
// shaders/, recorded into one command encoder and submitted only when the host needs a result
// (read, flush, write) or the uniform ring is full, so a training step is one submit.
//
// Memory: each tensor is one GPU buffer allocated once (views bind a prefix of it); with
// --precision f16 the spatial activations are stored in half precision (see Storage). Scratch
// buffers for the two-level reductions (split-K partials, per-chunk sums) are shared by all ops
// and grow on demand. Per-dispatch parameters go in a ring of aligned uniform slots bound with a
// dynamic offset, written with one queue.writeBuffer just before each submit, so bind groups can
// be cached per (kernel, buffers, sizes) and pipelines per (kernel, specialisation constants).

import { type Backend, numel, type OptimizerHyper, type Tensor } from "../backend.ts";
import { type GpuHandle, requestGpu } from "./device.ts";
import * as shapes from "./shapes.ts";
import { WG, wgslPrelude } from "./shader_constants.ts";
import { OPTIMIZER_CODE } from "../kernel_constants.ts";

const UNIFORM_BYTES = 64;
/**
 * Uniform slots, so at most this many dispatches per submit: a training step (~370 dispatches at
 * depth 8) is one submit. Recording one costs ~2 ms of CPU; the next step's write() submits it, and
 * the GPU runs it while the CPU records the next one.
 */
const RING_SLOTS = 1024;

/** Limits that bound the batch: the largest activation must fit one storage binding. */
export interface BufferLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/**
 * The largest batch whose biggest tensor (the images or an activation [B, H/p, W/p, hdim]) fits
 * one buffer binding; `config` is the model's ConvMixerConfig (only hdim and patch matter).
 */
export function maxBatchForLimits(
  limits: BufferLimits,
  config: { hdim: number; patch: number },
  imageSize = 32,
): number {
  const side = Math.floor(imageSize / config.patch);
  const floatsPerSample = Math.max(imageSize * imageSize * 3, side * side * config.hdim);
  const bytes = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  return Math.floor(bytes / (floatsPerSample * 4));
}

/** Element type of spatial activations: f16 halves their memory traffic (shader-f16). */
export type Precision = "f32" | "f16";

/**
 * The GPU buffer behind a tensor and its views. With f32 it is allocated at once. With f16 it is
 * allocated by the first op that binds the tensor, which decides the element type: spatial
 * activations [B, H, W, C] are f16, everything else (parameters, gradients, statistics) f32;
 * values written or filled before then wait on the host.
 */
class Storage {
  buffer: GPUBuffer | null = null;
  half = false;
  pending: Float32Array | null = null;
  /**
   * One more than the largest value the host put here with write (rank 1) or fill; Infinity once one
   * was not a non-negative integer. Labels come from the host, so softmaxCrossEntropy checks them here
   * instead of reading them back (the shader indexes the logits with them).
   */
  labelBound = 1;
  constructor(readonly elements: number, /** Names the buffer in bind-group keys. */ readonly id: number) {}
}

class GpuTensor implements Tensor {
  constructor(readonly shape: readonly number[], readonly size: number, readonly storage: Storage) {}

  /** The bytes a binding of this tensor covers (storage bindings come in multiples of 4 bytes). */
  get bindingBytes(): number {
    return Math.ceil(this.size * (this.storage.half ? 2 : 4) / 4) * 4;
  }
}

type BindingKind = "uniform" | "read-only-storage" | "storage";

interface Binding {
  kind: BindingKind;
  name: string;
  /** Declared with element type `<name>_t`, which the host may set to f16. */
  flexible: boolean;
}

interface Kernel {
  module: GPUShaderModule;
  layout: GPUPipelineLayout;
  bindGroupLayout: GPUBindGroupLayout;
  /** The access of each storage binding after the uniform at binding 0, as the WGSL declares it. */
  storageKinds: BindingKind[];
}

interface Uniforms {
  u32?: number[];
  f32?: number[];
}

/** Pipeline-overridable constants: flags and small integers. */
type Constants = Record<string, boolean | number>;

/**
 * Dispatches and a model of their memory traffic, counted as they are recorded: each dispatch reads
 * the whole bound range of every read-only binding and writes the whole bound range of every
 * read_write one (the access the WGSL declares; a read_write binding that is also read, as an
 * accumulation, counts as written only; the empty placeholder binding counts nothing). No copies.
 */
export interface Traffic {
  dispatches: number;
  readBytes: number;
  writeBytes: number;
}

/** GPU time of one kernel (file and specialisation) over the dispatches since the last takeProfile. */
export interface KernelTime {
  kernel: string;
  dispatches: number;
  ms: number;
}

/** Timestamp queries around every dispatch (profile mode; each dispatch gets its own pass). */
interface Profiler {
  querySet: GPUQuerySet;
  /** Kernel label of each recorded dispatch in the current encoder. */
  labels: string[];
  /** Resolved timestamps of submitted encoders, waiting to be read. */
  submitted: { readback: GPUBuffer; labels: string[] }[];
}

const PROFILE_CAPACITY = 1024;

const shaderDir = new URL("../../shaders/", import.meta.url);

/** A kernel's WGSL after the shared constants, with each `//!include file.wgsl` spliced in once. */
function loadShader(file: string): string {
  return wgslPrelude() + spliceIncludes(file, new Set());
}

function spliceIncludes(file: string, included: Set<string>): string {
  included.add(file);
  const source = Deno.readTextFileSync(new URL(file, shaderDir));
  return source.replace(
    /^\/\/!include (\S+)$/gm,
    (_, name: string) => included.has(name) ? "" : spliceIncludes(name, included),
  );
}

/** The bindings a kernel declares, in binding order: binding 0 must be its uniform. */
function parseBindings(file: string, source: string): Binding[] {
  const bindings: Binding[] = [];
  const pattern =
    /@binding\((\d+)\)\s*var<(uniform|storage,\s*read_write|storage,\s*read)>\s*(\w+)\s*:\s*([^;]*);/g;
  for (const match of source.matchAll(pattern)) {
    const kind: BindingKind = match[2] === "uniform"
      ? "uniform"
      : match[2].endsWith("read_write")
      ? "storage"
      : "read-only-storage";
    bindings[Number(match[1])] = { kind, name: match[3], flexible: match[4] === `array<${match[3]}_t>` };
  }
  if (bindings[0]?.kind !== "uniform" || [...bindings].some((b) => b === undefined)) {
    throw new Error(`shaders/${file}: bindings must be 0 (uniform), 1, 2, ... in group 0`);
  }
  return bindings;
}

/**
 * Splits `rows` into chunks so that the first level's grid has about `target` workgroups (enough
 * threads to keep the memory busy; the second level adds one partial per chunk).
 */
function chunking(rows: number, otherWorkgroups: number, target = 1024) {
  const wanted = Math.max(1, Math.min(Math.ceil(target / otherWorkgroups), Math.ceil(rows / WG.ROW_LANES)));
  const rowsPerChunk = Math.ceil(rows / wanted);
  return { rowsPerChunk, chunks: Math.ceil(rows / rowsPerChunk) };
}

/** 'gemm.wgsl:hff{"TRANS_A":true,"SPLIT_K":false}' → "gemm[TRANS_A] f16": for profiles. */
function describeKernel(pipelineKey: string): string {
  const constants = JSON.parse(pipelineKey.slice(pipelineKey.indexOf("{"))) as Constants;
  const on = Object.entries(constants).filter(([, v]) => v === true).map(([k]) => k);
  const half = pipelineKey.includes(".wgsl:") ? " f16" : "";
  return pipelineKey.slice(0, pipelineKey.indexOf(".wgsl")) + (on.length ? `[${on.join(",")}]` : "") + half;
}

function describeShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

export class WebGpuBackend implements Backend {
  readonly name = "webgpu" as const;
  readonly description: string;
  readonly device: GPUDevice;
  readonly isFallback: boolean;
  readonly precision: Precision;

  private readonly kernels = new Map<string, Kernel>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly buffers = new Set<GPUBuffer>();
  private nextStorageId = 0;

  private readonly ring: GPUBuffer;
  private readonly ringHost: ArrayBuffer;
  private readonly ringSlot: number;
  private ringUsed = 0;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly dummy: GpuTensor;
  private readonly scratchTensors = new Map<string, GpuTensor>();
  private retired: GPUBuffer[] = [];
  private readonly stagingPool = new Map<number, GPUBuffer[]>();

  private readonly profiler: Profiler | null = null;
  private traffic: Traffic = { dispatches: 0, readBytes: 0, writeBytes: 0 };
  private pendingErrors: Promise<GPUError | null>[] = [];
  private lostMessage: string | null = null;
  private uncapturedMessage: string | null = null;

  private constructor(
    device: GPUDevice,
    description: string,
    isFallback: boolean,
    profile: boolean,
    precision: Precision,
  ) {
    this.device = device;
    this.isFallback = isFallback;
    this.precision = precision;
    this.description = `webgpu: ${description}${precision === "f16" ? ", f16 activations" : ""}`;
    device.lost.then((info) => {
      this.lostMessage ??= `WebGPU device lost (${info.reason}): ${info.message}`;
    });
    device.addEventListener("uncapturederror", (event) => {
      this.uncapturedMessage ??= (event as GPUUncapturedErrorEvent).error.message;
    });
    this.pushErrorScopes();
    this.ringSlot = Math.max(UNIFORM_BYTES, device.limits.minUniformBufferOffsetAlignment);
    this.ringHost = new ArrayBuffer(this.ringSlot * RING_SLOTS);
    this.ring = this.createBuffer(this.ringHost.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.dummy = this.tensor([4]) as GpuTensor;
    if (profile && device.features.has("timestamp-query")) {
      const querySet = device.createQuerySet({ type: "timestamp", count: 2 * PROFILE_CAPACITY });
      this.profiler = { querySet, labels: [], submitted: [] };
    }
  }

  /**
   * Opens the GPU (or uses `gpu`, already opened by requestGpu); throws when there is none, or
   * only a software one and allowFallback is false. `profile` times every dispatch with timestamp
   * queries (when the adapter has them; see takeProfile), for bench/webgpu_bench.ts. `precision`
   * "f16" stores spatial activations in half precision (needs 'shader-f16'); arithmetic,
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
    return new WebGpuBackend(
      gpu.device,
      gpu.description,
      gpu.isFallback,
      options.profile ?? false,
      precision,
    );
  }

  /** Whether dispatches are timed on the GPU (profile mode and 'timestamp-query'). */
  get profiling(): boolean {
    return this.profiler !== null;
  }

  /** Bytes of GPU memory this backend holds (tensors, scratch, staging). */
  get allocatedBytes(): number {
    let bytes = 0;
    for (const buffer of this.buffers) bytes += buffer.size;
    return bytes;
  }

  /** Waits for queued work, then returns the GPU time per kernel since the last call (profile mode). */
  async takeProfile(): Promise<KernelTime[]> {
    await this.flush();
    const times = new Map<string, KernelTime>();
    for (const { readback, labels } of this.profiler?.submitted ?? []) {
      await readback.mapAsync(GPUMapMode.READ);
      const stamps = new BigInt64Array(readback.getMappedRange());
      labels.forEach((kernel, i) => {
        const entry = times.get(kernel) ?? { kernel, dispatches: 0, ms: 0 };
        entry.dispatches++;
        entry.ms += Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6;
        times.set(kernel, entry);
      });
      readback.destroy();
      this.buffers.delete(readback);
    }
    if (this.profiler) this.profiler.submitted = [];
    return [...times.values()];
  }

  /** The dispatches recorded since the last call and the bytes they bind (see Traffic). */
  takeTraffic(): Traffic {
    const traffic = this.traffic;
    this.traffic = { dispatches: 0, readBytes: 0, writeBytes: 0 };
    return traffic;
  }

  // ---- memory ---------------------------------------------------------------------------------

  tensor(shape: readonly number[]): Tensor {
    this.checkAlive();
    if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new Error(`WebGPU tensor: bad shape ${describeShape(shape)}`);
    }
    const size = numel(shape);
    const bytes = size * 4;
    const limit = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    if (bytes > limit) {
      const perRow = bytes / shape[0];
      throw new Error(
        `WebGPU tensor ${describeShape(shape)} needs ${bytes} bytes, over this device's ` +
          `maxStorageBufferBindingSize (${limit}); at most ${Math.floor(limit / perRow)} rows of its ` +
          `leading (batch) dimension fit`,
      );
    }
    const storage = new Storage(size, this.nextStorageId++);
    if (this.precision === "f32") this.allocate(storage, false);
    return new GpuTensor([...shape], size, storage);
  }

  view(t: Tensor, shape: readonly number[]): Tensor {
    const base = this.gpu(t);
    const size = numel(shape);
    if (shape.some((d) => !Number.isInteger(d) || d < 0) || size > base.size) {
      throw new Error(
        `WebGPU view: shape ${describeShape(shape)} does not fit in ${describeShape(base.shape)}`,
      );
    }
    return new GpuTensor([...shape], size, base.storage);
  }

  write(t: Tensor, data: Float32Array): void {
    const target = this.gpu(t);
    if (data.length !== target.size) {
      throw new Error(
        `WebGPU write: ${data.length} values for a tensor of ${target.size} ${describeShape(t.shape)}`,
      );
    }
    this.checkAlive();
    const storage = target.storage;
    storage.labelBound = t.shape.length !== 1
      ? Infinity
      : Math.max(labelBound(data), data.length < storage.elements ? storage.labelBound : 0);
    if (storage.buffer) this.upload(target, data);
    else (storage.pending ??= new Float32Array(storage.elements)).set(data);
  }

  async read(t: Tensor): Promise<Float32Array> {
    return (await this.readMany([t]))[0];
  }

  /**
   * Each tensor copied into one staging buffer at a 16-byte aligned offset, then one mapAsync:
   * Deno's mapAsync polls (~10 ms each on lavapipe), so a checkpoint's ~250 tensors cost one wait.
   */
  async readMany(tensors: readonly Tensor[]): Promise<Float32Array[]> {
    const sources = tensors.map((t) => this.gpu(t));
    this.checkAlive();
    const offsets: number[] = [];
    let bytes = 0;
    for (const source of sources) {
      offsets.push(bytes);
      bytes += Math.ceil(source.bindingBytes / 16) * 16;
    }
    const onDevice = sources.map((s) => s.storage.buffer !== null && s.size > 0);
    if (!onDevice.includes(true)) {
      await this.flush();
      return sources.map((s) => this.hostValues(s));
    }
    const staging = this.stagingPool.get(bytes)?.pop() ??
      this.createBuffer(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.endPass();
    const encoder = this.encoder ??= this.device.createCommandEncoder();
    sources.forEach((s, i) => {
      if (onDevice[i]) {
        encoder.copyBufferToBuffer(s.storage.buffer!, 0, staging, offsets[i], s.bindingBytes);
      }
    });
    this.submit();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch (error) {
      await this.checkErrors();
      throw new Error(`WebGPU read failed: ${(error as Error).message}`);
    }
    const mapped = staging.getMappedRange(0, bytes);
    const results = sources.map((s, i) =>
      !onDevice[i]
        ? this.hostValues(s)
        : s.storage.half
        ? Float32Array.from(new Float16Array(mapped, offsets[i], s.size))
        : new Float32Array(mapped.slice(offsets[i], offsets[i] + 4 * s.size))
    );
    staging.unmap();
    const pool = this.stagingPool.get(bytes) ?? [];
    pool.push(staging);
    this.stagingPool.set(bytes, pool);
    await this.checkErrors();
    return results;
  }

  /** The values of a tensor with no buffer yet (f16 storage before its first binding). */
  private hostValues(source: GpuTensor): Float32Array {
    return source.storage.pending?.slice(0, source.size) ?? new Float32Array(source.size);
  }

  fill(t: Tensor, value: number): void {
    const out = this.gpu(t);
    const bound = Number.isInteger(value) && value >= 0 ? value + 1 : Infinity;
    out.storage.labelBound = Math.max(bound, out.size < out.storage.elements ? out.storage.labelBound : 0);
    if (!out.storage.buffer) {
      (out.storage.pending ??= new Float32Array(out.storage.elements)).fill(value, 0, out.size);
      return;
    }
    this.dispatch("fill.wgsl", {}, [out], { u32: [out.size], f32: [value] }, this.grid1D(out.size));
  }

  async flush(): Promise<void> {
    this.checkAlive();
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  dispose(): void {
    this.lostMessage = "WebGPU backend used after dispose()";
    this.encoder = null;
    this.pass = null;
    for (const buffer of this.buffers) buffer.destroy();
    this.buffers.clear();
    this.bindGroups.clear();
    this.device.destroy();
  }

  // ---- stem -----------------------------------------------------------------------------------

  patchEmbedForward(images: Tensor, weight: Tensor, out: Tensor): void {
    const { H, W, C, p } = shapes.patchEmbedDims("patchEmbedForward", images, weight, out, "out");
    const o = this.act(out);
    this.dispatch(
      "patch_embed_forward.wgsl",
      {},
      [this.act(images), this.gpu(weight), o],
      { u32: [o.size, H, W, C, p] },
      this.grid1D(o.size),
    );
  }

  patchEmbedBackwardWeight(images: Tensor, dOut: Tensor, dWeight: Tensor): void {
    const { B, H, W, C, p } = shapes.patchEmbedDims(
      "patchEmbedBackwardWeight",
      images,
      dWeight,
      dOut,
      "dOut",
    );
    const pixels = B * (H / p) * (W / p);
    const taps = 3 * p * p;
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const { rowsPerChunk, chunks } = chunking(pixels, cBlocks * taps);
    const partial = this.scratch("partial", chunks * C * taps);
    this.dispatch(
      "patch_embed_backward_weight.wgsl",
      {},
      [this.act(images), this.gpu(dOut), partial],
      { u32: [pixels, H, W, C, p, rowsPerChunk] },
      [cBlocks, taps, chunks],
    );
    this.sumSlices(partial, chunks, C * taps, this.gpu(dWeight), null, false);
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
    this.dispatch(
      "depthwise_conv_backward_weight.wgsl",
      {},
      [this.act(x), this.gpu(dOut), partial],
      { u32: [B * H, H, W, C, k, rowsPerChunk] },
      [cBlocks, tapGroups, chunks],
    );
    this.sumSlices(partial, chunks, k * k * C, this.gpu(dWeight), null, false);
  }

  /** The forward conv, or (transposed) the input gradient: the kernel flipped, added into out. */
  private depthwiseConv(
    { B, H, W, C, k }: ReturnType<typeof shapes.depthwiseDims>,
    x: Tensor,
    weight: Tensor,
    out: Tensor,
    backward: boolean,
  ): void {
    const threads = B * Math.ceil(H / WG.DEPTHWISE_ROWS) * W * C; // each thread computes a few rows
    this.dispatch(
      "depthwise_conv.wgsl",
      { FLIP: backward, ACCUMULATE: backward },
      [backward ? this.gpu(x) : this.act(x), this.gpu(weight), backward ? this.gpu(out) : this.act(out)],
      { u32: [threads, H, W, C, k] },
      this.grid1D(threads),
    );
  }

  // ---- linear ---------------------------------------------------------------------------------

  linearForward(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor): void {
    const op = "linearForward";
    const [N, K] = weight.shape;
    const M = shapes.linearDims(op, x, weight, "x", K);
    shapes.linearOutput(op, "out", out, M * N, `[${M}, ${N}]`);
    shapes.linearOutput(op, "bias", bias, N, `[${N}]`);
    this.gemm(this.act(x), this.gpu(weight), bias && this.gpu(bias), this.act(out), M, N, K, {
      TRANS_A: false,
      TRANS_B: true,
    });
  }

  linearBackwardInput(dOut: Tensor, weight: Tensor, dx: Tensor): void {
    const [N, K] = weight.shape;
    const M = shapes.linearDims("linearBackwardInput", dOut, weight, "dOut", N);
    shapes.linearOutput("linearBackwardInput", "dx", dx, M * K, `[${M}, ${K}]`);
    this.gemm(this.gpu(dOut), this.gpu(weight), null, this.gpu(dx), M, K, N, {
      TRANS_A: false,
      TRANS_B: false,
    });
  }

  linearBackwardWeight(x: Tensor, dOut: Tensor, dWeight: Tensor, dBias: Tensor | null): void {
    const op = "linearBackwardWeight";
    const [N, K] = dWeight.shape;
    const M = shapes.linearDims(op, x, dWeight, "x", K);
    shapes.linearOutput(op, "dOut", dOut, M * N, `[${M}, ${N}]`);
    shapes.linearOutput(op, "dBias", dBias, N, `[${N}]`);
    const d = this.gpu(dOut);
    this.gemm(d, this.act(x), null, this.gpu(dWeight), N, K, M, { TRANS_A: true, TRANS_B: false });
    if (dBias) this.columnSums(d, M, N, this.gpu(dBias));
  }

  /**
   * out[R, S] = A · B (+ bias), contracting over T. Few output tiles with a long contraction
   * (the weight gradient) use split-K: partial products per T slice, then sum_slices.
   */
  private gemm(
    a: GpuTensor,
    b: GpuTensor,
    bias: GpuTensor | null,
    out: GpuTensor,
    R: number,
    S: number,
    T: number,
    transpose: { TRANS_A: boolean; TRANS_B: boolean },
  ): void {
    if (out.size === 0) return;
    const tiles = Math.ceil(R / WG.GEMM_TILE) * Math.ceil(S / WG.GEMM_TILE);
    const wantedSlices = Math.max(1, Math.min(Math.floor(512 / tiles), Math.floor(T / 256)));
    const step = WG.GEMM_TILE_T;
    const tPerSlice = Math.max(step, Math.ceil(T / wantedSlices / step) * step);
    const slices = Math.max(1, Math.ceil(T / tPerSlice));
    const grid: [number, number, number] = [Math.ceil(S / WG.GEMM_TILE), Math.ceil(R / WG.GEMM_TILE), slices];
    if (slices === 1) {
      this.dispatch(
        "gemm.wgsl",
        { ...transpose, HAS_BIAS: bias !== null, SPLIT_K: false },
        [a, b, bias ?? this.dummy, out],
        { u32: [R, S, T, Math.max(T, 1)] },
        grid,
      );
      return;
    }
    const partial = this.scratch("partial", slices * R * S);
    this.dispatch(
      "gemm.wgsl",
      { ...transpose, HAS_BIAS: false, SPLIT_K: true },
      [a, b, this.dummy, partial],
      { u32: [R, S, T, tPerSlice] },
      grid,
    );
    this.sumSlices(partial, slices, R * S, out, bias, false);
  }

  /** out[c] = Σ rows of x [R, C]: per-chunk sums, then sum_slices. */
  private columnSums(x: GpuTensor, R: number, C: number, out: GpuTensor): void {
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const { rowsPerChunk, chunks } = chunking(R, cBlocks);
    const partial = this.scratch("partial", chunks * C);
    this.dispatch("column_sums.wgsl", {}, [x, partial], { u32: [R, C, rowsPerChunk] }, [cBlocks, 1, chunks]);
    this.sumSlices(partial, chunks, C, out, null, false);
  }

  /** out[i] (+)= Σ_z partial[offset + z·stride + i] (+ bias[i % bias.size]) for i < len. */
  private sumSlices(
    partial: GpuTensor,
    slices: number,
    len: number,
    out: GpuTensor,
    bias: GpuTensor | null,
    accumulate: boolean,
    stride = len,
    offset = 0,
  ): void {
    // Lanes per output: enough that no thread adds more than ~16 slices.
    const lanes = slices <= 16 ? 1 : slices <= 64 ? 4 : 16;
    this.dispatch(
      "sum_slices.wgsl",
      { HAS_BIAS: bias !== null, ACCUMULATE: accumulate, LANES: lanes },
      [partial, bias ?? this.dummy, out],
      { u32: [len, slices, stride, offset, bias?.size ?? 1] },
      this.grid1D(len, WG.THREADS / lanes),
    );
  }

  // ---- bias + GELU + BatchNorm ----------------------------------------------------------------

  biasGeluBatchNormForward(
    z: Tensor,
    bias: Tensor,
    gamma: Tensor,
    beta: Tensor,
    runningMean: Tensor,
    runningVar: Tensor,
    saved: Tensor,
    residual: Tensor | null,
    out: Tensor,
    training: boolean,
  ): void {
    const op = "biasGeluBatchNormForward";
    const { C, R } = shapes.batchNormDims(op, z, { bias, gamma, beta, runningMean, runningVar }, saved, {
      residual,
      out,
    });
    if (residual && this.gpu(residual).storage === this.gpu(out).storage) {
      throw new Error(`webgpu ${op}: residual may not alias out`);
    }
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    let stats: GpuTensor;
    if (training) {
      const { rowsPerChunk, chunks } = chunking(R, cBlocks);
      const partial = this.scratch("partial", chunks * 2 * C);
      stats = this.gpu(saved);
      this.dispatch(
        "bias_gelu_statistics.wgsl",
        {},
        [this.act(z), this.gpu(bias), partial],
        { u32: [R, C, rowsPerChunk] },
        [cBlocks, 1, chunks],
      );
      this.dispatch(
        "batchnorm_finalize.wgsl",
        { TRAINING: true },
        [partial, this.gpu(runningMean), this.gpu(runningVar), stats],
        { u32: [R, C, rowsPerChunk, chunks] },
        [Math.ceil(C / WG.FINALIZE_CHANNELS), 1, 1],
      );
    } else {
      stats = this.scratch("stats", 2 * C);
      this.dispatch(
        "batchnorm_finalize.wgsl",
        { TRAINING: false },
        [this.dummy, this.gpu(runningMean), this.gpu(runningVar), stats],
        { u32: [R, C, 1, 0] },
        [Math.ceil(C / WG.FINALIZE_CHANNELS), 1, 1],
      );
    }
    const o = this.act(out);
    this.dispatch(
      "bias_gelu_batchnorm_normalize.wgsl",
      { HAS_RESIDUAL: residual !== null },
      [
        this.act(z),
        this.gpu(bias),
        this.gpu(gamma),
        this.gpu(beta),
        stats,
        residual ? this.act(residual) : this.dummy,
        o,
      ],
      { u32: [o.size, C] },
      this.grid1D(o.size),
    );
  }

  biasGeluBatchNormBackward(
    z: Tensor,
    bias: Tensor,
    gamma: Tensor,
    saved: Tensor,
    dOut: Tensor,
    dz: Tensor,
    dBias: Tensor,
    dGamma: Tensor,
    dBeta: Tensor,
  ): void {
    const { C, R } = shapes.batchNormDims(
      "biasGeluBatchNormBackward",
      z,
      { bias, gamma, dBias, dGamma, dBeta },
      saved,
      {
        dOut,
        dz,
      },
    );
    const cBlocks = Math.ceil(C / WG.CHANNELS);
    const { rowsPerChunk, chunks } = chunking(R, cBlocks);
    const partial = this.scratch("partial", chunks * 2 * C);
    const sums = this.scratch("sums", 2 * C);
    const [zT, biasT, savedT] = [this.act(z), this.gpu(bias), this.gpu(saved)];
    this.dispatch(
      "batchnorm_backward_sums.wgsl",
      {},
      [zT, biasT, savedT, this.gpu(dOut), partial],
      { u32: [R, C, rowsPerChunk] },
      [cBlocks, 1, chunks],
    );
    this.sumSlices(partial, chunks, 2 * C, sums, null, false);
    this.sumSlices(sums, 1, C, this.gpu(dBeta), null, false, C, 0);
    this.sumSlices(sums, 1, C, this.gpu(dGamma), null, false, C, C);
    this.dispatch(
      "bias_gelu_batchnorm_backward.wgsl",
      {},
      [zT, biasT, this.gpu(gamma), savedT, sums, this.gpu(dOut), this.gpu(dz), partial],
      { u32: [R, C, rowsPerChunk] },
      [cBlocks, 1, chunks],
    );
    this.sumSlices(partial, chunks, C, this.gpu(dBias), null, false);
  }

  // ---- head -----------------------------------------------------------------------------------

  averagePoolForward(x: Tensor, out: Tensor): void {
    const { B, H, W, C } = shapes.averagePoolDims("averagePoolForward", x, out);
    this.dispatch(
      "average_pool_forward.wgsl",
      {},
      [this.act(x), this.gpu(out)],
      { u32: [B, H * W, C] },
      [Math.ceil(C / WG.POOL_CHANNELS), B, 1],
    );
  }

  averagePoolBackward(dOut: Tensor, dx: Tensor): void {
    const { H, W, C } = shapes.averagePoolDims("averagePoolBackward", dx, dOut);
    this.dispatch(
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
    this.dispatch(
      "softmax_cross_entropy.wgsl",
      { HAS_GRAD: dLogits !== null },
      [this.gpu(logits), this.gpu(labels), dLogits ? this.gpu(dLogits) : this.dummy, this.gpu(metrics)],
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
      this.dispatch("sum_squares.wgsl", { DIRECT: true }, [this.gpu(g), this.gpu(sumSquares)], { u32: [n] }, [
        1,
        1,
        1,
      ]);
      return;
    }
    const partial = this.scratch("squares", groups);
    this.dispatch("sum_squares.wgsl", { DIRECT: false }, [this.gpu(g), partial], { u32: [n] }, [
      groups,
      1,
      1,
    ]);
    this.sumSlices(partial, groups, 1, this.gpu(sumSquares), null, true);
  }

  optimizerStep(
    param: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    sumSquares: Tensor,
    hyper: OptimizerHyper,
  ): void {
    if (hyper.kind !== "adamw" && hyper.kind !== "sgd") {
      throw new Error(`webgpu optimizerStep: unknown optimizer "${hyper.kind}"`);
    }
    shapes.optimizerDims(param, grad, m, v, sumSquares);
    const p = this.gpu(param);
    this.dispatch(
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
    this.dispatch(
      "moving_average.wgsl",
      {},
      [a, this.gpu(value)],
      { u32: [a.size], f32: [decay] },
      this.grid1D(a.size),
    );
  }

  // ---- plumbing -------------------------------------------------------------------------------

  private gpu(t: Tensor): GpuTensor {
    if (!(t instanceof GpuTensor)) throw new Error("WebGPU backend: tensor was not created by this backend");
    return t;
  }

  /** An activation argument: with f16, a spatial one [B, H, W, C] first bound here is stored f16. */
  private act(t: Tensor): GpuTensor {
    const tensor = this.gpu(t);
    if (!tensor.storage.buffer) {
      this.allocate(tensor.storage, this.precision === "f16" && t.shape.length === 4);
    }
    return tensor;
  }

  /** Creates the storage's buffer and uploads the values that were waiting on the host. */
  private allocate(storage: Storage, half: boolean): void {
    const bytes = storage.elements * (half ? 2 : 4);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    storage.buffer = this.createBuffer(Math.max(16, Math.ceil(bytes / 16) * 16), usage);
    storage.half = half;
    const pending = storage.pending;
    storage.pending = null;
    if (pending) this.upload(new GpuTensor([storage.elements], storage.elements, storage), pending);
  }

  /** Copies host values into the tensor in queue order (an f16 tensor via an f32 staging copy). */
  private upload(target: GpuTensor, data: Float32Array): void {
    // Queue writes take effect at once, so earlier recorded work must be submitted first.
    if (this.encoder) this.submit();
    const destination = target.storage.half ? this.scratch("upload", target.size) : target;
    // writeBuffer takes no shared memory (the WASM backend's heap is a SharedArrayBuffer).
    const source = data.buffer instanceof ArrayBuffer
      ? data as Float32Array<ArrayBuffer>
      : new Float32Array(data);
    if (!destination.storage.buffer) this.allocate(destination.storage, false);
    this.device.queue.writeBuffer(
      destination.storage.buffer!,
      0,
      source.buffer,
      source.byteOffset,
      source.byteLength,
    );
    // sum_slices over one slice is a converting copy.
    if (destination !== target) this.sumSlices(destination, 1, target.size, target, null, false);
  }

  private createBuffer(size: number, usage: number): GPUBuffer {
    const buffer = this.device.createBuffer({ size, usage });
    this.buffers.add(buffer);
    return buffer;
  }

  /** A shared scratch tensor of at least `floats` elements, grown (never shrunk) on demand. */
  private scratch(name: string, floats: number): GpuTensor {
    const current = this.scratchTensors.get(name);
    if (current && current.size >= floats) return this.view(current, [floats]) as GpuTensor;
    if (current?.storage.buffer) {
      // Recorded commands may still use the old buffer: destroy it after the next submit.
      this.retired.push(current.storage.buffer);
      for (const key of this.bindGroups.keys()) {
        if (key.includes(`#${current.storage.id}:`)) this.bindGroups.delete(key);
      }
    }
    const grown = this.tensor([Math.max(floats, 2 * (current?.size ?? 0))]) as GpuTensor;
    this.scratchTensors.set(name, grown);
    return this.view(grown, [floats]) as GpuTensor;
  }

  /** A 1-D grid of workgroups covering n items, `perGroup` each (2-D past the per-dimension limit). */
  private grid1D(n: number, perGroup: number = WG.THREADS): [number, number, number] {
    const groups = Math.ceil(n / perGroup);
    const x = Math.min(groups, this.device.limits.maxComputeWorkgroupsPerDimension);
    return [x, Math.ceil(groups / x), 1];
  }

  /**
   * The kernel compiled for these tensors: a binding whose tensor is stored f16 gets element type
   * f16 (its `<name>_t` alias), e.g. "gemm.wgsl:hff" for an f16 A.
   */
  private kernel(file: string, tensors: GpuTensor[]): { key: string; kernel: Kernel } {
    const half = tensors.map((t) => t.storage.half);
    const key = half.includes(true) ? `${file}:${half.map((h) => (h ? "h" : "f")).join("")}` : file;
    let kernel = this.kernels.get(key);
    if (kernel) return { key, kernel };
    let code = loadShader(file);
    const bindings = parseBindings(file, code);
    if (tensors.length !== bindings.length - 1) {
      throw new Error(`shaders/${file}: ${tensors.length} tensors for ${bindings.length - 1} bindings`);
    }
    half.forEach((isHalf, i) => {
      const { name, flexible } = bindings[i + 1];
      if (!isHalf) return;
      if (!flexible) throw new Error(`shaders/${file}: ${name} takes float32, not an f16 activation`);
      code = code.replace(`alias ${name}_t = f32;`, `alias ${name}_t = f16;`);
    });
    if (half.includes(true)) code = `enable f16;\n${code}`;
    const bindGroupLayout = this.device.createBindGroupLayout({
      label: key,
      entries: bindings.map(({ kind }, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: kind, hasDynamicOffset: kind === "uniform" },
      })),
    });
    kernel = {
      module: this.device.createShaderModule({ label: key, code }),
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] }),
      bindGroupLayout,
      storageKinds: bindings.slice(1).map((b) => b.kind),
    };
    this.kernels.set(key, kernel);
    return { key, kernel };
  }

  private pipeline(file: string, constants: Constants, tensors: GpuTensor[]): GpuPipeline {
    const { key: kernelKey, kernel } = this.kernel(file, tensors);
    const key = `${kernelKey}${JSON.stringify(constants)}`;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const values: Record<string, number> = {};
      for (const [name, value] of Object.entries(constants)) values[name] = Number(value);
      pipeline = this.device.createComputePipeline({
        label: key,
        layout: kernel.layout,
        compute: { module: kernel.module, entryPoint: "main", constants: values },
      });
      this.pipelines.set(key, pipeline);
    }
    return { key, kernel, pipeline };
  }

  /** Records one dispatch; `tensors` fill bindings 1, 2, ... in order. */
  private dispatch(
    file: string,
    constants: Constants,
    tensors: GpuTensor[],
    uniforms: Uniforms,
    grid: [number, number, number],
  ): void {
    this.checkAlive();
    if (grid[0] * grid[1] * grid[2] === 0 || tensors.some((t) => t.size === 0)) return;
    for (const t of tensors) if (!t.storage.buffer) this.allocate(t.storage, false);
    const { key, kernel, pipeline } = this.pipeline(file, constants, tensors);
    if (tensors.length !== kernel.storageKinds.length) {
      throw new Error(
        `shaders/${file}: ${tensors.length} tensors for ${kernel.storageKinds.length} bindings`,
      );
    }
    this.countTraffic(kernel, tensors);
    if (this.ringUsed + this.ringSlot > this.ringHost.byteLength) this.submit();
    const offset = this.ringUsed;
    this.ringUsed += this.ringSlot;
    const words = new DataView(this.ringHost, offset, UNIFORM_BYTES);
    let at = 0;
    for (const value of uniforms.u32 ?? []) words.setUint32(4 * at++, value, true);
    for (const value of uniforms.f32 ?? []) words.setFloat32(4 * at++, value, true);

    const groupKey = key + tensors.map((t) => `#${t.storage.id}:${t.size}`).join("");
    let bindGroup = this.bindGroups.get(groupKey);
    if (!bindGroup) {
      bindGroup = this.device.createBindGroup({
        layout: kernel.bindGroupLayout,
        entries: [
          { binding: 0, resource: { buffer: this.ring, offset: 0, size: UNIFORM_BYTES } },
          ...tensors.map((t, i) => ({
            binding: i + 1,
            resource: { buffer: t.storage.buffer!, offset: 0, size: t.bindingBytes },
          })),
        ],
      });
      this.bindGroups.set(groupKey, bindGroup);
    }
    const pass = this.openPass(key);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup, [offset]);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    if (this.profiler) this.endPass();
  }

  private countTraffic(kernel: Kernel, tensors: GpuTensor[]): void {
    this.traffic.dispatches++;
    tensors.forEach((t, i) => {
      if (t.storage === this.dummy.storage) return;
      if (kernel.storageKinds[i] === "storage") this.traffic.writeBytes += t.bindingBytes;
      else this.traffic.readBytes += t.bindingBytes;
    });
  }

  /** The open compute pass; in profile mode a new pass per dispatch, with timestamps around it. */
  private openPass(label: string): GPUComputePassEncoder {
    const profiler = this.profiler;
    if (profiler && profiler.labels.length === PROFILE_CAPACITY) this.submit();
    this.encoder ??= this.device.createCommandEncoder();
    if (profiler) {
      const index = 2 * profiler.labels.length;
      profiler.labels.push(describeKernel(label));
      this.pass = this.encoder.beginComputePass({
        timestampWrites: {
          querySet: profiler.querySet,
          beginningOfPassWriteIndex: index,
          endOfPassWriteIndex: index + 1,
        },
      });
    }
    this.pass ??= this.encoder.beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Submits the recorded work with its uniforms; errors are collected for the next flush/read. */
  private submit(): void {
    this.endPass();
    if (this.encoder) {
      const profiler = this.profiler;
      let readback: GPUBuffer | null = null;
      if (profiler && profiler.labels.length > 0) {
        const bytes = 16 * profiler.labels.length;
        const resolved = this.createBuffer(bytes, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
        readback = this.createBuffer(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
        this.encoder.resolveQuerySet(profiler.querySet, 0, 2 * profiler.labels.length, resolved, 0);
        this.encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
        this.retired.push(resolved);
      }
      this.device.queue.writeBuffer(this.ring, 0, this.ringHost, 0, this.ringUsed);
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
      this.ringUsed = 0;
      if (profiler && readback) {
        profiler.submitted.push({ readback, labels: profiler.labels });
        profiler.labels = [];
      }
    }
    for (const buffer of this.retired) {
      buffer.destroy();
      this.buffers.delete(buffer);
    }
    this.retired = [];
    this.pendingErrors.push(this.device.popErrorScope(), this.device.popErrorScope());
    this.pushErrorScopes();
  }

  private pushErrorScopes(): void {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
  }

  private checkAlive(): void {
    if (this.lostMessage) throw new Error(this.lostMessage);
  }

  private async checkErrors(): Promise<void> {
    const errors = await Promise.all(this.pendingErrors);
    this.pendingErrors = [];
    this.checkAlive();
    for (const error of errors) {
      if (error instanceof GPUOutOfMemoryError) {
        const held = (this.allocatedBytes / 2 ** 20).toFixed(0);
        throw new Error(
          `WebGPU ran out of memory holding ${held} MiB (${error.message}): use a smaller batch`,
        );
      }
      if (error) throw new Error(`WebGPU error: ${error.message}`);
    }
    if (this.uncapturedMessage) throw new Error(`WebGPU error: ${this.uncapturedMessage}`);
  }
}

interface GpuPipeline {
  key: string;
  kernel: Kernel;
  pipeline: GPUComputePipeline;
}

/** One more than the largest value, or Infinity if one is not a non-negative integer. */
function labelBound(data: Float32Array): number {
  let bound = 0;
  for (const x of data) {
    if (!Number.isInteger(x) || x < 0) return Infinity;
    if (x >= bound) bound = x + 1;
  }
  return bound;
}
