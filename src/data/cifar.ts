// CIFAR-10 in its official binary layout: cifar-10-batches-bin/data_batch_1..5.bin (train) and
// test_batch.bin, each a run of 3073-byte records (1 label byte, then the 32×32 red, green and
// blue planes). Read straight from the .tar.gz with a streaming gunzip and a small tar reader (no
// temporary files), or from an extracted folder. Images stay uint8 in a SharedArrayBuffer so the
// loader's workers can read them without a copy; decoding and augmentation happen per batch.
import { exists } from "../fs.ts";
import { Gunzip } from "fflate";
import { downloadCifar } from "./download.ts";

export interface CifarSplit {
  /** count×3072 bytes, one CHW (R, G, B planes) image per record, in record order. */
  images: Uint8Array;
  /** count labels in 0..9. */
  labels: Uint8Array;
  count: number;
}

export const DEFAULT_CIFAR_PATH = "data/cifar-10-binary.tar.gz";
/** CIFAR-10 images are 32×32 pixels, 3 channels. */
export const IMAGE_SIDE = 32;
export const IMAGE_BYTES = 3 * IMAGE_SIDE * IMAGE_SIDE;
export const RECORD_BYTES = 1 + IMAGE_BYTES;
export const CLASSES = 10;
/** The class names of batches.meta.txt, by label. */
export const CLASS_NAMES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
] as const;
const TRAIN_FILES = [1, 2, 3, 4, 5].map((n) => `data_batch_${n}.bin`);
const TEST_FILE = "test_batch.bin";
const WANTED = new Set([...TRAIN_FILES, TEST_FILE]);

/**
 * Opens CIFAR-10 from a .tar.gz or a folder. Without a path, uses data/cifar-10-binary.tar.gz and
 * downloads the official archive there on first use.
 */
export async function openCifar(path?: string): Promise<{ train: CifarSplit; test: CifarSplit }> {
  if (path === undefined) {
    path = DEFAULT_CIFAR_PATH;
    if (!exists(path)) await downloadCifar(path);
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new Error(
      `${path}: does not exist (pass --data with the CIFAR-10 .tar.gz or its extracted folder)`,
    );
  }
  const files = info.isDirectory ? await readFolder(path) : await readTarGz(path);
  const split = (names: string[]) =>
    splitRecords(names.map((name) => {
      const bytes = files.get(name);
      if (!bytes) {
        throw new Error(`${path}: missing ${name} (expected cifar-10-batches-bin/${name})`);
      }
      return { name: `${path}:${name}`, bytes };
    }));
  return { train: split(TRAIN_FILES), test: split([TEST_FILE]) };
}

/** Splits the record files (in order) into one image plane block and one label array. */
function splitRecords(files: { name: string; bytes: Uint8Array }[]): CifarSplit {
  for (const { name, bytes } of files) {
    if (bytes.length % RECORD_BYTES !== 0) {
      throw new Error(
        `${name}: size ${bytes.length} is not a multiple of the ${RECORD_BYTES}-byte record (truncated or not CIFAR-10)`,
      );
    }
  }
  const count = files.reduce((n, f) => n + f.bytes.length / RECORD_BYTES, 0);
  const images = new Uint8Array(new SharedArrayBuffer(count * IMAGE_BYTES));
  const labels = new Uint8Array(count);
  let record = 0;
  for (const { name, bytes } of files) {
    for (let at = 0; at < bytes.length; at += RECORD_BYTES, record++) {
      const label = bytes[at];
      if (label >= CLASSES) {
        throw new Error(`${name}: record ${at / RECORD_BYTES} has label ${label} (must be 0..9)`);
      }
      labels[record] = label;
      images.set(bytes.subarray(at + 1, at + RECORD_BYTES), record * IMAGE_BYTES);
    }
  }
  return { images, labels, count };
}

/** The record files of an extracted archive: the folder itself or its cifar-10-batches-bin/. */
async function readFolder(path: string): Promise<Map<string, Uint8Array>> {
  const inner = `${path}/cifar-10-batches-bin`;
  const dir = exists(`${inner}/${TEST_FILE}`) || exists(`${inner}/${TRAIN_FILES[0]}`) ? inner : path;
  const files = new Map<string, Uint8Array>();
  for (const name of WANTED) {
    if (exists(`${dir}/${name}`)) files.set(name, await Deno.readFile(`${dir}/${name}`));
  }
  return files;
}

/** Streams the .tar.gz through gunzip and a tar reader, keeping only the record files. */
async function readTarGz(path: string): Promise<Map<string, Uint8Array>> {
  const tar = new TarReader(path, (name) => WANTED.has(name.slice(name.lastIndexOf("/") + 1)));
  let inflated = 0;
  const gunzip = new Gunzip((chunk) => {
    inflated += chunk.length;
    tar.push(chunk);
  });
  const file = await Deno.open(path);
  const trailer = new Uint8Array(8); // the last 8 bytes read: CRC32 and ISIZE of the gzip member
  let read = 0;
  try {
    for await (const chunk of file.readable) {
      keepTail(trailer, chunk, read);
      read += chunk.length;
      try {
        gunzip.push(chunk);
      } catch (e) {
        throw new Error(`${path}: corrupt gzip stream (${(e as Error).message})`);
      }
    }
    try {
      gunzip.push(new Uint8Array(0), true);
    } catch (e) {
      throw new Error(`${path}: truncated or corrupt gzip stream (${(e as Error).message})`);
    }
  } finally {
    try {
      file.close();
    } catch { /* already closed by the stream */ }
  }
  const isize = new DataView(trailer.buffer).getUint32(4, true);
  if (read < 18 || isize !== inflated % 2 ** 32) {
    throw new Error(`${path}: truncated gzip stream (size in trailer does not match the data)`);
  }
  return tar.finish();
}

