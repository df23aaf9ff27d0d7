// The WASM GEMM (asm/gemm.ts) and the ops built on it (linear layers, patch embedding) against
// float64 references: every transpose combination, beta 0 and 1, bias, sizes that are not
// multiples of the 6×8 tile or of the cache blocks, padded leading dimensions, 1 and 2 threads.
import assert from "node:assert/strict";
import { numel } from "../src/backend.ts";
import { WasmBackend } from "../src/wasm/backend.ts";

function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32 * 2 - 1;
  };
}

function randomArray(n: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: n }, rand);
}

/** Every element within the float32 accumulation bound: (terms + 2)·2⁻²³·Σ|terms|. */
function assertClose(
  actual: Float32Array,
  expected: Float64Array,
  magnitude: Float64Array,
  terms: number,
  what: string,
) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const bound = (terms + 2) * 2 ** -23 * magnitude[i] + 1e-30;
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= bound)) {
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (error ${error} > ${bound})`,
      );
    }
  }
}

async function withBackend(threads: number, body: (backend: WasmBackend) => void | Promise<void>) {
  const backend = await WasmBackend.create({ threads });
  try {
    await body(backend);
  } finally {
    backend.dispose();
  }
}

// [M, N, K]: tiny, odd, across MR/NR edges, across the KC = 256 and MC = 96 blocks, N past NC.
const GEMM_SHAPES = [
  [1, 1, 1],
  [3, 5, 7],
  [13, 17, 33],
  [65, 7, 13],
  [7, 65, 300],
  [100, 33, 17],
  [5, 1030, 3],
  [17, 13, 1],
  [6, 8, 0],
];

for (const threads of [1, 2]) {
  Deno.test(`gemm matches float64 for all transposes, beta 0/1, bias, odd sizes (${threads} threads)`, async () => {
    await withBackend(threads, (backend) => {
      const rand = random(threads);
      for (const [M, N, K] of GEMM_SHAPES) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            for (const beta of [0, 1]) {
              const withBias = beta === 0;
              // Stored shapes, with leading dimensions padded by 3 to test lda/ldb/ldc.
              const [aRows, aCols] = transA ? [K, M] : [M, K];
              const [bRows, bCols] = transB ? [N, K] : [K, N];
              const lda = aCols + 3, ldb = bCols + 3, ldc = N + 3;
              const a = backend.tensor([aRows * lda]);
              const b = backend.tensor([bRows * ldb]);
              const c = backend.tensor([M * ldc]);
              const bias = backend.tensor([N]);
              const aData = randomArray(a.size, rand), bData = randomArray(b.size, rand);
              const cData = randomArray(c.size, rand), biasData = randomArray(N, rand);
              backend.write(a, aData);
              backend.write(b, bData);
              backend.write(c, cData);
              backend.write(bias, biasData);
              const alpha = 0.75;
              backend.gemm({
                transA,
                transB,
                M,
                N,
                K,
                alpha,
                a: a,
                lda,
                b: b,
                ldb,
                beta,
                c: c,
                ldc,
                bias: withBias ? bias : null,
              });
              const actual = backend.f32(c);
              const expected = Float64Array.from(cData), magnitude = new Float64Array(c.size);
              for (let i = 0; i < M; i++) {
                for (let j = 0; j < N; j++) {
                  let sum = 0, abs = 0;
                  for (let k = 0; k < K; k++) {
                    const term = aData[transA ? k * lda + i : i * lda + k] *
                      bData[transB ? j * ldb + k : k * ldb + j];
                    sum += term;
                    abs += Math.abs(term);
                  }
                  const at = i * ldc + j;
                  const extra = beta * cData[at] + (withBias ? biasData[j] : 0);
                  expected[at] = alpha * sum + extra;
                  magnitude[at] = alpha * abs + Math.abs(extra) + Math.abs(beta * cData[at]);
                }
              }
              const what = `gemm M=${M} N=${N} K=${K} transA=${transA} transB=${transB} beta=${beta}`;
              assertClose(actual, expected, magnitude, K, what);
            }
          }
        }
      }
    });
  });

  Deno.test(`linear forward and backward match float64 (${threads} threads)`, async () => {
    await withBackend(threads, (backend) => {
      const rand = random(10 + threads);
      for (const [lead, N, K] of [[[1, 3, 5], 10, 7], [[2, 4, 4], 13, 33], [[1], 1, 1]] as const) {
        const M = numel(lead);
        const x = backend.tensor([...lead, K]), w = backend.tensor([N, K]), bias = backend.tensor([N]);
        const out = backend.tensor([...lead, N]), dOut = backend.tensor([...lead, N]);
        const dx = backend.tensor([...lead, K]), dW = backend.tensor([N, K]), dBias = backend.tensor([N]);
        const xData = randomArray(x.size, rand), wData = randomArray(w.size, rand);
        const biasData = randomArray(N, rand), dOutData = randomArray(dOut.size, rand);
        backend.write(x, xData);
        backend.write(w, wData);
        backend.write(bias, biasData);
        backend.write(dOut, dOutData);
        // Stale values in the outputs must be overwritten.
        for (const t of [out, dx, dW, dBias]) backend.fill(t, 7);
        backend.linearForward(x, w, bias, out);
        backend.linearBackwardInput(dOut, w, dx);
        backend.linearBackwardWeight(x, dOut, dW, dBias);

        const sums = (count: number, inner: number, term: (o: number, k: number) => number) => {
          const value = new Float64Array(count), magnitude = new Float64Array(count);
          for (let o = 0; o < count; o++) {
            for (let k = 0; k < inner; k++) {
              value[o] += term(o, k);
              magnitude[o] += Math.abs(term(o, k));
            }
          }
          return [value, magnitude];
        };
        const [outRef, outMag] = sums(M * N, K + 1, (o, k) => {
          const i = Math.floor(o / N), j = o % N;
          return k === K ? biasData[j] : xData[i * K + k] * wData[j * K + k];
        });
        assertClose(backend.f32(out), outRef, outMag, K, "linearForward");
        const [dxRef, dxMag] = sums(
          M * K,
          N,
          (o, j) => dOutData[Math.floor(o / K) * N + j] * wData[j * K + (o % K)],
        );
        assertClose(backend.f32(dx), dxRef, dxMag, N, "linearBackwardInput");
        const [dWRef, dWMag] = sums(
          N * K,
          M,
          (o, i) => dOutData[i * N + Math.floor(o / K)] * xData[i * K + (o % K)],
        );
        assertClose(backend.f32(dW), dWRef, dWMag, M, "linearBackwardWeight dWeight");
        const [dBiasRef, dBiasMag] = sums(N, M, (j, i) => dOutData[i * N + j]);
        assertClose(
          backend.f32(dBias),
          dBiasRef,
          dBiasMag,
          M,
          "linearBackwardWeight dBias",
        );

        // Without bias: out is x·Wᵀ alone, and a null dBias is allowed.
        backend.linearForward(x, w, null, out);
        const [noBiasRef, noBiasMag] = sums(
          M * N,
          K,
          (o, k) => xData[Math.floor(o / N) * K + k] * wData[(o % N) * K + k],
        );
        assertClose(
          backend.f32(out),
          noBiasRef,
          noBiasMag,
          K,
          "linearForward without bias",
        );
        backend.linearBackwardWeight(x, dOut, dW, null);
        assertClose(backend.f32(dW), dWRef, dWMag, M, "linearBackwardWeight without dBias");
      }
    });
  });

  Deno.test(`patch embedding forward and weight gradient match float64, p in {1, 2, 3, 4} (${threads} threads)`, async () => {
    await withBackend(threads, (backend) => {
      const rand = random(20 + threads);
      const cases = [[1, 4, 8, 5, 1], [1, 6, 4, 9, 2], [2, 8, 12, 3, 4], [1, 2, 2, 1, 2], [2, 8, 10, 4, 3]];
      for (const [B, H, W, C, p] of cases) {
        const Hp = Math.floor(H / p), Wp = Math.floor(W / p), K = 3 * p * p; // [2, 8, 10]: 2 and 1 pixels left over
        const images = backend.tensor([B, H, W, 3]), weight = backend.tensor([C, 3, p, p]);
        const out = backend.tensor([B, Hp, Wp, C]), dOut = backend.tensor([B, Hp, Wp, C]);
        const dWeight = backend.tensor([C, 3, p, p]);
        const img = randomArray(images.size, rand), w = randomArray(weight.size, rand);
        const dOutData = randomArray(dOut.size, rand);
        backend.write(images, img);
        backend.write(weight, w);
        backend.write(dOut, dOutData);
        backend.fill(out, 7);
        backend.fill(dWeight, 7);
        backend.patchEmbedForward(images, weight, out);
        backend.patchEmbedBackwardWeight(images, dOut, dWeight);

        const outRef = new Float64Array(out.size), outMag = new Float64Array(out.size);
        const dWRef = new Float64Array(dWeight.size), dWMag = new Float64Array(dWeight.size);
        for (let b = 0; b < B; b++) {
          for (let y = 0; y < Hp; y++) {
            for (let x = 0; x < Wp; x++) {
              for (let c = 0; c < C; c++) {
                const o = ((b * Hp + y) * Wp + x) * C + c;
                for (let ch = 0; ch < 3; ch++) {
                  for (let ky = 0; ky < p; ky++) {
                    for (let kx = 0; kx < p; kx++) {
                      const pixel = img[((b * H + y * p + ky) * W + x * p + kx) * 3 + ch];
                      const wi = ((c * 3 + ch) * p + ky) * p + kx;
                      outRef[o] += pixel * w[wi];
                      outMag[o] += Math.abs(pixel * w[wi]);
                      dWRef[wi] += pixel * dOutData[o];
                      dWMag[wi] += Math.abs(pixel * dOutData[o]);
                    }
                  }
                }
              }
            }
          }
        }
        assertClose(backend.f32(out), outRef, outMag, K, `patchEmbedForward p=${p}`);
        assertClose(
          backend.f32(dWeight),
          dWRef,
          dWMag,
          B * Hp * Wp,
          `patchEmbedBackwardWeight p=${p}`,
        );
      }
    });
  });
}

Deno.test("linear and patch embedding reject mismatched shapes with a clear error", async () => {
  await withBackend(1, (backend) => {
    const x = backend.tensor([4, 5]), w = backend.tensor([3, 6]), out = backend.tensor([4, 3]);
    assert.throws(() => backend.linearForward(x, w, null, out), /linearForward: x \[4, 5\] must end in 6/);
    const w2 = backend.tensor([3, 5]), outBad = backend.tensor([5, 3]);
    assert.throws(
      () => backend.linearForward(x, w2, null, outBad),
      /linearForward: out \[5, 3\] must be \[4, 3\]/,
    );
    const images = backend.tensor([1, 6, 6, 3]),
      pw = backend.tensor([8, 3, 4, 4]),
      po = backend.tensor([1, 2, 2, 8]);
    assert.throws(
      () => backend.patchEmbedForward(images, pw, po),
      /out \[1, 2, 2, 8\] must be \[1, 1, 1, 8\]/,
    );
    const small = backend.tensor([1, 3, 6, 3]);
    assert.throws(() => backend.patchEmbedForward(small, pw, po), /smaller than a p = 4 patch/);
  });
});

Deno.test("a tensor of another backend is refused, not read at its offset in this memory", async () => {
  await withBackend(1, (a) =>
    withBackend(1, (b) => {
      const x = a.tensor([2, 2]), w = b.tensor([1, 2]), out = b.tensor([2, 1]);
      assert.throws(
        () => b.linearForward(x, w, null, out),
        /tensor \[2, 2\] was not created by this backend/,
      );
      assert.throws(() => b.read(x), /was not created by this backend/);
    }));
});

Deno.test("a trap in a kernel becomes an Error naming it, and the pool keeps working", async () => {
  await withBackend(2, (backend) => {
    const bad = 2 ** 32 - 64; // past the end of the memory
    assert.throws(
      () =>
        backend.gemm({
          transA: false,
          transB: false,
          M: 64,
          N: 8,
          K: 8,
          a: bad,
          lda: 8,
          b: bad,
          ldb: 8,
          c: bad,
          ldc: 8,
        }),
      /wasm kernel gemm failed on thread [01]: .*out of bounds/,
    );
    const x = backend.tensor([2, 2]), w = backend.tensor([1, 2]), out = backend.tensor([2, 1]);
    backend.write(x, Float32Array.of(1, 2, 3, 4));
    backend.write(w, Float32Array.of(10, 100));
    backend.linearForward(x, w, null, out);
    assert.deepEqual([...backend.f32(out)], [210, 430]);
  });
});
