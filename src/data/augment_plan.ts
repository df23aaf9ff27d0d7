// The random draws of each sample's augmentation (a "plan": crop box, flip, RandAugment ops,
// ColorJitter order and factors, erase box), following torchvision's get_params, and their
// encoding into the words asm/augment.ts reads. The plan of sample i in epoch e depends on
// (seed, e, i) only. src/data/augment.ts runs the plans.
import { Random } from "./random.ts";
import { IMAGE_SIDE } from "./cifar.ts";

export interface AugmentConfig {
  enabled: boolean;
  /** RandomResizedCrop's smallest area fraction (scale=(scale, 1), ratio 1). */
  scale: number;
  /** RandAugment: number of ops and magnitude (of 31 bins). */
  raN: number;
  raM: number;
  /** ColorJitter brightness = contrast = saturation strength (0: off). */
  jitter: number;
  /** RandomErasing probability. */
  reprob: number;
  /**
   * "random": RandomHorizontalFlip(p = 0.5) every epoch. "alternate": airbench's derandomised
   * flip, each image mirrored on every other epoch from a random first choice, so any two
   * consecutive epochs show both of its sides.
   */
  flip: "random" | "alternate";
  /** RandomCrop(32, padding=translate) with zero fill: a shift of up to this many pixels (0: off). */
  translate: number;
}

// Layout of one plan, PLAN_WORDS 32-bit words (keep in step with asm/augment.ts).
export const PLAN_WORDS = 128;
export const PLAN = {
  cropTop: 0,
  cropLeft: 1,
  cropHeight: 2,
  cropWidth: 3,
  flip: 4,
  eraseTop: 5,
  eraseLeft: 6,
  eraseHeight: 7,
  eraseWidth: 8,
  opCount: 9,
  ops: 16,
} as const;
export const OP_WORDS = 8;
export const MAX_OPS = (PLAN_WORDS - PLAN.ops) / OP_WORDS;

export const OpCode = {
  affine: 1,
  blendZero: 2,
  blendGray: 3,
  blendMean: 4,
  blendBlur: 5,
  posterize: 6,
  solarize: 7,
  autocontrast: 8,
  equalize: 9,
} as const;

/** One pixel op of a plan: its code and f32 arguments (see asm/augment.ts). */
export interface PlanOp {
  code: number;
  args: number[];
}

export interface Plan {
  crop: { top: number; left: number; height: number; width: number };
  flip: boolean;
  ops: PlanOp[];
  erase: { top: number; left: number; height: number; width: number } | null;
}

export const RAND_AUGMENT_OPS = [
  "Identity",
  "ShearX",
  "ShearY",
  "TranslateX",
  "TranslateY",
  "Rotate",
  "Brightness",
  "Color",
  "Contrast",
  "Sharpness",
  "Posterize",
  "Solarize",
  "AutoContrast",
  "Equalize",
] as const;
export type RandAugmentOp = typeof RAND_AUGMENT_OPS[number];
const MAGNITUDE_BINS = 31;

/** torch.linspace(start, end, 31)[m] as torch computes it on the CPU, in float32 from both ends. */
function linspace(start: number, end: number, m: number): number {
  const f = Math.fround;
  const step = f(f(f(end) - f(start)) / (MAGNITUDE_BINS - 1));
  const half = Math.floor(MAGNITUDE_BINS / 2);
  return m < half ? f(f(start) + f(step * m)) : f(f(end) - f(step * (MAGNITUDE_BINS - 1 - m)));
}

/** RandAugment's magnitude of `op` at bin m (torchvision's _augmentation_space for a 32×32 image), unsigned. */
export function randAugmentMagnitude(op: RandAugmentOp, m: number): { magnitude: number; signed: boolean } {
  switch (op) {
    case "ShearX":
    case "ShearY":
      return { magnitude: linspace(0, 0.3, m), signed: true };
    case "TranslateX":
    case "TranslateY":
      return { magnitude: linspace(0, (150 / 331) * IMAGE_SIDE, m), signed: true };
    case "Rotate":
      return { magnitude: linspace(0, 30, m), signed: true };
    case "Brightness":
    case "Color":
    case "Contrast":
    case "Sharpness":
      return { magnitude: linspace(0, 0.9, m), signed: true };
    case "Posterize":
      return { magnitude: 8 - Math.round(m / ((MAGNITUDE_BINS - 1) / 4)), signed: false };
    case "Solarize":
      return { magnitude: linspace(255, 0, m), signed: false };
    default:
      return { magnitude: 0, signed: false };
  }
}

