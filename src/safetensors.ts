// The safetensors file format (https://github.com/huggingface/safetensors), read and written by hand:
//   8 bytes   N, the header length (u64, little-endian)
//   N bytes   JSON {"__metadata__": {string: string}, name: {dtype, shape, data_offsets: [begin, end]}, …}
//             padded with spaces so the data starts 8-byte aligned
//   the data  every tensor's bytes (little-endian, row-major), offsets relative to the data's start;
//             the tensors tile the data exactly: no gaps, no overlaps, nothing after the last one.
// Readers copy each tensor out of the file, so the data needs no alignment in memory.
import { crc32 } from "node:zlib";
import { writeFileAtomic } from "./atomic_file.ts";

export type Dtype = "F32" | "I64" | "F16";

export interface SafeTensor {
  dtype: Dtype;
  shape: number[];
  /** F32 → Float32Array, I64 → BigInt64Array, F16 → Uint16Array (the raw half-precision bits). */
  data: Float32Array | BigInt64Array | Uint16Array;
}

const itemSize: Record<Dtype, number> = { F32: 4, I64: 8, F16: 2 };

/** The metadata key prefix of a tensor's checksum: `crc32.<tensor name>` → 8 hex digits. */
const CRC_KEY = "crc32.";

// The same limit as the reference implementation: a longer header is a corrupt length field.
const maxHeaderBytes = 100_000_000;

// Typed arrays use the host's byte order; the file's is little-endian. Every target we run on
// (x86, ARM, WebAssembly) is little-endian, so bytes are copied as they are.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("safetensors.ts: this host is big-endian; only little-endian hosts are supported");
}

function isDtype(s: unknown): s is Dtype {
  return s === "F32" || s === "I64" || s === "F16";
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function typedArray(dtype: Dtype, bytes: Uint8Array): SafeTensor["data"] {
  const buffer = bytes.slice().buffer; // a fresh, aligned copy
  if (dtype === "F32") return new Float32Array(buffer);
  if (dtype === "I64") return new BigInt64Array(buffer);
  return new Uint16Array(buffer);
}

function arrayMatchesDtype(dtype: Dtype, data: SafeTensor["data"]): boolean {
  if (dtype === "F32") return data instanceof Float32Array;
  if (dtype === "I64") return data instanceof BigInt64Array;
  return data instanceof Uint16Array;
}

/**
 * Reads and validates a whole .safetensors file. Every problem throws one line: "<path>: <problem>".
 * The header and the sizes are checked before the data is read, so a corrupt length or a huge
 * unrelated file fails at once; tensors with a CRC32 in the metadata (files we wrote) are verified.
 */
export async function readSafetensors(
  path: string,
): Promise<{ tensors: Map<string, SafeTensor>; metadata: Record<string, string> }> {
  function fail(problem: string): never {
    throw new Error(`${path}: ${problem}`);
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    fail(`cannot read safetensors file (${(e as Error).message})`);
  }
  try {
    const fileLength = (await file.stat()).size;
    if (fileLength < 8) fail(`file is ${fileLength} bytes, too short for the 8-byte header length`);
    const headerLength = new DataView((await readExactly(file, 8)).buffer).getBigUint64(0, true);
    if (headerLength > BigInt(Math.min(maxHeaderBytes, fileLength - 8))) {
      fail(
        `header length ${headerLength} exceeds the ${fileLength - 8} bytes after it (corrupt or truncated)`,
      );
    }
    const dataStart = 8 + Number(headerLength);
    const { entries, metadata, checksums } = parseHeader(await readExactly(file, Number(headerLength)), fail);
    checkTiling(entries, fileLength - dataStart, fail);
    const data = await readExactly(file, fileLength - dataStart);
    const tensors = new Map<string, SafeTensor>();
    for (const e of entries) {
      const bytes = data.subarray(e.begin, e.end);
      const expected = checksums.get(e.name);
      if (expected !== undefined && crc32(bytes) !== expected) {
        fail(`tensor '${e.name}' fails its CRC32 check: its bytes are corrupt`);
      }
      tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: typedArray(e.dtype, bytes) });
    }
    return { tensors, metadata };
  } catch (e) {
    if ((e as Error).message.startsWith(`${path}: `)) throw e;
    fail(`cannot read safetensors file (${(e as Error).message})`);
  } finally {
    file.close();
  }
}

async function readExactly(file: Deno.FsFile, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = await file.read(bytes.subarray(done));
    if (n === null) throw new Error(`the file ended ${length - done} bytes early (changed while read)`);
    done += n;
  }
  return bytes;
}

