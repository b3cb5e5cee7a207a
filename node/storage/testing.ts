// Helpers shared by the storage tests and the storage bench: temporary folders, batches of
// a given shape, gzip bombs, a seeded PRNG, and a FileOps that injects faults. Node
// built-ins only.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { TributaryError } from '../../protocol/errors.js';
import { BATCH_OVERHEAD, Compression, computeCrc, encodeBatch, LOG_OVERHEAD, OFFSET_CRC, OFFSET_LENGTH } from '../../protocol/record-batch.js';
import type { Record as BatchRecord } from '../../protocol/record-batch.js';
import { nodeFileOps } from './file-ops.js';
import type { FileOps } from './file-ops.js';

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'trib-'));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

// One seeded PRNG for every test in the project.
export { mulberry32 as seededRandom } from '../../protocol/testdata/helpers.js';

export interface BatchShape {
  records?: number;
  valueBytes?: number;
  /** Timestamp of the first record; each next record is `stepMs` later. */
  timestamp?: number;
  stepMs?: number;
  /** Fills values, so batches differ. */
  fill?: number;
}

/** A RecordBatch v2 as a producer would send it (base offset 0, leader epoch -1). */
export function makeBatch(shape: BatchShape = {}): Buffer {
  const count = shape.records ?? 1;
  const timestamp = shape.timestamp ?? 1_700_000_000_000;
  const step = shape.stepMs ?? 0;
  const records: BatchRecord[] = [];
  for (let i = 0; i < count; i++) {
    const value = Buffer.alloc(shape.valueBytes ?? 20, (shape.fill ?? 0) + i);
    records.push({ key: Buffer.from(`k${i}`), value, timestamp: timestamp + i * step });
  }
  return encodeBatch(records);
}

/**
 * A gzip bomb as a node stored it before produce checked records: the header of a one-record
 * gzip batch at `timestamp`, around `inflatedBytes` of zeros deflated (about 1,000:1), with
 * length and CRC right. PartitionLog.append takes it (it checks headers and CRC only).
 */
export function gzipBomb(inflatedBytes: number, timestamp = 1_700_000_000_000): Buffer {
  const template = encodeBatch([{ key: null, value: Buffer.alloc(1), timestamp }], { compression: Compression.Gzip });
  const bomb = Buffer.concat([template.subarray(0, BATCH_OVERHEAD), gzipSync(Buffer.alloc(inflatedBytes), { level: 9 })]);
  bomb.writeInt32BE(bomb.length - LOG_OVERHEAD, OFFSET_LENGTH);
  bomb.writeUInt32BE(computeCrc(bomb), OFFSET_CRC);
  return bomb;
}

/** Concatenated .log files of a partition folder, in offset order. */
export function readWholeLog(dir: string): Buffer {
  const logs = fs
    .readdirSync(dir)
    .filter((name) => /^\d{20}\.log$/.test(name))
    .sort();
  return Buffer.concat(logs.map((name) => fs.readFileSync(path.join(dir, name))));
}

export function segmentFiles(dir: string, suffix: '.log' | '.index' | '.timeindex'): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => /^\d{20}\./.test(name) && name.endsWith(suffix) && name.slice(20) === suffix)
    .sort()
    .map((name) => path.join(dir, name));
}

export interface FaultyFileOps extends FileOps {
  /** The next write (or the next `count` writes) write half the bytes, then throw this code. */
  failWrites(code: string, count?: number): void;
  /** fdatasync/fsync reject with this code until cleared (null). */
  failSyncs(code: string | null): void;
  /** fdatasync waits until release() is called; counts syncs. */
  holdSyncs(hold: boolean): void;
  release(): void;
  readonly counts: { fdatasync: number; fsync: number; writes: number; reads: number };
}

function errno(code: string): NodeJS.ErrnoException {
  const err = new Error(`${code}: injected fault`) as NodeJS.ErrnoException;
  err.code = code;
  return err;
}

/** node:fs with injectable faults, for the STORAGE_ERROR and flush-policy tests. */
export function faultyFileOps(base: FileOps = nodeFileOps): FaultyFileOps {
  let writeFault: string | null = null;
  let writeFaults = 0;
  let syncFault: string | null = null;
  let hold = false;
  let waiting: (() => void)[] = [];
  const counts = { fdatasync: 0, fsync: 0, writes: 0, reads: 0 };
  const gate = async (): Promise<void> => {
    if (hold) await new Promise<void>((resolve) => waiting.push(resolve));
    if (syncFault !== null) throw errno(syncFault);
  };
  return {
    ...base,
    counts,
    readSync(fd, buffer, offset, length, position) {
      counts.reads++;
      return base.readSync(fd, buffer, offset, length, position);
    },
    writeSync(fd, buffer, offset, length, position) {
      counts.writes++;
      if (writeFault !== null && writeFaults > 0) {
        writeFaults--;
        const code = writeFault;
        if (writeFaults === 0) writeFault = null;
        // A torn write: part of the bytes reach the file before the error.
        base.writeSync(fd, buffer, offset, Math.floor(length / 2), position);
        throw errno(code);
      }
      return base.writeSync(fd, buffer, offset, length, position);
    },
    async fdatasync(fd) {
      counts.fdatasync++;
      await gate();
      return base.fdatasync(fd);
    },
    async fsync(fd) {
      counts.fsync++;
      if (syncFault !== null) throw errno(syncFault);
      return base.fsync(fd);
    },
    failWrites(code, count = 1) {
      writeFault = code;
      writeFaults = count;
    },
    failSyncs(code) {
      syncFault = code;
    },
    holdSyncs(h) {
      hold = h;
    },
    release() {
      const released = waiting;
      waiting = [];
      for (const resolve of released) resolve();
    },
  };
}

/** The error name a call throws (a TributaryError's), or 'NONE' when it returns. */
export function errorName(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof TributaryError) return err.errorName;
    throw err;
  }
  return 'NONE';
}
