// Idempotent producers through a PartitionLog: a resend is answered with where the batch
// was first written and never appended twice, across clean restarts, crashes, logs cut at
// recovery and damaged snapshots. What must hold after each: every batch still in the log
// is recognised when resent (if among its producer's last 5), a batch the log lost is
// appended again (it is no longer there), and the log holds every (producer, sequence) once.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';
import { encodeBatch, readBatchHeader, splitBatches } from '../../protocol/record-batch.js';
import { RECOVERY_CHECKPOINT_FILE } from './checkpoint.js';
import { parseTopicConfig } from './config.js';
import { nodeFileOps } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { PartitionLog } from './partition-log.js';
import type { AppendResult, OpenPartitionOptions } from './partition-log.js';
import { PRODUCER_BATCHES_KEPT, PRODUCER_ID_EXPIRATION_MS, ProducerStateManager, SNAPSHOT_FILE, snapshotFileName } from './producer-state.js';
import { errorName, faultyFileOps, makeBatch, makeTempDir, removeDir, segmentFiles } from './testing.js';
import { clockAt } from '../../protocol/clock.js';

/** The node's clock and the devices' record timestamps: one fixed instant unless a test moves it. */
const T0 = 1_700_000_000_000;
const ROLLING = { 'segment.bytes': 1024, 'index.interval.bytes': 128, flush: 'os' as const };
const ONE_SEGMENT = { flush: 'os' as const };

/** A batch an idempotent producer sent, and where the log put it. */
interface Sent {
  producerId: number;
  epoch: number;
  seq: number;
  count: number;
  /** As the producer sent it: a resend sends these bytes again. */
  original: Buffer;
  base: number;
  last: number;
}

let dir: string;
let partitionDir: string;
let nowMs: number;
const opened: PartitionLog[] = [];
/** Run first after each test: undoes what a failed assertion left held (a sync gate). */
const cleanups: (() => void)[] = [];

// Segment rolls write producer snapshots in the background. Every async file operation is
// tracked so a test can wait until that work is done before it crashes, reopens or looks
// at the folder, and so nothing writes into a folder being removed.
const pending = new Set<Promise<unknown>>();

function track<A extends unknown[], R>(run: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return (...args: A) => {
    const promise = run(...args);
    pending.add(promise);
    const forget = (): void => {
      pending.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  };
}

function trackedOps(base: FileOps): FileOps {
  return {
    ...base,
    fdatasync: track(base.fdatasync),
    fsync: track(base.fsync),
    mkdir: track(base.mkdir),
    readdir: track(base.readdir),
    rename: track(base.rename),
    rm: track(base.rm),
  };
}

/** Waits until no file operation is in flight and none starts in the next turn. Bounded. */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 1000; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (pending.size === 0) return;
    await Promise.allSettled([...pending]);
  }
  throw new Error('file operations did not settle');
}

beforeEach(() => {
  dir = makeTempDir();
  partitionDir = path.join(dir, 't-0');
  nowMs = T0;
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  await settle();
  for (const log of opened.splice(0)) await log.close().catch(() => undefined);
  await settle();
  removeDir(dir);
});

async function openLog(config: Record<string, string | number>, options: OpenPartitionOptions = {}): Promise<PartitionLog> {
  const log = await PartitionLog.open(partitionDir, 't', 0, parseTopicConfig(config), {
    clock: clockAt(() => nowMs),
    ...options,
    ops: trackedOps(options.ops ?? nodeFileOps),
  });
  opened.push(log);
  return log;
}

/** Closes as a node shutting down does, then reopens as the manager would after it. */
async function restart(log: PartitionLog, config: Record<string, string | number>): Promise<PartitionLog> {
  await log.close();
  await settle();
  return openLog(config, { clean: true });
}

/**
 * A crash: the log is abandoned without close (its background work finishes first, so the
 * folder is what a crash right after it would leave), and the folder opened unclean.
 */
async function crash(log: PartitionLog, config: Record<string, string | number>): Promise<PartitionLog> {
  await log.flush();
  await settle();
  return openLog(config, { clean: false });
}

/** A producer's batch; its records are stamped with the device's clock, the node's unless given. */
function idempotentBatch(producerId: number, epoch: number, seq: number, count: number, timestampMs = nowMs): Buffer {
  const records = Array.from({ length: count }, (_, i) => ({
    key: Buffer.from(`p${producerId}`),
    value: Buffer.alloc(40 + ((seq + i) % 5) * 20, (producerId * 31 + seq + i) & 0xff),
    timestamp: timestampMs,
  }));
  return encodeBatch(records, { producerId, producerEpoch: epoch, baseSequence: seq, timestamp: timestampMs });
}

