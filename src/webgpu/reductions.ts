// The two-level reductions: a first level of per-chunk (or per-slice) partial sums, sized so the
// grid keeps the GPU busy, then sum_slices.wgsl adding the partials; and the GEMM, whose weight
// gradient is such a reduction over B·H·W (split-K).

import type { Launcher, SliceSum } from "./kernels.ts";
import { WG } from "./shader_constants.ts";
import type { GpuTensor } from "./tensor.ts";

/**
 * Splits `rows` into chunks so that the first level's grid has about `target` workgroups (enough
 * threads to keep the memory busy; the second level adds one partial per chunk).
 */
export function chunking(rows: number, otherWorkgroups: number, target = 1024) {
  const wanted = Math.max(1, Math.min(Math.ceil(target / otherWorkgroups), Math.ceil(rows / WG.ROW_LANES)));
  const rowsPerChunk = Math.ceil(rows / wanted);
  return { rowsPerChunk, chunks: Math.ceil(rows / rowsPerChunk) };
}

/**
 * What a producer's epilogue (gemm.wgsl, depthwise_conv.wgsl) reduces for the bias-GELU-BatchNorm
 * unit that reads its output, one partial per tile of rows: `partial` [tiles, 2, C] = (mean, M2)
 * of GELU(out + bias) ("statistics", out being the unit's z) or (Σ out, Σ out·x̂) ("backwardSums",
 * out being the unit's dOut).
 */
export type UnitEpilogue =
  | { kind: "statistics"; bias: GpuTensor; partial: GpuTensor }
  | { kind: "backwardSums"; bias: GpuTensor; z: GpuTensor; saved: GpuTensor; partial: GpuTensor };

/** The bindings an epilogue adds after its producer's own (unitBias, z, saved, tilePartial). */
export function epilogueBindings(run: Launcher, e: UnitEpilogue | null): GpuTensor[] {
  return [
    e?.bias ?? run.placeholder,
    e?.kind === "backwardSums" ? e.z : run.placeholder,
    e?.kind === "backwardSums" ? e.saved : run.placeholder,
    e?.partial ?? run.placeholderOutput,
  ];
}

/** The constants that switch an epilogue on. */
export function epilogueConstants(e: UnitEpilogue | null) {
  return { STATISTICS: e?.kind === "statistics", BACKWARD_SUMS: e?.kind === "backwardSums" };
}

/** The split-K slices of an out[R, S] GEMM contracting over T: few output tiles, long contraction. */
function gemmSlices(R: number, S: number, T: number) {
  const tiles = Math.ceil(R / WG.GEMM_TILE) * Math.ceil(S / WG.GEMM_TILE);
  const wantedSlices = Math.max(1, Math.min(Math.floor(512 / tiles), Math.floor(T / 256)));
  const step = WG.GEMM_TILE_T;
  const tPerSlice = Math.max(step, Math.ceil(T / wantedSlices / step) * step);
  return { tPerSlice, slices: Math.max(1, Math.ceil(T / tPerSlice)) };
}

/** Whether gemm() can run an epilogue at these sizes (not where it splits K). */
export function gemmTakesEpilogue(R: number, S: number, T: number): boolean {
  return gemmSlices(R, S, T).slices === 1;
}

/**
 * out[R, S] = A · B (+ bias), contracting over T. Few output tiles with a long contraction
 * (the weight gradient) use split-K: partial products per T slice, then sum_slices.
 */
