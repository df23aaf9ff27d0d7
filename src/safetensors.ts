// The safetensors file format (https://github.com/huggingface/safetensors), read and written by hand:
//   8 bytes   N, the header length (u64, little-endian)
//   N bytes   JSON {"__metadata__": {string: string}, name: {dtype, shape, data_offsets: [begin, end]}, …}
//             padded with spaces so the data starts 8-byte aligned
//   the data  every tensor's bytes (little-endian, row-major), offsets relative to the data's start;
//             the tensors tile the data exactly: no gaps, no overlaps, nothing after the last one.
// Readers copy each tensor out of the file, so the data needs no alignment in memory.

export type Dtype = "F32" | "I64" | "F16";

export interface SafeTensor {
  dtype: Dtype;
  shape: number[];
  /** F32 → Float32Array, I64 → BigInt64Array, F16 → Uint16Array (the raw half-precision bits). */
  data: Float32Array | BigInt64Array | Uint16Array;
}

const itemSize: Record<Dtype, number> = { F32: 4, I64: 8, F16: 2 };

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

/** Reads and validates a whole .safetensors file. Every problem throws one line: "<path>: <problem>". */
export async function readSafetensors(
  path: string,
): Promise<{ tensors: Map<string, SafeTensor>; metadata: Record<string, string> }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot read safetensors file (${(e as Error).message})`);
  }
  function fail(problem: string): never {
    throw new Error(`${path}: ${problem}`);
  }

  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(Math.min(maxHeaderBytes, bytes.length - 8))) {
    fail(
      `header length ${headerLength} exceeds the ${bytes.length - 8} bytes after it (corrupt or truncated)`,
    );
  }
  const dataStart = 8 + Number(headerLength);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }

  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: Dtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        fail("__metadata__ is not an object of strings");
      }
      for (const [key, text] of Object.entries(value as Record<string, unknown>)) {
        if (typeof text !== "string") fail(`__metadata__ value for '${key}' is not a string`);
        metadata[key] = text as string;
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

  // The tensors must tile the data exactly, in offset order.
  const dataLength = bytes.length - dataStart;
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

  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    const data = typedArray(e.dtype, bytes.subarray(dataStart + e.begin, dataStart + e.end));
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Writes tensors (in the map's order) atomically: the whole file goes to `${path}.tmp-<pid>`, is
 * fsynced, then renamed over path, so a crash or error never leaves a partial file at path.
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
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
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);

  const file = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(file.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  file.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors.values()) {
    file.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }

  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    const handle = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      let written = 0;
      while (written < file.length) written += await handle.write(file.subarray(written));
      await handle.sync();
    } finally {
      handle.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`${path}: cannot write safetensors file (${(e as Error).message})`);
  }
}
