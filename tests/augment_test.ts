// asm/augment.ts and the plans of src/data/augment_plan.ts against a float64 reference written from
// torchvision's formulas (each op on its own, crop + flip, normalise, erase, whole plans), against
// torchvision 0.14 itself (fixtures from tools/make_augment_fixtures.py), and the plan statistics.
import { deepStrictEqual as assertEquals, notDeepStrictEqual, ok } from "node:assert/strict";
import { gunzipSync } from "fflate";
import { Augmenter, CIFAR_MEAN, CIFAR_STD } from "../src/data/augment.ts";
import {
  type AugmentConfig,
  drawPlan,
  OpCode,
  type Plan,
  type PlanOp,
  RAND_AUGMENT_OPS,
  randAugmentMagnitude,
  type RandAugmentOp,
  randAugmentOp,
} from "../src/data/augment_plan.ts";
import { EVERY_AUGMENT_OP } from "./make_cifar.ts";

const SIDE = 32;
const PLANE = SIDE * SIDE;
const IMAGE = 3 * PLANE;
const FULL = { top: 0, left: 0, height: SIDE, width: SIDE };

// ---- inputs ---------------------------------------------------------------------------------

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Uniform noise, a smooth low-contrast image, and one with a flat channel and few grey levels. */
function testImages(): Uint8Array {
  const random = lcg(42);
  const images = new Uint8Array(3 * IMAGE);
  for (let i = 0; i < IMAGE; i++) images[i] = Math.floor(random() * 256);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        const p = c * PLANE + y * SIDE + x;
        images[IMAGE + p] = 70 + 20 * c + x + (y >> 1) + Math.floor(random() * 9);
        images[2 * IMAGE + p] = c === 1 ? 77 : [0, 64, 200, 255][(x * 3 + y + c) % 4];
      }
    }
  }
  return images;
}

// ---- float64 reference, torchvision's formulas ----------------------------------------------

/**
 * Expected whole-number values with, per element, one alternative that is also right: where the
 * float64 value sits on a rounding or truncation boundary, torchvision's float32 arithmetic (and
 * the kernel's) may land on either side.
 */
interface Expected {
  value: Float64Array;
  alt: Float64Array;
}

const EPS = 1e-3;

function expected(n = IMAGE): Expected {
  return { value: new Float64Array(n), alt: new Float64Array(n) };
}

/** trunc(clamp(v, 0, 255)) as uint8 conversion does, with the value below at an integer. */
function setTruncated(e: Expected, i: number, v: number): void {
  const c = Math.min(255, Math.max(0, v));
  const k = Math.round(c);
  e.value[i] = Math.abs(c - k) < EPS ? k : Math.trunc(c);
  e.alt[i] = Math.abs(c - k) < EPS ? Math.max(0, k - 1) : e.value[i];
}

/** Round half to even (torch.round), with both neighbours at a tie. */
function setRounded(e: Expected, i: number, v: number): void {
  const f = Math.floor(v);
  const tie = Math.abs(v - f - 0.5) < EPS;
  e.value[i] = tie ? f + (f % 2) : Math.round(v);
  e.alt[i] = tie ? f + 1 - (f % 2) : e.value[i];
}

/** Nearest source pixel candidates of a coordinate (two at a tie). */
function nearestCandidates(s: number): number[] {
  const f = Math.floor(s);
  return Math.abs(s - f - 0.5) < EPS ? [f, f + 1] : [Math.round(s)];
}

/** Inverse map (pixel coordinates) of a geometric op; nearest sampling, fill 0. */
function refGeometric(img: Float64Array, source: (x: number, y: number) => [number, number]): Expected {
  const e = expected();
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const [sx, sy] = source(x, y);
      const picks = nearestCandidates(sx).flatMap((ix) => nearestCandidates(sy).map((iy) => [ix, iy]));
      for (let c = 0; c < 3; c++) {
        const read = ([ix, iy]: number[]) =>
          ix >= 0 && ix < SIDE && iy >= 0 && iy < SIDE ? img[c * PLANE + iy * SIDE + ix] : 0;
        e.value[c * PLANE + y * SIDE + x] = read(picks[0]);
        e.alt[c * PLANE + y * SIDE + x] = read(picks[picks.length - 1]);
      }
    }
  }
  return e;
}

