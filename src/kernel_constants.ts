// Numbers that both backends' kernels must agree on, defined once: the WebGPU backend hands them
// to every WGSL kernel (src/webgpu/shader_constants.ts); the WASM kernels (asm/) still spell them
// out and can take them from here.

/** torch.nn.BatchNorm2d's defaults: var + eps under the square root, running = (1 − m)·running + m·batch. */
export const BATCHNORM_EPS = 1e-5;
export const BATCHNORM_MOMENTUM = 0.1;

/** The optimizer as a kernel argument (the WASM encoding: src/wasm/layer_ops.ts passes 0 for adamw). */
export const OPTIMIZER_CODE = { adamw: 0, sgd: 1 } as const;
