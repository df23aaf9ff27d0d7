// The run folder under hostile use, through the command line: signals, a second writer, a stale
// lock, non-finite weights, a full disk, leftovers of an interrupted save, a malformed config.json,
// impossible --epochs/--steps, and flags --resume changes or ignores. tests/kill_test.ts does kill -9.
import assert from "node:assert/strict";
import { loadCheckpoint, saveCheckpoint } from "../src/checkpoint.ts";
import { officialFiles, writeTarGz } from "./make_cifar.ts";

const dir = await Deno.makeTempDir({ prefix: "convmixer-run-dir-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const tiny = `${dir}/tiny.tar.gz`; // 80 training images: 10 steps per epoch at batch 8
writeTarGz(tiny, officialFiles(16));
const long = `${dir}/long.tar.gz`; // 8000 images: 1000 steps per epoch (~0.5 s), to signal mid-epoch
writeTarGz(long, officialFiles(1600));

const MODEL = ["--backend", "wasm", "--hdim", "16", "--depth", "1", "--kernel", "3", "--patch", "4"];
const SESSION = ["--backend", "wasm", "--workers", "1"]; // what --resume takes besides --resume
const RUN = [...MODEL, "--batch", "8", "--workers", "1", "--seed", "3"];

function spawn(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/train.ts", ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function result(child: Deno.ChildProcess) {
  const { code, stderr } = await child.output();
  return { code, stderr: new TextDecoder().decode(stderr) };
}

const train = (args: string[]) => result(spawn(args));

/** Resolves once the child's stderr contains `text` (the rest of stderr is kept for later). */
async function waitFor(child: Deno.ChildProcess, text: string): Promise<() => Promise<string>> {
  const reader = child.stderr.getReader();
  let seen = "";
  while (!seen.includes(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the run ended before printing '${text}': ${seen}`);
    seen += new TextDecoder().decode(value);
  }
  return async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      seen += new TextDecoder().decode(r.value);
    }
    return seen;
  };
}

async function sameFiles(a: string, b: string, names: string[]) {
  for (const name of names) {
    assert.deepEqual(
      await Deno.readFile(`${a}/${name}`),
      await Deno.readFile(`${b}/${name}`),
      `${b}/${name}`,
    );
  }
}

function oneLine(stderr: string, includes: string) {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert(lines[0].includes(includes), stderr);
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129], ["SIGINT", 130]] as const) {
  Deno.test(`${signal} mid-epoch: finish the step, save, exit ${code} within seconds; resume is exact`, async () => {
    const out = `${dir}/${signal}`;
    const child = spawn([...RUN, "--data", long, "--epochs", "2", "--out", out]);
    const rest = await waitFor(child, "epoch 1/2");
    const sent = performance.now();
    child.kill(signal);
    const { code: exit } = await child.status;
    const stderr = await rest();
    assert(performance.now() - sent < 5000, `took ${performance.now() - sent} ms`);
    assert.equal(exit, code, stderr);
    const stop = /stopped by (\w+) at step (\d+), saved; continue with --resume/.exec(stderr);
    assert(stop && stop[1] === signal, stderr);
    const step = Number(stop[2]);
    assert(step > 0 && step < 1000, `stopped at step ${step}, not mid-epoch`);
    assert(!(await exists(`${out}/metrics.jsonl`)), "a signal stop writes no partial epoch line");

    const resumed = await train(["--resume", out, "--data", long, ...SESSION, "--steps", String(step + 5)]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert(resumed.stderr.includes(`resume: step ${step}, epoch 1, batch ${step}`), resumed.stderr);
    const whole = `${dir}/${signal}-whole`;
    const w = await train([
      ...RUN,
      "--data",
      long,
      "--epochs",
      "2",
      "--steps",
      String(step + 5),
      "--out",
      whole,
    ]);
    assert.equal(w.code, 0, w.stderr);
    await sameFiles(whole, out, ["last.safetensors", `optim-${step + 5}.safetensors`]);
  });
}

Deno.test("a second signal during the save aborts at once and leaves a resumable folder", async () => {
  for (const gap of [0, 3, 20]) {
    const out = `${dir}/double-${gap}`;
    const child = spawn([...RUN, "--data", long, "--epochs", "2", "--out", out]);
    await waitFor(child, "epoch 1/2");
    child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, gap));
    // The tiny model's save can end inside the gap; a second signal then has no one to reach.
    try {
      child.kill("SIGTERM");
    } catch (e) {
      if (!(e instanceof TypeError && /already terminated/.test(e.message))) throw e;
    }
    const { code } = await child.status;
    assert.equal(code, 143);
    const resumed = await train(["--resume", out, "--data", long, ...SESSION, "--steps", "1100"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert(!/\.tmp-/.test([...Deno.readDirSync(out)].map((e) => e.name).join()), "leftovers stayed");
  }
});

Deno.test("one writer per run folder: a second train fails at once; a dead writer's lock is taken over", async () => {
  const out = `${dir}/locked`;
  // 20 epochs (~10 s) outlast the two refused starts below, so the SIGKILL finds it training.
  const first = spawn([...RUN, "--data", long, "--epochs", "20", "--out", out]);
  const firstDone = await waitFor(first, "epoch 1/2");
  const pid = (await Deno.readTextFile(`${out}/lock`)).trim();
  assert.equal(pid, String(first.pid));
  for (
    const [args, message] of [
      [["--resume", out], `${out} is in use by another train (pid ${pid}); one writer per run folder`],
      [["--out", out], `--out ${out} already holds a run`],
    ] as const
  ) {
    const started = performance.now();
    const second = await train([...RUN, "--data", long, ...args]);
    assert.equal(second.code, 2, second.stderr);
    oneLine(second.stderr, message);
    assert(performance.now() - started < 5000);
  }
  first.kill("SIGKILL");
  await first.status;
  await firstDone();
  const resumed = await train(["--resume", out, "--data", long, ...SESSION, "--steps", "1100"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert(
    resumed.stderr.includes(`taking over the lock of pid ${pid}, which is no longer running`),
    resumed.stderr,
  );
  assert.equal(await Deno.readTextFile(`${out}/lock`), "", "a finished run leaves its lock free");

  // Two runs started together on one new folder: exactly one trains.
  const together = `${dir}/together`;
  const both = await Promise.all(
    [0, 1].map(() => train([...RUN, "--data", tiny, "--epochs", "1", "--out", together])),
  );
  assert.deepEqual(both.map((r) => r.code).sort(), [0, 2], both.map((r) => r.stderr).join("\n"));
  const lines = (await Deno.readTextFile(`${together}/metrics.jsonl`)).trim().split("\n");
  assert.equal(lines.length, 1);
});

Deno.test("non-finite weights are never saved; the printed advice (--resume --lr) works", async () => {
  const out = `${dir}/nonfinite`;
  const sgd = [...RUN, "--data", tiny, "--optimizer", "sgd", "--clip-norm", "0"];
  const ok = await train([...sgd, "--lr", "0.01", "--epochs", "1", "--out", out]);
  assert.equal(ok.code, 0, ok.stderr);
  const saved = await Deno.readFile(`${out}/last.safetensors`);

  const blowUp = await train(["--resume", out, "--data", tiny, ...SESSION, "--lr", "100", "--epochs", "3"]);
  assert.equal(blowUp.code, 1, blowUp.stderr);
  assert.match(blowUp.stderr, /non-finite .*--resume/);
  assert.match(blowUp.stderr, /resume: --lr 0.01 → 100, --epochs 1 → 3 from step 11/);
  assert.deepEqual(await Deno.readFile(`${out}/last.safetensors`), saved, "the previous save stays");

  const fixed = await train([
    "--resume",
    out,
    "--data",
    tiny,
    ...SESSION,
    "--lr",
    "0.01",
    "--clip-norm",
    "1",
  ]);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.match(fixed.stderr, /resume: --lr 100 → 0.01, --clip-norm 0 → 1 from step 11 \(recorded in/);
  const config = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  assert.equal(config.recipe.lr, 0.01);
  assert.deepEqual(config.changes, [{ step: 11, lr: 100, epochs: 3 }, { step: 11, lr: 0.01, clipNorm: 1 }]);
  const { state, metadata } = await loadCheckpoint(`${out}/last.safetensors`);
  assert.equal(metadata.step, "30");
  for (const [name, { data }] of state) assert(data.every(Number.isFinite), name);
  const epochs = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l).epoch
  );
  assert.deepEqual(epochs, [1, 2, 3], "each epoch once");
});

Deno.test("resume removes an interrupted save's leftovers and metrics lines written after the save", async () => {
  const out = `${dir}/leftovers`;
  const r = await train([...RUN, "--data", tiny, "--epochs", "2", "--out", out]);
  assert.equal(r.code, 0, r.stderr);
  for (const name of ["last.safetensors.tmp-4242", "optim-7.safetensors", "last.optim.safetensors"]) {
    await Deno.writeTextFile(`${out}/${name}`, "half a save");
  }
  await Deno.writeTextFile(`${out}/metrics.jsonl`, '{"epoch": 3, "partial": tr', { append: true });
  const resumed = await train(["--resume", out, "--data", tiny, ...SESSION, "--epochs", "3"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert(
    resumed.stderr.includes(
      "resume: removed last.optim.safetensors, last.safetensors.tmp-4242, optim-7.safetensors (left by an interrupted save)",
    ),
    resumed.stderr,
  );
  assert(
    resumed.stderr.includes("resume: dropped 1 metrics.jsonl line(s) written after the save"),
    resumed.stderr,
  );
  const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "config.json",
    "last.safetensors",
    "lock",
    "metrics.jsonl",
    "optim-30.safetensors",
    "report.html",
  ]);
  const epochs = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l).epoch
  );
  assert.deepEqual(epochs, [1, 2, 3]);
});

Deno.test("a folder saved before optim-<step> files (last.optim.safetensors) resumes", async () => {
  const out = `${dir}/old-layout`;
  assert.equal((await train([...RUN, "--data", tiny, "--epochs", "2", "--out", out])).code, 0);
  await Deno.rename(`${out}/optim-20.safetensors`, `${out}/last.optim.safetensors`);
  const { state, metadata: { optimizer: _, epoch_metrics: __, ...metadata } } = await loadCheckpoint(
    `${out}/last.safetensors`,
  );
  await saveCheckpoint(`${out}/last.safetensors`, state, metadata);
  const refused = await train(["--resume", out, "--data", tiny, ...SESSION, "--steps", "5"]);
  assert.equal(refused.code, 2, refused.stderr);
  assert(await exists(`${out}/last.optim.safetensors`), "resume removed the moments of the save it resumes");
  const resumed = await train([
    "--resume",
    out,
    "--data",
    tiny,
    ...SESSION,
    "--epochs",
    "3",
    "--steps",
    "25",
  ]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert(resumed.stderr.includes("resume: step 20, epoch 3, batch 0"), resumed.stderr);
  const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "config.json",
    "last.safetensors",
    "lock",
    "metrics.jsonl",
    "optim-25.safetensors",
    "report.html",
  ]);
});

Deno.test("--steps stop mid-epoch then resume: the partial epoch's line is replaced, not duplicated", async () => {
  const out = `${dir}/partial`;
  const r = await train([...RUN, "--data", tiny, "--epochs", "2", "--steps", "15", "--out", out]);
  assert.equal(r.code, 0, r.stderr);
  const resumed = await train(["--resume", out, "--data", tiny, ...SESSION]);
  assert.equal(resumed.code, 0, resumed.stderr);
  const whole = `${dir}/partial-whole`;
  assert.equal((await train([...RUN, "--data", tiny, "--epochs", "2", "--out", whole])).code, 0);
  const withoutTimings = async (runDir: string) =>
    (await Deno.readTextFile(`${runDir}/metrics.jsonl`)).trim().split("\n").map((line) => {
      const { seconds: _, images_per_s: __, ...rest } = JSON.parse(line);
      return rest;
    });
  assert.deepEqual(await withoutTimings(out), await withoutTimings(whole));
  await sameFiles(whole, out, ["last.safetensors", "optim-20.safetensors"]);
});

Deno.test("a malformed config.json or an impossible --epochs/--steps: one line, exit 2", async () => {
  const out = `${dir}/done`;
  assert.equal((await train([...RUN, "--data", tiny, "--epochs", "2", "--out", out])).code, 0);
  const resume = (...args: string[]) => train(["--resume", out, "--data", tiny, ...SESSION, ...args]);
  for (
    const [args, message] of [
      [[], "the run is complete (2 of 2 epochs, step 20); pass --epochs N with N > 2 to train longer"],
      [["--epochs", "1"], `--epochs 1: ${out} has already done 2 epochs (step 20); pass N > 2`],
      [["--epochs", "2"], "the run is complete (2 of 2 epochs, step 20)"],
      [["--epochs", "3", "--steps", "20"], "--steps 20: "],
    ] as const
  ) {
    const r = await resume(...args);
    assert.equal(r.code, 2, r.stderr);
    oneLine(r.stderr, message);
  }
  const ignored = await resume(
    "--epochs",
    "3",
    "--batch",
    "4",
    "--hdim",
    "16",
    "--seed",
    "9",
    "--steps",
    "21",
  );
  assert.equal(ignored.code, 0, ignored.stderr);
  assert(
    ignored.stderr.includes("resume: --batch 4 ignored: the run keeps 8 (from config.json)"),
    ignored.stderr,
  );
  assert(ignored.stderr.includes("resume: --seed 9 ignored: the run keeps 3"), ignored.stderr);
  assert(!ignored.stderr.includes("--hdim"), "an unchanged flag is not reported");

  const good = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  const bad = (patch: Record<string, unknown>) => JSON.stringify({ ...good, ...patch });
  for (
    const [text, message] of [
      ["{}", "'recipe' is missing or not an object"],
      ["not json", "not valid JSON"],
      ["[1]", "not a JSON object"],
      [bad({ recipe: { ...good.recipe, hdim: "16" } }), 'recipe.hdim is "16", not a number'],
      [bad({ recipe: { ...good.recipe, batch: 0 } }), "recipe.batch is 0, not a positive number"],
      [bad({ recipe: { ...good.recipe, kernel: 4 } }), "recipe.kernel 4 is not odd"],
      [bad({ recipe: { ...good.recipe, patch: 64 } }), "recipe.patch 64 is larger than the 32-pixel images"],
      [bad({ recipe: { ...good.recipe, optimizer: "adam" } }), "recipe.optimizer adam is unknown"],
      [bad({ seed: undefined }), "seed is undefined, not a number"],
      [bad({ changes: [{ lr: 1 }] }), "changes[0] has no step"],
      [bad({ changes: [{ step: 1, wd: 1 }] }), "changes[0].wd is unknown"],
    ] as const
  ) {
    await Deno.writeTextFile(`${out}/config.json`, text);
    const r = await resume("--epochs", "9");
    assert.equal(r.code, 2, `${text}: ${r.stderr}`);
    oneLine(r.stderr, `${out}/config.json: ${message}`);
  }
});

// A small tmpfs as --out (needs root for mount; skipped elsewhere).
async function canMount(): Promise<boolean> {
  if (Deno.build.os !== "linux") return false;
  const probe = await Deno.makeTempDir();
  const run = (command: string, args: string[]) =>
    new Deno.Command(command, { args, stderr: "null" }).output().then((r) => r.success, () => false);
  const mounted = await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]);
  if (mounted) await run("umount", [probe]);
  await Deno.remove(probe);
  return mounted;
}
const mountable = await canMount();

Deno.test({
  name: "a full disk: a clear line, the previous save intact, the folder resumable, no dead ends",
  ignore: !mountable,
  fn: async () => {
    const whole = `${dir}/disk-whole`;
    assert.equal((await train([...RUN, "--data", tiny, "--epochs", "3", "--out", whole])).code, 0);
    const mountPoint = await Deno.makeTempDir({ prefix: "convmixer-full-disk-" });
    let failures = 0;
    try {
      for (const kib of [4, 8, 16, 24, 32, 40, 48, 56, 64]) {
        const mount = (options: string) =>
          new Deno.Command("mount", { args: [...options.split(" "), "tmpfs", mountPoint] }).output();
        assert((await mount(`-t tmpfs -o size=${kib}k`)).success);
        try {
          const out = `${mountPoint}/run`;
          const r = await train([...RUN, "--data", tiny, "--epochs", "3", "--out", out]);
          if (r.code === 0) continue;
          failures++;
          const last = r.stderr.trim().split("\n").at(-1)!;
          assert.match(last, /^train: .*No space left on device/, `${kib} KiB: ${r.stderr}`);
          if (!(await exists(out))) continue; // nothing left behind
          const config = await exists(`${out}/config.json`);
          assert(config || [...Deno.readDirSync(out)].length === 0, `${kib} KiB: a dead-end folder`);
          if (!config) continue;
          if (await exists(`${out}/last.safetensors`)) {
            assert.match(last, /the save at step \d+ stands: free space, then --resume/);
          }
          assert((await mount(`-o remount,size=1m`)).success);
          const resumed = await train(["--resume", out, "--data", tiny, ...SESSION]);
          assert.equal(resumed.code, 0, `${kib} KiB: ${resumed.stderr}`);
          await sameFiles(whole, out, ["last.safetensors", "optim-30.safetensors"]);
        } finally {
          await new Deno.Command("umount", { args: [mountPoint] }).output();
        }
      }
      assert(failures >= 3, `only ${failures} sizes ran out of space`);
    } finally {
      await Deno.remove(mountPoint, { recursive: true });
    }
  },
});
