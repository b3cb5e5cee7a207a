import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Compression, computeCrc, decodeBatch, encodeBatch, lastOffsetOf, OFFSET_ATTRIBUTES, OFFSET_CRC, splitBatches } from '../../protocol/record-batch.js';
import { silentLogger } from '../logger.js';
import { ConsumerOffsets, CONSUMER_OFFSETS_TOPIC } from '../groups/offsets-store.js';
import { compactPartition } from './cleaner.js';
import type { CompactionResult } from './cleaner.js';
import { parseTopicConfig } from './config.js';
import { nodeFileOps } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { CLEAN_SHUTDOWN_FILE, LogManager } from './log-manager.js';
import { PartitionLog } from './partition-log.js';
import type { OpenPartitionOptions } from './partition-log.js';
import { RECOVERY_CHECKPOINT_FILE } from './checkpoint.js';
import { seededRandom, segmentFiles } from './testing.js';
import { usePartitionFixture } from './partition.fixture.js';

const T0 = 1_700_000_000_000;
const DAY_MS = 24 * 60 * 60 * 1000;

interface Rec {
  offset: number;
  key: string | null;
  value: string | null;
  timestamp: number;
}

const fx = usePartitionFixture();

const COMPACT = { 'cleanup.policy': 'compact', 'segment.bytes': 1024, flush: 'os' } as const;

async function openLog(config: Record<string, string | number> = COMPACT, options: OpenPartitionOptions = {}): Promise<PartitionLog> {
  return fx.open(config, options);
}

async function reopen(log: PartitionLog, options: OpenPartitionOptions = {}, config: Record<string, string | number> = COMPACT): Promise<PartitionLog> {
  await log.close().catch(() => undefined);
  return openLog(config, options);
}

function batchOf(records: { key: string | null; value: string | null; timestamp: number }[], options: Parameters<typeof encodeBatch>[1] = {}): Buffer {
  return encodeBatch(
    records.map((r) => ({ key: r.key === null ? null : Buffer.from(r.key), value: r.value === null ? null : Buffer.from(r.value), timestamp: r.timestamp })),
    options,
  );
}

/** Every record of the log, in order, read as a consumer would (through read()). */
function readAll(log: PartitionLog, from = log.logStartOffset): Rec[] {
  const out: Rec[] = [];
  let offset = from;
  while (offset < log.logEndOffset) {
    const batches = splitBatches(log.read(offset, 64 * 1024, log.logEndOffset));
    if (batches.length === 0) break;
    for (const batch of batches) {
      for (const r of decodeBatch(batch).records) {
        if (r.offset < from) continue;
        out.push({ offset: r.offset, key: r.key === null ? null : r.key.toString(), value: r.value === null ? null : r.value.toString(), timestamp: r.timestamp });
      }
      offset = lastOffsetOf(batch) + 1;
    }
  }
  return out;
}

/**
 * Appends `rounds` rounds of writes of `keys` keys (3 records a batch, keys interleaved),
 * rolling segments as they fill; returns what was written, in offset order.
 */
function writeRounds(log: PartitionLog, keys: number, rounds: number, startTs = T0): Rec[] {
  const written: Rec[] = [];
  let ts = startTs;
  const pending: { key: string; value: string; timestamp: number }[] = [];
  const flushPending = (): void => {
    if (pending.length === 0) return;
    const result = log.append(batchOf(pending));
    pending.forEach((r, i) => written.push({ offset: result.baseOffset + i, ...r }));
    pending.length = 0;
  };
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < keys; k++) {
      pending.push({ key: `key-${k}`, value: `v${round}-${k}-${'x'.repeat(40)}`, timestamp: ts++ });
      if (pending.length === 3) flushPending();
    }
  }
  flushPending();
  return written;
}

/** What a compaction up to `mapEnd` keeps: the newest per key, and all at or above `activeBase`. */
function survivors(written: Rec[], activeBase: number): Rec[] {
  const newest = new Map<string | null, number>();
  for (const r of written) newest.set(r.key, r.offset);
  return written.filter((r) => r.offset >= activeBase || r.key === null || newest.get(r.key) === r.offset);
}

