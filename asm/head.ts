// The classifier head: global average pool over H·W, then (after the linear layer, a GEMM)
// softmax cross-entropy with its gradient and the running metrics.
import { loadLanes, shareStart, storeLanes } from "./lanes";

/** x [B, S, C] (S = H·W) → out [B, C], the mean over S (overwrite); threads split the samples. */
export function averagePoolForward(x: usize, out: usize, B: i32, S: i32, C: i32, thread: i32, threads: i32): void {
  const scale = f32x4.splat(<f32>1 / <f32>S), pixelBytes = <usize>C * 4;
  const b1 = shareStart(B, thread + 1, threads);
  for (let b = shareStart(B, thread, threads); b < b1; b++) {
    const sample = x + <usize>b * S * pixelBytes;
    for (let c = 0; c < C; c += 4) {
      const lanes = min(4, C - c), at = <usize>c * 4;
      let sum = f32x4.splat(0);
      for (let s = 0; s < S; s++) sum = f32x4.add(sum, loadLanes(sample + <usize>s * pixelBytes + at, lanes));
      storeLanes(out + <usize>b * pixelBytes + at, f32x4.mul(sum, scale), lanes);
    }
  }
}

/** dx [B, S, C] = dOut [B, C] / S broadcast over S (overwrite); threads split the B·S rows. */
export function averagePoolBackward(
  dOut: usize, dx: usize, B: i32, S: i32, C: i32, thread: i32, threads: i32,
): void {
  const scale = f32x4.splat(<f32>1 / <f32>S), pixelBytes = <usize>C * 4;
  const r1 = shareStart(B * S, thread + 1, threads);
  for (let r = shareStart(B * S, thread, threads); r < r1; r++) {
    const source = dOut + <usize>(r / S) * pixelBytes, row = dx + <usize>r * pixelBytes;
    for (let c = 0; c < C; c += 4) {
      const lanes = min(4, C - c), at = <usize>c * 4;
      storeLanes(row + at, f32x4.mul(loadLanes(source + at, lanes), scale), lanes);
    }
  }
}

/**
 * Softmax cross-entropy over logits [B, K] with labels [B] (class indices as f32), on thread 0
 * (B×K is tiny), against the smoothed target q = (1 − ε)·onehot + ε/K (PyTorch's label_smoothing):
 * loss = logsumexp − Σ q·z. dLogits [B, K] = (softmax − q)/B when dLogits != 0; metrics [3] +=
 * (Σ loss, number correct with the first maximum winning ties, B). Float64, log-sum-exp style.
 */
export function softmaxCrossEntropy(
  logits: usize, labels: usize, dLogits: usize, metrics: usize, B: i32, K: i32, smoothing: f64,
  thread: i32, threads: i32,
): void {
  if (thread != 0) return;
  let lossSum: f64 = 0, correct: f64 = 0;
  for (let b = 0; b < B; b++) {
    const row = logits + <usize>b * K * 4, label = <i32>load<f32>(labels + <usize>b * 4);
    let argmax = 0, maximum: f64 = load<f32>(row);
    for (let k = 1; k < K; k++) {
      const value: f64 = load<f32>(row + <usize>k * 4);
      if (value > maximum) {
        maximum = value;
        argmax = k;
      }
    }
    let sumExp: f64 = 0, sumLogits: f64 = 0;
    for (let k = 0; k < K; k++) {
      const value: f64 = load<f32>(row + <usize>k * 4);
      sumExp += Math.exp(value - maximum);
      sumLogits += value;
    }
    const logSumExp = maximum + Math.log(sumExp);
    const uniform = smoothing / K, target = 1 - smoothing + uniform;
    lossSum += logSumExp - (1 - smoothing) * <f64>load<f32>(row + <usize>label * 4) - uniform * sumLogits;
    if (argmax == label) correct += 1;
    if (dLogits != 0) {
      for (let k = 0; k < K; k++) {
        const probability = Math.exp(<f64>load<f32>(row + <usize>k * 4) - logSumExp);
        store<f32>(dLogits + (<usize>b * K + k) * 4, <f32>((probability - (k == label ? target : uniform)) / B));
      }
    }
  }
  store<f32>(metrics, <f32>(<f64>load<f32>(metrics) + lossSum));
  store<f32>(metrics + 4, <f32>(<f64>load<f32>(metrics + 4) + correct));
  store<f32>(metrics + 8, <f32>(<f64>load<f32>(metrics + 8) + B));
}
