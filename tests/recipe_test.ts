// The training recipe's parts outside the kernels: the learning-rate schedule against the official
// script's formula, the duration and run-length flags, the weight average against its definition,
// the patch-whitening initialisation, flip test-time augmentation and the low-resolution phase's
// crops.
import assert from "node:assert";
import { epochKnots, learningRate, stepKnots } from "../src/schedule.ts";
import { parseTrainArgs, UsageError } from "../src/options.ts";
import { PRESETS, SIX_VIEW_MIN_SECONDS, ttaForBudget } from "../src/recipe.ts";
import { ConvMixer } from "../src/model.ts";
import { namedParameters, namedStatistics } from "../src/checkpoint.ts";
import { WeightAverage } from "../src/weight_average.ts";
import { patchSecondMoment, patchWhiteningFilters, symmetricEigen } from "../src/stem_whitening.ts";
import { crossEntropyMetrics, mirror, shiftReflect, ttaViews } from "../src/evaluate.ts";
import { cropStepCost, lowResolutionSteps, randomCrops } from "../src/low_resolution.ts";
import { ReferenceBackend } from "./reference_backend.ts";
import { randomValues, seededRandom } from "./reference.ts";

/** numpy.interp as the official ConvMixer script calls it: lr_schedule(t) with t in epochs. */
function officialLr(t: number, epochs: number, lrMax: number): number {
  const xs = [0, Math.floor((epochs * 2) / 5), Math.floor((epochs * 4) / 5), epochs];
  const ys = [0, lrMax, lrMax / 20, 0];
  if (t <= xs[0]) return ys[0];
  for (let i = 1; i < 4; i++) {
    if (t <= xs[i]) return ys[i - 1] + (t - xs[i - 1]) / (xs[i] - xs[i - 1]) * (ys[i] - ys[i - 1]);
  }
  return 0;
}

Deno.test("schedule: whole-epoch runs put the breakpoints at epochs*2//5 and epochs*4//5, as the official script", () => {
  assert.deepEqual(epochKnots(8, 10), [0, 30, 60, 80]);
  assert.deepEqual(epochKnots(25, 98), [0, 980, 1960, 2450]);
  for (const epochs of [1, 2, 7, 8, 25]) {
    const perEpoch = 13;
    for (let step = 0; step < epochs * perEpoch; step++) {
      const t = Math.floor(step / perEpoch) + ((step % perEpoch) + 1) / perEpoch;
      const got = learningRate("onecycle", 0.05, epochKnots(epochs, perEpoch), step);
      assert.ok(Math.abs(got - officialLr(t, epochs, 0.05)) < 1e-15, `epochs ${epochs} step ${step}: ${got}`);
    }
  }
  assert.equal(learningRate("constant", 0.3, epochKnots(8, 10), 5), 0.3);
});

Deno.test("recipe: budgets under 10 minutes trade the six TTA views for flip's two, unless --tta says", () => {
  const cpu = PRESETS.cpu;
  assert.equal(ttaForBudget(cpu), "flip-translate", "the 15-minute default keeps six views");
  assert.equal(ttaForBudget({ ...cpu, time: 180 }), "flip");
  assert.equal(ttaForBudget({ ...cpu, time: SIX_VIEW_MIN_SECONDS }), "flip-translate");
  assert.equal(ttaForBudget({ ...cpu, time: 0 }), "flip-translate", "a run sized by epochs or steps");
  assert.equal(ttaForBudget({ ...cpu, time: 180 }, "flip-translate"), "flip-translate");
  assert.equal(ttaForBudget({ ...cpu, time: 180 }, "none"), "none");
  assert.equal(ttaForBudget({ ...PRESETS.official, time: 180 }), "none");
});

