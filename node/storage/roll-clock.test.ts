// segment.ms after a restart: the active segment's roll clock starts when its first record
// was appended, not when the node started, so a gateway restarted more often than
// segment.ms still rolls (and retention can delete) its segments. That moment is the .log
// file's birth time on the node's clock; the producers' record timestamps (devices whose
// clock is unset or ahead) are used only where the file system keeps no birth time.

import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTopicConfig } from './config.js';
import { nodeFileOps, type FileOps } from './file-ops.js';
import { PartitionLog, type OpenPartitionOptions } from './partition-log.js';
import { usePartitionFixture } from './partition.fixture.js';
import { makeBatch } from './testing.js';
import { clockAt } from '../../protocol/clock.js';

const fx = usePartitionFixture();
const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const YEAR_MS = 365 * 24 * HOUR_MS;
const CONFIG = parseTopicConfig({ 'segment.ms': HOUR_MS, flush: 'os' });

async function openPartition(partition: number, options: OpenPartitionOptions): Promise<PartitionLog> {
  return fx.track(await PartitionLog.open(path.join(fx.dir, `t-${partition}`), 't', partition, CONFIG, options));
}

/**
 * A partition whose active segment got its first record stamped `recordTimestampMs`, closed
 * and reopened with `reopen`'s clock and file times, after one append.
 */
async function afterRestart(partition: number, recordTimestampMs: number, reopen: OpenPartitionOptions): Promise<PartitionLog> {
  const log = await openPartition(partition, { ops: reopen.ops });
  log.append(makeBatch({ records: 2, timestamp: recordTimestampMs }));
  await log.close();
  const reopened = await openPartition(partition, { ...reopen, clean: true });
  reopened.append(makeBatch({ records: 1, timestamp: recordTimestampMs }));
  return reopened;
}

async function segmentsAfterRestart(partition: number, recordTimestampMs: number, reopen: OpenPartitionOptions): Promise<number> {
  return (await afterRestart(partition, recordTimestampMs, reopen)).segmentCount;
}

/** Real files whose fstat reports the given birth and modification times. */
function fileTimes(times: { birthtimeMs: number; mtimeMs: number }): FileOps {
  return { ...nodeFileOps, fstatSync: (fd) => ({ ...nodeFileOps.fstatSync(fd), ...times }) };
}

describe('segment.ms after a restart', () => {
  it('counts from when the segment got its first record: 2 h ago it rolls at the first append, 10 min ago it does not', async () => {
    // The file system's own times: the restarts happen on a clock moved ahead.
    const now = Date.now();
    expect(await segmentsAfterRestart(0, now, { clock: clockAt(() => now + 10 * MINUTE_MS )})).toBe(1);
    // On the code before: the clock restarted at the open, and it never rolled.
    expect(await segmentsAfterRestart(1, now, { clock: clockAt(() => now + 2 * HOUR_MS )})).toBe(2);
  });

  it("does not trust the records' timestamps (a device clock at 1970 or a year ahead), nor a birth time after the last write or after the restart", async () => {
    const now = Date.now();
    const young = fileTimes({ birthtimeMs: now - 10 * MINUTE_MS, mtimeMs: now - MINUTE_MS });
    expect(await segmentsAfterRestart(0, 1000, { ops: young, clock: clockAt(() => now )})).toBe(1);
    const old = fileTimes({ birthtimeMs: now - 2 * HOUR_MS, mtimeMs: now - MINUTE_MS });
    // On the code before: not rolled.
    expect(await segmentsAfterRestart(1, now + YEAR_MS, { ops: old, clock: clockAt(() => now )})).toBe(2);
    // A file copied or restored keeps its modification time but is born anew: its data is
    // no younger than its last write.
    const restored = fileTimes({ birthtimeMs: now - MINUTE_MS, mtimeMs: now - 2 * HOUR_MS });
    expect(await segmentsAfterRestart(2, now - 3 * HOUR_MS, { ops: restored, clock: clockAt(() => now )})).toBe(2);
    // The node's clock was a year ahead when the file was made: counted from the restart
    // instead, so the segment rolls segment.ms after it, not a year later.
    let t = now;
    const ahead = fileTimes({ birthtimeMs: now + YEAR_MS, mtimeMs: now + YEAR_MS });
    const log = await afterRestart(3, now, { ops: ahead, clock: clockAt(() => t )});
    expect(log.segmentCount).toBe(1);
    t = now + HOUR_MS + 1;
    log.append(makeBatch({ records: 1, timestamp: now }));
    expect(log.segmentCount).toBe(2);
  });

  it('where the file system keeps no birth time, counts from the first batch timestamp, never later than the last write', async () => {
    const now = Date.now();
    const noBirth = (mtimeMs: number): FileOps => fileTimes({ birthtimeMs: 0, mtimeMs });
    expect(await segmentsAfterRestart(0, now - 10 * MINUTE_MS, { ops: noBirth(now - MINUTE_MS), clock: clockAt(() => now )})).toBe(1);
    // On the code before: neither rolled.
    expect(await segmentsAfterRestart(1, now - 2 * HOUR_MS, { ops: noBirth(now - MINUTE_MS), clock: clockAt(() => now )})).toBe(2);
    // A device clock ahead: the segment was last written 2 h ago, so its first record is older.
    expect(await segmentsAfterRestart(2, now + YEAR_MS, { ops: noBirth(now - 2 * HOUR_MS), clock: clockAt(() => now )})).toBe(2);
  });
});
