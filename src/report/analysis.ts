// What a test evaluation's logits say beyond one accuracy: accuracy per class, the confusion matrix,
// and the mistakes the model was most sure of (where a look at the images helps most).
export interface Mistake {
  /** Record index in the test file. */
  index: number;
  label: number;
  predicted: number;
  /** Softmax probability of the predicted class. */
  confidence: number;
}

export interface TestAnalysis {
  /** confusion[true][predicted] = number of records. */
  confusion: number[][];
  /** Per class: correct / records of that class (NaN for a class with no records). */
  accuracy: number[];
  /** Misclassified records, most confident first. */
  mistakes: Mistake[];
}

/** Softmax of one row of logits (max-shifted, so large logits do not overflow). */
export function softmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let c = 0; c < row.length; c++) max = Math.max(max, row[c]);
  const p = Float64Array.from(row, (x) => Math.exp(x - max));
  const sum = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / sum);
}

/** Index of the largest value (the first of equal ones, as the backends' argmax). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let c = 1; c < row.length; c++) if (row[c] > row[best]) best = c;
  return best;
}

/** Analyses [labels.length × classes] logits; keeps the `keep` most confident mistakes. */
export function analyseLogits(
  logits: Float32Array,
  labels: Uint8Array,
  classes: number,
  keep = 24,
): TestAnalysis {
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const mistakes: Mistake[] = [];
  for (let i = 0; i < labels.length; i++) {
    const row = logits.subarray(i * classes, (i + 1) * classes);
    const predicted = argmax(row);
    confusion[labels[i]][predicted]++;
    if (predicted !== labels[i]) {
      mistakes.push({ index: i, label: labels[i], predicted, confidence: softmax(row)[predicted] });
    }
  }
  mistakes.sort((a, b) => b.confidence - a.confidence);
  const accuracy = confusion.map((row, c) => row[c] / row.reduce((a, b) => a + b, 0));
  return { confusion, accuracy, mistakes: mistakes.slice(0, keep) };
}

/** Per-class accuracy, then the confusion matrix, as plain text for a terminal. */
export function analysisText(analysis: TestAnalysis, names: readonly string[]): string {
  const { confusion, accuracy } = analysis;
  const width = Math.max(...names.map((n) => n.length));
  const lines = ["per-class accuracy:"];
  confusion.forEach((row, c) => {
    const total = row.reduce((a, b) => a + b, 0);
    lines.push(
      `  ${names[c].padEnd(width)} ${(100 * accuracy[c]).toFixed(2).padStart(6)}%  (${row[c]}/${total})`,
    );
  });
  const cell = Math.max(6, String(Math.max(...confusion.flat())).length + 1);
  lines.push("confusion matrix (rows: true class, columns: predicted class):");
  lines.push(`  ${"".padEnd(width)}${names.map((n) => n.slice(0, cell - 1).padStart(cell)).join("")}`);
  confusion.forEach((row, c) => {
    lines.push(`  ${names[c].padEnd(width)}${row.map((n) => String(n).padStart(cell)).join("")}`);
  });
  return lines.join("\n");
}