function gray(img: Float64Array, p: number): number {
  return Math.trunc(0.2989 * img[p] + 0.587 * img[PLANE + p] + 0.114 * img[2 * PLANE + p]);
}

/** torchvision's _blend(img, degenerate, factor) with the degenerate image given per element. */
function refBlend(img: Float64Array, factor: number, degenerate: (i: number) => number): Expected {
  const e = expected();
  for (let i = 0; i < IMAGE; i++) setTruncated(e, i, factor * img[i] + (1 - factor) * degenerate(i));
  return e;
}

function refSharpness(img: Float64Array, factor: number): Expected {
  return refBlend(img, factor, (i) => {
    const c = Math.floor(i / PLANE), y = Math.floor((i % PLANE) / SIDE), x = i % SIDE;
    if (y === 0 || y === SIDE - 1 || x === 0 || x === SIDE - 1) return img[i];
    let sum = 0;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        sum += (dx === 0 && dy === 0 ? 5 : 1) * img[c * PLANE + (y + dy) * SIDE + x + dx];
      }
    }
    return Math.round(sum / 13);
  });
}

function refAutocontrast(img: Float64Array): Expected {
  const e = expected();
  for (let c = 0; c < 3; c++) {
    const plane = img.subarray(c * PLANE, (c + 1) * PLANE);
    const lo = Math.min(...plane), hi = Math.max(...plane);
    for (let p = 0; p < PLANE; p++) {
      setTruncated(e, c * PLANE + p, hi === lo ? plane[p] : ((plane[p] - lo) * 255) / (hi - lo));
    }
  }
  return e;
}

function refEqualize(img: Float64Array): Expected {
  const e = expected();
  for (let c = 0; c < 3; c++) {
    const plane = img.subarray(c * PLANE, (c + 1) * PLANE);
    const histogram = new Array(256).fill(0);
    for (const v of plane) histogram[v]++;
    const nonzero = histogram.filter((n) => n > 0);
    const step = Math.floor(nonzero.slice(0, -1).reduce((a, b) => a + b, 0) / 255);
    let below = 0;
    const lut = histogram.map((n) => {
      const v = Math.min(255, Math.floor((below + Math.floor(step / 2)) / step));
      below += n;
      return v;
    });
    for (let p = 0; p < PLANE; p++) {
      e.value[c * PLANE + p] = e.alt[c * PLANE + p] = step === 0 ? plane[p] : lut[plane[p]];
    }
  }
  return e;
}

function refPointwise(img: Float64Array, f: (v: number) => number): Expected {
  const e = expected();
  for (let i = 0; i < IMAGE; i++) e.value[i] = e.alt[i] = f(img[i]);
  return e;
}

/** What torchvision's RandAugment op `name` with signed `magnitude` does, from its definition. */
function refRandAugment(img: Float64Array, name: RandAugmentOp, magnitude: number): Expected {
  const half = SIDE / 2 - 0.5;
  switch (name) {
    case "Identity":
      return refPointwise(img, (v) => v);
    case "ShearX": // about the top-left corner: x' = x + m·y in pixel-corner coordinates
      return refGeometric(img, (x, y) => [x + magnitude * (y + 0.5), y]);
    case "ShearY":
      return refGeometric(img, (x, y) => [x, y + magnitude * (x + 0.5)]);
    case "TranslateX":
      return refGeometric(img, (x, y) => [x - Math.trunc(magnitude), y]);
    case "TranslateY":
      return refGeometric(img, (x, y) => [x, y - Math.trunc(magnitude)]);
    case "Rotate": { // counter-clockwise by `magnitude` degrees about the centre
      const a = (magnitude * Math.PI) / 180;
      return refGeometric(img, (x, y) => {
        const [xc, yc] = [x - half, y - half];
        return [Math.cos(a) * xc - Math.sin(a) * yc + half, Math.sin(a) * xc + Math.cos(a) * yc + half];
      });
    }
    case "Brightness":
      return refBlend(img, 1 + magnitude, () => 0);
    case "Color":
      return refBlend(img, 1 + magnitude, (i) => gray(img, i % PLANE));
    case "Contrast": {
      let sum = 0;
      for (let p = 0; p < PLANE; p++) sum += gray(img, p);
      return refBlend(img, 1 + magnitude, () => sum / PLANE);
    }
    case "Sharpness":
      return refSharpness(img, 1 + magnitude);
    case "Posterize": {
      const mask = 256 - 2 ** (8 - Math.trunc(magnitude));
      return refPointwise(img, (v) => v & mask);
    }
    case "Solarize":
      return refPointwise(img, (v) => (v >= magnitude ? 255 - v : v));
    case "AutoContrast":
      return refAutocontrast(img);
    case "Equalize":
      return refEqualize(img);
  }
}