/** Appends a new batch; it must be appended, at the log end. */
function send(log: PartitionLog, producerId: number, epoch: number, seq: number, count: number, timestampMs = nowMs): Sent {
  const original = idempotentBatch(producerId, epoch, seq, count, timestampMs);
  const end = log.logEndOffset;
  const result = log.append(Buffer.from(original));
  expect(result.duplicate, `producer ${producerId} sequence ${seq} is new`).toBeFalsy();
  expect(result.baseOffset).toBe(end);
  expect(result.lastOffset).toBe(end + count - 1);
  return { producerId, epoch, seq, count, original, base: result.baseOffset, last: result.lastOffset };
}

/** Producers that each send `rounds` batches of 1..3 records, interleaved, with a plain batch now and then. */
function sendRounds(log: PartitionLog, producers: { id: number; epoch: number }[], rounds: number, sent: Sent[]): void {
  for (let round = 0; round < rounds; round++) {
    for (const { id, epoch } of producers) {
      const mine = sent.filter((s) => s.producerId === id && s.epoch === epoch);
      const seq = mine.length === 0 ? 0 : mine[mine.length - 1].seq + mine[mine.length - 1].count;
      sent.push(send(log, id, epoch, seq, 1 + ((id + round) % 3)));
    }
    if (round % 4 === 3) log.append(makeBatch({ records: 2, fill: round }));
  }
}

function resend(log: PartitionLog, batch: Sent): AppendResult {
  return log.append(Buffer.from(batch.original));
}

function expectDuplicate(log: PartitionLog, batch: Sent): AppendResult {
  const end = log.logEndOffset;
  const result = resend(log, batch);
  expect(result.duplicate, `resend of producer ${batch.producerId} sequence ${batch.seq}`).toBe(true);
  expect(result.baseOffset).toBe(batch.base);
  expect(result.lastOffset).toBe(batch.last);
  expect(log.logEndOffset).toBe(end);
  return result;
}

/** Expects `batch` to be refused with `name` and nothing to be appended. */
function expectRefused(log: PartitionLog, batch: Buffer, name: string): void {
  const end = log.logEndOffset;
  expect(errorName(() => log.append(batch))).toBe(name);
  expect(log.logEndOffset).toBe(end);
}

/** Per producer: the last 5 are duplicates, the 6th newest and a gap are refused, the next sequence is taken. */
function expectProducerState(log: PartitionLog, sent: Sent[], producerId: number): Sent {
  const mine = sent.filter((s) => s.producerId === producerId);
  const last = mine[mine.length - 1];
  const current = mine.filter((s) => s.epoch === last.epoch);
  for (const batch of current.slice(-PRODUCER_BATCHES_KEPT)) expectDuplicate(log, batch);
  const next = last.seq + last.count;
  const sixth = current.at(-PRODUCER_BATCHES_KEPT - 1);
  if (sixth !== undefined) expectRefused(log, Buffer.from(sixth.original), 'OUT_OF_ORDER_SEQUENCE');
  expectRefused(log, idempotentBatch(producerId, last.epoch, next + 1, 1), 'OUT_OF_ORDER_SEQUENCE');
  if (last.epoch > 0) expectRefused(log, idempotentBatch(producerId, last.epoch - 1, next, 1), 'INVALID_PRODUCER_EPOCH');
  const accepted = send(log, producerId, last.epoch, next, 1);
  sent.push(accepted);
  return accepted;
}

/** Every batch in the log, from its start to its end. */
function readAll(log: PartitionLog): Buffer[] {
  const out: Buffer[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const batches = splitBatches(log.read(offset, 1 << 20, log.logEndOffset));
    expect(batches.length).toBeGreaterThan(0);
    out.push(...batches);
    offset = readBatchHeader(batches[batches.length - 1]).baseOffset + readBatchHeader(batches[batches.length - 1]).lastOffsetDelta + 1;
  }
  return out;
}

