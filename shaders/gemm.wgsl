//!include gelu.wgsl
// Tiled GEMM, the pointwise conv and the head: out[R, S] = A[R, T] · B[T, S] (+ bias[S]).
// A is stored [R, T] or, with TRANS_A, [T, R]; B is stored [T, S] or, with TRANS_B, [S, T]:
//   linearForward         x[M, K] · W[N, K]ᵀ    (TRANS_B)
//   linearBackwardInput   dOut[M, N] · W[N, K]
//   linearBackwardWeight  dOut[M, N]ᵀ · x[M, K]  (TRANS_A, SPLIT_K: contracts over M = B·H·W)
//
// Tiling: a workgroup of 16×16 threads owns a 128×128 output tile; thread (tr, tc) holds an 8×8
// register block: rows {4tr..4tr+3, 64+4tr..64+4tr+3} × columns {4tc.., 64+4tc..}. Each step
// stages a 16-deep slice of A and of B in workgroup memory, k-major (a k-row of 128 values, padded
// to 132 so the transposing stores of a row-major operand hit different banks), so the inner loop
// reads four vec4s for 64 FMAs. The next slice is fetched into registers while this one is
// multiplied. Global reads walk the stored matrix along its contiguous dimension. Loads are
// bounds-checked (zero padding), so any R, S, T work; FULL_TILES (the host's choice when R and S
// are multiples of 128 and T of 16, as at every ConvMixer-256 shape) drops the checks of the loads
// and stores, as no tile has an edge.
// SPLIT_K: workgroup z contracts over T range [z·tPerSlice, (z+1)·tPerSlice) and writes its
// partial product to out[z, R, S]; sum_slices.wgsl adds the slices (no float atomics).
//
// Epilogues for the bias-GELU-BatchNorm unit that reads out (the host fuses them where the unit
// follows the GEMM), so that unit needs no pass of its own over out to reduce it:
// STATISTICS: out is the unit's z; tilePartial[row tile] = (mean[S], M2[S]) of u = GELU(z + unitBias)
//   over the tile's rows (two passes over the registers: the tile's mean, then Σ(u − mean)²), as
//   stored (f16 under --precision f16); merge_statistics.wgsl merges the tiles with Chan's formula.
// BACKWARD_SUMS: out is the unit's dOut; tilePartial[row tile] = (Σ dOut[S], Σ dOut·x̂[S]) over the
//   tile's rows, x̂ = (GELU(z + unitBias) − mean)·invStd from the forward's saved = (mean, invStd).
// The 16 thread rows of a column add up in workgroup memory (the staged tiles, free by then).

struct Params {
  R: u32,
  S: u32,
  T: u32,
  tPerSlice: u32,
}

// Element types of the tensors that may be stored in half precision (the host swaps in f16).
alias a_t = f32;
alias b_t = f32;
alias out_t = f32;
alias z_t = f32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<a_t>;
@group(0) @binding(2) var<storage, read> b: array<b_t>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;
@group(0) @binding(5) var<storage, read> unitBias: array<f32>;
@group(0) @binding(6) var<storage, read> z: array<z_t>; // BACKWARD_SUMS
@group(0) @binding(7) var<storage, read> saved: array<f32>; // BACKWARD_SUMS: (mean[S], invStd[S])
@group(0) @binding(8) var<storage, read_write> tilePartial: array<f32>; // [R tiles, 2, S]

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override SPLIT_K: bool = false;
override FULL_TILES: bool = false;
override STATISTICS: bool = false;
override BACKWARD_SUMS: bool = false;

const TILE = WG_GEMM_TILE;
const TILE_T = WG_GEMM_TILE_T;
// The register blocking below is written out for 16×16 threads, 8×8 outputs each, 16-deep slices.
const_assert TILE == 128u && TILE_T == 16u;
const ROW_VEC4 = 33u; // one k-row of a staged tile: 128 values + 4 of padding, in vec4s

var<workgroup> tileA: array<vec4<f32>, 528>; // [TILE_T][ROW_VEC4]
var<workgroup> tileB: array<vec4<f32>, 528>;

/** a[index] or b[index]; 0 outside the matrix (zero padding of the edge tiles). */
fn load(isA: bool, index: u32, inside: bool) -> f32 {
  if (!FULL_TILES && !inside) {
    return 0.0;
  }
  if (isA) {
    return f32(a[index]);
  }
  return f32(b[index]);
}