/** torchvision's _get_inverse_affine_matrix (centre-relative pixel coordinates). */
function inverseAffine(
  center: [number, number],
  angle: number,
  translate: [number, number],
  shear: [number, number],
): number[] {
  const rad = Math.PI / 180;
  const [rot, sx, sy] = [angle * rad, shear[0] * rad, shear[1] * rad];
  const [cx, cy] = center;
  const [tx, ty] = translate;
  const a = Math.cos(rot - sy) / Math.cos(sy);
  const b = (-Math.cos(rot - sy) * Math.tan(sx)) / Math.cos(sy) - Math.sin(rot);
  const c = Math.sin(rot - sy) / Math.cos(sy);
  const d = (-Math.sin(rot - sy) * Math.tan(sx)) / Math.cos(sy) + Math.cos(rot);
  const m = [d, -b, 0, -c, a, 0];
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return m;
}

/** A blend op: torchvision's _blend(img, degenerate, factor) takes factor and 1 − factor as f32. */
function blendOp(code: number, factor: number): PlanOp {
  return { code, args: [factor, 1 - factor] };
}

/** The pixel op torchvision's _apply_op performs for a RandAugment op with a signed magnitude. */
export function randAugmentOp(op: RandAugmentOp, magnitude: number): PlanOp | null {
  const degrees = (x: number) => (Math.atan(x) * 180) / Math.PI;
  const topLeft: [number, number] = [-IMAGE_SIDE / 2, -IMAGE_SIDE / 2]; // shears are about the corner (center=[0, 0])
  switch (op) {
    case "Identity":
      return null;
    case "ShearX":
      return { code: OpCode.affine, args: inverseAffine(topLeft, 0, [0, 0], [degrees(magnitude), 0]) };
    case "ShearY":
      return { code: OpCode.affine, args: inverseAffine(topLeft, 0, [0, 0], [0, degrees(magnitude)]) };
    case "TranslateX":
      return { code: OpCode.affine, args: inverseAffine([0, 0], 0, [Math.trunc(magnitude), 0], [0, 0]) };
    case "TranslateY":
      return { code: OpCode.affine, args: inverseAffine([0, 0], 0, [0, Math.trunc(magnitude)], [0, 0]) };
    case "Rotate": // F.rotate passes −angle to the same matrix
      return { code: OpCode.affine, args: inverseAffine([0, 0], -magnitude, [0, 0], [0, 0]) };
    case "Brightness":
      return blendOp(OpCode.blendZero, 1 + magnitude);
    case "Color":
      return blendOp(OpCode.blendGray, 1 + magnitude);
    case "Contrast":
      return blendOp(OpCode.blendMean, 1 + magnitude);
    case "Sharpness":
      return blendOp(OpCode.blendBlur, 1 + magnitude);
    case "Posterize":
      return { code: OpCode.posterize, args: [2 ** (8 - Math.trunc(magnitude))] };
    case "Solarize":
      return { code: OpCode.solarize, args: [magnitude] };
    case "AutoContrast":
      return { code: OpCode.autocontrast, args: [] };
    case "Equalize":
      return { code: OpCode.equalize, args: [] };
  }
}

/** The derandomised flip's choice for epoch 0: a coin per (seed, image), the same every epoch. */
function firstFlip(seed: number, index: number): boolean {
  return new Random(seed, 0xfffffffe, index).uniform() < 0.5;
}

/**
 * RandomCrop(32, padding=p)'s get_params (top, left uniform in 0..2p) as the integer translation by
 * (p − left, p − top) it amounts to, pixels shifted in from outside being 0.
 */
function translateOp(random: Random, pixels: number): PlanOp {
  const top = random.below(2 * pixels + 1), left = random.below(2 * pixels + 1);
  return { code: OpCode.affine, args: inverseAffine([0, 0], 0, [pixels - left, pixels - top], [0, 0]) };
}

/**
 * Draws sample `index`'s plan for `epoch`, as the ConvMixer CIFAR script's transforms would:
 * RandomResizedCrop(32, scale=(s, 1), ratio=(1, 1)), RandomHorizontalFlip(), RandAugment(n, m),
 * ColorJitter(j, j, j), [ToTensor, Normalize], RandomErasing(p); with `translate`, a
 * RandomCrop(32, padding) between the flip and RandAugment (its draws come last, so every other
 * draw is the same as without it).
 */