/** The log holds each (producer, epoch, sequence) once, at the offsets its append answered. */
function expectEachOnce(log: PartitionLog, sent: Sent[]): void {
  const seen = new Map<string, number>();
  for (const batch of readAll(log)) {
    const h = readBatchHeader(batch);
    if (h.producerId < 0) continue;
    const key = `${h.producerId}/${h.producerEpoch}/${h.baseSequence}`;
    expect(seen.has(key), `${key} is in the log twice`).toBe(false);
    seen.set(key, h.baseOffset);
  }
  for (const s of sent) expect(seen.get(`${s.producerId}/${s.epoch}/${s.seq}`), `producer ${s.producerId} sequence ${s.seq}`).toBe(s.base);
  expect(seen.size).toBe(sent.length);
}

function snapshotOffsets(): number[] {
  return fs
    .readdirSync(partitionDir)
    .map((name) => SNAPSHOT_FILE.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

function segmentBases(): number[] {
  return segmentFiles(partitionDir, '.log').map((file) => Number(path.basename(file).slice(0, 20)));
}

function flipByte(file: string, position: number): void {
  const bytes = fs.readFileSync(file);
  bytes[position] ^= 0x04;
  fs.writeFileSync(file, bytes);
}

describe('resends on a running log', () => {
  it('answers a resend of each of the last 5 batches with its offsets, appending nothing', async () => {
    const log = await openLog(ONE_SEGMENT);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 7, epoch: 0 }, { id: 8, epoch: 2 }], 9, sent);
    const end = log.logEndOffset;
    const batchesBefore = readAll(log).length;
    for (const producerId of [7, 8]) {
      const mine = sent.filter((s) => s.producerId === producerId);
      for (const batch of mine.slice(-PRODUCER_BATCHES_KEPT)) expectDuplicate(log, batch);
      // The 6th newest is forgotten: refused as out of order, not appended again.
      expectRefused(log, Buffer.from(mine.at(-PRODUCER_BATCHES_KEPT - 1)!.original), 'OUT_OF_ORDER_SEQUENCE');
    }
    expect(log.logEndOffset).toBe(end);
    expect(readAll(log)).toHaveLength(batchesBefore);
    expectEachOnce(log, sent);
    // Resending the same batch many times is still one batch.
    const last = sent[sent.length - 1];
    for (let i = 0; i < 5; i++) expectDuplicate(log, last);
    expectProducerState(log, sent, 7);
    expectProducerState(log, sent, 8);
    expectEachOnce(log, sent);
  });

  it('appends nothing for a refused batch', async () => {
    const log = await openLog(ONE_SEGMENT);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 1, epoch: 3 }], 3, sent);
    const next = sent[sent.length - 1].seq + sent[sent.length - 1].count;
    expectRefused(log, idempotentBatch(1, 3, next + 2, 1), 'OUT_OF_ORDER_SEQUENCE');
    expectRefused(log, idempotentBatch(1, 2, next, 1), 'INVALID_PRODUCER_EPOCH');
    expectRefused(log, idempotentBatch(1, 4, next, 1), 'OUT_OF_ORDER_SEQUENCE');
    expectRefused(log, idempotentBatch(2, 0, 1, 1), 'OUT_OF_ORDER_SEQUENCE');
    expectRefused(log, idempotentBatch(2, 0, -1, 1), 'INVALID_REQUEST');
    expectRefused(log, idempotentBatch(2, -1, 0, 1), 'INVALID_REQUEST');
    expectEachOnce(log, sent);
    // The refusals left the state as it was.
    expectProducerState(log, sent, 1);
    expect(errorName(() => send(log, 2, 0, 0, 2))).toBe('NONE');
  });

  it('under flush=batch, a duplicate is durable only once an fsync covers the original', async () => {
    const ops = faultyFileOps();
    const log = await openLog({ flush: 'batch' }, { ops });
    ops.holdSyncs(true);
    cleanups.push(() => {
      ops.holdSyncs(false);
      ops.release();
    });
    const original = idempotentBatch(3, 0, 0, 2);
    const first = log.append(Buffer.from(original));
    const duplicate = log.append(Buffer.from(original));
    expect(duplicate.duplicate).toBe(true);
    expect([duplicate.baseOffset, duplicate.lastOffset]).toEqual([first.baseOffset, first.lastOffset]);
    let durable = false;
    void duplicate.durable.then(() => {
      durable = true;
    });
    // The fdatasync is held: nothing may call the duplicate durable, nor consumers see it.
    for (let turn = 0; turn < 20; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(ops.counts.fdatasync).toBeGreaterThan(0);
    expect(durable).toBe(false);
    expect(log.highWatermark).toBe(0);
    ops.holdSyncs(false);
    ops.release();
    await duplicate.durable;
    await first.durable;
    expect(log.highWatermark).toBeGreaterThan(duplicate.lastOffset);
    // Once durable, a further resend is answered at once, and still covered.
    const again = log.append(Buffer.from(original));
    expect(again.duplicate).toBe(true);
    await again.durable;
    expect(log.highWatermark).toBeGreaterThan(again.lastOffset);
    expect(log.logEndOffset).toBe(2);
  });
});

