// Counter-based randomness for batch preparation: a draw depends on its key (seed, epoch, stream)
// and its position only, so batches come out the same whatever the worker count or batch split.

/** murmur3's 32-bit finaliser: a bijective mix of all input bits. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** A random stream keyed by (seed, epoch, stream): draw k is a hash of the key and k. */
export class Random {
  #key0: number;
  #key1: number;
  #counter = 0;

  constructor(seed: number, epoch: number, stream: number) {
    this.#key0 = mix32(mix32(seed >>> 0) ^ 0x9e3779b9);
    this.#key1 = mix32(mix32(epoch >>> 0) + Math.imul(stream >>> 0, 0x632be5ab) + this.#key0);
  }

  uint32(): number {
    const c = this.#counter++;
    return mix32(this.#key0 ^ mix32(this.#key1 + Math.imul(c, 0x9e3779b9)));
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    return ((this.uint32() >>> 5) * 67108864 + (this.uint32() >>> 6)) / 9007199254740992;
  }

  /** Uniform in [low, high). */
  between(low: number, high: number): number {
    return low + (high - low) * this.uniform();
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

/** The dataset indices in epoch order: a seeded Fisher–Yates permutation, or file order. */
export function epochOrder(count: number, seed: number, epoch: number, shuffle: boolean): Int32Array {
  const order = Int32Array.from({ length: count }, (_, i) => i);
  if (!shuffle) return order;
  const random = new Random(seed, epoch, 0xffffffff);
  for (let i = count - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}
