// CIFAR-10 batch preparation: decode the uint8 CHW records, apply each sample's augmentation plan
// and write normalised float32 NHWC images. The plans (which crop, which ops, which factors) are
// drawn in TypeScript (src/data/augment.ts); this file does the pixel work.
//
// Semantics follow torchvision 0.14 on uint8 tensors in the order of the ConvMixer CIFAR script:
// every op reads and writes whole numbers 0..255 (kept here as f32 in CHW planes) and rounds or
// truncates exactly where torchvision converts back to uint8, computing in float32 as it does.
// Point ops work on 4 pixels per v128; geometric ops compute one source index per pixel and move
// all three channels.

const SIDE = 32;
const PLANE: usize = 1024;
const IMAGE: usize = 3 * PLANE;

// Plan layout: PLAN_WORDS 32-bit words per sample (keep in step with src/data/augment.ts).
const PLAN_WORDS: usize = 128;
const CROP_TOP = 0; // crop rows [top, top+height) and columns [left, left+width), resized to 32×32
const CROP_LEFT = 1;
const CROP_HEIGHT = 2;
const CROP_WIDTH = 3;
const FLIP = 4; // 1: mirror horizontally after the crop
const ERASE_TOP = 5; // erase (set to 0 after normalising) a rectangle; height 0: none
const ERASE_LEFT = 6;
const ERASE_HEIGHT = 7;
const ERASE_WIDTH = 8;
const OP_COUNT = 9;
const OPS = 16; // OP_COUNT ops of OP_WORDS words each: code, then up to 7 f32 arguments
const OP_WORDS = 8;

// Op codes and their f32 arguments.
const OP_AFFINE = 1; // 6: inverse map, output centre-relative (x, y) -> input: [a b c; d e f], nearest, fill 0
const OP_BLEND_ZERO = 2; // 2: r, q — brightness: r·x + q·0
const OP_BLEND_GRAY = 3; // 2: r, q — saturation: r·x + q·gray(x)
const OP_BLEND_MEAN = 4; // 2: r, q — contrast: r·x + q·mean(gray(x))
const OP_BLEND_BLUR = 5; // 2: r, q — sharpness: r·x + q·smooth(x) (border pixels keep x)
const OP_POSTERIZE = 6; // 1: 2^(8-bits)
const OP_SOLARIZE = 7; // 1: threshold
const OP_AUTOCONTRAST = 8;
const OP_EQUALIZE = 9;

/**
 * Prepares `count` images: records (uint8, count×3072, CHW) → out (f32, count×32×32×3, NHWC,
 * normalised with meanStd: 3 means then 3 standard deviations, f32). With plans = 0 images are only
 * decoded and normalised; otherwise plans holds PLAN_WORDS words per sample.
 * scratch: 2 × 3072 f32 (two CHW images, ping-pong between ops) + 256 i32 (histogram).
 */
export function augmentBatch(records: usize, plans: usize, count: i32, meanStd: usize, scratch: usize, out: usize): void {
  for (let i = 0; i < count; i++) {
    const record = records + <usize>i * IMAGE;
    const image = out + <usize>i * IMAGE * 4;
    let src = scratch;
    let dst = scratch + IMAGE * 4;
    if (plans == 0) {
      decode(record, src);
      normalise(src, meanStd, image);
      continue;
    }
    const plan = plans + <usize>i * PLAN_WORDS * 4;
    resizedCrop(record, plan, dst, src);
    const ops = load<i32>(plan + OP_COUNT * 4);
    for (let k = 0; k < ops; k++) {
      applyOp(plan + (OPS + k * OP_WORDS) * 4, src, dst, scratch + 2 * IMAGE * 4);
      const t = src;
      src = dst;
      dst = t;
    }
    normalise(src, meanStd, image);
    erase(plan, image);
  }
}