Deno.test("schedule: a run sized in steps peaks at 2/5 of its steps and ends at 0", () => {
  const knots = stepKnots(1000);
  assert.deepEqual(knots, [0, 400, 800, 1000]);
  assert.equal(learningRate("onecycle", 1, knots, 399), 1);
  assert.ok(Math.abs(learningRate("onecycle", 1, knots, 799) - 1 / 20) < 1e-15);
  assert.equal(learningRate("onecycle", 1, knots, 999), 0);
  // A --time run's peak stays where its first estimate put it; the decay follows the final length.
  const resized = stepKnots(1300, 400);
  assert.deepEqual(resized, [0, 400, 1000, 1300]);
  for (const step of [0, 57, 398, 399]) {
    assert.equal(learningRate("onecycle", 1, resized, step), learningRate("onecycle", 1, knots, step));
  }
  assert.ok(learningRate("onecycle", 1, resized, 400) < 1, "past the peak, the decay");
  assert.deepEqual(stepKnots(1000, 400), [0, 400, 800, 1000], "the 2/5 peak gives the same knots");
  assert.deepEqual(stepKnots(400, 400), [0, 400, 400, 400], "a run that ends at its peak");
});

Deno.test("options: --time takes durations; one run length at a time; bad values get one line", () => {
  assert.equal(parseTrainArgs(["--time", "90s"]).recipe.time, 90);
  assert.equal(parseTrainArgs(["--time", "15m"]).recipe.time, 900);
  assert.equal(parseTrainArgs(["--time", "1h30m"]).recipe.time, 5400);
  assert.equal(
    parseTrainArgs(["--epochs", "3"]).recipe.time,
    0,
    "--epochs overrides the CPU default's --time",
  );
  assert.equal(parseTrainArgs(["--total-steps", "30"]).totalSteps, 30);
  assert.equal(parseTrainArgs(["--translate", "2"]).recipe.translate, 2);
  assert.equal(parseTrainArgs(["--total-steps", "30", "--peak-step", "9"]).peakStep, 9);
  for (
    const [args, message] of [
      [["--time", "15"], /--time 15: not a duration/],
      [["--time", "0s"], /not a duration/],
      [["--time", "1m", "--epochs", "2"], /--epochs and --time: give one of them/],
      [["--total-steps", "5", "--epochs", "2"], /--epochs and --total-steps/],
      [["--peak-step", "9"], /--peak-step: only with --total-steps/],
      [["--total-steps", "30", "--peak-step", "30"], /--peak-step 30: must be below --total-steps 30/],
      [["--ema", "1"], /never move/],
      [["--tta", "crop"], /--tta crop: must be one of none, flip, flip-translate/],
      [["--val", "50000"], /--val 50000: must be ≤ 49999/],
      [["--translate", "1.5"], /--translate 1.5: must be an integer/],
      [["--crop-size", "32"], /--crop-size 32: must be ≤ 31/],
      [["--crop-fraction", "0.3"], /--crop-fraction 0.3: must be ≥ 0.4/],
    ] as const
  ) {
    assert.throws(
      () => parseTrainArgs([...args]),
      (e: Error) => e instanceof UsageError && message.test(e.message),
    );
  }
});

Deno.test("weight average: d_t = min(d, (1 + t)/(10 + t)) over parameters and BN statistics; withAverage swaps and restores", async () => {
  const backend = new ReferenceBackend();
  const model = new ConvMixer(backend, { hdim: 4, depth: 1, kernel: 3, patch: 2, classes: 10 }, 2, 8);
  model.initialize(3);
  const average = new WeightAverage(model, 0.9);
  const state = new Map([...namedParameters(model), ...namedStatistics(model)]);
  const names = [...state.keys()], tensor = (name: string) => state.get(name)!;
  const expected = new Map(names.map((n) => [n, Float64Array.from(backend.values(tensor(n)))]));
  const random = seededRandom(5);
  for (let step = 1; step <= 30; step++) {
    const decay = Math.min(0.9, (1 + step) / (10 + step));
    for (const name of names) {
      const values = backend.values(tensor(name));
      values.set(randomValues(values.length, random, 1));
      const e = expected.get(name)!;
      for (let i = 0; i < e.length; i++) e[i] = decay * e[i] + (1 - decay) * values[i];
    }
    average.update(step);
  }
  const online = new Map(names.map((n) => [n, Float64Array.from(backend.values(tensor(n)))]));
  await average.withAverage(() => {
    for (const name of names) {
      const got = backend.values(tensor(name)), want = expected.get(name)!;
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-12, `${name}[${i}]`);
    }
    return Promise.resolve();
  });
  for (const name of names) {
    assert.deepEqual(backend.values(tensor(name)), online.get(name), `${name} restored`);
  }
});