/**
 * Four values of a stored operand for staging part e (0 or 1) of the slice at t0. `along` is
 * true when the tile's rows/columns are contiguous in memory (element (t, i) at t·extent + i):
 * then a warp reads a whole k-row; otherwise element (i, t) is at i·T + t and each thread reads
 * 4 consecutive t of one row. (Written out, not looped, so everything stays in registers.)
 */
fn fetch(isA: bool, along: bool, base: u32, extent: u32, t0: u32, tEnd: u32, e: u32, tid: u32) -> vec4<f32> {
  if (along) {
    let i = base + (tid % 32u) * 4u;
    let t = t0 + tid / 32u + 8u * e;
    let at = t * extent + i;
    let inside = t < tEnd;
    return vec4<f32>(
      load(isA, at, inside && i < extent),
      load(isA, at + 1u, inside && i + 1u < extent),
      load(isA, at + 2u, inside && i + 2u < extent),
      load(isA, at + 3u, inside && i + 3u < extent),
    );
  }
  let i = base + tid / 4u + 64u * e;
  let t = t0 + (tid % 4u) * 4u;
  let at = i * params.T + t;
  let inside = i < extent;
  return vec4<f32>(
    load(isA, at, inside && t < tEnd),
    load(isA, at + 1u, inside && t + 1u < tEnd),
    load(isA, at + 2u, inside && t + 2u < tEnd),
    load(isA, at + 3u, inside && t + 3u < tEnd),
  );
}

/** Where fetch's part e goes in a staged tile: a whole vec4 (along) or one component of 4 k-rows. */
fn stageA(along: bool, v: vec4<f32>, e: u32, tid: u32) {
  if (along) {
    tileA[(tid / 32u + 8u * e) * ROW_VEC4 + tid % 32u] = v;
    return;
  }
  let i = tid / 4u + 64u * e;
  let at = (tid % 4u) * 4u * ROW_VEC4 + i / 4u;
  let lane = i % 4u;
  tileA[at][lane] = v.x;
  tileA[at + ROW_VEC4][lane] = v.y;
  tileA[at + 2u * ROW_VEC4][lane] = v.z;
  tileA[at + 3u * ROW_VEC4][lane] = v.w;
}

fn stageB(along: bool, v: vec4<f32>, e: u32, tid: u32) {
  if (along) {
    tileB[(tid / 32u + 8u * e) * ROW_VEC4 + tid % 32u] = v;
    return;
  }
  let i = tid / 4u + 64u * e;
  let at = (tid % 4u) * 4u * ROW_VEC4 + i / 4u;
  let lane = i % 4u;
  tileB[at][lane] = v.x;
  tileB[at + ROW_VEC4][lane] = v.y;
  tileB[at + 2u * ROW_VEC4][lane] = v.z;
  tileB[at + 3u * ROW_VEC4][lane] = v.w;
}

/** Writes one row of a thread's block: columns col0..col0+3 (lo) and col0+64.. (hi). */
fn storeRow(row: u32, col0: u32, lo: vec4<f32>, hi: vec4<f32>, sliceOffset: u32) {
  if (!FULL_TILES && row >= params.R) {
    return;
  }
  let at = sliceOffset + row * params.S;
  for (var h = 0u; h < 2u; h++) {
    let values = select(lo, hi, h == 1u);
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + 64u * h + j;
      if (FULL_TILES || col < params.S) {
        var v = values[j];
        if (HAS_BIAS) {
          v += bias[col];
        }
        out[at + col] = out_t(v);
      }
    }
  }
}

// ---- the epilogues (STATISTICS, BACKWARD_SUMS) --------------------------------------------------

/** Row i (0..7) of the register block of the thread whose first row is row0. */
fn blockRow(row0: u32, i: u32) -> u32 {
  return row0 + i + select(0u, 60u, i >= 4u);
}

/**
 * Σ over the tile's 16 thread rows of each thread's values at its columns 4tc.. (lo) and 64+4tc..
 * (hi); every thread gets its columns' totals (every thread must call it). Slot q of a row holds the
 * tile's columns 4q..4q+3, lo in slots 0..15 and hi in 16..31.
 */
