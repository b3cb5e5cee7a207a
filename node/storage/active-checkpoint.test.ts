// The checkpoint of the active segment: after the checkpoint job, an unclean start trusts
// the synced part of the newest segment (its checkpointed index files) and scans only the
// bytes after it. A "crash" is a PartitionLog abandoned without close().

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { splitBatches } from '../../protocol/record-batch.js';
import { readRecoveryCheckpoint, RECOVERY_CHECKPOINT_FILE } from './checkpoint.js';
import { nodeFileOps } from './file-ops.js';
import { PartitionLog } from './partition-log.js';
import { makeBatch } from './testing.js';
import { usePartitionFixture } from './partition.fixture.js';

// One big active segment, an index entry every ~256 bytes; the interval flush never fires
// by itself during a test (the checkpoint job syncs what it checkpoints). A checkpoint
// needs the segment to have grown by 16 KiB (a 64th of segment.bytes).
const CONFIG = { 'segment.bytes': 1024 * 1024, 'index.interval.bytes': 256, flush: 'interval' as const, 'flush.interval.ms': 600_000 };
const fx = usePartitionFixture();

async function openLog(): Promise<PartitionLog> {
  return fx.open(CONFIG, { clean: false });
}

function appendBatches(log: PartitionLog, n: number, from = 0): Buffer[] {
  const out: Buffer[] = [];
  for (let i = from; i < from + n; i++) {
    const batch = makeBatch({ records: 1 + (i % 3), valueBytes: 200 + (i % 5) * 40, timestamp: 1_700_000_000_000 + i * 1000, fill: i });
    log.append(batch);
    out.push(Buffer.from(batch));
  }
  return out;
}

function readAll(log: PartitionLog): Buffer[] {
  const out: Buffer[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const batches = splitBatches(log.read(offset, 1 << 20, log.logEndOffset));
    for (const b of batches) {
      out.push(Buffer.from(b));
      offset = Number(b.readBigInt64BE(0)) + b.readInt32BE(23) + 1;
    }
  }
  return out;
}

const logFile = (): string => path.join(fx.partitionDir, '00000000000000000000.log');

describe('the active segment checkpoint', () => {
  it('lets an unclean start scan only what came after the checkpointed position, and serve every batch', async () => {
    const log = await openLog();
    const written = appendBatches(log, 200);
    await log.checkpoint();
    const checkpoint = readRecoveryCheckpoint(nodeFileOps, fx.partitionDir);
    expect(checkpoint.active).toEqual({ baseOffset: 0, offset: log.logEndOffset, position: log.sizeBytes });
    const checkpointed = log.sizeBytes;
    written.push(...appendBatches(log, 20, 200));
    // Crash: the second log never closes the first.
    const reopened = await openLog();
    expect(reopened.recovery.clean).toBe(false);
    expect(reopened.recovery.scannedBytes).toBe(fs.statSync(logFile()).size - checkpointed);
    expect(reopened.recovery.notes).toEqual([]);
    expect(reopened.logEndOffset).toBe(log.logEndOffset);
    expect(readAll(reopened)).toEqual(written);
    // The trusted indexes serve lookups: a read in the middle starts at the batch holding it.
    const middle = reopened.read(150, 1);
    expect(splitBatches(middle)[0].readBigInt64BE(0)).toBeLessThanOrEqual(150n);
    // And time lookups: the first record at or after a timestamp of batch 100.
    const found = reopened.offsetForTimestamp(1_700_000_000_000 + 100 * 1000);
    expect(found).not.toBeNull();
    // Appends continue at the log end.
    const next = makeBatch({ records: 1, fill: 99 });
    expect(reopened.append(next).baseOffset).toBe(log.logEndOffset);
  });

  it('after a clean close and start, a crash scans only what that start appended', async () => {
    const first = await openLog();
    const written = appendBatches(first, 100);
    await first.close();
    const closedSize = fs.statSync(logFile()).size;
    const restarted = await fx.open(CONFIG, { clean: true });
    written.push(...appendBatches(restarted, 10, 100));
    // Crash: no close of `restarted`.
    const reopened = await openLog();
    expect(reopened.recovery.scannedBytes).toBe(fs.statSync(logFile()).size - closedSize);
    expect(reopened.logEndOffset).toBe(restarted.logEndOffset);
    expect(readAll(reopened)).toEqual(written);
  });

  it('cuts a torn tail after the checkpointed position', async () => {
    const log = await openLog();
    const written = appendBatches(log, 50);
    await log.checkpoint();
    const end = log.logEndOffset;
    fs.appendFileSync(logFile(), Buffer.alloc(40, 0xab));
    const reopened = await openLog();
    expect(reopened.recovery.truncatedBytes).toBe(40);
    expect(reopened.recovery.scannedBytes).toBe(40);
    expect(reopened.logEndOffset).toBe(end);
    expect(readAll(reopened)).toEqual(written);
  });

  it('uses index files newer than the checkpoint line only up to its position', async () => {
    const log = await openLog();
    const written = appendBatches(log, 60);
    await log.checkpoint();
    const older = fs.readFileSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE));
    written.push(...appendBatches(log, 60, 60));
    await log.checkpoint();
    // A crash between the index files and the checkpoint file of the second checkpoint.
    fs.writeFileSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE), older);
    const reopened = await openLog();
    expect(reopened.recovery.notes).toEqual([]);
    expect(reopened.logEndOffset).toBe(log.logEndOffset);
    expect(readAll(reopened)).toEqual(written);
    for (let offset = 0; offset < reopened.logEndOffset; offset += 7) {
      const first = splitBatches(reopened.read(offset, 1))[0];
      expect(first.readBigInt64BE(0)).toBeLessThanOrEqual(BigInt(offset));
      expect(Number(first.readBigInt64BE(0)) + first.readInt32BE(23)).toBeGreaterThanOrEqual(offset);
    }
  });

  it('falls back to a whole scan, and says so, when the checkpoint does not match the file', async () => {
    const log = await openLog();
    const written = appendBatches(log, 30);
    await log.checkpoint();
    const { active } = readRecoveryCheckpoint(nodeFileOps, fx.partitionDir);
    // A position inside a batch: the walk cannot land on it.
    fs.writeFileSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE), `1\n0\n0 ${active!.offset} ${active!.position - 5}\n`);
    const reopened = await openLog();
    expect(reopened.recovery.notes.join('\n')).toMatch(/scanned it whole/);
    expect(reopened.recovery.scannedBytes).toBe(log.sizeBytes);
    expect(readAll(reopened)).toEqual(written);
  });

  it('is written by the checkpoint job only when the segment grew, and a roll starts afresh', async () => {
    const log = await openLog();
    appendBatches(log, 40);
    await log.checkpoint();
    const first = fs.statSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE)).mtimeMs;
    const content = fs.readFileSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE), 'latin1');
    await log.checkpoint();
    expect(fs.readFileSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE), 'latin1')).toBe(content);
    expect(fs.statSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE)).mtimeMs).toBe(first);
    // A checkpoint file of the old format still reads.
    fs.writeFileSync(path.join(fx.partitionDir, RECOVERY_CHECKPOINT_FILE), '0\n0\n');
    expect(readRecoveryCheckpoint(nodeFileOps, fx.partitionDir)).toEqual({ sealedBelow: 0, active: null });
  });
});
