// Depthwise convolution k×k, stride 1, 'same' zero padding (ConvMixer's spatial mixing), NHWC.
// The weight is [k, k, C], so one tap is one vector over channels: everything vectorises over C
// (f32x4), and the C % 4 tail runs the same generic code on f32 lanes.
//
//   forward:       out[y, x]  = Σ_taps w[dy, dx] · in[y + dy − pad, x + dx − pad]
//   input grad:    dx[y, x]  += Σ_taps w[k−1−dy, k−1−dx] · dOut[y + dy − pad, x + dx − pad]
//                  (the same correlation with the kernel rotated by 180°, accumulated into dx)
//   weight grad:   dw[dy, dx] = Σ_{b,y,x} in[y + dy − pad, x + dx − pad] · dOut[y, x]
//
// Tiling: threads split the B·H output rows. Each thread copies the input rows it needs, once
// each, into a ring of k zero-padded rows (row y in slot y % k, `pad` zero pixels either side), so
// no tap needs a bounds check. When C is a multiple of 256 a pixel is a multiple of 1 KiB, and a
// walk along a row at one channel offset would touch only 4 of L1's 64 sets, evicting the lines the
// next channel vectors reuse: those rings get 16 more bytes per pixel (the weight gradient at
// C = 256 ran 2x faster; padding C = 128 too measured a few percent slower).
// Within a row, a block of 8 output pixels × one vector of channels keeps 8 accumulators in
// registers; a kernel row's weights (up to 5 at a time) stay in registers too, and each input pixel
// is loaded once per kernel row and multiplied into every output of the block it reaches.
// The weight gradient has no write conflicts to avoid: each thread sums its rows into its own f32
// accumulators, flushes them into a float64 partial after every image, and sumPartials adds the
// partials up.

import { shareStart } from "./lanes";

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

// ---- the per-thread ring of zero-padded input rows ----------------------------------------------

/** Bytes from one ring pixel to the next: the channels, plus 16 when C % 256 == 0 (see the header). */
@inline function ringPixelBytes(C: i32): usize {
  return <usize>C * 4 + ((C & 255) == 0 ? 16 : 0);
}

/**
 * Bytes of one ring row: W rounded up to a whole block of 8 (the forward's last block reads
 * pixels up to there) and the k − 1 padding pixels.
 */
@inline function ringRowBytes(W: i32, C: i32, k: i32): usize {
  return <usize>(((W + 7) & ~7) + k - 1) * ringPixelBytes(C);
}

/** Scratch bytes each thread needs: its ring, then (weight gradient) f32 accumulators [k, k, C]. */
export function depthwiseScratchBytes(W: i32, C: i32, k: i32): usize {
  return (<usize>k * ringRowBytes(W, C, k) + <usize>k * k * C * 4 + 63) & ~63;
}

/**
 * Before output row y of sample b: copies image rows nextRow..min(H − 1, y + pad) into the ring;
 * returns the next row to copy. At a new sample (or the thread's first row) nextRow must be
 * max(0, y − pad).
 */
@inline function fillRing(
  ring: usize, input: usize, b: i32, y: i32, nextRow: i32, H: i32, W: i32, C: i32, k: i32,
): i32 {
  const pixelBytes = <usize>C * 4, rp = ringPixelBytes(C), pad = (k - 1) >> 1, rowBytes = ringRowBytes(W, C, k);
  const last = min(H - 1, y + pad);
  for (; nextRow <= last; nextRow++) {
    const slot = ring + <usize>(nextRow % k) * rowBytes + <usize>pad * rp;
    const source = input + <usize>(b * H + nextRow) * W * pixelBytes;
    if (rp == pixelBytes) {
      memory.copy(slot, source, <usize>W * pixelBytes);
    } else {
      for (let x = 0; x < W; x++) memory.copy(slot + <usize>x * rp, source + <usize>x * pixelBytes, pixelBytes);
    }
  }
  return nextRow;
}

// ---- forward and input gradient: one correlation kernel ----------------------------------------

/**
 * Taps dx0..dx0+n−1 (n = 1..5, a constant at each call) of every kernel row, for eight output
 * pixels x0..x0+7 of row y (count of them stored), channels [c, c + lanes): out (+)= Σ w · in.
 * The n weights of a kernel row stay in registers, and each of the 7 + n input pixels the eight
 * outputs share is loaded once and multiplied into every output it reaches (input x0 + m feeds
 * output x0 + m − dx with tap dx): 7 + 2n loads per 8n multiply-adds, where loading each tap's 8
 * inputs afresh took 9n. Every load carries a bounds check under Deno (see gemm.ts), so loads are
 * what this loop pays for. Each output still adds its taps in order (dy, then dx), so k ≤ 5 sums
 * exactly as a plain loop over the taps would; the eight accumulators hide the multiply-add latency.
 * addToOut: add the group's sums to out (the input gradient, or a later group of taps); else overwrite.
 */
