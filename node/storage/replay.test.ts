import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Errors } from '../../protocol/errors.js';
import { computeCrc, decodeBatch, encodeBatch, OFFSET_ATTRIBUTES, OFFSET_CRC, splitBatches, type DecodedRecord } from '../../protocol/record-batch.js';
import { compactPartition } from './cleaner.js';
import type { LogRead, PartitionLog, StoredBatch } from './partition-log.js';
import { usePartitionFixture } from './partition.fixture.js';
import { replayLog, type ReplayableLog } from './replay.js';
import { gzipBomb, readWholeLog, seededRandom } from './testing.js';
import { thrown } from '../../test/helpers/thrown.js';

const T0 = 1_700_000_000_000;
const fx = usePartitionFixture();
const COMPACT = { 'cleanup.policy': 'compact', 'segment.bytes': 1024, flush: 'os' } as const;

interface Rec {
  offset: number;
  key: string | null;
  value: string | null;
}

const recOf = (r: DecodedRecord): Rec => ({ offset: r.offset, key: r.key?.toString() ?? null, value: r.value?.toString() ?? null });

function batchOf(records: { key: string | null; value: string | null }[]): Buffer {
  return encodeBatch(records.map((r, i) => ({ key: r.key === null ? null : Buffer.from(r.key), value: r.value === null ? null : Buffer.from(r.value), timestamp: T0 + i })));
}

/** The log as a spy: every read it serves, so a test sees what each chunk held. */
function watched(log: PartitionLog): { log: ReplayableLog; reads: { maxBytes: number; read: LogRead }[] } {
  const reads: { maxBytes: number; read: LogRead }[] = [];
  return {
    reads,
    log: {
      topic: log.topic,
      partition: log.partition,
      get logStartOffset() {
        return log.logStartOffset;
      },
      get logEndOffset() {
        return log.logEndOffset;
      },
      readBatches(fetchOffset, maxBytes, maxOffset, budget) {
        const read = log.readBatches(fetchOffset, maxBytes, maxOffset, budget);
        reads.push({ maxBytes, read });
        return read;
      },
    },
  };
}

/** Every record in the partition's .log files, found by splitting the files: not through reads. */
function onDisk(): Rec[] {
  return splitBatches(readWholeLog(fx.partitionDir)).flatMap((b) => decodeBatch(b).records.map(recOf));
}

function replayed(log: ReplayableLog, chunkBytes: number, onUndecodableBatch?: (batch: StoredBatch, err: unknown) => void): { records: Rec[]; summary: ReturnType<typeof replayLog> } {
  const records: Rec[] = [];
  const summary = replayLog(log, (r) => records.push(recOf(r)), { chunkBytes, decompressedBytesMax: 1 << 20, onUndecodableBatch });
  return { records, summary };
}


