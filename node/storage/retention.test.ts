import * as fs from 'node:fs';
import * as path from 'node:path';
import { clockAt } from '../../protocol/clock.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { splitBatches } from '../../protocol/record-batch.js';
import { LogManager } from './log-manager.js';
import type { PartitionLog } from './partition-log.js';
import { applyRetention, planRetention } from './retention.js';
import { makeBatch, makeTempDir, removeDir, segmentFiles } from './testing.js';

let dir: string;
let manager: LogManager | null = null;
let clock = 0;
const now = (): number => clock;

const DAY = 24 * 60 * 60 * 1000;
const T0 = 1_750_000_000_000;
// Batches of ~600 bytes in 1 KiB segments: every batch after the first rolls a new segment.
const SEGMENT_CONFIG = { 'segment.bytes': 1024, flush: 'os' };

beforeEach(() => {
  dir = makeTempDir();
  clock = T0;
});

afterEach(async () => {
  await manager?.close().catch(() => undefined);
  manager = null;
  removeDir(dir);
});

async function topic(config: Record<string, string | number>): Promise<PartitionLog> {
  manager = await LogManager.open(dir, { clock: clockAt(now) });
  await manager.createTopic('t', 1, { ...SEGMENT_CONFIG, ...config });
  return manager.partition('t', 0)!;
}

/** One segment per batch; batch i has records stamped `timestamps[i]`. Returns base offsets. */
async function fill(log: PartitionLog, timestamps: number[]): Promise<number[]> {
  const bases: number[] = [];
  for (const [i, ts] of timestamps.entries()) {
    bases.push(log.append(makeBatch({ records: 2, valueBytes: 250, timestamp: ts, fill: i })).baseOffset);
  }
  // Rolled segments are closed only once sealed, which the next sync does.
  await log.flush();
  return bases;
}

function offsetsFrom(log: PartitionLog, from: number): number[] {
  const out: number[] = [];
  let offset = from;
  while (offset < log.logEndOffset) {
    const bytes = log.read(offset, 1 << 20, log.logEndOffset);
    for (const batch of splitBatches(bytes)) {
      out.push(Number(batch.readBigInt64BE(0)));
      offset = Number(batch.readBigInt64BE(0)) + batch.readInt32BE(23) + 1;
    }
  }
  return out;
}

describe('retention by time', () => {
  it('deletes exactly the closed segments whose newest record is older than retention.ms, oldest first', async () => {
    const log = await topic({ 'retention.ms': 10 * DAY });
    // Ages at the check: 30, 20, 12, 5 days, and 40 days (out of order: must stop the prefix), then the active one.
    const bases = await fill(log, [T0 - 30 * DAY, T0 - 20 * DAY, T0 - 12 * DAY, T0 - 5 * DAY, T0 - 40 * DAY, T0 - 50 * DAY]);
    expect(log.segmentCount).toBe(6);
    expect(log.closedSegments()).toHaveLength(5);
    const result = await applyRetention(log, now);
    expect(result).toMatchObject({ byTime: 3, bySize: 0 });
    expect(log.logStartOffset).toBe(bases[3]);
    expect(log.segmentCount).toBe(3);
    // Kafka's rule: a younger segment stops the prefix, so the 40-day-old one after it stays.
    expect(offsetsFrom(log, log.logStartOffset)).toEqual([bases[3], bases[4], bases[5]]);
    expect(segmentFiles(log.dir, '.log')).toHaveLength(3);
    expect(segmentFiles(log.dir, '.index')).toHaveLength(2);
  });

  it('never deletes the active segment, however old', async () => {
    const log = await topic({ 'retention.ms': DAY });
    await fill(log, [T0 - 100 * DAY]);
    expect(log.segmentCount).toBe(1);
    const result = await applyRetention(log, now);
    expect(result.byTime + result.bySize).toBe(0);
    expect(log.logStartOffset).toBe(0);
    expect(log.logEndOffset).toBe(2);
  });

  it('follows the injected clock: nothing is due until the clock passes retention.ms', async () => {
    const log = await topic({ 'retention.ms': 10 * DAY });
    await fill(log, [T0, T0 + DAY, T0 + 2 * DAY]);
    expect(planRetention(log, now()).byTime).toBe(0);
    clock = T0 + 10 * DAY; // age exactly retention.ms: not yet past it
    expect(planRetention(log, now()).byTime).toBe(0);
    clock = T0 + 11 * DAY + 1;
    expect(planRetention(log, now()).byTime).toBe(2);
    expect((await applyRetention(log, now)).byTime).toBe(2);
    expect(log.segmentCount).toBe(1);
  });

  it('keeps everything with retention.ms = -1', async () => {
    const log = await topic({ 'retention.ms': -1 });
    await fill(log, [0, 1, 2]);
    expect(await applyRetention(log, now)).toMatchObject({ byTime: 0, bySize: 0 });
  });
});

