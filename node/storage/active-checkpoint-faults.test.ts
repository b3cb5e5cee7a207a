// Edge cases of the active segment checkpoint (recovery-point.checkpoint's third line) that
// a review found (each failed before its fix). A "crash" is a PartitionLog abandoned
// without close() (the page cache survives, so these tests cannot show lost un-synced
// bytes; they show what recovery decides from the files it finds).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readRecoveryCheckpoint, RECOVERY_CHECKPOINT_FILE } from './checkpoint.js';
import { nodeFileOps, type FileOps } from './file-ops.js';
import { PartitionLog } from './partition-log.js';
import { faultyFileOps, makeBatch } from './testing.js';
import { usePartitionFixture } from './partition.fixture.js';
import { clockAt } from '../../protocol/clock.js';

const fx = usePartitionFixture();
// The interval flush never fires by itself during a test; checkpoints need 16 KiB of growth.
const BIG = { 'segment.bytes': 1024 * 1024, 'index.interval.bytes': 256, flush: 'interval' as const, 'flush.interval.ms': 600_000 };

function appendBatches(log: PartitionLog, n: number, from = 0): void {
  for (let i = from; i < from + n; i++) {
    log.append(makeBatch({ records: 1 + (i % 3), valueBytes: 200 + (i % 5) * 40, timestamp: 1_700_000_000_000 + i * 1000, fill: i }));
  }
}

const file = (name: string): string => path.join(fx.partitionDir, name);
const logFile = (base = 0): string => file(`${String(base).padStart(20, '0')}.log`);
const indexFile = (base = 0): string => file(`${String(base).padStart(20, '0')}.index`);

describe('active segment checkpoint: edge cases', () => {
  it('a clean close of an empty active segment writes no active line, and a later unclean start has nothing to note', async () => {
    // An idle partition (a new topic, or one that just rolled) closed cleanly.
    const first = await fx.open(BIG, { clean: false });
    await first.close();
    // Nothing is synced in an empty segment: no line for it.
    expect(readRecoveryCheckpoint(nodeFileOps, fx.partitionDir).active).toBeNull();
    // Clean start, a few appends, crash.
    const started = await fx.open(BIG, { clean: true });
    appendBatches(started, 5);
    const reopened = await fx.open(BIG, { clean: false });
    expect(reopened.logEndOffset).toBe(started.logEndOffset);
    expect(reopened.recovery.notes).toEqual([]);
  });

  it('an active segment shorter than its checkpointed (fdatasynced) position continues after the checkpointed offset: no offset handed out twice', async () => {
    const log = await fx.open(BIG, { clean: false });
    appendBatches(log, 60);
    await log.checkpoint();
    const { active } = readRecoveryCheckpoint(nodeFileOps, fx.partitionDir);
    expect(active).not.toBeNull();
    // Bytes the checkpoint says were synced are gone (a damaged or restored file).
    fs.truncateSync(logFile(), Math.floor(active!.position / 2));
    const reopened = await fx.open(BIG, { clean: false });
    // As when every segment file is gone: the offsets below the checkpointed one were
    // synced, and consumers may have passed them.
    expect(reopened.logEndOffset).toBe(active!.offset);
    expect(reopened.recovery.notes.join('\n')).toMatch(new RegExp(`continues at ${active!.offset}`));
    expect(reopened.append(makeBatch({ records: 1 })).baseOffset).toBe(active!.offset);
  });

  it('with flush=os the checkpoint job does not fdatasync the log (only roll, flush() and close do)', async () => {
    const ops = faultyFileOps();
    const log = await fx.open({ ...BIG, flush: 'os' }, { clean: false, ops });
    appendBatches(log, 100);
    const before = ops.counts.fdatasync;
    await log.checkpoint();
    expect(ops.counts.fdatasync).toBe(before);
  });

  it('a seal that meets a full disk removes the partial index files the checkpoint job wrote', async () => {
    let t = 1_000_000;
    let failIndexRename = false;
    const ops: FileOps = {
      ...nodeFileOps,
      async rename(from, to) {
        if (failIndexRename && to.endsWith('.index')) {
          const err = new Error('ENOSPC: injected') as NodeJS.ErrnoException;
          err.code = 'ENOSPC';
          throw err;
        }
        return nodeFileOps.rename(from, to);
      },
    };
    const config = { ...BIG, 'segment.ms': 60_000 };
    const log = await fx.open(config, { clean: false, ops, clock: clockAt(() => t )});
    appendBatches(log, 40);
    await log.checkpoint();
    const checkpointed = readRecoveryCheckpoint(nodeFileOps, fx.partitionDir).active!.position;
    appendBatches(log, 200, 40);
    const sealedSize = log.sizeBytes;
    // Roll by time; the seal's index write meets ENOSPC.
    failIndexRename = true;
    t += 120_000;
    appendBatches(log, 1, 240);
    await log.flush();
    failIndexRename = false;
    expect(log.segmentCount).toBe(2);
    expect(log.recovery.notes.join('\n')).toMatch(/index files not written/);
    // Segment 0 is sealed with no index files (rebuilt when needed), not with the
    // checkpoint's partial ones, which reads would use as the segment's whole index.
    expect(checkpointed).toBeLessThan(sealedSize);
    expect(fs.existsSync(indexFile())).toBe(false);
  });

  it('a checkpoint does not rewrite the index files for a little growth (flash wear)', async () => {
    let written = 0;
    const ops: FileOps = {
      ...nodeFileOps,
      writeSync(fd, buffer, offset, length, position) {
        written += length;
        return nodeFileOps.writeSync(fd, buffer, offset, length, position);
      },
    };
    // index.interval.bytes 0: an entry per batch, standing in for a large segment at the
    // default 4096 (64 MiB / 4 KiB = 16 384 entries: 128 KiB + 192 KiB of index files).
    const log = await fx.open({ ...BIG, 'segment.bytes': 64 * 1024 * 1024, 'index.interval.bytes': 0 }, { clean: false, ops });
    appendBatches(log, 8000);
    await log.checkpoint();
    // One small batch in the next minute.
    log.append(makeBatch({ records: 1, valueBytes: 20, timestamp: 1_800_000_000_000 }));
    written = 0;
    await log.checkpoint();
    // ~8000 * (8 + 12) bytes of index files rewritten (plus the snapshot and checkpoint
    // file) for one ~90-byte batch, every minute, for every partition that grew.
    expect(written).toBeLessThan(16 * 1024);
  });

  it('old-format checkpoint files still read, and a stale active line for a rolled segment is ignored', async () => {
    const log = await fx.open(BIG, { clean: false });
    appendBatches(log, 30);
    await log.checkpoint();
    const end = log.logEndOffset;
    fs.writeFileSync(file(RECOVERY_CHECKPOINT_FILE), '0\n0\n');
    expect(readRecoveryCheckpoint(nodeFileOps, fx.partitionDir)).toEqual({ sealedBelow: 0, active: null });
    const reopened = await fx.open(BIG, { clean: false });
    expect(reopened.logEndOffset).toBe(end);
    expect(reopened.recovery.scannedBytes).toBe(fs.statSync(logFile()).size);
    // An active line naming a segment that is not the newest is not used.
    fs.writeFileSync(file(RECOVERY_CHECKPOINT_FILE), `1\n0\n5 ${end} 100\n`);
    const again = await fx.open(BIG, { clean: false });
    expect(again.logEndOffset).toBe(end);
    expect(again.recovery.scannedBytes).toBe(fs.statSync(logFile()).size);
  });
});