/** RandomResizedCrop's crop + bilinear resize (align_corners=False), rounded, then the flip. */
function refResizedCrop(img: Uint8Array, crop: Plan["crop"], flip: boolean): Expected {
  const e = expected();
  const source = (out: number, size: number) => {
    const s = Math.max((size / SIDE) * (out + 0.5) - 0.5, 0);
    const i0 = Math.floor(s);
    return { i0, i1: Math.min(i0 + 1, size - 1), w: s - i0 };
  };
  for (let y = 0; y < SIDE; y++) {
    const sy = source(y, crop.height);
    for (let x = 0; x < SIDE; x++) {
      const sx = source(x, crop.width);
      for (let c = 0; c < 3; c++) {
        const at = (yy: number, xx: number) => img[c * PLANE + (crop.top + yy) * SIDE + crop.left + xx];
        const top = (1 - sx.w) * at(sy.i0, sx.i0) + sx.w * at(sy.i0, sx.i1);
        const bottom = (1 - sx.w) * at(sy.i1, sx.i0) + sx.w * at(sy.i1, sx.i1);
        setRounded(e, c * PLANE + y * SIDE + (flip ? SIDE - 1 - x : x), (1 - sy.w) * top + sy.w * bottom);
      }
    }
  }
  return e;
}

/** The reference of one plan op (geometric ops through the plan's own inverse matrix). */
function refPlanOp(img: Float64Array, op: PlanOp): Expected {
  const [a, b, c, d, e, f] = op.args;
  const half = SIDE / 2 - 0.5;
  switch (op.code) {
    case OpCode.affine:
      return refGeometric(img, (x, y) => {
        const [xc, yc] = [x - half, y - half];
        return [a * xc + b * yc + c + half, d * xc + e * yc + f + half];
      });
    case OpCode.blendZero:
      return refRandAugment(img, "Brightness", a - 1);
    case OpCode.blendGray:
      return refRandAugment(img, "Color", a - 1);
    case OpCode.blendMean:
      return refRandAugment(img, "Contrast", a - 1);
    case OpCode.blendBlur:
      return refRandAugment(img, "Sharpness", a - 1);
    case OpCode.posterize:
      return refRandAugment(img, "Posterize", 8 - Math.log2(a));
    case OpCode.solarize:
      return refRandAugment(img, "Solarize", a);
    case OpCode.autocontrast:
      return refAutocontrast(img);
    default:
      return refEqualize(img);
  }
}

// ---- running the kernel ---------------------------------------------------------------------

const augmenter = await Augmenter.create(8);
// ToTensor + Normalize in float32: table[c·256 + v] = ((v / 255) − mean_c) / std_c, rounded per step.
const f32 = Math.fround;
const table = Float32Array.from(
  { length: 3 * 256 },
  (_, i) => f32(f32(i % 256 / 255) - f32(CIFAR_MEAN[i >> 8])) / f32(CIFAR_STD[i >> 8]),
);
const inverse = [0, 1, 2].map((c) => new Map(Array.from({ length: 256 }, (_, v) => [table[c * 256 + v], v])));

