// The low-resolution phase (--crop-size S --crop-fraction F): the first F of a run's steps (F ≥
// 2/5: past the learning rate's peak) train on random S×S crops of the augmented 32×32 images, the
// rest on whole images. This is progressive resizing (fast.ai's DAWNBench entries, EfficientNetV2's
// progressive learning) without the resize: a crop keeps the objects' scale, and ConvMixer takes
// any grid of patches, so the same weights train on 6×6 tokens (a 24-pixel crop at patch 4, 0.56×
// the step's work) and then on 8×8. The whole-image phase at the end fits the BatchNorm statistics
// and the pooled features to the grid the model is evaluated on.
import { convMixerFlops } from "./model.ts";
import type { Recipe } from "./recipe.ts";
import { Random } from "./data/random.ts";
import { IMAGE_SIDE } from "./data/cifar.ts";

/** The stream of the crops' draws: the augmentation's streams are image indices, all below it. */
const CROP_STREAM = 0xfffffffe;

/**
 * The phase ends after the learning rate's peak (at 2/5 of the steps): a --time run fixes its length
 * only there, and where that length is shorter than the first estimate's, F of it may lie before
 * the peak, in steps already trained on crops; ending no earlier than the peak keeps the run equal
 * to its replay with --total-steps N --peak-step P.
 */
export const MIN_CROP_FRACTION = 0.4;

/** What is wrong with a recipe's crops, as "flag value: why" (kebab-case for the flags), or null. */
export function lowResolutionProblem(
  { cropSize, cropFraction, patch }: Pick<Recipe, "cropSize" | "cropFraction" | "patch">,
): string | null {
  if (cropSize !== 0 && (cropSize < patch || cropSize >= IMAGE_SIDE)) {
    return `crop-size ${cropSize}: a crop holds at least one ${patch}-pixel patch and is smaller than the ${IMAGE_SIDE}-pixel images`;
  }
  if (!(cropFraction >= MIN_CROP_FRACTION && cropFraction <= 1)) {
    return `crop-fraction ${cropFraction}: must be in [${MIN_CROP_FRACTION}, 1]`;
  }
  return null;
}

/**
 * The low-resolution phase's length: the first steps of a run of `totalSteps` that train on crops,
 * F of them but not fewer than to the lr's peak (`peakStep`, default 2/5 of the steps).
 */
export function lowResolutionSteps(recipe: Recipe, totalSteps: number, peakStep?: number): number {
  if (recipe.cropSize === 0) return 0;
  return Math.max(Math.round(recipe.cropFraction * totalSteps), peakStep ?? Math.round((totalSteps * 2) / 5));
}

/** A crop step's work against a whole-image step's, from the model's multiply-accumulates. */
export function cropStepCost(recipe: Recipe): number {
  if (recipe.cropSize === 0) return 1;
  const config = { ...recipe, classes: 10 };
  return convMixerFlops(config, recipe.cropSize).training / convMixerFlops(config, IMAGE_SIDE).training;
}

/**
 * Random size×size crops of `count` normalised NHWC 32×32 images, each at a uniform offset drawn
 * for (seed, step): the same crops whatever the worker count, and again after --resume. Written
 * into the start of `out` (a buffer kept across batches), whose used part is returned.
 */
export function randomCrops(
  images: Float32Array,
  count: number,
  size: number,
  seed: number,
  step: number,
  out: Float32Array = new Float32Array(count * size * size * 3),
): Float32Array {
  const random = new Random(seed, step, CROP_STREAM), rowFloats = size * 3;
  const crops = out.subarray(0, count * size * rowFloats);
  for (let i = 0; i < count; i++) {
    const top = random.below(IMAGE_SIDE - size + 1), left = random.below(IMAGE_SIDE - size + 1);
    for (let y = 0; y < size; y++) {
      const from = ((i * IMAGE_SIDE + top + y) * IMAGE_SIDE + left) * 3;
      crops.set(images.subarray(from, from + rowFloats), (i * size + y) * rowFloats);
    }
  }
  return crops;
}