function activeBaseOf(log: PartitionLog): number {
  const bases = log.segmentBaseOffsets();
  return bases[bases.length - 1];
}

/** Rolled segments get sealed (and become closed) at the next sync. */
async function settle(log: PartitionLog): Promise<void> {
  await log.flush();
  await log.checkpoint();
}

describe('compactPartition', () => {
  it('keeps the newest value of each key at its offset, leaves the active segment alone, and shrinks the log', async () => {
    const log = await openLog();
    const written = writeRounds(log, 7, 12);
    await settle(log);
    const activeBase = activeBaseOf(log);
    expect(log.closedSegments().length).toBeGreaterThan(3);
    const activeFile = log.segmentFileFor(activeBase);
    const activeBytes = fs.readFileSync(activeFile);
    const sizeBefore = log.sizeBytes;
    const endBefore = log.logEndOffset;

    const result = await compactPartition(log, { now: () => T0 });

    const expected = survivors(written, activeBase);
    expect(readAll(log)).toEqual(expected);
    expect(expected.length).toBeLessThan(written.length / 2);
    expect(result.recordsRemoved).toBe(written.length - expected.length);
    expect(result.segmentsCleaned).toBeGreaterThan(0);
    expect(result.bytesAfter).toBeLessThan(result.bytesBefore);
    expect(log.sizeBytes).toBe(sizeBefore - (result.bytesBefore - result.bytesAfter));
    expect(fs.readFileSync(activeFile).equals(activeBytes)).toBe(true);
    expect(log.logEndOffset).toBe(endBefore);
    expect(log.logStartOffset).toBe(0);
    expect(fs.readdirSync(fx.partitionDir).filter((n) => /cleaned|swap|\.tmp-/.test(n))).toEqual([]);

    // A second run on an unchanged log does not read it, nor after a small append (less
    // than half the log is new: Kafka's min.cleanable.dirty.ratio).
    const again = await compactPartition(log, { now: () => T0 });
    expect(again.passes).toBe(0);
    log.append(batchOf([{ key: 'fresh', value: 'x', timestamp: T0 + 5000 }]));
    const third = await compactPartition(log, { now: () => T0 });
    expect(third.passes).toBe(0);
    expect(readAll(log)).toEqual([...expected, { offset: endBefore, key: 'fresh', value: 'x', timestamp: T0 + 5000 }]);
    // Once half the log is new it reads it again. The segment that was active is closed
    // now: its older values of a key go, and every key is left once, at its newest offset.
    const cleanBytes = log.sizeBytes;
    for (let i = 0; log.sizeBytes < 2 * cleanBytes + 100; i++) log.append(batchOf([{ key: `new-${i}`, value: 'y'.repeat(50), timestamp: T0 + 6000 }]));
    await settle(log);
    const fourth = await compactPartition(log, { now: () => T0 });
    expect(fourth.passes).toBe(1);
    const closedEnd = log.segmentBaseOffsets()[log.closedSegments().length];
    const inClosed = readAll(log).filter((r) => r.offset < closedEnd);
    const newest = new Map(written.map((r) => [r.key, r.offset]));
    for (const r of inClosed.filter((x) => newest.has(x.key))) expect(r.offset, `key ${r.key}`).toBe(newest.get(r.key));
  });

  it('a read at a removed offset starts at the next survivor; ListOffsets by time lands on survivors', async () => {
    const log = await openLog();
    const written = writeRounds(log, 5, 10);
    await settle(log);
    const expected = survivors(written, activeBaseOf(log));
    await compactPartition(log, { now: () => T0 });
    const kept = new Set(expected.map((r) => r.offset));
    let checkedRemoved = 0;
    for (let offset = 0; offset < log.logEndOffset; offset++) {
      // Every start offset, removed or not, yields exactly the survivors from it on.
      const next = expected.find((r) => r.offset >= offset);
      const got = readAll(log, offset);
      expect(got[0]?.offset, `read at ${offset}`).toBe(next?.offset);
      if (!kept.has(offset)) checkedRemoved++;
    }
    expect(checkedRemoved).toBeGreaterThan(10);
    for (const target of [T0 - 5, T0, T0 + 3, T0 + 17, T0 + 30, T0 + 44, T0 + 49, T0 + 1000]) {
      const want = expected.find((r) => r.timestamp >= target);
      expect(log.offsetForTimestamp(target), `timestamp ${target}`).toEqual(want === undefined ? null : { offset: want.offset, timestamp: want.timestamp });
    }
  });

  it('the survivors stay at their offsets across a clean restart, an unclean one, and a full rescan', async () => {
    let log = await openLog();
    const written = writeRounds(log, 6, 10);
    await settle(log);
    const expected = survivors(written, activeBaseOf(log));
    await compactPartition(log, { now: () => T0 });
    expect(readAll(log)).toEqual(expected);

    log = await reopen(log, { clean: true });
    expect(log.recovery.rebuiltIndexes).toEqual([]);
    expect(readAll(log)).toEqual(expected);

    log = await reopen(log, { clean: false });
    expect(readAll(log)).toEqual(expected);

    // Without a checkpoint every segment is scanned batch by batch: gaps are no corruption.
    await log.close();
    fs.unlinkSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE));
    log = await openLog(COMPACT, { clean: false });
    expect(log.recovery.truncatedBytes).toBe(0);
    expect(log.recovery.deletedSegments).toEqual([]);
    expect(readAll(log)).toEqual(expected);
    const next = log.append(batchOf([{ key: 'key-0', value: 'after', timestamp: T0 + 999 }]));
    expect(next.baseOffset).toBe(written.length);
  });

  it('keeps a tombstone while younger than delete.retention.ms and removes it after; older values go in both cases', async () => {
    const log = await openLog({ ...COMPACT, 'delete.retention.ms': DAY_MS });
    const written: Rec[] = [];
    const put = (key: string, value: string | null, timestamp: number): void => {
      const r = log.append(batchOf([{ key, value, timestamp }, { key: `filler-${written.length}`, value: 'f'.repeat(200), timestamp }]));
      written.push({ offset: r.baseOffset, key, value, timestamp }, { offset: r.baseOffset + 1, key: `filler-${written.length}`, value: 'f'.repeat(200), timestamp });
    };
    put('gone', 'v1', T0);
    put('gone', 'v2', T0 + 1);
    put('stays', 'v1', T0 + 2);
    put('gone', null, T0 + 3);
    for (let i = 0; i < 8; i++) put(`other-${i}`, 'x', T0 + 10 + i);
    await settle(log);
    const tombstone = written.find((r) => r.key === 'gone' && r.value === null) as Rec;
    expect(tombstone.offset).toBeLessThan(log.closedSegments()[log.closedSegments().length - 1].baseOffset + 1);

    const young = await compactPartition(log, { now: () => T0 + 1000 });
    expect(young.tombstonesRemoved).toBe(0);
    let records = readAll(log);
    expect(records.filter((r) => r.key === 'gone')).toEqual([tombstone]);
    expect(records.filter((r) => r.key === 'stays').map((r) => r.value)).toEqual(['v1']);

    // Nothing appended, the tombstone not due yet: the log is not even read again.
    expect((await compactPartition(log, { now: () => T0 + DAY_MS - 1000 })).passes).toBe(0);
    const old = await compactPartition(log, { now: () => T0 + 2 * DAY_MS });
    expect(old.tombstonesRemoved).toBe(1);
    records = readAll(log);
    expect(records.filter((r) => r.key === 'gone')).toEqual([]);
    expect(records.filter((r) => r.key === 'stays').map((r) => r.value)).toEqual(['v1']);
  });

  it('appends go on while it runs and land after the log end it started from', async () => {
    const log = await openLog();
    const written = writeRounds(log, 8, 20);
    await settle(log);
    const endAtStart = log.logEndOffset;
    const activeBase = activeBaseOf(log);
    let done = false;
    const running = compactPartition(log, { now: () => T0 }).then((r) => {
      done = true;
      return r;
    });
    const appended: Rec[] = [];
    let turns = 0;
    while (!done && turns < 10_000) {
      const rec = { key: `key-${turns % 8}`, value: `late-${turns}`, timestamp: T0 + 100_000 + turns };
      const result = log.append(batchOf([rec]));
      // Never blocked behind the cleaner: the offset is assigned at once, in order.
      expect(result.baseOffset).toBe(endAtStart + appended.length);
      appended.push({ offset: result.baseOffset, ...rec });
      turns++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const result: CompactionResult = await running;
    expect(appended.length).toBeGreaterThan(1);
    expect(result.segmentsCleaned).toBeGreaterThan(0);
    // The cleaner's map ends at the log end when its job started (a few late appends may
    // be in it), so exactly which late records it saw is timing; what must hold is:
    const all = [...written, ...appended];
    const records = readAll(log);
    // every record read is one that was written, at its offset, in order;
    expect(records).toEqual(all.filter((r) => records.some((got) => got.offset === r.offset)));
    // every key's newest record survives, and so do the late appends in the active segment;
    for (const r of survivors(all, activeBaseOf(log))) expect(records).toContainEqual(r);
    // every value superseded before the run, in a segment closed at its start, is gone.
    const superseded = written.filter((r) => r.offset < activeBase && !survivors(written, activeBase).includes(r));
    for (const r of superseded) expect(records).not.toContainEqual(r);
  });

  it('deletes segments of which nothing survives, but never the first one (the log start offset)', async () => {
    let log = await openLog();
    // The second round rewrites every key of the first: the first round's segments empty.
    const written = writeRounds(log, 40, 2);
    await settle(log);
    const activeBase = activeBaseOf(log);
    const expected = survivors(written, activeBase);
    const basesBefore = log.segmentBaseOffsets();
    const emptied = basesBefore.filter((b, i) => i + 1 < basesBefore.length && basesBefore[i + 1] <= expected[0].offset);
    expect(emptied.length).toBeGreaterThan(2);
    await compactPartition(log, { now: () => T0 });
    const basesAfter = log.segmentBaseOffsets();
    expect(basesAfter).toEqual(basesBefore.filter((b) => b === 0 || !emptied.includes(b)));
    expect(fs.statSync(log.segmentFileFor(0)).size).toBe(0);
    expect(log.logStartOffset).toBe(0);
    expect(readAll(log)).toEqual(expected);
    expect(log.offsetForTimestamp(T0)?.offset).toBe(expected[0].offset);
    // A read inside a deleted segment's range goes on at the next survivor.
    for (let offset = 0; offset < expected[0].offset + 3; offset++) {
      expect(readAll(log, offset)[0]?.offset, `read at ${offset}`).toBe(expected.find((r) => r.offset >= offset)?.offset);
    }
    for (const clean of [true, false]) {
      log = await reopen(log, { clean });
      expect(log.segmentBaseOffsets()).toEqual(basesAfter);
      expect(readAll(log)).toEqual(expected);
    }
    await log.close();
    fs.unlinkSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE));
    log = await openLog(COMPACT, { clean: false });
    expect(log.recovery.deletedSegments).toEqual([]);
    expect(readAll(log)).toEqual(expected);
  });

  it('maps at most keysMax keys a pass and still cleans every key over several passes', async () => {
    const log = await openLog();
    const written = writeRounds(log, 20, 6);
    await settle(log);
    const expected = survivors(written, activeBaseOf(log));
    const result = await compactPartition(log, { now: () => T0, keysMax: 4 });
    expect(result.passes).toBeGreaterThan(3);
    expect(readAll(log)).toEqual(expected);
  });

  it('thins gzip batches and keeps records without a key', async () => {
    const log = await openLog();
    const written: Rec[] = [];
    for (let i = 0; i < 30; i++) {
      const recs = [
        { key: `k${i % 3}`, value: `gz-${i}-${'y'.repeat(60)}`, timestamp: T0 + i },
        { key: null, value: `nokey-${i}`, timestamp: T0 + i },
      ];
      const r = log.append(batchOf(recs, { compression: Compression.Gzip }));
      recs.forEach((rec, j) => written.push({ offset: r.baseOffset + j, ...rec }));
    }
    await settle(log);
    const expected = survivors(written, activeBaseOf(log));
    const result = await compactPartition(log, { now: () => T0 });
    expect(result.recordsRemoved).toBeGreaterThan(0);
    expect(readAll(log)).toEqual(expected);
    expect(expected.filter((r) => r.key === null).length).toBe(30);
  });

  /** Appends `batch`, rounds of keyed records after it, compacts: the batch is kept byte for byte, the rest compacted. */
  async function expectKeptWhole(batch: Buffer, config: Record<string, string | number> = COMPACT): Promise<void> {
    const log = await openLog(config);
    const at = log.append(Buffer.from(batch)).baseOffset;
    // Newer values of key-0 follow: had a batch of key-0 been inflated, its record would be removed.
    const written = writeRounds(log, 4, 10, T0 + 1);
    await settle(log);
    const result = await compactPartition(log, { now: () => T0 });
    expect(result.undecodableBatches).toBe(1);
    expect(result.recordsRemoved).toBeGreaterThan(0);
    const first = splitBatches(log.read(at, 1, log.logEndOffset))[0];
    expect(first.subarray(OFFSET_ATTRIBUTES).equals(batch.subarray(OFFSET_ATTRIBUTES))).toBe(true);
    expect(readAll(log, at + 1)).toEqual(survivors(written, activeBaseOf(log)));
  }

  it('keeps whole a batch compressed with a codec it cannot decompress', async () => {
    // A snappy-flagged batch: the node stores it without decompressing, so does the cleaner.
    const snappy = batchOf([{ key: 'k', value: 'opaque', timestamp: T0 }]);
    snappy.writeInt16BE(Compression.Snappy, OFFSET_ATTRIBUTES);
    snappy.writeUInt32BE(computeCrc(snappy), OFFSET_CRC);
    await expectKeptWhole(snappy);
  });

  it('keeps whole a gzip batch whose records inflate past max.message.bytes (stored before produce checked records)', async () => {
    // 20 KB of records in ~100 bytes of gzip: an append checks headers and CRC, not records.
    const big = batchOf([{ key: 'key-0', value: 'z'.repeat(20_000), timestamp: T0 }], { compression: Compression.Gzip });
    expect(big.length).toBeLessThan(4096);
    await expectKeptWhole(big, { ...COMPACT, 'max.message.bytes': 4096 });
  });

  it('does nothing to a topic with cleanup.policy=delete', async () => {
    const log = await openLog({ ...COMPACT, 'cleanup.policy': 'delete' });
    const written = writeRounds(log, 4, 10);
    await settle(log);
    const result = await compactPartition(log, { now: () => T0 });
    expect(result.segmentsCleaned).toBe(0);
    expect(readAll(log)).toEqual(written);
  });

  it('an idempotent producer goes on after a restart that replays thinned batches', async () => {
    let log = await openLog();
    const producer = { producerId: 7, producerEpoch: 0 };
    let sequence = 0;
    for (let i = 0; i < 12; i++) {
      // Each producer batch holds a key that a later plain batch overwrites: it gets thinned.
      const recs = [
        { key: `p-${i}`, value: 'a'.repeat(100), timestamp: T0 + i },
        { key: `shadowed-${i}`, value: 'b'.repeat(100), timestamp: T0 + i },
      ];
      log.append(batchOf(recs, { ...producer, baseSequence: sequence }));
      sequence += recs.length;
      log.append(batchOf([{ key: `shadowed-${i}`, value: 'newer', timestamp: T0 + i }]));
    }
    // Roll so the producer's last batch is in a closed segment.
    for (let i = 0; i < 12; i++) log.append(batchOf([{ key: `pad-${i}`, value: 'p'.repeat(200), timestamp: T0 + 100 + i }]));
    await settle(log);
    const result = await compactPartition(log, { now: () => T0 });
    expect(result.recordsRemoved).toBeGreaterThanOrEqual(11);
    await log.close();
    // No snapshot: the producer state is rebuilt from every batch, thinned ones included.
    for (const name of fs.readdirSync(fx.partitionDir)) if (name.endsWith('.snapshot')) fs.unlinkSync(path.join(fx.partitionDir, name));
    log = await openLog(COMPACT, { clean: false });
    const next = log.append(batchOf([{ key: 'p-next', value: 'c', timestamp: T0 + 500 }], { ...producer, baseSequence: sequence }));
    expect(next.duplicate).toBeUndefined();
    expect(next.baseOffset).toBe(log.logEndOffset - 1);
  });

  it('stops early, without leftovers, when the log closes under it', async () => {
    const log = await openLog();
    const written = writeRounds(log, 6, 60);
    await settle(log);
    const running = compactPartition(log, { now: () => T0 });
    await new Promise((resolve) => setImmediate(resolve));
    await log.close();
    const result = await running;
    expect(result.stoppedEarly).toBe(true);
    expect(fs.readdirSync(fx.partitionDir).filter((n) => /cleaned|swap|\.tmp-/.test(n))).toEqual([]);
    const reopened = await openLog(COMPACT, { clean: true });
    const records = readAll(reopened);
    // Whatever was swapped in is compacted; every key's newest value is there.
    const newest = survivors(written, Number.POSITIVE_INFINITY);
    expect(records.length).toBeGreaterThanOrEqual(survivors(written, activeBaseOf(reopened)).length);
    for (const r of survivors(written, 0).filter((r) => newest.includes(r))) expect(records).toContainEqual(r);
  });
});

