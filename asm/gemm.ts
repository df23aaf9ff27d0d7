// GEMM, BLIS style: C[M,N] = alpha·op(A)·op(B) + beta·C (+ bias[N] on every row), row-major
// with leading dimensions, op(X) = X or Xᵀ. One kernel serves every linear layer of ConvMixer:
//   pointwise/head forward      out = x · Wᵀ          (transB)
//   their input gradient        dx  = dOut · W        (no transpose)
//   their weight gradient       dW  = dOutᵀ · x       (transA, K = batch·tokens)
//   patch embedding             out = im2col · Wᵀ, dW = dOutᵀ · im2col
//
// Tiling (the loops around the micro-kernel, outermost first):
//   jc: NC columns of C         B's KC×NC slab is packed into NR-wide panels (lives in L2/L3)
//   pc: KC of the K dimension   C is updated once per slab: beta (and bias) only on the first
//   ic: MC rows of C            A's MC×KC block is packed into MR-tall panels (lives in L2)
//   jr, ir: one MR×NR tile      MR·NR/4 f32x4 accumulators in registers; each k step is
//                               NR/4 vector loads of B, one of A (its MR = 4 rows at that k),
//                               MR lane shuffles of it, MR·NR/4 FMAs.
// Packed panels are zero-padded to whole tiles, so edges cost a little compute and no branches
// in the inner loop; only the write-back of an edge tile goes through a scalar path.
// Threads split C into row blocks (or column blocks when N > M), each packing its own panels in
// its own scratch (gemmScratchBytes() each, at scratch + thread·gemmScratchBytes()).
//
// Why 4×8: Deno runs WebAssembly without V8's trap handler, so every load or store carries an
// explicit bounds check (a compare and a branch: V8's generated code, read with --print-wasm-code).
// 6×8 with broadcast loads of A issued 8 checked loads per 12 FMAs and ran at about half the FMA
// peak; 4×8 loads A's 4 rows as one vector and spreads its lanes by shuffles, 3 checked loads per
// 8 FMAs (8 accumulators, no spills). Measured on the AMD EPYC (Zen 3), alternating the two builds
// in one process: the micro-kernel alone 1.39×, the whole GEMM 1.24× (every shape of the CPU
// default and 32768×256×256). Unrolling k made V8 hoist the loads and spill. Vectorised packing of
// A (4×4 transposes) keeps the only work that is not FMAs cheap; relaxed_madd is one FMA on x64.

const MR = 4;
const NR = 8;
const KC = 256;
const MC = 24 * MR;
const NC = 1024;

const PACKED_A_BYTES: usize = MC * KC * 4;
const PACKED_B_BYTES: usize = KC * NC * 4;

/** Scratch bytes one thread needs (64-byte multiple): packed A, packed B, one tile row. */
export function gemmScratchBytes(): usize {
  return PACKED_A_BYTES + PACKED_B_BYTES + 64;
}

export function gemm(
  transA: i32, transB: i32, M: i32, N: i32, K: i32, alpha: f32,
  a: usize, lda: i32, b: usize, ldb: i32,
  beta: f32, c: usize, ldc: i32, bias: usize,
  scratch: usize, thread: i32, threads: i32,
): void {
  // This thread's block of C: whole tiles, rows or columns, whichever dimension is larger.
  let m0 = 0, m1 = M, n0 = 0, n1 = N;
  if (M >= N) {
    m0 = share(M, MR, thread, threads);
    m1 = share(M, MR, thread + 1, threads);
  } else {
    n0 = share(N, NR, thread, threads);
    n1 = share(N, NR, thread + 1, threads);
  }
  if (m0 >= m1 || n0 >= n1) return;

  const packedA = scratch + <usize>thread * gemmScratchBytes();
  const packedB = packedA + PACKED_A_BYTES;
  const tileRow = packedB + PACKED_B_BYTES;
  for (let jc = n0; jc < n1; jc += NC) {
    const nc = min(NC, n1 - jc);
    let pc = 0;
    do {
      const kc = min(KC, K - pc);
      packB(transB, b, ldb, pc, kc, jc, nc, packedB);
      const blockBeta: f32 = pc == 0 ? beta : 1;
      const blockBias: usize = pc == 0 && bias != 0 ? bias + <usize>jc * 4 : 0;
      for (let ic = m0; ic < m1; ic += MC) {
        const mc = min(MC, m1 - ic);
        packA(transA, a, lda, ic, mc, pc, kc, packedA);
        for (let jr = 0; jr < nc; jr += NR) {
          const cols = min(NR, nc - jr);
          for (let ir = 0; ir < mc; ir += MR) {
            microKernel(
              kc, packedA + <usize>(ir * kc) * 4, packedB + <usize>(jr * kc) * 4,
              c + (<usize>(ic + ir) * ldc + jc + jr) * 4, ldc, min(MR, mc - ir), cols,
              alpha, blockBeta, blockBias != 0 ? blockBias + <usize>jr * 4 : 0, tileRow,
            );
          }
        }
      }
      pc += KC;
    } while (pc < K);
  }
}

