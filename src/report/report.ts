// The run report: one self-contained HTML file (inline SVG charts, inline PNG images, inline CSS, no
// script, nothing fetched) with the recipe and machine, the learning curves from metrics.jsonl (and
// steps.jsonl), and what the latest test evaluation says per class and per image. `task train`
// rewrites RUNDIR/report.html at every epoch end; `task eval --report FILE` writes the test sections.
import denoConfig from "../../deno.json" with { type: "json" };
import { type CifarSplit, CLASS_NAMES, IMAGE_BYTES } from "../data/cifar.ts";
import { recordToRgb, rgbToPng } from "../image.ts";
import type { ConvMixerConfig } from "../model.ts";
import { analyseLogits, type TestAnalysis } from "./analysis.ts";
import { barChart, heatmap, lineChart, type Series } from "./charts.ts";
import { writeFileAtomic } from "../atomic_file.ts";

/** One line of metrics.jsonl: numbers keyed by name (train_loss, test_acc, val_loss, lr, …). */
export type EpochLine = Record<string, number | boolean | undefined>;
/** One line of steps.jsonl (see src/step_log.ts). */
export type StepLine = Record<string, number>;

export interface ReportInput {
  title: string;
  /** Name/value rows: what ran, and where. */
  recipe: Record<string, unknown>;
  machine: Record<string, string>;
  epochs: EpochLine[];
  steps: StepLine[];
  /** The latest test evaluation: its analysis and the test records it ran on. */
  test?: { heading: string; analysis: TestAnalysis; images: Uint8Array };
}

/** The machine rows of a report: the backend (device, threads) and the software versions. */
export function machineFacts(backend: string, reason: string): Record<string, string> {
  return {
    backend,
    "chosen because": reason,
    "CPU cores": String(navigator.hardwareConcurrency),
    system: `${Deno.build.os} ${Deno.build.arch}`,
    versions: `${denoConfig.name} ${denoConfig.version}, Deno ${Deno.version.deno}, V8 ${Deno.version.v8}, ` +
      `TypeScript ${Deno.version.typescript}`,
  };
}

/**
 * RUNDIR/report.html's page, from the run's files and, when there is one, the latest test
 * evaluation's logits (without it the report has no test sections yet); RunDir.writeReport writes it.
 */
export async function renderRunReport(
  runDir: string,
  latest: { machine: Record<string, string>; test?: { split: CifarSplit; logits: Float32Array } },
): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(`${runDir}/config.json`));
  const epochs = await readJsonLines(`${runDir}/metrics.jsonl`) as EpochLine[];
  const steps = await readJsonLines(`${runDir}/steps.jsonl`) as StepLine[];
  return renderReport({
    title: `ConvMixer run ${runDir}`,
    recipe: { ...config.recipe, seed: config.seed, shuffle: config.shuffle, init: config.init },
    machine: latest.machine,
    epochs,
    steps,
    test: latest.test && {
      heading: `Test set after epoch ${epochs.at(-1)?.epoch ?? "?"}`,
      analysis: analyseLogits(latest.test.logits, latest.test.split.labels, CLASS_NAMES.length),
      images: latest.test.split.images,
    },
  });
}

/** Writes the report of one checkpoint's test evaluation (`task eval --report FILE`). */
export async function writeCheckpointReport(
  path: string,
  evaluated: {
    checkpoint: string;
    config: ConvMixerConfig;
    metadata: Record<string, string>;
    machine: Record<string, string>;
    test: CifarSplit;
    analysis: TestAnalysis;
  },
): Promise<void> {
  const { format: _, ...saved } = evaluated.metadata;
  const html = renderReport({
    title: `ConvMixer checkpoint ${evaluated.checkpoint}`,
    recipe: { ...evaluated.config, ...saved },
    machine: evaluated.machine,
    epochs: [],
    steps: [],
    test: { heading: "Test set", analysis: evaluated.analysis, images: evaluated.test.images },
  });
  await writeFileAtomic(path, new TextEncoder().encode(html), { durable: false });
}

/** The lines of a JSON-lines file; none if it does not exist. */
async function readJsonLines(path: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
}

export function renderReport(input: ReportInput): string {
  const sections = [
    `<h1>${escape(input.title)}</h1>`,
    `<p class="when">written ${new Date().toISOString().replace("T", " ").slice(0, 19)} UTC</p>`,
    `<div class="facts">${factTable("Recipe", input.recipe)}${factTable("Machine", input.machine)}</div>`,
  ];
  if (input.epochs.length > 0) {
    sections.push(section("Learning curves", curveCharts(input.epochs, input.steps)));
  }
  if (input.test) sections.push(testSection(input.test));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(input.title)}</title>
