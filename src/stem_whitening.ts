// Patch-whitening initialisation of the stem, after airbench and hlb-CIFAR10. ConvMixer's stem is
// exactly airbench's first layer, a p×p conv with stride p, so it can start as a whitening
// transform of the training set's p×p patches: filter i is the i-th eigenvector of the patches'
// second-moment matrix scaled by 1/√(λ_i + ε), taken with both signs (GELU follows, and ±v keep
// both halves of each direction). The first layer then starts decorrelated instead of random, which
// is worth most in short runs. Channels beyond 2·3p² keep their default initialisation.
import { CIFAR_MEAN, CIFAR_STD } from "./data/augment.ts";
import { IMAGE_BYTES, IMAGE_SIDE } from "./data/cifar.ts";

/** Second moment E[x xᵀ] of every (stride-1) p×p patch of the sampled images, normalised as in training. */
export function patchSecondMoment(
  images: Uint8Array,
  sample: readonly number[],
  patch: number,
): Float64Array {
  const d = 3 * patch * patch;
  const moment = new Float64Array(d * d);
  const x = new Float64Array(d);
  const normalised = new Float64Array(IMAGE_BYTES);
  let patches = 0;
  for (const index of sample) {
    const image = images.subarray(index * IMAGE_BYTES, (index + 1) * IMAGE_BYTES); // CHW planes
    for (let i = 0; i < IMAGE_BYTES; i++) {
      const c = Math.floor(i / (IMAGE_SIDE * IMAGE_SIDE));
      normalised[i] = (image[i] / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c];
    }
    for (let top = 0; top + patch <= IMAGE_SIDE; top++) {
      for (let left = 0; left + patch <= IMAGE_SIDE; left++) {
        // x in the stem weight's [3, p, p] order.
        for (let c = 0, k = 0; c < 3; c++) {
          for (let i = 0; i < patch; i++) {
            for (let j = 0; j < patch; j++) {
              x[k++] = normalised[c * IMAGE_SIDE * IMAGE_SIDE + (top + i) * IMAGE_SIDE + left + j];
            }
          }
        }
        for (let a = 0; a < d; a++) for (let b = a; b < d; b++) moment[a * d + b] += x[a] * x[b];
        patches++;
      }
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) moment[b * d + a] = moment[a * d + b] /= patches;
  }
  return moment;
}

/**
 * Eigen-decomposition of a symmetric n×n matrix by cyclic Jacobi rotations (n ≤ 48 here, so a
 * few sweeps of O(n³) are instant). Eigenvalues descending; vectors are the rows of `vectors`.
 */
export function symmetricEigen(
  matrix: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = matrix.slice();
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  const offDiagonal = () => {
    let sum = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) sum += a[i * n + j] ** 2;
    return sum;
  };
  const scale = a.reduce((s, x) => s + x * x, 0);
  for (let sweep = 0; sweep < 100 && offDiagonal() > 1e-30 * scale; sweep++) {
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) { // columns p, q of A
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) { // rows p, q of A, and of V (eigenvectors as rows)
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
          const vpk = v[p * n + k], vqk = v[q * n + k];
          v[p * n + k] = c * vpk - s * vqk;
          v[q * n + k] = s * vpk + c * vqk;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[j * n + j] - a[i * n + i]);
  const values = Float64Array.from(order, (i) => a[i * n + i]);
  const vectors = new Float64Array(n * n);
  order.forEach((i, row) => vectors.set(v.subarray(i * n, (i + 1) * n), row * n));
  return { values, vectors };
}

/**
 * The whitening filters [2·3p², 3, p, p]: eigenvectors scaled by 1/√(λ + eps), then their
 * negatives (airbench's eps 5e-4, on inputs normalised to unit variance per channel).
 */
export function patchWhiteningFilters(
  images: Uint8Array,
  count: number,
  patch: number,
  { samples = 1000, eps = 5e-4 } = {},
): Float32Array {
  const sample = Array.from(
    { length: Math.min(samples, count) },
    (_, i) => Math.floor(i * count / Math.min(samples, count)),
  );
  const d = 3 * patch * patch;
  const { values, vectors } = symmetricEigen(patchSecondMoment(images, sample, patch), d);
  const filters = new Float32Array(2 * d * d);
  for (let i = 0; i < d; i++) {
    const scale = 1 / Math.sqrt(Math.max(values[i], 0) + eps);
    for (let k = 0; k < d; k++) {
      filters[i * d + k] = vectors[i * d + k] * scale;
      filters[(d + i) * d + k] = -vectors[i * d + k] * scale;
    }
  }
  return filters;
}
