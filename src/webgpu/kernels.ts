// The kernel compiler: a kernel's WGSL (the shared constants, its //!include pieces), its bindings
// reflected from the source, and the caches of shader modules (per f16 binding pattern), pipelines
// (per specialisation constants) and bind groups (per bound buffers and sizes).

import type { GpuTensor } from "./tensor.ts";
import type { Constants } from "./profiler.ts";
import { wgslPrelude } from "./shader_constants.ts";

export type BindingKind = "uniform" | "read-only-storage" | "storage";

export interface Binding {
  kind: BindingKind;
  name: string;
  /** Declared with element type `<name>_t`, which the host may set to f16. */
  flexible: boolean;
}

export interface Kernel {
  module: GPUShaderModule;
  layout: GPUPipelineLayout;
  bindGroupLayout: GPUBindGroupLayout;
  /** The access of each storage binding after the uniform at binding 0, as the WGSL declares it. */
  storageKinds: BindingKind[];
}

export interface Uniforms {
  u32?: number[];
  f32?: number[];
}

export type Grid = [number, number, number];

/** A plain second-level sum, out[i] = Σ_z partial[z·len + i] for i < len. */
export interface SliceSum {
  partial: GpuTensor;
  slices: number;
  len: number;
  out: GpuTensor;
}

/** What ops and reductions record work through (the runtime). */
export interface Launcher {
  /** Records one dispatch of `file`; `tensors` fill bindings 1, 2, ... in order. */
  launch(file: string, constants: Constants, tensors: GpuTensor[], uniforms: Uniforms, grid: Grid): void;
  /** A shared scratch tensor of at least `floats` elements. */
  scratch(name: string, floats: number): GpuTensor;
  /** A 1-D grid of workgroups covering n items, `perGroup` each. */
  grid1D(n: number, perGroup?: number): Grid;
  /** Bound where a kernel's optional input is absent. */
  readonly placeholder: GpuTensor;
  /** Bound where a kernel's optional output is absent (a buffer may not be both read and written). */
  readonly placeholderOutput: GpuTensor;
  /**
   * Holds a second-level sum back, to run in one dispatch with the next sum_slices launch (a unit's
   * dBias with the next weight gradient's sum); it runs alone first where a launch, read or upload
   * touches its tensors.
   */
  deferSum(sum: SliceSum): void;
  /**
   * The sum held back, which the caller now launches with its own binding `joining`, or null (also
   * when the held sum touches those tensors: then it is launched alone first).
   */
  takeDeferredSum(joining: GpuTensor[]): SliceSum | null;
}

export interface GpuPipeline {
  key: string;
  kernel: Kernel;
  pipeline: GPUComputePipeline;
}

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

export class KernelCache {
  private readonly kernels = new Map<string, Kernel>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();

  constructor(private readonly device: GPUDevice) {}

  /** The pipeline of `file` for these tensors (their f16 pattern) and constants. */
  pipeline(file: string, constants: Constants, tensors: GpuTensor[]): GpuPipeline {
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

  /** The bind group of `uniform` (binding 0, dynamic offset) and the tensors' bound prefixes. */
  bindGroup(program: GpuPipeline, uniform: GPUBufferBinding, tensors: GpuTensor[]): GPUBindGroup {
    const groupKey = program.key + tensors.map((t) => `#${t.storage.id}@${t.offset}:${t.size}`).join("");
    let bindGroup = this.bindGroups.get(groupKey);
    if (!bindGroup) {
      bindGroup = this.device.createBindGroup({
        layout: program.kernel.bindGroupLayout,
        entries: [
          { binding: 0, resource: uniform },
          ...tensors.map((t, i) => ({
            binding: i + 1,
            resource: { buffer: t.storage.buffer, offset: t.byteOffset, size: t.bindingBytes },
          })),
        ],
      });
      this.bindGroups.set(groupKey, bindGroup);
    }
    return bindGroup;
  }

  /** Drops the bind groups that bind storage `id` (its buffer is being replaced). */
  forget(id: number): void {
    for (const key of this.bindGroups.keys()) {
      if (key.includes(`#${id}@`)) this.bindGroups.delete(key);
    }
  }

  clear(): void {
    this.bindGroups.clear();
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
}