<style>${STYLE}</style></head>
<body>${sections.join("\n")}</body></html>
`;
}

const STYLE = `
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 20px; margin-bottom: 0; } h2 { font-size: 17px; margin-top: 28px; }
.when { color: #777; margin-top: 4px; }
.facts { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
table.fact { border-collapse: collapse; font-size: 13px; }
table.fact caption { text-align: left; font-weight: bold; padding-bottom: 4px; }
table.fact td { border-top: 1px solid #ddd; padding: 2px 12px 2px 0; vertical-align: top; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
.chart { border: 1px solid #e4e4e4; }
.mistakes { display: grid; grid-template-columns: repeat(auto-fill, 108px); gap: 10px; }
figure { margin: 0; font-size: 11px; text-align: center; }
figure img { width: 96px; height: 96px; image-rendering: pixelated; display: block; margin: 0 auto 2px; }
`;

const SPLITS = [["train", "train"], ["val", "validation"], ["test", "test"]] as const;

/** Loss and accuracy against epoch and against training time, lr and images/s: whichever series exist. */
function curveCharts(epochs: EpochLine[], steps: StepLine[]): string[] {
  let elapsed = 0;
  const time = epochs.map((line) => (elapsed += Number(line.seconds ?? NaN)));
  const byEpoch = (key: string) => points(epochs, (line) => Number(line.epoch), key);
  const byTime = (key: string) => points(epochs, (_, i) => time[i], key);
  const splits = (metric: string, along: (key: string) => [number, number][]) =>
    SPLITS.map(([key, name]) => ({ name, points: along(`${key}_${metric}`) })).filter((s) => s.points.length);
  const charts = [
    lineChart({ title: "Loss by epoch", xName: "epoch", yName: "loss", series: splits("loss", byEpoch) }),
    lineChart({
      title: "Accuracy by epoch",
      xName: "epoch",
      yName: "accuracy",
      series: splits("acc", byEpoch),
      percent: true,
    }),
    lineChart({
      title: "Loss by training time",
      xName: "seconds",
      yName: "loss",
      series: splits("loss", byTime),
    }),
    lineChart({
      title: "Accuracy by training time",
      xName: "seconds",
      yName: "accuracy",
      series: splits("acc", byTime),
      percent: true,
    }),
  ];
  // steps.jsonl (--log-every) has the finer curves; without it, one point per epoch.
  const perStep = steps.length > 0;
  const along = perStep
    ? (key: string) => points(steps, (line) => line.step, key)
    : (key: string) => byEpoch(key);
  const x = perStep ? "step" : "epoch";
  if (perStep) {
    charts.push(
      lineChart({
        title: "Training loss by step",
        xName: "step",
        yName: "loss",
        series: [{ name: "train", points: along("loss") }],
      }),
    );
  }
  charts.push(
    lineChart({
      title: "Learning rate",
      xName: x,
      yName: "lr",
      series: [{ name: "lr", points: along("lr") }],
    }),
    lineChart({
      title: "Training images/s",
      xName: x,
      yName: "images/s",
      series: [{ name: "images/s", points: along("images_per_s") }],
    }),
  );
  return charts;
}

/** [x, line[key]] for every line where line[key] is a finite number. */
function points<T extends Record<string, unknown>>(
  lines: T[],
  x: (line: T, i: number) => number,
  key: string,
): Series["points"] {
  return lines.flatMap((line, i) => {
    const y = line[key];
    return typeof y === "number" && Number.isFinite(y) ? [[x(line, i), y] as [number, number]] : [];
  });
}

function testSection(test: NonNullable<ReportInput["test"]>): string {
  const { analysis, images } = test;
  const names = [...CLASS_NAMES];
  const overall = analysis.confusion.reduce((n, row, c) => n + row[c], 0) /
    analysis.confusion.flat().reduce((a, b) => a + b, 0);
  const charts = [
    barChart({
      title: "Accuracy per class",
      labels: names,
      values: analysis.accuracy,
      format: (v) => `${(100 * v).toFixed(1)}%`,
      colors: analysis.accuracy.map((a) => (a >= overall ? "#3b6fc6" : "#d9822b")),
    }),
    heatmap({
      title: "Confusion matrix (rows: true class)",
      rowName: "true class",
      columnName: "predicted class",
      labels: names,
      rows: analysis.confusion,
    }),
  ];
  const figures = analysis.mistakes.map((m) => {
    const record = images.subarray(m.index * IMAGE_BYTES, (m.index + 1) * IMAGE_BYTES);
    return `<figure><img alt="test image ${m.index}" src="data:image/png;base64,${
      base64(rgbToPng(recordToRgb(record)))
    }">` +
      `<figcaption>#${m.index}<br>true <b>${names[m.label]}</b><br>predicted <b>${names[m.predicted]}</b> ${
        (100 * m.confidence).toFixed(0)
      }%</figcaption></figure>`;
  });
  return section(
    `${test.heading}: ${(100 * overall).toFixed(2)}% correct`,
    charts,
  ) +
    `\n<h2>The ${figures.length} most confident mistakes</h2>\n<div class="mistakes">${
      figures.join("")
    }</div>`;
}

function section(heading: string, charts: string[]): string {
  return `<h2>${escape(heading)}</h2>\n<div class="charts">${
    charts.map((svg) => `<div class="chart">${svg}</div>`).join("\n")
  }</div>`;
}

function factTable(caption: string, facts: Record<string, unknown>): string {
  const rows = Object.entries(facts).filter(([, value]) => value !== undefined)
    .map(([name, value]) => `<tr><td>${escape(name)}</td><td>${escape(String(value))}</td></tr>`);
  return `<table class="fact"><caption>${caption}</caption>${rows.join("")}</table>`;
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
