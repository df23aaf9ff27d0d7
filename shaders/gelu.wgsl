// Exact GELU, u = x·Φ(x) = x·(1 + erf(x/√2))/2, the ConvMixer's activation, and its derivative
// Φ(x) + x·φ(x). WGSL has no erf: Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below f32
// rounding of the result). Included by the batch-norm kernels (//!include gelu.wgsl).

fn erf(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign(x) * (1.0 - poly * exp(-x * x));
}

fn gelu(x: f32) -> f32 {
  return 0.5 * x * (1.0 + erf(x * 0.7071067811865476));
}

fn geluGrad(x: f32) -> f32 {
  return 0.5 * (1.0 + erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
