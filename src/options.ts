// Command-line flags of `task train` and `task eval`. The flag names are a contract: scripts
// outside the repo use them. Parsing is node:util's parseArgs (the Deno std library lives on JSR).
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import type { PRESETS, Recipe } from "./recipe.ts";
import type { TestTimeAugmentation } from "./evaluate.ts";
import { OPTIMIZER_KINDS } from "./backend.ts";
import { lowResolutionProblem, MIN_CROP_FRACTION } from "./low_resolution.ts";

export type BackendChoice = "auto" | "wasm" | "webgpu";

export interface TrainOptions {
  data?: string;
  backend: BackendChoice;
  preset?: keyof typeof PRESETS;
  /** Flags given explicitly; the rest come from the preset chosen for the backend. */
  recipe: Partial<Recipe>;
  steps?: number;
  /** The run's length in optimizer steps, scheduled as a --time run (replays one on another machine). */
  totalSteps?: number;
  /** The one-cycle's peak step under --total-steps (a --time run's config.json has it). */
  peakStep?: number;
  /** Training images held out (the last ones, in the official order) for validation. */
  val: number;
  shuffle: boolean;
  seed: number;
  init?: string;
  resume?: string;
  out?: string;
  workers?: number;
  precision: "f32" | "f16";
  /** Append a line to RUNDIR/steps.jsonl every this many steps. */
  logEvery?: number;
  help: boolean;
  /** The flags given on the command line (without "--"), so --resume can name the ones it ignores. */
  flagsGiven: string[];
}

export class UsageError extends Error {}

const TRAIN_FLAGS = {
  data: { type: "string" },
  backend: { type: "string" },
  preset: { type: "string" },
  epochs: { type: "string" },
  steps: { type: "string" },
  "total-steps": { type: "string" },
  "peak-step": { type: "string" },
  batch: { type: "string" },
  hdim: { type: "string" },
  depth: { type: "string" },
  kernel: { type: "string" },
  patch: { type: "string" },
  lr: { type: "string" },
  wd: { type: "string" },
  optimizer: { type: "string" },
  schedule: { type: "string" },
  "clip-norm": { type: "string" },
  scale: { type: "string" },
  "ra-n": { type: "string" },
  "ra-m": { type: "string" },
  jitter: { type: "string" },
  reprob: { type: "string" },
  translate: { type: "string" },
  augment: { type: "string" },
  time: { type: "string" },
  val: { type: "string" },
  "label-smoothing": { type: "string" },
  ema: { type: "string" },
  tta: { type: "string" },
  flip: { type: "string" },
  "stem-init": { type: "string" },
  "crop-size": { type: "string" },
  "crop-fraction": { type: "string" },
  "no-shuffle": { type: "boolean" },
  seed: { type: "string" },
  init: { type: "string" },
  resume: { type: "string" },
  out: { type: "string" },
  workers: { type: "string" },
  precision: { type: "string" },
  "log-every": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export const TRAIN_USAGE = `Usage: deno task train [flags]
  --data PATH            CIFAR-10 binary .tar.gz or extracted folder (default data/cifar-10-binary.tar.gz,
                         downloaded on first use)
  --backend B            auto | wasm | webgpu (default auto: a real GPU → webgpu, else wasm)
  --preset P             cpu | official (default: official on a GPU, cpu on the CPU)
  --time D               time budget of the whole command (90s, 15m, 1h; the CPU default is 15m): the run
                         measures its step time in its first steps and fixes its length to end in time
                         (cut short if the machine slows down later)
  --epochs N --steps N   epochs of the schedule (instead of --time); stop after N optimizer steps
  --total-steps N [--peak-step P]
                         the run's length in optimizer steps, scheduled as --time schedules it, the lr
                         peaking at step P (default 2/5 of N); a --time run writes both into config.json
                         (totalSteps, peakStep): these replay it anywhere, byte for byte, unless it was cut
  --val N                hold out the last N training images for validation (evaluated every epoch)
  --batch N --hdim N --depth N --kernel K --patch P
  --lr X (lr_max) --wd X --optimizer adamw|sgd|nesterov --schedule onecycle|constant --clip-norm X (0 = off)
  --scale S --ra-n N --ra-m M --jitter X --reprob P --augment none
  --translate PX --flip random|alternate
  --label-smoothing E --ema DECAY (0 = off) --tta none|flip|flip-translate (the CPU default: six views,
                         flip's two for a --time under 10m)
  --stem-init default|whiten
  --crop-size S --crop-fraction F
                         train the first F of the steps (0.4 to 1, default 0.5; never ending before the lr
                         peak) on random S×S crops (0 = off), the rest on whole images
  --no-shuffle --seed N --precision f32|f16 (f16: WebGPU with shader-f16)
  --workers N            compute threads of the WASM backend (default: every core)
  --init CKPT            start from these weights (timm-named safetensors)
  --resume RUNDIR        continue a run from its last checkpoint
  --out RUNDIR           where config.json, metrics.jsonl, report.html and last.safetensors go
                         (default runs/<time>)
  --log-every N          also write RUNDIR/steps.jsonl: loss, accuracy, lr, images/s every N steps`;

function parseFlags<T extends ParseArgsOptionsConfig>(args: string[], options: T) {
  return parseFlagsAndPaths(args, options, false).values;
}

function parseFlagsAndPaths<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  allowPositionals = true,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (e) {
    const message = (e as Error).message.replace(/\. To specify a positional.*$/, "");
    throw new UsageError(`${message} (see --help)`);
  }
}

