// Depthwise convolution k×k, stride 1, 'same' zero padding (ConvMixer's spatial mixing), NHWC.
// The weight is [k, k, C], so one tap is one vector over channels: everything vectorises over C
// (f32x4), and the C % 4 tail runs the same generic code on f32 lanes.
//
//   forward:       out[y, x]  = Σ_taps w[dy, dx] · in[y + dy − pad, x + dx − pad]
//   input grad:    dx[y, x]  += Σ_taps w[k−1−dy, k−1−dx] · dOut[y + dy − pad, x + dx − pad]
//                  (the same correlation with the kernel rotated by 180°, accumulated into dx)
//   weight grad:   dw[dy, dx] = Σ_{b,y,x} in[y + dy − pad, x + dx − pad] · dOut[y, x]
//
// Tiling: threads split the B·H output rows. Within a row, a block of 4 output pixels × one
// vector of channels keeps 4 accumulators in registers; each weight vector is loaded once per
// block and used 4 times. Blocks whose taps all fall inside the image (the interior) run with no
// bounds checks; the border blocks check each column. The weight gradient has no write conflicts
// to avoid: each thread sums its rows into its own float64 partial, and sumPartials adds them up.

import { addToFloat64, shareStart } from "./lanes";

// ---- f32x4 or f32: the same code for the channel vectors and the C % 4 tail -----------------

@inline function zeroOf<T>(): T {
  if (isVector<T>()) return f32x4.splat(0);
  return <T>0;
}

@inline function multiplyAdd<T>(a: T, b: T, acc: T): T {
  if (isVector<T>()) return f32x4.relaxed_madd(a, b, acc);
  return a * b + acc;
}

@inline function sum<T>(a: T, b: T): T {
  if (isVector<T>()) return f32x4.add(a, b);
  return a + b;
}

/** in[row, col] for col in [0, W), else zero (the 'same' padding). */
@inline function loadColumn<T>(pixel0: usize, col: i32, W: i32, pixelBytes: usize): T {
  return <u32>col < <u32>W ? load<T>(pixel0 + <usize>col * pixelBytes) : zeroOf<T>();
}

/** Adds the f32 lanes of acc into the float64 sums at `partial` (one f64 per channel). */
@inline function addToPartial<T>(partial: usize, acc: T): void {
  if (isVector<T>()) {
    addToFloat64(partial, acc);
  } else {
    store<f64>(partial, load<f64>(partial) + <f64>acc);
  }
}

// ---- forward and input gradient: one correlation kernel ----------------------------------------

/**
 * Four output pixels x0..x0+3 of one row, channels [c, c + lanes): out (+)= Σ_taps w · in.
 * `checked` (a constant after inlining) selects the border version.
 */
@inline function correlateBlock<T>(
  input: usize, weight: usize, out: usize, W: i32, C: i32, k: i32,
  inRow0: i32, outRow: i32, dy0: i32, dy1: i32, x0: i32, count: i32,
  flip: bool, accumulate: bool, checked: bool,
): void {
  const pixelBytes = <usize>C * 4, pad = (k - 1) >> 1;
  const tapStep: isize = flip ? -<isize>pixelBytes : <isize>pixelBytes;
  let a0 = zeroOf<T>(), a1 = zeroOf<T>(), a2 = zeroOf<T>(), a3 = zeroOf<T>();
  for (let dy = dy0; dy < dy1; dy++) {
    const row = input + <usize>(inRow0 + dy) * W * pixelBytes;
    let tap = weight + <usize>(flip ? k * k - 1 - dy * k : dy * k) * pixelBytes;
    for (let dx = 0; dx < k; dx++, tap += tapStep) {
      const w = load<T>(tap), col = x0 + dx - pad;
      if (checked) {
        a0 = multiplyAdd<T>(loadColumn<T>(row, col, W, pixelBytes), w, a0);
        a1 = multiplyAdd<T>(loadColumn<T>(row, col + 1, W, pixelBytes), w, a1);
        a2 = multiplyAdd<T>(loadColumn<T>(row, col + 2, W, pixelBytes), w, a2);
        a3 = multiplyAdd<T>(loadColumn<T>(row, col + 3, W, pixelBytes), w, a3);
      } else {
        const p = row + <usize>col * pixelBytes;
        a0 = multiplyAdd<T>(load<T>(p), w, a0);
        a1 = multiplyAdd<T>(load<T>(p + pixelBytes), w, a1);
        a2 = multiplyAdd<T>(load<T>(p + 2 * pixelBytes), w, a2);
        a3 = multiplyAdd<T>(load<T>(p + 3 * pixelBytes), w, a3);
      }
    }
  }
  const o = out + (<usize>outRow * W + x0) * pixelBytes;
  store<T>(o, accumulate ? sum<T>(load<T>(o), a0) : a0);
  if (count > 1) store<T>(o + pixelBytes, accumulate ? sum<T>(load<T>(o + pixelBytes), a1) : a1);
  if (count > 2) store<T>(o + 2 * pixelBytes, accumulate ? sum<T>(load<T>(o + 2 * pixelBytes), a2) : a2);
  if (count > 3) store<T>(o + 3 * pixelBytes, accumulate ? sum<T>(load<T>(o + 3 * pixelBytes), a3) : a3);
}

/** One output row (image row y of sample b = row / H), channels [c, c + lanes). */
@inline function correlateRow<T>(
  input: usize, weight: usize, out: usize, H: i32, W: i32, C: i32, k: i32, row: i32,
  flip: bool, accumulate: bool,
): void {
  const pad = (k - 1) >> 1, y = row % H;
  const dy0 = max(0, pad - y), dy1 = min(k, H + pad - y), inRow0 = row - pad;
  for (let x0 = 0; x0 < W; x0 += 4) {
    const count = min(4, W - x0);
    if (x0 >= pad && x0 + 3 + pad < W) {
      correlateBlock<T>(input, weight, out, W, C, k, inRow0, row, dy0, dy1, x0, count, flip, accumulate, false);
    } else {
      correlateBlock<T>(input, weight, out, W, C, k, inRow0, row, dy0, dy1, x0, count, flip, accumulate, true);
    }
  }
}

