// Turning mitata's mean time per op into the units targets are stated in.

import type { run } from 'mitata';

const MIB = 1024 * 1024;

/** Mean ns per op of each bench, by name, from mitata's results. */
export function meansByName(benchmarks: Awaited<ReturnType<typeof run>>['benchmarks']): Map<string, number> {
  const means = new Map<string, number>();
  for (const trial of benchmarks) {
    const stats = trial.runs[0]?.stats;
    if (stats) means.set(trial.alias, stats.avg);
  }
  return means;
}

/** MiB/s of a bench that handles `bytes` per op, or 'n/a' when it did not run. */
export function mibPerSecond(means: Map<string, number>, name: string, bytes: number): string {
  const ns = means.get(name);
  return ns === undefined ? 'n/a' : ((bytes / MIB) * (1e9 / ns)).toFixed(0);
}

/** Deterministic filler, so every run benchmarks the same bytes. */
export function filled(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
