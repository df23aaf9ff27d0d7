// Exact GELU, u = x·Φ(x) with Φ the standard normal CDF, the ConvMixer's activation, and its
// derivative Φ(x) + x·φ(x). WGSL has no erf: Φ(x) = erfc(−x/√2)/2 with Numerical Recipes' erfcc
// (a Chebyshev fit with relative error < 1.2e-7 everywhere), so the negative tail, where
// 1 + erf(x) would cancel, keeps its relative accuracy. Included by the batch-norm kernels
// (//!include gelu.wgsl).

fn erfc(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let tail = t * exp(-z * z + poly);
  return select(2.0 - tail, tail, x >= 0.0);
}

/** Φ(x), the standard normal CDF. */
fn normalCdf(x: f32) -> f32 {
  return 0.5 * erfc(-0.7071067811865476 * x);
}

fn gelu(x: f32) -> f32 {
  return x * normalCdf(x);
}

fn geluGrad(x: f32) -> f32 {
  return normalCdf(x) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