describe('replayLog', () => {
  it('hands over every record of many batches in offset order, one chunk at a time across segments', async () => {
    const log = await fx.open({ 'segment.bytes': 4096, flush: 'os' });
    const random = seededRandom(17);
    const written: Rec[] = [];
    for (let b = 0; b < 200; b++) {
      const records = Array.from({ length: 1 + Math.floor(random() * 5) }, (_, i) => ({ key: `k${b}.${i}`, value: `v${b}.${i}-${'x'.repeat(Math.floor(random() * 40))}` }));
      const { baseOffset } = log.append(batchOf(records));
      records.forEach((r, i) => written.push({ offset: baseOffset + i, ...r }));
    }
    expect(log.segmentBaseOffsets().length).toBeGreaterThan(3);
    const { log: spy, reads } = watched(log);
    const { records, summary } = replayed(spy, 1000);
    expect(records).toEqual(written);
    expect(summary).toEqual({ batches: 200, records: written.length, undecodableBatches: 0 });
    // Bounded: every read asked for one chunk and got at most that much.
    expect(reads.length).toBeGreaterThan(20);
    for (const { maxBytes, read } of reads) {
      expect(maxBytes).toBe(1000);
      expect(read.bytes.length).toBeLessThanOrEqual(1000);
    }
  });

  it('replays a compacted log with holes between its offsets', async () => {
    const log = await fx.open(COMPACT);
    // Each round rewrites keys 0-6 and writes one key of its own, which stays between the holes.
    const value = (round: number) => `v${round}-${'x'.repeat(40)}`;
    for (let round = 0; round < 12; round++) {
      log.append(batchOf([`once-${round}`, 'key-0', 'key-1'].map((key) => ({ key, value: value(round) }))));
      log.append(batchOf(['key-2', 'key-3', 'key-4'].map((key) => ({ key, value: value(round) }))));
      log.append(batchOf(['key-5', 'key-6'].map((key) => ({ key, value: value(round) }))));
    }
    await log.flush();
    await log.checkpoint();
    const result = await compactPartition(log, { now: () => T0 });
    expect(result.recordsRemoved).toBeGreaterThan(0);
    const kept = onDisk();
    const holes = kept.filter((r, i) => i > 0 && r.offset > kept[i - 1].offset + 1);
    expect(holes.length).toBeGreaterThan(5);
    expect(kept.filter((r) => r.key?.startsWith('once-')).length).toBe(12);
    expect(replayed(log, 300).records).toEqual(kept);
  });

  it('an empty log replays nothing and reads nothing; a log whose start moved replays from its start', async () => {
    const log = await fx.open({ 'segment.bytes': 1024, flush: 'os' });
    const { log: spy, reads } = watched(log);
    expect(replayed(spy, 1000)).toEqual({ records: [], summary: { batches: 0, records: 0, undecodableBatches: 0 } });
    expect(reads).toEqual([]);
    for (let b = 0; b < 40; b++) log.append(batchOf([{ key: null, value: `v${b}-${'x'.repeat(60)}` }]));
    await log.flush();
    await log.checkpoint();
    await log.deleteOldestSegments(2);
    expect(log.logStartOffset).toBeGreaterThan(0);
    const { records } = replayed(log, 1000);
    expect(records.map((r) => r.offset)).toEqual(Array.from({ length: 40 - log.logStartOffset }, (_, i) => log.logStartOffset + i));
  });

  it('reads a batch larger than a chunk whole, and goes on after it', async () => {
    const log = await fx.open({ 'segment.bytes': 1 << 20, flush: 'os' });
    log.append(batchOf([{ key: 'a', value: 'small' }]));
    log.append(batchOf(Array.from({ length: 10 }, (_, i) => ({ key: `big${i}`, value: 'y'.repeat(1000) }))));
    log.append(batchOf([{ key: 'b', value: 'small' }]));
    const { log: spy, reads } = watched(log);
    const { records } = replayed(spy, 512);
    expect(records.map((r) => r.key)).toEqual(['a', ...Array.from({ length: 10 }, (_, i) => `big${i}`), 'b']);
    expect(reads.map((r) => r.read.batches.length)).toEqual([1, 1, 1]);
    expect(reads[1].read.bytes.length).toBeGreaterThan(10_000);
  });

  it('a batch the log serves but whose records do not decode is told to its owner and passed over, or else thrown', async () => {
    const log = await fx.open({ 'segment.bytes': 1 << 20, flush: 'os' });
    log.append(batchOf([{ key: 'a', value: '1' }]));
    // A plain payload flagged gzip: length, magic, CRC and count are right, so append() takes it.
    const flagged = batchOf([{ key: 'poison', value: 'p' }, { key: 'poison', value: 'q' }]);
    flagged.writeInt16BE(flagged.readInt16BE(OFFSET_ATTRIBUTES) | 1, OFFSET_ATTRIBUTES);
    flagged.writeUInt32BE(computeCrc(flagged), OFFSET_CRC);
    log.append(flagged);
    // A gzip batch that inflates past what the replay allows.
    log.append(gzipBomb(2 << 20));
    log.append(batchOf([{ key: 'b', value: '2' }]));
    const told: [number, number][] = [];
    const { records, summary } = replayed(log, 1 << 20, (batch) => told.push([batch.baseOffset, batch.lastOffset]));
    expect(records.map((r) => [r.offset, r.key])).toEqual([
      [0, 'a'],
      [4, 'b'],
    ]);
    expect(told).toEqual([
      [1, 2],
      [3, 3],
    ]);
    expect(summary).toEqual({ batches: 4, records: 2, undecodableBatches: 2 });
    const seen: Rec[] = [];
    const err = thrown(() => replayLog(log, (r) => seen.push(recOf(r)), { decompressedBytesMax: 1 << 20 }));
    expect(err.code).toBe(Errors.CORRUPT_BATCH.code);
    expect(err.detail).toMatch(/^t-0: the batch at offsets 1\.\.2 does not decode: /);
    expect(seen.map((r) => r.key)).toEqual(['a']);
  });

  it('a batch the log cannot serve (its CRC does not match) fails the replay as the read fails, after the records before it', async () => {
    const log = await fx.open({ 'segment.bytes': 1 << 20, flush: 'os' });
    log.append(batchOf([{ key: 'a', value: 'first' }]));
    log.append(batchOf([{ key: 'b', value: 'second' }]));
    await log.flush();
    const file = log.segmentFileFor(0);
    const bytes = fs.readFileSync(file);
    const [first] = splitBatches(bytes);
    const fd = fs.openSync(file, 'r+');
    try {
      fs.writeSync(fd, Buffer.from([bytes[bytes.length - 1] ^ 0xff]), 0, 1, bytes.length - 1);
    } finally {
      fs.closeSync(fd);
    }
    expect(first.length).toBeLessThan(bytes.length);
    const seen: Rec[] = [];
    const err = thrown(() => replayLog(log, (r) => seen.push(recOf(r)), { decompressedBytesMax: 1 << 20, onUndecodableBatch: () => undefined }));
    expect(err.code).toBe(Errors.CORRUPT_BATCH.code);
    expect(err.detail).toMatch(/t-0/);
    expect(seen.map((r) => r.key)).toEqual(['a']);
  });

  it('an error of the record handler ends the replay', async () => {
    const log = await fx.open({ 'segment.bytes': 1 << 20, flush: 'os' });
    log.append(batchOf([{ key: 'a', value: '1' }, { key: 'b', value: '2' }]));
    let calls = 0;
    expect(() =>
      replayLog(
        log,
        () => {
          calls++;
          throw new Error('handler failed');
        },
        { decompressedBytesMax: 1 << 20, onUndecodableBatch: () => undefined },
      ),
    ).toThrow('handler failed');
    expect(calls).toBe(1);
  });
});
