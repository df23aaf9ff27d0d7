// Checks the float64 reference itself: every backward against central finite differences of the
// scalar loss L = Σ r·output (r random, so dOut = r), on small odd shapes (k 3/5/7/9, p 1/2/4,
// batch 1, channels 3/5/7), plus erf against known values and the forward ops against independent
// identities (patch embedding with p = 1 is a linear layer; a depthwise conv's impulse response is
// its kernel rotated by 180°).
import assert from "node:assert/strict";
import * as ref from "./reference.ts";
import type { RefTensor } from "./reference.ts";
import { assertFiniteDifferences } from "./bounds.ts";

const random = ref.seededRandom(1234);

function randomTensor(shape: number[], scale = 1): RefTensor {
  return ref.refTensor(shape, ref.randomValues(shape.reduce((a, b) => a * b, 1), random, scale));
}

function dot(a: RefTensor, b: RefTensor): number {
  let sum = 0;
  for (let i = 0; i < a.data.length; i++) sum += a.data[i] * b.data[i];
  return sum;
}

/** bounds.ts's finite-difference check over every element, which must not all be ~0. */
function assertGradient(what: string, loss: () => number, input: RefTensor, analytic: Float64Array): void {
  const largest = assertFiniteDifferences(what, loss, input.data, analytic);
  assert.ok(largest > 1e-3, `${what}: the gradient is ~0, the check would prove nothing`);
}

Deno.test("erf and erfc match known float64 values to ~1e-15", () => {
  // [x, erf(x), erfc(x)] from CPython's math.erf / math.erfc.
  const known = [
    [0.001, 0.0011283787909692365, 0.9988716212090307],
    [0.5, 0.5204998778130465, 0.4795001221869535],
    [1.0, 0.8427007929497149, 0.15729920705028513],
    [2.0, 0.9953222650189527, 0.004677734981047265],
    [3.0, 0.9999779095030014, 2.2090496998585438e-05],
    [5.0, 0.9999999999984626, 1.5374597944280351e-12],
    [-0.7, -0.6778011938374184, 1.6778011938374184],
    [-2.2, -0.9981371537020182, 1.998137153702018],
  ];
  for (const [x, erfX, erfcX] of known) {
    assert.ok(Math.abs(ref.erf(x) - erfX) <= 2e-15 * Math.abs(erfX), `erf(${x}) = ${ref.erf(x)}`);
    assert.ok(Math.abs(ref.erfc(x) - erfcX) <= 2e-15 * erfcX, `erfc(${x}) = ${ref.erfc(x)}`);
  }
});

Deno.test("GELU' matches finite differences of GELU", () => {
  for (let x = -6; x <= 6; x += 0.37) {
    const numeric = (ref.gelu(x + 1e-6) - ref.gelu(x - 1e-6)) / 2e-6;
    assert.ok(Math.abs(numeric - ref.geluDerivative(x)) < 1e-9, `GELU'(${x})`);
  }
});

Deno.test("patch embedding: p = 1 is a linear layer; dWeight matches finite differences", () => {
  const images1 = randomTensor([1, 3, 5, 3]), weight1 = randomTensor([4, 3, 1, 1]);
  const conv = ref.refTensor([1, 3, 5, 4]), linear = ref.refTensor([15, 4]);
  ref.patchEmbedForward(images1, weight1, conv);
  ref.linearForward(ref.refTensor([15, 3], images1.data), ref.refTensor([4, 3], weight1.data), null, linear);
  assert.deepEqual(conv.data, linear.data);

  for (const [p, C, extra] of [[1, 3, 0], [2, 5, 1], [3, 4, 2], [4, 7, 0]]) {
    const images = randomTensor([1, 3 * p + extra, 5 * p + extra, 3]), weight = randomTensor([C, 3, p, p]);
    const out = ref.refTensor([1, 3, 5, C]), r = randomTensor(out.shape);
    const dWeight = ref.refTensor(weight.shape);
    ref.patchEmbedBackwardWeight(images, r, dWeight);
    const loss = () => (ref.patchEmbedForward(images, weight, out), dot(r, out));
    assertGradient(`patch p=${p} dWeight`, loss, weight, dWeight.data);
  }
});

Deno.test("patch embedding: pixels past the last whole patch are not read, as in torch's Conv2d", () => {
  // 8×7 images, p = 3: 2×2 patches; the output equals that of the top-left 6×6 crop.
  const images = randomTensor([2, 8, 7, 3]), weight = randomTensor([5, 3, 3, 3]);
  const crop = ref.refTensor([2, 6, 6, 3]);
  for (let b = 0; b < 2; b++) {
    for (let y = 0; y < 6; y++) {
      for (let x = 0; x < 6; x++) {
        for (let c = 0; c < 3; c++) {
          crop.data[((b * 6 + y) * 6 + x) * 3 + c] = images.data[((b * 8 + y) * 7 + x) * 3 + c];
        }
      }
    }
  }
  const out = ref.refTensor([2, 2, 2, 5]), outCrop = ref.refTensor([2, 2, 2, 5]);
  ref.patchEmbedForward(images, weight, out);
  ref.patchEmbedForward(crop, weight, outCrop);
  assert.deepEqual(out.data, outCrop.data);
});