export function gemm(
  run: Launcher,
  a: GpuTensor,
  b: GpuTensor,
  bias: GpuTensor | null,
  out: GpuTensor,
  R: number,
  S: number,
  T: number,
  transpose: { TRANS_A: boolean; TRANS_B: boolean },
  epilogue: UnitEpilogue | null = null,
): void {
  if (out.size === 0) return;
  const { tPerSlice, slices } = gemmSlices(R, S, T);
  const grid: [number, number, number] = [Math.ceil(S / WG.GEMM_TILE), Math.ceil(R / WG.GEMM_TILE), slices];
  const FULL_TILES = R % WG.GEMM_TILE === 0 && S % WG.GEMM_TILE === 0 && T % WG.GEMM_TILE_T === 0;
  if (slices === 1) {
    run.launch(
      "gemm.wgsl",
      {
        ...transpose,
        HAS_BIAS: bias !== null,
        SPLIT_K: false,
        FULL_TILES,
        ...epilogueConstants(epilogue),
      },
      [a, b, bias ?? run.placeholder, out, ...epilogueBindings(run, epilogue)],
      { u32: [R, S, T, Math.max(T, 1)] },
      grid,
    );
    return;
  }
  if (epilogue) throw new Error("gemm: an epilogue needs an unsplit contraction (gemmTakesEpilogue)");
  const partial = run.scratch("partial", slices * R * S);
  run.launch(
    "gemm.wgsl",
    { ...transpose, HAS_BIAS: false, SPLIT_K: true, FULL_TILES },
    [a, b, run.placeholder, partial, ...epilogueBindings(run, null)],
    { u32: [R, S, T, tPerSlice] },
    grid,
  );
  sumSlices(run, partial, slices, R * S, out, bias, false);
}

/** out[c] = Σ rows of x [R, C]: per-chunk sums, then sum_slices. */
export function columnSums(
  run: Launcher,
  x: GpuTensor,
  R: number,
  C: number,
  out: GpuTensor,
): void {
  const cBlocks = Math.ceil(C / WG.CHANNELS);
  const { rowsPerChunk, chunks } = chunking(R, cBlocks);
  const partial = run.scratch("partial", chunks * C);
  run.launch("column_sums.wgsl", {}, [x, partial], { u32: [R, C, rowsPerChunk] }, [cBlocks, 1, chunks]);
  sumSlices(run, partial, chunks, C, out, null, false);
}

/** Lanes per output of a sum_slices.wgsl sum: enough that no thread adds more than ~16 slices. */
export function sliceLanes(slices: number): number {
  return slices <= 16 ? 1 : slices <= 64 ? 4 : 16;
}

/**
 * out[i] (+)= Σ_z partial[z·len + i] (+ bias[i % bias.size]) for i < len, in one dispatch with
 * the sum the runtime is holding back (Launcher.deferSum), unless that one touches these tensors.
 */
export function sumSlices(
  run: Launcher,
  partial: GpuTensor,
  slices: number,
  len: number,
  out: GpuTensor,
  bias: GpuTensor | null,
  accumulate: boolean,
): void {
  const joined = run.takeDeferredSum(bias ? [partial, bias, out] : [partial, out]);
  launchSliceSums(run, { partial, slices, len, out }, bias, accumulate, joined);
}

/** One sum_slices.wgsl dispatch: `first` (with its bias and accumulation), then `second` if any. */
export function launchSliceSums(
  run: Launcher,
  first: SliceSum,
  bias: GpuTensor | null,
  accumulate: boolean,
  second: SliceSum | null,
): void {
  const lanes = sliceLanes(first.slices), lanesB = sliceLanes(second?.slices ?? 1);
  const groups = Math.ceil(first.len / (WG.THREADS / lanes));
  const groupsB = second ? Math.ceil(second.len / (WG.THREADS / lanesB)) : 0;
  run.launch(
    "sum_slices.wgsl",
    { HAS_BIAS: bias !== null, ACCUMULATE: accumulate },
    [
      first.partial,
      bias ?? run.placeholder,
      first.out,
      second?.partial ?? run.placeholder,
      second?.out ?? run.placeholderOutput,
    ],
    {
      u32: [
        first.len,
        first.slices,
        bias?.size ?? 1,
        lanes,
        groups,
        second?.len ?? 0,
        second?.slices ?? 0,
        lanesB,
      ],
    },
    run.grid1D(groups + groupsB, 1),
  );
}