describe('restarts', () => {
  it('a clean close snapshots the state at the log end, and a reopened log still knows every resend', async () => {
    let log = await openLog(ONE_SEGMENT);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 1, epoch: 0 }, { id: 2, epoch: 5 }, { id: 2 ** 40 + 1, epoch: 0 }], 8, sent);
    const end = log.logEndOffset;
    log = await restart(log, ONE_SEGMENT);
    expect(snapshotOffsets()).toEqual([end]);
    expect(fs.existsSync(path.join(partitionDir, snapshotFileName(end)))).toBe(true);
    expect(log.logEndOffset).toBe(end);
    expect(log.recovery.notes).toEqual([]);
    expect(log.producers.producerCount).toBe(3);
    for (const id of [1, 2, 2 ** 40 + 1]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
    // And again, after a second clean restart with the batches just sent.
    log = await restart(log, ONE_SEGMENT);
    for (const id of [1, 2, 2 ** 40 + 1]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });

  it('a crash after several segment rolls rebuilds the state from a snapshot and a replay', async () => {
    let log = await openLog(ROLLING);
    const sent: Sent[] = [];
    const producers = [{ id: 11, epoch: 0 }, { id: 12, epoch: 1 }, { id: 13, epoch: 0 }];
    sendRounds(log, producers, 20, sent);
    expect(log.segmentCount).toBeGreaterThanOrEqual(4);
    const end = log.logEndOffset;
    log = await crash(log, ROLLING);
    expect(log.recovery.clean).toBe(false);
    expect(log.logEndOffset).toBe(end);
    expect(log.recovery.truncatedBytes).toBe(0);
    // Snapshots exist (taken at the rolls), all below the log end: the tail was replayed.
    const snapshots = snapshotOffsets();
    expect(snapshots.length).toBeGreaterThan(0);
    expect(Math.max(...snapshots)).toBeLessThan(end);
    expect(log.recovery.notes.filter((n) => n.includes('snapshot'))).toEqual([]);
    for (const { id } of producers) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
    // A second crash, with the batches just sent in the replayed tail.
    log = await crash(log, ROLLING);
    for (const { id } of producers) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });

  it('a crash before any snapshot reached its name costs only a full replay', async () => {
    // Every snapshot write stops before its rename, as a crash there would leave it.
    const failRenames: FileOps = {
      ...nodeFileOps,
      rename: (from, to) => (SNAPSHOT_FILE.test(path.basename(to)) ? Promise.reject(new Error('EIO: injected')) : nodeFileOps.rename(from, to)),
    };
    const first = await openLog(ROLLING, { ops: failRenames });
    const sent: Sent[] = [];
    sendRounds(first, [{ id: 21, epoch: 0 }, { id: 22, epoch: 0 }], 20, sent);
    expect(first.segmentCount).toBeGreaterThanOrEqual(3);
    const log = await crash(first, ROLLING);
    expect(snapshotOffsets()).toEqual([]);
    // The temporary files left behind were removed at open.
    expect(fs.readdirSync(partitionDir).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
    for (const id of [21, 22]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });

  it('a producer idle longer than producer.id.expiration.ms is forgotten at the next snapshot', async () => {
    let log = await openLog(ONE_SEGMENT);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 31, epoch: 0 }], 3, sent);
    nowMs = T0 + PRODUCER_ID_EXPIRATION_MS;
    sendRounds(log, [{ id: 32, epoch: 0 }], 3, sent);
    // Producer 31 has been idle one millisecond longer than the limit; 32 for one millisecond.
    nowMs += 1;
    log = await restart(log, ONE_SEGMENT);
    expect(log.producers.producerCount).toBe(1);
    expectProducerState(log, sent, 32);
    const last31 = sent.filter((s) => s.producerId === 31).at(-1)!;
    expect(errorName(() => log.append(idempotentBatch(31, 0, last31.seq + last31.count, 1)))).toBe('OUT_OF_ORDER_SEQUENCE');
  });
});

