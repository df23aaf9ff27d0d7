// Numbers that both backends' kernels must agree on, defined once: the WebGPU backend hands them
// to every WGSL kernel (src/webgpu/shader_constants.ts); the WASM backend passes them to its kernels
// as arguments (src/wasm/ops.ts).

/** torch.nn.BatchNorm2d's defaults: var + eps under the square root, running = (1 − m)·running + m·batch. */
export const BATCHNORM_EPS = 1e-5;
export const BATCHNORM_MOMENTUM = 0.1;

/** The optimizer as a kernel argument (the code both backends' optimizer kernels read). */
export const OPTIMIZER_CODE = { adamw: 0, sgd: 1, nesterov: 2 } as const;
