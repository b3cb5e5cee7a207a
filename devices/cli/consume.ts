// `tributary consume`: records of a topic to stdout, one per line. index.ts reads the flags;
// this file does the run: as a plain consumer of chosen partitions, or as a member of a
// consumer group that commits only what reached stdout.

import type { Client } from '../client.js';
import { Admin, Consumer, GroupConsumer, type CommitOffset, type LogDivergence, type TopicPartition } from '../index.js';
import { cborDecode, CONTENT_TYPE, isCborMarked } from '../serde.js';
import { UsageError, withClient, type NodeOptions } from './common.js';
import { isBrokenPipe, LineWriter, plural, writeErrorCode } from './output.js';
import { Once } from './once.js';

export interface ConsumeOptions extends NodeOptions {
  group?: string;
  fromBeginning?: boolean;
  offset?: string;
  partition?: string;
  maxMessages?: string;
  timeoutMs?: string;
  printKey?: boolean;
  printOffset?: boolean;
}

/** When a run stops: after this many records, or this long without one. */
export interface ConsumeLimits {
  maxMessages: number;
  timeoutMs: number | undefined;
}

/** How often `consume --group` commits what it has written, as Kafka's auto.commit.interval.ms. */
const GROUP_COMMIT_INTERVAL_MS = 5000;

/** Plain consume: the partitions asked for (all by default), from an offset or by --from-beginning. */
export async function consumePartitions(topic: string, opts: ConsumeOptions, from: { partition?: number; offset?: number }, limits: ConsumeLimits): Promise<void> {
  await withClient(opts, async (client) => {
    const meta = await new Admin(client).topicMetadata(topic);
    const count = meta.partitions.length;
    if (from.partition !== undefined && from.partition >= count) throw new UsageError(`topic ${topic} has no partition ${from.partition} (it has ${count})`);
    const partitions = from.partition !== undefined ? [from.partition] : meta.partitions.map((p) => p.partition);
    const consumer = new Consumer(client, { autoOffsetReset: opts.fromBeginning ? 'earliest' : 'latest', onDivergence: (d) => tellDivergence(d, opts) });
    consumer.assign(partitions.map((partition) => (from.offset === undefined ? { topic, partition } : { topic, partition, offset: from.offset })));
    const out = new LineWriter<PrintableRecord>(process.stdout);
    try {
      await printBatches(consumer.batches()[Symbol.asyncIterator](), out, opts, limits);
    } finally {
      out.dispose();
      await consumer.close();
    }
    const written = out.writtenLines;
    // A reader that went away (`| head`) is the usual end of a pipe; any other failed write is an error.
    if (out.error !== null && !isBrokenPipe(out.error)) {
      throw new Error(`cannot write to stdout (${writeErrorCode(out.error)}) after ${plural(written, 'record')}`);
    }
    // A pipe takes what fits in it whether or not its reader reads it: say so, not just a count.
    const gone = out.error !== null ? ' (written to stdout before its reader went away, which may not have read them all)' : '';
    process.stderr.write(`consumed ${plural(written, 'record')}${gone}\n`);
  });
}

/**
 * `consume --group`: a group member that commits only what reached stdout. A record counts
 * as written once the write of its chunk succeeded; per partition, the offset after the last
 * such record is what is committed (every few seconds, before a partition is given up, and
 * when it stops). A partition nothing was written from yet commits where the member started
 * it (its committed offset or where --from-beginning or the end put it), so a later member
 * skips nothing. A failed write stops it, commits what was written, and fails.
 */