Deno.test("depthwise conv: impulse response; dx (accumulated) and dWeight match finite differences", () => {
  const impulse = ref.refTensor([1, 5, 5, 2]),
    weight3 = randomTensor([3, 3, 2]),
    response = ref.refTensor([1, 5, 5, 2]);
  impulse.data[(2 * 5 + 2) * 2 + 1] = 1;
  ref.depthwiseConvForward(impulse, weight3, response);
  for (let dy = 0; dy < 3; dy++) {
    for (let dx = 0; dx < 3; dx++) {
      assert.equal(response.data[((3 - dy) * 5 + 3 - dx) * 2 + 1], weight3.data[(dy * 3 + dx) * 2 + 1]);
    }
  }

  for (const [k, C] of [[3, 3], [5, 5], [7, 7], [9, 3]]) {
    const x = randomTensor([1, 5, 7, C]), weight = randomTensor([k, k, C]);
    const out = ref.refTensor(x.shape), r = randomTensor(x.shape);
    const loss = () => (ref.depthwiseConvForward(x, weight, out), dot(r, out));
    const residualGradient = randomTensor(x.shape), dx = ref.refTensor(x.shape, residualGradient.data);
    ref.depthwiseConvBackwardInput(r, weight, dx);
    assertGradient(
      `depthwise k=${k} dx`,
      loss,
      x,
      dx.data.map((value, i) => value - residualGradient.data[i]),
    );
    const dWeight = randomTensor(weight.shape);
    ref.depthwiseConvBackwardWeight(x, r, dWeight);
    assertGradient(`depthwise k=${k} dWeight`, loss, weight, dWeight.data);
  }
});

Deno.test("linear: dx, dWeight, dBias match finite differences", () => {
  const [M, K, N] = [7, 5, 3];
  const x = randomTensor([M, K]), weight = randomTensor([N, K]), bias = randomTensor([N]);
  const out = ref.refTensor([M, N]), r = randomTensor([M, N]);
  const loss = () => (ref.linearForward(x, weight, bias, out), dot(r, out));
  const dx = ref.refTensor(x.shape), dWeight = ref.refTensor(weight.shape), dBias = ref.refTensor([N]);
  ref.linearBackwardInput(r, weight, dx);
  ref.linearBackwardWeight(x, r, dWeight, dBias);
  assertGradient("linear dx", loss, x, dx.data);
  assertGradient("linear dWeight", loss, weight, dWeight.data);
  assertGradient("linear dBias", loss, bias, dBias.data);
});

Deno.test("bias-GELU-BatchNorm: backward through the batch statistics matches finite differences", () => {
  for (const [H, W, C] of [[3, 5, 3], [5, 3, 7]]) {
    const z = randomTensor([1, H, W, C], 2), bias = randomTensor([C]);
    const gamma = randomTensor([C]), beta = randomTensor([C]), residual = randomTensor(z.shape);
    const r = randomTensor(z.shape);
    const unit = { bias, gamma, beta, runningMean: randomTensor([C]), runningVar: randomTensor([C]) };
    const forward = (saved: RefTensor, out: RefTensor) =>
      ref.biasGeluBatchNormForward(z, unit, saved, residual, out, true);
    const loss = () => {
      const out = ref.refTensor(z.shape);
      forward(ref.refTensor([2, C]), out);
      return dot(r, out);
    };
    const saved = ref.refTensor([2, C]);
    forward(saved, ref.refTensor(z.shape));
    const dz = ref.refTensor(z.shape), dBias = ref.refTensor([C]);
    const dGamma = ref.refTensor([C]), dBeta = ref.refTensor([C]);
    ref.biasGeluBatchNormBackward(z, unit, saved, r, dz, { bias: dBias, gamma: dGamma, beta: dBeta });
    assertGradient("BN dz", loss, z, dz.data);
    assertGradient("BN dBias", loss, bias, dBias.data);
    assertGradient("BN dGamma", loss, gamma, dGamma.data);
    assertGradient("BN dBeta", loss, beta, dBeta.data);
    assertGradient("BN dResidual", loss, residual, r.data);
  }
});

