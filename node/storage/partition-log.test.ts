import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LimitReachedError, TributaryError } from '../../protocol/errors.js';
import {
  BATCH_OVERHEAD,
  Compression,
  computeCrc,
  decodeBatch,
  encodeBatch,
  OFFSET_CRC,
  OFFSET_LAST_OFFSET_DELTA,
  OFFSET_MAGIC,
  readBatchHeader,
  splitBatches,
  validateBatch,
} from '../../protocol/record-batch.js';
import { parseTopicConfig } from './config.js';
import { nodeFileOps } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { PartitionLog } from './partition-log.js';
import type { OpenPartitionOptions } from './partition-log.js';
import { errorName, faultyFileOps, gzipBomb, makeBatch, makeTempDir, readWholeLog, removeDir, seededRandom, segmentFiles } from './testing.js';
import { clockAt } from '../../protocol/clock.js';
import { ManualClock } from '../../protocol/clock.js';

interface Stored {
  base: number;
  last: number;
  bytes: Buffer;
}

let dir: string;
const opened: PartitionLog[] = [];

beforeEach(() => {
  dir = makeTempDir();
});

afterEach(async () => {
  for (const log of opened.splice(0)) await log.close().catch(() => undefined);
  removeDir(dir);
});

async function openLog(config: Record<string, string | number>, options: OpenPartitionOptions = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open(path.join(dir, 't-0'), 't', 0, parseTopicConfig(config), options);
  opened.push(log);
  return log;
}

function append(log: PartitionLog, batch: Buffer, stored: Stored[]): void {
  const result = log.append(batch);
  stored.push({ base: result.baseOffset, last: result.lastOffset, bytes: Buffer.from(batch) });
}

function containing(stored: Stored[], offset: number): number {
  return stored.findIndex((s) => s.base <= offset && offset <= s.last);
}

function randomBatches(seed: number, n: number, firstTimestamp = 1_700_000_000_000): Buffer[] {
  const random = seededRandom(seed);
  const out: Buffer[] = [];
  let ts = firstTimestamp;
  for (let i = 0; i < n; i++) {
    const records = 1 + Math.floor(random() * 5);
    out.push(makeBatch({ records, valueBytes: 10 + Math.floor(random() * 200), timestamp: ts, stepMs: 10, fill: i }));
    ts += records * 10 + 1 + Math.floor(random() * 100);
  }
  return out;
}

/** The bases of the segment files: a read never crosses one. */
function segmentBases(): number[] {
  return segmentFiles(path.join(dir, 't-0'), '.log').map((file) => Number(path.basename(file).slice(0, 20)));
}

/** What read() must return, computed from the appended batches alone. */
function expectedRead(stored: Stored[], bases: number[], fetchOffset: number, maxBytes: number, maxOffset: number): Buffer {
  const first = containing(stored, fetchOffset);
  const segmentEnd = bases.find((b) => b > stored[first].base) ?? Number.POSITIVE_INFINITY;
  const taken: Buffer[] = [];
  let bytes = 0;
  for (let i = first; i < stored.length && stored[i].base < segmentEnd; i++) {
    if (stored[i].last >= maxOffset) break;
    if (taken.length > 0 && bytes + stored[i].bytes.length > maxBytes) break;
    taken.push(stored[i].bytes);
    bytes += stored[i].bytes.length;
  }
  return Buffer.concat(taken);
}

