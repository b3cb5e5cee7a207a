// The verifier: a consumer group that reads every simulated event and checks what the
// fleet's acknowledged sends promised. Every event carries (device, sequence, send time);
// per device we keep which sequences were acknowledged and which were read, and in the end
// report the acknowledged events never read (lost), the events in the log more than once
// (duplicated) and those read after a later sequence of the same device (out of order).
//
//   EventLedger   the accounting, pure: records in, verdict out (no sockets, no timers)
//   Verifier      `consumers` group members, each on its own connection, feeding the ledger
//
// Re-deliveries are not duplicates. A member that rejoins (a node restart forgets the group,
// a rebalance moves a partition) starts again at the group's last committed offset, before
// what was already read. Within a partition a consumer reads offsets in order from where it
// starts, so the offsets read so far are always one run ending at the highest; a record at
// or below it is the same log entry handed to us again, and is skipped. A device's events
// all go to one partition (the key is the device id), so the same (device, sequence) at a
// new offset is a second copy in the log: a duplicate.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { cborDecode, connect, type ConnectOptions, type Connection, type ConsumerRecord, type GroupConsumer } from '../devices/index.js';
import { LatencyHistogram } from './histogram.js';
import type { Percentiles, Verdict } from './types.js';

// -----------------------------------------------------------------------------------------
// A compact set of sequence numbers.

/** Sequences are Kafka-like int32s: from 0 to 2^31 - 1. */
export const SEQUENCE_MAX = 0x7fff_ffff;
/**
 * How far past the set's contiguous prefix a sequence may lie: 2^24 sequences, 2 MiB of
 * bitmap per set. A device that jumps further is sending garbage, not a gap to track.
 */
export const SEQUENCE_SPAN_MAX = 1 << 24;

const FULL_WORD = 0xffff_ffff;

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x5555_5555;
  x = (x & 0x3333_3333) + ((x >>> 2) & 0x3333_3333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f_0f0f, 0x0101_0101) >>> 24) & 0xff;
}

/**
 * Sequences from 0, as a bitmap of 32-bit words. Devices send 0, 1, 2, ..., so the set is
 * almost always a full prefix plus a short ragged edge: full words at the front are dropped
 * (everything below `baseWord * 32` is present), and the bitmap holds only the edge. Memory
 * is then a few words per device however long the run, and add/has are O(1).
 */
export class SequenceSet {
  /** Words below this index are all ones and not stored. */
  private baseWord = 0;
  private words = new Uint32Array(2);
  private count = 0;
  private highest = -1;

  /** How many sequences are in the set. */
  get size(): number {
    return this.count;
  }

  /** The highest sequence in the set, -1 when empty. */
  get max(): number {
    return this.highest;
  }

  /** Words of bitmap held (for tests of the compaction). */
  get heldWords(): number {
    return this.words.length;
  }

  has(seq: number): boolean {
    const word = seq >>> 5;
    if (word < this.baseWord) return true;
    const i = word - this.baseWord;
    return i < this.words.length && (this.words[i] & (1 << (seq & 31))) !== 0;
  }

  /** Adds `seq`; true when it was not there. RangeError past SEQUENCE_MAX or SEQUENCE_SPAN_MAX. */
  add(seq: number): boolean {
    if (!Number.isInteger(seq) || seq < 0 || seq > SEQUENCE_MAX) throw new RangeError(`sequence ${seq} is not an int32 from 0`);
    const word = seq >>> 5;
    if (word < this.baseWord) return false;
    let i = word - this.baseWord;
    if (i >= this.words.length) {
      this.makeRoom(i);
      i = word - this.baseWord;
    }
    const bit = 1 << (seq & 31);
    if ((this.words[i] & bit) !== 0) return false;
    this.words[i] |= bit;
    this.count++;
    if (seq > this.highest) this.highest = seq;
    return true;
  }

  /** The word `word` (absolute index) of the set: all ones below the stored part, 0 past it. */
  wordAt(word: number): number {
    if (word < this.baseWord) return FULL_WORD;
    const i = word - this.baseWord;
    return i < this.words.length ? this.words[i] : 0;
  }

