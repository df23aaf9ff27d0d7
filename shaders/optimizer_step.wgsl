// One optimizer step for one parameter tensor, one thread per element. The gradient-clipping
// factor min(1, clipNorm/(‖g‖ + 1e-6)) is computed here from sumSquares (filled by
// sum_squares.wgsl) so the global norm never leaves the GPU.
//   AdamW (torch.optim.AdamW): p −= lr·wd·p; m, v moments; p −= lr·m̂/(√v̂ + eps)
//   SGD (no momentum):         p −= lr·(g + wd·p)
//   Nesterov SGD (torch.optim.SGD(momentum=β1, nesterov=True)): d = g + wd·p; m = β1·m + d;
//                              p −= lr·(d + β1·m)

struct Params {
  n: u32,
  kind: u32, // OPTIMIZER_ADAMW, OPTIMIZER_SGD or OPTIMIZER_NESTEROV
  lr: f32,
  weightDecay: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  biasCorrection1: f32, // 1 − β1^t
  biasCorrection2: f32, // 1 − β2^t
  clipNorm: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> sumSquares: array<f32>;

@compute @workgroup_size(WG_THREADS)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * groups.x + wid.x) * WG_THREADS + lid;
  if (i >= params.n) {
    return;
  }
  var g = grad[i];
  if (params.clipNorm > 0.0) {
    g *= min(1.0, params.clipNorm / (sqrt(sumSquares[0]) + 1e-6));
  }
  var p = param[i];
  if (params.kind == OPTIMIZER_ADAMW) {
    p -= params.lr * params.weightDecay * p;
    let mi = params.beta1 * m[i] + (1.0 - params.beta1) * g;
    let vi = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    p -= params.lr * (mi / params.biasCorrection1) / (sqrt(vi / params.biasCorrection2) + params.eps);
  } else if (params.kind == OPTIMIZER_SGD) {
    p -= params.lr * (g + params.weightDecay * p);
  } else {
    let d = g + params.weightDecay * p;
    let mi = params.beta1 * m[i] + d;
    m[i] = mi;
    p -= params.lr * (d + params.beta1 * mi);
  }
  param[i] = p;
}