/** The kernel's NHWC normalised output of one image back to CHW whole numbers. */
function wholeNumbers(out: Float32Array, image: number): Float64Array {
  const img = new Float64Array(IMAGE);
  for (let p = 0; p < PLANE; p++) {
    for (let c = 0; c < 3; c++) {
      const v = inverse[c].get(out[image * IMAGE + p * 3 + c]);
      if (v === undefined) {
        throw new Error(`output ${out[image * IMAGE + p * 3 + c]} is not a normalised uint8`);
      }
      img[c * PLANE + p] = v;
    }
  }
  return img;
}

function plan(ops: PlanOp[], crop = FULL, flip = false, erase: Plan["erase"] = null): Plan {
  return { crop, flip, ops, erase };
}

/** Runs one plan per image and returns the results as whole numbers. */
function runKernel(images: Uint8Array, plans: Plan[]): Float64Array[] {
  const out = augmenter.runPlans(images, plans);
  return plans.map((_, i) => wholeNumbers(out, i));
}

/** Every element equals the reference (or its alternative at a boundary); returns how many used it. */
function check(actual: Float64Array, want: Expected, label: string): number {
  let alternatives = 0;
  for (let i = 0; i < IMAGE; i++) {
    if (actual[i] === want.value[i]) continue;
    if (actual[i] !== want.alt[i]) {
      throw new Error(
        `${label}: element ${i} is ${actual[i]}, reference ${want.value[i]} (or ${want.alt[i]})`,
      );
    }
    alternatives++;
  }
  return alternatives;
}

const images = testImages();
const asFloat = (i: number) => Float64Array.from(images.subarray(i * IMAGE, (i + 1) * IMAGE));

// ---- tests ----------------------------------------------------------------------------------

Deno.test("augment: decode + normalise (no plan) matches (v/255 − mean)/std in float64, NHWC", () => {
  for (const count of [1, 3]) {
    const out = augmenter.runPlans(images.subarray(0, count * IMAGE), null);
    assertEquals(out.length, count * IMAGE);
    let worst = 0;
    for (let i = 0; i < count; i++) {
      for (let p = 0; p < PLANE; p++) {
        for (let c = 0; c < 3; c++) {
          const v = images[i * IMAGE + c * PLANE + p];
          worst = Math.max(
            worst,
            Math.abs(out[i * IMAGE + p * 3 + c] - (v / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c]),
          );
        }
      }
    }
    ok(worst < 1e-6, `worst ${worst}`);
  }
});

Deno.test("augment: resized crop (bilinear, every size 1..32) and flip match the float64 reference", () => {
  const random = lcg(7);
  let ties = 0;
  for (let size = 1; size <= SIDE; size++) {
    const crop = {
      top: Math.floor(random() * (SIDE - size + 1)),
      left: Math.floor(random() * (SIDE - size + 1)),
      height: size,
      width: size,
    };
    const flip = size % 2 === 0;
    const plans = [0, 1, 2].map(() => plan([], crop, flip));
    runKernel(images, plans).forEach((actual, i) => {
      ties += check(
        actual,
        refResizedCrop(images.subarray(i * IMAGE), crop, flip),
        `crop ${size} image ${i}`,
      );
    });
  }
  ok(ties < 32 * 3 * IMAGE * 0.02, `${ties} elements at rounding ties`);
});

Deno.test("augment: each RandAugment op, every sign, bins 0/7/12/30, matches the float64 reference", () => {
  for (const name of RAND_AUGMENT_OPS) {
    for (const bin of [0, 7, 12, 30]) {
      for (const sign of [1, -1]) {
        const { magnitude, signed } = randAugmentMagnitude(name, bin);
        if (sign < 0 && !signed) continue;
        const op = randAugmentOp(name, sign * magnitude);
        const plans = [0, 1, 2].map(() => plan(op ? [op] : []));
        let boundaries = 0;
        runKernel(images, plans).forEach((actual, i) => {
          const label = `${name} bin ${bin} sign ${sign} image ${i}`;
          boundaries += check(actual, refRandAugment(asFloat(i), name, sign * magnitude), label);
        });
        ok(
          boundaries < 3 * IMAGE * 0.05,
          `${name} bin ${bin}: ${boundaries} elements on rounding boundaries`,
        );
      }
    }
  }
});