export async function consumeInGroup(topic: string, groupId: string, opts: ConsumeOptions, limits: ConsumeLimits): Promise<void> {
  await withClient(opts, async (client) => {
    await new Admin(client).topicMetadata(topic); // a missing topic is one clear line, not a silent wait
    const resume = new ResumeOffsets(topic);
    const out = new LineWriter<PrintableRecord>(process.stdout, (written) => resume.written(written));
    let stopping = false;
    const member: GroupConsumer = new GroupConsumer(client, {
      groupId,
      topics: [topic],
      autoOffsetReset: opts.fromBeginning ? 'earliest' : 'latest',
      // The member knows what it handed out; only we know what was written.
      autoCommit: false,
      onAssignmentChange: async ({ gained, lost }) => {
        // Read before anything of the partition is handed out (this runs as it is gained).
        for (const tp of gained) resume.started(tp.partition, member.position(tp.topic, tp.partition), member.positionLeaderEpoch(tp.topic, tp.partition));
        if (lost.length === 0 || stopping) return;
        // Its records already handed out reach stdout first, so the next owner starts after them.
        await out.flush();
        await member.commit(resume.offsetsOf(lost)).catch(() => undefined); // uncommitted is read again: at-least-once
        for (const tp of lost) resume.givenUp(tp.partition);
      },
      onDivergence: async (d) => {
        tellDivergence(d, opts);
        // What was handed out before is written first, so that it is told apart from the records read from here on.
        await out.flush();
        resume.diverged(d);
      },
    });
    const timer = setInterval(() => void member.commit(resume.offsetsOf(member.assignment)).catch(() => undefined), GROUP_COMMIT_INTERVAL_MS);
    const handedOut = member.batches()[Symbol.asyncIterator]();
    const batches: AsyncIterator<PrintableRecord[]> = {
      next: async () => {
        const next = await handedOut.next();
        if (!next.done) resume.handedOut(next.value);
        return next;
      },
    };
    try {
      await printBatches(batches, out, opts, limits);
    } finally {
      clearInterval(timer);
      stopping = true;
      // Committed while still a member, at its epoch. A batch handed out after we stopped
      // reading moves only the member's position, which nothing here reads.
      await member.commit(resume.offsetsOf(member.assignment)).catch(() => undefined);
      out.dispose();
      await member.close();
    }
    const written = out.writtenLines;
    if (out.error !== null) {
      throw new Error(`cannot write to stdout (${writeErrorCode(out.error)}) after ${plural(written, 'record')}; the group committed only the records written`);
    }
    process.stderr.write(`consumed ${plural(written, 'record')}\n`);
  });
}

/**
 * Per partition, the offset a later member should resume at: after the last record whose
 * write to stdout succeeded, else where this member started the partition, each with the
 * leader epoch of the record before it (KIP-320). Taken from the member only when a
 * partition is gained, before anything of it is handed out, and after that moved only by
 * what was written: the member's own position moves as it hands a batch out, which may be
 * before we have seen the batch (a stop or timeout racing the read), let alone written it.
 * A divergence moves it back to where the node's log parts from what was read; records
 * handed out before it and written after it, read from the log the node lost, move
 * nothing past that point.
 */
class ResumeOffsets {
  private readonly offsets = new Map<number, { offset: number; leaderEpoch: number }>();
  /** Per partition, records handed out and not yet written. */
  private readonly unwritten = new Map<number, number>();
  /** Per partition, the records written next that were handed out before a divergence, and where it diverged (-1: anywhere). */
  private readonly beforeDivergence = new Map<number, { records: number; divergedAt: number }>();

  constructor(private readonly topic: string) {}

  /** A partition gained, at the member's position then; unknown (null) commits nothing until a record is written. */
  started(partition: number, position: number | null, leaderEpoch: number): void {
    if (position === null) this.offsets.delete(partition);
    else this.offsets.set(partition, { offset: position, leaderEpoch });
  }

  handedOut(records: readonly PrintableRecord[]): void {
    for (const r of records) this.unwritten.set(r.partition, (this.unwritten.get(r.partition) ?? 0) + 1);
  }

  written(records: readonly PrintableRecord[]): void {
    for (const r of records) {
      this.unwritten.set(r.partition, (this.unwritten.get(r.partition) ?? 1) - 1);
      const before = this.beforeDivergence.get(r.partition);
      if (before !== undefined) {
        if (--before.records === 0) this.beforeDivergence.delete(r.partition);
        if (before.divergedAt < 0 || r.offset >= before.divergedAt) continue;
      }
      this.offsets.set(r.partition, { offset: r.offset + 1, leaderEpoch: r.leaderEpoch });
    }
  }

