// `task predict` as a user runs it, on both backends: test records saved as PNG (at 32×32 and
// upscaled to 96×96) and JPEG files get the class `task eval --predictions` gives those records;
// bad files (not an image, truncated, a directory, missing) get one line each while the others
// are still classified, and the exit code says some failed. On WebGPU the run starts with
// XDG_RUNTIME_DIR unset, as on most servers, and must print none of the Vulkan driver's lines.
import assert from "node:assert/strict";
import jpeg from "jpeg-js";
import { CLASS_NAMES, IMAGE_BYTES, openCifar } from "../src/data/cifar.ts";
import { recordToRgb, type RgbImage, rgbToPng } from "../src/image.ts";
import { softmax } from "../src/report/analysis.ts";
import { realDataPresent, run, TINY, writeRealSubset } from "./cli.ts";
import { requestAdapter } from "../src/webgpu/device.ts";

const haveRealData = realDataPresent("predict_test");
const adapter = await requestAdapter();
if (!adapter && Deno.env.get("CI")) throw new Error("CI: no WebGPU adapter (install mesa-vulkan-drivers)");
if (!adapter) console.warn("predict_test: no WebGPU adapter, skipping the WebGPU case");

const dir = await Deno.makeTempDir({ prefix: "convmixer-predict-test-" });
const subset = `${dir}/cifar-subset.tar.gz`;
const checkpoint = `${dir}/run/last.safetensors`;
const RECORDS = 200; // test records: enough to find confident ones, few enough for lavapipe

if (haveRealData) {
  await writeRealSubset(subset, 600, RECORDS);
  const r = await run("train", [
    ...TINY,
    // The JPEG copies need records far from the runner-up: no label smoothing (it caps the confidence),
    // and 2 epochs (with the official breakpoints, epochs*2//5, one epoch never reaches lr_max).
    ...["--data", subset, "--epochs", "2", "--label-smoothing", "0", "--out", `${dir}/run`],
  ]);
  if (r.code !== 0) throw new Error(`predict_test: training the model failed:\n${r.stderr}`);
}

/** Each pixel repeated `k`×`k` times: area averaging back to 32×32 must give the record exactly. */
function upscale(image: RgbImage, k: number): RgbImage {
  const width = image.width * k, height = image.height * k;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (Math.floor(y / k) * image.width + Math.floor(x / k)) * 3;
      data.set(image.data.subarray(from, from + 3), (y * width + x) * 3);
    }
  }
  return { width, height, data };
}

function jpegFile(image: RgbImage): Uint8Array {
  const rgba = new Uint8Array(image.width * image.height * 4).fill(255);
  for (let p = 0; p < image.width * image.height; p++) rgba.set(image.data.subarray(p * 3, p * 3 + 3), p * 4);
  return jpeg.encode({ width: image.width, height: image.height, data: rgba }, 95).data;
}

/** eval's class and its margin over the runner-up (softmax probability) for every test record. */
async function evalClasses(backend: string): Promise<{ pred: number; margin: number }[]> {
  const csv = `${dir}/predictions-${backend}.csv`;
  const e = await run("eval", [
    "--checkpoint",
    checkpoint,
    "--data",
    subset,
    "--backend",
    backend,
    "--predictions",
    csv,
  ]);
  assert.equal(e.code, 0, e.stderr);
  return (await Deno.readTextFile(csv)).trim().split("\n").slice(1).map((row) => {
    const fields = row.split(",").map(Number);
    const p = [...softmax(fields.slice(3))].sort((a, b) => b - a);
    return { pred: fields[2], margin: p[0] - p[1] };
  });
}