Deno.test("stem whitening: Jacobi eigenvectors reconstruct the matrix; the filters whiten the patches", () => {
  const random = seededRandom(9);
  const n = 12;
  const basis = randomValues(n * n, random, 1);
  const matrix = new Float64Array(n * n); // BᵀB: symmetric positive definite
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      for (let k = 0; k < n; k++) matrix[i * n + j] += basis[k * n + i] * basis[k * n + j];
    }
  }
  const { values, vectors } = symmetricEigen(matrix, n);
  for (let i = 1; i < n; i++) assert.ok(values[i - 1] >= values[i], "eigenvalues descend");
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let k = 0; k < n; k++) sum += vectors[k * n + i] * values[k] * vectors[k * n + j];
      assert.ok(Math.abs(sum - matrix[i * n + j]) < 1e-9 * values[0], `VᵀΛV [${i},${j}]`);
    }
  }
  // Correlated images (a smooth random field): the whitened second moment is diag(λ/(λ + eps)) ≈ I.
  const count = 64, patch = 2, d = 12;
  const images = new Uint8Array(count * 3072);
  for (let i = 0; i < images.length; i++) {
    images[i] = Math.floor(100 + 50 * Math.sin(i / 7) + 60 * random());
  }
  const filters = patchWhiteningFilters(images, count, patch, { eps: 0 });
  assert.equal(filters.length, 2 * d * d);
  const moment = patchSecondMoment(images, Array.from({ length: count }, (_, i) => i), patch);
  for (let a = 0; a < d; a++) {
    for (let b = 0; b < d; b++) {
      let sum = 0;
      for (let x = 0; x < d; x++) {
        for (let y = 0; y < d; y++) sum += filters[a * d + x] * moment[x * d + y] * filters[b * d + y];
      }
      assert.ok(Math.abs(sum - (a === b ? 1 : 0)) < 1e-4, `whitened moment [${a},${b}] = ${sum}`);
    }
    for (let x = 0; x < d; x++) {
      assert.equal(filters[(d + a) * d + x], -filters[a * d + x], "second half: negatives");
    }
  }
});

Deno.test("translate TTA: shifts with reflect padding as F.pad(reflect) then a crop; airbench's weights", () => {
  // One 3×3 image, pixel (y, x) of channel c = 100c + 10y + x.
  const side = 3,
    image = Float32Array.from(
      { length: 27 },
      (_, i) => 100 * (i % 3) + 10 * Math.floor(i / 9) + Math.floor(i / 3) % 3,
    );
  const channel0 = (a: Float32Array) => Array.from({ length: 9 }, (_, p) => a[3 * p]);
  // F.pad(x, (1, 1, 1, 1), "reflect")[..., 0:3, 0:3] and [..., 2:5, 2:5], written out.
  assert.deepEqual(channel0(shiftReflect(image, 1, 1, side)), [11, 10, 11, 1, 0, 1, 11, 10, 11]);
  assert.deepEqual(channel0(shiftReflect(image, -1, -1, side)), [11, 12, 11, 21, 22, 21, 11, 12, 11]);
  assert.deepEqual(shiftReflect(image, 1, 1, side)[3 * 4 + 2], 200, "channels move together");
  assert.deepEqual(shiftReflect(image, 0, 0, side), image);
  // The views on a batch of two 32×32 images: the flip pair, then both shifted by ±1.
  const images = Float32Array.from({ length: 2 * 32 * 32 * 3 }, (_, i) => Math.sin(i));
  const views = ttaViews("flip-translate");
  assert.deepEqual(views.map((v) => v.weight), [1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8]);
  const expected = [
    images,
    mirror(images),
    shiftReflect(images, 1, 1),
    shiftReflect(mirror(images), 1, 1),
    shiftReflect(images, -1, -1),
    shiftReflect(mirror(images), -1, -1),
  ];
  views.forEach((v, i) => assert.deepEqual(v.view(images), expected[i], `view ${i}`));
  assert.deepEqual(ttaViews("flip").map((v) => [v.view(images), v.weight]), [[images, 0.5], [
    mirror(images),
    0.5,
  ]]);
  assert.deepEqual(ttaViews("none").map((v) => [v.view(images), v.weight]), [[images, 1]]);
});

