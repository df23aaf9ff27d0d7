// kill -9 at every instant a run writes something (CONVMIXER_KILL_AT_WRITE, src/atomic_file.ts) and
// at random moments: every folder resumes, and ends byte-identical to an uninterrupted run's
// (last.safetensors, the optim file, metrics.jsonl without its timings, no other files).
import assert from "node:assert/strict";
import { officialFiles, writeTarGz } from "./make_cifar.ts";

const dir = await Deno.makeTempDir({ prefix: "convmixer-kill-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
const data = `${dir}/tiny.tar.gz`;
writeTarGz(data, officialFiles(16)); // 80 training images: 10 steps per epoch at batch 8

const EPOCHS = 3;
const RUN = [
  ...["--backend", "wasm", "--hdim", "16", "--depth", "1", "--kernel", "3", "--patch", "4"],
  ...["--batch", "8", "--workers", "1", "--data", data, "--epochs", String(EPOCHS), "--seed", "7"],
];
const TIMINGS = new Set(["images_per_s", "seconds"]);

function train(args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/train.ts", ...args],
    env,
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function finished(child: Deno.ChildProcess) {
  const { code, signal, stderr } = await child.output();
  return { code, signal, stderr: new TextDecoder().decode(stderr) };
}

/**
 * A finished run folder's files, metrics.jsonl without its timings; the lock file is not the run's,
 * and report.html (redrawn from metrics.jsonl at every epoch end) charts wall times.
 */
async function contents(runDir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(runDir)) {
    if (entry.name === "lock" || entry.name === "report.html") continue;
    const bytes = await Deno.readFile(`${runDir}/${entry.name}`);
    if (entry.name !== "metrics.jsonl") {
      files.set(entry.name, Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
      continue;
    }
    const lines = new TextDecoder().decode(bytes).trim().split("\n").map((line) =>
      JSON.stringify(Object.entries(JSON.parse(line)).filter(([key]) => !TIMINGS.has(key)))
    );
    files.set(entry.name, lines.join("\n"));
  }
  return files;
}

const stats = { kills: 0, atWrites: 0, random: 0, resumed: 0, restarted: 0, complete: 0, identical: 0 };

/** The command that continues a killed run: --resume, or a fresh start if it died before its config. */
async function continuing(runDir: string): Promise<{ args: string[]; fresh: boolean }> {
  try {
    await Deno.stat(`${runDir}/config.json`);
    return { args: ["--resume", runDir, ...RUN], fresh: false };
  } catch {
    return { args: [...RUN, "--out", runDir], fresh: true };
  }
}

/** Runs a killed run to its end. */
async function complete(runDir: string) {
  const { args, fresh } = await continuing(runDir);
  const r = await finished(train(args));
  if (r.code === 2 && r.stderr.includes(`the run is complete (${EPOCHS} of ${EPOCHS} epochs`)) {
    stats.complete++;
  } else {
    assert.equal(r.code, 0, `${runDir}: ${r.stderr}`);
    if (fresh) stats.restarted++;
    else stats.resumed++;
  }
}

async function expectIdentical(runDir: string, reference: Map<string, string>) {
  const got = await contents(runDir);
  assert.deepEqual([...got.keys()].sort(), [...reference.keys()].sort(), `${runDir}: other files`);
  for (const [name, text] of reference) assert(got.get(name) === text, `${runDir}: ${name} differs`);
  stats.identical++;
}

const referenceDir = `${dir}/reference`;
const started = performance.now();
const referenceRun = await finished(train([...RUN, "--out", referenceDir]));
const runMs = performance.now() - started; // random kills land anywhere in a run's life
assert.equal(referenceRun.code, 0, referenceRun.stderr);
const reference = await contents(referenceDir);

Deno.test("kill -9 right after each write step of a run: each folder resumes to the same bytes", async () => {
  for (let n = 1;; n++) {
    const runDir = `${dir}/write-${n}`;
    const r = await finished(train([...RUN, "--out", runDir], { CONVMIXER_KILL_AT_WRITE: String(n) }));
    if (r.signal === null) { // the run has fewer write steps than n: it finished
      assert.equal(r.code, 0, r.stderr);
      assert(n > 10, `only ${n - 1} write steps`);
      break;
    }
    assert.equal(r.signal, "SIGKILL", r.stderr);
    stats.kills++, stats.atWrites++;
    await complete(runDir);
    await expectIdentical(runDir, reference);
  }
});

Deno.test("kill -9 at random moments, some twice: each folder resumes to the same bytes", async () => {
  let seed = 20261201;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let trial = 0; trial < 16; trial++) {
    const runDir = `${dir}/random-${trial}`;
    for (let kill = 0; kill < (trial % 3 === 0 ? 2 : 1); kill++) {
      const child = train((await continuing(runDir)).args);
      const done = finished(child);
      await new Promise((resolve) => setTimeout(resolve, random() * runMs));
      try {
        child.kill("SIGKILL");
        stats.kills++, stats.random++;
      } catch {
        // it had already exited
      }
      await done;
    }
    await complete(runDir);
    await expectIdentical(runDir, reference);
  }
  console.log(
    `kill test: ${stats.kills} kills (${stats.atWrites} at write steps, ${stats.random} at random moments); ` +
      `${stats.resumed} resumed, ${stats.restarted} restarted (killed before config.json), ` +
      `${stats.complete} already complete; ${stats.identical} folders byte-identical to the uninterrupted run`,
  );
});