describe('append and read', () => {
  it('round-trips across several segments, from every offset', async () => {
    const log = await openLog({ 'segment.bytes': 4096, 'index.interval.bytes': 256, flush: 'os' });
    const stored: Stored[] = [];
    for (const batch of randomBatches(1, 150)) append(log, batch, stored);
    expect(log.segmentCount).toBeGreaterThan(4);
    expect(log.logEndOffset).toBe(stored[stored.length - 1].last + 1);
    expect(readWholeLog(log.dir).equals(Buffer.concat(stored.map((s) => s.bytes)))).toBe(true);
    for (let offset = 0; offset < log.logEndOffset; offset++) {
      const one = log.read(offset, 1);
      expect(one.equals(stored[containing(stored, offset)].bytes), `offset ${offset}`).toBe(true);
    }
  });

  it('honours maxBytes with the at-least-one-batch rule, and maxOffset', async () => {
    const log = await openLog({ flush: 'os' });
    const stored: Stored[] = [];
    for (let i = 0; i < 10; i++) append(log, makeBatch({ records: 3, valueBytes: 100, fill: i }), stored);
    const twoBatches = stored[0].bytes.length + stored[1].bytes.length;
    expect(splitBatches(log.read(0, twoBatches))).toHaveLength(2);
    expect(splitBatches(log.read(0, twoBatches - 1))).toHaveLength(1);
    expect(splitBatches(log.read(0, 0))).toHaveLength(1);
    expect(log.read(4, 1 << 20).equals(Buffer.concat(stored.slice(1).map((s) => s.bytes)))).toBe(true);
    // A batch whose last offset reaches maxOffset is never returned.
    expect(splitBatches(log.read(0, 1 << 20, stored[3].last))).toHaveLength(3);
    expect(splitBatches(log.read(0, 1 << 20, stored[3].last + 1))).toHaveLength(4);
    expect(log.read(stored[3].base, 1 << 20, stored[3].last)).toHaveLength(0);
    expect(log.read(5, 100, 5)).toHaveLength(0);
  });

  it('answers OFFSET_OUT_OF_RANGE outside the log and empty at its end', async () => {
    const log = await openLog({ flush: 'os' });
    expect(log.read(0, 100)).toHaveLength(0);
    log.append(makeBatch({ records: 2 }));
    expect(errorName(() => log.read(-1, 100))).toBe('OFFSET_OUT_OF_RANGE');
    expect(errorName(() => log.read(3, 100))).toBe('OFFSET_OUT_OF_RANGE');
    expect(errorName(() => log.read(0.5, 100))).toBe('OFFSET_OUT_OF_RANGE');
    expect(log.read(2, 100)).toHaveLength(0);
  });

  it('agrees with a full scan for many random offsets and sizes, before and after reopening', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const config = { 'segment.bytes': 8192, 'index.interval.bytes': 512, flush: 'os' as const };
    let log = await openLog(config);
    const stored: Stored[] = [];
    for (const batch of randomBatches(seed, 300)) append(log, batch, stored);
    const check = (label: string): void => {
      const bases = segmentBases();
      for (let i = 0; i < 500; i++) {
        const offset = Math.floor(random() * log.logEndOffset);
        const maxBytes = Math.floor(random() * 3000);
        const maxOffset = random() < 0.2 ? offset + 1 + Math.floor(random() * 20) : log.logEndOffset;
        const got = log.read(offset, maxBytes, maxOffset);
        const want = expectedRead(stored, bases, offset, maxBytes, maxOffset);
        expect(got.equals(want), `${label}: seed ${seed}, read(${offset}, ${maxBytes}, ${maxOffset})`).toBe(true);
      }
    };
    check('live');
    await log.close();
    log = await openLog(config, { clean: true });
    check('reopened');
  });

  it('patches base offset and leader epoch in place, keeps the CRC valid and the records identical', async () => {
    const log = await openLog({ flush: 'os' });
    log.append(makeBatch({ records: 5 }));
    const batch = makeBatch({ records: 2, valueBytes: 50, fill: 7 });
    const original = Buffer.from(batch);
    expect(readBatchHeader(original).partitionLeaderEpoch).toBe(-1);
    const result = log.append(batch);
    expect(result).toMatchObject({ baseOffset: 5, lastOffset: 6, logAppendTime: -1 });
    const stored = log.read(5, 1 << 20);
    const header = readBatchHeader(stored);
    expect(header.baseOffset).toBe(5);
    expect(header.partitionLeaderEpoch).toBe(0);
    expect(() => validateBatch(stored)).not.toThrow();
    expect(stored.subarray(OFFSET_MAGIC).equals(original.subarray(OFFSET_MAGIC))).toBe(true);
    expect(batch.equals(stored)).toBe(true); // patched in the caller's buffer, as Kafka does
    expect(decodeBatch(stored).records.map((r) => r.offset)).toEqual([5, 6]);
  });
});