describe('device clocks', () => {
  // A gateway's devices often have no real-time clock: until they sync, their records carry
  // timestamps near 1970. Idleness is the node's business, measured on the node's clock.
  const UNSET_CLOCK_MS = 1_000;

  /** Appends plain batches until the log rolls (bounded), then lets the roll's snapshot finish. */
  async function roll(log: PartitionLog): Promise<void> {
    const segments = log.segmentCount;
    for (let i = 0; i < 50 && log.segmentCount === segments; i++) log.append(makeBatch({ records: 1, valueBytes: 300, fill: i }));
    expect(log.segmentCount).toBe(segments + 1);
    await log.flush();
    await settle();
  }

  it('a producer with an unset clock survives rolls on a running log', async () => {
    const log = await openLog(ROLLING);
    const sent = [0, 1, 2].map((seq) => send(log, 81, 0, seq, 1, UNSET_CLOCK_MS));
    await roll(log);
    await roll(log);
    expectDuplicate(log, sent[2]);
    expect(send(log, 81, 0, 3, 1, UNSET_CLOCK_MS).base).toBe(log.logEndOffset - 1);
  });

  // Fails: after a crash the replay takes each producer's last-append time from its batches'
  // max timestamp (partition-log.ts replayProducerState), so a producer that appended just
  // before the crash looks idle since 1970 and the first roll's expire() forgets it. Its
  // next batch is then refused with OUT_OF_ORDER_SEQUENCE (expected 0), and a resend of its
  // last batch is no longer recognised. producer-state.ts promises to forget only producers
  // that wrote nothing for PRODUCER_ID_EXPIRATION_MS; this one wrote nothing for 0 ms.
  it('a producer with an unset clock that appended just before a crash is not forgotten at the next roll', async () => {
    let log = await openLog(ROLLING);
    const sent = [0, 1, 2].map((seq) => send(log, 82, 0, seq, 1, UNSET_CLOCK_MS));
    log = await crash(log, ROLLING);
    expectDuplicate(log, sent[2]);
    await roll(log);
    expect(errorName(() => expectDuplicate(log, sent[2]))).toBe('NONE');
    expect(errorName(() => send(log, 82, 0, 3, 1, UNSET_CLOCK_MS))).toBe('NONE');
  });
});

describe('logs cut at recovery', () => {
  /** Appends across rolls, closes cleanly, then damages the last two batches (both in the newest segment). */
  async function cutLog(damage: (file: string, lastTwo: Sent[]) => void): Promise<{ log: PartitionLog; sent: Sent[]; cut: Sent[] }> {
    let log = await openLog(ROLLING);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 41, epoch: 0 }, { id: 42, epoch: 0 }], 12, sent);
    // The two batches to cut: one of each producer, last in the log, in the same segment.
    for (let tries = 0; tries < 10; tries++) {
      sendRounds(log, [{ id: 41, epoch: 0 }, { id: 42, epoch: 0 }], 1, sent);
      if (log.segmentFileFor(sent[sent.length - 2].base) === log.segmentFileFor(sent[sent.length - 1].base)) break;
    }
    const end = log.logEndOffset;
    const cut = sent.slice(-2);
    expect(cut.map((s) => s.producerId)).toEqual([41, 42]);
    expect(cut[1].last + 1).toBe(end);
    await log.close();
    await settle();
    const bases = segmentBases();
    const newestBase = bases[bases.length - 1];
    expect(cut[0].base).toBeGreaterThanOrEqual(newestBase);
    expect(snapshotOffsets()).toContain(end);
    damage(segmentFiles(partitionDir, '.log').at(-1)!, cut);
    // As if the crash came before any checkpoint covered the tail (a clean close checkpoints
    // the whole active segment, which an unclean start would then trust as synced).
    const checkpointFile = path.join(partitionDir, RECOVERY_CHECKPOINT_FILE);
    fs.writeFileSync(checkpointFile, fs.readFileSync(checkpointFile, 'latin1').split('\n').slice(0, 2).join('\n') + '\n');
    log = await openLog(ROLLING, { clean: false });
    expect(log.logEndOffset).toBe(cut[0].base);
    // The snapshot taken at close remembers the cut batches: it must be gone.
    expect(snapshotOffsets().every((offset) => offset <= log.logEndOffset)).toBe(true);
    expect(snapshotOffsets()).not.toContain(end);
    expect(log.recovery.notes.some((n) => n.includes(snapshotFileName(end)) && n.includes('above the log end'))).toBe(true);
    return { log, sent: sent.slice(0, -2), cut };
  }

  it.each([
    ['torn in the middle of the second last batch', (file: string, lastTwo: Sent[]) => {
      const size = fs.statSync(file).size;
      fs.truncateSync(file, size - lastTwo[1].original.length - 9);
    }],
    ['with a flipped byte in the second last batch', (file: string, lastTwo: Sent[]) => {
      const size = fs.statSync(file).size;
      flipByte(file, size - lastTwo[1].original.length - 5);
    }],
  ])('a log %s forgets the cut batches and appends their resends again, at the new end', async (_name, damage) => {
    const { log, sent, cut } = await cutLog(damage);
    const end = log.logEndOffset;
    // Batches before the cut are still duplicates.
    for (const id of [41, 42]) {
      for (const batch of sent.filter((s) => s.producerId === id).slice(-PRODUCER_BATCHES_KEPT)) expectDuplicate(log, batch);
    }
    // The cut ones are new again: appended, in order, where the log now ends.
    const again0 = resend(log, cut[0]);
    expect(again0.duplicate).toBeFalsy();
    expect(again0.baseOffset).toBe(end);
    const again1 = resend(log, cut[1]);
    expect(again1.duplicate).toBeFalsy();
    expect(again1.baseOffset).toBe(end + cut[0].count);
    const rewritten = [
      { ...cut[0], base: again0.baseOffset, last: again0.lastOffset },
      { ...cut[1], base: again1.baseOffset, last: again1.lastOffset },
    ];
    sent.push(...rewritten);
    // Now they are in the log, and their resends are duplicates with the new offsets.
    for (const batch of rewritten) expectDuplicate(log, batch);
    for (const id of [41, 42]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });
});

