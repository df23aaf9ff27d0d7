// `deno task predict --checkpoint CKPT IMAGE…`: classifies the user's own PNG and JPEG files. Each is
// reduced to a 32×32 CIFAR-10 record (src/image.ts), then normalised by the same kernel that prepares
// evaluation batches (src/data/augment.ts), so a test image saved as a file gets the class `task eval`
// gives its record. A file that cannot be read or decoded gets one line; the others are still classified.
import { parsePredictArgs, PREDICT_USAGE, type PredictOptions, UsageError } from "./options.ts";
import { selectBackend } from "./select_backend.ts";
import { ConvMixer } from "./model.ts";
import { loadCheckpoint, loadStateDict } from "./checkpoint.ts";
import { Augmenter } from "./data/augment.ts";
import { CLASS_NAMES, IMAGE_BYTES } from "./data/cifar.ts";
import { decodeImage, toCifarRecord } from "./image.ts";
import { softmax } from "./report/analysis.ts";

const MAX_BATCH = 64;

/**
 * Class probabilities [count × classes] of `records` (count CIFAR-10 records of 3072 bytes: R, G, B
 * planes of 32×32), from the model in eval mode. Also adds to `model.metrics` (labels are taken as 0).
 */
export async function predict(model: ConvMixer, records: Uint8Array): Promise<Float32Array> {
  const count = records.length / IMAGE_BYTES;
  if (!Number.isInteger(count)) {
    throw new Error(`predict: ${records.length} bytes is not a whole number of records`);
  }
  const { classes } = model.config;
  const batch = Math.min(count, model.maxBatch);
  const augmenter = await Augmenter.create(Math.max(1, batch));
  const probabilities = new Float32Array(count * classes);
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const images = augmenter.runPlans(records.subarray(start * IMAGE_BYTES, (start + n) * IMAGE_BYTES), null);
    const logits = await model.backend.read(
      model.forward(model.setBatch(images, new Float32Array(n)), false),
    );
    for (let i = 0; i < n; i++) {
      probabilities.set(softmax(logits.subarray(i * classes, (i + 1) * classes)), (start + i) * classes);
    }
  }
  return probabilities;
}

/** The k most probable classes of one row of probabilities, most probable first. */
export function topClasses(row: ArrayLike<number>, k: number): { class: number; probability: number }[] {
  return Array.from(row, (probability, c) => ({ class: c, probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}

/** The CIFAR-10 record of an image file; throws one line (without the path) when it cannot. */
export async function readImageRecord(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    if ((await Deno.stat(path)).isDirectory) throw new Error("is a directory, not an image file");
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error("no such file");
    throw e;
  }
  return toCifarRecord(decodeImage(bytes));
}

type Loaded = { file: string; record: Uint8Array } | { file: string; error: string };
type Outcome = { file: string; top: { class: string; probability: number }[] } | {
  file: string;
  error: string;
};

/** Classifies the files; prints one line per file in the order given. Returns how many failed. */
export async function predictFiles(options: PredictOptions): Promise<number> {
  const checkpoint = await loadCheckpoint(options.checkpoint);
  const loaded = await Promise.all(options.images.map(async (file): Promise<Loaded> => {
    try {
      return { file, record: await readImageRecord(file) };
    } catch (e) {
      return { file, error: (e as Error).message };
    }
  }));
  const records = loaded.flatMap((f) => ("record" in f ? [f.record] : []));
  const probabilities = records.length > 0
    ? await classify(options, checkpoint, records)
    : new Float32Array();
  const { classes } = checkpoint.config;
  let next = 0; // the row of the next decoded file
  const outcomes: Outcome[] = loaded.map((f) => {
    if ("error" in f) return f;
    const row = probabilities.subarray(next * classes, ++next * classes);
    const top = topClasses(row, 3).map((t) => ({
      class: CLASS_NAMES[t.class] ?? `class ${t.class}`,
      probability: t.probability,
    }));
    return { file: f.file, top };
  });
  for (const outcome of outcomes) print(outcome, options.json);
  return outcomes.filter((o) => "error" in o).length;
}

async function classify(
  options: PredictOptions,
  checkpoint: Awaited<ReturnType<typeof loadCheckpoint>>,
  records: Uint8Array[],
): Promise<Float32Array> {
  const { backend, reason } = await selectBackend(options.backend);
  console.error(`backend: ${backend.description} (${reason})`);
  try {
    const model = new ConvMixer(backend, checkpoint.config, Math.min(MAX_BATCH, records.length));
    loadStateDict(model, checkpoint.state);
    const all = new Uint8Array(records.length * IMAGE_BYTES);
    records.forEach((record, i) => all.set(record, i * IMAGE_BYTES));
    return await predict(model, all);
  } finally {
    backend.dispose();
  }
}

function print(outcome: Outcome, json: boolean) {
  if (json) console.log(JSON.stringify(outcome));
  else if ("error" in outcome) console.error(`predict: ${outcome.file}: ${outcome.error}`);
  else {
    const top = outcome.top.map((t) => `${t.class} ${(100 * t.probability).toFixed(1)}%`);
    console.log(`${outcome.file}: ${top.join(", ")}`);
  }
}

if (import.meta.main) {
  try {
    const options = parsePredictArgs(Deno.args);
    if (options.help) {
      console.log(PREDICT_USAGE);
      Deno.exit(0);
    }
    const failed = await predictFiles(options);
    Deno.exit(failed > 0 ? 1 : 0);
  } catch (e) {
    console.error(`predict: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
