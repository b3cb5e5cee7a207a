// Which failures of a sync fail the partition (appends refused until a restart): only a
// failed fsync of log data or of the partition folder, after which the page cache may have
// dropped what was to be written. Everything else a sync meets (an index file or the
// checkpoint that cannot be written, a folder that cannot be opened) is survived: noted,
// or told to the waiting producers and tried again, never claimed durable before it is.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { splitBatches } from '../../protocol/record-batch.js';
import { readRecoveryCheckpoint } from './checkpoint.js';
import { nodeFileOps, type FileOps } from './file-ops.js';
import { usePartitionFixture } from './partition.fixture.js';
import { errorName, makeBatch } from './testing.js';

const fx = usePartitionFixture();

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected`), { code });
}

/** node:fs with switchable faults of the kinds a sync meets. */
function faults() {
  const state = {
    /** Opening a temporary file (index files, checkpoint, snapshots) fails with EMFILE. */
    emfileOnTempFiles: false,
    /** Opening the partition folder (for its fsync) fails with EMFILE. */
    emfileOnFolder: false,
    /** fsync of the partition folder fails with EIO. */
    eioOnFolderFsync: false,
    /** fdatasync (of segment logs) fails with EIO. */
    eioOnFdatasync: false,
  };
  const folderFds = new Set<number>();
  const ops: FileOps = {
    ...nodeFileOps,
    openSync(file, flags) {
      if (state.emfileOnTempFiles && path.basename(file).startsWith('.tmp-')) throw errno('EMFILE');
      const isFolder = file === fx.partitionDir;
      if (isFolder && state.emfileOnFolder) throw errno('EMFILE');
      const fd = nodeFileOps.openSync(file, flags);
      if (isFolder) folderFds.add(fd);
      return fd;
    },
    closeSync(fd) {
      folderFds.delete(fd);
      nodeFileOps.closeSync(fd);
    },
    async fsync(fd) {
      if (state.eioOnFolderFsync && folderFds.has(fd)) throw errno('EIO');
      return nodeFileOps.fsync(fd);
    },
    async fdatasync(fd) {
      if (state.eioOnFdatasync) throw errno('EIO');
      return nodeFileOps.fdatasync(fd);
    },
  };
  return { ops, state };
}

const indexFile = (base: number): string => path.join(fx.partitionDir, `${String(base).padStart(20, '0')}.index`);
// 483 bytes: four batches to a segment of 2048 bytes.
const batch = (fill: number): Buffer => makeBatch({ records: 2, valueBytes: 200, fill });

describe('a sync', () => {
  it('seals a rolled segment without its index files when they cannot be written (EMFILE): appends and reads go on, a restart rebuilds them; a failed fdatasync at the next roll still fails the partition', async () => {
    const { ops, state } = faults();
    // index.interval.bytes 0: an index entry per batch, so the offset index has bytes to write.
    const config = { flush: 'os', 'segment.bytes': 2048, 'index.interval.bytes': 0 } as const;
    const log = await fx.open(config, { ops });
    // Appending patches each batch in place (base offset, leader epoch): as stored.
    const written: Buffer[] = [];
    for (let i = 0; i < 6; i++) {
      const b = batch(i);
      log.append(b);
      written.push(b);
    }
    expect(log.segmentCount).toBe(2);
    // The process is out of fds while the roll's sync writes the files beside the log.
    state.emfileOnTempFiles = true;
    await log.flush();
    state.emfileOnTempFiles = false;
    expect(fs.existsSync(indexFile(0))).toBe(false);
    expect(log.recovery.notes.join('\n')).toMatch(/00000000000000000000\.log: index files not written, EMFILE/);
    // On the code before: the flush rejects and every later append answers STORAGE_ERROR.
    expect(log.closedSegments()).toHaveLength(1);
    const next = batch(6);
    expect(log.append(next).baseOffset).toBe(12);
    written.push(next);
    await log.flush();
    expect(log.recoveryPoint).toBe(log.logEndOffset);
    // The sealed segment reads (its indexes rebuilt in memory), as does the rest.
    const read: Buffer[] = [];
    for (let offset = 0; offset < log.logEndOffset; ) {
      const batches = splitBatches(log.read(offset, 1 << 20));
      read.push(...batches);
      offset += batches.length * 2;
    }
    expect(read).toEqual(written);
    await log.close();
    const reopened = await fx.open(config, { ops, clean: true });
    expect(reopened.recovery.rebuiltIndexes).toContain('00000000000000000000.index');
    expect(fs.existsSync(indexFile(0))).toBe(true);
    // A failed fdatasync of a rolled segment's log is another matter: the page cache may
    // have dropped its data, so the partition takes nothing more until a restart.
    for (let i = 0; i < 3; i++) reopened.append(batch(10 + i));
    state.eioOnFdatasync = true;
    await expect(reopened.flush()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    state.eioOnFdatasync = false;
    expect(errorName(() => reopened.append(batch(20)))).toBe('STORAGE_ERROR');
    await expect(reopened.flush()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
  });

  it('that cannot open the folder (EMFILE) claims nothing and is tried again; one whose folder fsync fails (EIO) fails the partition', async () => {
    const { ops, state } = faults();
    const config = { flush: 'batch', 'segment.bytes': 2048 } as const;
    const log = await fx.open(config, { ops });
    for (let i = 0; i < 4; i++) await log.append(batch(i)).durable;
    const checkpointBefore = readRecoveryCheckpoint(nodeFileOps, fx.partitionDir).sealedBelow;
    const highWatermarkBefore = log.highWatermark;
    // This append rolls: its sync seals the first segment, then needs the folder's fsync.
    state.emfileOnFolder = true;
    const rolled = log.append(batch(4));
    expect(log.segmentCount).toBe(2);
    // On the code before: the partition fails here for good.
    await expect(rolled.durable).rejects.toMatchObject({ errorName: 'STORAGE_ERROR', retriable: true });
    // Nothing past the failed step is claimed: not synced, not checkpointed, not closed.
    expect(log.highWatermark).toBe(highWatermarkBefore);
    expect(log.recoveryPoint).toBe(highWatermarkBefore);
    expect(readRecoveryCheckpoint(nodeFileOps, fx.partitionDir).sealedBelow).toBe(checkpointBefore);
    expect(log.closedSegments()).toHaveLength(0);
    // Fds are back: the producer's next append syncs everything, the seal included.
    state.emfileOnFolder = false;
    const after = log.append(batch(5));
    await after.durable;
    expect(log.highWatermark).toBe(after.lastOffset + 1);
    expect(log.closedSegments()).toHaveLength(1);
    expect(readRecoveryCheckpoint(nodeFileOps, fx.partitionDir).sealedBelow).toBe(log.segmentBaseOffsets()[1]);
    // The folder's fsync failing is fatal: the new segment's name may never reach the disk.
    for (let i = 0; i < 3; i++) log.append(batch(6 + i));
    expect(log.segmentCount).toBe(3);
    state.eioOnFolderFsync = true;
    await expect(log.flush()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    state.eioOnFolderFsync = false;
    expect(errorName(() => log.append(batch(9)))).toBe('STORAGE_ERROR');
  });

  it('goes on when the recovery point checkpoint cannot be written (EMFILE on its temp file), and fails when the checkpoint job meets a failed folder fsync', async () => {
    const { ops, state } = faults();
    const config = { flush: 'interval', 'flush.interval.ms': 600_000, 'segment.bytes': 2048, 'index.interval.bytes': 0 } as const;
    const log = await fx.open(config, { ops });
    for (let i = 0; i < 5; i++) log.append(batch(i));
    expect(log.segmentCount).toBe(2);
    // Every temp file fails; the roll's seal then has neither index files nor checkpoint.
    state.emfileOnTempFiles = true;
    await log.flush();
    state.emfileOnTempFiles = false;
    expect(log.recovery.notes.join('\n')).toMatch(/recovery point checkpoint at \d+ not written: EMFILE/);
    expect(readRecoveryCheckpoint(nodeFileOps, fx.partitionDir).sealedBelow).toBe(0);
    expect(log.append(batch(5)).baseOffset).toBe(10);
    await log.flush();
    expect(log.recoveryPoint).toBe(log.logEndOffset);
    // The checkpoint job's active segment checkpoint renames index files in: a failed
    // fsync of the folder after that is the folder's, fatal (the code before noted it).
    log.append(batch(6));
    expect(log.segmentCount).toBe(2);
    state.eioOnFolderFsync = true;
    await expect(log.checkpoint()).rejects.toMatchObject({ errorName: 'STORAGE_ERROR' });
    state.eioOnFolderFsync = false;
    expect(errorName(() => log.append(batch(7)))).toBe('STORAGE_ERROR');
  });
});
