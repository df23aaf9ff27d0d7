// Writes small archives in the official CIFAR-10 binary layout for tests: records of one label
// byte and 3072 pixel bytes, packed as a .tar.gz (ustar) or as an extracted folder; and the
// augmentation the data tests run.
import { gzipSync } from "fflate";
import type { AugmentConfig } from "../src/data/augment_plan.ts";

/** Every augmentation op on (crop, flip, RandAugment, jitter, erasing), the data tests' config. */
export const EVERY_AUGMENT_OP: AugmentConfig = {
  enabled: true,
  scale: 0.75,
  raN: 2,
  raM: 12,
  jitter: 0.2,
  reprob: 0.25,
  flip: "random",
  translate: 0,
};

export const RECORD = 3073;

/** `count` records with labels (i + offset) % 10 and pixels from a fixed hash of (offset, i, byte). */
export function makeRecords(count: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(count * RECORD);
  for (let i = 0; i < count; i++) {
    bytes[i * RECORD] = (i + offset) % 10;
    for (let b = 1; b < RECORD; b++) {
      bytes[i * RECORD + b] = Math.imul((offset + i) * 7919 + b, 2654435761) >>> 24;
    }
  }
  return bytes;
}

/** The six official files with `perFile` records each (train file n uses label offset n). */
export function officialFiles(perFile: number): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (let n = 1; n <= 5; n++) files[`data_batch_${n}.bin`] = makeRecords(perFile, n * 100);
  files["test_batch.bin"] = makeRecords(perFile, 0);
  return files;
}

/** An uncompressed ustar archive holding `files` under `dir/`. */
export function tar(files: Record<string, Uint8Array>, dir = "cifar-10-batches-bin"): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const [name, data] of Object.entries(files)) {
    const header = new Uint8Array(512);
    const put = (at: number, s: string) => header.set(new TextEncoder().encode(s), at);
    put(0, `${dir}/${name}`);
    put(100, "0000644\0");
    put(108, "0000000\0");
    put(116, "0000000\0");
    put(124, data.length.toString(8).padStart(11, "0") + "\0");
    put(136, "00000000000\0");
    put(148, "        ");
    put(156, "0");
    put(257, "ustar\x0000");
    let sum = 0;
    for (const b of header) sum += b;
    put(148, sum.toString(8).padStart(6, "0") + "\0 ");
    blocks.push(header, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of blocks) out.set(b, at), at += b.length;
  return out;
}

export function writeTarGz(path: string, files: Record<string, Uint8Array>): void {
  Deno.writeFileSync(path, gzipSync(tar(files)));
}

export function writeFolder(dir: string, files: Record<string, Uint8Array>): void {
  Deno.mkdirSync(dir, { recursive: true });
  for (const [name, data] of Object.entries(files)) Deno.writeFileSync(`${dir}/${name}`, data);
}

/** A CifarSplit of `count` records from makeRecords. */
export function makeSplit(
  count: number,
  offset = 0,
): { images: Uint8Array; labels: Uint8Array; count: number } {
  const records = makeRecords(count, offset);
  const images = new Uint8Array(count * 3072);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = records[i * RECORD];
    images.set(records.subarray(i * RECORD + 1, (i + 1) * RECORD), i * 3072);
  }
  return { images, labels, count };
}
