// Faults around the background jobs that a review found (each failed before its fix): bad
// batches in compacted topics, tombstones and batches the cleaner cannot read, shutdown in
// the middle of a compaction, a topic deletion that fails part way, retention racing the
// high watermark, and a cleaner swap that fails after its commit.

import * as path from 'node:path';
import { expect, it } from 'vitest';
import { computeCrc, decodeBatch, encodeBatch, lastOffsetOf, OFFSET_ATTRIBUTES, OFFSET_CRC, splitBatches } from '../../protocol/record-batch.js';
import { silentLogger } from '../logger.js';
import { Scheduler } from '../scheduler.js';
import { compactPartition, type CompactionResult } from './cleaner.js';
import { nodeFileOps, type FileOps } from './file-ops.js';
import { LogManager } from './log-manager.js';
import { usePartitionFixture } from './partition.fixture.js';
import { PartitionLog, type OpenPartitionOptions } from './partition-log.js';
import { applyRetention } from './retention.js';
import { until } from '../../test/helpers/until.js';

const T0 = 1_700_000_000_000;
const DAY_MS = 24 * 60 * 60 * 1000;

const fx = usePartitionFixture();

const COMPACT = { 'cleanup.policy': 'compact', 'segment.bytes': 1024, flush: 'os' } as const;

async function openLog(config: Record<string, string | number> = COMPACT, options: OpenPartitionOptions = {}): Promise<PartitionLog> {
  return fx.open(config, options);
}

function batchOf(records: { key: string | null; value: string | null; timestamp: number }[]): Buffer {
  return encodeBatch(records.map((r) => ({ key: r.key === null ? null : Buffer.from(r.key), value: r.value === null ? null : Buffer.from(r.value), timestamp: r.timestamp })));
}

/** Sets the codec bits of a batch and recomputes the CRC: what any client can send. */
function withCodec(batch: Buffer, codec: number): Buffer {
  const out = Buffer.from(batch);
  out.writeInt16BE((out.readInt16BE(OFFSET_ATTRIBUTES) & ~0x07) | codec, OFFSET_ATTRIBUTES);
  out.writeUInt32BE(computeCrc(out), OFFSET_CRC);
  return out;
}

/** key -> value of the newest record per key, as a consumer reading the whole log rebuilds its table. */
function table(log: PartitionLog): Map<string, string | null> {
  const out = new Map<string, string | null>();
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const batches = splitBatches(log.read(offset, 64 * 1024, log.logEndOffset));
    if (batches.length === 0) break;
    for (const batch of batches) {
      let records;
      try {
        records = decodeBatch(batch).records;
      } catch {
        // A snappy batch this test tagged by hand: its records are plain, read them as such.
        records = decodeBatch(withCodec(batch, 0)).records;
      }
      for (const r of records) if (r.key !== null) out.set(r.key.toString(), r.value === null ? null : r.value.toString());
      offset = lastOffsetOf(batch) + 1;
    }
  }
  for (const [k, v] of out) if (v === null) out.delete(k);
  return out;
}

/** Fills segments with `rounds` rewrites of `keys` keys, so the closed segments hold superseded records. */
function fill(log: PartitionLog, keys: number, rounds: number, ts = T0): void {
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < keys; k++) log.append(batchOf([{ key: `key-${k}`, value: `v${round}-${'x'.repeat(60)}`, timestamp: ts++ }]));
  }
}

async function settle(log: PartitionLog): Promise<void> {
  await log.flush();
  await log.checkpoint();
}

// ---------------------------------------------------------------------------------------
// F1: one batch with a valid CRC whose records do not parse (the produce path never looks
// inside a batch) makes every compaction run of the partition fail, for ever.

