// src/image.ts: the PNG flavours users have (gray, gray + alpha, RGB, RGBA, palette, 16-bit), JPEG,
// and the area-averaging reduction to 32×32 (exact means, fractional overlaps, upscaling).
import assert from "node:assert/strict";
import { encode } from "fast-png";
import jpeg from "jpeg-js";
import { decodeImage, type RgbImage, toCifarRecord } from "../src/image.ts";

const PLANE = 1024;

Deno.test("decodeImage reads gray, gray+alpha, RGB, RGBA, 16-bit and palette PNGs as RGB", () => {
  const rgb = [10, 20, 30];
  const cases = [
    { channels: 1, depth: 8, pixel: [10], expect: [10, 10, 10] },
    { channels: 2, depth: 8, pixel: [10, 99], expect: [10, 10, 10] },
    { channels: 3, depth: 8, pixel: rgb, expect: rgb },
    { channels: 4, depth: 8, pixel: [...rgb, 7], expect: rgb },
    { channels: 3, depth: 16, pixel: rgb.map((v) => v * 256 + 255), expect: rgb },
  ] as const;
  for (const { channels, depth, pixel, expect } of cases) {
    const samples = Array.from({ length: 6 * channels }, (_, i) => pixel[i % channels]);
    const data = depth === 16 ? Uint16Array.from(samples) : Uint8Array.from(samples);
    const image = decodeImage(encode({ width: 3, height: 2, data, channels, depth }));
    assert.deepEqual(
      [image.width, image.height, ...image.data.subarray(0, 3)],
      [3, 2, ...expect],
      `${channels}×${depth}`,
    );
  }
  const palette = encode({
    width: 2,
    height: 1,
    data: Uint8Array.of(1, 0),
    depth: 8,
    channels: 1,
    palette: [[1, 2, 3], [4, 5, 6]],
  });
  assert.deepEqual([...decodeImage(palette).data], [4, 5, 6, 1, 2, 3]);
});

Deno.test("decodeImage reads JPEG within its loss, and names what is wrong with bad bytes", () => {
  const rgba = new Uint8Array(16 * 16 * 4).map((_, i) => (i % 4 === 3 ? 255 : 120));
  const file = jpeg.encode({ width: 16, height: 16, data: rgba }, 90).data;
  const image = decodeImage(file);
  assert.deepEqual([image.width, image.height], [16, 16]);
  assert(image.data.every((v) => Math.abs(v - 120) <= 2));
  assert.throws(() => decodeImage(new TextEncoder().encode("hello")), /^Error: not a PNG or JPEG image$/);
  assert.throws(() => decodeImage(file.subarray(0, file.length >> 1)), /^Error: corrupt or truncated JPEG/);
  const png = encode({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 3), channels: 3 });
  assert.throws(() => decodeImage(png.subarray(0, png.length - 20)), /^Error: corrupt or truncated PNG/);
});

/** An image whose pixel (x, y) channel c is f(x, y, c). */
function image(width: number, height: number, f: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = f(x, y, c);
  }
  return { width, height, data };
}

Deno.test("toCifarRecord: 32×32 passes through, 2× is the mean of each 2×2 block, planes R, G, B", () => {
  const same = image(32, 32, (x, y, c) => (x * 7 + y * 3 + c * 50) % 256);
  const record = toCifarRecord(same);
  assert.equal(record[2 * PLANE + 5 * 32 + 4], same.data[(5 * 32 + 4) * 3 + 2]);
  assert.deepEqual(
    toCifarRecord(image(64, 64, (x, y, c) => same.data[((y >> 1) * 32 + (x >> 1)) * 3 + c])),
    record,
  );
  const checker = toCifarRecord(image(64, 64, (x, y) => ((x + y) % 2 ? 200 : 100)));
  assert(checker.every((v) => v === 150));
});

Deno.test("toCifarRecord: fractional overlaps weigh in (48×40 → 32×32), upscaling repeats pixels", () => {
  // A constant image stays constant whatever the scale, and a left/right split lands where it covers.
  assert(toCifarRecord(image(48, 40, () => 77)).every((v) => v === 77));
  const split = toCifarRecord(image(48, 40, (x) => (x < 24 ? 0 : 240)));
  assert.deepEqual([split[15], split[16]], [0, 240]);
  const third = toCifarRecord(image(3, 1, (x) => (x === 1 ? 96 : 0))); // output cell 10 covers 2/3 of pixel 0, 1/3 of pixel 1
  assert.deepEqual([third[9], third[10], third[11]], [0, 32, 96]);
  assert(
    toCifarRecord(image(1, 1, (_, __, c) => c * 100)).every((v, i) => v === Math.floor(i / PLANE) * 100),
  );
});