/** Start of thread `thread`'s share of n items, in whole tiles. */
@inline function share(n: i32, tile: i32, thread: i32, threads: i32): i32 {
  const tiles = (n + tile - 1) / tile;
  return min(n, <i32>(<i64>tiles * thread / threads) * tile);
}

/** op(A)[i0:i0+mc, p0:p0+kc] → MR-tall panels, each k-major: panel[k·MR + r]. */
function packA(transA: i32, a: usize, lda: i32, i0: i32, mc: i32, p0: i32, kc: i32, out: usize): void {
  const stride = <usize>lda * 4;
  for (let ir = 0; ir < mc; ir += MR) {
    const rows = min(MR, mc - ir);
    if (rows == MR && transA) {
      // op(A)'s column k is MR consecutive floats of A's row p0 + k.
      let src = a + (<usize>p0 * lda + i0 + ir) * 4;
      for (let k = 0; k < kc; k++) {
        v128.store(out, v128.load(src));
        src += stride;
        out += MR * 4;
      }
      continue;
    }
    if (rows == MR) {
      // MR rows of A, 4 k at a time, by a 4×4 transpose.
      const src = a + (<usize>(i0 + ir) * lda + p0) * 4;
      let k = 0;
      for (; k + 4 <= kc; k += 4) {
        const at = src + <usize>k * 4;
        const x0 = v128.load(at), x1 = v128.load(at + stride);
        const x2 = v128.load(at + 2 * stride), x3 = v128.load(at + 3 * stride);
        const t0 = v128.shuffle<f32>(x0, x1, 0, 4, 1, 5), t1 = v128.shuffle<f32>(x0, x1, 2, 6, 3, 7);
        const t2 = v128.shuffle<f32>(x2, x3, 0, 4, 1, 5), t3 = v128.shuffle<f32>(x2, x3, 2, 6, 3, 7);
        v128.store(out, v128.shuffle<u64>(t0, t2, 0, 2));
        v128.store(out, v128.shuffle<u64>(t0, t2, 1, 3), 16);
        v128.store(out, v128.shuffle<u64>(t1, t3, 0, 2), 32);
        v128.store(out, v128.shuffle<u64>(t1, t3, 1, 3), 48);
        out += 4 * MR * 4;
      }
      for (; k < kc; k++) {
        const at = src + <usize>k * 4;
        for (let r = 0; r < MR; r++) store<f32>(out + r * 4, load<f32>(at + r * stride));
        out += MR * 4;
      }
      continue;
    }
    for (let k = 0; k < kc; k++) {
      for (let r = 0; r < MR; r++) {
        let value: f32 = 0;
        if (r < rows) {
          const i = i0 + ir + r, p = p0 + k;
          value = load<f32>(a + (transA ? <usize>p * lda + i : <usize>i * lda + p) * 4);
        }
        store<f32>(out, value);
        out += 4;
      }
    }
  }
}

/** op(B)[p0:p0+kc, j0:j0+nc] → NR-wide panels, each k-major: panel[k·NR + j]. */
function packB(transB: i32, b: usize, ldb: i32, p0: i32, kc: i32, j0: i32, nc: i32, out: usize): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, nc - jr);
    for (let k = 0; k < kc; k++) {
      const p = p0 + k;
      if (!transB && cols == NR) {
        const row = b + (<usize>p * ldb + j0 + jr) * 4;
        v128.store(out, v128.load(row));
        v128.store(out, v128.load(row, 16), 16);
        out += NR * 4;
        continue;
      }
      for (let j = 0; j < NR; j++) {
        let value: f32 = 0;
        if (j < cols) {
          const col = j0 + jr + j;
          value = load<f32>(b + (transB ? <usize>col * ldb + p : <usize>p * ldb + col) * 4);
        }
        store<f32>(out, value);
        out += 4;
      }
    }
  }
}

