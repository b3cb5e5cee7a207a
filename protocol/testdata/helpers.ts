// Test-only helpers, shared by protocol/*.test.ts. A seeded PRNG makes every randomized test
// repeatable: a failing property test prints its seed; rerun with TRIBUTARY_SEED=<seed> to
// replay exactly it. Nothing in production code imports this file.

import { DecodeError } from '../errors.js';

import { mulberry32 } from '../prng.js';

export { mulberry32 };

export class Rng {
  private readonly next: () => number;

  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }

  /** A float in [0, 1). */
  float(): number {
    return this.next();
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  bool(pTrue = 0.5): boolean {
    return this.next() < pTrue;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  bytes(length: number): Buffer {
    const b = Buffer.allocUnsafe(length);
    // Four bytes per draw: large random values are common in these tests.
    for (let i = 0; i < length; i += 4) {
      const word = Math.floor(this.next() * 4294967296);
      for (let j = 0; j < 4 && i + j < length; j++) b[i + j] = (word >>> (8 * j)) & 0xff;
    }
    return b;
  }
}

/**
 * The seeds a property test runs: TRIBUTARY_SEED replays one; otherwise a fixed list, so
 * CI is repeatable, plus one fresh seed per run to keep exploring. Each is printed on failure
 * by `withSeed`.
 */
export function testSeeds(fixed: readonly number[]): number[] {
  const forced = process.env.TRIBUTARY_SEED;
  if (forced !== undefined && forced !== '') return [Number(forced) >>> 0];
  return [...fixed, (Date.now() ^ (process.pid << 16)) >>> 0];
}

/** Runs `body` with a seeded Rng; on failure, rethrows with the seed in the message. */
export function withSeed(seed: number, body: (rng: Rng) => void): void {
  try {
    body(new Rng(seed));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`failed with seed ${seed} (replay: TRIBUTARY_SEED=${seed}): ${message}`, { cause: err });
  }
}

export async function withSeedAsync(seed: number, body: (rng: Rng) => Promise<void>): Promise<void> {
  try {
    await body(new Rng(seed));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`failed with seed ${seed} (replay: TRIBUTARY_SEED=${seed}): ${message}`, { cause: err });
  }
}

/**
 * What `fn` throws, checked to be a DecodeError with the wire error name expected. Returns
 * the error so a test can look further (e.g. at `at`). Anything else thrown (a RangeError
 * from reading past a Buffer, a TypeError) or nothing thrown is a failure, with a message
 * that says which.
 */
export function expectDecodeError(fn: () => unknown, errorName: string, context = ''): DecodeError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  const where = context ? ` (${context})` : '';
  if (thrown === undefined) throw new Error(`expected DecodeError ${errorName}, nothing was thrown${where}`);
  if (!(thrown instanceof DecodeError)) {
    const shown = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
    throw new Error(`expected DecodeError ${errorName}, got ${shown}${where}`, { cause: thrown });
  }
  if (thrown.errorName !== errorName) {
    throw new Error(`expected DecodeError ${errorName}, got ${thrown.errorName}: ${thrown.message}${where}`, { cause: thrown });
  }
  return thrown;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Protobuf-style zigzag varint bytes computed with BigInt: an implementation independent of
 * the codec under test, for building and checking raw record bytes.
 */
export function referenceVarint(n: number | bigint): number[] {
  let z = BigInt(n) >= 0n ? BigInt(n) * 2n : -BigInt(n) * 2n - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return out;
}