describe('validation', () => {
  it('refuses corrupt, torn and oversized batches with typed errors and leaves the log unchanged', async () => {
    const log = await openLog({ flush: 'os', 'max.message.bytes': 2000 });
    log.append(makeBatch({ records: 2 }));
    const sizeBefore = fs.statSync(log.segmentFileFor(0)).size;
    const flippedRecord = makeBatch({ records: 2 });
    flippedRecord[flippedRecord.length - 3] ^= 0x01;
    const badMagic = makeBatch({ records: 2 });
    badMagic[OFFSET_MAGIC] = 1;
    const good = makeBatch({ records: 2 });
    const torn = good.subarray(0, good.length - 5);
    const badCrc = makeBatch({ records: 2 });
    badCrc.writeUInt32BE((badCrc.readUInt32BE(OFFSET_CRC) ^ 1) >>> 0, OFFSET_CRC);
    const wideSpan = makeBatch({ records: 1 });
    wideSpan.writeInt32BE(999, OFFSET_LAST_OFFSET_DELTA);
    wideSpan.writeUInt32BE(computeCrc(wideSpan), OFFSET_CRC);
    const cases: [string, Buffer, string][] = [
      ['flipped record bit', flippedRecord, 'CORRUPT_BATCH'],
      ['bad magic', badMagic, 'CORRUPT_BATCH'],
      ['torn batch', torn, 'CORRUPT_BATCH'],
      ['bad CRC', badCrc, 'CORRUPT_BATCH'],
      ['tiny buffer', Buffer.alloc(10), 'CORRUPT_BATCH'],
      ['1 record claiming 1000 offsets', wideSpan, 'CORRUPT_BATCH'],
      ['oversized', makeBatch({ records: 10, valueBytes: 300 }), 'BATCH_TOO_LARGE'],
    ];
    for (const [label, batch, expected] of cases) {
      expect(errorName(() => log.append(batch)), label).toBe(expected);
      expect(log.logEndOffset, label).toBe(2);
      expect(fs.statSync(log.segmentFileFor(0)).size, label).toBe(sizeBefore);
    }
    expect(log.append(makeBatch({ records: 1 })).baseOffset).toBe(2);
  });

  it('names the topic and partition in errors', async () => {
    const log = await openLog({ flush: 'os' });
    const bad = makeBatch();
    bad[bad.length - 1] ^= 0xff;
    expect(() => log.append(bad)).toThrow(/t-0/);
  });
});

describe('rolling', () => {
  it('rolls by size', async () => {
    const log = await openLog({ 'segment.bytes': 2048, flush: 'os' });
    const batch = (): Buffer => makeBatch({ records: 4, valueBytes: 100 });
    const size = batch().length;
    const perSegment = Math.floor(2048 / size);
    for (let i = 0; i < perSegment; i++) log.append(batch());
    expect(log.segmentCount).toBe(1);
    log.append(batch());
    expect(log.segmentCount).toBe(2);
    expect(segmentBases()).toEqual([0, perSegment * 4]);
  });

  it('rolls by age, using the injected clock', async () => {
    let now = 1_000_000;
    const log = await openLog({ 'segment.ms': 1000, flush: 'os' }, { clock: clockAt(() => now )});
    log.append(makeBatch());
    now += 1000;
    log.append(makeBatch());
    expect(log.segmentCount).toBe(1);
    now += 1;
    log.append(makeBatch());
    expect(log.segmentCount).toBe(2);
    now += 5000;
    log.append(makeBatch());
    expect(log.segmentCount).toBe(3);
    expect(segmentBases()).toEqual([0, 2, 3]);
  });

  it('puts a batch larger than segment.bytes alone in a segment', async () => {
    const log = await openLog({ 'segment.bytes': 1024, flush: 'os' });
    log.append(makeBatch());
    log.append(makeBatch({ records: 10, valueBytes: 200 }));
    log.append(makeBatch());
    expect(segmentBases()).toEqual([0, 1, 11]);
    expect(splitBatches(log.read(1, 1))).toHaveLength(1);
  });
});