@inline function correlateTaps<T>(
  ring: usize, weight: usize, out: usize, W: i32, C: i32, k: i32, y: i32, dy0: i32, dy1: i32,
  x0: i32, count: i32, flip: bool, addToOut: bool, dx0: i32, n: i32,
): void {
  const px = <usize>C * 4, rp = ringPixelBytes(C), pad = (k - 1) >> 1, rowBytes = ringRowBytes(W, C, k);
  const tapStep: isize = flip ? -<isize>px : <isize>px;
  let a0 = zeroOf<T>(), a1 = zeroOf<T>(), a2 = zeroOf<T>(), a3 = zeroOf<T>();
  let a4 = zeroOf<T>(), a5 = zeroOf<T>(), a6 = zeroOf<T>(), a7 = zeroOf<T>();
  let slot = (y + dy0 - pad) % k; // the ring slot of image row y + dy − pad
  for (let dy = dy0; dy < dy1; dy++, slot = slot + 1 == k ? 0 : slot + 1) {
    // Ring pixel x0 + dx is image column x0 + dx − pad: the tap dx of output pixel x0.
    const p = ring + <usize>slot * rowBytes + <usize>(x0 + dx0) * rp;
    const tap = weight + <isize>(flip ? k * k - 1 - dy * k - dx0 : dy * k + dx0) * <isize>px;
    const w0 = load<T>(tap), w1 = n > 1 ? load<T>(tap + tapStep) : zeroOf<T>();
    const w2 = n > 2 ? load<T>(tap + 2 * tapStep) : zeroOf<T>();
    const w3 = n > 3 ? load<T>(tap + 3 * tapStep) : zeroOf<T>();
    const w4 = n > 4 ? load<T>(tap + 4 * tapStep) : zeroOf<T>();
    let v: T;
    v = load<T>(p + 0 * rp); // input x0 + 0: outputs 0
      a0 = multiplyAdd<T>(v, w0, a0);
    v = load<T>(p + 1 * rp); // input x0 + 1: outputs 1, 0
      a1 = multiplyAdd<T>(v, w0, a1); if (n > 1) a0 = multiplyAdd<T>(v, w1, a0);
    v = load<T>(p + 2 * rp); // input x0 + 2: outputs 2, 1, 0
      a2 = multiplyAdd<T>(v, w0, a2); if (n > 1) a1 = multiplyAdd<T>(v, w1, a1);
      if (n > 2) a0 = multiplyAdd<T>(v, w2, a0);
    v = load<T>(p + 3 * rp); // input x0 + 3: outputs 3, 2, 1, 0
      a3 = multiplyAdd<T>(v, w0, a3); if (n > 1) a2 = multiplyAdd<T>(v, w1, a2);
      if (n > 2) a1 = multiplyAdd<T>(v, w2, a1); if (n > 3) a0 = multiplyAdd<T>(v, w3, a0);
    v = load<T>(p + 4 * rp); // input x0 + 4: outputs 4, 3, 2, 1, 0
      a4 = multiplyAdd<T>(v, w0, a4); if (n > 1) a3 = multiplyAdd<T>(v, w1, a3);
      if (n > 2) a2 = multiplyAdd<T>(v, w2, a2); if (n > 3) a1 = multiplyAdd<T>(v, w3, a1);
      if (n > 4) a0 = multiplyAdd<T>(v, w4, a0);
    v = load<T>(p + 5 * rp); // input x0 + 5: outputs 5, 4, 3, 2, 1
      a5 = multiplyAdd<T>(v, w0, a5); if (n > 1) a4 = multiplyAdd<T>(v, w1, a4);
      if (n > 2) a3 = multiplyAdd<T>(v, w2, a3); if (n > 3) a2 = multiplyAdd<T>(v, w3, a2);
      if (n > 4) a1 = multiplyAdd<T>(v, w4, a1);
    v = load<T>(p + 6 * rp); // input x0 + 6: outputs 6, 5, 4, 3, 2
      a6 = multiplyAdd<T>(v, w0, a6); if (n > 1) a5 = multiplyAdd<T>(v, w1, a5);
      if (n > 2) a4 = multiplyAdd<T>(v, w2, a4); if (n > 3) a3 = multiplyAdd<T>(v, w3, a3);
      if (n > 4) a2 = multiplyAdd<T>(v, w4, a2);
    v = load<T>(p + 7 * rp); // input x0 + 7: outputs 7, 6, 5, 4, 3
      a7 = multiplyAdd<T>(v, w0, a7); if (n > 1) a6 = multiplyAdd<T>(v, w1, a6);
      if (n > 2) a5 = multiplyAdd<T>(v, w2, a5); if (n > 3) a4 = multiplyAdd<T>(v, w3, a4);
      if (n > 4) a3 = multiplyAdd<T>(v, w4, a3);
    if (n > 1) { v = load<T>(p + 8 * rp); // input x0 + 8: outputs 7, 6, 5, 4
      a7 = multiplyAdd<T>(v, w1, a7); if (n > 2) a6 = multiplyAdd<T>(v, w2, a6);
      if (n > 3) a5 = multiplyAdd<T>(v, w3, a5); if (n > 4) a4 = multiplyAdd<T>(v, w4, a4);
    }
    if (n > 2) { v = load<T>(p + 9 * rp); // input x0 + 9: outputs 7, 6, 5
      a7 = multiplyAdd<T>(v, w2, a7); if (n > 3) a6 = multiplyAdd<T>(v, w3, a6);
      if (n > 4) a5 = multiplyAdd<T>(v, w4, a5);
    }
    if (n > 3) { v = load<T>(p + 10 * rp); // input x0 + 10: outputs 7, 6
      a7 = multiplyAdd<T>(v, w3, a7); if (n > 4) a6 = multiplyAdd<T>(v, w4, a6);
    }
    if (n > 4) { v = load<T>(p + 11 * rp); // input x0 + 11: outputs 7
      a7 = multiplyAdd<T>(v, w4, a7);
    }
  }
  const o = out + <usize>x0 * px;
  storePixel<T>(o, a0, addToOut);
  if (count > 1) storePixel<T>(o + px, a1, addToOut);
  if (count > 2) storePixel<T>(o + 2 * px, a2, addToOut);
  if (count > 3) storePixel<T>(o + 3 * px, a3, addToOut);
  if (count > 4) storePixel<T>(o + 4 * px, a4, addToOut);
  if (count > 5) storePixel<T>(o + 5 * px, a5, addToOut);
  if (count > 6) storePixel<T>(o + 6 * px, a6, addToOut);
  if (count > 7) storePixel<T>(o + 7 * px, a7, addToOut);
}

