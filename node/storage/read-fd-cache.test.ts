// The read fd cache's bound on one partition's share: a partition read from end to end
// evicts its own entries, not every other partition's.

import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lastOffsetOf, splitBatches } from '../../protocol/record-batch.js';
import { parseTopicConfig } from './config.js';
import { nodeFileOps, type FileOps } from './file-ops.js';
import { PartitionLog } from './partition-log.js';
import { usePartitionFixture } from './partition.fixture.js';
import { ReadFdCache, type ReadStateHolder } from './read-fd-cache.js';
import { makeBatch } from './testing.js';

class Holder implements ReadStateHolder {
  released = 0;
  constructor(readonly name: string) {}
  releaseReadState(): void {
    this.released++;
  }
}

function holders(prefix: string, n: number): Holder[] {
  return Array.from({ length: n }, (_, i) => new Holder(`${prefix}${i}`));
}

describe('ReadFdCache', () => {
  it('lets a partition that is read from end to end take at most half of a full cache, evicting its own least recently used entries', () => {
    const cache = new ReadFdCache(8);
    const others = holders('b', 3);
    for (const h of others) cache.touch(h, 'b-0');
    const catchingUp = holders('a', 40);
    for (const h of catchingUp) cache.touch(h, 'a-0');
    // On the code before: a plain LRU, b-0's three are the first to go.
    for (const h of others) expect(cache.has(h), h.name).toBe(true);
    expect(others.map((h) => h.released)).toEqual([0, 0, 0]);
    // a-0 took the cache's free room, then evicted its own oldest: its newest five are held.
    expect(catchingUp.filter((h) => cache.has(h)).map((h) => h.name)).toEqual(['a35', 'a36', 'a37', 'a38', 'a39']);
    expect(catchingUp.slice(0, 35).every((h) => h.released === 1)).toBe(true);
    expect(cache.size).toBe(8);
    expect(cache.heldBy('a-0')).toBe(5);
    expect(cache.perPartitionMax).toBe(4);
    // A cache of one entry: one's share is the whole of it.
    expect(new ReadFdCache(1).perPartitionMax).toBe(1);
  });

  it('lets one partition use the whole cache while it has room, and makes it give way to others down to its share', () => {
    const cache = new ReadFdCache(8);
    const alone = holders('a', 8);
    for (const h of alone) cache.touch(h, 'a-0');
    expect(alone.every((h) => cache.has(h) && h.released === 0)).toBe(true);
    // Another partition's reads push a-0 back to its share, oldest first, then evict their own.
    const later = holders('b', 6);
    for (const h of later) cache.touch(h, 'b-0');
    expect(alone.map((h) => cache.has(h))).toEqual([false, false, false, false, true, true, true, true]);
    expect(later.map((h) => cache.has(h))).toEqual([false, false, true, true, true, true]);
    expect(cache.heldBy('a-0')).toBe(4);
    expect(cache.heldBy('b-0')).toBe(4);
  });

  it('counts a touched entry once, forgets and releases all', () => {
    const cache = new ReadFdCache(4);
    const [a, b] = holders('a', 2);
    cache.touch(a, 'a-0');
    cache.touch(a, 'a-0');
    cache.touch(b, 'a-0');
    expect(cache.heldBy('a-0')).toBe(2);
    cache.forget(a);
    cache.forget(a);
    expect(cache.heldBy('a-0')).toBe(1);
    expect(a.released).toBe(0);
    cache.releaseAll();
    expect(cache.size).toBe(0);
    expect(cache.heldBy('a-0')).toBe(0);
    expect(b.released).toBe(1);
  });
});

const fx = usePartitionFixture();

describe('ReadFdCache under PartitionLog', () => {
  it("keeps another partition's sealed segments open while a consumer reads one partition across many segments", async () => {
    // Opens of sealed segments' logs for reading, per partition folder.
    const readOpens = new Map<string, number>();
    const ops: FileOps = {
      ...nodeFileOps,
      openSync(file, flags) {
        if (flags === 'r' && file.endsWith('.log')) {
          const partition = path.basename(path.dirname(file));
          readOpens.set(partition, (readOpens.get(partition) ?? 0) + 1);
        }
        return nodeFileOps.openSync(file, flags);
      },
    };
    const readFds = new ReadFdCache(8);
    const config = parseTopicConfig({ flush: 'os', 'segment.bytes': 1024 });
    // Each batch (~480 bytes) fills half a segment.
    const fill = async (log: PartitionLog, batches: number): Promise<void> => {
      for (let i = 0; i < batches; i++) log.append(makeBatch({ records: 2, valueBytes: 200, fill: i }));
      await log.flush();
    };
    const readAll = (log: PartitionLog): void => {
      for (let offset = 0; offset < log.logEndOffset; ) {
        const batches = splitBatches(log.read(offset, 1));
        expect(batches.length).toBeGreaterThan(0);
        offset = lastOffsetOf(batches[batches.length - 1]) + 1;
      }
    };
    const busy = fx.track(await PartitionLog.open(path.join(fx.dir, 't-1'), 't', 1, config, { ops, readFds }));
    const quiet = fx.track(await PartitionLog.open(path.join(fx.dir, 't-2'), 't', 2, config, { ops, readFds }));
    await fill(busy, 80);
    await fill(quiet, 6);
    expect(busy.closedSegments().length).toBeGreaterThan(30);
    expect(quiet.closedSegments()).toHaveLength(2);
    // The quiet partition's consumer reads its sealed segments: they are loaded.
    readAll(quiet);
    const quietOpens = readOpens.get('t-2');
    expect(quiet.closedSegments().every((s) => readFds.has(s))).toBe(true);
    // A consumer catches up on the busy partition from its start.
    readAll(busy);
    // On the code before: the quiet partition's segments were evicted and reopen here.
    expect(quiet.closedSegments().every((s) => readFds.has(s))).toBe(true);
    // The busy one holds the room the quiet one leaves (it had no one to give way to).
    expect(readFds.heldBy('t-1')).toBe(8 - 2);
    readAll(quiet);
    expect(readOpens.get('t-2')).toBe(quietOpens);
  });
});
