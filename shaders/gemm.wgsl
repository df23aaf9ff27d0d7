// Tiled GEMM, the pointwise conv and the head: out[R, S] = A[R, T] · B[T, S] (+ bias[S]).
// A is stored [R, T] or, with TRANS_A, [T, R]; B is stored [T, S] or, with TRANS_B, [S, T]:
//   linearForward         x[M, K] · W[N, K]ᵀ   (TRANS_B)
//   linearBackwardInput   dOut[M, N] · W[N, K]
//   linearBackwardWeight  dOut[M, N]ᵀ · x[M, K] (TRANS_A, SPLIT_K: contracts over M = B·H·W)
// Tiling: a workgroup of 16×16 threads owns a 64×64 output tile; each step stages a 64×16 slice
// of A and a 16×64 slice of B in workgroup memory (k-major, so the inner loop reads rows of 4),
// and each thread accumulates a 4×4 register block. Loads are bounds-checked (zero padding), so
// any R, S, T work. SPLIT_K: workgroup z contracts T range [z·tPerSlice, (z+1)·tPerSlice) and
// writes its partial product to out[z, R, S]; sum_slices.wgsl adds the slices (no float atomics).

struct Params {
  R: u32,
  S: u32,
  T: u32,
  tPerSlice: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override SPLIT_K: bool = false;

const TILE = 64u;
const TILE_T = 16u;

var<workgroup> tileA: array<vec4<f32>, 256>; // [TILE_T][TILE / 4]: 4 consecutive rows of A
var<workgroup> tileB: array<vec4<f32>, 256>; // [TILE_T][TILE / 4]: 4 consecutive columns of B

fn loadA(row: u32, t: u32, tEnd: u32) -> f32 {
  if (row >= params.R || t >= tEnd) {
    return 0.0;
  }
  if (TRANS_A) {
    return a[t * params.R + row];
  }
  return a[row * params.T + t];
}

fn loadB(t: u32, col: u32, tEnd: u32) -> f32 {
  if (col >= params.S || t >= tEnd) {
    return 0.0;
  }
  if (TRANS_B) {
    return b[col * params.T + t];
  }
  return b[t * params.S + col];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let rowBase = wid.y * TILE;
  let colBase = wid.x * TILE;
  let tStart = wid.z * params.tPerSlice;
  let tEnd = min(params.T, tStart + params.tPerSlice);
  let tr = tid / 16u; // this thread's rows: rowBase + 4·tr + i
  let tc = tid % 16u; // this thread's columns: colBase + 4·tc + j

  // Each thread stages 4 elements of each tile, walking the stored matrix along its
  // contiguous dimension so neighbouring threads read neighbouring addresses.
  var aRow: u32;
  var aT: u32;
  var aStep: vec2<u32>; // (row step, t step) between this thread's 4 elements
  if (TRANS_A) {
    aT = tid / 16u;
    aRow = (tid % 16u) * 4u;
    aStep = vec2<u32>(1u, 0u);
  } else {
    aRow = tid / 4u;
    aT = (tid % 4u) * 4u;
    aStep = vec2<u32>(0u, 1u);
  }
  var bCol: u32;
  var bT: u32;
  var bStep: vec2<u32>; // (column step, t step)
  if (TRANS_B) {
    bCol = tid / 4u;
    bT = (tid % 4u) * 4u;
    bStep = vec2<u32>(0u, 1u);
  } else {
    bT = tid / 16u;
    bCol = (tid % 16u) * 4u;
    bStep = vec2<u32>(1u, 0u);
  }

  var acc: array<vec4<f32>, 4>;
  for (var t0 = tStart; t0 < tEnd; t0 += TILE_T) {
    for (var e = 0u; e < 4u; e++) {
      let r = aRow + e * aStep.x;
      let t = aT + e * aStep.y;
      tileA[t * 16u + r / 4u][r % 4u] = loadA(rowBase + r, t0 + t, tEnd);
      let c = bCol + e * bStep.x;
      let tb = bT + e * bStep.y;
      tileB[tb * 16u + c / 4u][c % 4u] = loadB(tb + t0, colBase + c, tEnd);
    }
    workgroupBarrier();
    for (var t = 0u; t < TILE_T; t++) {
      let av = tileA[t * 16u + tr];
      let bv = tileB[t * 16u + tc];
      acc[0] += av.x * bv;
      acc[1] += av.y * bv;
      acc[2] += av.z * bv;
      acc[3] += av.w * bv;
    }
    workgroupBarrier();
  }

  let sliceOffset = select(0u, wid.z * params.R * params.S, SPLIT_K);
  for (var i = 0u; i < 4u; i++) {
    let row = rowBase + tr * 4u + i;
    if (row >= params.R) {
      break;
    }
    for (var j = 0u; j < 4u; j++) {
      let col = colBase + tc * 4u + j;
      if (col < params.S) {
        var v = acc[i][j];
        if (HAS_BIAS) {
          v += bias[col];
        }
        out[sliceOffset + row * params.S + col] = v;
      }
    }
  }
}