Deno.test("bias-GELU-BatchNorm: running statistics and eval mode", () => {
  const C = 3, N = 10, z = randomTensor([N, C]), bias = randomTensor([C]);
  const gamma = randomTensor([C]), beta = randomTensor([C]);
  const runningMean = randomTensor([C]), runningVar = ref.refTensor([C], [0.5, 1, 2]);
  const oldMean = runningMean.data.slice(), oldVar = runningVar.data.slice();
  const saved = ref.refTensor([2, C]), out = ref.refTensor([N, C]);
  const unit = { bias, gamma, beta, runningMean, runningVar };
  ref.biasGeluBatchNormForward(z, unit, saved, null, out, true);
  for (let c = 0; c < C; c++) {
    const u = Array.from({ length: N }, (_, n) => ref.gelu(z.data[n * C + c] + bias.data[c]));
    const mean = u.reduce((a, b) => a + b) / N;
    const unbiasedVar = u.reduce((a, b) => a + (b - mean) ** 2, 0) / (N - 1);
    assert.ok(Math.abs(saved.data[c] - mean) < 1e-14);
    assert.ok(Math.abs(saved.data[C + c] - 1 / Math.sqrt(unbiasedVar * (N - 1) / N + 1e-5)) < 1e-12);
    assert.ok(Math.abs(runningMean.data[c] - (0.9 * oldMean[c] + 0.1 * mean)) < 1e-14);
    assert.ok(Math.abs(runningVar.data[c] - (0.9 * oldVar[c] + 0.1 * unbiasedVar)) < 1e-14);
  }
  const evalSaved = ref.refTensor([2, C]), evalOut = ref.refTensor([N, C]);
  const frozenMean = runningMean.data.slice();
  ref.biasGeluBatchNormForward(z, unit, evalSaved, null, evalOut, false);
  assert.deepEqual(runningMean.data, frozenMean);
  assert.ok(evalSaved.data.every((value) => value === 0));
  const c = 1, n = 4;
  const expected = gamma.data[c] * (ref.gelu(z.data[n * C + c] + bias.data[c]) - runningMean.data[c]) /
      Math.sqrt(runningVar.data[c] + 1e-5) + beta.data[c];
  assert.ok(Math.abs(evalOut.data[n * C + c] - expected) < 1e-14);
});

Deno.test("residual block (depthwise → bias-GELU-BN + x): dx through both paths matches finite differences", () => {
  const [H, W, C, k] = [5, 3, 5, 3];
  const x = randomTensor([1, H, W, C]), weight = randomTensor([k, k, C]), bias = randomTensor([C]);
  const gamma = randomTensor([C]), beta = randomTensor([C]), r = randomTensor(x.shape);
  const z = ref.refTensor(x.shape), saved = ref.refTensor([2, C]), out = ref.refTensor(x.shape);
  const unit = { bias, gamma, beta, runningMean: ref.refTensor([C]), runningVar: ref.refTensor([C]) };
  const loss = () => {
    ref.depthwiseConvForward(x, weight, z);
    ref.biasGeluBatchNormForward(z, unit, saved, x, out, true);
    return dot(r, out);
  };
  loss();
  const dz = ref.refTensor(x.shape), dx = ref.refTensor(x.shape, r.data); // residual: dx starts as dOut
  const grads = { bias: ref.refTensor([C]), gamma: ref.refTensor([C]), beta: ref.refTensor([C]) };
  ref.biasGeluBatchNormBackward(z, unit, saved, r, dz, grads);
  ref.depthwiseConvBackwardInput(dz, weight, dx);
  assertGradient("residual block dx", loss, x, dx.data);
});

Deno.test("average pool: dx matches finite differences", () => {
  const x = randomTensor([2, 3, 5, 7]), out = ref.refTensor([2, 7]), r = randomTensor([2, 7]);
  const dx = randomTensor(x.shape);
  ref.averagePoolBackward(r, dx);
  assertGradient("average pool dx", () => (ref.averagePoolForward(x, out), dot(r, out)), x, dx.data);
});

Deno.test("softmax cross-entropy: dLogits matches finite differences of the mean loss; metrics", () => {
  const [B, K] = [3, 5];
  const logits = randomTensor([B, K], 3), labels = ref.refTensor([B], [4, 0, 2]);
  logits.data.set([1, 2, 2, 0, 2], 0); // a tie: the first max (index 1) wins, label 4 is wrong
  logits.data.set([5, 0, 0, 0, 0], K); // correct
  logits.data.set([0, 0, 5, 0, 0], 2 * K); // correct
  const dLogits = ref.refTensor([B, K]), metrics = ref.refTensor([3], [10, 1, 7]);
  ref.softmaxCrossEntropy(logits, labels, dLogits, metrics);
  assert.deepEqual([...metrics.data.subarray(1)], [3, 10]);
  const loss = () => {
    const fresh = ref.refTensor([3]);
    ref.softmaxCrossEntropy(logits, labels, null, fresh);
    return fresh.data[0] / B;
  };
  assert.ok(Math.abs(metrics.data[0] - 10 - B * loss()) < 1e-12);
  assertGradient("cross-entropy dLogits", loss, logits, dLogits.data);
});