@inline function correlate(
  input: usize, weight: usize, out: usize, B: i32, H: i32, W: i32, C: i32, k: i32,
  flip: bool, accumulate: bool, thread: i32, threads: i32,
): void {
  const rows = B * H, C4 = C & ~3;
  const r0 = shareStart(rows, thread, threads), r1 = shareStart(rows, thread + 1, threads);
  for (let row = r0; row < r1; row++) {
    for (let c = 0; c < C4; c += 4) {
      const at = <usize>c * 4;
      correlateRow<v128>(input + at, weight + at, out + at, H, W, C, k, row, flip, accumulate);
    }
    for (let c = C4; c < C; c++) {
      const at = <usize>c * 4;
      correlateRow<f32>(input + at, weight + at, out + at, H, W, C, k, row, flip, accumulate);
    }
  }
}

/** x [B, H, W, C], weight [k, k, C] → out [B, H, W, C] (overwrite). */
export function depthwiseConvForward(
  x: usize, weight: usize, out: usize, B: i32, H: i32, W: i32, C: i32, k: i32, thread: i32, threads: i32,
): void {
  correlate(x, weight, out, B, H, W, C, k, false, false, thread, threads);
}

/** dx [B, H, W, C] += convᵀ(dOut): the correlation with the rotated kernel. */
export function depthwiseConvBackwardInput(
  dOut: usize, weight: usize, dx: usize, B: i32, H: i32, W: i32, C: i32, k: i32, thread: i32, threads: i32,
): void {
  correlate(dOut, weight, dx, B, H, W, C, k, true, true, thread, threads);
}

// ---- weight gradient: per-thread float64 partials, then sumPartials ----------------------------

/** Σ over one row's pixels of in-shifted · dOut for every tap, channels [c, c + lanes). */
@inline function weightGradientRow<T>(
  input: usize, dOut: usize, partial: usize, H: i32, W: i32, C: i32, k: i32, row: i32,
): void {
  const pixelBytes = <usize>C * 4, pad = (k - 1) >> 1, y = row % H;
  const dy0 = max(0, pad - y), dy1 = min(k, H + pad - y);
  const g = dOut + <usize>row * W * pixelBytes;
  const partialBytes = <usize>C * 8;
  for (let dy = dy0; dy < dy1; dy++) {
    const inRow = input + <usize>(row + dy - pad) * W * pixelBytes;
    for (let dx = 0; dx < k; dx++) {
      // Output columns whose tap (dy, dx) lands inside the image.
      const xs = max(0, pad - dx), xe = min(W, W + pad - dx);
      if (xe <= xs) continue;
      const src = inRow + <usize>(xs + dx - pad) * pixelBytes, dst = g + <usize>xs * pixelBytes;
      const end = <usize>(xe - xs) * pixelBytes;
      let even = zeroOf<T>(), odd = zeroOf<T>();
      let p: usize = 0;
      for (; p + pixelBytes < end; p += 2 * pixelBytes) {
        even = multiplyAdd<T>(load<T>(src + p), load<T>(dst + p), even);
        odd = multiplyAdd<T>(load<T>(src + p + pixelBytes), load<T>(dst + p + pixelBytes), odd);
      }
      if (p < end) even = multiplyAdd<T>(load<T>(src + p), load<T>(dst + p), even);
      addToPartial<T>(partial + <usize>(dy * k + dx) * partialBytes, sum<T>(even, odd));
    }
  }
}

/**
 * Thread t sums its rows into the k·k·C float64s at partials + t·k·k·C·8 (overwritten);
 * sumPartials then adds the `threads` partials into dWeight [k, k, C].
 */
export function depthwiseConvBackwardWeight(
  x: usize, dOut: usize, partials: usize, B: i32, H: i32, W: i32, C: i32, k: i32, thread: i32, threads: i32,
): void {
  const size = k * k * C, partial = partials + <usize>thread * size * 8, C4 = C & ~3;
  memory.fill(partial, 0, <usize>size * 8);
  const rows = B * H;
  const r0 = shareStart(rows, thread, threads), r1 = shareStart(rows, thread + 1, threads);
  for (let row = r0; row < r1; row++) {
    for (let c = 0; c < C4; c += 4) {
      weightGradientRow<v128>(x + <usize>c * 4, dOut + <usize>c * 4, partial + <usize>c * 8, H, W, C, k, row);
    }
    for (let c = C4; c < C; c++) {
      weightGradientRow<f32>(x + <usize>c * 4, dOut + <usize>c * 4, partial + <usize>c * 8, H, W, C, k, row);
    }
  }
}

/**
 * out[i] = Σ_{p < count} partials[p·stride + i], i < size (float64 partials → float32 out,
 * overwrite): the second half of the per-thread reductions (depthwise dWeight, BatchNorm dBias).
 */
export function sumPartials(
  partials: usize, count: i32, stride: i32, size: i32, out: usize, thread: i32, threads: i32,
): void {
  const i0 = shareStart(size, thread, threads), i1 = shareStart(size, thread + 1, threads);
  for (let i = i0; i < i1; i++) {
    let total: f64 = 0;
    for (let p = 0; p < count; p++) total += load<f64>(partials + (<usize>p * stride + i) * 8);
    store<f32>(out + <usize>i * 4, <f32>total);
  }
}