Deno.test("augment: the magnitudes are torchvision's (31 bins, 32×32 image)", () => {
  const at12 = (name: RandAugmentOp) => randAugmentMagnitude(name, 12);
  const close = (a: number, b: number) => ok(Math.abs(a - b) < 1e-6, `${a} vs ${b}`);
  close(at12("ShearX").magnitude, 0.12);
  close(at12("TranslateY").magnitude, ((150 / 331) * 32 * 12) / 30);
  close(at12("Rotate").magnitude, 12);
  close(at12("Sharpness").magnitude, 0.36);
  assertEquals(at12("Posterize"), { magnitude: 6, signed: false });
  close(at12("Solarize").magnitude, 153);
  assertEquals(at12("Equalize"), { magnitude: 0, signed: false });
  assertEquals(randAugmentMagnitude("Posterize", 30).magnitude, 4);
  assertEquals(randAugmentMagnitude("Brightness", 30).signed, true);
});

Deno.test("augment: random erasing zeroes its rectangle of the normalised image and nothing else", () => {
  const ops = [randAugmentOp("Rotate", 9)!];
  const erase = { top: 3, left: 20, height: 9, width: 12 };
  const out = augmenter.runPlans(images.subarray(0, IMAGE), [plan(ops, FULL, true, erase)]);
  const kept = augmenter.runPlans(images.subarray(0, IMAGE), [plan(ops, FULL, true)]);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const inside = y >= 3 && y < 12 && x >= 20 && x < 32;
      for (let c = 0; c < 3; c++) {
        const i = (y * SIDE + x) * 3 + c;
        assertEquals(out[i], inside ? 0 : kept[i], `pixel ${x},${y}`);
      }
    }
  }
});

Deno.test("augment: whole drawn plans (crop, flip, 3 ops, jitter, erase) run as their steps in order", () => {
  // Each prefix of the plan, run by the kernel, must be the reference step applied to the
  // kernel's result for the prefix before it; the erase then only zeroes its rectangle.
  let boundaries = 0;
  for (let index = 0; index < 24; index++) {
    const drawn = drawPlan({ ...EVERY_AUGMENT_OP, raN: 3 }, 11, 2, index);
    const image = images.subarray((index % 3) * IMAGE, (index % 3 + 1) * IMAGE);
    let before = runKernel(image, [plan([], drawn.crop, drawn.flip)])[0];
    boundaries += check(before, refResizedCrop(image, drawn.crop, drawn.flip), `sample ${index} crop`);
    for (let k = 0; k < drawn.ops.length; k++) {
      const after = runKernel(image, [plan(drawn.ops.slice(0, k + 1), drawn.crop, drawn.flip)])[0];
      boundaries += check(
        after,
        refPlanOp(before, drawn.ops[k]),
        `sample ${index} op ${k} (code ${drawn.ops[k].code})`,
      );
      before = after;
    }
    const out = augmenter.runPlans(image, [drawn]);
    for (let p = 0; p < PLANE; p++) {
      const y = Math.floor(p / SIDE), x = p % SIDE;
      const e = drawn.erase;
      const erased = e !== null && y >= e.top && y < e.top + e.height && x >= e.left && x < e.left + e.width;
      for (let c = 0; c < 3; c++) {
        assertEquals(out[p * 3 + c], erased ? 0 : table[c * 256 + before[c * PLANE + p]]);
      }
    }
  }
  ok(boundaries < 24 * 7 * IMAGE * 0.02, `${boundaries} elements on rounding boundaries`);
});

