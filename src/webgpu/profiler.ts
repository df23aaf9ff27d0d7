// GPU time per kernel (profile mode, for bench/webgpu_bench.ts): each dispatch gets its own compute
// pass with timestamp queries at its start and end; at submit the timestamps are resolved into a
// read-back buffer that takeProfile maps once the work is done.

/** Constants of a pipeline specialisation: flags and small integers. */
export type Constants = Record<string, boolean | number>;

/** GPU time of one kernel (file and specialisation) over the dispatches since the last takeProfile. */
export interface KernelTime {
  kernel: string;
  dispatches: number;
  ms: number;
}

/** Timed dispatches per submit (two timestamps each). */
const CAPACITY = 1024;

export class Profiler {
  private readonly querySet: GPUQuerySet;
  /** Kernel label of each recorded dispatch in the current encoder. */
  private labels: string[] = [];
  /** Resolved timestamps of submitted encoders, waiting to be read. */
  private submitted: { readback: GPUBuffer; labels: string[] }[] = [];

  constructor(device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: "timestamp", count: 2 * CAPACITY });
  }

  /** Whether the current encoder holds as many timed dispatches as the query set does. */
  get full(): boolean {
    return this.labels.length === CAPACITY;
  }

  /** A new compute pass for one dispatch of the kernel `pipelineKey`, timestamped around. */
  beginPass(encoder: GPUCommandEncoder, pipelineKey: string): GPUComputePassEncoder {
    const index = 2 * this.labels.length;
    this.labels.push(describeKernel(pipelineKey));
    return encoder.beginComputePass({
      timestampWrites: {
        querySet: this.querySet,
        beginningOfPassWriteIndex: index,
        endOfPassWriteIndex: index + 1,
      },
    });
  }

  /**
   * Before the encoder is submitted: resolves its timestamps into a read-back buffer made by
   * `createBuffer`; returns the resolve buffer, which the caller destroys after the submit.
   */
  resolve(
    encoder: GPUCommandEncoder,
    createBuffer: (size: number, usage: number) => GPUBuffer,
  ): GPUBuffer | null {
    if (this.labels.length === 0) return null;
    const bytes = 16 * this.labels.length;
    const resolved = createBuffer(bytes, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
    const readback = createBuffer(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    encoder.resolveQuerySet(this.querySet, 0, 2 * this.labels.length, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
    this.submitted.push({ readback, labels: this.labels });
    this.labels = [];
    return resolved;
  }

  /** The GPU time per kernel of the submitted work (call after it finished); `release` frees each read-back. */
  async take(release: (buffer: GPUBuffer) => void): Promise<KernelTime[]> {
    const times = new Map<string, KernelTime>();
    for (const { readback, labels } of this.submitted) {
      await readback.mapAsync(GPUMapMode.READ);
      const stamps = new BigInt64Array(readback.getMappedRange());
      labels.forEach((kernel, i) => {
        const entry = times.get(kernel) ?? { kernel, dispatches: 0, ms: 0 };
        entry.dispatches++;
        entry.ms += Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6;
        times.set(kernel, entry);
      });
      release(readback);
    }
    this.submitted = [];
    return [...times.values()];
  }
}

/** 'gemm.wgsl:hff{"TRANS_A":true,"SPLIT_K":false}' → "gemm[TRANS_A] f16": for profiles. */
function describeKernel(pipelineKey: string): string {
  const constants = JSON.parse(pipelineKey.slice(pipelineKey.indexOf("{"))) as Constants;
  const on = Object.entries(constants).filter(([, v]) => v === true).map(([k]) => k);
  const half = pipelineKey.includes(".wgsl:") ? " f16" : "";
  return pipelineKey.slice(0, pipelineKey.indexOf(".wgsl")) + (on.length ? `[${on.join(",")}]` : "") + half;
}
