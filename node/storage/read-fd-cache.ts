// Read state of sealed segments (an open fd and the loaded indexes) is opened lazily and
// kept in one LRU per LogManager, so a node with thousands of segments holds at most
// `readFdsMax` fds and indexes for them. Active and not-yet-sealed segments keep their own
// write fd and in-memory indexes and are not counted here.

import { assert } from '../../protocol/errors.js';

export interface ReadStateHolder {
  /** Closes the read fd and drops loaded indexes. Must not throw. */
  releaseReadState(): void;
}

export const DEFAULT_READ_FDS_MAX = 64;

export class ReadFdCache {
  // Map iteration order is insertion order: the first key is the least recently used.
  private readonly lru = new Map<ReadStateHolder, true>();

  constructor(readonly readFdsMax = DEFAULT_READ_FDS_MAX) {
    assert(Number.isInteger(readFdsMax) && readFdsMax >= 1, `readFdsMax ${readFdsMax} must be a positive integer`);
  }

  get size(): number {
    return this.lru.size;
  }

  /** Marks `holder` most recently used, evicting the least recently used beyond the limit. */
  touch(holder: ReadStateHolder): void {
    if (this.lru.delete(holder)) {
      this.lru.set(holder, true);
      return;
    }
    this.lru.set(holder, true);
    while (this.lru.size > this.readFdsMax) {
      const oldest = this.lru.keys().next().value as ReadStateHolder;
      this.lru.delete(oldest);
      oldest.releaseReadState();
    }
  }

  has(holder: ReadStateHolder): boolean {
    return this.lru.has(holder);
  }

  /** Forgets `holder` (its segment is deleted or closing); the caller releases its state. */
  forget(holder: ReadStateHolder): void {
    this.lru.delete(holder);
  }

  releaseAll(): void {
    for (const holder of this.lru.keys()) holder.releaseReadState();
    this.lru.clear();
  }
}