/** uint8 → f32, 16 bytes per step. */
function decode(record: usize, dst: usize): void {
  for (let i: usize = 0; i < IMAGE; i += 16) {
    const bytes = v128.load(record + i);
    const lo = i16x8.extend_low_i8x16_u(bytes);
    const hi = i16x8.extend_high_i8x16_u(bytes);
    v128.store(dst + i * 4, f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(lo)));
    v128.store(dst + i * 4 + 16, f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(lo)));
    v128.store(dst + i * 4 + 32, f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(hi)));
    v128.store(dst + i * 4 + 48, f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(hi)));
  }
}

/**
 * CHW planes of whole numbers → NHWC ((v / 255) − mean) / std, rounded at each step as ToTensor and
 * Normalize do in float32. Four pixels of each plane are interleaved into three vectors r g b r |
 * g b r g | b r g b.
 */
function normalise(src: usize, meanStd: usize, out: usize): void {
  const scale = f32x4.splat(255);
  const mean0 = f32x4.splat(load<f32>(meanStd)), std0 = f32x4.splat(load<f32>(meanStd, 12));
  const mean1 = f32x4.splat(load<f32>(meanStd, 4)), std1 = f32x4.splat(load<f32>(meanStd, 16));
  const mean2 = f32x4.splat(load<f32>(meanStd, 8)), std2 = f32x4.splat(load<f32>(meanStd, 20));
  for (let p: usize = 0; p < PLANE; p += 4) {
    const r = f32x4.div(f32x4.sub(f32x4.div(v128.load(src + p * 4), scale), mean0), std0);
    const g = f32x4.div(f32x4.sub(f32x4.div(v128.load(src + (PLANE + p) * 4), scale), mean1), std1);
    const b = f32x4.div(f32x4.sub(f32x4.div(v128.load(src + (2 * PLANE + p) * 4), scale), mean2), std2);
    const to = out + p * 12;
    v128.store(to, f32x4.shuffle(f32x4.shuffle(r, g, 0, 4, 1, 5), b, 0, 1, 4, 2));
    v128.store(to + 16, f32x4.shuffle(f32x4.shuffle(g, b, 1, 5, 2, 6), r, 0, 1, 6, 2));
    v128.store(to + 32, f32x4.shuffle(b, f32x4.shuffle(r, g, 3, 7, 3, 7), 2, 4, 5, 3));
  }
}

/**
 * RandomResizedCrop's crop + bilinear resize to 32×32 (torch interpolate, align_corners=False, no
 * antialias: crops are never larger than the output), rounded to whole numbers, then the flip.
 * Separable as torch evaluates it: each used source row is first interpolated along x into `rows`
 * (mirrored when flipping), then output rows mix two of those, 4 pixels per v128. A full-size
 * crop (scale 1) resizes to itself exactly, so it is only decoded (and mirrored).
 */
