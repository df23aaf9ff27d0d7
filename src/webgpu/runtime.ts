// The WebGPU runtime, the allocator and launcher under the ops (src/webgpu/backend.ts): the device,
// tensors' buffers (f16 for activations under --precision f16, see Storage), host writes and batched
// read-back through pooled staging buffers, shared scratch, the uniform ring, recording dispatches
// into one command encoder (submitted only when the host needs a result or the ring is full, so a
// training step is one submit), the per-step traffic count, and error scopes.
//
// Per-dispatch parameters go in a ring of aligned uniform slots bound with a dynamic offset, written
// with one queue.writeBuffer just before each submit, so bind groups can be cached per (kernel,
// buffers, sizes) and pipelines per (kernel, specialisation constants).
//
// Over 400 lines on purpose: it is one job, tinygrad's runtime (allocate, launch, submit). Buffers,
// the uniform ring, the open pass and the error scopes share one command encoder and one submit
// point, so splitting them would pass that state between files rather than separate concerns.

import { numel, type Packed, type Tensor, type TensorRole } from "../backend.ts";
import {
  type Grid,
  type Kernel,
  KernelCache,
  type Launcher,
  type SliceSum,
  type Uniforms,
} from "./kernels.ts";
import { type Constants, type KernelTime, Profiler } from "./profiler.ts";
import { launchSliceSums, sumSlices, type UnitEpilogue } from "./reductions.ts";
import { WG } from "./shader_constants.ts";
import {
  describeShape,
  GpuTensor,
  labelBound,
  overlaps,
  type Precision,
  sameView,
  Storage,
} from "./tensor.ts";

const UNIFORM_BYTES = 64;
/**
 * Uniform slots, so at most this many dispatches per submit: a training step (~200 dispatches at
 * depth 8) is one submit. Recording one costs ~2 ms of CPU; the next step's write() submits it, and
 * the GPU runs it while the CPU records the next one.
 */
const RING_SLOTS = 1024;

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

/** A launch held back (holdProducer): it writes `out`, in `tiles` tiles of `rowsPerTile` rows. */
export interface HeldProducer {
  out: GpuTensor;
  tiles: number;
  rowsPerTile: number;
  launch: (epilogue: UnitEpilogue | null) => void;
}

export class GpuRuntime implements Launcher {
  readonly placeholder: GpuTensor;
  readonly placeholderOutput: GpuTensor;
  private readonly kernels: KernelCache;
  private readonly buffers = new Set<GPUBuffer>();
  private nextStorageId = 0;

  private readonly ring: GPUBuffer;
  private readonly ringHost: ArrayBuffer;
  private readonly ringSlot: number;
  private ringUsed = 0;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly scratchTensors = new Map<string, GpuTensor>();
  private retired: GPUBuffer[] = [];
  private readonly stagingPool = new Map<number, GPUBuffer[]>();

  private readonly profiler: Profiler | null = null;
  private traffic: Traffic = { dispatches: 0, readBytes: 0, writeBytes: 0 };
  private deferredSum: SliceSum | null = null;
  private heldProducer: HeldProducer | null = null;
  private pendingErrors: Promise<GPUError | null>[] = [];
  private lostMessage: string | null = null;
  private uncapturedMessage: string | null = null;

