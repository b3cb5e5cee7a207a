// Faults on disk and what must still hold after reopening: no batch served that fails its
// CRC, the log cut at the first torn or corrupt batch of what was not yet sealed, appends
// continuing at the right offset, indexes rebuilt to exactly what append would have written.
// A "crash" is a PartitionLog abandoned without close(): no code of ours runs after it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';
import { BATCH_OVERHEAD, decodeBatch, splitBatches } from '../../protocol/record-batch.js';
import { RECOVERY_CHECKPOINT_FILE } from './checkpoint.js';
import { parseTopicConfig } from './config.js';
import { PartitionLog } from './partition-log.js';
import type { OpenPartitionOptions } from './partition-log.js';
import { faultyFileOps, makeBatch, makeTempDir, readWholeLog, removeDir, segmentFiles } from './testing.js';

interface Stored {
  base: number;
  last: number;
  bytes: Buffer;
}

const CONFIG = { 'segment.bytes': 2048, 'index.interval.bytes': 128, flush: 'os' as const };
let dir: string;
let partitionDir: string;
const opened: PartitionLog[] = [];

beforeEach(() => {
  dir = makeTempDir();
  partitionDir = path.join(dir, 't-0');
});

afterEach(async () => {
  for (const log of opened.splice(0)) await log.close().catch(() => undefined);
  removeDir(dir);
});

async function openLog(options: OpenPartitionOptions = {}, config: Record<string, string | number> = CONFIG): Promise<PartitionLog> {
  const log = await PartitionLog.open(partitionDir, 't', 0, parseTopicConfig(config), options);
  opened.push(log);
  return log;
}

/** A log of `n` batches over several segments, fsynced and sealed as a running node leaves it. */
async function writeLog(n: number): Promise<{ log: PartitionLog; stored: Stored[] }> {
  const log = await openLog();
  const stored: Stored[] = [];
  for (let i = 0; i < n; i++) {
    const batch = makeBatch({ records: 1 + (i % 3), valueBytes: 40 + (i % 7) * 10, timestamp: 1_000_000 + i * 100, stepMs: 10, fill: i });
    const result = log.append(batch);
    stored.push({ base: result.baseOffset, last: result.lastOffset, bytes: Buffer.from(batch) });
  }
  await log.flush();
  return { log, stored };
}

function containing(stored: Stored[], offset: number): Stored {
  const found = stored.find((s) => s.base <= offset && offset <= s.last);
  if (found === undefined) throw new Error(`no batch holds ${offset}`);
  return found;
}

function expectServes(log: PartitionLog, stored: Stored[]): void {
  for (let offset = log.logStartOffset; offset < log.logEndOffset; offset++) {
    expect(log.read(offset, 1).equals(containing(stored, offset).bytes), `offset ${offset}`).toBe(true);
  }
}

function newestLogFile(): string {
  const logs = segmentFiles(partitionDir, '.log');
  return logs[logs.length - 1];
}

function flipByte(file: string, position: number): void {
  const fd = fs.openSync(file, 'r+');
  const one = Buffer.alloc(1);
  fs.readSync(fd, one, 0, 1, position);
  one[0] ^= 0x10;
  fs.writeSync(fd, one, 0, 1, position);
  fs.closeSync(fd);
}

function positionIn(file: string, stored: Stored[], batch: Stored): number {
  const base = Number(path.basename(file).slice(0, 20));
  let position = 0;
  for (const s of stored) {
    if (s.base < base) continue;
    if (s === batch) return position;
    position += s.bytes.length;
  }
  throw new Error('batch not in file');
}

