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

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<a_t>;
@group(0) @binding(2) var<storage, read> b: array<b_t>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<out_t>;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override SPLIT_K: bool = false;
override FULL_TILES: bool = false;

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
}
