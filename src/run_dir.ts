// A run folder, written by one process at a time and resumable after a kill at any instant:
//   lock                    the writer's pid; held with flock, so a dead writer's lock is free again
//   config.json             the run config (src/run_config.ts)
//   metrics.jsonl           one line per finished epoch (fsynced before the save that counts it)
//   optim-<step>.safetensors  AdamW moments at that step
//   last.safetensors        the model with timm's names, the position, and the name of its optim file
// A save writes optim-<step>.safetensors, then replaces last.safetensors: that rename is the commit.
// Until it, the previous last.safetensors and the optim file it names stand; after it, the new pair.
// Every file goes through a temporary, fsync and rename (src/atomic_file.ts). --resume loads the pair
// last.safetensors names, removes everything else a save leaves (temporaries, older optim files) and
// drops metrics lines written after the save.
import { exists } from "./fs.ts";
import { loadCheckpoint, saveCheckpoint, type StateDict } from "./checkpoint.ts";
import { readSafetensors, type SafeTensor, writeSafetensors } from "./safetensors.ts";
import { syncDirectory, TEMPORARY_MARK, writeAll, writeFileAtomic, writeStep } from "./atomic_file.ts";
import { parseRunConfig, type RunConfig } from "./run_config.ts";
import { UsageError } from "./options.ts";

export interface Position {
  step: number; // optimizer steps done
  epoch: number; // current epoch (0-based); also the number of finished epochs
  batchInEpoch: number; // batches of `epoch` already done
}

/** A save read back: weights, moments, position and the current epoch's metric sums so far. */
export interface Saved {
  position: Position;
  state: StateDict;
  optimizer: StateDict;
  epochMetrics: Float32Array;
  /** The file the moments came from: what resume must keep. */
  optimizerFile: string;
}

const MODEL = "last.safetensors";
const OPTIMIZER = /^optim-\d+\.safetensors$/;
const OLD_OPTIMIZER = "last.optim.safetensors"; // the layout before optim-<step> files

export class RunDir {
  #wroteConfig: boolean;
  #savedStep: number | null;

  private constructor(
    readonly path: string,
    readonly config: RunConfig | null,
    readonly saved: Saved | null,
    private readonly lock: Deno.FsFile,
    private readonly created: boolean,
  ) {
    this.#savedStep = saved?.position.step ?? null;
    this.#wroteConfig = config !== null;
  }

  /** Locks a folder for a new run (making it if needed); refuses one that holds a run. */
  static async create(path: string): Promise<RunDir> {
    const holdsRun = () => exists(`${path}/config.json`);
    const refusal =
      `--out ${path} already holds a run: continue it with --resume ${path}, or pick another --out`;
    if (holdsRun()) throw new UsageError(refusal);
    const created = !exists(path);
    await Deno.mkdir(path, { recursive: true });
    let lock: Deno.FsFile;
    try {
      lock = await takeLock(path);
    } catch (e) {
      if (created) await Deno.remove(path).catch(() => {});
      throw e;
    }
    const runDir = new RunDir(path, null, null, lock, created);
    if (holdsRun()) { // a run started here between the check and the lock
      await runDir.close();
      throw new UsageError(refusal);
    }
    return runDir;
  }

  /** Locks a run folder, reads its config and last save, and clears what an interrupted save left. */
  static async resume(path: string): Promise<RunDir> {
    const configPath = `${path}/config.json`;
    if (!exists(configPath)) throw new UsageError(`--resume ${path}: no ${configPath} (not a run directory)`);
    const lock = await takeLock(path);
    try {
      const config = parseRunConfig(configPath, await Deno.readTextFile(configPath));
      const saved = exists(`${path}/${MODEL}`) ? await readSave(path) : null;
      await removeLeftovers(path, saved?.optimizerFile ?? null, true);
      await trimMetrics(path, saved?.position.epoch ?? 0);
      if (!saved) console.error(`resume: ${path} holds no save yet; starting from step 0`);
      return new RunDir(path, config, saved, lock, false);
    } catch (e) {
      await releaseLock(lock);
      throw e;
    }
  }