type Check = { min?: number; max?: number; integer?: boolean; minExclusive?: boolean };

function number(flag: string, value: string | undefined, check: Check): number | undefined {
  if (value === undefined) return undefined;
  const x = Number(value);
  const bad = (why: string) => new UsageError(`--${flag} ${value}: ${why}`);
  if (value.trim() === "" || !Number.isFinite(x)) throw bad("not a number");
  if (check.integer && !Number.isInteger(x)) throw bad("must be an integer");
  if (check.min !== undefined && (check.minExclusive ? x <= check.min : x < check.min)) {
    throw bad(`must be ${check.minExclusive ? ">" : "≥"} ${check.min}`);
  }
  if (check.max !== undefined && x > check.max) throw bad(`must be ≤ ${check.max}`);
  return x;
}

/** A duration such as 90s, 15m, 1h or 1h30m, in seconds. */
function duration(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parts = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(value.trim());
  const seconds = parts
    ? 3600 * Number(parts[1] ?? 0) + 60 * Number(parts[2] ?? 0) + Number(parts[3] ?? 0)
    : 0;
  if (!parts || value.trim() === "" || !(seconds > 0)) {
    throw new UsageError(`--${flag} ${value}: not a duration (e.g. 90s, 15m, 1h)`);
  }
  return seconds;
}