fn sumColumns(lo: vec4<f32>, hi: vec4<f32>, tid: u32) -> array<vec4<f32>, 2> {
  let tr = tid / 16u;
  let tc = tid % 16u;
  workgroupBarrier();
  tileA[tr * 32u + tc] = lo;
  tileA[tr * 32u + 16u + tc] = hi;
  workgroupBarrier();
  if (tid < 32u) {
    var total = vec4<f32>();
    for (var r = 0u; r < 16u; r++) {
      total += tileA[r * 32u + tid];
    }
    tileB[tid] = total;
  }
  workgroupBarrier();
  return array<vec4<f32>, 2>(tileB[tc], tileB[16u + tc]);
}

/** unitBias (part 0) or saved's part 1 or 2 (mean, invStd) at columns col..col+3 (0 past S). */
fn columnValues(part: u32, col: u32) -> vec4<f32> {
  var v = vec4<f32>();
  for (var j = 0u; j < 4u; j++) {
    if (col + j >= params.S) {
      continue;
    }
    if (part == 0u) {
      v[j] = unitBias[col + j];
    } else {
      v[j] = saved[(part - 1u) * params.S + col + j];
    }
  }
  return v;
}

/** Writes a thread-row-0 thread's column values (lo, hi) into tilePartial[tile, part, ·]. */
fn storeTilePartial(tile: u32, part: u32, col0: u32, values: array<vec4<f32>, 2>) {
  for (var h = 0u; h < 2u; h++) {
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + 64u * h + j;
      if (col < params.S) {
        tilePartial[(tile * 2u + part) * params.S + col] = values[h][j];
      }
    }
  }
}

fn geluVec(x: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(gelu(x.x), gelu(x.y), gelu(x.z), gelu(x.w));
}

/** STATISTICS: the tile's (mean, M2) of u = GELU(z + unitBias) per column, z as stored. */
fn statisticsEpilogue(acc: ptr<function, array<vec4<f32>, 16>>, rowBase: u32, row0: u32, col0: u32, tid: u32) {
  let biases = array<vec4<f32>, 2>(columnValues(0u, col0), columnValues(0u, col0 + 64u));
  var sums = array<vec4<f32>, 2>();
  for (var k = 0u; k < 16u; k++) {
    let u = geluVec(vec4<f32>(vec4<out_t>((*acc)[k])) + biases[k % 2u]);
    let inside = blockRow(row0, k / 2u) < params.R;
    (*acc)[k] = select(vec4<f32>(), u, inside);
    sums[k % 2u] += (*acc)[k];
  }
  let count = f32(min(TILE, params.R - rowBase));
  let totals = sumColumns(sums[0], sums[1], tid);
  let means = array<vec4<f32>, 2>(totals[0] / count, totals[1] / count);
  var squares = array<vec4<f32>, 2>();
  for (var k = 0u; k < 16u; k++) {
    if (blockRow(row0, k / 2u) < params.R) {
      let d = (*acc)[k] - means[k % 2u];
      squares[k % 2u] += d * d;
    }
  }
  let m2 = sumColumns(squares[0], squares[1], tid);
  if (tid < 16u) {
    storeTilePartial(rowBase / TILE, 0u, col0, means);
    storeTilePartial(rowBase / TILE, 1u, col0, m2);
  }
}

