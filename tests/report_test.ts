// The run report as a user sees it: a short run on real CIFAR-10 images writes RUNDIR/report.html
// (and steps.jsonl with --log-every), `task eval --report` writes one for a checkpoint, and both
// are opened in headless Chromium: every chart drawn, every image decoded, no console errors,
// nothing fetched from anywhere. Screenshots go to the test's temporary folder (and to
// $REPORT_SCREENSHOT when set).
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { chromiumPresent, visit } from "./browser.ts";
import { realDataPresent, run, TINY, writeRealSubset } from "./cli.ts";

const haveRealData = realDataPresent("report_test");
const haveBrowser = chromiumPresent("report_test");
const dir = await Deno.makeTempDir({ prefix: "convmixer-report-test-" });
const subset = `${dir}/cifar-subset.tar.gz`;
if (haveRealData) await writeRealSubset(subset, 600, 1000);

/** What the page shows, measured in the browser once every image has been decoded. */
const MEASURE = `(async () => {
  const images = [...document.querySelectorAll(".mistakes img")];
  const decoded = await Promise.all(images.map((img) => img.decode().then(() => true, () => false)));
  return {
    charts: [...document.querySelectorAll(".chart svg")].map((svg) => ({
      width: svg.getBoundingClientRect().width,
      drawn: [...svg.querySelectorAll("path")].filter((p) => p.getTotalLength() > 0).length,
      labels: svg.querySelectorAll("text").length,
    })),
    images: images.map((img, i) => ({ decoded: decoded[i], width: img.naturalWidth, height: img.naturalHeight })),
    headings: [...document.querySelectorAll("h2")].map((h) => h.textContent),
  };
})()`;

interface Measured {
  charts: { width: number; drawn: number; labels: number }[];
  images: { decoded: boolean; width: number; height: number }[];
  headings: string[];
}

async function checkInBrowser(page: string, charts: number, screenshot: string) {
  const seen = await visit<Measured>(pathToFileURL(page).href, MEASURE);
  assert.deepEqual(seen.errors, [], `${page}: errors in the browser`);
  const elsewhere = seen.requests.filter((url) => !url.startsWith("file:") && !url.startsWith("data:"));
  assert.deepEqual(elsewhere, [], `${page}: the report fetched from elsewhere`);
  const { value } = seen;
  assert.equal(value.charts.length, charts, `${page}: ${value.charts.length} charts, expected ${charts}`);
  value.charts.forEach((chart, i) => {
    assert(chart.width > 100 && chart.drawn >= 2 && chart.labels >= 3, `${page}: chart ${i} is empty`);
  });
  assert.equal(value.images.length, 24, `${page}: ${value.images.length} mistake images, expected 24`);
  for (const image of value.images) assert.deepEqual(image, { decoded: true, width: 32, height: 32 });
  await Deno.writeFile(screenshot, seen.screenshot);
  const copy = Deno.env.get("REPORT_SCREENSHOT");
  if (copy) await Deno.writeFile(copy, seen.screenshot);
  return value;
}

Deno.test({
  name: "report.html of a short real-data run and eval's --report render in Chromium",
  ignore: !haveRealData || !haveBrowser,
  fn: async () => {
    const out = `${dir}/run`;
    const r = await run("train", [
      ...TINY,
      "--data",
      subset,
      "--epochs",
      "2",
      "--log-every",
      "10",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const files = [...Deno.readDirSync(out)].map((f) => f.name).sort();
    assert.deepEqual(files, [
      "config.json",
      "last.safetensors",
      "lock",
      "metrics.jsonl",
      "optim-120.safetensors", // 2 epochs of 60 steps
      "report.html",
      "steps.jsonl",
    ]);
    const shown = await checkInBrowser(`${out}/report.html`, 9, `${dir}/run-report.png`);
    assert(
      shown.headings.some((h) => /^Test set after epoch 2: [\d.]+% correct$/.test(h)),
      String(shown.headings),
    );

    const e = await run("eval", [
      "--checkpoint",
      `${out}/last.safetensors`,
      "--data",
      subset,
      "--backend",
      "wasm",
      "--report",
      `${dir}/eval.html`,
    ]);
    assert.equal(e.code, 0, e.stderr);
    await checkInBrowser(`${dir}/eval.html`, 2, `${dir}/eval-report.png`);
    console.error(`report_test: screenshots in ${dir}`);
  },
});

Deno.test({
  name: "steps.jsonl: one line per --log-every steps whose losses average to the epoch's",
  ignore: !haveRealData,
  fn: async () => {
    const out = `${dir}/run`; // written by the test above
    const lines = async (path: string) =>
      (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
    const steps = await lines(`${out}/steps.jsonl`);
    const epochs = await lines(`${out}/metrics.jsonl`);
    // 3000 images / batch 50 = 60 steps per epoch, 2 epochs, a line every 10 steps.
    assert.deepEqual(steps.map((s) => s.step), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]);
    for (const s of steps) {
      assert.deepEqual(Object.keys(s), ["step", "loss", "accuracy", "lr", "images_per_s"]);
      assert(s.images_per_s > 0 && s.lr >= 0 && s.accuracy >= 0 && s.accuracy <= 1, JSON.stringify(s));
    }
    epochs.forEach((epoch, e) => {
      const window = steps.slice(6 * e, 6 * (e + 1));
      const mean = (key: string) => window.reduce((sum, s) => sum + s[key], 0) / window.length;
      assert(
        Math.abs(mean("loss") - epoch.train_loss) < 1e-5,
        `epoch ${e + 1}: ${mean("loss")} vs ${epoch.train_loss}`,
      );
      assert(Math.abs(mean("accuracy") - epoch.train_acc) < 1e-6, `epoch ${e + 1} accuracy`);
    });
  },
});