function choice<T extends string>(
  flag: string,
  value: string | undefined,
  allowed: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) {
    throw new UsageError(`--${flag} ${value}: must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

export function parseTrainArgs(args: string[]): TrainOptions {
  const v = parseFlags(args, TRAIN_FLAGS);
  const int = (flag: keyof typeof TRAIN_FLAGS, min: number, max = Number.MAX_SAFE_INTEGER) =>
    number(flag, v[flag] as string | undefined, { min, max, integer: true });
  const real = (flag: keyof typeof TRAIN_FLAGS, check: Check) =>
    number(flag, v[flag] as string | undefined, check);
  if (v.augment !== undefined && v.augment !== "none") {
    throw new UsageError(`--augment ${v.augment}: the only value is 'none' (augmentation is on by default)`);
  }
  const kernel = int("kernel", 1, 31);
  if (kernel !== undefined && kernel % 2 === 0) throw new UsageError(`--kernel ${kernel}: must be odd`);
  const patch = int("patch", 1, 32);
  const epochs = int("epochs", 1, 100000);
  const time = duration("time", v.time);
  const totalSteps = int("total-steps", 1);
  const lengths = [epochs && "--epochs", time && "--time", totalSteps && "--total-steps"].filter(Boolean);
  if (lengths.length > 1) throw new UsageError(`${lengths.join(" and ")}: give one of them`);
  const peakStep = int("peak-step", 1);
  if (peakStep !== undefined && totalSteps === undefined) {
    throw new UsageError("--peak-step: only with --total-steps (a --time run chooses its own)");
  }
  if (peakStep !== undefined && peakStep >= totalSteps!) {
    throw new UsageError(`--peak-step ${peakStep}: must be below --total-steps ${totalSteps}`);
  }
  const recipe: Partial<Recipe> = {
    hdim: int("hdim", 1, 4096),
    depth: int("depth", 0, 256),
    kernel,
    patch,
    batch: int("batch", 1, 65536),
    epochs,
    time: epochs !== undefined || totalSteps !== undefined ? 0 : time,
    lr: real("lr", { min: 0, minExclusive: true, max: 100 }),
    wd: real("wd", { min: 0, max: 10 }),
    optimizer: choice("optimizer", v.optimizer, OPTIMIZER_KINDS),
    schedule: choice("schedule", v.schedule, ["onecycle", "constant"] as const),
    clipNorm: real("clip-norm", { min: 0 }),
    scale: real("scale", { min: 0, minExclusive: true, max: 1 }),
    raN: int("ra-n", 0, 14),
    raM: int("ra-m", 0, 30),
    jitter: real("jitter", { min: 0, max: 1 }),
    reprob: real("reprob", { min: 0, max: 1 }),
    translate: int("translate", 0, 16),
    augment: v.augment === "none" ? false : undefined,
    labelSmoothing: real("label-smoothing", { min: 0, max: 1 }),
    ema: real("ema", { min: 0, max: 1 }),
    tta: choice("tta", v.tta, ["none", "flip", "flip-translate"] as const),
    flip: choice("flip", v.flip, ["random", "alternate"] as const),
    stemInit: choice("stem-init", v["stem-init"], ["default", "whiten"] as const),
    cropSize: int("crop-size", 0, 31),
    cropFraction: real("crop-fraction", { min: MIN_CROP_FRACTION, max: 1 }),
  };
  if (recipe.ema === 1) throw new UsageError("--ema 1: the average would never move (use a decay below 1)");
  // Against --patch here, so that the line comes first; against a preset's patch in src/train.ts.
  const { cropSize = 0, cropFraction = 1, patch: givenPatch = 1 } = recipe;
  const cropProblem = lowResolutionProblem({ cropSize, cropFraction, patch: givenPatch });
  if (cropProblem) throw new UsageError(`--${cropProblem}`);
  for (const key of Object.keys(recipe) as (keyof Recipe)[]) {
    if (recipe[key] === undefined) delete recipe[key];
  }
  return {
    data: v.data,
    backend: choice("backend", v.backend, ["auto", "wasm", "webgpu"] as const) ?? "auto",
    preset: choice("preset", v.preset, ["cpu", "official"] as const),
    recipe,
    steps: int("steps", 1),
    totalSteps,
    peakStep,
    val: int("val", 0, 49999) ?? 0,
    shuffle: !v["no-shuffle"],
    seed: int("seed", 0, 2 ** 32 - 1) ?? 0,
    init: v.init,
    resume: v.resume,
    out: v.out,
    workers: int("workers", 1, 64),
    precision: choice("precision", v.precision, ["f32", "f16"] as const) ?? "f32",
    logEvery: int("log-every", 1),
    help: v.help ?? false,
    flagsGiven: Object.keys(v),
  };
}

export interface EvalOptions {
  checkpoint: string;
  data?: string;
  backend: BackendChoice;
  batch: number;
  predictions?: string;
  tta: TestTimeAugmentation;
  /** Score the last `val` training images (a run's --val split) instead of the test set. */
  val?: number;
  report?: string;
  help: boolean;
}

export const EVAL_USAGE = `Usage: deno task eval --checkpoint CKPT [--data PATH] [--backend auto|wasm|webgpu]
                      [--batch N] [--predictions FILE.csv] [--report FILE.html]
                      [--tta none|flip|flip-translate] [--val N]
  Prints test loss and accuracy, per-class accuracy and the confusion matrix; --predictions writes
  index,label,pred,logit_0..logit_9 per test record; --report writes an HTML report of the evaluation.
  --tta flip scores the mean of each image's and its mirror's logits (and --predictions writes those);
  flip-translate adds both views shifted by one pixel each way diagonally (reflect padding; 6 views);
  --val N scores the last N training images instead (the validation split of a run trained with --val N).`;

export function parseEvalArgs(args: string[]): EvalOptions {
  const v = parseFlags(
    args,
    {
      checkpoint: { type: "string" },
      data: { type: "string" },
      backend: { type: "string" },
      batch: { type: "string" },
      predictions: { type: "string" },
      tta: { type: "string" },
      val: { type: "string" },
      report: { type: "string" },
      help: { type: "boolean", short: "h" },
    } as const,
  );
  if (!v.help && v.checkpoint === undefined) {
    throw new UsageError("--checkpoint CKPT is required (see --help)");
  }
  return {
    checkpoint: v.checkpoint ?? "",
    data: v.data,
    backend: choice("backend", v.backend, ["auto", "wasm", "webgpu"] as const) ?? "auto",
    batch: number("batch", v.batch, { min: 1, max: 65536, integer: true }) ?? 200, // ConvMixer-256/8 fits wasm32
    predictions: v.predictions,
    tta: choice("tta", v.tta, ["none", "flip", "flip-translate"] as const) ?? "none",
    val: number("val", v.val, { min: 1, max: 49999, integer: true }),
    report: v.report,
    help: v.help ?? false,
  };
}

export interface PredictOptions {
  checkpoint: string;
  images: string[];
  backend: BackendChoice;
  json: boolean;
  help: boolean;
}

export const PREDICT_USAGE =
  `Usage: deno task predict --checkpoint CKPT [--backend auto|wasm|webgpu] [--json] IMAGE…
  Classifies PNG and JPEG files of any size (reduced to 32×32 by area averaging): the top 3 classes with
  their probabilities per file; --json prints one JSON line per file. Exits 1 if any file failed.`;

export function parsePredictArgs(args: string[]): PredictOptions {
  const { values: v, positionals } = parseFlagsAndPaths(
    args,
    {
      checkpoint: { type: "string" },
      backend: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    } as const,
  );
  if (!v.help && v.checkpoint === undefined) {
    throw new UsageError("--checkpoint CKPT is required (see --help)");
  }
  if (!v.help && positionals.length === 0) throw new UsageError("no image files given (see --help)");
  return {
    checkpoint: v.checkpoint ?? "",
    images: positionals,
    backend: choice("backend", v.backend, ["auto", "wasm", "webgpu"] as const) ?? "auto",
    json: v.json ?? false,
    help: v.help ?? false,
  };
}