/** Eight output pixels from x0 (count stored): the taps five at a time, then the 1–4 left over. */
@inline function correlateBlock<T>(
  ring: usize, weight: usize, out: usize, W: i32, C: i32, k: i32,
  y: i32, dy0: i32, dy1: i32, x0: i32, count: i32, flip: bool, accumulate: bool,
): void {
  let dx0 = 0;
  for (; dx0 + 5 <= k; dx0 += 5) {
    correlateTaps<T>(ring, weight, out, W, C, k, y, dy0, dy1, x0, count, flip, accumulate || dx0 > 0, dx0, 5);
  }
  const left = k - dx0, add = accumulate || dx0 > 0;
  if (left == 1) correlateTaps<T>(ring, weight, out, W, C, k, y, dy0, dy1, x0, count, flip, add, dx0, 1);
  else if (left == 2) correlateTaps<T>(ring, weight, out, W, C, k, y, dy0, dy1, x0, count, flip, add, dx0, 2);
  else if (left == 3) correlateTaps<T>(ring, weight, out, W, C, k, y, dy0, dy1, x0, count, flip, add, dx0, 3);
  else if (left == 4) correlateTaps<T>(ring, weight, out, W, C, k, y, dy0, dy1, x0, count, flip, add, dx0, 4);
}

@inline function storePixel<T>(o: usize, value: T, accumulate: bool): void {
  store<T>(o, accumulate ? sum<T>(load<T>(o), value) : value);
}