  diverged(d: LogDivergence): void {
    if (d.topic !== this.topic) return;
    const records = this.unwritten.get(d.partition) ?? 0;
    if (records > 0) this.beforeDivergence.set(d.partition, { records, divergedAt: d.divergedAt });
    const now = this.offsets.get(d.partition);
    if (d.divergedAt < 0) this.offsets.delete(d.partition); // where the member's reset puts it: unknown here
    else if (now === undefined || now.offset > d.divergedAt) this.offsets.set(d.partition, { offset: d.divergedAt, leaderEpoch: d.leaderEpoch });
  }

  givenUp(partition: number): void {
    this.offsets.delete(partition);
  }

  offsetsOf(partitions: readonly TopicPartition[]): CommitOffset[] {
    return partitions.flatMap((tp) => {
      const at = tp.topic === this.topic ? this.offsets.get(tp.partition) : undefined;
      return at === undefined ? [] : [{ topic: tp.topic, partition: tp.partition, offset: at.offset, leaderEpoch: at.leaderEpoch }];
    });
  }
}

/** One line on stderr for a position the node's log no longer holds (KIP-320), and where reading goes on. */
function tellDivergence(d: LogDivergence, opts: ConsumeOptions): void {
  const where =
    d.divergedAt >= 0
      ? `the node's log ends at ${d.divergedAt} in epoch ${d.leaderEpoch}, below this consumer's position ${d.position} (a power loss?); continuing at ${d.divergedAt}`
      : `the node's log has no epoch at or below ${d.positionLeaderEpoch}, in which this consumer's position ${d.position} was read (a replaced data folder?); continuing at the log ${opts.fromBeginning ? 'start' : 'end'}`;
  process.stderr.write(`tributary: ${d.topic}/${d.partition} diverged: ${where}\n`);
}

/** Prints records until --max-messages, --timeout-ms of silence, a signal, a failed write, or the end. */
async function printBatches(batches: AsyncIterator<PrintableRecord[]>, out: LineWriter<PrintableRecord>, opts: ConsumeOptions, limits: ConsumeLimits): Promise<void> {
  const stop = new Once<'stop' | 'failed'>();
  const stopListening = onSignal(() => stop.fire('stop'));
  void out.whenFailed.then(() => stop.fire('failed'));
  let handedOut = 0;
  try {
    while (handedOut < limits.maxMessages && out.error === null) {
      const next = await nextOrStop(batches.next(), stop, limits.timeoutMs);
      if (next === 'stop' || next === 'failed' || next === 'timeout' || next.done) break;
      for (const r of next.value) {
        const wait = out.write(formatRecord(r, opts), r);
        if (wait) await wait;
        if (++handedOut >= limits.maxMessages || out.error !== null) break;
      }
      // Printed as it comes: a consumer that has caught up does not hold records back.
      await out.flush();
    }
  } finally {
    stopListening();
  }
}

/** Calls `stop` on SIGINT or SIGTERM until disposed: a console consumer stops cleanly. */
function onSignal(stop: () => void): () => void {
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return () => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  };
}

/** `next`; or why it stopped; or 'timeout' after `timeoutMs` without it (--timeout-ms of silence). */
async function nextOrStop<T, R extends string>(next: Promise<T>, stop: Once<R>, timeoutMs: number | undefined): Promise<T | R | 'timeout'> {
  if (timeoutMs === undefined) return stop.race(next);
  let timer: NodeJS.Timeout | undefined;
  // Both promises are this wait's own: nothing long-lived gathers a reaction per wait.
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  try {
    return await stop.race(Promise.race([next, timeout]));
  } finally {
    clearTimeout(timer);
  }
}

interface PrintableRecord {
  partition: number;
  offset: number;
  leaderEpoch: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: [string, Uint8Array | null][];
}

function formatRecord(r: PrintableRecord, opts: ConsumeOptions): string {
  const value = r.value === null ? 'null' : isCborMarked(r.headers, CONTENT_TYPE) ? cborAsJson(r.value) : r.value.toString('utf8');
  let line = value;
  if (opts.printKey) line = `${r.key === null ? 'null' : r.key.toString('utf8')}\t${line}`;
  if (opts.printOffset) line = `${r.partition}:${r.offset}\t${line}`;
  return line;
}

function cborAsJson(bytes: Buffer): string {
  try {
    return JSON.stringify(cborDecode(bytes), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } catch {
    return bytes.toString('utf8');
  }
}