describe('damaged snapshots', () => {
  const damages: [string, (file: string) => void][] = [
    ['a flipped byte', (file) => flipByte(file, Math.floor(fs.statSync(file).size / 2))],
    ['a flipped checksum byte', (file) => flipByte(file, 1)],
    ['half of it', (file) => fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2))],
    ['nothing in it', (file) => fs.truncateSync(file, 0)],
  ];

  it.each(damages)('with %s, the only snapshot is skipped with a note and the whole log replayed', async (_name, damage) => {
    let log = await openLog(ONE_SEGMENT);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 51, epoch: 0 }, { id: 52, epoch: 3 }], 8, sent);
    const end = log.logEndOffset;
    await log.close();
    await settle();
    expect(snapshotOffsets()).toEqual([end]);
    damage(path.join(partitionDir, snapshotFileName(end)));
    log = await openLog(ONE_SEGMENT, { clean: true });
    expect(log.recovery.notes.some((n) => n.startsWith(`skipped producer snapshot ${snapshotFileName(end)}`))).toBe(true);
    for (const id of [51, 52]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });

  it.each(damages)('with %s in the newest, an older snapshot and a longer replay serve', async (_name, damage) => {
    let log = await openLog(ROLLING);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 53, epoch: 0 }, { id: 54, epoch: 1 }], 16, sent);
    await log.close();
    await settle();
    const snapshots = snapshotOffsets();
    expect(snapshots).toHaveLength(2);
    damage(path.join(partitionDir, snapshotFileName(snapshots[1])));
    log = await openLog(ROLLING, { clean: true });
    const skipped = log.recovery.notes.filter((n) => n.startsWith('skipped producer snapshot'));
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toContain(snapshotFileName(snapshots[1]));
    for (const id of [53, 54]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });

  it('with every snapshot damaged, the whole log is replayed after a crash', async () => {
    const first = await openLog(ROLLING);
    const sent: Sent[] = [];
    sendRounds(first, [{ id: 55, epoch: 0 }, { id: 56, epoch: 0 }], 16, sent);
    await first.flush();
    await settle();
    const snapshots = snapshotOffsets();
    expect(snapshots).toHaveLength(2);
    for (const offset of snapshots) flipByte(path.join(partitionDir, snapshotFileName(offset)), 6);
    const log = await crash(first, ROLLING);
    expect(log.recovery.notes.filter((n) => n.startsWith('skipped producer snapshot'))).toHaveLength(2);
    for (const id of [55, 56]) expectProducerState(log, sent, id);
    expectEachOnce(log, sent);
  });

  it('a snapshot at the log end is trusted as it is, and one above it deleted', async () => {
    let log = await openLog(ONE_SEGMENT);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 57, epoch: 0 }], 3, sent);
    const end = log.logEndOffset;
    await log.close();
    await settle();
    // Rewrite the snapshot with a producer the log never saw: only reading it can teach it.
    const state = new ProducerStateManager('test');
    expect(state.load(fs.readFileSync(path.join(partitionDir, snapshotFileName(end))))).toBe(end);
    state.update({ producerId: 99, producerEpoch: 0, baseSequence: 0, recordCount: 1 }, 0, T0);
    fs.writeFileSync(path.join(partitionDir, snapshotFileName(end)), state.snapshot(end));
    const above = new ProducerStateManager('test');
    above.update({ producerId: 98, producerEpoch: 0, baseSequence: 0, recordCount: 1 }, end, T0);
    fs.writeFileSync(path.join(partitionDir, snapshotFileName(end + 1)), above.snapshot(end + 1));
    log = await openLog(ONE_SEGMENT, { clean: true });
    expect(snapshotOffsets()).toEqual([end]);
    const taught = log.append(idempotentBatch(99, 0, 0, 1));
    expect(taught.duplicate).toBe(true);
    expect(taught.baseOffset).toBe(0);
    expect(errorName(() => log.append(idempotentBatch(98, 0, 1, 1)))).toBe('OUT_OF_ORDER_SEQUENCE');
    expectProducerState(log, sent, 57);
  });
});

