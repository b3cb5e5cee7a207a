// A follower's log: the leader's batches appended as the leader stored them, the cut when
// the two logs diverged, a high watermark set by the leader, and the role changes. A
// "crash" is a PartitionLog abandoned without close(): no code of ours runs after it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AssertionError, TributaryError } from '../../protocol/errors.js';
import {
  computeCrc,
  OFFSET_CRC,
  OFFSET_LAST_OFFSET_DELTA,
  setBaseOffset,
  setPartitionLeaderEpoch,
  splitBatches,
  stampBatch,
} from '../../protocol/record-batch.js';
import { readRecoveryCheckpoint } from './checkpoint.js';
import { parseTopicConfig } from './config.js';
import { nodeFileOps } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { truncateToLeader } from './follower-truncation.js';
import { LEADER_EPOCH_CHECKPOINT_FILE } from './leader-epoch.js';
import { PartitionLog } from './partition-log.js';
import type { OpenPartitionOptions } from './partition-log.js';
import { errorName, faultyFileOps, makeBatch, makeTempDir, removeDir, segmentFiles } from './testing.js';
import { clockAt } from '../../protocol/clock.js';

const CONFIG = { 'segment.bytes': 4096, flush: 'os' as const };
let dir: string;
const opened: PartitionLog[] = [];

beforeEach(() => {
  dir = makeTempDir();
});

afterEach(async () => {
  for (const log of opened.splice(0)) await log.close().catch(() => undefined);
  removeDir(dir);
});

async function openLog(name: string, options: OpenPartitionOptions = {}, config: Record<string, string | number> = CONFIG): Promise<PartitionLog> {
  const log = await PartitionLog.open(path.join(dir, name), 't', 0, parseTopicConfig(config), options);
  opened.push(log);
  return log;
}

function crash(log: PartitionLog): void {
  opened.splice(opened.indexOf(log), 1);
  (log as unknown as { segments: { close(): void }[] }).segments.forEach((s) => s.close());
}

interface LeaderBatchShape {
  base: number;
  epoch: number;
  records?: number;
  /** Offsets the batch spans: more than its records once the log cleaner thinned it. */
  span?: number;
  fill?: number;
  producer?: { producerId: number; producerEpoch: number; baseSequence: number };
}

/** A batch as a leader stored it: its base offset and leader epoch set. */
function leaderBatch(shape: LeaderBatchShape): Buffer {
  const records = shape.records ?? 1;
  const batch = makeBatch({ records, valueBytes: 40, fill: shape.fill ?? shape.base });
  if (shape.producer !== undefined) stampBatch(batch, shape.producer, shape.producer.baseSequence);
  if (shape.span !== undefined) {
    batch.writeInt32BE(shape.span - 1, OFFSET_LAST_OFFSET_DELTA);
    batch.writeUInt32BE(computeCrc(batch), OFFSET_CRC);
  }
  setBaseOffset(batch, shape.base);
  setPartitionLeaderEpoch(batch, shape.epoch);
  return batch;
}

function epochCheckpoint(name: string): string {
  return fs.readFileSync(path.join(dir, name, LEADER_EPOCH_CHECKPOINT_FILE), 'latin1');
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof TributaryError) return err.errorName;
    if (err instanceof AssertionError) return 'AssertionError';
    throw err;
  }
  return 'NONE';
}

/** Every stored batch from the log start to the log end, as [base, last, epoch]. */
function storedBatches(log: PartitionLog): [number, number, number][] {
  const out: [number, number, number][] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const read = log.readBatches(offset, 1 << 20, log.logEndOffset);
    if (read.batches.length === 0) break;
    for (const b of read.batches) out.push([b.baseOffset, b.lastOffset, b.leaderEpoch]);
    offset = read.batches[read.batches.length - 1].lastOffset + 1;
  }
  return out;
}