function resizedCrop(record: usize, plan: usize, rows: usize, dst: usize): void {
  const top = load<i32>(plan + CROP_TOP * 4);
  const left = load<i32>(plan + CROP_LEFT * 4);
  const height = load<i32>(plan + CROP_HEIGHT * 4);
  const width = load<i32>(plan + CROP_WIDTH * 4);
  const flip = load<i32>(plan + FLIP * 4) != 0;
  if (height == SIDE && width == SIDE) {
    decode(record, flip ? rows : dst);
    if (flip) {
      for (let row: usize = 0; row < 3 * <usize>SIDE; row++) {
        const from = rows + row * SIDE * 4;
        const to = dst + row * SIDE * 4;
        for (let x: usize = 0; x < <usize>SIDE; x += 4) {
          const v = v128.load(from + x * 4);
          v128.store(to + (<usize>SIDE - 4 - x) * 4, f32x4.shuffle(v, v, 3, 2, 1, 0));
        }
      }
    }
    return;
  }
  const scaleX = <f32>width / <f32>SIDE;
  for (let x = 0; x < SIDE; x++) {
    const sx = max<f32>(scaleX * (<f32>x + 0.5) - 0.5, 0);
    const x0 = <i32>sx;
    const x1 = x0 + (x0 < width - 1 ? 1 : 0);
    const wx1 = sx - <f32>x0;
    const wx0: f32 = 1 - wx1;
    const column = <usize>(flip ? SIDE - 1 - x : x);
    for (let r = 0; r < height; r++) {
      const from = record + <usize>((top + r) * SIDE + left);
      for (let c: usize = 0; c < 3; c++) {
        const t = <f32>load<u8>(from + c * PLANE + x0) * wx0 + <f32>load<u8>(from + c * PLANE + x1) * wx1;
        store<f32>(rows + (c * PLANE + <usize>r * SIDE + column) * 4, t);
      }
    }
  }
  const scaleY = <f32>height / <f32>SIDE;
  for (let y = 0; y < SIDE; y++) {
    const sy = max<f32>(scaleY * (<f32>y + 0.5) - 0.5, 0);
    const y0 = <i32>sy;
    const y1 = y0 + (y0 < height - 1 ? 1 : 0);
    const wy1 = f32x4.splat(sy - <f32>y0);
    const wy0 = f32x4.splat(<f32>1 - (sy - <f32>y0));
    for (let c: usize = 0; c < 3; c++) {
      const row0 = rows + (c * PLANE + <usize>y0 * SIDE) * 4;
      const row1 = rows + (c * PLANE + <usize>y1 * SIDE) * 4;
      const to = dst + (c * PLANE + <usize>y * SIDE) * 4;
      for (let x: usize = 0; x < <usize>SIDE * 4; x += 16) {
        const mixed = f32x4.add(f32x4.mul(v128.load(row0 + x), wy0), f32x4.mul(v128.load(row1 + x), wy1));
        v128.store(to + x, f32x4.nearest(mixed));
      }
    }
  }
}

function applyOp(op: usize, src: usize, dst: usize, histogram: usize): void {
  const code = load<i32>(op);
  const arg = op + 4;
  if (code == OP_AFFINE) affineNearest(src, dst, arg);
  else if (code == OP_POSTERIZE) posterize(src, dst, load<f32>(arg));
  else if (code == OP_SOLARIZE) solarize(src, dst, load<f32>(arg));
  else if (code == OP_AUTOCONTRAST) autocontrast(src, dst);
  else if (code == OP_EQUALIZE) equalize(src, dst, histogram);
  else blend(code, src, dst, load<f32>(arg), load<f32>(arg + 4));
}

/**
 * torchvision's affine/rotate on tensors: output pixel centre (x − 15.5, y − 15.5) maps through
 * the inverse matrix to an input position, rounded half-to-even to a pixel; outside → 0.
 */
function affineNearest(src: usize, dst: usize, m: usize): void {
  const a = load<f32>(m), b = load<f32>(m, 4), c = load<f32>(m, 8);
  const d = load<f32>(m, 12), e = load<f32>(m, 16), f = load<f32>(m, 20);
  const half: f32 = <f32>SIDE * 0.5 - 0.5;
  for (let y = 0; y < SIDE; y++) {
    const yc = <f32>y - half;
    for (let x = 0; x < SIDE; x++) {
      const xc = <f32>x - half;
      const ix = <i32>nearest<f32>(a * xc + b * yc + c + half);
      const iy = <i32>nearest<f32>(d * xc + e * yc + f + half);
      const inside = ix >= 0 && ix < SIDE && iy >= 0 && iy < SIDE;
      const from = src + <usize>(iy * SIDE + ix) * 4;
      const to = dst + <usize>(y * SIDE + x) * 4;
      for (let ch: usize = 0; ch < 3; ch++) {
        store<f32>(to + ch * PLANE * 4, inside ? load<f32>(from + ch * PLANE * 4) : 0);
      }
    }
  }
}

/**
 * torchvision's _blend: trunc(clamp(r·x + q·degenerate, 0, 255)) in float32, with r = ratio and
 * q = 1 − ratio rounded to f32 separately as torch does. The degenerate image depends on the op.
 */
