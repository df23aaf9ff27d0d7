// Softmax cross-entropy over [B, K] logits, mean over the batch, in one workgroup: each thread
// takes every 256th sample (max-shifted log-sum-exp; argmax keeps the first maximum), writes
// dLogits = (softmax − onehot)/B (HAS_GRAD), and a tree reduction adds the loss and the number
// correct into metrics (+= Σ loss, += correct, += B) on the GPU, so nothing is read back per step.

struct Params {
  B: u32,
  K: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> dLogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> metrics: array<f32>;

override HAS_GRAD: bool = true;

var<workgroup> lossSums: array<f32, 256>;
var<workgroup> correctSums: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  let K = params.K;
  var loss = 0.0;
  var correct = 0.0;
  for (var s = lid; s < params.B; s += 256u) {
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
    for (var j = 0u; j < K; j++) {
      sumExp += exp(logits[row + j] - best);
    }
    let label = u32(labels[s]);
    loss += best + log(sumExp) - logits[row + label];
    if (argmax == label) {
      correct += 1.0;
    }
    if (HAS_GRAD) {
      for (var j = 0u; j < K; j++) {
        let onehot = select(0.0, 1.0, j == label);
        dLogits[row + j] = (exp(logits[row + j] - best) / sumExp - onehot) / f32(params.B);
      }
    }
  }
  lossSums[lid] = loss;
  correctSums[lid] = correct;
  workgroupBarrier();
  for (var half = 128u; half > 0u; half /= 2u) {
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
