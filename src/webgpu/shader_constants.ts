// The one table of the numbers the host and the WGSL kernels share: workgroup shapes (the host's
// grids divide by them), the elements each thread or workgroup owns, the GEMM tile, BatchNorm's eps
// and momentum and the optimizer codes. The kernel loader prepends them to every shader as WGSL
// `const`s (wgslPrelude), and kernels whose code is unrolled for one value `const_assert` it, so
// changing a number here either works on both sides or fails to compile, never silently.

import { BATCHNORM_EPS, BATCHNORM_MOMENTUM, OPTIMIZER_CODE } from "../kernel_constants.ts";

export const WG = {
  /** Threads of a 1-D kernel (one element, or one group of elements, per thread). */
  THREADS: 256,
  /** The row reductions (shaders/row_lanes.wgsl): channels per workgroup × lanes over rows. */
  CHANNELS: 64,
  ROW_LANES: 4,
  /** average_pool_forward.wgsl: channels per workgroup × lanes over pixels. */
  POOL_CHANNELS: 32,
  POOL_LANES: 8,
  /** depthwise_conv.wgsl: output rows per thread. */
  DEPTHWISE_ROWS: 4,
  /** depthwise_conv_backward_weight.wgsl: adjacent taps per workgroup. */
  DEPTHWISE_TAPS: 8,
  /** gemm.wgsl: output tile (square) and contraction step. */
  GEMM_TILE: 128,
  GEMM_TILE_T: 16,
} as const;

/** Every entry of WG as `const WG_<NAME> = <n>u;`, then BatchNorm's and the optimizer's constants. */
export function wgslPrelude(): string {
  const lines = Object.entries(WG).map(([name, value]) => `const WG_${name} = ${value}u;`);
  lines.push(
    `const BATCHNORM_EPS: f32 = ${BATCHNORM_EPS};`,
    `const BATCHNORM_MOMENTUM: f32 = ${BATCHNORM_MOMENTUM};`,
    ...Object.entries(OPTIMIZER_CODE).map(([kind, code]) =>
      `const OPTIMIZER_${kind.toUpperCase()} = ${code}u;`
    ),
  );
  return lines.join("\n") + "\n";
}