Deno.test("augment: derandomised flips alternate per image from a random first choice; other draws unchanged", () => {
  const alternate: AugmentConfig = { ...EVERY_AUGMENT_OP, flip: "alternate" };
  let firstFlipped = 0;
  const n = 2000;
  for (let i = 0; i < n; i++) {
    const plans = [0, 1, 2, 3].map((epoch) => drawPlan(alternate, 7, epoch, i));
    firstFlipped += plans[0].flip ? 1 : 0;
    for (let e = 1; e < 4; e++) assertEquals(plans[e].flip, !plans[e - 1].flip, `image ${i} epoch ${e}`);
    const random = drawPlan(EVERY_AUGMENT_OP, 7, 2, i);
    assertEquals({ ...plans[2], flip: random.flip }, random);
  }
  ok(Math.abs(firstFlipped / n - 0.5) < 0.04, `${firstFlipped} of ${n} flipped in epoch 0`);
});

Deno.test("augment: --translate is RandomCrop(32, padding) with zero fill, drawn after every other draw", () => {
  const pixels = 2, side = 2 * pixels + 1, n = 5000;
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const shifted = drawPlan({ ...EVERY_AUGMENT_OP, translate: pixels }, 5, 1, i);
    assertEquals({ ...shifted, ops: shifted.ops.slice(1) }, drawPlan(EVERY_AUGMENT_OP, 5, 1, i));
    const [a, b, c, d, e, f] = shifted.ops[0].args; // the inverse map: input = output − (tx, ty)
    ok(
      shifted.ops[0].code === OpCode.affine && a === 1 && b === 0 && d === 0 && e === 1,
      `${shifted.ops[0].args}`,
    );
    ok(Number.isInteger(c) && Number.isInteger(f) && Math.max(Math.abs(c), Math.abs(f)) <= pixels);
    counts.set(`${-c},${-f}`, (counts.get(`${-c},${-f}`) ?? 0) + 1);
  }
  assertEquals(counts.size, side * side);
  for (const count of counts.values()) {
    ok(Math.abs(count - n / side ** 2) < 4 * Math.sqrt(n / side ** 2), `${count}`);
  }
  // The kernel against zero padding then a crop, written out directly, for every shift.
  for (const [tx, ty] of [...counts.keys()].map((k) => k.split(",").map(Number))) {
    const shift = plan([{ code: OpCode.affine, args: [1, 0, -tx, 0, 1, -ty] }]);
    runKernel(images, [shift, shift, shift]).forEach((actual, i) => {
      const source = asFloat(i);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < SIDE; y++) {
          for (let x = 0; x < SIDE; x++) {
            const [sy, sx] = [y - ty, x - tx];
            const inside = sy >= 0 && sy < SIDE && sx >= 0 && sx < SIDE;
            const want = inside ? source[c * PLANE + sy * SIDE + sx] : 0;
            assertEquals(actual[c * PLANE + y * SIDE + x], want, `shift ${tx},${ty} at ${c},${y},${x}`);
          }
        }
      }
    });
  }
});