describe('retention by size', () => {
  it('deletes the oldest closed segments while what remains is at least retention.bytes', async () => {
    const log = await topic({ 'retention.ms': -1, 'retention.bytes': 2000 });
    const bases = await fill(log, [T0, T0, T0, T0, T0, T0]);
    const segmentBytes = log.closedSegments()[0].sizeBytes;
    expect(log.sizeBytes).toBe(6 * segmentBytes);
    const result = await applyRetention(log, now);
    // Delete while (size - segment) >= 2000: keeps the fewest segments holding >= 2000 bytes.
    const keep = Math.ceil(2000 / segmentBytes);
    expect(result.bySize).toBe(6 - keep);
    expect(result.bytes).toBe((6 - keep) * segmentBytes);
    expect(log.logStartOffset).toBe(bases[6 - keep]);
    expect(log.sizeBytes).toBeGreaterThanOrEqual(2000);
  });

  it('never deletes the active segment even when it alone is over retention.bytes', async () => {
    const log = await topic({ 'retention.ms': -1, 'retention.bytes': 0 });
    const bases = await fill(log, [T0, T0, T0]);
    const result = await applyRetention(log, now);
    expect(result.bySize).toBe(2);
    expect(log.logStartOffset).toBe(bases[2]);
    expect(log.segmentCount).toBe(1);
  });

  it('counts time first, then size, without deleting a segment twice', async () => {
    const log = await topic({ 'retention.ms': 10 * DAY, 'retention.bytes': 1 });
    await fill(log, [T0 - 20 * DAY, T0, T0, T0]);
    const result = await applyRetention(log, now);
    expect(result).toMatchObject({ byTime: 1, bySize: 2 });
    expect(log.segmentCount).toBe(1);
  });
});

describe('retention and the rest of the log', () => {
  it('leaves compacted topics to the cleaner', async () => {
    const log = await topic({ 'retention.ms': 1, 'retention.bytes': 0, 'cleanup.policy': 'compact' });
    await fill(log, [0, 0, 0]);
    expect(await applyRetention(log, now)).toMatchObject({ byTime: 0, bySize: 0 });
    expect(log.segmentCount).toBe(3);
  });

  it('keeps the new log start offset across a clean and an unclean reopen; reads below it are out of range', async () => {
    const log = await topic({ 'retention.ms': 10 * DAY });
    const bases = await fill(log, [T0 - 30 * DAY, T0 - 20 * DAY, T0]);
    await applyRetention(log, now);
    expect(log.logStartOffset).toBe(bases[2]);
    expect(() => log.read(0, 1000)).toThrow(/outside the log/);
    await manager!.close();
    manager = await LogManager.open(dir, { clock: clockAt(now) });
    expect(manager.partition('t', 0)!.logStartOffset).toBe(bases[2]);
    expect(manager.partition('t', 0)!.logEndOffset).toBe(6);
    // Unclean: no marker, so the open scans; the deleted segments stay deleted.
    await manager.close();
    fs.rmSync(path.join(dir, '.clean-shutdown'));
    manager = await LogManager.open(dir, { clock: clockAt(now) });
    expect(manager.recoveryReport.clean).toBe(false);
    expect(manager.partition('t', 0)!.logStartOffset).toBe(bases[2]);
    expect(offsetsFrom(manager.partition('t', 0)!, bases[2])).toEqual([bases[2]]);
  });

  it('at open, removes the index files a crash left behind after the .log was deleted', async () => {
    const log = await topic({ 'retention.ms': -1 });
    await fill(log, [T0, T0, T0]);
    await manager!.close();
    // A crash between the unlink of the .log and of its indexes.
    const partitionDir = path.join(dir, 't-0');
    fs.rmSync(path.join(partitionDir, '00000000000000000000.log'));
    manager = await LogManager.open(dir, { clock: clockAt(now) });
    expect(fs.existsSync(path.join(partitionDir, '00000000000000000000.index'))).toBe(false);
    expect(fs.existsSync(path.join(partitionDir, '00000000000000000000.timeindex'))).toBe(false);
    expect(manager.partition('t', 0)!.logStartOffset).toBe(2);
  });

  it('runs one maintenance job at a time per partition', async () => {
    const log = await topic({ 'retention.ms': 10 * DAY });
    await fill(log, [T0 - 30 * DAY, T0 - 20 * DAY, T0]);
    const order: string[] = [];
    let release!: () => void;
    const first = log.maintain(async () => {
      order.push('first:start');
      await new Promise<void>((r) => (release = r));
      order.push('first:end');
    });
    const retention = applyRetention(log, now).then((r) => order.push(`retention:${r.byTime}`));
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['first:start']);
    release();
    await Promise.all([first, retention]);
    expect(order).toEqual(['first:start', 'first:end', 'retention:2']);
  });

  it('close waits for a job in progress, and jobs queued after close are refused', async () => {
    const log = await topic({});
    let release!: () => void;
    let finished = false;
    const job = log.maintain(async () => {
      await new Promise<void>((r) => (release = r));
      finished = true;
    });
    await new Promise((r) => setImmediate(r));
    const closing = log.close();
    expect(log.isClosed).toBe(true);
    const late = log.maintain(async () => 1);
    let closed = false;
    void closing.then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    expect(closed).toBe(false);
    release();
    await closing;
    await job;
    expect(finished).toBe(true);
    await expect(late).rejects.toThrow(/closed/);
  });
});