describe('appendAsFollower', () => {
  it("keeps the leader's offsets and epochs, holes included, and records each new epoch", async () => {
    const log = await openLog('f', { follower: true });
    const batches = Buffer.concat([
      leaderBatch({ base: 0, epoch: 0, records: 2 }),
      leaderBatch({ base: 2, epoch: 0, records: 2, span: 5 }), // thinned by the cleaner: offsets 2..6, two records
      leaderBatch({ base: 10, epoch: 3 }), // 7..9 removed whole by the cleaner
      leaderBatch({ base: 11, epoch: 3 }),
    ]);
    const result = await log.appendAsFollower(batches);
    expect(result).toMatchObject({ baseOffset: 0, lastOffset: 11 });
    expect(log.logEndOffset).toBe(12);
    expect(storedBatches(log)).toEqual([
      [0, 1, 0],
      [2, 6, 0],
      [10, 10, 3],
      [11, 11, 3],
    ]);
    expect(log.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 3, startOffset: 10 }]);
    expect(epochCheckpoint('f')).toBe('0\n2\n0 0\n3 10\n');
    expect(log.endOffsetForEpoch(0)).toEqual({ leaderEpoch: 0, endOffset: 10 });
    // The stored bytes are the leader's, untouched.
    expect(log.readBatches(0, 1 << 20, log.logEndOffset).bytes.equals(batches)).toBe(true);
  });

  it('refuses, appending nothing, offsets that do not follow the log end, a decreasing epoch, a bad CRC, a partial batch', async () => {
    const log = await openLog('f', { follower: true });
    await log.appendAsFollower(leaderBatch({ base: 0, epoch: 2, records: 3 }));
    const corrupt = leaderBatch({ base: 3, epoch: 2 });
    corrupt[corrupt.length - 1] ^= 1;
    const cases: [string, Buffer, string][] = [
      ['below the log end', leaderBatch({ base: 2, epoch: 2 }), 'OFFSET_OUT_OF_RANGE'],
      ['overlapping the batch before it', Buffer.concat([leaderBatch({ base: 3, epoch: 2, records: 2 }), leaderBatch({ base: 4, epoch: 2 })]), 'OFFSET_OUT_OF_RANGE'],
      ['an epoch below the last batch', leaderBatch({ base: 3, epoch: 1 }), 'INVALID_RECORD'],
      ['an epoch going down inside the call', Buffer.concat([leaderBatch({ base: 3, epoch: 4 }), leaderBatch({ base: 4, epoch: 3 })]), 'INVALID_RECORD'],
      ['a CRC that does not match', corrupt, 'CORRUPT_BATCH'],
      ['a partial batch at the end', Buffer.concat([leaderBatch({ base: 3, epoch: 2 }), leaderBatch({ base: 4, epoch: 2 }).subarray(0, 30)]), 'CORRUPT_BATCH'],
    ];
    for (const [what, batches, error] of cases) {
      expect(await rejection(log.appendAsFollower(batches)), what).toBe(error);
      expect(log.logEndOffset, what).toBe(3);
      expect(log.leaderEpochs(), what).toEqual([{ epoch: 2, startOffset: 0 }]);
    }
  });

  it('writes the checkpoint of a new epoch durably before the batch that begins it reaches the segment', async () => {
    const events: string[] = [];
    const names = new Map<number, string>();
    const ops: FileOps = {
      ...nodeFileOps,
      openSync(file, flags) {
        const fd = nodeFileOps.openSync(file, flags);
        names.set(fd, path.basename(file));
        return fd;
      },
      writeSync(fd, buffer, offset, length, position) {
        if (names.get(fd)?.endsWith('.log')) events.push('segment write');
        return nodeFileOps.writeSync(fd, buffer, offset, length, position);
      },
      async rename(from, to) {
        await nodeFileOps.rename(from, to);
        if (path.basename(to) === LEADER_EPOCH_CHECKPOINT_FILE) events.push('checkpoint renamed');
      },
      async fsync(fd) {
        await nodeFileOps.fsync(fd);
        if (names.get(fd) === 'f') events.push('folder fsync');
      },
    };
    const log = await openLog('f', { follower: true, ops });
    events.length = 0;
    await log.appendAsFollower(Buffer.concat([leaderBatch({ base: 0, epoch: 0 }), leaderBatch({ base: 1, epoch: 1 })]));
    expect(events).toEqual(['checkpoint renamed', 'folder fsync', 'segment write', 'segment write']);
    events.length = 0;
    await log.appendAsFollower(leaderBatch({ base: 2, epoch: 1 }));
    expect(events).toEqual(['segment write']); // no new epoch, no checkpoint
  });

  it('runs calls one at a time, in call order', async () => {
    const log = await openLog('f', { follower: true });
    const first = log.appendAsFollower(leaderBatch({ base: 0, epoch: 0, records: 2 }));
    const second = log.appendAsFollower(leaderBatch({ base: 2, epoch: 1 })); // checked against the log end the first leaves
    await Promise.all([first, second]);
    expect(storedBatches(log)).toEqual([
      [0, 1, 0],
      [2, 2, 1],
    ]);
  });

  it('follows the flush policy: with flush=batch, durable resolves once an fsync covers the batches', async () => {
    const ops = faultyFileOps();
    const log = await openLog('f', { follower: true, ops }, { ...CONFIG, flush: 'batch' });
    ops.holdSyncs(true);
    const result = await log.appendAsFollower(leaderBatch({ base: 0, epoch: 0, records: 3 }));
    let durable = false;
    void result.durable.then(() => {
      durable = true;
    });
    await vi.waitFor(() => expect(ops.counts.fdatasync).toBeGreaterThan(0));
    expect(durable).toBe(false);
    expect(log.recoveryPoint).toBe(0);
    ops.holdSyncs(false);
    ops.release();
    await result.durable;
    expect(log.recoveryPoint).toBe(3);
  });

  it("keeps producer state as the leader's: a leader after it knows a resend for a duplicate", async () => {
    const log = await openLog('f', { follower: true });
    const producer = { producerId: 7, producerEpoch: 0 };
    await log.appendAsFollower(
      Buffer.concat([
        leaderBatch({ base: 0, epoch: 0, records: 2, producer: { ...producer, baseSequence: 0 } }),
        leaderBatch({ base: 2, epoch: 0, records: 2, producer: { ...producer, baseSequence: 2 } }),
      ]),
    );
    await log.becomeLeader(1);
    const resend = makeBatch({ records: 2 });
    stampBatch(resend, producer, 2);
    expect(log.append(resend)).toMatchObject({ baseOffset: 2, lastOffset: 3, duplicate: true });
    const next = makeBatch({ records: 1 });
    stampBatch(next, producer, 4);
    expect(log.append(next)).toMatchObject({ baseOffset: 4, lastOffset: 4 });
  });

  it('is refused on a log this node leads, and a follower refuses leader appends', async () => {
    const leader = await openLog('l');
    expect(await rejection(leader.appendAsFollower(leaderBatch({ base: 0, epoch: 0 })))).toBe('NOT_LEADER');
    const follower = await openLog('f', { follower: true });
    expect(errorName(() => follower.append(makeBatch()))).toBe('NOT_LEADER');
  });
});