describe('offsetForTimestamp', () => {
  it('finds the first record at or after a time across segments, between batches, before the first, after the last', async () => {
    const log = await openLog({ 'segment.bytes': 1024, 'index.interval.bytes': 100, flush: 'os' });
    const t0 = 1_700_000_000_000;
    // Batch i holds records at t0 + 1000 i + 10 j, j < 3.
    for (let i = 0; i < 30; i++) log.append(makeBatch({ records: 3, valueBytes: 60, timestamp: t0 + 1000 * i, stepMs: 10 }));
    expect(log.segmentCount).toBeGreaterThan(3);
    expect(log.offsetForTimestamp(0)).toEqual({ offset: 0, timestamp: t0 });
    expect(log.offsetForTimestamp(t0)).toEqual({ offset: 0, timestamp: t0 });
    expect(log.offsetForTimestamp(t0 + 5)).toEqual({ offset: 1, timestamp: t0 + 10 });
    expect(log.offsetForTimestamp(t0 + 20)).toEqual({ offset: 2, timestamp: t0 + 20 });
    expect(log.offsetForTimestamp(t0 + 500)).toEqual({ offset: 3, timestamp: t0 + 1000 });
    expect(log.offsetForTimestamp(t0 + 17_021)).toEqual({ offset: 54, timestamp: t0 + 18_000 });
    expect(log.offsetForTimestamp(t0 + 29_020)).toEqual({ offset: 89, timestamp: t0 + 29_020 });
    expect(log.offsetForTimestamp(t0 + 29_021)).toBeNull();
  });

  it('agrees with a brute-force search when device clocks jump around', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const log = await openLog({ 'segment.bytes': 2048, 'index.interval.bytes': 200, flush: 'os' });
    const records: { offset: number; timestamp: number }[] = [];
    for (let i = 0; i < 200; i++) {
      const timestamp = 1_000_000 + Math.floor(random() * 100_000);
      const result = log.append(makeBatch({ records: 1 + Math.floor(random() * 3), timestamp, stepMs: Math.floor(random() * 50) - 10 }));
      for (const record of decodeBatch(log.read(result.baseOffset, 1)).records) records.push({ offset: record.offset, timestamp: record.timestamp });
    }
    await log.close();
    const reopened = await openLog({ 'segment.bytes': 2048, 'index.interval.bytes': 200, flush: 'os' }, { clean: true });
    for (let i = 0; i < 300; i++) {
      const target = 990_000 + Math.floor(random() * 120_000);
      const want = records.find((r) => r.timestamp >= target) ?? null;
      expect(reopened.offsetForTimestamp(target), `seed ${seed}, target ${target}`).toEqual(want);
    }
  });
});