  /** `profile`: time every dispatch with timestamp queries (when the adapter has them). */
  protected constructor(readonly device: GPUDevice, readonly precision: Precision, profile: boolean) {
    device.lost.then((info) => {
      this.lostMessage ??= `WebGPU device lost (${info.reason}): ${info.message}`;
    });
    device.addEventListener("uncapturederror", (event) => {
      this.uncapturedMessage ??= (event as GPUUncapturedErrorEvent).error.message;
    });
    this.pushErrorScopes();
    this.kernels = new KernelCache(device);
    this.ringSlot = Math.max(UNIFORM_BYTES, device.limits.minUniformBufferOffsetAlignment);
    this.ringHost = new ArrayBuffer(this.ringSlot * RING_SLOTS);
    this.ring = this.createBuffer(this.ringHost.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.placeholder = this.tensor([4]);
    this.placeholderOutput = this.tensor([4]);
    if (profile && device.features.has("timestamp-query")) this.profiler = new Profiler(device);
  }

  /** Whether dispatches are timed on the GPU (profile mode and 'timestamp-query'). */
  get profiling(): boolean {
    return this.profiler !== null;
  }

  /** Bytes of GPU memory held (tensors, scratch, staging). */
  get allocatedBytes(): number {
    let bytes = 0;
    for (const buffer of this.buffers) bytes += buffer.size;
    return bytes;
  }

  /** Waits for queued work, then returns the GPU time per kernel since the last call (profile mode). */
  async takeProfile(): Promise<KernelTime[]> {
    await this.flush();
    return await this.profiler?.take((readback) => {
      readback.destroy();
      this.buffers.delete(readback);
    }) ?? [];
  }

  /** The dispatches recorded since the last call and the bytes they bind (see Traffic). */
  takeTraffic(): Traffic {
    this.launchHeldProducer();
    const traffic = this.traffic;
    this.traffic = { dispatches: 0, readBytes: 0, writeBytes: 0 };
    return traffic;
  }

  tensor(shape: readonly number[], role: TensorRole = "state"): GpuTensor {
    this.checkAlive();
    if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new Error(`WebGPU tensor: bad shape ${describeShape(shape)}`);
    }
    const size = numel(shape);
    const half = this.precision === "f16" && role === "activation";
    const bytes = size * (half ? 2 : 4);
    const limit = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    if (bytes > limit) {
      const perRow = bytes / shape[0];
      throw new Error(
        `WebGPU tensor ${describeShape(shape)} needs ${bytes} bytes, over this device's ` +
          `maxStorageBufferBindingSize (${limit}); at most ${Math.floor(limit / perRow)} rows of its ` +
          `leading (batch) dimension fit`,
      );
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffer = this.createBuffer(Math.max(16, Math.ceil(bytes / 16) * 16), usage);
    return new GpuTensor([...shape], size, new Storage(buffer, half, size, this.nextStorageId++));
  }

  /** Parts at multiples of the device's storage-binding offset alignment. */
  pack(shapes: readonly (readonly number[])[]): Packed {
    const align = Math.max(16, this.device.limits.minStorageBufferOffsetAlignment) / 4;
    const offsets: number[] = [];
    let total = 0;
    for (const shape of shapes) {
      offsets.push(total);
      total += Math.ceil(numel(shape) / align) * align;
    }
    const whole = this.tensor([total]);
    const parts = shapes.map((shape, i) => {
      const rest = total - offsets[i];
      return this.view(new GpuTensor([rest], rest, whole.storage, offsets[i]), shape);
    });
    return { whole, parts };
  }

  view(t: Tensor, shape: readonly number[]): GpuTensor {
    const base = this.gpu(t);
    const size = numel(shape);
    if (shape.some((d) => !Number.isInteger(d) || d < 0) || size > base.size) {
      throw new Error(
        `WebGPU view: shape ${describeShape(shape)} does not fit in ${describeShape(base.shape)}`,
      );
    }
    return new GpuTensor([...shape], size, base.storage, base.offset);
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
    this.upload(target, data);
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
    const staging = this.stagingPool.get(bytes)?.pop() ??
      this.createBuffer(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.launchHeldProducer();
    this.launchDeferredSum();
    this.endPass();
    const encoder = this.encoder ??= this.device.createCommandEncoder();
    sources.forEach((s, i) =>
      encoder.copyBufferToBuffer(s.storage.buffer, s.byteOffset, staging, offsets[i], s.bindingBytes)
    );
    this.submit();
    try {
      await staging.mapAsync(GPUMapMode.READ, 0, bytes);
    } catch (error) {
      await this.checkErrors();
      throw new Error(`WebGPU read failed: ${(error as Error).message}`);
    }
    const mapped = staging.getMappedRange(0, bytes);
    const results = sources.map((s, i) =>
      s.storage.half
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

  fill(t: Tensor, value: number): void {
    const out = this.gpu(t);
    const bound = Number.isInteger(value) && value >= 0 ? value + 1 : Infinity;
    out.storage.labelBound = Math.max(bound, out.size < out.storage.elements ? out.storage.labelBound : 0);
    this.launch("fill.wgsl", {}, [out], { u32: [out.size], f32: [value] }, this.grid1D(out.size));
  }

  async flush(): Promise<void> {
    this.checkAlive();
    this.launchHeldProducer();
    this.launchDeferredSum();
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  dispose(): void {
    this.lostMessage = "WebGPU backend used after dispose()";
    this.deferredSum = null;
    this.heldProducer = null;
    this.encoder = null;
    this.pass = null;
    for (const buffer of this.buffers) buffer.destroy();
    this.buffers.clear();
    this.kernels.clear();
    this.device.destroy();
  }

  gpu(t: Tensor): GpuTensor {
    if (!(t instanceof GpuTensor)) throw new Error("WebGPU backend: tensor was not created by this backend");
    return t;
  }

  /** Copies host values into the tensor in queue order (an f16 tensor via an f32 staging copy). */
  private upload(target: GpuTensor, data: Float32Array): void {
    // Queue writes take effect at once, so earlier recorded work must be submitted first.
    this.launchHeldProducer();
    this.launchDeferredSum();
    if (this.encoder) this.submit();
    const destination = target.storage.half ? this.scratch("upload", target.size) : target;
    // writeBuffer takes no shared memory (the WASM backend's heap is a SharedArrayBuffer).
    const source = data.buffer instanceof ArrayBuffer
      ? data as Float32Array<ArrayBuffer>
      : new Float32Array(data);
    this.device.queue.writeBuffer(
      destination.storage.buffer,
      destination.byteOffset,
      source.buffer,
      source.byteOffset,
      source.byteLength,
    );
    // sum_slices over one slice is a converting copy.
    if (destination !== target) sumSlices(this, destination, 1, target.size, target, null, false);
  }

  private createBuffer(size: number, usage: number): GPUBuffer {
    const buffer = this.device.createBuffer({ size, usage });
    this.buffers.add(buffer);
    return buffer;
  }

  /** A shared scratch tensor of at least `floats` elements, grown (never shrunk) on demand. */
  scratch(name: string, floats: number): GpuTensor {
    const current = this.scratchTensors.get(name);
    if (current && current.size >= floats) return this.view(current, [floats]);
    if (current) {
      // Recorded commands may still use the old buffer: destroy it after the next submit (the sum
      // held back may use it too, so it is recorded now).
      this.launchHeldProducer();
      this.launchDeferredSum();
      this.retired.push(current.storage.buffer);
      this.kernels.forget(current.storage.id);
    }
    const grown = this.tensor([Math.max(floats, 2 * (current?.size ?? 0))]);
    this.scratchTensors.set(name, grown);
    return this.view(grown, [floats]);
  }

  /** A 1-D grid of workgroups covering n items, `perGroup` each (2-D past the per-dimension limit). */
  grid1D(n: number, perGroup: number = WG.THREADS): Grid {
    const groups = Math.ceil(n / perGroup);
    const x = Math.min(groups, this.device.limits.maxComputeWorkgroupsPerDimension);
    return [x, Math.ceil(groups / x), 1];
  }

  deferSum(sum: SliceSum): void {
    this.launchDeferredSum();
    this.deferredSum = sum;
  }

  takeDeferredSum(joining: GpuTensor[]): SliceSum | null {
    this.launchDeferredSumIfTouched(joining);
    const sum = this.deferredSum;
    this.deferredSum = null;
    return sum;
  }

  private launchDeferredSum(): void {
    const sum = this.deferredSum;
    this.deferredSum = null;
    if (sum) launchSliceSums(this, sum, null, false, null);
  }

  /** Launches the sum held back first if any of `tensors` shares bytes with its partials or output. */
  private launchDeferredSumIfTouched(tensors: GpuTensor[]): void {
    const held = this.deferredSum;
    if (held && tensors.some((t) => overlaps(t, held.partial) || overlaps(t, held.out))) {
      this.launchDeferredSum();
    }
  }

  /**
   * Holds a producer's launch (a GEMM, a depthwise conv) back until the next op: a
   * bias-GELU-BatchNorm unit reading exactly its output takes it (takeProducer) to launch it with
   * the unit's reduction as its epilogue; any other launch, read, upload or flush launches it
   * plainly first, so the work's order never changes.
   */
  holdProducer(producer: HeldProducer): void {
    this.launchHeldProducer();
    this.heldProducer = producer;
  }

  /** The held launch if it writes exactly `out` (the caller launches it), else null (it is launched). */
  takeProducer(out: GpuTensor): HeldProducer | null {
    const held = this.heldProducer;
    this.heldProducer = null;
    if (held && sameView(held.out, out)) return held;
    held?.launch(null);
    return null;
  }

  private launchHeldProducer(): void {
    const held = this.heldProducer;
    this.heldProducer = null;
    held?.launch(null);
  }

  launch(file: string, constants: Constants, tensors: GpuTensor[], uniforms: Uniforms, grid: Grid): void {
    this.checkAlive();
    this.launchHeldProducer();
    if (grid[0] * grid[1] * grid[2] === 0 || tensors.some((t) => t.size === 0)) return;
    this.launchDeferredSumIfTouched(tensors);
    const program = this.kernels.pipeline(file, constants, tensors);
    const { key, kernel, pipeline } = program;
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

    const uniform = { buffer: this.ring, offset: 0, size: UNIFORM_BYTES };
    const bindGroup = this.kernels.bindGroup(program, uniform, tensors);
    const pass = this.openPass(key);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup, [offset]);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    if (this.profiler) this.endPass();
  }

  private countTraffic(kernel: Kernel, tensors: GpuTensor[]): void {
    this.traffic.dispatches++;
    tensors.forEach((t, i) => {
      if (t.storage === this.placeholder.storage || t.storage === this.placeholderOutput.storage) return;
      if (kernel.storageKinds[i] === "storage") this.traffic.writeBytes += t.bindingBytes;
      else this.traffic.readBytes += t.bindingBytes;
    });
  }

  /** The open compute pass; in profile mode a new pass per dispatch, with timestamps around it. */
  private openPass(label: string): GPUComputePassEncoder {
    if (this.profiler?.full) this.submit();
    this.encoder ??= this.device.createCommandEncoder();
    if (this.profiler) this.pass = this.profiler.beginPass(this.encoder, label);
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
      const resolved = this.profiler?.resolve(this.encoder, (size, usage) => this.createBuffer(size, usage));
      if (resolved) this.retired.push(resolved);
      this.device.queue.writeBuffer(this.ring, 0, this.ringHost, 0, this.ringUsed);
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
      this.ringUsed = 0;
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

  checkAlive(): void {
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
