import assert from "node:assert/strict";
import { readSafetensors, type SafeTensor, writeSafetensors } from "../src/safetensors.ts";

const dir = await Deno.makeTempDir({ prefix: "safetensors_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** A file made by hand: the header exactly as given (object → JSON, or raw text) followed by data. */
async function handMade(name: string, header: unknown, data: Uint8Array, lengthField?: bigint) {
  const text = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const bytes = new Uint8Array(8 + text.length + data.length);
  new DataView(bytes.buffer).setBigUint64(0, lengthField ?? BigInt(text.length), true);
  bytes.set(text, 8);
  bytes.set(data, 8 + text.length);
  const path = `${dir}/${name}.safetensors`;
  await Deno.writeFile(path, bytes);
  return path;
}

async function rejects(path: string, message: RegExp) {
  await assert.rejects(readSafetensors(path), (e: Error) => {
    assert.ok(e.message.startsWith(`${path}: `), `error should name the file: ${e.message}`);
    assert.match(e.message, message);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);

Deno.test("round trip keeps dtypes, shapes, values, order and metadata", async () => {
  const tensors = new Map<string, SafeTensor>([
    ["b.weight", { dtype: "F32", shape: [2, 3], data: new Float32Array([1, -2, 3.5, 1e-30, -0, 7]) }],
    ["count", { dtype: "I64", shape: [], data: new BigInt64Array([123456789012345n]) }],
    ["a.half", { dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) }],
    ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
    ["odd", { dtype: "F32", shape: [1, 1, 5], data: new Float32Array([0.1, 0.2, 0.3, 0.4, 0.5]) }],
  ]);
  const path = `${dir}/round.safetensors`;
  await writeSafetensors(path, tensors, { format: "pt", note: "héllo" });
  const { tensors: back, metadata } = await readSafetensors(path);
  assert.deepEqual(metadata, { format: "pt", note: "héllo" });
  assert.deepEqual([...back.keys()].filter((k) => k !== "empty"), ["b.weight", "count", "a.half", "odd"]);
  for (const [name, t] of tensors) assert.deepEqual(back.get(name), t, name);

  // The header is space-padded so the data starts 8-byte aligned, and offsets follow the given order.
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + n) % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.deepEqual(header["b.weight"].data_offsets, [0, 24]);
  assert.deepEqual(header["count"].data_offsets, [24, 32]);
  assert.deepEqual(header["a.half"].data_offsets, [32, 38]);
  assert.equal(bytes.length, 8 + n + 24 + 8 + 6 + 20);
  assert.deepEqual([...Deno.readDirSync(dir)].filter((e) => e.name.includes(".tmp-")), []);
});

Deno.test("a file without metadata reads back with empty metadata", async () => {
  const path = `${dir}/nometa.safetensors`;
  await writeSafetensors(path, new Map([["x", { dtype: "F32", shape: [1], data: new Float32Array([2]) }]]));
  const { tensors, metadata } = await readSafetensors(path);
  assert.deepEqual(metadata, {});
  assert.deepEqual(tensors.get("x")?.data, new Float32Array([2]));
});

Deno.test("reads a hand-made file with tensors stored out of name order and padded header", async () => {
  const header = {
    z: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    a: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
  };
  const path = await handMade("ordered", JSON.stringify(header) + "    ", f32(1, 2, 3));
  const { tensors } = await readSafetensors(path);
  assert.deepEqual(tensors.get("z")?.data, new Float32Array([1]));
  assert.deepEqual(tensors.get("a")?.data, new Float32Array([2, 3]));
});

Deno.test("rejects malformed files with one line naming the file and the problem", async () => {
  const ok = { x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const path = `${dir}/short.safetensors`;
  await Deno.writeFile(path, new Uint8Array(5));
  await rejects(path, /too short for the 8-byte header length/);
  await rejects(`${dir}/absent.safetensors`, /cannot read safetensors file/);
  await rejects(await handMade("hugelen", ok, f32(1, 2), 1n << 40n), /header length \d+ exceeds/);
  await rejects(await handMade("json", '{"x": {"dtype": "F32",', f32(1, 2)), /header is not valid JSON/);
  await rejects(await handMade("array", "[1, 2]", new Uint8Array(0)), /header is not a JSON object/);
  await rejects(
    await handMade("meta", { ...ok, __metadata__: { epoch: 3 } }, f32(1, 2)),
    /__metadata__ value for 'epoch' is not a string/,
  );
  await rejects(
    await handMade("dtype", { x: { dtype: "BF16", shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
    /tensor 'x' has unsupported dtype "BF16"/,
  );
  await rejects(
    await handMade("shape", { x: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } }, f32(1, 2)),
    /tensor 'x' shape \[2,-1\] is not a list of non-negative integers/,
  );
  await rejects(
    await handMade("offsets", { x: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, f32(1, 2)),
    /tensor 'x' data_offsets \[8,0\] is not \[begin, end\]/,
  );
  await rejects(
    await handMade("extra", { x: { ...ok.x, strides: [1] } }, f32(1, 2)),
    /tensor 'x' has unknown fields: strides/,
  );
  await rejects(
    await handMade("size", { x: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32(1, 2)),
    /tensor 'x' data_offsets \[0, 8\] span 8 bytes, but F32 \[3\] needs 12/,
  );
  await rejects(
    await handMade("range", { x: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, f32(1, 2)),
    /tensor 'x' data_offsets \[4, 12\] run past the 8 data bytes/,
  );
  const pair = (b: number[]) => ({
    x: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    y: { dtype: "F32", shape: [1], data_offsets: b },
  });
  await rejects(
    await handMade("overlap", pair([4, 8]), f32(1, 2)),
    /tensor 'y' starts at data byte 4, expected 8 \(tensors overlap\)/,
  );
  await rejects(
    await handMade("gap", pair([12, 16]), f32(1, 2, 3, 4)),
    /starts at data byte 12, expected 8 \(tensors leave a gap\)/,
  );
  await rejects(
    await handMade("trailing", ok, f32(1, 2, 3)),
    /the tensors cover 8 data bytes but the file has 12/,
  );
});

Deno.test("a truncated file is rejected", async () => {
  const path = `${dir}/truncated.safetensors`;
  await writeSafetensors(path, new Map([["w", { dtype: "F32", shape: [4], data: new Float32Array(4) }]]));
  const bytes = await Deno.readFile(path);
  await Deno.writeFile(path, bytes.subarray(0, bytes.length - 3));
  await rejects(path, /tensor 'w' data_offsets \[0, 16\] run past the 13 data bytes \(file truncated/);
  await Deno.writeFile(path, bytes.subarray(0, 20));
  await rejects(path, /header length \d+ exceeds the 12 bytes after it/);
});

Deno.test("the writer rejects inconsistent tensors before touching the disk", async () => {
  const path = `${dir}/never.safetensors`;
  await assert.rejects(
    writeSafetensors(path, new Map([["w", { dtype: "F32", shape: [2, 2], data: new Float32Array(3) }]])),
    { message: `${path}: tensor 'w' has 3 elements but shape [2,2]` },
  );
  await assert.rejects(
    writeSafetensors(path, new Map([["n", { dtype: "I64", shape: [1], data: new Float32Array(1) }]])),
    { message: `${path}: tensor 'n' is I64 but its data is a Float32Array` },
  );
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
});

Deno.test("a failed write leaves neither a partial file nor a temporary", async () => {
  const tensors = new Map<string, SafeTensor>([["w", {
    dtype: "F32",
    shape: [1],
    data: new Float32Array(1),
  }]]);
  // The directory does not exist: opening the temporary fails.
  const missing = `${dir}/no/such/dir/ckpt.safetensors`;
  await assert.rejects(writeSafetensors(missing, tensors), /cannot write safetensors file/);
  // The target is a directory: the temporary is fully written, then the rename fails.
  const target = `${dir}/occupied`;
  await Deno.mkdir(`${target}/child`, { recursive: true });
  await assert.rejects(writeSafetensors(target, tensors), (e: Error) => e.message.startsWith(`${target}: `));
  assert.deepEqual([...Deno.readDirSync(dir)].filter((e) => e.name.includes(".tmp-")), []);
  assert.ok(Deno.statSync(target).isDirectory);
  // An existing checkpoint survives a failed overwrite untouched.
  const good = `${dir}/good.safetensors`;
  await writeSafetensors(good, tensors);
  const before = await Deno.readFile(good);
  const bad = new Map<string, SafeTensor>([["w", { dtype: "F32", shape: [2], data: new Float32Array(1) }]]);
  await assert.rejects(writeSafetensors(good, bad));
  assert.deepEqual(await Deno.readFile(good), before);
});

Deno.test("each tensor's CRC32 is in the metadata; a flipped byte is refused, naming the tensor", async () => {
  const path = `${dir}/checked.safetensors`;
  await writeSafetensors(
    path,
    new Map<string, SafeTensor>([
      ["a", { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }],
      ["b", { dtype: "F32", shape: [3], data: new Float32Array([3, 4, 5]) }],
    ]),
    { step: "7" },
  );
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  // crc32 of the little-endian float32 bytes of [1, 2] and [3, 4, 5] (Python: zlib.crc32).
  assert.deepEqual(header.__metadata__, { step: "7", "crc32.a": "2e3fa576", "crc32.b": "a5657320" });
  assert.deepEqual((await readSafetensors(path)).metadata, { step: "7" }, "checksums are not metadata");

  for (const [at, name] of [[8 + n + 3, "a"], [8 + n + 8, "b"], [bytes.length - 1, "b"]] as const) {
    const flipped = bytes.slice();
    flipped[at] ^= 0x10;
    await Deno.writeFile(path, flipped);
    await rejects(
      path,
      new RegExp(`^${path}: tensor '${name}' fails its CRC32 check: its bytes are corrupt$`),
    );
  }
  await assert.rejects(writeSafetensors(path, new Map(), { "crc32.x": "0" }), /reserved for checksums/);
});

Deno.test("files without checksums (PyTorch's) load; a bad checksum entry is refused", async () => {
  const plain = await handMade("plain", { x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, f32(1, 2));
  assert.deepEqual((await readSafetensors(plain)).tensors.get("x")?.data, new Float32Array([1, 2]));
  const x = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  await rejects(
    await handMade("badcrc", { __metadata__: { "crc32.x": "xyz" }, x }, f32(1, 2)),
    /__metadata__ 'crc32.x' is "xyz", not 8 hex digits/,
  );
  await rejects(
    await handMade("strayrc", { __metadata__: { "crc32.y": "00000000" }, x }, f32(1, 2)),
    /__metadata__ has a CRC32 for 'y', which is not a tensor/,
  );
});

Deno.test("a huge file is judged by its header and size before its data is read", async () => {
  // 8 GiB, sparse: reading it whole would take seconds and gigabytes of memory.
  const path = await handMade("huge", { x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, f32(1, 2));
  await Deno.truncate(path, 8 * 2 ** 30);
  const started = performance.now();
  await rejects(path, /the tensors cover 8 data bytes but the file has 858993\d+ \(trailing bytes\)/);
  assert(performance.now() - started < 1000, `took ${performance.now() - started} ms`);
  await Deno.remove(path);
});