Deno.test("flip TTA: mirror reverses each row's pixels (channels kept); host metrics match the definition", () => {
  const side = 4, images = Float32Array.from({ length: 2 * side * side * 3 }, (_, i) => i);
  const mirrored = mirror(images, side);
  for (let b = 0; b < 2; b++) {
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        for (let c = 0; c < 3; c++) {
          const at = (xx: number) => ((b * side + y) * side + xx) * 3 + c;
          assert.equal(mirrored[at(x)], images[at(side - 1 - x)]);
        }
      }
    }
  }
  assert.deepEqual(mirror(mirrored, side), images, "mirroring twice is the identity");
  const logits = Float32Array.of(2, 1, 0, /**/ 0, 3, 3, /**/ 1, 1, 1);
  const { loss, accuracy } = crossEntropyMetrics(logits, Uint8Array.of(0, 2, 1), 3);
  const ce = (row: number[], label: number) =>
    Math.log(row.reduce((s, z) => s + Math.exp(z), 0)) - row[label];
  assert.ok(Math.abs(loss - (ce([2, 1, 0], 0) + ce([0, 3, 3], 2) + ce([1, 1, 1], 1)) / 3) < 1e-12);
  assert.equal(accuracy, 1 / 3, "ties go to the first maximum: rows 2 and 3 are wrong");
});

Deno.test("low-resolution phase: crops are blocks of the images at offsets drawn per (seed, step); its length and cost", () => {
  const count = 400, size = 24;
  // Each pixel's value encodes its image, row, column and channel.
  const images = Float32Array.from({ length: count * 32 * 32 * 3 }, (_, i) => i);
  const crops = randomCrops(images, count, size, 7, 11);
  const offsets = new Set<string>();
  for (let i = 0; i < count; i++) {
    const first = crops[i * size * size * 3] - i * 32 * 32 * 3;
    const top = Math.floor(first / (32 * 3)), left = (first % (32 * 3)) / 3;
    assert(top >= 0 && top <= 32 - size && left >= 0 && left <= 32 - size, `offset ${top}, ${left}`);
    offsets.add(`${top},${left}`);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        for (let c = 0; c < 3; c++) {
          const want = ((i * 32 + top + y) * 32 + left + x) * 3 + c;
          assert.equal(crops[((i * size + y) * size + x) * 3 + c], want);
        }
      }
    }
  }
  assert(offsets.size > 60, `${offsets.size} of the 81 offsets drawn over ${count} images`);
  assert(offsets.has("0,0") && offsets.has("8,8"), "both extreme offsets occur");
  assert.deepEqual(randomCrops(images, count, size, 7, 11), crops, "the same crops for (seed, step)");
  assert.notDeepEqual(randomCrops(images, count, size, 7, 12), crops);
  assert.notDeepEqual(randomCrops(images, count, size, 8, 11), crops);
  const recipe = { ...PRESETS.cpu, cropSize: 24, cropFraction: 0.5 };
  assert.equal(lowResolutionSteps(recipe, 3351), 1676);
  assert.equal(lowResolutionSteps(recipe, 3351, 1800), 1800, "not before the lr peak");
  assert.equal(lowResolutionSteps({ ...recipe, cropFraction: 0.4 }, 3351), 1340);
  assert.equal(lowResolutionSteps({ ...recipe, cropSize: 0 }, 3351), 0);
  // ConvMixer-160/4 p4: 6×6 tokens against 8×8; the head's 160×10 does not shrink.
  const perToken = 160 * 3 * 16 + 4 * 160 * (25 + 160);
  assert.equal(cropStepCost(recipe), (36 * perToken + 1600) / (64 * perToken + 1600));
  assert.equal(cropStepCost({ ...recipe, cropSize: 0 }), 1);
});