  async writeConfig(config: RunConfig): Promise<void> {
    const path = `${this.path}/config.json`;
    try {
      await writeFileAtomic(path, new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"));
    } catch (e) {
      throw new Error(`${path}: cannot write (${(e as Error).message}); free space, then run again`);
    }
    this.#wroteConfig = true;
  }

  /** Rewrites report.html (src/report/report.ts renders it); a full disk fails as every write here. */
  async writeReport(html: string): Promise<void> {
    const bytes = new TextEncoder().encode(html);
    await this.#writing(() => writeFileAtomic(`${this.path}/report.html`, bytes, { durable: false }));
  }

  /** Appends one epoch's line, fsynced, so the save that follows can count it. */
  async appendMetrics(line: Record<string, unknown>): Promise<void> {
    const path = `${this.path}/metrics.jsonl`;
    await this.#writing(async () => {
      try {
        const file = await Deno.open(path, { append: true, create: true });
        try {
          await writeAll(file, new TextEncoder().encode(JSON.stringify(line) + "\n"));
          writeStep();
          await file.sync();
        } finally {
          file.close();
        }
        await syncDirectory(this.path);
      } catch (e) {
        throw new Error(`${path}: cannot append (${(e as Error).message})`);
      }
    });
  }

  /**
   * Saves the model, its optimizer moments, `at` and the current epoch's metric sums as one atomic
   * step. Non-finite weights, BN statistics or moments are never saved: the previous save stands.
   */
  async save(
    state: StateDict,
    moments: StateDict,
    at: Position,
    perEpoch: number,
    epochMetrics: Float32Array,
  ): Promise<void> {
    const bad = firstNonFinite(state) ?? firstNonFinite(moments);
    if (bad) {
      throw new Error(
        `non-finite values in ${bad} at step ${at.step}, not saved: ${this.#standing()}; ` +
          `lower --lr or set --clip-norm, then --resume ${this.path} --lr X`,
      );
    }
    const optimizerFile = optimizerFileOf(at.step);
    const tensors = new Map<string, SafeTensor>();
    for (const [name, { shape, data }] of moments) tensors.set(name, { dtype: "F32", shape, data });
    await this.#writing(async () => {
      await writeSafetensors(`${this.path}/${optimizerFile}`, tensors, { step: String(at.step) });
      await saveCheckpoint(`${this.path}/${MODEL}`, state, {
        step: String(at.step),
        epoch: String(at.epoch),
        batch_in_epoch: String(at.batchInEpoch),
        batches_per_epoch: String(perEpoch),
        epoch_metrics: JSON.stringify(Array.from(epochMetrics)),
        optimizer: optimizerFile,
      });
    });
    this.#savedStep = at.step;
    await removeLeftovers(this.path, optimizerFile, false);
  }

  /** Releases the lock; a folder this run made and never wrote a config into is removed. */
  async close(): Promise<void> {
    if (this.#wroteConfig) return await releaseLock(this.lock);
    this.lock.close();
    await Deno.remove(`${this.path}/lock`).catch(() => {});
    if (this.created) await Deno.remove(this.path).catch(() => {});
  }

  #standing(): string {
    return this.#savedStep === null
      ? "nothing is saved yet (--resume starts from step 0)"
      : `the save at step ${this.#savedStep} stands`;
  }

  /** Runs a write; a failure (a full disk) says what still stands and how to go on. */
  async #writing(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (e) {
      throw new Error(`${(e as Error).message}; ${this.#standing()}: free space, then --resume ${this.path}`);
    }
  }
}

function optimizerFileOf(step: number): string {
  return `optim-${step}.safetensors`;
}