function blend(code: i32, src: usize, dst: usize, r: f32, q: f32): void {
  const vr = f32x4.splat(r);
  const vq = f32x4.splat(q);
  const zero = f32x4.splat(0);
  const top = f32x4.splat(255);
  if (code == OP_BLEND_MEAN) {
    let sums = f32x4.splat(0); // whole numbers below 2^24: exact in any order
    for (let p: usize = 0; p < PLANE; p += 4) sums = f32x4.add(sums, gray4(src + p * 4));
    const sum = f32x4.extract_lane(sums, 0) + f32x4.extract_lane(sums, 1) + f32x4.extract_lane(sums, 2) + f32x4.extract_lane(sums, 3);
    const mean = f32x4.splat(sum / <f32>PLANE);
    for (let i: usize = 0; i < IMAGE; i += 4) {
      const v = f32x4.add(f32x4.mul(vr, v128.load(src + i * 4)), f32x4.mul(vq, mean));
      v128.store(dst + i * 4, toUint8(v));
    }
    return;
  }
  if (code == OP_BLEND_BLUR) {
    // degenerate = round(3×3 smoothing [1 1 1; 1 5 1; 1 1 1]/13) inside, the image itself on the
    // border. Sums of whole numbers are exact, and sum/13 is never near a rounding tie.
    const thirteen = f32x4.splat(13);
    const four = f32x4.splat(4);
    for (let ch: usize = 0; ch < 3; ch++) {
      const plane = src + ch * PLANE * 4;
      for (let y: usize = 0; y < <usize>SIDE; y++) {
        for (let x: usize = 0; x < <usize>SIDE; x += 4) {
          const at = plane + (y * SIDE + x) * 4;
          const v = v128.load(at);
          let degenerate = v;
          if (y > 0 && y < <usize>SIDE - 1) {
            let sum = f32x4.mul(four, v);
            for (let row: usize = at - SIDE * 4; row <= at + SIDE * 4; row += SIDE * 4) {
              sum = f32x4.add(sum, f32x4.add(f32x4.add(v128.load(row - 4), v128.load(row)), v128.load(row + 4)));
            }
            // columns 0 and 31 keep the image (their sums read across the row ends)
            const inside = x == 0 ? i32x4(0, -1, -1, -1) : x == <usize>SIDE - 4 ? i32x4(-1, -1, -1, 0) : i32x4.splat(-1);
            degenerate = v128.bitselect(f32x4.nearest(f32x4.div(sum, thirteen)), v, inside);
          }
          const mixed = f32x4.add(f32x4.mul(vr, v), f32x4.mul(vq, degenerate));
          v128.store(dst + (ch * PLANE + y * SIDE + x) * 4, toUint8(mixed));
        }
      }
    }
    return;
  }
  for (let p: usize = 0; p < PLANE; p += 4) {
    const degenerate = code == OP_BLEND_GRAY ? gray4(src + p * 4) : zero;
    const shade = f32x4.mul(vq, degenerate);
    for (let ch: usize = 0; ch < 3; ch++) {
      const at = (ch * PLANE + p) * 4;
      const v = f32x4.add(f32x4.mul(vr, v128.load(src + at)), shade);
      v128.store(dst + at, toUint8(v));
    }
  }
}

/** clamp(v, 0, 255) then uint8 conversion (truncation); pmin/pmax are single instructions. */
@inline function toUint8(v: v128): v128 {
  return f32x4.trunc(f32x4.pmin(f32x4.pmax(v, f32x4.splat(0)), f32x4.splat(255)));
}

/** torchvision's rgb_to_grayscale of 4 pixels, truncated to uint8 as it does. */
@inline function gray4(pixel: usize): v128 {
  const r = f32x4.mul(f32x4.splat(0.2989), v128.load(pixel));
  const g = f32x4.mul(f32x4.splat(0.587), v128.load(pixel + PLANE * 4));
  const b = f32x4.mul(f32x4.splat(0.114), v128.load(pixel + 2 * PLANE * 4));
  return f32x4.trunc(f32x4.add(f32x4.add(r, g), b));
}

/** x & ~(step − 1) with step = 2^(8 − bits): floor(x / step) · step, exact in f32. */
function posterize(src: usize, dst: usize, step: f32): void {
  const vstep = f32x4.splat(step);
  for (let i: usize = 0; i < IMAGE; i += 4) {
    v128.store(dst + i * 4, f32x4.mul(f32x4.floor(f32x4.div(v128.load(src + i * 4), vstep)), vstep));
  }
}