Deno.test("augment: plans depend on (seed, epoch, index) only and follow torchvision's distributions", () => {
  assertEquals(drawPlan(EVERY_AUGMENT_OP, 1, 2, 3), drawPlan(EVERY_AUGMENT_OP, 1, 2, 3));
  notDeepStrictEqual(drawPlan(EVERY_AUGMENT_OP, 1, 2, 3), drawPlan(EVERY_AUGMENT_OP, 1, 2, 4));
  notDeepStrictEqual(drawPlan(EVERY_AUGMENT_OP, 1, 2, 3), drawPlan(EVERY_AUGMENT_OP, 1, 3, 3));
  notDeepStrictEqual(drawPlan(EVERY_AUGMENT_OP, 1, 2, 3), drawPlan(EVERY_AUGMENT_OP, 2, 2, 3));
  const n = 6000;
  let flips = 0, erases = 0, affine = 0, raOps = 0;
  const sides = new Set<number>();
  const jitterOrders = new Set<string>();
  const jitterCodes: number[] = [OpCode.blendZero, OpCode.blendMean, OpCode.blendGray];
  const minSide = Math.round(Math.sqrt(1024 * EVERY_AUGMENT_OP.scale));
  for (let i = 0; i < n; i++) {
    const p = drawPlan(EVERY_AUGMENT_OP, 9, 0, i);
    ok(p.crop.width === p.crop.height && p.crop.width >= minSide && p.crop.width <= SIDE);
    ok(p.crop.top + p.crop.height <= SIDE && p.crop.left + p.crop.width <= SIDE);
    sides.add(p.crop.width);
    flips += p.flip ? 1 : 0;
    if (p.erase) {
      erases++;
      const area = p.erase.width * p.erase.height;
      ok(
        area >= 0.015 * 1024 && area <= 0.36 * 1024 && p.erase.top + p.erase.height <= SIDE,
        JSON.stringify(p.erase),
      );
    }
    const jitter = p.ops.slice(-3);
    assertEquals(jitter.map((o) => o.code).sort(), [...jitterCodes].sort());
    jitterOrders.add(jitter.map((o) => o.code).join());
    for (const o of jitter) ok(o.args[0] >= 0.8 && o.args[0] <= 1.2 && o.args[1] === 1 - o.args[0]);
    for (const o of p.ops.slice(0, -3)) {
      raOps++;
      affine += o.code === OpCode.affine ? 1 : 0;
    }
  }
  assertEquals([...sides].sort((a, b) => a - b), [28, 29, 30, 31, 32]);
  assertEquals(jitterOrders.size, 6);
  const near = (count: number, p: number, total: number) =>
    ok(
      Math.abs(count - p * total) < 4 * Math.sqrt(p * (1 - p) * total),
      `${count} of ${total}, expected ${p}`,
    );
  near(flips, 0.5, n);
  near(erases, 0.25, n);
  near(raOps, 13 / 14, 2 * n); // Identity is drawn but applies nothing
  near(affine, 5 / 14, 2 * n); // ShearX/Y, TranslateX/Y, Rotate
});

// ---- torchvision fixtures -------------------------------------------------------------------

interface FixtureCase {
  kind: "op" | "crop";
  op: RandAugmentOp;
  bin: number;
  negative: boolean;
  magnitude: number;
  top: number;
  left: number;
  size: number;
  flip: boolean;
}

// The kernel does torchvision's float32 arithmetic step for step, so the match is exact.
Deno.test("augment: matches torchvision 0.14 on uint8 tensors exactly (every op, crops, normalise)", async () => {
  const blob = gunzipSync(
    await Deno.readFile(new URL("./fixtures/augment_torchvision.bin.gz", import.meta.url)),
  );
  const headerLength = new DataView(blob.buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(blob.subarray(4, 4 + headerLength)));
  const count: number = header.count;
  let at = 4 + headerLength;
  const inputs = blob.slice(at, at += count * IMAGE);
  for (const c of header.cases as FixtureCase[]) {
    const want = blob.subarray(at, at += count * IMAGE);
    let p: Plan;
    if (c.kind === "op") {
      const { magnitude } = randAugmentMagnitude(c.op, c.bin);
      ok(Math.abs(magnitude - Math.abs(c.magnitude)) <= 1e-6 * Math.abs(c.magnitude), `${c.op} magnitude`);
      const op = randAugmentOp(c.op, c.negative ? -magnitude : magnitude);
      p = plan(op ? [op] : []);
    } else {
      p = plan([], { top: c.top, left: c.left, height: c.size, width: c.size }, c.flip);
    }
    const got = runKernel(inputs, Array(count).fill(p));
    let differ = 0, worst = 0;
    got.forEach((img, i) => {
      for (let k = 0; k < IMAGE; k++) {
        const d = Math.abs(img[k] - want[i * IMAGE + k]);
        differ += d > 0 ? 1 : 0;
        worst = Math.max(worst, d);
      }
    });
    const label = `${JSON.stringify(c)}: ${differ} values differ, worst by ${worst}`;
    assertEquals(differ, 0, label);
  }
  const normalised = new Float32Array(blob.slice(at, at + count * IMAGE * 4).buffer);
  const out = augmenter.runPlans(inputs, null);
  for (let i = 0; i < count; i++) {
    for (let p = 0; p < PLANE; p++) {
      for (let c = 0; c < 3; c++) {
        ok(Math.abs(out[i * IMAGE + p * 3 + c] - normalised[i * IMAGE + c * PLANE + p]) <= 1e-6);
      }
    }
  }
});