interface Entry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** The header's tensor entries, its metadata (without our checksums) and the checksums by tensor. */
function parseHeader(
  headerBytes: Uint8Array,
  fail: (problem: string) => never,
): { entries: Entry[]; metadata: Record<string, string>; checksums: Map<string, number> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }

  const metadata: Record<string, string> = {};
  const checksums = new Map<string, number>();
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail("__metadata__ is not an object of strings");
      }
      for (const [key, text] of Object.entries(value as Record<string, unknown>)) {
        if (typeof text !== "string") fail(`__metadata__ value for '${key}' is not a string`);
        if (!key.startsWith(CRC_KEY)) metadata[key] = text as string;
        else if (/^[0-9a-f]{8}$/.test(text as string)) {
          checksums.set(key.slice(CRC_KEY.length), parseInt(text, 16));
        } else fail(`__metadata__ '${key}' is ${JSON.stringify(text)}, not 8 hex digits`);
      }
      continue;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      fail(`tensor '${name}' header entry is not an object`);
    }
    const { dtype, shape, data_offsets: offsets, ...extra } = value as Record<string, unknown>;
    if (Object.keys(extra).length > 0) fail(`tensor '${name}' has unknown fields: ${Object.keys(extra)}`);
    if (!isDtype(dtype)) {
      fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)} (F32, I64, F16)`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail(`tensor '${name}' shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]
    ) {
      fail(`tensor '${name}' data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`);
    }
    const [begin, end] = offsets as number[];
    const bytesNeeded = numel(shape as number[]) * itemSize[dtype as Dtype];
    if (end - begin !== bytesNeeded) {
      fail(
        `tensor '${name}' data_offsets [${begin}, ${end}] span ${end - begin} bytes, ` +
          `but ${dtype} ${JSON.stringify(shape)} needs ${bytesNeeded}`,
      );
    }
    entries.push({ name, dtype: dtype as Dtype, shape: shape as number[], begin, end });
  }
  for (const name of checksums.keys()) {
    if (!entries.some((e) => e.name === name)) {
      fail(`__metadata__ has a CRC32 for '${name}', which is not a tensor`);
    }
  }
  return { entries, metadata, checksums };
}

/** The tensors must tile the data exactly, in offset order (sorts entries by offset). */
function checkTiling(entries: Entry[], dataLength: number, fail: (problem: string) => never) {
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const e of entries) {
    if (e.end > dataLength) {
      fail(
        `tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] run past the ${dataLength} data bytes ` +
          `(file truncated or offsets out of range)`,
      );
    }
    if (e.begin !== expectedBegin) {
      fail(
        `tensor '${e.name}' starts at data byte ${e.begin}, expected ${expectedBegin} ` +
          `(tensors ${e.begin < expectedBegin ? "overlap" : "leave a gap"})`,
      );
    }
    expectedBegin = e.end;
  }
  if (expectedBegin !== dataLength) {
    fail(`the tensors cover ${expectedBegin} data bytes but the file has ${dataLength} (trailing bytes)`);
  }
}

/**
 * Writes tensors (in the map's order) atomically and durably (src/atomic_file.ts), so a crash or an
 * error never leaves a partial file at path. Each tensor's CRC32 goes into the metadata as
 * `crc32.<name>` (PyTorch ignores it; readSafetensors checks it).
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const reserved = Object.keys(metadata).find((key) => key.startsWith(CRC_KEY));
  if (reserved) throw new Error(`${path}: metadata key '${reserved}' is reserved for checksums`);
  const checksums: Record<string, string> = {};
  const entries: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error(`${path}: '__metadata__' cannot be a tensor name`);
    if (!t.shape.every(isCount)) throw new Error(`${path}: tensor '${name}' has invalid shape [${t.shape}]`);
    if (!arrayMatchesDtype(t.dtype, t.data)) {
      throw new Error(`${path}: tensor '${name}' is ${t.dtype} but its data is a ${t.data.constructor.name}`);
    }
    if (t.data.length !== numel(t.shape)) {
      throw new Error(`${path}: tensor '${name}' has ${t.data.length} elements but shape [${t.shape}]`);
    }
    const size = t.data.byteLength;
    entries[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    checksums[CRC_KEY + name] = crc32(bytesOf(t.data)).toString(16).padStart(8, "0");
    offset += size;
  }
  const header = { __metadata__: { ...metadata, ...checksums }, ...entries };
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);

  const file = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(file.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  file.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors.values()) {
    file.set(bytesOf(t.data), at);
    at += t.data.byteLength;
  }
  try {
    await writeFileAtomic(path, file);
  } catch (e) {
    throw new Error(`${path}: cannot write safetensors file (${(e as Error).message})`);
  }
}

function bytesOf(data: SafeTensor["data"]): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