async function readSave(path: string): Promise<Saved> {
  const modelPath = `${path}/${MODEL}`;
  const { state, metadata } = await loadCheckpoint(modelPath);
  const count = (key: string) => {
    const value = Number(metadata[key]);
    if (metadata[key] === undefined || !Number.isSafeInteger(value) || value < 0) {
      throw new Error(
        `${modelPath}: metadata '${key}' is ${metadata[key]}, not a count (not a save of a run)`,
      );
    }
    return value;
  };
  const position = { step: count("step"), epoch: count("epoch"), batchInEpoch: count("batch_in_epoch") };
  const optimizerFile = metadata.optimizer ?? OLD_OPTIMIZER;
  if (!OPTIMIZER.test(optimizerFile) && optimizerFile !== OLD_OPTIMIZER) {
    throw new Error(
      `${modelPath}: metadata 'optimizer' ${JSON.stringify(optimizerFile)} is not an optim file name`,
    );
  }
  const moments = await readSafetensors(`${path}/${optimizerFile}`);
  if (moments.metadata.step !== metadata.step) {
    throw new Error(
      `${path}: ${optimizerFile} is from step ${moments.metadata.step}, ${MODEL} from ${metadata.step}`,
    );
  }
  const optimizer: StateDict = new Map();
  for (const [name, t] of moments.tensors) {
    if (t.dtype !== "F32") throw new Error(`${path}/${optimizerFile}: ${name} is ${t.dtype}, expected F32`);
    optimizer.set(name, { shape: t.shape, data: t.data as Float32Array });
  }
  const sums = metadata.epoch_metrics === undefined ? [0, 0, 0] : JSON.parse(metadata.epoch_metrics);
  if (!Array.isArray(sums) || sums.length !== 3 || !sums.every(Number.isFinite)) {
    throw new Error(`${modelPath}: metadata 'epoch_metrics' ${metadata.epoch_metrics} is not 3 numbers`);
  }
  return { position, state, optimizer, epochMetrics: Float32Array.from(sums), optimizerFile };
}

/** The name of the first tensor holding a NaN or an infinity, or null. */
function firstNonFinite(state: StateDict): string | null {
  for (const [name, { data }] of state) {
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return name;
  }
  return null;
}

/** Removes temporaries and optim files other than `keep`: what an interrupted or older save left. */
async function removeLeftovers(path: string, keep: string | null, report: boolean): Promise<void> {
  const leftovers: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    const isOptimizer = OPTIMIZER.test(entry.name) || entry.name === OLD_OPTIMIZER;
    if (entry.name.includes(TEMPORARY_MARK) || (isOptimizer && entry.name !== keep)) {
      leftovers.push(entry.name);
    }
  }
  for (const name of leftovers) {
    await Deno.remove(`${path}/${name}`);
    writeStep();
  }
  if (report && leftovers.length > 0) {
    console.error(`resume: removed ${leftovers.sort().join(", ")} (left by an interrupted save)`);
  }
}

/** Keeps metrics.jsonl's first `lines` lines (the epochs the save counts); later ones are replayed. */
async function trimMetrics(path: string, lines: number): Promise<void> {
  const metricsPath = `${path}/metrics.jsonl`;
  if (!exists(metricsPath)) return;
  const text = await Deno.readTextFile(metricsPath);
  const kept = text.split("\n").slice(0, lines).map((line) => line + "\n").join("");
  if (kept.length >= text.length) return;
  await writeFileAtomic(metricsPath, new TextEncoder().encode(kept));
  const dropped = text.slice(kept.length).trim().split("\n").length;
  console.error(
    `resume: dropped ${dropped} metrics.jsonl line(s) written after the save (trained again now)`,
  );
}

/** Takes the run folder's lock (flock, so it dies with its process) and writes our pid into it. */
async function takeLock(path: string): Promise<Deno.FsFile> {
  const lockPath = `${path}/lock`;
  const file = await Deno.open(lockPath, { read: true, write: true, create: true }).catch((e) => {
    throw new Error(`${lockPath}: cannot create the run folder's lock (${e.message})`);
  });
  if (!(await file.tryLock(true))) {
    file.close();
    const holder = (await Deno.readTextFile(lockPath).catch(() => "")).trim() || "unknown";
    throw new UsageError(`${path} is in use by another train (pid ${holder}); one writer per run folder`);
  }
  const previous = new TextDecoder().decode(await Deno.readFile(lockPath)).trim();
  if (previous !== "") {
    console.error(`${path}: taking over the lock of pid ${previous}, which is no longer running`);
  }
  try {
    await file.truncate(0);
    await writeAll(file, new TextEncoder().encode(`${Deno.pid}\n`));
    await file.sync();
  } catch (e) {
    await Deno.remove(lockPath).catch(() => {}); // ours: we hold it
    file.close();
    throw new Error(`${lockPath}: cannot write the run folder's lock (${(e as Error).message})`);
  }
  return file;
}

/** Empties the lock file (an empty one is free, not stale) and drops the flock. */
async function releaseLock(lock: Deno.FsFile): Promise<void> {
  await lock.truncate(0).catch(() => {});
  lock.close();
}
