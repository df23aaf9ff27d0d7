/**
 * ConvMixer on CIFAR-10 from another Deno program: the model, its two backends (WebAssembly SIMD on
 * the CPU, WebGPU), the trainer, evaluation, prediction on images, and timm-compatible checkpoints.
 *
 * The WASM backend and the data pipeline load `build/convmixer.wasm`: run `deno task build` in this
 * repository first. Permissions: `-A` (files, workers, WebGPU, environment).
 *
 * @example Classify an image file with a trained checkpoint
 * ```ts
 * import { ConvMixer, loadCheckpoint, loadStateDict, predict, readImageRecord, selectBackend, topClasses } from "./mod.ts";
 *
 * const { config, state } = await loadCheckpoint("runs/my-run/last.safetensors");
 * const { backend } = await selectBackend("auto");
 * const model = new ConvMixer(backend, config, 1);
 * loadStateDict(model, state);
 * const probabilities = await predict(model, await readImageRecord("cat.jpg"));
 * console.log(topClasses(probabilities, 3)); // [{ class: 3, probability: 0.91 }, …]
 * backend.dispose();
 * ```
 *
 * @example Train a small model for one epoch
 * ```ts
 * import { train, trainOptions } from "./mod.ts";
 *
 * const { runDir, testAccuracy } = await train(
 *   trainOptions({ backend: "wasm", recipe: { hdim: 64, depth: 2, epochs: 1 }, out: "runs/small" }),
 * );
 * ```
 * @module
 */
import { parseTrainArgs, type TrainOptions } from "./src/options.ts";

export { ConvMixer, type ConvMixerConfig } from "./src/model.ts";
export type { Backend, OptimizerHyper, OptimizerKind, Tensor } from "./src/backend.ts";
export { WasmBackend } from "./src/wasm/backend.ts";
export { WebGpuBackend } from "./src/webgpu/backend.ts";
export { selectBackend, type Selected } from "./src/select_backend.ts";
export { type BackendChoice, type TrainOptions } from "./src/options.ts";
export { PRESETS, type Recipe } from "./src/recipe.ts";
export { train } from "./src/train.ts";
export { type EvalResult, evaluate } from "./src/evaluate.ts";
export { BatchLoader, type LoaderOptions } from "./src/data/loader.ts";
export { type CifarSplit, CLASS_NAMES, openCifar } from "./src/data/cifar.ts";
export { predict, readImageRecord, topClasses } from "./src/predict.ts";
export { decodeImage, type RgbImage, toCifarRecord } from "./src/image.ts";
export { analyseLogits, type TestAnalysis } from "./src/report/analysis.ts";
export {
  loadCheckpoint,
  loadStateDict,
  saveCheckpoint,
  type StateDict,
  stateDict,
} from "./src/checkpoint.ts";

/**
 * Training options with `task train`'s defaults (backend auto, the preset for that backend, seed 0,
 * shuffled), overridden by `options`; `recipe` holds the flags that override the preset.
 */
export function trainOptions(options: Partial<TrainOptions> = {}): TrainOptions {
  return { ...parseTrainArgs([]), ...options };
}
