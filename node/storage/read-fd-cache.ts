// Read state of sealed segments (an open fd and the loaded indexes) is opened lazily and
// kept in one LRU per LogManager, so a node with thousands of segments holds at most
// `readFdsMax` fds and indexes for them. Active and not-yet-sealed segments keep their own
// write fd and in-memory indexes and are not counted here.
//
// Each partition's share is bounded: a consumer catching up on one partition touches its
// segments one after another, and a plain LRU would let it evict every other partition's
// state, so that their readers reopen files and reload indexes at every fetch. The share is
// soft: while the cache has room a partition may hold more (one partition being replayed
// on an otherwise idle gateway uses all of it), but once the cache is full, the entry
// evicted is the least recently used one of a partition holding more than its share, and
// only when none does, the least recently used of all. A partition past its share thus
// evicts its own entries, not someone else's.

import { assert } from '../../protocol/errors.js';

export interface ReadStateHolder {
  /** Closes the read fd and drops loaded indexes. Must not throw. */
  releaseReadState(): void;
}

export const DEFAULT_READ_FDS_MAX = 64;

/**
 * Half the cache: a partition read from end to end takes at most half of what the others
 * held, and they keep at least the other half (32 segments' state with the default 64, more
 * than the few segments a consumer that keeps up reads from).
 */
export function readFdsPerPartitionMax(readFdsMax: number): number {
  return Math.max(1, Math.floor(readFdsMax / 2));
}

export class ReadFdCache {
  // Map iteration order is insertion order: the first key is the least recently used. The
  // value is the holder's partition ("topic-partition").
  private readonly lru = new Map<ReadStateHolder, string>();
  private readonly heldByPartition = new Map<string, number>();
  readonly perPartitionMax: number;

  constructor(readonly readFdsMax = DEFAULT_READ_FDS_MAX) {
    assert(Number.isInteger(readFdsMax) && readFdsMax >= 1, `readFdsMax ${readFdsMax} must be a positive integer`);
    this.perPartitionMax = readFdsPerPartitionMax(readFdsMax);
  }

  get size(): number {
    return this.lru.size;
  }

  /** How many entries `partition` holds. */
  heldBy(partition: string): number {
    return this.heldByPartition.get(partition) ?? 0;
  }

  /**
   * Marks `holder`, a segment of `partition`, most recently used; beyond the limit, evicts
   * as the header says.
   */
  touch(holder: ReadStateHolder, partition: string): void {
    const known = this.lru.get(holder);
    if (known !== undefined) {
      assert(known === partition, `a segment of ${known} touched as one of ${partition}`);
      this.lru.delete(holder);
      this.lru.set(holder, partition);
      return;
    }
    this.lru.set(holder, partition);
    this.heldByPartition.set(partition, this.heldBy(partition) + 1);
    while (this.lru.size > this.readFdsMax) {
      const evicted = this.evictionCandidate();
      this.forget(evicted);
      evicted.releaseReadState();
    }
  }

  /** At most readFdsMax + 1 entries are walked, on an eviction only (a cold open's cost). */
  private evictionCandidate(): ReadStateHolder {
    for (const [holder, partition] of this.lru) {
      if (this.heldBy(partition) > this.perPartitionMax) return holder;
    }
    return this.lru.keys().next().value as ReadStateHolder;
  }

  has(holder: ReadStateHolder): boolean {
    return this.lru.has(holder);
  }

  /** Forgets `holder` (its segment is deleted or closing); the caller releases its state. */
  forget(holder: ReadStateHolder): void {
    const partition = this.lru.get(holder);
    if (partition === undefined) return;
    this.lru.delete(holder);
    const held = this.heldBy(partition) - 1;
    if (held > 0) this.heldByPartition.set(partition, held);
    else this.heldByPartition.delete(partition);
  }

  releaseAll(): void {
    for (const holder of this.lru.keys()) holder.releaseReadState();
    this.lru.clear();
    this.heldByPartition.clear();
  }
}