describe('snapshot files', () => {
  it('only the 2 newest are kept, through many rolls and at close', async () => {
    const log = await openLog(ROLLING);
    const sent: Sent[] = [];
    sendRounds(log, [{ id: 61, epoch: 0 }, { id: 62, epoch: 0 }], 40, sent);
    expect(log.segmentCount).toBeGreaterThan(6);
    await log.flush();
    await settle();
    // One snapshot per roll, at the new segment's base: the newest two bases remain.
    expect(snapshotOffsets()).toEqual(segmentBases().slice(-2));
    const end = log.logEndOffset;
    await log.close();
    await settle();
    expect(snapshotOffsets()).toEqual([segmentBases().at(-1)!, end]);
  });
});

describe('non-idempotent batches', () => {
  it('are appended every time they are sent, and leave the producer state alone', async () => {
    let log = await openLog(ROLLING);
    const plain = makeBatch({ records: 3, valueBytes: 50 });
    // Sequence fields without a producer id mean nothing: still a plain batch.
    const odd = encodeBatch([{ value: Buffer.from('x'), timestamp: T0 }], { producerId: -1, producerEpoch: 7, baseSequence: 42 });
    const sent: Sent[] = [];
    const plainBases: number[] = [];
    for (let i = 0; i < 20; i++) {
      for (const batch of [plain, odd]) {
        const result = log.append(Buffer.from(batch));
        expect(result.duplicate).toBeFalsy();
        plainBases.push(result.baseOffset);
      }
      if (i % 5 === 0) sendRounds(log, [{ id: 71, epoch: 0 }], 1, sent);
    }
    expect(new Set(plainBases).size).toBe(40);
    expect(log.producers.producerCount).toBe(1);
    log = await crash(log, ROLLING);
    expect(log.producers.producerCount).toBe(1);
    log = await restart(log, ROLLING);
    expect(log.producers.producerCount).toBe(1);
    const plainInLog = readAll(log).filter((batch) => readBatchHeader(batch).producerId < 0);
    expect(plainInLog.map((batch) => readBatchHeader(batch).baseOffset)).toEqual(plainBases);
    expect(plainInLog).toHaveLength(40);
    expect(log.append(Buffer.from(plain)).duplicate).toBeFalsy();
    expectProducerState(log, sent, 71);
    expectEachOnce(log, sent);
  });

  it('on a log without idempotent producers, snapshots hold no producer', async () => {
    let log = await openLog(ONE_SEGMENT);
    for (let i = 0; i < 5; i++) log.append(makeBatch({ records: 2, fill: i }));
    const end = log.logEndOffset;
    log = await restart(log, ONE_SEGMENT);
    const state = new ProducerStateManager('test');
    expect(state.load(fs.readFileSync(path.join(partitionDir, snapshotFileName(end))))).toBe(end);
    expect(state.producerCount).toBe(0);
    expect(log.producers.producerCount).toBe(0);
  });
});
