// Patch embedding ("Patches Are All You Need?"): a p×p convolution with stride p, i.e. one linear
// map applied to every non-overlapping patch. im2col gathers each patch of the NHWC images into
// one row, in the PyTorch weight's (channel, ky, kx) order, so that
//   forward:          out [B·H/p·W/p, C] = patches · Wᵀ   (W seen as [C, 3·p·p])
//   weight gradient:  dW  [C, 3·p·p]     = dOutᵀ · patches
// are plain GEMMs (gemm.ts). The stem has no input gradient: the images are not learned.

/** images [B, H, W, 3] → patches [B·(H/p)·(W/p), 3·p·p]; threads split the patch rows. */
export function patchIm2col(
  images: usize, B: i32, H: i32, W: i32, p: i32, patches: usize, thread: i32, threads: i32,
): void {
  const rowsY = H / p, rowsX = W / p, rows = B * rowsY * rowsX, K = 3 * p * p;
  const r0 = <i32>(<i64>rows * thread / threads), r1 = <i32>(<i64>rows * (thread + 1) / threads);
  for (let r = r0; r < r1; r++) {
    const x = r % rowsX, y = (r / rowsX) % rowsY, b = r / (rowsX * rowsY);
    const out = patches + <usize>r * K * 4;
    for (let ky = 0; ky < p; ky++) {
      const pixel = images + ((<usize>(b * H + y * p + ky) * W) + x * p) * 12;
      for (let kx = 0; kx < p; kx++) {
        const at = out + <usize>(ky * p + kx) * 4;
        store<f32>(at, load<f32>(pixel + kx * 12));
        store<f32>(at + p * p * 4, load<f32>(pixel + kx * 12 + 4));
        store<f32>(at + 2 * p * p * 4, load<f32>(pixel + kx * 12 + 8));
      }
    }
  }
}