describe('unclean start', () => {
  it('truncates a torn write to the last whole batch and appends continue at the right offset', async () => {
    const { stored } = await writeLog(40);
    const file = newestLogFile();
    const last = stored[stored.length - 1];
    fs.truncateSync(file, fs.statSync(file).size - 7);
    const log = await openLog();
    expect(log.recovery.clean).toBe(false);
    expect(log.recovery.truncatedBytes).toBe(last.bytes.length - 7);
    expect(log.logEndOffset).toBe(last.base);
    expect(log.recoveryPoint).toBe(last.base);
    const next = makeBatch({ records: 2, fill: 99 });
    expect(log.append(next).baseOffset).toBe(last.base);
    expectServes(log, [...stored.slice(0, -1), { base: last.base, last: last.base + 1, bytes: next }]);
  });

  it('truncates a torn batch header, and an empty or zero-length newest segment is fine', async () => {
    const { stored } = await writeLog(40);
    const file = newestLogFile();
    const newestBase = Number(path.basename(file).slice(0, 20));
    const inNewest = stored.filter((s) => s.base >= newestBase);
    // Keep the first batch and 5 bytes of the second.
    fs.truncateSync(file, inNewest[0].bytes.length + 5);
    let log = await openLog();
    expect(log.logEndOffset).toBe(inNewest[0].last + 1);
    fs.truncateSync(file, 0);
    log = await openLog();
    expect(log.logEndOffset).toBe(newestBase);
    expect(log.read(newestBase, 100)).toHaveLength(0);
    expect(log.append(makeBatch()).baseOffset).toBe(newestBase);
  });

  it('cuts at a flipped bit in the last batch', async () => {
    const { stored } = await writeLog(40);
    const last = stored[stored.length - 1];
    const file = newestLogFile();
    flipByte(file, fs.statSync(file).size - 3);
    const log = await openLog();
    expect(log.logEndOffset).toBe(last.base);
    expect(log.recovery.truncatedBytes).toBe(last.bytes.length);
    expect(log.recovery.notes.join('\n')).toMatch(/CRC/);
    expectServes(log, stored.slice(0, -1));
  });

  it('reports a flipped bit in an older segment on read, never serves it, and serves every other batch', async () => {
    const { stored } = await writeLog(60);
    const files = segmentFiles(partitionDir, '.log');
    expect(files.length).toBeGreaterThan(3);
    const file = files[1];
    const base = Number(path.basename(file).slice(0, 20));
    const inSegment = stored.filter((s) => s.base >= base && s.base < Number(path.basename(files[2]).slice(0, 20)));
    const victim = inSegment[3];
    flipByte(file, positionIn(file, stored, victim) + BATCH_OVERHEAD + 5);
    for (const clean of [false, true]) {
      const log = await openLog({ clean });
      expect(log.logEndOffset).toBe(stored[stored.length - 1].last + 1);
      let caught: unknown;
      try {
        log.read(victim.base, 1 << 20);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(TributaryError);
      expect((caught as TributaryError).errorName).toBe('CORRUPT_BATCH');
      expect((caught as Error).message).toContain(`t-0 offset ${victim.base}`);
      // Reading from earlier in the segment stops right before the corrupt batch.
      const before = log.read(inSegment[0].base, 1 << 20);
      expect(before.equals(Buffer.concat(inSegment.slice(0, 3).map((s) => s.bytes)))).toBe(true);
      for (let offset = log.logStartOffset; offset < log.logEndOffset; offset++) {
        if (offset >= victim.base && offset <= victim.last) continue;
        expect(log.read(offset, 1).equals(containing(stored, offset).bytes), `offset ${offset}`).toBe(true);
      }
      await log.close();
    }
  });

  it('rebuilds deleted and corrupt index files byte for byte, and lookups stay correct', async () => {
    const { log: first, stored } = await writeLog(60);
    await first.close();
    const indexFiles = [...segmentFiles(partitionDir, '.index'), ...segmentFiles(partitionDir, '.timeindex')];
    const originals = new Map(indexFiles.map((f) => [f, fs.readFileSync(f)]));
    const expectedTimes = stored.flatMap((s) => decodeBatch(s.bytes).records.map((r) => ({ offset: r.offset, timestamp: r.timestamp })));
    // Every kind of damage: missing, torn size, entries out of order, position past the end.
    const [i0, i1, i2] = segmentFiles(partitionDir, '.index');
    const [t0, t1] = segmentFiles(partitionDir, '.timeindex');
    fs.unlinkSync(i0);
    fs.truncateSync(i1, fs.statSync(i1).size - 3);
    const bad = Buffer.from(originals.get(i2) ?? Buffer.alloc(0));
    bad.writeInt32BE(0x7fffff00, bad.length - 4);
    fs.writeFileSync(i2, bad);
    fs.unlinkSync(t0);
    fs.writeFileSync(t1, Buffer.alloc(24, 0xff));
    for (const clean of [true, false]) {
      const log = await openLog({ clean });
      expect(log.recovery.rebuiltIndexes.length, `clean ${clean}`).toBeGreaterThan(0);
      expectServes(log, stored);
      for (let target = 999_000; target < 1_000_000 + 60 * 100 + 50; target += 37) {
        const want = expectedTimes.find((r) => r.timestamp >= target) ?? null;
        expect(log.offsetForTimestamp(target), `target ${target}`).toEqual(want);
      }
      await log.close();
      for (const [file, bytes] of originals) expect(fs.readFileSync(file).equals(bytes), file).toBe(true);
      fs.unlinkSync(i0);
    }
  });

  it('scans a segment that was rolled but never sealed and drops every segment after a cut in it', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ ops });
    const stored: Stored[] = [];
    ops.holdSyncs(true); // the roll's seal never completes: a crash right after the roll
    while (segmentFiles(partitionDir, '.log').length < 2) {
      const batch = makeBatch({ records: 2, valueBytes: 100, fill: stored.length });
      const result = log.append(batch);
      stored.push({ base: result.baseOffset, last: result.lastOffset, bytes: Buffer.from(batch) });
    }
    log.append(makeBatch({ records: 2, valueBytes: 100 }));
    expect(fs.existsSync(path.join(partitionDir, RECOVERY_CHECKPOINT_FILE))).toBe(false);
    // The power loss took the end of the first segment with it.
    const [firstFile, secondFile] = segmentFiles(partitionDir, '.log');
    fs.truncateSync(firstFile, fs.statSync(firstFile).size - 10);
    const recovered = await openLog();
    const lastWhole = stored[stored.length - 3];
    expect(recovered.logEndOffset).toBe(lastWhole.last + 1);
    expect(recovered.recovery.deletedSegments).toEqual([path.basename(secondFile)]);
    expect(fs.existsSync(secondFile)).toBe(false);
    expect(recovered.append(makeBatch()).baseOffset).toBe(lastWhole.last + 1);
    ops.holdSyncs(false);
    ops.release();
  });

  it('trusts sealed segments below the checkpoint and scans only from it', async () => {
    const { log: first, stored } = await writeLog(60);
    // A roll happened, so its seal moved the checkpoint; the crash is now.
    await first.flush();
    const checkpoint = Number(fs.readFileSync(path.join(partitionDir, RECOVERY_CHECKPOINT_FILE), 'latin1').split('\n')[1]);
    const newestBase = Number(path.basename(newestLogFile()).slice(0, 20));
    expect(checkpoint).toBe(newestBase);
    const log = await openLog();
    expect(log.recovery.scannedSegments).toBe(1);
    expect(log.recovery.scannedBytes).toBe(fs.statSync(newestLogFile()).size);
    expectServes(log, stored);
  });

  it('continues past every sealed offset, not at 0, when every segment file is gone', async () => {
    const { log } = await writeLog(30);
    await log.close();
    opened.splice(opened.indexOf(log), 1);
    // A clean close leaves a checkpoint saying the active segment was synced up to the log
    // end: the least the log had reached.
    const end = Number(fs.readFileSync(path.join(partitionDir, RECOVERY_CHECKPOINT_FILE), 'latin1').split('\n')[2].split(' ')[1]);
    expect(end).toBe(log.logEndOffset);
    for (const file of fs.readdirSync(partitionDir)) {
      if (/\.(log|index|timeindex)$/.test(file)) fs.rmSync(path.join(partitionDir, file));
    }
    const reopened = await openLog();
    expect(reopened.logStartOffset).toBe(end);
    expect(reopened.logEndOffset).toBe(end);
    expect(reopened.recovery.notes.join('\n')).toMatch(new RegExp(`offsets below ${end} were written`));
    expect(reopened.append(makeBatch({ records: 1 })).baseOffset).toBe(end);
  });

  it('ignores unknown files and removes interrupted temporary files', async () => {
    await writeLog(5);
    fs.writeFileSync(path.join(partitionDir, 'notes.txt'), 'hello');
    fs.writeFileSync(path.join(partitionDir, '00000000000000000000.log.bak'), 'junk');
    fs.writeFileSync(path.join(partitionDir, '.tmp-0123456789abcdef'), 'half a file');
    const log = await openLog();
    expect(log.logEndOffset).toBe(1 + 2 + 3 + 1 + 2);
    expect(log.recovery.notes.join('\n')).toContain('notes.txt');
    expect(fs.existsSync(path.join(partitionDir, '.tmp-0123456789abcdef'))).toBe(false);
    expect(fs.existsSync(path.join(partitionDir, 'notes.txt'))).toBe(true);
  });
});