describe('flush policies', () => {
  it("flush=batch: durable resolves, and recoveryPoint and highWatermark advance, only after one coalesced fdatasync", async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'batch' }, { ops });
    let wakeups = 0;
    log.onAppend(() => wakeups++);
    ops.holdSyncs(true);
    const syncsBefore = ops.counts.fdatasync;
    const results = [log.append(makeBatch()), log.append(makeBatch()), log.append(makeBatch())];
    let durable = 0;
    for (const r of results) void r.durable.then(() => durable++);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(log.logEndOffset).toBe(3);
    expect(log.highWatermark).toBe(0);
    expect(log.recoveryPoint).toBe(0);
    expect(log.read(0, 1 << 20)).toHaveLength(0); // nothing a crash could take back is exposed
    expect(durable).toBe(0);
    ops.holdSyncs(false);
    ops.release();
    await Promise.all(results.map((r) => r.durable));
    expect(ops.counts.fdatasync - syncsBefore).toBe(1);
    expect(log.highWatermark).toBe(3);
    expect(log.recoveryPoint).toBe(3);
    expect(splitBatches(log.read(0, 1 << 20))).toHaveLength(3);
    await Promise.resolve();
    expect(wakeups).toBeGreaterThanOrEqual(2); // log end advanced, then the high watermark
  });

  it('flush=batch: appends made while an fsync runs share the next one (group commit)', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'batch' }, { ops });
    ops.holdSyncs(true);
    const syncsBefore = ops.counts.fdatasync;
    const first = log.append(makeBatch());
    await vi.waitFor(() => expect(ops.counts.fdatasync - syncsBefore).toBe(1));
    const later = [log.append(makeBatch()), log.append(makeBatch()), log.append(makeBatch())];
    ops.holdSyncs(false);
    ops.release();
    await first.durable;
    expect(log.highWatermark).toBeGreaterThanOrEqual(1);
    await Promise.all(later.map((r) => r.durable));
    expect(ops.counts.fdatasync - syncsBefore).toBe(2);
    expect(log.highWatermark).toBe(4);
  });

  it('flush=interval: the timer advances the recovery point; the high watermark is the log end', async () => {
    const ops = faultyFileOps();
    const clock = new ManualClock();
    const log = await openLog({ flush: 'interval', 'flush.interval.ms': 20 }, { ops, clock });
    expect(clock.pending).toBe(0); // nothing to flush: an idle log sets no timer
    const result = log.append(makeBatch({ records: 2 }));
    await result.durable; // already resolved: interval makes no per-append promise
    expect(log.highWatermark).toBe(2);
    clock.advance(19);
    expect([log.recoveryPoint, ops.counts.fdatasync]).toEqual([0, 0]);
    clock.advance(1);
    await vi.waitFor(() => expect(log.recoveryPoint).toBe(2), { timeout: 2000 });
    expect(ops.counts.fdatasync).toBeGreaterThanOrEqual(1);
  });

  it('flush=os: only flush() (or a roll or close) fsyncs', async () => {
    const ops = faultyFileOps();
    const clock = new ManualClock();
    const log = await openLog({ flush: 'os' }, { ops, clock });
    log.append(makeBatch());
    // No timer is set, so no time that passes makes an fsync.
    expect(clock.pending).toBe(0);
    clock.advance(3_600_000);
    expect(log.recoveryPoint).toBe(0);
    expect(ops.counts.fdatasync).toBe(0);
    await log.flush();
    expect(log.recoveryPoint).toBe(1);
    expect(ops.counts.fdatasync).toBe(1);
    await log.flush(); // nothing new: no fsync
    expect(ops.counts.fdatasync).toBe(1);
  });

  it('a failed write answers STORAGE_FULL (ENOSPC, retriable) or STORAGE_ERROR and leaves offsets and the file as they were', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'os' }, { ops });
    log.append(makeBatch({ records: 2 }));
    const file = log.segmentFileFor(0);
    const size = fs.statSync(file).size;
    for (const [code, answer] of [['ENOSPC', 'STORAGE_FULL'], ['EDQUOT', 'STORAGE_FULL'], ['EIO', 'STORAGE_ERROR']]) {
      ops.failWrites(code);
      let caught: unknown;
      try {
        log.append(makeBatch({ records: 3 }));
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(TributaryError);
      expect((caught as TributaryError).errorName).toBe(answer);
      expect((caught as TributaryError).retriable).toBe(true);
      expect((caught as TributaryError).message).toContain(code);
      expect(log.logEndOffset).toBe(2);
      expect(fs.statSync(file).size).toBe(size);
    }
    const next = makeBatch({ records: 1, fill: 9 });
    expect(log.append(next).baseOffset).toBe(2);
    expect(log.read(2, 1 << 20).equals(next)).toBe(true);
  });

  it('a full disk while a rolled segment is sealed does not fail the partition: its index files are skipped and rebuilt when needed', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'os', 'segment.bytes': 1024 }, { ops });
    const first = makeBatch({ records: 2, valueBytes: 300 });
    log.append(first);
    log.append(makeBatch({ records: 2, valueBytes: 300, fill: 1 })); // rolls
    // Every write of the seal meets ENOSPC (the roll's producer snapshot too).
    ops.failWrites('ENOSPC', 100);
    await log.flush();
    ops.failWrites('ENOSPC', 0);
    // (The offset index of so small a segment is empty: nothing to write, so only the time index fails.)
    expect(fs.existsSync(path.join(log.dir, '00000000000000000000.timeindex'))).toBe(false);
    expect(log.closedSegments()).toHaveLength(1);
    // Still writable, and the sealed segment still reads (its indexes rebuilt in memory).
    expect(log.append(makeBatch({ records: 1, fill: 2 })).baseOffset).toBe(4);
    await log.flush();
    expect(log.read(0, 1 << 20).equals(first)).toBe(true);
  });

  it('a failing read answers STORAGE_ERROR', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'os' }, { ops });
    log.append(makeBatch());
    const readSync = ops.readSync;
    ops.readSync = () => {
      throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
    };
    expect(errorName(() => log.read(0, 100))).toBe('STORAGE_ERROR');
    expect(errorName(() => log.offsetForTimestamp(0))).toBe('STORAGE_ERROR');
    ops.readSync = readSync;
    expect(splitBatches(log.read(0, 100))).toHaveLength(1);
  });

  it('a failed fsync rejects durable with STORAGE_ERROR and refuses further appends', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'batch' }, { ops });
    ops.failSyncs('EIO');
    const result = log.append(makeBatch());
    await expect(result.durable).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    expect(log.highWatermark).toBe(0);
    expect(errorName(() => log.append(makeBatch()))).toBe('STORAGE_ERROR');
    await expect(log.flush()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    ops.failSyncs(null);
    await expect(log.close()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
  });
});