describe('the high watermark of a follower', () => {
  it("is the leader's, capped at the log end, never moving back but by truncation; reads stop at it", async () => {
    const log = await openLog('f', { follower: true });
    expect(log.highWatermark).toBe(0);
    await log.appendAsFollower(Buffer.concat([0, 1, 2, 3, 4].map((base) => leaderBatch({ base, epoch: 0 }))));
    expect(log.highWatermark).toBe(0);
    expect(log.read(0, 1 << 20).length).toBe(0);
    expect(log.updateHighWatermark(3)).toBe(3);
    expect(storedBatches(log)).toHaveLength(5);
    expect(splitBatches(log.read(0, 1 << 20))).toHaveLength(3);
    expect(log.updateHighWatermark(2)).toBe(3); // an older answer: ignored
    expect(log.updateHighWatermark(99)).toBe(5); // capped at the log end
    await log.truncateTo(4);
    expect(log.highWatermark).toBe(4);
  });

  it('stays shown across role changes; a single leader keeps the log end as before', async () => {
    const log = await openLog('f', { follower: true }, { ...CONFIG, flush: 'batch' });
    await log.appendAsFollower(Buffer.concat([0, 1, 2].map((base) => leaderBatch({ base, epoch: 0 }))));
    log.updateHighWatermark(3);
    expect(log.recoveryPoint).toBeLessThan(3);
    await log.becomeLeader(1);
    expect(log.highWatermark).toBe(3); // not back to the recovery point
    expect(log.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: 3 }]);
    expect(epochCheckpoint('f')).toBe('0\n2\n0 0\n1 3\n');
    log.append(makeBatch());
    await log.flush();
    expect(log.highWatermark).toBe(4);
    await log.becomeFollower();
    expect(log.highWatermark).toBe(4);
    expect(errorName(() => log.append(makeBatch()))).toBe('NOT_LEADER');
    expect(storedBatches(log).map(([, , epoch]) => epoch)).toEqual([0, 0, 0, 1]);
  });

  it("drops an epoch it began as leader and wrote nothing in, when the leader's next batch comes in another", async () => {
    const log = await openLog('f', { follower: true });
    await log.appendAsFollower(Buffer.concat([0, 1].map((base) => leaderBatch({ base, epoch: 0 }))));
    await log.becomeLeader(2);
    await log.becomeFollower();
    expect(log.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 2, startOffset: 2 }]);
    await log.appendAsFollower(leaderBatch({ base: 2, epoch: 3 }));
    expect(log.leaderEpochs()).toEqual([{ epoch: 0, startOffset: 0 }, { epoch: 3, startOffset: 2 }]);
    expect(epochCheckpoint('f')).toBe('0\n2\n0 0\n3 2\n');
  });
});

