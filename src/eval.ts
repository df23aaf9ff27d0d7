// `deno task eval --checkpoint CKPT`: test loss and accuracy of a timm-named checkpoint (ours or
// PyTorch's), per-class accuracy and the confusion matrix; --predictions writes
// index,label,pred,logit_0,…,logit_9 per test record, in file order; --report FILE.html the report's
// test sections (src/report/).
import { EVAL_USAGE, type EvalOptions, parseEvalArgs, UsageError } from "./options.ts";
import { selectBackend } from "./select_backend.ts";
import { ConvMixer } from "./model.ts";
import { loadCheckpoint, loadStateDict } from "./checkpoint.ts";
import { CLASS_NAMES, holdOut, openCifar } from "./data/cifar.ts";
import { BatchLoader } from "./data/loader.ts";
import { type EvalResult, evaluate } from "./evaluate.ts";
import { analyseLogits, analysisText, argmax, type TestAnalysis } from "./report/analysis.ts";
import { machineFacts, writeCheckpointReport } from "./report/report.ts";

export async function evalCheckpoint(options: EvalOptions): Promise<EvalResult & { analysis: TestAnalysis }> {
  const checkpoint = await loadCheckpoint(options.checkpoint);
  if (checkpoint.config.classes !== 10) {
    throw new Error(
      `${options.checkpoint}: head has ${checkpoint.config.classes} classes, CIFAR-10 needs 10`,
    );
  }
  const data = await openCifar(options.data);
  const split = options.val ? holdOut(data.train, options.val).val! : data.test;
  const { backend, reason } = await selectBackend(options.backend);
  console.error(`backend: ${backend.description} (${reason})`);
  const loader = await BatchLoader.create(split, {
    batch: Math.min(options.batch, split.count),
    shuffle: false,
    seed: 0,
    augment: null,
    dropLast: false,
  });
  try {
    const model = new ConvMixer(backend, checkpoint.config, Math.min(options.batch, split.count));
    loadStateDict(model, checkpoint.state);
    const result = await evaluate(model, loader, split.count, {
      keepLogits: true,
      progress: true,
      tta: options.tta,
    });
    const analysis = analyseLogits(result.logits!, split.labels, checkpoint.config.classes);
    if (options.predictions) await writePredictions(options.predictions, split.labels, result.logits!);
    if (options.report) {
      await writeCheckpointReport(options.report, {
        checkpoint: options.checkpoint,
        config: checkpoint.config,
        metadata: checkpoint.metadata,
        machine: machineFacts(backend.description, reason),
        test: split,
        analysis,
      });
    }
    return { ...result, analysis };
  } finally {
    loader.close();
    backend.dispose();
  }
}

async function writePredictions(path: string, labels: Uint8Array, logits: Float32Array) {
  const classes = logits.length / labels.length;
  const header = ["index", "label", "pred", ...Array.from({ length: classes }, (_, c) => `logit_${c}`)];
  const lines = [header.join(",")];
  for (let i = 0; i < labels.length; i++) {
    const row = logits.subarray(i * classes, (i + 1) * classes);
    lines.push(`${i},${labels[i]},${argmax(row)},${Array.from(row, (x) => x.toPrecision(7)).join(",")}`);
  }
  const temporary = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(temporary, lines.join("\n") + "\n");
  await Deno.rename(temporary, path);
}

if (import.meta.main) {
  try {
    const options = parseEvalArgs(Deno.args);
    if (options.help) {
      console.log(EVAL_USAGE);
      Deno.exit(0);
    }
    const result = await evalCheckpoint(options);
    console.log(
      `${options.val ? "validation" : "test"} loss ${result.loss.toFixed(4)} accuracy ${
        (100 * result.accuracy).toFixed(2)
      }% (${result.count} images)`,
    );
    console.log(analysisText(result.analysis, CLASS_NAMES));
    Deno.exit(0);
  } catch (e) {
    console.error(`eval: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