function keepTail(tail: Uint8Array, chunk: Uint8Array, readBefore: number): void {
  if (chunk.length >= tail.length) {
    tail.set(chunk.subarray(chunk.length - tail.length));
  } else {
    const kept = Math.min(readBefore, tail.length - chunk.length);
    tail.copyWithin(0, tail.length - kept);
    tail.set(chunk, kept);
  }
}

/**
 * A streaming reader of ustar/GNU tar: 512-byte headers, each followed by the file's data padded
 * to 512 bytes, ended by zero blocks. Keeps the data of regular files whose name `keep` accepts,
 * under their base name; GNU long names ("L" entries) name the entry after them.
 */
class TarReader {
  #files = new Map<string, Uint8Array>();
  #header = new Uint8Array(512);
  #headerFill = 0;
  #entry: TarEntry | null = null;
  #longName: string | null = null;
  #ended = false;

  constructor(readonly path: string, readonly keep: (name: string) => boolean) {}

  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length && !this.#ended) {
      const entry = this.#entry;
      if (entry) {
        const take = Math.min(entry.padded - entry.filled, chunk.length - at);
        const dataTake = Math.max(0, Math.min(take, entry.size - entry.filled));
        entry.data?.set(chunk.subarray(at, at + dataTake), entry.filled);
        entry.filled += take;
        at += take;
        if (entry.filled === entry.padded) this.#finishEntry(entry);
        continue;
      }
      const take = Math.min(512 - this.#headerFill, chunk.length - at);
      this.#header.set(chunk.subarray(at, at + take), this.#headerFill);
      this.#headerFill += take;
      at += take;
      if (this.#headerFill === 512) {
        this.#headerFill = 0;
        this.#startEntry();
      }
    }
  }

  finish(): Map<string, Uint8Array> {
    if (this.#entry || this.#headerFill !== 0) {
      throw new Error(`${this.path}: truncated tar archive (ends inside ${this.#entry?.name ?? "a header"})`);
    }
    return this.#files;
  }

  #startEntry(): void {
    const h = this.#header;
    if (h.every((b) => b === 0)) {
      this.#ended = true; // end-of-archive marker
      return;
    }
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (sum !== this.#octal(148, 8)) {
      throw new Error(`${this.path}: corrupt tar archive (bad header checksum)`);
    }
    const size = this.#octal(124, 12);
    const type = String.fromCharCode(h[156]);
    const prefix = text(h, 345, 155);
    const name = this.#longName ?? (prefix ? `${prefix}/${text(h, 0, 100)}` : text(h, 0, 100));
    if (type !== "L") this.#longName = null;
    const kind = type === "L"
      ? "longName"
      : (type === "0" || type === "\0") && this.keep(name)
      ? "file"
      : "skip";
    const entry: TarEntry = {
      name,
      kind,
      data: kind === "skip" ? null : new Uint8Array(size),
      size,
      filled: 0,
      padded: Math.ceil(size / 512) * 512,
    };
    this.#entry = entry;
    if (entry.padded === 0) this.#finishEntry(entry);
  }

  #finishEntry(entry: TarEntry): void {
    this.#entry = null;
    if (entry.kind === "longName") this.#longName = text(entry.data!, 0, entry.size);
    if (entry.kind === "file") {
      this.#files.set(entry.name.slice(entry.name.lastIndexOf("/") + 1), entry.data!);
    }
  }

  #octal(start: number, length: number): number {
    const digits = text(this.#header, start, length).trim();
    if (!/^[0-7]*$/.test(digits)) {
      throw new Error(`${this.path}: corrupt tar archive (header field "${digits}" is not octal)`);
    }
    return digits === "" ? 0 : parseInt(digits, 8);
  }
}

interface TarEntry {
  name: string;
  kind: "file" | "longName" | "skip";
  data: Uint8Array | null;
  size: number;
  filled: number;
  padded: number;
}

function text(bytes: Uint8Array, start: number, length: number): string {
  const field = bytes.subarray(start, start + length);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** The last `val` training images (official order) become the validation split. */
export function holdOut(train: CifarSplit, val: number): { train: CifarSplit; val: CifarSplit | null } {
  if (val === 0) return { train, val: null };
  if (val >= train.count) {
    throw new Error(`--val ${val}: must leave training images (the split has ${train.count})`);
  }
  const cut = train.count - val;
  const part = (from: number, to: number): CifarSplit => ({
    images: train.images.subarray(from * IMAGE_BYTES, to * IMAGE_BYTES),
    labels: train.labels.subarray(from, to),
    count: to - from,
  });
  return { train: part(0, cut), val: part(cut, train.count) };
}