export function drawPlan(config: AugmentConfig, seed: number, epoch: number, index: number): Plan {
  const random = new Random(seed, epoch, index);
  const area = IMAGE_SIDE * IMAGE_SIDE;

  // RandomResizedCrop.get_params with ratio 1: a square of side round(√(area·U(s, 1))).
  let crop = { top: 0, left: 0, height: IMAGE_SIDE, width: IMAGE_SIDE };
  for (let attempt = 0; attempt < 10; attempt++) {
    const side = Math.round(Math.sqrt(area * random.between(config.scale, 1)));
    if (side > 0 && side <= IMAGE_SIDE) {
      const top = random.below(IMAGE_SIDE - side + 1);
      crop = { top, left: random.below(IMAGE_SIDE - side + 1), height: side, width: side };
      break;
    }
  }
  const coin = random.uniform() < 0.5; // drawn in both modes, so the draws after it stay the same
  const flip = config.flip === "alternate" ? firstFlip(seed, index) !== (epoch % 2 === 1) : coin;

  const ops: PlanOp[] = [];
  for (let k = 0; k < config.raN; k++) {
    const name = RAND_AUGMENT_OPS[random.below(RAND_AUGMENT_OPS.length)];
    let { magnitude, signed } = randAugmentMagnitude(name, config.raM);
    if (signed && random.below(2) === 1) magnitude = -magnitude;
    const op = randAugmentOp(name, magnitude);
    if (op) ops.push(op);
  }

  // ColorJitter.get_params: a random order of the four adjustments (hue is off), then the factors.
  if (config.jitter > 0) {
    const order = [0, 1, 2, 3];
    for (let i = 3; i > 0; i--) {
      const j = random.below(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const low = Math.max(0, 1 - config.jitter);
    const high = 1 + config.jitter;
    const factors = [random.between(low, high), random.between(low, high), random.between(low, high)];
    const codes = [OpCode.blendZero, OpCode.blendMean, OpCode.blendGray];
    for (const fn of order) if (fn < 3) ops.push(blendOp(codes[fn], factors[fn]));
  }

  // RandomErasing.get_params: area U(0.02, 0.33)·1024, log-uniform aspect in (0.3, 3.3).
  let erase: Plan["erase"] = null;
  if (random.uniform() < config.reprob) {
    for (let attempt = 0; attempt < 10; attempt++) {
      const eraseArea = area * random.between(0.02, 0.33);
      const aspect = Math.exp(random.between(Math.log(0.3), Math.log(3.3)));
      const height = Math.round(Math.sqrt(eraseArea * aspect));
      const width = Math.round(Math.sqrt(eraseArea / aspect));
      if (height < IMAGE_SIDE && width < IMAGE_SIDE) {
        const top = random.below(IMAGE_SIDE - height + 1);
        erase = { top, left: random.below(IMAGE_SIDE - width + 1), height, width };
        break;
      }
    }
  }
  if (config.translate > 0) ops.unshift(translateOp(random, config.translate));
  return { crop, flip, ops, erase };
}

/** Writes `plan` into 32-bit words at `words` (an Int32Array over the plan area). */
export function encodePlan(plan: Plan, words: Int32Array): void {
  if (plan.ops.length > MAX_OPS) {
    throw new Error(
      `augmentation: ${plan.ops.length} ops in one plan, at most ${MAX_OPS} fit (lower --ra-n)`,
    );
  }
  const floats = new Float32Array(words.buffer, words.byteOffset, words.length);
  words.fill(0);
  words[PLAN.cropTop] = plan.crop.top;
  words[PLAN.cropLeft] = plan.crop.left;
  words[PLAN.cropHeight] = plan.crop.height;
  words[PLAN.cropWidth] = plan.crop.width;
  words[PLAN.flip] = plan.flip ? 1 : 0;
  if (plan.erase) {
    words[PLAN.eraseTop] = plan.erase.top;
    words[PLAN.eraseLeft] = plan.erase.left;
    words[PLAN.eraseHeight] = plan.erase.height;
    words[PLAN.eraseWidth] = plan.erase.width;
  }
  words[PLAN.opCount] = plan.ops.length;
  plan.ops.forEach((op, k) => {
    const at = PLAN.ops + k * OP_WORDS;
    words[at] = op.code;
    floats.set(op.args, at + 1);
  });
}