@inline function correlate(
  input: usize, weight: usize, out: usize, scratch: usize, B: i32, H: i32, W: i32, C: i32, k: i32,
  flip: bool, accumulate: bool, thread: i32, threads: i32,
): void {
  const ring = scratch + <usize>thread * depthwiseScratchBytes(W, C, k);
  memory.fill(ring, 0, <usize>k * ringRowBytes(W, C, k));
  const pad = (k - 1) >> 1, C4 = C & ~3, rowBytes = <usize>W * C * 4;
  const r0 = shareStart(B * H, thread, threads), r1 = shareStart(B * H, thread + 1, threads);
  let nextRow = 0;
  for (let row = r0; row < r1; row++) {
    const b = row / H, y = row % H;
    if (row == r0 || y == 0) nextRow = max(0, y - pad);
    nextRow = fillRing(ring, input, b, y, nextRow, H, W, C, k);
    const dy0 = max(0, pad - y), dy1 = min(k, H + pad - y), o = out + <usize>row * rowBytes;
    for (let c = 0; c < C4; c += 4) {
      const at = <usize>c * 4;
      for (let x0 = 0; x0 < W; x0 += 8) {
        correlateBlock<v128>(ring + at, weight + at, o + at, W, C, k, y, dy0, dy1, x0, min(8, W - x0), flip, accumulate);
      }
    }
    for (let c = C4; c < C; c++) {
      const at = <usize>c * 4;
      for (let x0 = 0; x0 < W; x0 += 8) {
        correlateBlock<f32>(ring + at, weight + at, o + at, W, C, k, y, dy0, dy1, x0, min(8, W - x0), flip, accumulate);
      }
    }
  }
}

/** x [B, H, W, C], weight [k, k, C] → out [B, H, W, C] (overwrite). */
export function depthwiseConvForward(
  x: usize, weight: usize, out: usize, scratch: usize, B: i32, H: i32, W: i32, C: i32, k: i32,
  thread: i32, threads: i32,
): void {
  correlate(x, weight, out, scratch, B, H, W, C, k, false, false, thread, threads);
}

/** dx [B, H, W, C] += convᵀ(dOut): the correlation with the rotated kernel. */
export function depthwiseConvBackwardInput(
  dOut: usize, weight: usize, dx: usize, scratch: usize, B: i32, H: i32, W: i32, C: i32, k: i32,
  thread: i32, threads: i32,
): void {
  correlate(dOut, weight, dx, scratch, B, H, W, C, k, true, true, thread, threads);
}

// ---- weight gradient: per-thread accumulators and float64 partials, then sumPartials ---------

/**
 * Taps dx..dx+n−1 (n = 1..5, a constant at each call) of one ring row against dOut row g:
 * acc[tap] += Σ_x in[x + tap − pad] · g[x]. A window of n input pixels slides along the row, so
 * per pixel 2 loads feed n multiply-adds; the accumulators reach acc once per row. The window is
 * right-aligned in the five slots (w0, w1, w2, w3, entering): tap t uses slot 5 − n + t, so one
 * loop body serves every n (at n = 5, 11 vector registers of x64's 16).
 * rp and px: bytes per ring pixel and per dOut pixel (also the tap stride of acc).
 */
@inline function windowTaps<T>(src: usize, g: usize, acc: usize, W: i32, rp: usize, px: usize, n: i32): void {
  const first = 5 - n; // the slot of tap 0
  let w0 = windowPixel<T>(src, rp, 0, first), w1 = windowPixel<T>(src, rp, 1, first);
  let w2 = windowPixel<T>(src, rp, 2, first), w3 = windowPixel<T>(src, rp, 3, first);
  let a0 = zeroOf<T>(), a1 = a0, a2 = a0, a3 = a0, a4 = a0;
  let next = src + <usize>(n - 1) * rp, p = g;
  const end = next + <usize>W * rp;
  for (; next < end; next += rp, p += px) {
    const entering = load<T>(next), gp = load<T>(p);
    if (first <= 0) a0 = multiplyAdd<T>(w0, gp, a0);
    if (first <= 1) a1 = multiplyAdd<T>(w1, gp, a1);
    if (first <= 2) a2 = multiplyAdd<T>(w2, gp, a2);
    if (first <= 3) a3 = multiplyAdd<T>(w3, gp, a3);
    a4 = multiplyAdd<T>(entering, gp, a4);
    w0 = w1;
    w1 = w2;
    w2 = w3;
    w3 = entering;
  }
  if (first <= 0) addTap<T>(acc, px, 0 - first, a0);
  if (first <= 1) addTap<T>(acc, px, 1 - first, a1);
  if (first <= 2) addTap<T>(acc, px, 2 - first, a2);
  if (first <= 3) addTap<T>(acc, px, 3 - first, a3);
  addTap<T>(acc, px, 4 - first, a4);
}