describe('listeners', () => {
  it('are told after the log end advances, and can unsubscribe', async () => {
    const log = await openLog({ flush: 'os' });
    let calls = 0;
    const off = log.onAppend(() => {
      calls++;
      expect(log.logEndOffset).toBeGreaterThan(0);
    });
    log.append(makeBatch());
    log.append(makeBatch());
    await Promise.resolve();
    expect(calls).toBe(1); // coalesced: one wake-up per turn
    off();
    log.append(makeBatch());
    await Promise.resolve();
    expect(calls).toBe(1);
  });
});


describe('offsetForTimestamp within a request budget', () => {
  const t0 = 1_700_000_000_000;
  const MAX_MESSAGE_BYTES = 64 * 1024;

  /** The error a call throws: its name and, for a limit, its key. */
  function refusal(run: () => unknown): { name: string; limit?: string; message: string } {
    try {
      run();
    } catch (err) {
      if (err instanceof LimitReachedError) return { name: err.errorName, limit: err.limit, message: err.message };
      if (err instanceof TributaryError) return { name: err.errorName, message: err.message };
      throw err;
    }
    return { name: 'NONE', message: '' };
  }

  it('a bomb stored before produce checked records inflates no further than max.message.bytes, each time, until the budget is spent', async () => {
    const log = await openLog({ 'max.message.bytes': MAX_MESSAGE_BYTES, flush: 'os' });
    const bomb = gzipBomb(16 * 1024 * 1024, t0);
    expect(bomb.length).toBeLessThan(MAX_MESSAGE_BYTES);
    log.append(bomb);
    const budget = { decompressBytesLeft: 3 * MAX_MESSAGE_BYTES, scanBytesLeft: Number.POSITIVE_INFINITY };
    for (let i = 0; i < 3; i++) {
      const r = refusal(() => log.offsetForTimestamp(t0, budget));
      expect(r.name).toBe('CORRUPT_BATCH');
      expect(r.message).toMatch(/inflate past 65536 bytes, the topic's max\.message\.bytes/);
      expect(budget.decompressBytesLeft).toBe((2 - i) * MAX_MESSAGE_BYTES);
    }
    expect(refusal(() => log.offsetForTimestamp(t0, budget))).toMatchObject({ name: 'THROTTLED', limit: 'requestDecompressBytesMax' });
    // Without a request's budget (a tool), still within max.message.bytes.
    expect(refusal(() => log.offsetForTimestamp(t0)).name).toBe('CORRUPT_BATCH');
  });

  it('a budget below max.message.bytes stops the bomb there: THROTTLED, the budget spent', async () => {
    const log = await openLog({ 'max.message.bytes': MAX_MESSAGE_BYTES, flush: 'os' });
    log.append(gzipBomb(16 * 1024 * 1024, t0));
    const budget = { decompressBytesLeft: 10_000, scanBytesLeft: Number.POSITIVE_INFINITY };
    expect(refusal(() => log.offsetForTimestamp(t0, budget))).toMatchObject({ name: 'THROTTLED', limit: 'requestDecompressBytesMax' });
    expect(budget.decompressBytesLeft).toBe(0);
  });

  it('a legitimate gzip batch is found, and what it inflated is taken from the budget; an uncompressed one takes none', async () => {
    const log = await openLog({ flush: 'os' });
    const gzip = encodeBatch([0, 1, 2].map((i) => ({ key: null, value: Buffer.alloc(1000, i), timestamp: t0 + i })), { compression: Compression.Gzip });
    log.append(gzip);
    log.append(makeBatch({ records: 2, timestamp: t0 + 10 }));
    const budget = { decompressBytesLeft: MAX_MESSAGE_BYTES, scanBytesLeft: Number.POSITIVE_INFINITY };
    expect(log.offsetForTimestamp(t0 + 1, budget)).toEqual({ offset: 1, timestamp: t0 + 1 });
    const inflated = gunzipSync(gzip.subarray(BATCH_OVERHEAD)).length;
    expect(budget.decompressBytesLeft).toBe(MAX_MESSAGE_BYTES - inflated);
    expect(log.offsetForTimestamp(t0 + 10, budget)).toEqual({ offset: 3, timestamp: t0 + 10 });
    expect(budget.decompressBytesLeft).toBe(MAX_MESSAGE_BYTES - inflated);
  });

  it('what a lookup reads (headers walked, the batch) is taken from scanBytesLeft; past it THROTTLED naming requestScanBytesMax', async () => {
    const log = await openLog({ flush: 'os' });
    const batch = makeBatch({ records: 3, valueBytes: 500, timestamp: t0 });
    log.append(batch);
    const budget = { decompressBytesLeft: 0, scanBytesLeft: 10 * batch.length };
    expect(log.offsetForTimestamp(t0, budget)).toEqual({ offset: 0, timestamp: t0 });
    // One window of headers (the whole, small, segment) and the batch itself.
    expect(budget.scanBytesLeft).toBe(8 * batch.length);
    for (let i = 0; i < 4; i++) log.offsetForTimestamp(t0, budget);
    expect(budget.scanBytesLeft).toBe(0);
    expect(refusal(() => log.offsetForTimestamp(t0, budget))).toMatchObject({ name: 'THROTTLED', limit: 'requestScanBytesMax' });
    expect(refusal(() => log.offsetForTimestamp(t0, budget)).message).toMatch(/limits\.requestScanBytesMax/);
  });

  it('a long walk of headers is bounded too, by what it reads', async () => {
    // Device clocks that went back: only the last batch is at or after the time asked, and
    // the walk from the index's one entry passes every batch before it.
    const log = await openLog({ 'index.interval.bytes': 1024 * 1024, flush: 'os' });
    for (let i = 0; i < 2000; i++) log.append(makeBatch({ records: 1, valueBytes: 100, timestamp: t0 - i }));
    log.append(makeBatch({ records: 1, valueBytes: 100, timestamp: t0 + 5 }));
    expect(log.offsetForTimestamp(t0 + 1)).toEqual({ offset: 2000, timestamp: t0 + 5 });
    const budget = { decompressBytesLeft: 0, scanBytesLeft: 64 * 1024 };
    expect(log.sizeBytes).toBeGreaterThan(2 * budget.scanBytesLeft);
    expect(refusal(() => log.offsetForTimestamp(t0 + 1, budget))).toMatchObject({ name: 'THROTTLED', limit: 'requestScanBytesMax' });
  });

  it("the index files a lookup loads for a sealed segment are taken from scanBytesLeft, once", async () => {
    const config = { 'segment.bytes': 4096, 'index.interval.bytes': 256, flush: 'os' };
    const log = await openLog(config);
    for (let i = 0; i < 40; i++) log.append(makeBatch({ records: 2, valueBytes: 100, timestamp: t0 + 1000 * i, stepMs: 1 }));
    await log.close();
    const reopened = await openLog(config, { clean: true });
    expect(reopened.segmentCount).toBeGreaterThan(2);
    const cost = (): number => {
      const budget = { decompressBytesLeft: 0, scanBytesLeft: 1024 * 1024 };
      expect(reopened.offsetForTimestamp(t0 + 1, budget)).toEqual({ offset: 1, timestamp: t0 + 1 });
      return 1024 * 1024 - budget.scanBytesLeft;
    };
    const cold = cost();
    const warm = cost();
    const indexBytes = fs.statSync(path.join(dir, 't-0', '00000000000000000000.index')).size + fs.statSync(path.join(dir, 't-0', '00000000000000000000.timeindex')).size;
    expect(indexBytes).toBeGreaterThan(0);
    expect(cold - warm).toBe(indexBytes);
  });
});

describe('reads of cold sealed segments within a request budget', () => {
  const t0 = 1_700_000_000_000;
  /** An index entry per batch, so that the index files of a 4 KiB segment weigh ~1 KB. */
  const config = { 'segment.bytes': 4096, 'index.interval.bytes': 0, flush: 'os' };

  /** node:fs, noting every file opened and every read of an index file and of a log. */
  function trackingOps(): FileOps & { opened: string[]; indexReads: number; logReads: number } {
    const paths = new Map<number, string>();
    const ops = {
      ...nodeFileOps,
      opened: [] as string[],
      indexReads: 0,
      logReads: 0,
      openSync(file: string, flags: string): number {
        const fd = nodeFileOps.openSync(file, flags);
        paths.set(fd, file);
        ops.opened.push(file);
        return fd;
      },
      readSync(fd: number, buffer: Buffer, offset: number, length: number, position: number): number {
        const file = paths.get(fd) ?? '';
        if (file.endsWith('index')) ops.indexReads++;
        if (file.endsWith('.log')) ops.logReads++;
        return nodeFileOps.readSync(fd, buffer, offset, length, position);
      },
    };
    return ops;
  }

  /** A log of several sealed 4 KiB segments, reopened so that none is in memory. */
  async function coldLog(ops: FileOps): Promise<PartitionLog> {
    const log = await openLog(config);
    for (let i = 0; log.segmentCount < 4; i++) log.append(makeBatch({ records: 1, valueBytes: 40, timestamp: t0 + i, fill: i }));
    await log.close();
    return openLog(config, { clean: true, ops });
  }

  const indexFilesBytes = (base: number): number =>
    ['.index', '.timeindex'].reduce((n, suffix) => n + fs.statSync(path.join(dir, 't-0', `${String(base).padStart(20, '0')}${suffix}`)).size, 0);

  function budgetOf(scanBytesLeft: number, scanBytesMax = 1024 * 1024) {
    return { decompressBytesLeft: 0, scanBytesLeft, scanBytesMax };
  }

  it('pays the index files before reading them: refused, it reads none and opens no log; warm, it costs nothing', async () => {
    const ops = trackingOps();
    const log = await coldLog(ops);
    const cost = indexFilesBytes(0);
    expect(cost).toBeGreaterThan(500);
    // What the open's checks read is not this read's.
    ops.opened.length = 0;
    ops.indexReads = 0;
    const poor = budgetOf(cost - 1);
    expect(errorName(() => log.read(0, 1024, log.highWatermark, poor))).toBe('THROTTLED');
    expect(poor.scanBytesLeft).toBe(0);
    expect(ops.indexReads).toBe(0);
    expect(ops.opened.filter((f) => f.endsWith('.log'))).toEqual([]);
    const enough = budgetOf(cost);
    expect(log.read(0, 1024, log.highWatermark, enough).length).toBeGreaterThan(0);
    expect(enough.scanBytesLeft).toBe(0);
    expect(ops.indexReads).toBeGreaterThan(0);
    const warm = budgetOf(0);
    expect(log.read(1, 1024, log.highWatermark, warm).length).toBeGreaterThan(0);
    expect(log.read(0, 1024)).toEqual(log.read(0, 1024, log.highWatermark, budgetOf(0)));
  });

  it('indexes larger than a whole budget still open for a request that has read nothing else, and spend it', async () => {
    const log = await coldLog(nodeFileOps);
    const cost = indexFilesBytes(0);
    const small = budgetOf(cost - 100, cost - 100);
    expect(log.read(0, 1024, log.highWatermark, small).length).toBeGreaterThan(0);
    expect(small.scanBytesLeft).toBe(0);
    const base = log.segmentBaseOffsets()[1];
    const touched = budgetOf(cost - 101, cost - 100);
    expect(errorName(() => log.read(base, 1024, log.highWatermark, touched))).toBe('THROTTLED');
  });

  it('a segment without index files pays the scan that rebuilds them; refused, a later request opens it', async () => {
    const ops = trackingOps();
    const log = await coldLog(ops);
    for (const suffix of ['.index', '.timeindex']) fs.rmSync(path.join(dir, 't-0', `${'0'.padStart(20, '0')}${suffix}`));
    ops.logReads = 0;
    const touched = budgetOf(1000, 1024 * 1024);
    expect(errorName(() => log.read(0, 1024, log.highWatermark, touched))).toBe('THROTTLED');
    expect(ops.logReads).toBe(0);
    const fresh = budgetOf(64 * 1024, 64 * 1024);
    expect(log.read(0, 1024, log.highWatermark, fresh).length).toBeGreaterThan(0);
    expect(64 * 1024 - fresh.scanBytesLeft).toBe(fs.statSync(path.join(dir, 't-0', `${'0'.padStart(20, '0')}.log`)).size);
  });

  it('bad index files are removed before their rebuild is paid, so that a refused request leaves a segment the next one opens', async () => {
    const log = await coldLog(nodeFileOps);
    const indexFile = path.join(dir, 't-0', `${'0'.padStart(20, '0')}.index`);
    // Entries out of order: the file decodes as unusable.
    fs.writeFileSync(indexFile, Buffer.alloc(fs.statSync(indexFile).size, 0xff));
    const cost = indexFilesBytes(0);
    const paysFilesOnly = budgetOf(cost + 10);
    expect(errorName(() => log.read(0, 1024, log.highWatermark, paysFilesOnly))).toBe('THROTTLED');
    expect(fs.existsSync(indexFile)).toBe(false);
    expect(log.read(0, 1024, log.highWatermark, budgetOf(64 * 1024, 64 * 1024)).length).toBeGreaterThan(0);
  });
});
