// The WebAssembly module: every CPU kernel. Each file holds one family of kernels with its
// forward and backward side by side; the TypeScript side (src/wasm/) owns all memory and passes
// byte offsets into the shared linear memory. (asm/peak.ts, the bench's probe, is a module of its own.)
export * from "./memory";
export * from "./gemm";
export * from "./patch_embed";
export * from "./augment";
export * from "./depthwise";
export * from "./gelu_batchnorm";
export * from "./head";
export * from "./optimizer";