it('F1: a batch produce accepted but the cleaner cannot parse does not stop compaction of the rest of the log', async () => {
  const log = await openLog();
  fill(log, 4, 10);
  // Gzip flag on a plain payload: valid length, magic, CRC and count, so append() takes it.
  log.append(withCodec(batchOf([{ key: 'poison', value: 'p', timestamp: T0 }]), 1));
  fill(log, 4, 10, T0 + 1000);
  await settle(log);
  expect(log.closedSegments().length).toBeGreaterThan(3);
  const sizeBefore = log.sizeBytes;
  let result: CompactionResult | null = null;
  let error: unknown = null;
  try {
    result = await compactPartition(log, { now: () => T0 + 10_000 });
  } catch (err) {
    error = err;
  }
  // On dab9bbb: CORRUPT_BATCH from the offset map, nothing is compacted, at every run.
  expect(error).toBeNull();
  expect(result?.recordsRemoved ?? 0).toBeGreaterThan(0);
  expect(log.sizeBytes).toBeLessThan(sizeBefore);
});

// ---------------------------------------------------------------------------------------
// F2: a tombstone is removed although an older value of its key sits in a batch of a codec
// the cleaner cannot decompress (kept whole, never mapped): the deleted key comes back.

it('F2: removing an expired tombstone never resurrects an older value of its key kept in an undecodable batch', async () => {
  const log = await openLog({ ...COMPACT, 'delete.retention.ms': 1000 });
  // key "dev-7" = "old" in a snappy batch (a Kafka client configured with compression.type=snappy).
  log.append(withCodec(batchOf([{ key: 'dev-7', value: 'old', timestamp: T0 }]), 2));
  fill(log, 3, 6, T0 + 1);
  // The device is deleted: a tombstone.
  log.append(batchOf([{ key: 'dev-7', value: null, timestamp: T0 + 100 }]));
  fill(log, 3, 6, T0 + 200);
  await settle(log);
  expect(table(log).has('dev-7')).toBe(false);
  // Long after delete.retention.ms.
  await compactPartition(log, { now: () => T0 + DAY_MS });
  // On dab9bbb the tombstone is gone and the snappy record "dev-7=old" is still there.
  expect(table(log).get('dev-7')).toBeUndefined();
});

// ---------------------------------------------------------------------------------------
// F3: broker.close() stops the scheduler before it closes the logs; stopping aborts the
// jobs' signal, so a compaction in progress gives up at its next batch rather than making
// shutdown wait for all of it. This replays that order with the node's Scheduler.

it('F3: a compaction in progress stops early when the node shuts down (scheduler stopped, then logs closed)', async () => {
  const log = await openLog();
  fill(log, 6, 120);
  await settle(log);
  let result: CompactionResult | null = null;
  const scheduler = new Scheduler(silentLogger);
  scheduler.add({ name: 'compaction', schedule: '0 0 0 1 1 *', run: async (signal) => void (result = await compactPartition(log, { now: () => T0, signal })) });
  const job = scheduler.runNow('compaction');
  await new Promise((resolve) => setImmediate(resolve));
  // broker.close(): `await maintenance.stop(); await logs.close();`
  await scheduler.stop();
  await log.close();
  await job;
  expect(result).not.toBeNull();
  expect(result!.stoppedEarly).toBe(true);
});

// ---------------------------------------------------------------------------------------
// F4: a topic whose deletion failed after the config rename is gone from memory but not
// from disk; creating it again adopts the old partition folder (old records, old offsets),
// and the next start finishes the old deletion on the NEW topic's folder.

it('F4: re-creating a topic after a failed delete starts empty, and survives a restart', async () => {
  let failDirRename = false;
  const ops: FileOps = {
    ...nodeFileOps,
    rename: async (from, to) => {
      if (failDirRename && from.endsWith(`${path.sep}x-0`)) {
        failDirRename = false;
        throw Object.assign(new Error('ENOSPC: injected'), { code: 'ENOSPC' });
      }
      return nodeFileOps.rename(from, to);
    },
  };
  let logs = await LogManager.open(fx.dir, { fileOps: ops });
  await logs.createTopic('x', 1);
  logs.partition('x', 0)!.append(batchOf([{ key: 'k', value: 'old topic', timestamp: T0 }]));
  failDirRename = true;
  await expect(logs.deleteTopic('x')).rejects.toThrow();
  expect(logs.topic('x')).toBeUndefined();
  await logs.createTopic('x', 1);
  const fresh = logs.partition('x', 0)!;
  // On dab9bbb the "new" topic holds the deleted topic's record.
  const freshEnd = fresh.logEndOffset;
  fresh.append(batchOf([{ key: 'k', value: 'new topic', timestamp: T0 }]));
  await logs.close();
  logs = await LogManager.open(fx.dir, { fileOps: ops });
  const after = logs.partition('x', 0);
  const afterEnd = after?.logEndOffset;
  await logs.close();
  expect.soft(freshEnd).toBe(0);
  // The new topic acknowledged offsets up to freshEnd + 1. On dab9bbb the restart deletes its
  // folder: its records are lost and offsets restart at 0.
  expect.soft(afterEnd).toBe(freshEnd + 1);
});

