// mulberry32: a tiny 32-bit PRNG, fully determined by its seed. For what must be repeatable
// rather than unpredictable: randomized tests (a failing one prints its seed) and the
// simulator's sensor models (a run can be replayed). Never for keys or nonces.

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