// ---------------------------------------------------------------------------------------
// Crashes in the middle of a swap

/** node:fs that dies (every later change fails, as if the process was killed) at the n-th rename or unlink. */
function dyingFileOps(): FileOps & { dieAt(step: number): void; steps: number } {
  let dieAt = Number.POSITIVE_INFINITY;
  let dead = false;
  const state = { steps: 0 };
  const check = (): void => {
    if (dead) throw Object.assign(new Error('EIO: process is gone'), { code: 'EIO' });
  };
  const step = (): void => {
    check();
    state.steps++;
    if (state.steps >= dieAt) {
      dead = true;
      check();
    }
  };
  return {
    ...nodeFileOps,
    openSync(file, flags) {
      if (flags !== 'r') check();
      return nodeFileOps.openSync(file, flags);
    },
    writeSync(...args) {
      check();
      return nodeFileOps.writeSync(...args);
    },
    ftruncateSync(fd, length) {
      check();
      nodeFileOps.ftruncateSync(fd, length);
    },
    unlinkSync(file) {
      step();
      nodeFileOps.unlinkSync(file);
    },
    async fdatasync(fd) {
      check();
      return nodeFileOps.fdatasync(fd);
    },
    async fsync(fd) {
      check();
      return nodeFileOps.fsync(fd);
    },
    async rename(from, to) {
      step();
      return nodeFileOps.rename(from, to);
    },
    async rm(target) {
      check();
      return nodeFileOps.rm(target);
    },
    get steps() {
      return state.steps;
    },
    dieAt(n: number) {
      state.steps = 0;
      dieAt = n;
    },
  };
}