  /** First word index stored as a bitmap (everything below is present). */
  get firstStoredWord(): number {
    return this.baseWord;
  }

  /** One past the last word that can hold a member. */
  get endWord(): number {
    return this.highest < 0 ? 0 : (this.highest >>> 5) + 1;
  }

  /**
   * Sequences in this set and not in `other`: how many, and the first `examplesMax` of them.
   * Costs the words past the two sets' contiguous prefixes, not the sequences.
   */
  difference(other: SequenceSet, examplesMax: number): { count: number; examples: number[] } {
    let count = 0;
    const examples: number[] = [];
    for (let w = Math.min(this.baseWord, other.baseWord); w < this.endWord; w++) {
      const bits = (this.wordAt(w) & ~other.wordAt(w)) >>> 0;
      if (bits === 0) continue;
      count += popcount32(bits);
      for (let b = 0; b < 32 && examples.length < examplesMax; b++) if ((bits & (1 << b)) !== 0) examples.push(w * 32 + b);
    }
    return { count, examples };
  }

  /** Drops full leading words, then grows (doubling) until index `i` of the old layout fits. */
  private makeRoom(i: number): void {
    let full = 0;
    while (full < this.words.length && this.words[full] === FULL_WORD) full++;
    const needed = i - full + 1;
    if (needed * 32 > SEQUENCE_SPAN_MAX) {
      throw new RangeError(`sequence ${(this.baseWord + i) * 32} is more than ${SEQUENCE_SPAN_MAX} past the contiguous prefix (${(this.baseWord + full) * 32})`);
    }
    const length = needed <= this.words.length ? this.words.length : Math.max(needed, this.words.length * 2);
    const words = new Uint32Array(length);
    words.set(this.words.subarray(full));
    this.words = words;
    this.baseWord += full;
  }
}

// -----------------------------------------------------------------------------------------
// The accounting.

/** The value of a simulated event, as far as the verifier reads it. */
interface EventHead {
  d: string;
  s: number;
  t: number;
}

/** What the ledger needs of a record: where it is in the log, and its value. */
export type LedgerRecord = Pick<ConsumerRecord<Buffer>, 'topic' | 'partition' | 'offset' | 'value'>;

const EXAMPLES_MAX = 20;

interface DeviceState {
  seen: SequenceSet;
  acked: SequenceSet;
  /** The highest sequence read from this device's partition so far, in offset order. */
  maxSeqRead: number;
}