/** x ≥ threshold ? 255 − x : x. */
function solarize(src: usize, dst: usize, threshold: f32): void {
  const vthreshold = f32x4.splat(threshold);
  const top = f32x4.splat(255);
  for (let i: usize = 0; i < IMAGE; i += 4) {
    const v = v128.load(src + i * 4);
    v128.store(dst + i * 4, v128.bitselect(f32x4.sub(top, v), v, f32x4.ge(v, vthreshold)));
  }
}

/**
 * Per channel: trunc((x − min) · scale); a flat channel stays as it is. torch evaluates
 * 255 / (max − min) as reciprocal(max − min) · 255, and so does this.
 */
function autocontrast(src: usize, dst: usize): void {
  for (let ch: usize = 0; ch < 3; ch++) {
    const plane = src + ch * PLANE * 4;
    let lo = f32x4.splat(255);
    let hi = f32x4.splat(0);
    for (let p: usize = 0; p < PLANE; p += 4) {
      const v = v128.load(plane + p * 4);
      lo = f32x4.pmin(lo, v);
      hi = f32x4.pmax(hi, v);
    }
    const minimum = min(min(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)), min(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
    const maximum = max(max(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)), max(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
    const flat = maximum == minimum;
    const vmin = f32x4.splat(flat ? 0 : minimum);
    const vscale = f32x4.splat(flat ? 1 : (<f32>1 / (maximum - minimum)) * 255);
    const zero = f32x4.splat(0);
    const top = f32x4.splat(255);
    for (let p: usize = 0; p < PLANE; p += 4) {
      const v = f32x4.mul(f32x4.sub(v128.load(plane + p * 4), vmin), vscale);
      v128.store(dst + (ch * PLANE + p) * 4, toUint8(v));
    }
  }
}

/**
 * Per channel histogram equalisation, torchvision's integer recipe: step = (pixels outside the
 * last occupied bin) / 255; lut[v] = (pixels below v + step/2) / step; step 0 keeps the channel.
 */
function equalize(src: usize, dst: usize, histogram: usize): void {
  for (let ch: usize = 0; ch < 3; ch++) {
    const plane = src + ch * PLANE * 4;
    memory.fill(histogram, 0, 256 * 4);
    let last = 0;
    for (let p: usize = 0; p < PLANE; p++) {
      const v = <i32>load<f32>(plane + p * 4);
      store<i32>(histogram + <usize>v * 4, load<i32>(histogram + <usize>v * 4) + 1);
      if (v > last) last = v;
    }
    const step = (PLANE - load<i32>(histogram + <usize>last * 4)) / 255;
    if (step == 0) {
      memory.copy(dst + ch * PLANE * 4, plane, PLANE * 4);
      continue;
    }
    // turn the histogram into the lookup table in place: lut[v] = min(255, (cumsum before v + step/2) / step)
    let below = 0;
    for (let v = 0; v < 256; v++) {
      const n = load<i32>(histogram + <usize>v * 4);
      store<i32>(histogram + <usize>v * 4, min(255, (below + (step >> 1)) / step));
      below += n;
    }
    for (let p: usize = 0; p < PLANE; p++) {
      const v = <usize>load<f32>(plane + p * 4);
      store<f32>(dst + (ch * PLANE + p) * 4, <f32>load<i32>(histogram + v * 4));
    }
  }
}

/** RandomErasing with value 0 on the normalised NHWC image. */
function erase(plan: usize, image: usize): void {
  const top = load<i32>(plan + ERASE_TOP * 4);
  const left = load<i32>(plan + ERASE_LEFT * 4);
  const height = load<i32>(plan + ERASE_HEIGHT * 4);
  const width = load<i32>(plan + ERASE_WIDTH * 4);
  for (let y = top; y < top + height; y++) {
    memory.fill(image + <usize>((y * SIDE + left) * 3) * 4, 0, <usize>width * 3 * 4);
  }
}
