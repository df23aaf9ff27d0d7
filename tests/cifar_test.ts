import { deepStrictEqual as assertEquals, rejects as assertRejects } from "node:assert/strict";
import { gzipSync } from "fflate";
import { openCifar } from "../src/data/cifar.ts";
import { downloadCifar } from "../src/data/download.ts";
import { makeRecords, officialFiles, RECORD, tar, writeFolder, writeTarGz } from "./make_cifar.ts";

const PER_FILE = 3;

function expectSplit(split: { images: Uint8Array; labels: Uint8Array; count: number }, files: Uint8Array[]) {
  const records = files.flatMap((f) =>
    Array.from({ length: f.length / RECORD }, (_, i) => f.subarray(i * RECORD))
  );
  assertEquals(split.count, records.length);
  assertEquals(split.images.length, records.length * 3072);
  records.forEach((r, i) => {
    assertEquals(split.labels[i], r[0]);
    assertEquals(split.images.subarray(i * 3072, (i + 1) * 3072), r.subarray(1, RECORD));
  });
}

async function rejectsWith(path: string, pattern: RegExp) {
  await assertRejects(() => openCifar(path), (e: Error) => {
    assertEquals(pattern.test(e.message), true, e.message);
    assertEquals(e.message.includes(path), true, e.message);
    return true;
  });
}

Deno.test("cifar: reads .tar.gz, extracted folder and bare folder alike, train = batches 1..5 in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const files = officialFiles(PER_FILE);
    writeTarGz(`${dir}/c.tar.gz`, files);
    writeFolder(`${dir}/x/cifar-10-batches-bin`, files);
    writeFolder(`${dir}/bare`, files);
    const train = [1, 2, 3, 4, 5].map((n) => files[`data_batch_${n}.bin`]);
    for (const path of [`${dir}/c.tar.gz`, `${dir}/x`, `${dir}/bare`]) {
      const { train: tr, test } = await openCifar(path);
      expectSplit(tr, train);
      expectSplit(test, [files["test_batch.bin"]]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cifar: each bad input is one clear error naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const files = officialFiles(PER_FILE);
    await rejectsWith(`${dir}/nothing.tar.gz`, /does not exist/);

    const gz = gzipSync(tar(files));
    Deno.writeFileSync(`${dir}/truncated.tar.gz`, gz.subarray(0, gz.length - 100));
    await rejectsWith(`${dir}/truncated.tar.gz`, /truncated|corrupt/);
    Deno.writeFileSync(`${dir}/no-trailer.tar.gz`, gz.subarray(0, gz.length - 4));
    await rejectsWith(`${dir}/no-trailer.tar.gz`, /truncated/);
    const garbage = gz.slice();
    garbage.fill(0xff, 10, 60);
    Deno.writeFileSync(`${dir}/corrupt.tar.gz`, garbage);
    await rejectsWith(`${dir}/corrupt.tar.gz`, /corrupt|truncated/);

    const shortTar = tar(files);
    Deno.writeFileSync(`${dir}/short-tar.tar.gz`, gzipSync(shortTar.subarray(0, 512 + 1000)));
    await rejectsWith(`${dir}/short-tar.tar.gz`, /truncated tar archive/);
    const badHeader = tar(files);
    badHeader[5] ^= 1;
    Deno.writeFileSync(`${dir}/bad-header.tar.gz`, gzipSync(badHeader));
    await rejectsWith(`${dir}/bad-header.tar.gz`, /corrupt tar archive/);

    const partial = { ...files, "data_batch_2.bin": files["data_batch_2.bin"].subarray(0, RECORD * 2 + 7) };
    writeTarGz(`${dir}/partial.tar.gz`, partial);
    await rejectsWith(
      `${dir}/partial.tar.gz`,
      /data_batch_2\.bin: size 6153 is not a multiple of the 3073-byte/,
    );

    const badLabel = makeRecords(PER_FILE);
    badLabel[RECORD] = 10;
    writeFolder(`${dir}/bad-label`, { ...files, "test_batch.bin": badLabel });
    await rejectsWith(`${dir}/bad-label`, /test_batch\.bin: record 1 has label 10/);

    const { "data_batch_4.bin": _, ...missing } = files;
    writeTarGz(`${dir}/missing.tar.gz`, missing);
    await rejectsWith(`${dir}/missing.tar.gz`, /missing data_batch_4\.bin/);
    writeFolder(`${dir}/empty`, {});
    await rejectsWith(`${dir}/empty`, /missing data_batch_1\.bin/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cifar: a failed download says to pass --data and leaves no file behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const dest = `${dir}/sub/cifar.tar.gz`;
    await assertRejects(
      () => downloadCifar(dest, "http://127.0.0.1:9/cifar-10-binary.tar.gz"),
      (e: Error) => {
        assertEquals(
          /^.*cifar\.tar\.gz: could not download CIFAR-10 from .*pass --data PATH/.test(e.message),
          true,
        );
        return true;
      },
    );
    assertEquals([...Deno.readDirSync(`${dir}/sub`)].length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cifar: a download with the wrong MD5 is rejected and removed", async () => {
  const dir = await Deno.makeTempDir();
  const body = new Uint8Array(makeRecords(2));
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => new Response(body.buffer),
  );
  try {
    const dest = `${dir}/cifar.tar.gz`;
    await assertRejects(
      () => downloadCifar(dest, `http://127.0.0.1:${server.addr.port}/x`),
      /MD5 [0-9a-f]{32}, expected/,
    );
    assertEquals([...Deno.readDirSync(dir)].length, 0);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

const REAL = new URL("../../shared/data/cifar-10-binary.tar.gz", import.meta.url).pathname;
Deno.test({
  name: "cifar: the real archive has 50000/10000 records with the official first labels",
  ignore: (() => {
    try {
      return !Deno.statSync(REAL).isFile;
    } catch {
      return true;
    }
  })(),
  async fn() {
    const { train, test } = await openCifar(REAL);
    assertEquals([train.count, test.count], [50000, 10000]);
    assertEquals([...train.labels.subarray(0, 10)], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assertEquals([...test.labels.subarray(0, 10)], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    const perClass = new Array(10).fill(0);
    for (const l of train.labels) perClass[l]++;
    assertEquals(perClass, new Array(10).fill(5000));
  },
});

Deno.test("progress: off a terminal, plain lines at most every 10 s plus the final one, on stderr", async () => {
  const code = `import { Progress } from "${new URL("../src/progress.ts", import.meta.url)}";
    const p = new Progress("epoch 1/2", 1000, "img");
    for (let i = 1; i <= 1000; i++) p.update(i, "loss 2.30");
    p.done("acc 10.0%");`;
  const { stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stderr: "piped",
  })
    .output();
  assertEquals(new TextDecoder().decode(stdout), "");
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assertEquals(lines.length, 2, lines.join("\n"));
  assertEquals(/^epoch 1\/2 1\/1000 img 0\.1% .* img\/s ETA \S+ loss 2\.30$/.test(lines[0]), true, lines[0]);
  assertEquals(
    /^epoch 1\/2 1000\/1000 img 100\.0% .* img\/s in 0:00 acc 10\.0%$/.test(lines[1]),
    true,
    lines[1],
  );
});
