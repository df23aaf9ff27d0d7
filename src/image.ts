// Images in and out of the CIFAR-10 record layout (3×32×32 bytes, R, G and B planes): PNG and JPEG
// files of any size decoded (fast-png, jpeg-js) and reduced to 32×32 by area averaging, as the
// CIFAR-10 images were made from larger photos; records encoded back to PNG for the run report.
import { convertIndexedToRgb, decode as decodePng, encode as encodePng, hasPngSignature } from "fast-png";
import jpeg from "jpeg-js";
import { IMAGE_BYTES } from "./data/cifar.ts";

const SIDE = 32;
const PLANE = SIDE * SIDE;

/** 8-bit RGB pixels, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

const isJpeg = (b: Uint8Array) => b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

/** Decodes a PNG or JPEG file's bytes; throws one line saying why not. */
export function decodeImage(bytes: Uint8Array): RgbImage {
  if (hasPngSignature(bytes)) return pngToRgb(bytes);
  if (isJpeg(bytes)) return jpegToRgb(bytes);
  throw new Error("not a PNG or JPEG image");
}

function pngToRgb(bytes: Uint8Array): RgbImage {
  let png;
  try {
    png = decodePng(bytes, { checkCrc: true });
  } catch (e) {
    throw new Error(`corrupt or truncated PNG (${reason(e)})`);
  }
  const { width, height } = png;
  const indexed = png.palette !== undefined;
  if (!indexed && png.depth < 8) throw new Error(`PNG with ${png.depth}-bit samples is not supported`);
  const samples = indexed ? convertIndexedToRgb(png) : png.data;
  const channels = indexed ? png.palette![0].length : png.channels;
  // 16-bit samples keep their high byte; alpha is dropped (as PIL's convert("RGB") does).
  const shift = png.depth === 16 ? 8 : 0;
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) data[p * 3 + c] = samples[p * channels + (channels >= 3 ? c : 0)] >> shift;
  }
  return { width, height, data };
}

function jpegToRgb(bytes: Uint8Array): RgbImage {
  try {
    // tolerantDecoding off: a truncated file is an error, not a half-grey image.
    const image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false });
    return { width: image.width, height: image.height, data: image.data };
  } catch (e) {
    throw new Error(`corrupt or truncated JPEG (${reason(e)})`);
  }
}

/** A decoder's message, without the trailing colon some of them end with. */
function reason(e: unknown): string {
  return String((e as Error).message ?? e).replace(/[:\s]+$/, "");
}

/**
 * A CIFAR-10 record (R, G, B planes of 32×32) from an image of any size: each output pixel is the
 * mean of the source area it covers, partial source pixels weighted by their overlap, rounded.
 */
export function toCifarRecord(image: RgbImage): Uint8Array {
  const { width, height, data } = image;
  const xs = overlaps(width, SIDE), ys = overlaps(height, SIDE);
  const record = new Uint8Array(IMAGE_BYTES);
  for (let oy = 0; oy < SIDE; oy++) {
    for (let ox = 0; ox < SIDE; ox++) {
      const sums = [0, 0, 0];
      for (const [sy, wy] of ys[oy]) {
        for (const [sx, wx] of xs[ox]) {
          const at = (sy * width + sx) * 3;
          for (let c = 0; c < 3; c++) sums[c] += wy * wx * data[at + c];
        }
      }
      for (let c = 0; c < 3; c++) record[c * PLANE + oy * SIDE + ox] = Math.round(sums[c]);
    }
  }
  return record;
}

/** For each of `to` output cells along an axis of `from` pixels: [source pixel, weight] pairs summing to 1. */
function overlaps(from: number, to: number): [number, number][][] {
  const scale = from / to;
  return Array.from({ length: to }, (_, o) => {
    const start = o * scale, end = (o + 1) * scale;
    const cells: [number, number][] = [];
    for (let s = Math.floor(start); s < Math.min(from, Math.ceil(end)); s++) {
      cells.push([s, (Math.min(end, s + 1) - Math.max(start, s)) / scale]);
    }
    return cells;
  });
}

/** The RGB image of a CIFAR-10 record (planes → interleaved pixels). */
export function recordToRgb(record: Uint8Array): RgbImage {
  const data = new Uint8Array(PLANE * 3);
  for (let p = 0; p < PLANE; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = record[c * PLANE + p];
  return { width: SIDE, height: SIDE, data };
}

/** A PNG file of an RGB image. */
export function rgbToPng(image: RgbImage): Uint8Array {
  return encodePng({ width: image.width, height: image.height, data: image.data, channels: 3, depth: 8 });
}