describe('clean start', () => {
  it('skips the scan when the marker says so and the files are intact', async () => {
    const { log: first, stored } = await writeLog(60);
    await first.close();
    const ops = faultyFileOps();
    const log = await openLog({ clean: true, ops });
    expect(log.recovery).toMatchObject({ clean: true, scannedSegments: 0, scannedBytes: 0, truncatedBytes: 0, rebuiltIndexes: [] });
    // A scan would read every segment; resuming reads index tails and the newest's last few batches.
    expect(ops.counts.reads).toBeLessThan(3 * segmentFiles(partitionDir, '.log').length + 10);
    expectServes(log, stored);
    expect(log.append(makeBatch()).baseOffset).toBe(stored[stored.length - 1].last + 1);
  });

  it('scans the newest segment when its index does not match the log', async () => {
    const { log: first, stored } = await writeLog(60);
    await first.close();
    // Bytes appended after the close that wrote the index: the walk from its last entry
    // finds a torn batch, so the newest segment is scanned and cut.
    fs.appendFileSync(newestLogFile(), Buffer.alloc(30, 1));
    const log = await openLog({ clean: true });
    expect(log.recovery.scannedSegments).toBe(1);
    expect(log.recovery.truncatedBytes).toBe(30);
    expectServes(log, stored);
    expect(readWholeLog(partitionDir).equals(Buffer.concat(stored.map((s) => s.bytes)))).toBe(true);
    expect(splitBatches(log.read(0, 1))).toHaveLength(1);
  });
});