/** Writes the image files a user might have: PNGs of 12 records, JPEGs of the 4 clearest ones. */
async function writeImages(classes: { margin: number }[]) {
  const { test } = await openCifar(subset);
  const image = (i: number) => recordToRgb(test.images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES));
  const files: { path: string; record: number }[] = [];
  for (let i = 0; i < 12; i++) {
    const small = `${dir}/test-${i}.png`, large = `${dir}/test-${i}-96px.png`;
    await Deno.writeFile(small, rgbToPng(image(i)));
    await Deno.writeFile(large, rgbToPng(upscale(image(i), 3)));
    files.push({ path: small, record: i }, { path: large, record: i });
  }
  // JPEG is lossy: only records whose class is far from the runner-up must keep it.
  const clearest = classes.map((c, i) => ({ ...c, i })).sort((a, b) => b.margin - a.margin).slice(0, 4);
  for (const { i, margin } of clearest) {
    assert(margin > 0.2, `record ${i}: margin ${margin} is too small for a lossy copy`);
    const path = `${dir}/test-${i}-96px.jpg`;
    await Deno.writeFile(path, jpegFile(upscale(image(i), 3)));
    files.push({ path, record: i });
  }
  return files;
}

async function writeBadFiles() {
  await Deno.writeTextFile(`${dir}/notes.txt`, "not an image\n");
  const png = await Deno.readFile(`${dir}/test-0-96px.png`);
  await Deno.writeFile(`${dir}/truncated.png`, png.subarray(0, png.length >> 1));
  const jpg = jpegFile(upscale(recordToRgb(new Uint8Array(IMAGE_BYTES).fill(128)), 3));
  await Deno.writeFile(`${dir}/truncated.jpg`, jpg.subarray(0, jpg.length >> 1));
  await Deno.mkdir(`${dir}/a-folder.png`, { recursive: true });
  return ["notes.txt", "truncated.png", "truncated.jpg", "a-folder.png", "missing.jpg"].map((f) =>
    `${dir}/${f}`
  );
}

for (const backend of ["wasm", "webgpu"]) {
  Deno.test({
    name:
      `predict (${backend}): PNG and JPEG files of test records get eval's class; bad files get a line each`,
    ignore: !haveRealData || (backend === "webgpu" && !adapter),
    fn: async () => {
      const classes = await evalClasses(backend);
      const images = await writeImages(classes);
      const bad = await writeBadFiles();
      const env = Deno.env.toObject();
      delete env.XDG_RUNTIME_DIR;
      const paths = [bad[0], ...images.map((f) => f.path), ...bad.slice(1)];
      const p = await run(
        "predict",
        ["--checkpoint", checkpoint, "--backend", backend, "--json", ...paths],
        env,
      );
      assert.equal(p.code, 1, `exit code ${p.code} with bad files among them:\n${p.stderr}`);
      assert(!p.stderr.includes("XDG_RUNTIME_DIR"), `the Vulkan driver complained:\n${p.stderr}`);
      const lines = p.stdout.trim().split("\n").map((line) => JSON.parse(line));
      assert.deepEqual(lines.map((l) => l.file), paths, "one line per file, in the order given");
      for (const [i, { path, record }] of images.entries()) {
        const { top } = lines[i + 1];
        assert.equal(top.length, 3);
        assert.equal(
          top[0].class,
          CLASS_NAMES[classes[record].pred],
          `${path}: eval says record ${record} is that`,
        );
        assert(top[0].probability >= top[1].probability && top[1].probability >= top[2].probability);
      }
      const failed = [lines[0], ...lines.slice(images.length + 1)];
      const why = [
        /^not a PNG or JPEG image$/,
        /^corrupt or truncated PNG/,
        /^corrupt or truncated JPEG/,
        /^is a dir/,
        /^no such file$/,
      ];
      failed.forEach((line, i) => assert.match(line.error, why[i], line.file));
    },
  });
}

Deno.test({
  name: "predict without --json: the top 3 per file on stdout, a bad file named on stderr",
  ignore: !haveRealData,
  fn: async () => {
    const p = await run("predict", [
      "--checkpoint",
      checkpoint,
      "--backend",
      "wasm",
      `${dir}/test-1.png`,
      `${dir}/notes.txt`,
    ]);
    assert.equal(p.code, 1);
    assert.match(p.stdout, /^\S+test-1\.png: [a-z]+ [\d.]+%, [a-z]+ [\d.]+%, [a-z]+ [\d.]+%\n$/);
    assert.match(p.stderr, /predict: \S+notes\.txt: not a PNG or JPEG image\n/);
    const usage = await run("predict", ["--checkpoint", checkpoint]);
    assert.equal(usage.code, 2);
    assert.equal(usage.stderr, "predict: no image files given (see --help)\n");
  },
});