/** A follower with 40 one-record batches of epochs 0 (0..19), 1 (20..29) and 2 (30..39), over several segments. */
async function followerWithEpochs(options: OpenPartitionOptions = {}): Promise<PartitionLog> {
  // Segments of 1 KiB: about ten of these batches each.
  const log = await openLog('f', { follower: true, ...options }, { ...CONFIG, 'segment.bytes': 1024 });
  const producer = { producerId: 9, producerEpoch: 0 };
  for (let base = 0; base < 40; base++) {
    const epoch = base < 20 ? 0 : base < 30 ? 1 : 2;
    await log.appendAsFollower(leaderBatch({ base, epoch, records: 1, fill: base, producer: { ...producer, baseSequence: base } }));
  }
  await log.flush();
  return log;
}

describe('truncateTo', () => {
  it('cuts into a sealed segment: later segments, their epochs, snapshots above, and the recovery point go; the log reopens the same', async () => {
    const log = await followerWithEpochs();
    const bases = log.segmentBaseOffsets();
    expect(bases.length).toBeGreaterThan(3);
    const cut = bases[1] + 3; // inside the second segment, sealed
    const snapshotsBefore = fs.readdirSync(path.join(dir, 'f')).filter((f) => f.endsWith('.snapshot'));
    expect(snapshotsBefore.some((f) => Number(f.slice(0, 20)) > cut)).toBe(true);
    log.updateHighWatermark(40);

    await log.truncateTo(cut);
    expect(log.logEndOffset).toBe(cut);
    expect(log.recoveryPoint).toBe(cut);
    expect(log.highWatermark).toBe(cut);
    expect(log.segmentBaseOffsets()).toEqual(bases.slice(0, 2));
    expect(storedBatches(log).map(([base]) => base)).toEqual(Array.from({ length: cut }, (_, i) => i));
    expect(segmentFiles(path.join(dir, 'f'), '.log')).toHaveLength(2);
    expect(fs.readdirSync(path.join(dir, 'f')).filter((f) => f.endsWith('.snapshot') && Number(f.slice(0, 20)) > cut)).toEqual([]);
    const epochsAfter = cut > 20 ? [{ epoch: 0, startOffset: 0 }, { epoch: 1, startOffset: 20 }] : [{ epoch: 0, startOffset: 0 }];
    expect(log.leaderEpochs()).toEqual(epochsAfter);
    expect(log.offsetForTimestamp(0)).toEqual({ offset: 0, timestamp: 1_700_000_000_000 });

    // The leader's batches follow on from the cut, in a later epoch.
    await log.appendAsFollower(leaderBatch({ base: cut, epoch: 5, fill: 200 }));
    expect(log.leaderEpochs()).toEqual([...epochsAfter, { epoch: 5, startOffset: cut }]);
    // Producer state is the one at the cut (the leader's batch at `cut` was no producer's):
    // sequence cut-1 is a resend of the last batch kept, sequence `cut` the next one; the
    // state from before the cut (last sequence 39) would have refused it.
    await log.becomeLeader(6);
    const resend = makeBatch();
    stampBatch(resend, { producerId: 9, producerEpoch: 0 }, cut - 1);
    expect(log.append(resend)).toMatchObject({ baseOffset: cut - 1, duplicate: true });
    const next = makeBatch();
    stampBatch(next, { producerId: 9, producerEpoch: 0 }, cut);
    expect(log.append(next).baseOffset).toBe(cut + 1);
    crash(log);

    const reopened = await openLog('f', { follower: true, clean: false });
    expect(reopened.logEndOffset).toBe(cut + 2);
    expect(reopened.leaderEpochs()).toEqual([...epochsAfter, { epoch: 5, startOffset: cut }, { epoch: 6, startOffset: cut + 1 }]);
  });

  it('keeps a hole the cleaner left, cuts a batch the offset falls inside, and is a no-op at or past the log end', async () => {
    const log = await openLog('f', { follower: true });
    await log.appendAsFollower(Buffer.concat([leaderBatch({ base: 0, epoch: 0, records: 3 }), leaderBatch({ base: 10, epoch: 0, records: 3 })]));
    await log.truncateTo(13);
    expect(log.logEndOffset).toBe(13);
    await log.truncateTo(99);
    expect(log.logEndOffset).toBe(13);
    await log.truncateTo(11); // inside 10..12: the whole batch goes
    expect(log.logEndOffset).toBe(10);
    await log.truncateTo(5); // in the hole 3..9
    expect(log.logEndOffset).toBe(5);
    expect(storedBatches(log)).toEqual([[0, 2, 0]]);
    await log.appendAsFollower(leaderBatch({ base: 5, epoch: 1 }));
    expect(storedBatches(log)).toEqual([
      [0, 2, 0],
      [5, 5, 1],
    ]);
  });

  it('to an empty log, and below the log start (Kafka truncateFullyAndStartAt)', async () => {
    const log = await followerWithEpochs();
    await log.truncateTo(0);
    expect(log.logEndOffset).toBe(0);
    expect(log.leaderEpochs()).toEqual([]);
    expect(epochCheckpoint('f')).toBe('0\n0\n');
    expect(storedBatches(log)).toEqual([]);
    await log.appendAsFollower(leaderBatch({ base: 0, epoch: 4 }));
    expect(storedBatches(log)).toEqual([[0, 0, 4]]);
  });

  it('waits for a sync in flight: the recovery point and its checkpoint never claim offsets past the new log end', async () => {
    const ops = faultyFileOps();
    const log = await followerWithEpochs({ ops });
    await log.appendAsFollower(Buffer.concat([40, 41, 42].map((base) => leaderBatch({ base, epoch: 2 }))));
    ops.holdSyncs(true);
    const flushed = log.flush();
    await vi.waitFor(() => expect(ops.counts.fdatasync).toBeGreaterThan(0));
    const truncated = log.truncateTo(38);
    // Turns for a truncation that did not wait to cut the log under the held sync.
    for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    ops.holdSyncs(false);
    ops.release();
    await Promise.all([flushed, truncated]);
    expect(log.logEndOffset).toBe(38);
    expect(log.recoveryPoint).toBeLessThanOrEqual(38);
    const checkpoint = readRecoveryCheckpoint(nodeFileOps, path.join(dir, 'f'));
    expect(checkpoint.active === null || checkpoint.active.offset <= 38).toBe(true);
    crash(log);
    const reopened = await openLog('f', { follower: true, clean: false });
    expect(reopened.logEndOffset).toBe(38);
  });

  it("drops the checkpoint's line for the active segment when it names offsets past the cut, so an unclean start does not continue after them", async () => {
    const log = await openLog('f', { follower: true }, { ...CONFIG, 'segment.bytes': 1 << 20, flush: 'interval' });
    for (let base = 0; base < 200; base++) await log.appendAsFollower(leaderBatch({ base, epoch: 0, records: 1, fill: base }));
    await log.checkpoint(); // the active segment's line: offset 200
    expect(readRecoveryCheckpoint(nodeFileOps, path.join(dir, 'f')).active?.offset).toBe(200);
    await log.truncateTo(150);
    expect(readRecoveryCheckpoint(nodeFileOps, path.join(dir, 'f')).active).toBe(null);
    crash(log);
    const reopened = await openLog('f', { follower: true, clean: false });
    expect(reopened.logEndOffset).toBe(150);
  });

  it('waits for a maintenance job: retention and compaction never run beside it', async () => {
    const log = await followerWithEpochs();
    let release!: () => void;
    const seen: number[] = [];
    const job = log.maintain(async () => {
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      seen.push(log.logEndOffset);
    });
    const truncated = log.truncateTo(10);
    await vi.waitFor(() => expect(release).toBeDefined());
    release();
    await Promise.all([job, truncated]);
    expect(seen).toEqual([40]);
    expect(log.logEndOffset).toBe(10);
  });

  it('leaves the segment it cut to an unclean start to scan: bytes torn in it after the cut are cut then, not kept inside the log', async () => {
    const log = await followerWithEpochs();
    const bases = log.segmentBaseOffsets();
    const cut = bases[1] + 3;
    const partitionDir = path.join(dir, 'f');
    expect(readRecoveryCheckpoint(nodeFileOps, partitionDir).sealedBelow).toBeGreaterThan(bases[1]);
    await log.truncateTo(cut);
    expect(readRecoveryCheckpoint(nodeFileOps, partitionDir).sealedBelow).toBeLessThanOrEqual(bases[1]);
    // The leader's next batches fill the cut segment again and roll past it; nothing syncs.
    for (let base = cut; base < cut + 20; base++) await log.appendAsFollower(leaderBatch({ base, epoch: 3 }));
    expect(log.segmentBaseOffsets().length).toBeGreaterThan(2);
    crash(log);
    // A power loss tears the cut segment's second batch after the cut.
    const kept = path.join(partitionDir, `${String(bases[1]).padStart(20, '0')}.log`);
    const bytes = fs.readFileSync(kept);
    let position = 0;
    for (const batch of splitBatches(bytes)) {
      if (Number(batch.readBigInt64BE(0)) === cut + 1) break;
      position += batch.length;
    }
    expect(position).toBeLessThan(bytes.length);
    fs.writeFileSync(kept, Buffer.concat([bytes.subarray(0, position + 30), Buffer.alloc(bytes.length - position - 30)]));

    const reopened = await openLog('f', { follower: true, clean: false }, { ...CONFIG, 'segment.bytes': 1024 });
    expect(reopened.logEndOffset).toBe(cut + 1);
    expect(storedBatches(reopened).map(([base]) => base)).toEqual(Array.from({ length: cut + 1 }, (_, i) => i));
    expect(reopened.leaderEpochs().at(-1)).toEqual({ epoch: 3, startOffset: cut });
  });

  it("rebuilds the cut segment's indexes as append would have written them, from the last entry that stays", async () => {
    // Index entries every ~1000 bytes (every six batches), timestamps out of order so that the max moves.
    const config = { ...CONFIG, 'segment.bytes': 1 << 20, 'index.interval.bytes': 1000 };
    const shapes = Array.from({ length: 60 }, (_, i) => ({ records: 1 + (i % 3) }));
    // Each batch from 30 to the cut raises the max. The entries fall every six batches here
    // (30, 36, ...): only a walk of what stays past the last one (30) finds the max of 34.
    const before = (i: number): number => 1_700_000_000_000 + (i >= 30 && i < 35 ? i * 100_000_000 : ((i * 7919) % 1000) * 1000);
    const build = (timestampOf: (i: number) => number, fill: number): Buffer[] => {
      let next = 0;
      return shapes.map((shape, i) => {
        const batch = makeBatch({ records: shape.records, valueBytes: 50, fill: next + fill, timestamp: timestampOf(i) });
        setBaseOffset(batch, next);
        setPartitionLeaderEpoch(batch, 0);
        next += shape.records;
        return batch;
      });
    };
    const batches = build(before, 0);
    const cutAt = Number(batches[35].readBigInt64BE(0)) + 1; // inside batch 35: it goes whole
    // The leader's batches after the cut: the same ones (34's max is found only by the walk),
    // or others whose first passes 34's max (an entry made at 36 before the cut, naming 34,
    // must not stay).
    const afterCuts = { same: batches.slice(35), other: build((i) => 1_700_000_000_000 + (i === 35 ? 4_000_000_000 : ((i * 104_729) % 1000) * 1000), 1).slice(35) };
    for (const [name, leaderAfter] of Object.entries(afterCuts)) {
      const cutLog = await openLog(`cut-${name}`, { follower: true }, config);
      await cutLog.appendAsFollower(Buffer.concat(batches));
      await cutLog.truncateTo(cutAt);
      const fresh = await openLog(`fresh-${name}`, { follower: true }, config);
      await fresh.appendAsFollower(Buffer.concat(batches.slice(0, 35)));
      for (const log of [cutLog, fresh]) await log.appendAsFollower(Buffer.concat(leaderAfter));
      for (const t of [1_700_000_500_000, 1_703_400_000_000, 1_703_500_000_000]) expect(cutLog.offsetForTimestamp(t), `${name} ${t}`).toEqual(fresh.offsetForTimestamp(t));
      // Both sealed by close: their index files are what they held.
      await cutLog.close();
      await fresh.close();
      for (const suffix of ['.index', '.timeindex'] as const) {
        const [cutFile] = segmentFiles(path.join(dir, `cut-${name}`), suffix);
        const [freshFile] = segmentFiles(path.join(dir, `fresh-${name}`), suffix);
        const bytes = fs.readFileSync(freshFile);
        expect(bytes.length, suffix).toBeGreaterThan(5 * 8);
        expect(fs.readFileSync(cutFile).equals(bytes), `${name} ${suffix}`).toBe(true);
      }
    }
  });

  it('is refused on a log this node leads', async () => {
    const leader = await openLog('l');
    leader.append(makeBatch());
    expect(await rejection(leader.truncateTo(0))).toBe('NOT_LEADER');
    expect(leader.logEndOffset).toBe(1);
  });
});

