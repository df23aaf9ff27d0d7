// Shared by the end-to-end tests: the real CIFAR-10 archive (a failure under CI when missing, a
// skip otherwise), real-image subsets of it in the official layout, and running the commands as
// users do.
import { openCifar } from "../src/data/cifar.ts";
import { RECORD, writeTarGz } from "./make_cifar.ts";

/** A tiny ConvMixer on the WASM backend: the end-to-end tests' model. */
export const TINY = [
  "--backend",
  "wasm",
  "--hdim",
  "32",
  "--depth",
  "2",
  "--kernel",
  "3",
  "--patch",
  "4",
  "--batch",
  "50",
];

export const REAL_DATA = Deno.env.get("CIFAR10_DATA") ?? "data/cifar-10-binary.tar.gz";

/** Whether the real archive is here; throws under CI when it is not. */
export function realDataPresent(test: string): boolean {
  let present = false;
  try {
    present = Deno.statSync(REAL_DATA).isFile;
  } catch { /* missing */ }
  if (!present && Deno.env.get("CI")) {
    throw new Error(`CI: the real CIFAR-10 archive ${REAL_DATA} is missing`);
  }
  if (!present) console.error(`${test}: ${REAL_DATA} not found, skipping the real-data tests`);
  return present;
}

/** A real-image subset at `path`: `perFile` records per training file, the first `test` test records. */
export async function writeRealSubset(path: string, perFile: number, test: number): Promise<void> {
  const { train, test: testSplit } = await openCifar(REAL_DATA);
  const records = (split: typeof train, start: number, count: number) => {
    const out = new Uint8Array(count * RECORD);
    for (let i = 0; i < count; i++) {
      out[i * RECORD] = split.labels[start + i];
      out.set(split.images.subarray((start + i) * 3072, (start + i + 1) * 3072), i * RECORD + 1);
    }
    return out;
  };
  const files: Record<string, Uint8Array> = {};
  for (let n = 1; n <= 5; n++) files[`data_batch_${n}.bin`] = records(train, (n - 1) * 10000, perFile);
  files["test_batch.bin"] = records(testSplit, 0, test);
  writeTarGz(path, files);
}

/** Runs `src/<script>.ts` as `deno task <script>` does; `env` replaces the environment when given. */
export async function run(script: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `src/${script}.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
    ...(env ? { env, clearEnv: true } : {}),
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}