function parseEvent(value: Buffer | null): EventHead | null {
  if (value === null) return null;
  let v: unknown;
  try {
    v = cborDecode(value);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { d, s, t } = v as Record<string, unknown>;
  if (typeof d !== 'string' || typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s > SEQUENCE_MAX || typeof t !== 'number') return null;
  return { d, s, t };
}

/**
 * Per device: the sequences acknowledged and read; per partition: the offset after the
 * highest read. Pure: the caller gives the records and the time.
 */
export class EventLedger {
  private readonly devices = new Map<string, DeviceState>();
  /** Per topic and partition, the offset after the highest read: below it is a re-delivery. */
  private readonly nextOffsets = new Map<string, number>();
  private duplicated = 0;
  private outOfOrder = 0;
  private readonly duplicatedExamples: string[] = [];
  private readonly outOfOrderExamples: string[] = [];
  /** Acknowledged and not read yet: finish() waits for 0. */
  private ackedUnread = 0;
  /** Records that are not simulated events (or whose sequence is beyond tracking). */
  malformed = 0;
  /** Records handed to us again at an offset already read (rejoins, rebalances): not duplicates. */
  redelivered = 0;
  private readSinceSample = 0;
  private readonly interval = new LatencyHistogram();
  private readonly total = new LatencyHistogram();
  /** From `startAllConnected()` to `endAllConnected()`: the latency of events read then. */
  private allConnected: LatencyHistogram | null = null;
  private allConnectedEnded = false;

  /** An acknowledged send. O(1) amortized. */
  noteAcked(device: string, seq: number): void {
    const state = this.device(device);
    if (state.acked.add(seq) && !state.seen.has(seq)) this.ackedUnread++;
  }

  /** Acknowledged events not read yet. */
  get pending(): number {
    return this.ackedUnread;
  }

  /** Whether every partition has been read up to its given log end offset. */
  readUpTo(topic: string, logEndOffsets: readonly { partition: number; logEndOffset: number }[]): boolean {
    return logEndOffsets.every((p) => (this.nextOffsets.get(`${topic}\u0000${p.partition}`) ?? 0) >= p.logEndOffset);
  }

  /** Records of one partition in offset order, as a consumer hands them over, read at `nowMs`. */
  ingest(records: readonly LedgerRecord[], nowMs: number): void {
    for (const r of records) this.ingestOne(r, nowMs);
  }

  /** Events read (new log entries) and their produce-to-read latency since the previous call. */
  sample(): { read: number; latency: Percentiles } {
    const out = { read: this.readSinceSample, latency: this.interval.percentiles() };
    this.readSinceSample = 0;
    this.interval.reset();
    return out;
  }

  /** Produce-to-read latency of every event read so far. */
  latencyTotal(): Percentiles {
    return this.total.percentiles();
  }

  /** Every device is connected: from now on read latencies are also counted apart. Once. */
  startAllConnected(): void {
    if (!this.allConnectedEnded) this.allConnected ??= new LatencyHistogram();
  }

  /** The load has stopped: nothing more is counted apart. */
  endAllConnected(): void {
    this.allConnectedEnded = true;
  }

  /** Produce-to-read latency of the events read since `startAllConnected()`; null before. */
  latencyAllConnected(): Percentiles | null {
    return this.allConnected?.percentiles() ?? null;
  }

  verdict(): Verdict {
    let lost = 0;
    let unackedSeen = 0;
    let acked = 0;
    let read = 0;
    const lostExamples: string[] = [];
    for (const [device, state] of this.devices) {
      acked += state.acked.size;
      read += state.seen.size;
      const missing = state.acked.difference(state.seen, EXAMPLES_MAX - lostExamples.length);
      lost += missing.count;
      for (const s of missing.examples) lostExamples.push(`${device} ${s}`);
      unackedSeen += state.seen.difference(state.acked, 0).count;
    }
    return {
      lost,
      duplicated: this.duplicated,
      outOfOrder: this.outOfOrder,
      unackedSeen,
      acked,
      read,
      examples: { lost: lostExamples, duplicated: [...this.duplicatedExamples], outOfOrder: [...this.outOfOrderExamples] },
      ok: lost === 0 && this.duplicated === 0 && this.outOfOrder === 0,
    };
  }

  private ingestOne(r: LedgerRecord, nowMs: number): void {
    const tp = `${r.topic}\u0000${r.partition}`;
    const next = this.nextOffsets.get(tp) ?? 0;
    if (r.offset < next) {
      this.redelivered++;
      return;
    }
    this.nextOffsets.set(tp, r.offset + 1);
    const event = parseEvent(r.value);
    if (event === null) {
      this.malformed++;
      return;
    }
    const state = this.device(event.d);
    let added: boolean;
    try {
      added = state.seen.add(event.s);
    } catch {
      this.malformed++; // beyond SEQUENCE_SPAN_MAX: not something a device sends
      return;
    }
    this.readSinceSample++;
    const latencyMs = nowMs - event.t;
    this.interval.record(latencyMs);
    this.total.record(latencyMs);
    if (!this.allConnectedEnded) this.allConnected?.record(latencyMs);
    if (!added) {
      // A second log entry with this (device, sequence): the log holds it twice. Not also
      // counted out of order, since it is not a new event.
      this.duplicated++;
      if (this.duplicatedExamples.length < EXAMPLES_MAX) this.duplicatedExamples.push(`${event.d} ${event.s}`);
      return;
    }
    if (state.acked.has(event.s)) this.ackedUnread--;
    if (event.s < state.maxSeqRead) {
      // At a higher offset than a later sequence of the same device: the log reordered them.
      this.outOfOrder++;
      if (this.outOfOrderExamples.length < EXAMPLES_MAX) this.outOfOrderExamples.push(`${event.d} ${event.s}`);
    } else {
      state.maxSeqRead = event.s;
    }
  }

  private device(id: string): DeviceState {
    let state = this.devices.get(id);
    if (state === undefined) {
      state = { seen: new SequenceSet(), acked: new SequenceSet(), maxSeqRead: -1 };
      this.devices.set(id, state);
    }
    return state;
  }
}

// -----------------------------------------------------------------------------------------
// The group of verifying consumers.

export interface VerifierOptions {
  url: string;
  topic: string;
  /** Default a fresh 'sim-verify-<random>', so it reads from the earliest offset. */
  groupId?: string;
  /** Identity, credential, fleet/node pins and any other Client option, as connect() takes them. */
  auth?: ConnectOptions;
  /** Group members, each on its own connection. Default 2. */
  consumers?: number;
  /** Start as a slow consumer. */
  slow?: { delayMs: number };
  /** The members' autoCommitIntervalMs (default 1000); tests make it long to force re-reads. */
  autoCommitIntervalMs?: number;
}

interface Member {
  connection: Connection;
  group: GroupConsumer<'buffer'>;
  loop: Promise<void>;
}

const CONSUMERS_DEFAULT = 2;
/** How long start() waits for the group to hand out a partition before returning anyway. */
const ASSIGNMENT_WAIT_MS = 10_000;
/** How long finish() waits for each member to commit and leave. */
const CLOSE_WAIT_MS = 5_000;
const POLL_MS = 20;
const READ_RETRY_MS = 200;

export class Verifier {
  readonly groupId: string;
  private readonly ledger = new EventLedger();
  private readonly members: Member[] = [];
  private readonly stopping = new AbortController();
  private slowDelayMs: number | null;
  private starting: Promise<void> | null = null;
  /** Read failures (a member refused, its iterator failed); each is retried. */
  errors = 0;
  lastError: unknown = null;

  constructor(private readonly options: VerifierOptions) {
    const consumers = options.consumers ?? CONSUMERS_DEFAULT;
    if (!Number.isInteger(consumers) || consumers < 1) throw new RangeError(`consumers must be an integer of at least 1, got ${consumers}`);
    this.groupId = options.groupId ?? `sim-verify-${randomBytes(6).toString('hex')}`;
    this.slowDelayMs = options.slow?.delayMs ?? null;
  }

  /** Connects the members, joins the group (reading from the earliest offset), and waits (bounded) for a first assignment. */
  start(): Promise<void> {
    this.starting ??= (async () => {
      const count = this.options.consumers ?? CONSUMERS_DEFAULT;
      for (let i = 0; i < count; i++) {
        let connection: Connection;
        try {
          connection = await connect(this.options.url, {
            clientId: `${this.groupId}-${i}`,
            // A node restarted mid-run should find its readers back quickly.
            reconnect: { initialMs: 50, maxMs: 1000 },
            ...this.options.auth,
          });
        } catch (err) {
          await this.stop(); // the members already connected do not outlive a failed start
          throw err;
        }
        const group = connection.groupConsumer({
          groupId: this.groupId,
          topics: [this.options.topic],
          autoOffsetReset: 'earliest',
          autoCommitIntervalMs: this.options.autoCommitIntervalMs ?? 1000,
        });
        const member: Member = { connection, group, loop: Promise.resolve() };
        member.loop = this.readLoop(member);
        this.members.push(member);
      }
      // Wait (bounded) until the group is settled: every partition owned, by as many members
      // as can have one. A member that joins late takes partitions from one that has read
      // them, which commits them as it lets go: the verdict would not change, but the load
      // would meet a rebalance, and a re-read after a restart would start at that commit.
      const giveUpAt = Date.now() + ASSIGNMENT_WAIT_MS;
      const partitions = (await this.topicPartitions())?.length ?? null;
      while (!this.settled(partitions) && Date.now() < giveUpAt) await sleep(POLL_MS);
    })();
    return this.starting;
  }

  /** An acknowledged send; called for every ack, so O(1) and a few bits per event. */
  noteAcked(device: string, seq: number): void {
    this.ledger.noteAcked(device, seq);
  }

  /** Events read and their produce-to-read latency since the previous call. */
  sample(): { read: number; latency: Percentiles } {
    return this.ledger.sample();
  }

  /** Produce-to-read latency over the whole run. */
  latencyTotal(): Percentiles {
    return this.ledger.latencyTotal();
  }

  /** Every device is connected: read latencies from now on are also counted apart. */
  startAllConnected(): void {
    this.ledger.startAllConnected();
  }

  /** The load has stopped: nothing more is counted apart. */
  endAllConnected(): void {
    this.ledger.endAllConnected();
  }

  /** Produce-to-read latency of the events read since `startAllConnected()`; null before. */
  latencyAllConnected(): Percentiles | null {
    return this.ledger.latencyAllConnected();
  }

  /** Re-deliveries skipped so far (a member re-reading from the last commit). */
  get redelivered(): number {
    return this.ledger.redelivered;
  }

  /** Records in the topic that are not simulated events. */
  get malformed(): number {
    return this.ledger.malformed;
  }

  /** The slow-consumer action: after each batch handed over, wait delayMs before the next; null for full speed. */
  setSlow(delayMs: number | null): void {
    if (delayMs !== null && (!Number.isFinite(delayMs) || delayMs < 0)) throw new RangeError(`delayMs must be a number of at least 0, got ${delayMs}`);
    this.slowDelayMs = delayMs;
  }

  /** Waits until every acknowledged event was read (or timeoutMs), stops the members, and returns the verdict. */
  async finish(options: { timeoutMs: number }): Promise<Verdict> {
    await this.start();
    const giveUpAt = Date.now() + options.timeoutMs;
    while (this.ledger.pending > 0 && Date.now() < giveUpAt) await sleep(POLL_MS);
    // Every acknowledged event is read; now read on to the log end offsets as they are now,
    // so that a record written after the last ack, such as a resend's duplicate, is read too.
    const ends = await this.topicPartitions();
    while (ends !== null && !this.ledger.readUpTo(this.options.topic, ends) && Date.now() < giveUpAt) await sleep(POLL_MS);
    await this.stop();
    return this.ledger.verdict();
  }

  /** Whether the group owns all `partitions` (any, if unknown), spread over every member that can have one. */
  private settled(partitions: number | null): boolean {
    const owned = this.members.map((m) => m.group.assignment.length);
    const total = owned.reduce((a, b) => a + b, 0);
    if (partitions === null) return total > 0;
    return total === partitions && owned.filter((n) => n > 0).length === Math.min(this.members.length, partitions);
  }

  /** The topic's partitions and log end offsets now, or null (counted as an error) if the node cannot say. */
  private async topicPartitions(): Promise<{ partition: number; logEndOffset: number }[] | null> {
    const member = this.members[0];
    if (member === undefined) return null;
    try {
      return (await member.connection.admin().describeTopic(this.options.topic)).partitions;
    } catch (err) {
      this.errors++;
      this.lastError = err;
      return null;
    }
  }

  /** Stops the members: commit, leave, close; each bounded, since the node may be gone. */
  private async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(
      this.members.map(async (m) => {
        const closed = Promise.allSettled([m.connection.close(), m.loop]);
        await Promise.race([closed, sleep(CLOSE_WAIT_MS)]);
      }),
    );
  }

  private async readLoop(member: Member): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      try {
        for await (const batch of member.group.batches()) {
          if (signal.aborted) return;
          this.ledger.ingest(batch, Date.now());
          if (this.slowDelayMs !== null && this.slowDelayMs > 0) await sleep(this.slowDelayMs, undefined, { signal });
        }
        return; // the member was closed
      } catch (err) {
        if (signal.aborted) return;
        this.errors++;
        this.lastError = err;
        await sleep(READ_RETRY_MS, undefined, { signal }).catch(() => undefined);
      }
    }
  }
}
