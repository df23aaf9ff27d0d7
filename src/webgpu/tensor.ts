// A WebGPU tensor: a shape over a prefix of one storage (a GPU buffer shared by the tensor and its
// views), and what the host knows about the values it put there.

import type { Tensor } from "../backend.ts";

/** Element type of tensors allocated as activations: f16 halves their traffic (shader-f16). */
export type Precision = "f32" | "f16";

/**
 * The GPU buffer behind a tensor and its views, allocated with the tensor: f16 where the tensor was
 * allocated as an activation under --precision f16, f32 otherwise.
 */
export class Storage {
  /**
   * One more than the largest value the host put here with write (rank 1) or fill; Infinity once one
   * was not a non-negative integer. Labels come from the host, so softmaxCrossEntropy checks them here
   * instead of reading them back (the shader indexes the logits with them).
   */
  labelBound = 1;
  constructor(
    readonly buffer: GPUBuffer,
    readonly half: boolean,
    readonly elements: number,
    /** Names the buffer in bind-group keys. */ readonly id: number,
  ) {}
}

export class GpuTensor implements Tensor {
  constructor(
    readonly shape: readonly number[],
    readonly size: number,
    readonly storage: Storage,
    /** Where it starts in the storage, in elements (a part of Backend.pack; views keep their base's). */
    readonly offset = 0,
  ) {}

  get byteOffset(): number {
    return this.offset * (this.storage.half ? 2 : 4);
  }

  /** The bytes a binding of this tensor covers (storage bindings come in multiples of 4 bytes). */
  get bindingBytes(): number {
    return Math.ceil(this.size * (this.storage.half ? 2 : 4) / 4) * 4;
  }
}

/** Whether two tensors' bindings share any byte of one storage. */
export function overlaps(a: GpuTensor, b: GpuTensor): boolean {
  return a.storage === b.storage && a.byteOffset < b.byteOffset + b.bindingBytes &&
    b.byteOffset < a.byteOffset + a.bindingBytes;
}

/** Whether a and b are the same elements of the same storage. */
export function sameView(a: GpuTensor, b: GpuTensor): boolean {
  return a.storage === b.storage && a.byteOffset === b.byteOffset && a.size === b.size;
}

export function describeShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** One more than the largest value, or Infinity if one is not a non-negative integer. */
export function labelBound(data: Float32Array): number {
  let bound = 0;
  for (const x of data) {
    if (!Number.isInteger(x) || x < 0) return Infinity;
    if (x >= bound) bound = x + 1;
  }
  return bound;
}
