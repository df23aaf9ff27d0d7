// The --time budget's sizing and its watch of the pace, on a simulated clock: steps of a known
// duration, the test set's evaluation at the end at the same pace, no real training.
import assert from "node:assert/strict";
import { type StepCost, TimeBudget } from "../src/time_budget.ts";
import { PRESETS } from "../src/recipe.ts";
import type { RunConfig } from "../src/run_config.ts";

const SECONDS = 600, STEPS_PER_EPOCH = 390, TEST_IMAGES = 10_000, FORWARD_MS = 0.5, STARTUP_MS = 2000;

/** A --time run whose step `s` takes stepMs(s): when it ends (ms from the start) and what it printed. */
async function simulate(stepMs: (step: number) => number, stepCost?: StepCost) {
  let now = STARTUP_MS;
  const config: RunConfig = { recipe: PRESETS.cpu, seed: 0, shuffle: true };
  const evaluation = { perEpoch: 0, atEnd: TEST_IMAGES };
  const budget = new TimeBudget(SECONDS, STEPS_PER_EPOCH, evaluation, config, () => now, stepCost);
  const lines: string[] = [];
  let step = 0;
  while (config.totalSteps === undefined || step < config.totalSteps) {
    step++;
    now += stepMs(step);
    const timeForward = () => Promise.resolve(FORWARD_MS);
    const line = await budget.afterStep(step, () => Promise.resolve(), timeForward);
    if (line !== null) lines.push(line);
  }
  now += TEST_IMAGES * FORWARD_MS * stepMs(step) / stepMs(1); // evaluations slow down with the steps
  return { endMs: now, lines, steps: step, config };
}

// ±3% from step to step: the noise of a steady machine.
const steady = (ms: number) => (step: number) => ms * (1 + 0.03 * Math.sin(step));

Deno.test("--time at a steady pace: two estimates, no cut, the run ends inside the budget", async () => {
  const run = await simulate(steady(100));
  assert.equal(run.lines.length, 2, run.lines.join("\n"));
  assert.match(run.lines[0], /^--time 600 s: .* → \d+ steps .* lr peak at step \d+; measured again/);
  assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
  assert(run.endMs > 0.95 * SECONDS * 1000, `ended at ${run.endMs} ms: the budget is used`);
});

Deno.test("--time on a machine that slows down after the peak: the run is cut and ends on time", async () => {
  // 100 ms per step to step 2,500, then slower and slower up to 180 ms (as seen on the AMD machine).
  const slowing = (step: number) => step < 2500 ? 100 : Math.min(180, 100 + (step - 2500) * 0.1);
  const run = await simulate(slowing);
  const cuts = run.lines.filter((l) => l.includes(" late at "));
  assert(cuts.length >= 1, run.lines.join("\n"));
  assert.match(
    cuts[0],
    /^--time 600 s would end \d+ s late at [\d.]+ ms per step .*: cut from \d+ to \d+ steps/,
  );
  assert.equal(run.steps, run.config.totalSteps);
  assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
  assert(run.config.peakStep! < run.steps, "the peak stays where it was");
});

for (const after of [100, 70]) {
  Deno.test(`--time, slower for a while after the peak, then ${after} ms per step: cut, then lengthened, on time`, async () => {
    // 100 ms per step, 160 over steps 2,500–2,900, then `after`: the slow windows' cuts would
    // leave a fifth of the budget unused once the steps speed up again. (Lengthened at the pace
    // since the estimates, which remembers the slow steps, the run gets most of it back.)
    const run = await simulate((step) => step >= 2500 && step < 2900 ? 160 : step < 2500 ? 100 : after);
    const cuts = run.lines.filter((l) => l.includes(" late at "));
    const lengthenings = run.lines.filter((l) => l.includes(" s early "));
    assert(cuts.length >= 1 && lengthenings.length >= 1, run.lines.join("\n"));
    assert.match(
      lengthenings[0],
      /^--time 600 s would end \d+ s early \(steps \d+–\d+\), and at [\d.]+ ms per step .* fits \d+ more steps: lengthened from \d+ to \d+ steps/,
    );
    assert.equal(run.steps, run.config.totalSteps);
    assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
    assert(run.endMs > 0.9 * SECONDS * 1000, `ended at ${run.endMs} ms: the budget is used`);
  });
}

Deno.test("--time on a machine that speeds up: lengthened a few times, never cut, the budget used", async () => {
  const run = await simulate((step) => (step < 2500 ? 100 : 70) * (1 + 0.03 * Math.sin(step)));
  const lengthenings = run.lines.filter((l) => l.includes(" s early "));
  assert(lengthenings.length >= 1 && lengthenings.length <= 3, run.lines.join("\n"));
  assert.equal(run.lines.length, 2 + lengthenings.length, run.lines.join("\n"));
  assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
  assert(run.endMs > 0.9 * SECONDS * 1000, `ended at ${run.endMs} ms: the budget is used`);
});

Deno.test("--time on a machine whose windows swing ±15%: few changes, on time", async () => {
  // 30-s windows alternating fast and slow around 100 ms, as the AMD machine's did (161–227 ms).
  const run = await simulate((step) => 100 * (1 + 0.15 * Math.sign(Math.sin(step / 150))));
  const changes = run.lines.slice(2);
  assert(changes.length <= 3, run.lines.join("\n"));
  assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
});

Deno.test("--time: one fast window right after the second estimate lengthens nothing", async () => {
  // The peak comes at about step 2,240; steps 2,240–2,620 (one 30-s window) run at 80 ms.
  const run = await simulate((step) =>
    (step >= 2240 && step < 2620 ? 80 : 100) * (1 + 0.03 * Math.sin(step))
  );
  assert.equal(run.lines.length, 2, run.lines.join("\n"));
  assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
});

Deno.test("--time with the first half of the steps at 0.56 of a whole step's cost: sized in whole steps, on time", async () => {
  // The low-resolution phase: steps before half the run's length cost 0.56 (undefined length: all).
  const COST = 0.56, WHOLE_MS = 100;
  const crop = (step: number, total: number | undefined) => step < Math.round(0.5 * (total ?? Infinity));
  let total: number | undefined;
  const stepCost: StepCost = (step, totalSteps) => {
    total = totalSteps;
    return crop(step, totalSteps) ? COST : 1;
  };
  // A step's real duration follows the same phases, with ±3% noise (step is 1-based, as afterStep's).
  const run = await simulate((step) => (crop(step - 1, total) ? COST : 1) * steady(WHOLE_MS)(step), stepCost);
  assert.equal(run.lines.length, 2, run.lines.join("\n"));
  assert.match(run.lines[0], /^--time 600 s: [\d.]+ ms per whole-image step/);
  const first = Number(run.lines[0].match(/: ([\d.]+) ms per/)![1]);
  assert(Math.abs(first - WHOLE_MS) < 5, `the first estimate, ${first} ms per whole-image step`);
  assert(run.endMs <= SECONDS * 1000, `ended at ${run.endMs} ms`);
  assert(run.endMs > 0.95 * SECONDS * 1000, `ended at ${run.endMs} ms: the budget is used`);
  // All whole steps would fit (600 s less the test set and margins) / 100 ms ≈ 5,650; half at 0.56: ~7,240.
  assert(run.steps > 7000, `${run.steps} steps`);
});