describe('a crash during compaction', () => {
  it('leaves, after recovery, each segment either as it was or compacted: no hole, no duplicate', async () => {
    // The second round of writes supersedes the first: its segments are rewritten, 7
    // renames and unlinks each. A run without a crash counts them; then one run crashes
    // at each of them in turn.
    let steps = 0;
    for (let crashAt = 0; crashAt <= steps; crashAt++) {
      const caseDir = path.join(fx.dir, `crash-${crashAt}`);
      const ops = dyingFileOps();
      const log = await PartitionLog.open(caseDir, 't', 0, parseTopicConfig(COMPACT), { ops });
      const written = writeRounds(log, 30, 2);
      await settle(log);
      const activeBase = activeBaseOf(log);
      const compacted = survivors(written, activeBase);
      ops.dieAt(crashAt === 0 ? Number.POSITIVE_INFINITY : crashAt);
      const failed = await compactPartition(log, { now: () => T0 }).then(
        () => false,
        () => true,
      );
      if (crashAt === 0) {
        steps = ops.steps;
        expect(steps).toBeGreaterThanOrEqual(14);
        expect(failed).toBe(false);
      } else {
        expect(failed, `crash at step ${crashAt}`).toBe(true);
      }
      await log.close().catch(() => undefined);

      const recovered = await PartitionLog.open(caseDir, 't', 0, parseTopicConfig(COMPACT), { clean: false });
      fx.track(recovered);
      const records = readAll(recovered);
      const bases = recovered.segmentBaseOffsets();
      expect(recovered.logEndOffset, `crash at step ${crashAt}`).toBe(written.length);
      for (let i = 0; i < bases.length; i++) {
        const inSegment = (r: Rec): boolean => r.offset >= bases[i] && (i + 1 === bases.length || r.offset < bases[i + 1]);
        const got = records.filter(inSegment);
        const before = written.filter(inSegment);
        const after = compacted.filter(inSegment);
        expect([before, after], `crash at step ${crashAt}, segment ${bases[i]}`).toContainEqual(got);
      }
      expect(fs.readdirSync(caseDir).filter((n) => /cleaned|swap|\.tmp-/.test(n)), `crash at step ${crashAt}`).toEqual([]);
      // And a compaction after recovery finishes the job.
      await compactPartition(recovered, { now: () => T0 });
      expect(readAll(recovered)).toEqual(compacted);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Internal compacted topics

describe('__consumer_offsets', () => {
  it('loads the same committed offsets after compaction and a restart (clean and unclean)', async () => {
    const dataDir = path.join(fx.dir, 'data');
    let logs = await LogManager.open(dataDir, { defaults: { 'segment.bytes': 1024 } });
    try {
      let offsets = await ConsumerOffsets.open(logs, silentLogger);
      const random = seededRandom(5);
      const want = new Map<string, number>();
      for (let i = 0; i < 300; i++) {
        const group = `g${Math.floor(random() * 3)}`;
        const partition = Math.floor(random() * 4);
        const offset = i * 10;
        await offsets.commit(group, [{ topic: 'sensors', partition, offset, metadata: `m${i}` }], T0 + i);
        want.set(`${group}/${partition}`, offset);
      }
      const log = logs.partition(CONSUMER_OFFSETS_TOPIC, 0) as PartitionLog;
      await settle(log);
      expect(log.closedSegments().length).toBeGreaterThan(3);
      const sizeBefore = log.sizeBytes;
      const result = await compactPartition(log, { now: () => T0 });
      expect(result.recordsRemoved).toBeGreaterThan(200);
      expect(log.sizeBytes).toBeLessThan(sizeBefore / 2);

      const check = (store: ConsumerOffsets): void => {
        for (const [gp, offset] of want) {
          const [group, partition] = gp.split('/');
          expect(store.committed(group, 'sensors', Number(partition))?.offset, gp).toBe(offset);
        }
        expect(store.groupIds().sort()).toEqual([...new Set([...want.keys()].map((k) => k.split('/')[0]))].sort());
      };
      await logs.close();
      logs = await LogManager.open(dataDir, { defaults: { 'segment.bytes': 1024 } });
      expect(logs.recoveryReport.clean).toBe(true);
      offsets = await ConsumerOffsets.open(logs, silentLogger);
      check(offsets);

      await logs.close();
      fs.unlinkSync(path.join(dataDir, CLEAN_SHUTDOWN_FILE));
      logs = await LogManager.open(dataDir, { defaults: { 'segment.bytes': 1024 } });
      expect(logs.recoveryReport.clean).toBe(false);
      check(await ConsumerOffsets.open(logs, silentLogger));
      expect(segmentFiles(path.join(dataDir, `${CONSUMER_OFFSETS_TOPIC}-0`), '.log').length).toBeGreaterThan(3);
    } finally {
      await logs.close();
    }
  });
});