Deno.test("softmax cross-entropy with label smoothing: PyTorch's (1 − ε)·NLL + ε·mean(−log p); dLogits by finite differences", () => {
  const [B, K, smoothing] = [4, 6, 0.2];
  const logits = randomTensor([B, K], 3), labels = ref.refTensor([B], [5, 0, 2, 2]);
  const loss = () => {
    const metrics = ref.refTensor([3]);
    ref.softmaxCrossEntropy(logits, labels, null, metrics, smoothing);
    return metrics.data[0] / B;
  };
  let expected = 0; // torch.nn.functional.cross_entropy(label_smoothing=ε), as its documentation writes it
  for (let b = 0; b < B; b++) {
    const row = [...logits.data.subarray(b * K, (b + 1) * K)];
    const logP = row.map((z) => z - Math.log(row.reduce((s, y) => s + Math.exp(y), 0)));
    expected += ((1 - smoothing) * -logP[labels.data[b]] + smoothing * logP.reduce((s, l) => s - l, 0) / K) /
      B;
  }
  assert.ok(Math.abs(loss() - expected) < 1e-12, `${loss()} vs ${expected}`);
  const dLogits = ref.refTensor([B, K]);
  ref.softmaxCrossEntropy(logits, labels, dLogits, ref.refTensor([3]), smoothing);
  assertGradient("smoothed cross-entropy dLogits", loss, logits, dLogits.data);
});

Deno.test("optimizer: AdamW's first step is lr·sign(g) after decay; clipping scales g to the global norm", () => {
  const size = 6, g = randomTensor([size]), p = randomTensor([size]), p0 = p.data.slice();
  const m = ref.refTensor([size]), v = ref.refTensor([size]), sumSquares = ref.refTensor([1]);
  const hyper = {
    kind: "adamw" as const,
    lr: 0.01,
    weightDecay: 0.05,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    step: 1,
    clipNorm: 0,
  };
  ref.optimizerStep(p, g, m, v, sumSquares, hyper);
  for (let i = 0; i < size; i++) {
    const expected = p0[i] * (1 - 0.01 * 0.05) - 0.01 * g.data[i] / (Math.abs(g.data[i]) + 1e-8);
    assert.ok(Math.abs(p.data[i] - expected) < 1e-15);
  }

  ref.accumulateSquares(g, sumSquares);
  ref.accumulateSquares(g, sumSquares);
  const norm = Math.sqrt(2 * dot(g, g));
  assert.ok(Math.abs(sumSquares.data[0] - norm * norm) < 1e-14);
  for (const clipNorm of [0, norm / 4, norm * 4]) {
    const scale = clipNorm > 0 && clipNorm < norm ? clipNorm / (norm + 1e-6) : 1;
    const sgd = { ...hyper, kind: "sgd" as const, clipNorm };
    const q = ref.refTensor([size], p0);
    ref.optimizerStep(q, g, m, v, sumSquares, sgd);
    for (let i = 0; i < size; i++) {
      const expected = p0[i] - 0.01 * (g.data[i] * scale + 0.05 * p0[i]);
      assert.ok(Math.abs(q.data[i] - expected) < 1e-15, `sgd clipNorm ${clipNorm}`);
    }
  }
});

Deno.test("optimizer: Nesterov SGD follows torch.optim.SGD(momentum=0.9, nesterov=True, weight_decay)", () => {
  // torch 1.13, float64: SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), three steps.
  const grads = [[0.3, -0.2, 0.1], [-0.4, 0.5, 0.25], [0.05, 0.6, -0.7]];
  const torchParams = [
    [0.44205, -1.209625, 1.9772],
    [0.492505105, -1.2851142125, 1.91622332],
    [0.4918767848005, -1.42070144924625, 2.0149829636920003],
  ];
  const p = ref.refTensor([3], [0.5, -1.25, 2.0]), m = ref.refTensor([3]), v = ref.refTensor([3]);
  const hyper = {
    kind: "nesterov" as const,
    lr: 0.1,
    weightDecay: 0.01,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    step: 1,
    clipNorm: 0,
  };
  for (const [t, g] of grads.entries()) {
    ref.optimizerStep(p, ref.refTensor([3], g), m, v, ref.refTensor([1]), { ...hyper, step: t + 1 });
    for (let i = 0; i < 3; i++) {
      assert.ok(Math.abs(p.data[i] - torchParams[t][i]) < 1e-14, `step ${t + 1} [${i}]`);
    }
  }
});
