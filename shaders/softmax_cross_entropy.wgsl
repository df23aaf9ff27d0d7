// Softmax cross-entropy over [B, K] logits, mean over the batch, in one workgroup: each thread
// takes every 256th sample (max-shifted log-sum-exp; argmax keeps the first maximum). The target
// is smoothed as PyTorch's label_smoothing ε does, q = (1 − ε)·onehot + ε/K, so the loss is
// logsumexp − Σ q·z; it writes dLogits = (softmax − q)/B (HAS_GRAD), and a tree reduction adds the loss and the number
// correct into metrics (+= Σ loss, += correct, += B) on the GPU, so nothing is read back per step.

struct Params {
  B: u32,
  K: u32,
  smoothing: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> dLogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;

override HAS_GRAD: bool = true;

var<workgroup> lossSums: array<f32, WG_THREADS>;
var<workgroup> correctSums: array<f32, WG_THREADS>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(local_invocation_index) lid: u32) {
  let K = params.K;
  var loss = 0.0;
  var correct = 0.0;
  for (var s = lid; s < params.B; s += WG_THREADS) {
    let row = s * K;
    var best = logits[row];
    var argmax = 0u;
    for (var j = 1u; j < K; j++) {
      if (logits[row + j] > best) {
        best = logits[row + j];
        argmax = j;
      }
    }
    var sumExp = 0.0;
    var sumLogits = 0.0;
    for (var j = 0u; j < K; j++) {
      sumExp += exp(logits[row + j] - best);
      sumLogits += logits[row + j];
    }
    let label = u32(labels[s]);
    let uniform = params.smoothing / f32(K);
    let onLabel = 1.0 - params.smoothing + uniform;
    loss += best + log(sumExp) - (1.0 - params.smoothing) * logits[row + label] - uniform * sumLogits;
    if (argmax == label) {
      correct += 1.0;
    }
    if (HAS_GRAD) {
      for (var j = 0u; j < K; j++) {
        let q = select(uniform, onLabel, j == label);
        dLogits[row + j] = (exp(logits[row + j] - best) / sumExp - q) / f32(params.B);
      }
    }
  }
  lossSums[lid] = loss;
  correctSums[lid] = correct;
  workgroupBarrier();
  for (var half = WG_THREADS / 2u; half > 0u; half /= 2u) {
    if (lid < half) {
      lossSums[lid] += lossSums[lid + half];
      correctSums[lid] += correctSums[lid + half];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    metrics[0] += lossSums[0];
    metrics[1] += correctSums[0];
    metrics[2] += f32(params.B);
  }
}
