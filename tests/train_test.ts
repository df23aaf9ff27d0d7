// End to end, through the command line as users run it: a short run on real CIFAR-10 images
// learns; --resume continues bit-for-bit; eval reproduces the run's test accuracy and writes
// predictions; bad input gets one clear line and a non-zero exit, and leaves nothing half-written.
import assert from "node:assert";
import { loadCheckpoint, saveCheckpoint } from "../src/checkpoint.ts";
import { realDataPresent, run, TINY, writeRealSubset } from "./cli.ts";
import { requestAdapter } from "../src/webgpu/device.ts";

const haveRealData = realDataPresent("train_test");

const dir = await Deno.makeTempDir({ prefix: "convmixer-train-test-" });
const subset = `${dir}/cifar-subset.tar.gz`;

if (haveRealData) await writeRealSubset(subset, 600, 1000);

async function metrics(runDir: string) {
  const text = await Deno.readTextFile(`${runDir}/metrics.jsonl`);
  return text.trim().split("\n").map((line) => JSON.parse(line));
}

Deno.test({
  name: "a short run on real CIFAR-10 learns; eval reproduces its accuracy and writes predictions",
  ignore: !haveRealData,
  fn: async () => {
    const out = `${dir}/learn`;
    const r = await run("train", [...TINY, "--data", subset, "--epochs", "4", "--lr", "0.01", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    const lines = await metrics(out);
    assert.equal(lines.length, 4);
    assert(
      lines[3].train_loss < lines[0].train_loss - 0.2,
      `loss did not fall: ${lines.map((l) => l.train_loss)}`,
    );
    assert(lines[3].test_acc > 0.3, `test accuracy ${lines[3].test_acc} is not well above chance (0.1)`);
    const config = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
    assert.equal(config.recipe.hdim, 32);

    const csv = `${dir}/predictions.csv`;
    assert.equal(config.recipe.tta, "flip-translate", "the CPU default evaluates with six-view TTA");
    const e = await run("eval", [
      "--checkpoint",
      `${out}/last.safetensors`,
      "--data",
      subset,
      "--tta",
      "flip-translate",
      "--predictions",
      csv,
    ]);
    assert.equal(e.code, 0, e.stderr);
    const accuracy = Number(/accuracy ([\d.]+)%/.exec(e.stdout)![1]) / 100;
    assert(
      Math.abs(accuracy - lines[3].test_acc) < 1e-9,
      `eval ${accuracy} vs training's ${lines[3].test_acc}`,
    );
    const rows = (await Deno.readTextFile(csv)).trim().split("\n");
    assert.equal(rows[0], "index,label,pred," + Array.from({ length: 10 }, (_, c) => `logit_${c}`).join(","));
    assert.equal(rows.length, 1001);
    const correct = rows.slice(1).filter((row) => row.split(",")[1] === row.split(",")[2]).length;
    assert(Math.abs(correct / 1000 - accuracy) < 1e-9, `${correct} correct rows vs accuracy ${accuracy}`);
  },
});

Deno.test({
  name: "--resume continues exactly where an interrupted run stopped",
  ignore: !haveRealData,
  fn: async () => {
    const common = [...TINY, "--data", subset, "--epochs", "2", "--seed", "5"];
    const whole = await run("train", [...common, "--steps", "20", "--out", `${dir}/whole`]);
    assert.equal(whole.code, 0, whole.stderr);
    const first = await run("train", [...common, "--steps", "7", "--out", `${dir}/parts`]);
    assert.equal(first.code, 0, first.stderr);
    const second = await run("train", [
      "--resume",
      `${dir}/parts`,
      "--steps",
      "20",
      "--data",
      subset,
      "--backend",
      "wasm",
    ]);
    assert.equal(second.code, 0, second.stderr);
    const a = await loadCheckpoint(`${dir}/whole/last.safetensors`);
    const b = await loadCheckpoint(`${dir}/parts/last.safetensors`);
    assert.equal(a.metadata.step, "20");
    assert.equal(b.metadata.step, "20");
    for (const [name, t] of a.state) assert.deepEqual(b.state.get(name)!.data, t.data, name);
  },
});

Deno.test({
  name:
    "--time ends within its budget; --total-steps replays it exactly; --val is evaluated every epoch, test once",
  ignore: !haveRealData,
  fn: async () => {
    const common = [...TINY, "--data", subset, "--seed", "3", "--val", "500"];
    const started = performance.now();
    const timed = await run("train", [...common, "--time", "20s", "--out", `${dir}/timed`]);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(timed.code, 0, timed.stderr);
    assert(seconds < 20 + 3, `--time 20s took ${seconds.toFixed(1)} s`);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/timed/config.json`));
    assert(config.totalSteps > 12, `${config.totalSteps} steps`);
    assert.equal(config.recipe.tta, "flip", "a budget under 10 minutes evaluates with flip's two views");
    // Two estimates: the first fixes the peak, the second (at the peak) the length.
    const estimates = [...timed.stderr.matchAll(/--time 20 s: .* → (\d+) steps .*lr peak at step (\d+)/g)];
    assert.equal(estimates.length, 2, timed.stderr);
    assert.equal(Number(estimates[1][1]), config.totalSteps);
    assert.equal(Number(estimates[1][2]), config.peakStep);
    assert.equal(config.peakStep, Math.round((2 * Number(estimates[0][1])) / 5));
    const lines = await metrics(`${dir}/timed`);
    assert.equal(lines.at(-1).step, config.totalSteps);
    assert(lines.every((l) => l.val_acc >= 0 && l.val_acc <= 1), "every epoch has a validation accuracy");
    assert(lines.slice(0, -1).every((l) => l.test_acc === undefined), "the test set is evaluated once");
    assert(lines.at(-1).test_acc > 0.2, `test accuracy ${lines.at(-1).test_acc}`);
    const replay = await run("train", [
      ...common,
      "--total-steps",
      String(config.totalSteps),
      "--peak-step",
      String(config.peakStep),
      "--out",
      `${dir}/replay`,
    ]);
    assert.equal(replay.code, 0, replay.stderr);
    const a = await Deno.readFile(`${dir}/timed/last.safetensors`);
    const b = await Deno.readFile(`${dir}/replay/last.safetensors`);
    assert.deepEqual(a, b, "--total-steps N --peak-step P gives the --time run's checkpoint byte for byte");
    // Its length is in steps: a finished run is complete, whatever --epochs says.
    const again = await run("train", ["--resume", `${dir}/timed`, "--data", subset, "--epochs", "9"]);
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /--epochs 9 ignored: the run's length is fixed in steps/);
    assert.match(
      again.stderr,
      new RegExp(`the run is complete \\(step ${config.totalSteps} of ${config.totalSteps}\\)`),
    );
  },
});

Deno.test({
  name:
    "--resume is exact with every recipe method on (weight average, smoothing, whitening, alternating flips, TTA)",
  ignore: !haveRealData,
  fn: async () => {
    const methods = [
      "--ema",
      "0.9",
      "--label-smoothing",
      "0.2",
      "--stem-init",
      "whiten",
      "--flip",
      "alternate",
    ];
    const common = [...TINY, ...methods, "--tta", "flip", "--data", subset, "--epochs", "2", "--seed", "4"];
    const whole = await run("train", [...common, "--out", `${dir}/methods-whole`]);
    assert.equal(whole.code, 0, whole.stderr);
    const first = await run("train", [...common, "--steps", "70", "--out", `${dir}/methods-parts`]);
    assert.equal(first.code, 0, first.stderr);
    const rest = ["--resume", `${dir}/methods-parts`, "--data", subset, "--backend", "wasm"];
    const second = await run("train", rest);
    assert.equal(second.code, 0, second.stderr);
    const a = await Deno.readFile(`${dir}/methods-whole/last.safetensors`);
    const b = await Deno.readFile(`${dir}/methods-parts/last.safetensors`);
    assert.deepEqual(a, b, "resumed and uninterrupted checkpoints differ");
    const [wholeLast, partsLast] = [
      await metrics(`${dir}/methods-whole`),
      await metrics(`${dir}/methods-parts`),
    ];
    assert.equal(partsLast.at(-1).test_acc, wholeLast.at(-1).test_acc);
    // The checkpoint holds the weight average, which eval with --tta flip scores as training did.
    const e = await run("eval", [
      "--checkpoint",
      `${dir}/methods-whole/last.safetensors`,
      "--data",
      subset,
      "--tta",
      "flip",
    ]);
    assert.equal(e.code, 0, e.stderr);
    const accuracy = Number(/accuracy ([\d.]+)%/.exec(e.stdout)![1]) / 100;
    assert(
      Math.abs(accuracy - wholeLast.at(-1).test_acc) < 1e-9,
      `eval ${accuracy} vs ${wholeLast.at(-1).test_acc}`,
    );
  },
});

Deno.test("bad flags: one clear line and exit code 2", async () => {
  await Deno.mkdir(`${dir}/existing-run`);
  await Deno.writeTextFile(`${dir}/existing-run/config.json`, "{}");
  for (
    const [args, message] of [
      [["--bogus"], "Unknown option '--bogus'"],
      [["--batch", "0"], "--batch 0: must be ≥ 1"],
      [["--kernel", "4"], "--kernel 4: must be odd"],
      [["--patch", "33"], "--patch 33: must be ≤ 32"],
      [["--lr", "abc"], "--lr abc: not a number"],
      [["--optimizer", "adam"], "--optimizer adam: must be one of adamw, sgd, nesterov"],
      [["--crop-size", "2", "--patch", "4"], "--crop-size 2: a crop holds at least one 4-pixel patch"],
      [["--augment", "heavy"], "--augment heavy"],
      [["--resume", `${dir}/nothing-here`], "not a run directory"],
      [["--out", `${dir}/existing-run`], "already holds a run"],
    ] as const
  ) {
    const r = await run("train", [...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert(r.stderr.includes(message), `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
  const e = await run("eval", []);
  assert.equal(e.code, 2);
  assert(e.stderr.includes("--checkpoint CKPT is required"), e.stderr);
});

Deno.test("bad files: missing data, a corrupt checkpoint, a non-finite loss", async () => {
  const missing = await run("train", [
    "--backend",
    "wasm",
    "--data",
    `${dir}/no-such.tar.gz`,
    "--out",
    `${dir}/m`,
  ]);
  assert.equal(missing.code, 1);
  assert(missing.stderr.includes("no-such.tar.gz: does not exist"), missing.stderr);

  const corrupt = `${dir}/corrupt.safetensors`;
  await Deno.writeFile(corrupt, new Uint8Array([1, 2, 3]));
  const c = await run("eval", ["--checkpoint", corrupt, "--backend", "wasm"]);
  assert.equal(c.code, 1);
  assert(c.stderr.startsWith(`eval: ${corrupt}`), c.stderr);

  if (!haveRealData) return;
  // A checkpoint whose head bias holds NaN: the first loss is NaN, the run stops, nothing is saved.
  const { state } = await loadCheckpoint("tests/fixtures/k5p2.model.safetensors");
  state.get("head.bias")!.data[0] = NaN;
  await saveCheckpoint(`${dir}/nan.safetensors`, state);
  const out = `${dir}/nan-run`;
  const n = await run("train", [
    "--backend",
    "wasm",
    "--data",
    subset,
    "--init",
    `${dir}/nan.safetensors`,
    "--batch",
    "50",
    "--out",
    out,
  ]);
  assert.equal(n.code, 1);
  assert(n.stderr.includes("non-finite training loss"), n.stderr);
  assert.throws(() => Deno.statSync(`${out}/last.safetensors`));
});

// `--backend webgpu` gives `--backend wasm`'s results, to float32 rounding, for train and eval (on
// lavapipe in CI; a machine without any adapter skips, except under CI where webgpu_test.ts fails).
const haveAdapter = (await requestAdapter()) !== null;

Deno.test({
  name: "train and eval on --backend webgpu agree with --backend wasm",
  ignore: !haveRealData || !haveAdapter,
  fn: async () => {
    // With the recipe's methods on, so that both backends' smoothing and weight average are compared.
    const methods = [
      "--label-smoothing",
      "0.2",
      "--ema",
      "0.9",
      "--stem-init",
      "whiten",
      "--flip",
      "alternate",
    ];
    const common = [...TINY, ...methods, "--data", subset, "--epochs", "1", "--steps", "4", "--batch", "20"];
    for (const backend of ["wasm", "webgpu"]) {
      const r = await run("train", [...common, "--backend", backend, "--out", `${dir}/agree-${backend}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const wasm = await loadCheckpoint(`${dir}/agree-wasm/last.safetensors`);
    const gpu = await loadCheckpoint(`${dir}/agree-webgpu/last.safetensors`);
    for (const [name, t] of wasm.state) {
      const other = gpu.state.get(name)!.data;
      const scale = Math.max(1e-3, ...Array.from(t.data, Math.abs));
      const worst = Math.max(...Array.from(t.data, (x, i) => Math.abs(x - other[i])));
      assert(worst <= 1e-3 * scale, `${name}: wasm and webgpu differ by ${worst} (scale ${scale})`);
    }
    const logits: number[][][] = [];
    for (const backend of ["wasm", "webgpu"]) {
      const csv = `${dir}/agree-${backend}.csv`;
      const args = [
        "--checkpoint",
        `${dir}/agree-wasm/last.safetensors`,
        "--data",
        subset,
        "--backend",
        backend,
      ];
      const e = await run("eval", [...args, "--predictions", csv]);
      assert.equal(e.code, 0, e.stderr);
      const rows = (await Deno.readTextFile(csv)).trim().split("\n").slice(1);
      logits.push(rows.map((row) => row.split(",").slice(3).map(Number)));
    }
    for (let i = 0; i < logits[0].length; i++) {
      for (let c = 0; c < 10; c++) {
        assert(
          Math.abs(logits[0][i][c] - logits[1][i][c]) < 1e-3,
          `record ${i} logit ${c}: ${logits[0][i][c]} vs ${logits[1][i][c]}`,
        );
      }
    }
  },
});
