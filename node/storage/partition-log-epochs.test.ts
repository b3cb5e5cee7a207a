// Leader epochs in the log: stamped on every batch, kept in a durable checkpoint, a new one
// after every unclean start, numbered above every epoch a power loss may have taken back.
// A "crash" is a PartitionLog abandoned without close(): no code of ours runs after it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AssertionError } from '../../protocol/errors.js';
import { OFFSET_LEADER_EPOCH, splitBatches } from '../../protocol/record-batch.js';
import { parseTopicConfig } from './config.js';
import { LEADER_EPOCH_CHECKPOINT_FILE } from './leader-epoch.js';
import { PartitionLog } from './partition-log.js';
import type { OpenPartitionOptions } from './partition-log.js';
import { makeBatch, makeTempDir, removeDir } from './testing.js';

const CONFIG = { 'segment.bytes': 4096, flush: 'os' as const };
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

async function openLog(options: OpenPartitionOptions = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open(partitionDir, 't', 0, parseTopicConfig(CONFIG), options);
  opened.push(log);
  return log;
}

/** Abandons `log` as a crash would: its fds close, nothing of ours runs. */
function crash(log: PartitionLog): void {
  opened.splice(opened.indexOf(log), 1);
  (log as unknown as { segments: { close(): void }[] }).segments.forEach((s) => s.close());
}

function appendRecords(log: PartitionLog, batches: number): void {
  for (let i = 0; i < batches; i++) log.append(makeBatch({ records: 2, valueBytes: 50, fill: i }));
}

/** The epoch field of every stored batch, from the log start. */
function storedEpochs(log: PartitionLog): number[] {
  const epochs: number[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const bytes = log.read(offset, 1 << 20, log.logEndOffset);
    for (const batch of splitBatches(bytes)) {
      epochs.push(batch.readInt32BE(OFFSET_LEADER_EPOCH));
      offset = Number(batch.readBigInt64BE(0)) + batch.readInt32BE(23) + 1;
    }
  }
  return epochs;
}

function checkpointText(): string {
  return fs.readFileSync(path.join(partitionDir, LEADER_EPOCH_CHECKPOINT_FILE), 'latin1');
}

/** Cuts the newest segment back to its first `keep` batches, as a power loss takes what was never synced. */
function cutNewestSegment(keep: number): void {
  const newest = fs.readdirSync(partitionDir).filter((f) => f.endsWith('.log')).sort().at(-1) as string;
  const file = path.join(partitionDir, newest);
  const batches = splitBatches(fs.readFileSync(file));
  fs.truncateSync(file, batches.slice(0, keep).reduce((n, b) => n + b.length, 0));
}

describe('leader epochs of a partition this node leads', () => {
  it('a new log begins epoch 0 at offset 0, durably, and stamps it on every batch', async () => {
    const log = await openLog();
    expect(log.leaderEpoch).toBe(0);
    expect(checkpointText()).toBe('0\n1\n0 0\n');
    appendRecords(log, 3);
    expect(storedEpochs(log)).toEqual([0, 0, 0]);
  });

  it('a clean restart keeps the epoch; an unclean one begins the next at the log end', async () => {
    const first = await openLog();
    appendRecords(first, 5);
    await first.close();
    opened.splice(0);
    const clean = await openLog({ clean: true });
    expect(clean.leaderEpoch).toBe(0);
    appendRecords(clean, 1);
    crash(clean);

    const unclean = await openLog({ clean: false });
    expect(unclean.leaderEpoch).toBe(1);
    expect(unclean.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: 12 }]);
    expect(checkpointText()).toBe('0\n2\n0 0\n1 12\n');
    appendRecords(unclean, 2);
    expect(storedEpochs(unclean)).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
    expect(unclean.endOffsetForEpoch(0)).toEqual({ leaderEpoch: 0, endOffset: 12 });
    expect(unclean.endOffsetForEpoch(1)).toEqual({ leaderEpoch: 1, endOffset: 16 });
    expect(unclean.endOffsetForEpoch(2)).toEqual({ leaderEpoch: -1, endOffset: -1 });
  });

  it('a power loss that takes back a whole epoch: the next one is numbered above it, so a reader of the lost offsets can tell', async () => {
    const log = await openLog();
    appendRecords(log, 4); // epoch 0: offsets 0..7
    crash(log);
    const second = await openLog({ clean: false });
    expect(second.leaderEpoch).toBe(1); // epoch 1 from 8
    appendRecords(second, 4); // offsets 8..15, never synced
    crash(second);
    // The power loss: the newest segment keeps only its first 3 batches (offsets 0..5).
    cutNewestSegment(3);

    const third = await openLog({ clean: false });
    expect(third.logEndOffset).toBe(6);
    expect(third.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 2, startOffset: 6 }]);
    expect(third.leaderEpoch).toBe(2);
    // A consumer that read to 16 in epoch 1, or to 8 in epoch 0, learns the log ends at 6 for it.
    expect(third.endOffsetForEpoch(1)).toEqual({ leaderEpoch: 0, endOffset: 6 });
    expect(third.endOffsetForEpoch(0)).toEqual({ leaderEpoch: 0, endOffset: 6 });
    appendRecords(third, 1);
    expect(storedEpochs(third)).toEqual([0, 0, 0, 2]);
  });

  it('a folder written before epochs (no checkpoint) gains them from its batches, without a new epoch on a clean start', async () => {
    const log = await openLog();
    appendRecords(log, 2);
    crash(log);
    const second = await openLog({ clean: false });
    appendRecords(second, 2);
    await second.close();
    opened.splice(0);
    fs.rmSync(path.join(partitionDir, LEADER_EPOCH_CHECKPOINT_FILE));

    const upgraded = await openLog({ clean: true });
    expect(upgraded.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: 4 }]);
    expect(checkpointText()).toBe('0\n2\n0 0\n1 4\n');
    expect(upgraded.recovery.notes).toEqual([]);
  });

  it('a damaged checkpoint is rebuilt from the batches and said in the recovery report', async () => {
    const log = await openLog();
    appendRecords(log, 2);
    await log.close();
    opened.splice(0);
    fs.writeFileSync(path.join(partitionDir, LEADER_EPOCH_CHECKPOINT_FILE), '0\n7\n');
    const reopened = await openLog({ clean: true });
    expect(reopened.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }]);
    expect(reopened.recovery.notes.join('\n')).toMatch(/leader-epoch checkpoint unreadable \(count .*\): rebuilt from the batches/);
  });

  it('retention moves the first epoch up with the log start', async () => {
    const log = await openLog();
    for (let i = 0; i < 40; i++) log.append(makeBatch({ records: 1, valueBytes: 400, fill: i }));
    await log.flush();
    expect(log.closedSegments().length).toBeGreaterThan(1);
    await log.maintain(() => log.deleteOldestSegments(1));
    expect(log.leaderEpochs()).toEqual([{ epoch: 0, startOffset: log.logStartOffset }]);
  });
});

describe("a follower's log", () => {
  it('never begins an epoch of its own, even after an unclean start, and takes no leader appends', async () => {
    const log = await openLog({ follower: true });
    expect(log.leaderEpoch).toBe(-1);
    expect(fs.existsSync(path.join(partitionDir, LEADER_EPOCH_CHECKPOINT_FILE))).toBe(false);
    expect(() => log.append(makeBatch())).toThrow(/NOT_LEADER: .*follows the partition's leader/);
    crash(log);
    const reopened = await openLog({ follower: true, clean: false });
    expect(reopened.leaderEpoch).toBe(-1);
  });
});