/** BACKWARD_SUMS: the tile's Σ dOut and Σ dOut·x̂ per column, dOut as stored. */
fn backwardSumsEpilogue(acc: ptr<function, array<vec4<f32>, 16>>, rowBase: u32, row0: u32, col0: u32, tid: u32) {
  var biases: array<vec4<f32>, 2>;
  var means: array<vec4<f32>, 2>;
  var invStds: array<vec4<f32>, 2>;
  for (var h = 0u; h < 2u; h++) {
    biases[h] = columnValues(0u, col0 + 64u * h);
    means[h] = columnValues(1u, col0 + 64u * h);
    invStds[h] = columnValues(2u, col0 + 64u * h);
  }
  var sums = array<vec4<f32>, 2>();
  var products = array<vec4<f32>, 2>();
  for (var k = 0u; k < 16u; k++) {
    let row = blockRow(row0, k / 2u);
    let col = col0 + 64u * (k % 2u);
    if (row < params.R) {
      let g = vec4<f32>(vec4<out_t>((*acc)[k]));
      var zs = vec4<f32>();
      for (var j = 0u; j < 4u; j++) {
        if (col + j < params.S) {
          zs[j] = f32(z[row * params.S + col + j]);
        }
      }
      let xHat = (geluVec(zs + biases[k % 2u]) - means[k % 2u]) * invStds[k % 2u];
      sums[k % 2u] += g;
      products[k % 2u] += g * xHat;
    }
  }
  let sumTotals = sumColumns(sums[0], sums[1], tid);
  let productTotals = sumColumns(products[0], products[1], tid);
  if (tid < 16u) {
    storeTilePartial(rowBase / TILE, 0u, col0, sumTotals);
    storeTilePartial(rowBase / TILE, 1u, col0, productTotals);
  }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let rowBase = wid.y * TILE;
  let colBase = wid.x * TILE;
  let tStart = wid.z * params.tPerSlice;
  let tEnd = min(params.T, tStart + params.tPerSlice);
  let tr = tid / 16u;
  let tc = tid % 16u;
  let alongA = TRANS_A; // A stored [T, R]: rows contiguous
  let alongB = !TRANS_B; // B stored [T, S]: columns contiguous

  var nextA0 = fetch(true, alongA, rowBase, params.R, tStart, tEnd, 0u, tid);
  var nextA1 = fetch(true, alongA, rowBase, params.R, tStart, tEnd, 1u, tid);
  var nextB0 = fetch(false, alongB, colBase, params.S, tStart, tEnd, 0u, tid);
  var nextB1 = fetch(false, alongB, colBase, params.S, tStart, tEnd, 1u, tid);
  var acc: array<vec4<f32>, 16>; // acc[2i + h]: row i of the block, column half h
  for (var t0 = tStart; t0 < tEnd; t0 += TILE_T) {
    stageA(alongA, nextA0, 0u, tid);
    stageA(alongA, nextA1, 1u, tid);
    stageB(alongB, nextB0, 0u, tid);
    stageB(alongB, nextB1, 1u, tid);
    workgroupBarrier();
    let t1 = t0 + TILE_T;
    if (t1 < tEnd) {
      nextA0 = fetch(true, alongA, rowBase, params.R, t1, tEnd, 0u, tid);
      nextA1 = fetch(true, alongA, rowBase, params.R, t1, tEnd, 1u, tid);
      nextB0 = fetch(false, alongB, colBase, params.S, t1, tEnd, 0u, tid);
      nextB1 = fetch(false, alongB, colBase, params.S, t1, tEnd, 1u, tid);
    }
    for (var t = 0u; t < TILE_T; t++) {
      let a0 = tileA[t * ROW_VEC4 + tr];
      let a1 = tileA[t * ROW_VEC4 + 16u + tr];
      let b0 = tileB[t * ROW_VEC4 + tc];
      let b1 = tileB[t * ROW_VEC4 + 16u + tc];
      acc[0] += a0.x * b0;
      acc[1] += a0.x * b1;
      acc[2] += a0.y * b0;
      acc[3] += a0.y * b1;
      acc[4] += a0.z * b0;
      acc[5] += a0.z * b1;
      acc[6] += a0.w * b0;
      acc[7] += a0.w * b1;
      acc[8] += a1.x * b0;
      acc[9] += a1.x * b1;
      acc[10] += a1.y * b0;
      acc[11] += a1.y * b1;
      acc[12] += a1.z * b0;
      acc[13] += a1.z * b1;
      acc[14] += a1.w * b0;
      acc[15] += a1.w * b1;
    }
    workgroupBarrier();
  }

  let sliceOffset = select(0u, wid.z * params.R * params.S, SPLIT_K);
  let row0 = rowBase + tr * 4u;
  let col0 = colBase + tc * 4u;
  storeRow(row0, col0, acc[0], acc[1], sliceOffset);
  storeRow(row0 + 1u, col0, acc[2], acc[3], sliceOffset);
  storeRow(row0 + 2u, col0, acc[4], acc[5], sliceOffset);
  storeRow(row0 + 3u, col0, acc[6], acc[7], sliceOffset);
  storeRow(row0 + 64u, col0, acc[8], acc[9], sliceOffset);
  storeRow(row0 + 65u, col0, acc[10], acc[11], sliceOffset);
  storeRow(row0 + 66u, col0, acc[12], acc[13], sliceOffset);
  storeRow(row0 + 67u, col0, acc[14], acc[15], sliceOffset);
  if (STATISTICS) {
    statisticsEpilogue(&acc, rowBase, row0, col0, tid);
  }
  if (BACKWARD_SUMS) {
    backwardSumsEpilogue(&acc, rowBase, row0, col0, tid);
  }
}