describe('a follower replicating a leader', () => {
  /** Reads the leader from the follower's log end to the leader's and appends it as the follower. */
  async function replicate(leader: PartitionLog, follower: PartitionLog): Promise<void> {
    while (follower.logEndOffset < leader.logEndOffset) {
      const read = leader.readBatches(follower.logEndOffset, 1500, leader.logEndOffset);
      await follower.appendAsFollower(read.bytes);
      follower.updateHighWatermark(leader.highWatermark);
    }
  }

  function expectSameSegments(): void {
    const names = (d: string) => segmentFiles(path.join(dir, d), '.log').map((f) => path.basename(f));
    expect(names('f')).toEqual(names('l'));
    for (const name of names('l')) {
      expect(fs.readFileSync(path.join(dir, 'f', name)).equals(fs.readFileSync(path.join(dir, 'l', name))), name).toBe(true);
    }
    expect(epochCheckpoint('f')).toBe(epochCheckpoint('l'));
  }

  it('ends byte-identical to its leader, after the leader lost its tail to a power loss and wrote other records', async () => {
    const leaderOptions = { clock: clockAt(() => 1_700_000_000_000 )};
    const leader = await openLog('l', leaderOptions);
    const follower = await openLog('f', { follower: true, clock: clockAt(() => 1_700_000_000_000 )});
    const producer = { producerId: 3, producerEpoch: 0 };
    let sequence = 0;
    for (let i = 0; i < 30; i++) {
      const records = 1 + (i % 3);
      const batch = makeBatch({ records, valueBytes: 90, fill: i });
      if (i % 2 === 0) {
        stampBatch(batch, producer, sequence);
        sequence += records;
      }
      leader.append(batch);
    }
    await leader.flush();
    await replicate(leader, follower);
    expectSameSegments();

    // Appended and replicated, never synced: the leader's power loss takes them back.
    for (let i = 30; i < 40; i++) leader.append(makeBatch({ records: 2, valueBytes: 90, fill: i }));
    await replicate(leader, follower);
    expectSameSegments();
    const synced = leader.recoveryPoint;
    const newest = segmentFiles(path.join(dir, 'l'), '.log').at(-1) as string;
    const kept = splitBatches(fs.readFileSync(newest)).slice(0, 2);
    crash(leader);
    fs.truncateSync(newest, kept.reduce((n, b) => n + b.length, 0));

    const restarted = await openLog('l', { ...leaderOptions, clean: false });
    expect(restarted.logEndOffset).toBeLessThan(follower.logEndOffset);
    expect(restarted.logEndOffset).toBeGreaterThanOrEqual(synced);
    expect(restarted.leaderEpoch).toBe(1);
    for (let i = 0; i < 12; i++) restarted.append(makeBatch({ records: 1, valueBytes: 70, fill: 100 + i }));
    await restarted.flush();

    const fetchFrom = await truncateToLeader(follower, async (epoch) => restarted.endOffsetForEpoch(epoch));
    const cutAt = restarted.leaderEpochs()[1].startOffset;
    expect(fetchFrom).toBe(cutAt);
    expect(follower.logEndOffset).toBe(cutAt);
    await replicate(restarted, follower);
    expect(follower.logEndOffset).toBe(restarted.logEndOffset);
    expect(follower.leaderEpochs()).toEqual(restarted.leaderEpochs());
    expectSameSegments();
  });
});