@inline function fma(a: v128, b: v128, c: v128): v128 {
  return f32x4.relaxed_madd(a, b, c);
}

/** C tile (rows×cols ≤ MR×NR at c) = alpha·(packed A panel · packed B panel) + beta·C + bias. */
function microKernel(
  kc: i32, a: usize, b: usize, c: usize, ldc: i32, rows: i32, cols: i32,
  alpha: f32, beta: f32, bias: usize, tileRow: usize,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let k = 0; k < kc; k++) {
    const ak = v128.load(a), b0 = v128.load(b), b1 = v128.load(b, 16);
    let ar = i32x4.shuffle(ak, ak, 0, 0, 0, 0);
    c00 = fma(ar, b0, c00); c01 = fma(ar, b1, c01);
    ar = i32x4.shuffle(ak, ak, 1, 1, 1, 1);
    c10 = fma(ar, b0, c10); c11 = fma(ar, b1, c11);
    ar = i32x4.shuffle(ak, ak, 2, 2, 2, 2);
    c20 = fma(ar, b0, c20); c21 = fma(ar, b1, c21);
    ar = i32x4.shuffle(ak, ak, 3, 3, 3, 3);
    c30 = fma(ar, b0, c30); c31 = fma(ar, b1, c31);
    a += MR * 4;
    b += NR * 4;
  }
  const rowBytes = <usize>ldc * 4;
  storeRow(c, c00, c01, cols, alpha, beta, bias, tileRow);
  if (rows > 1) storeRow(c + rowBytes, c10, c11, cols, alpha, beta, bias, tileRow);
  if (rows > 2) storeRow(c + 2 * rowBytes, c20, c21, cols, alpha, beta, bias, tileRow);
  if (rows > 3) storeRow(c + 3 * rowBytes, c30, c31, cols, alpha, beta, bias, tileRow);
}

/** One row of a tile: c[0:cols] = alpha·(x0, x1) + beta·c + bias (beta 0: c is not read). */
@inline function storeRow(
  c: usize, x0: v128, x1: v128, cols: i32, alpha: f32, beta: f32, bias: usize, tileRow: usize,
): void {
  const va = f32x4.splat(alpha);
  x0 = f32x4.mul(x0, va);
  x1 = f32x4.mul(x1, va);
  if (cols == NR) {
    if (beta != 0) {
      const vb = f32x4.splat(beta);
      x0 = fma(vb, v128.load(c), x0);
      x1 = fma(vb, v128.load(c, 16), x1);
    }
    if (bias != 0) {
      x0 = f32x4.add(x0, v128.load(bias));
      x1 = f32x4.add(x1, v128.load(bias, 16));
    }
    v128.store(c, x0);
    v128.store(c, x1, 16);
    return;
  }
  v128.store(tileRow, x0);
  v128.store(tileRow, x1, 16);
  for (let j = 0; j < cols; j++) {
    const at = <usize>j * 4;
    let value = load<f32>(tileRow + at);
    if (beta != 0) value += beta * load<f32>(c + at);
    if (bias != 0) value += load<f32>(bias + at);
    store<f32>(c + at, value);
  }
}

/** out[N] = Σ over rows of x[rows, N] (a linear layer's bias gradient); threads split columns. */
export function columnSums(x: usize, rows: i32, N: i32, out: usize, thread: i32, threads: i32): void {
  const j0 = share(N, 4, thread, threads), j1 = share(N, 4, thread + 1, threads);
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    let sum = f32x4.splat(0);
    for (let r = 0; r < rows; r++) sum = f32x4.add(sum, v128.load(x + (<usize>r * N + j) * 4));
    v128.store(out + <usize>j * 4, sum);
  }
  for (; j < j1; j++) {
    let sum: f32 = 0;
    for (let r = 0; r < rows; r++) sum += load<f32>(x + (<usize>r * N + j) * 4);
    store<f32>(out + <usize>j * 4, sum);
  }
}
