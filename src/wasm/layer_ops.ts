// Placeholder until the layer kernels land: the signatures WasmBackend delegates to.
import type { OptimizerHyper } from "../backend.ts";
import type { WasmContext, WasmTensor } from "./module.ts";

function notYet(op: string): never {
  throw new Error(`wasm: ${op} not implemented yet`);
}

export function depthwiseConvForward(
  _ctx: WasmContext,
  _x: WasmTensor,
  _w: WasmTensor,
  _out: WasmTensor,
): void {
  notYet("depthwiseConvForward");
}
export function depthwiseConvBackwardInput(
  _ctx: WasmContext,
  _dOut: WasmTensor,
  _w: WasmTensor,
  _dx: WasmTensor,
): void {
  notYet("depthwiseConvBackwardInput");
}
export function depthwiseConvBackwardWeight(
  _ctx: WasmContext,
  _x: WasmTensor,
  _dOut: WasmTensor,
  _dw: WasmTensor,
): void {
  notYet("depthwiseConvBackwardWeight");
}
export function biasGeluBatchNormForward(
  _ctx: WasmContext,
  _z: WasmTensor,
  _bias: WasmTensor,
  _gamma: WasmTensor,
  _beta: WasmTensor,
  _runningMean: WasmTensor,
  _runningVar: WasmTensor,
  _saved: WasmTensor,
  _residual: WasmTensor | null,
  _out: WasmTensor,
  _training: boolean,
): void {
  notYet("biasGeluBatchNormForward");
}
export function biasGeluBatchNormBackward(
  _ctx: WasmContext,
  _z: WasmTensor,
  _bias: WasmTensor,
  _gamma: WasmTensor,
  _saved: WasmTensor,
  _dOut: WasmTensor,
  _dz: WasmTensor,
  _dBias: WasmTensor,
  _dGamma: WasmTensor,
  _dBeta: WasmTensor,
): void {
  notYet("biasGeluBatchNormBackward");
}
export function averagePoolForward(_ctx: WasmContext, _x: WasmTensor, _out: WasmTensor): void {
  notYet("averagePoolForward");
}
export function averagePoolBackward(_ctx: WasmContext, _dOut: WasmTensor, _dx: WasmTensor): void {
  notYet("averagePoolBackward");
}
export function softmaxCrossEntropy(
  _ctx: WasmContext,
  _logits: WasmTensor,
  _labels: WasmTensor,
  _dLogits: WasmTensor | null,
  _metrics: WasmTensor,
): void {
  notYet("softmaxCrossEntropy");
}
export function accumulateSquares(_ctx: WasmContext, _g: WasmTensor, _sumSquares: WasmTensor): void {
  notYet("accumulateSquares");
}
export function optimizerStep(
  _ctx: WasmContext,
  _param: WasmTensor,
  _grad: WasmTensor,
  _m: WasmTensor,
  _v: WasmTensor,
  _sumSquares: WasmTensor,
  _hyper: OptimizerHyper,
): void {
  notYet("optimizerStep");
}