/** Slot `slot`'s first pixel: the row's pixel slot − first, or zero for a slot the window leaves unused. */
@inline function windowPixel<T>(src: usize, rp: usize, slot: i32, first: i32): T {
  return slot >= first ? load<T>(src + <usize>(slot - first) * rp) : zeroOf<T>();
}

/** acc[tap] += value. */
@inline function addTap<T>(acc: usize, px: usize, tap: i32, value: T): void {
  const at = acc + <usize>tap * px;
  store<T>(at, sum<T>(load<T>(at), value));
}

/** Taps dx.. of a row, five at a time, then the 1–4 left over, each group one windowTaps. */
@inline function rowTaps<T>(row: usize, g: usize, tapRow: usize, W: i32, k: i32, rp: usize, px: usize): void {
  let dx = 0;
  for (; dx + 5 <= k; dx += 5) windowTaps<T>(row + <usize>dx * rp, g, tapRow + <usize>dx * px, W, rp, px, 5);
  const src = row + <usize>dx * rp, acc = tapRow + <usize>dx * px, left = k - dx;
  if (left == 1) windowTaps<T>(src, g, acc, W, rp, px, 1);
  else if (left == 2) windowTaps<T>(src, g, acc, W, rp, px, 2);
  else if (left == 3) windowTaps<T>(src, g, acc, W, rp, px, 3);
  else if (left == 4) windowTaps<T>(src, g, acc, W, rp, px, 4);
}

/** For every tap of row y: acc[tap] += Σ_x in[y + dy − pad, x + dx − pad] · dOut[y, x], channels [c, c + lanes). */
@inline function weightGradientRow<T>(
  ring: usize, g: usize, acc: usize, W: i32, C: i32, k: i32, y: i32, dy0: i32, dy1: i32,
): void {
  const px = <usize>C * 4, rp = ringPixelBytes(C), pad = (k - 1) >> 1, rowBytes = ringRowBytes(W, C, k);
  let slot = (y + dy0 - pad) % k; // the ring slot of image row y + dy − pad
  for (let dy = dy0; dy < dy1; dy++, slot = slot + 1 == k ? 0 : slot + 1) {
    rowTaps<T>(ring + <usize>slot * rowBytes, g, acc + <usize>(dy * k) * px, W, k, rp, px);
  }
}

/**
 * Thread t sums its rows into the k·k·C float64s at partials + t·k·k·C·8 (overwritten);
 * sumPartials then adds the `threads` partials into dWeight [k, k, C].
 */
export function depthwiseConvBackwardWeight(
  x: usize, dOut: usize, partials: usize, scratch: usize, B: i32, H: i32, W: i32, C: i32, k: i32,
  thread: i32, threads: i32,
): void {
  const size = k * k * C, partial = partials + <usize>thread * size * 8;
  const ring = scratch + <usize>thread * depthwiseScratchBytes(W, C, k);
  const acc = ring + <usize>k * ringRowBytes(W, C, k);
  memory.fill(partial, 0, <usize>size * 8);
  memory.fill(ring, 0, <usize>k * ringRowBytes(W, C, k) + <usize>size * 4);
  const pad = (k - 1) >> 1, C4 = C & ~3, rowBytes = <usize>W * C * 4;
  const r0 = shareStart(B * H, thread, threads), r1 = shareStart(B * H, thread + 1, threads);
  let nextRow = 0;
  for (let row = r0; row < r1; row++) {
    const b = row / H, y = row % H;
    if (row == r0 || y == 0) nextRow = max(0, y - pad);
    nextRow = fillRing(ring, x, b, y, nextRow, H, W, C, k);
    const dy0 = max(0, pad - y), dy1 = min(k, H + pad - y), g = dOut + <usize>row * rowBytes;
    for (let c = 0; c < C4; c += 4) {
      const at = <usize>c * 4;
      weightGradientRow<v128>(ring + at, g + at, acc + at, W, C, k, y, dy0, dy1);
    }
    for (let c = C4; c < C; c++) {
      const at = <usize>c * 4;
      weightGradientRow<f32>(ring + at, g + at, acc + at, W, C, k, y, dy0, dy1);
    }
    if (y == H - 1 || row == r1 - 1) { // after every image: f32 sums of ≤ H·W terms into float64
      for (let i = 0; i < size; i++) {
        const p = partial + <usize>i * 8, a = acc + <usize>i * 4;
        store<f64>(p, load<f64>(p) + <f64>load<f32>(a));
        store<f32>(a, 0);
      }
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
