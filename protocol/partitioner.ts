// Which partition a record goes to, as Kafka's producer decides it, so a key lands on the
// same partition whether a Tributary client or a Kafka client produced it:
//
//   keyed:    toPositive(murmur2(keyBytes)) % partitionCount
//             (Kafka's BuiltInPartitioner.partitionForKey, formerly DefaultPartitioner)
//   keyless:  a sticky partition, kept for a whole batch and changed when a new batch
//             starts (KIP-480), so keyless records fill batches instead of spraying one
//             record per partition.

import { assert } from './errors.js';

const MURMUR2_SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/**
 * MurmurHash2, 32-bit, exactly as Kafka's Java `Utils.murmur2` computes it (seed
 * 0x9747b28c, little-endian 4-byte blocks). Returns a signed 32-bit integer, like Java's int.
 * Math.imul gives Java's wrapping int multiplication; `>>>` is Java's `>>>` on ints.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (MURMUR2_SEED ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  // The last 1..3 bytes. Java's switch falls through from case 3 to case 1; written as ifs
  // here because the project's compiler settings refuse fall-through.
  const rest = length & 3;
  if (rest > 0) {
    const tail = length - rest;
    if (rest === 3) h ^= data[tail + 2] << 16;
    if (rest >= 2) h ^= data[tail + 1] << 8;
    h ^= data[tail];
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not Math.abs, which fails on -2^31). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/** The partition Kafka's producer picks for a record with this (serialized) key. */
export function partitionForKey(key: Uint8Array, partitionCount: number): number {
  assert(Number.isInteger(partitionCount) && partitionCount > 0, `partition count must be a positive integer, got ${partitionCount}`);
  return toPositive(murmur2(key)) % partitionCount;
}

/**
 * The sticky partition for keyless records of one topic (KIP-480): a random partition,
 * kept until the batch for it is closed (`onNewBatch()`), then a different random one, so
 * load still spreads across partitions batch by batch. `random` is injectable for
 * repeatable tests and simulation.
 */
export class StickyPartitioner {
  private current = -1;
  /** The partition given up by `onNewBatch()`, which the next pick avoids; -1 when none. */
  private previous = -1;

  constructor(private readonly random: () => number = Math.random) {}

  /** The partition for the next keyless record. Repicks if the topic shrank below it. */
  partition(partitionCount: number): number {
    assert(Number.isInteger(partitionCount) && partitionCount > 0, `partition count must be a positive integer, got ${partitionCount}`);
    if (this.current < 0 || this.current >= partitionCount) {
      this.current = this.pick(partitionCount);
      this.previous = -1;
    }
    return this.current;
  }

  /** A batch for the sticky partition was closed: the next record goes to another partition. */
  onNewBatch(): void {
    if (this.current < 0) return;
    this.previous = this.current;
    this.current = -1;
  }

  /** A uniform random partition, other than `previous` when there is another. */
  private pick(partitionCount: number): number {
    const previous = this.previous;
    if (partitionCount === 1) return 0;
    if (previous < 0 || previous >= partitionCount) return Math.floor(this.random() * partitionCount) % partitionCount;
    // Uniform over the other partitionCount - 1: step 1..count-1 away from previous.
    const step = 1 + (Math.floor(this.random() * (partitionCount - 1)) % (partitionCount - 1));
    return (previous + step) % partitionCount;
  }
}