// ---------------------------------------------------------------------------------------
// F5: a rolled segment becomes "closed" (retention may delete it) as soon as its seal is
// done, but the recovery point (the high watermark under flush=batch) only moves after the
// active segment's fdatasync: retention in that window puts the log start offset above
// the high watermark.

it('F5: retention never moves the log start offset above the high watermark (flush=batch)', async () => {
  let holdNth = -1;
  let calls = 0;
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const ops: FileOps = {
    ...nodeFileOps,
    fdatasync: async (fd) => {
      calls++;
      if (calls === holdNth) await held;
      return nodeFileOps.fdatasync(fd);
    },
  };
  const log = await openLog({ 'segment.bytes': 1024, flush: 'batch', 'retention.bytes': 0 }, { ops });
  await log.append(batchOf([{ key: 'a', value: 'x'.repeat(600), timestamp: T0 }])).durable;
  expect(log.highWatermark).toBe(1);
  // One turn: offset 1 goes into the first segment, offset 2 rolls a new one. The sync seals
  // the first segment (fdatasync #1 of this sync), then fdatasyncs the active one (#2: held).
  holdNth = calls + 2;
  log.append(batchOf([{ key: 'b', value: 'x'.repeat(200), timestamp: T0 }]));
  const last = log.append(batchOf([{ key: 'c', value: 'x'.repeat(600), timestamp: T0 }]));
  await until(() => calls >= holdNth, 'the sync to reach the held fdatasync');
  await applyRetention(log, () => T0);
  const start = log.logStartOffset;
  const highWatermark = log.highWatermark;
  release();
  await last.durable;
  // On dab9bbb: log start 2, high watermark 1.
  expect(start).toBeLessThanOrEqual(highWatermark);
});

// ---------------------------------------------------------------------------------------
// F6: a failure inside the cleaner's install (after the commit, e.g. EIO on renaming an
// index .swap) leaves the OLD LogSegment object (old sizeBytes) in the list over the NEW,
// shorter .log: reads of offsets in the removed tail answer CORRUPT_BATCH, and every later
// compaction run fails on the same segment, until a restart.

it('F6: after a failed install, the partition still reads and the next compaction succeeds', async () => {
  let failTimeIndexSwap = false;
  const ops: FileOps = {
    ...nodeFileOps,
    rename: async (from, to) => {
      if (failTimeIndexSwap && from.endsWith('.timeindex.swap')) {
        failTimeIndexSwap = false;
        throw Object.assign(new Error('EIO: injected'), { code: 'EIO' });
      }
      return nodeFileOps.rename(from, to);
    },
  };
  const log = await openLog(COMPACT, { ops });
  fill(log, 3, 12);
  await settle(log);
  const before = table(log);
  failTimeIndexSwap = true;
  await expect(compactPartition(log, { now: () => T0 + 10_000 })).rejects.toThrow();
  // Every offset still reads (a consumer walking the whole log).
  let readError: unknown = null;
  let after = new Map<string, string | null>();
  try {
    after = table(log);
  } catch (err) {
    readError = err;
  }
  let compactError: unknown = null;
  try {
    await compactPartition(log, { now: () => T0 + 20_000 });
  } catch (err) {
    compactError = err;
  }
  expect.soft(readError).toBeNull();
  expect.soft(after).toEqual(before);
  expect.soft(compactError).toBeNull();
});
