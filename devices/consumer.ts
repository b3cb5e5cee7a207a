// The consumer: an assignment of partitions, a position in each, and records in order.
//
//   subscribe (default): one subscription holds every fetchable partition at its fetch
//     offset; the node pushes batches as they are appended, within a byte credit that the
//     consumer grants back as the app takes records -> chunk per partition, queued
//   fetch: long-poll Fetch for every fetchable partition, in an order that rotates so
//     none starves behind the others' backlog -> split into whole batches
//     -> chunk per partition, queued (bytes bounded by bufferedBytesMax) -> next Fetch
//   app: records()/batches() take chunks in order and decode them batch by batch
//
// Both ways fill the same queue through the same code (onPartitionFetched), so positions,
// resets, corrupt batches and partition errors behave alike. One Fetch is in flight at a
// time and the next one starts while the app is still busy with the last, as long as the
// buffered bytes stay under the bound: the prefetch of Kafka's consumer. A subscription's
// credit is that same bound: the bytes queued plus the credit the node holds never exceed
// bufferedBytesMax, so the node stops pushing when the app stops taking. Decoding happens
// when the app takes a chunk, not when it arrives, so a seek never pays for records it
// throws away and a corrupt batch surfaces exactly after the last good record before it.
//
// Each partition carries an epoch, bumped by every seek or reset. Data fetched or pushed
// under an older epoch is dropped wherever it is met (in flight, queued, or half read), so
// a seek is always obeyed exactly. A subscription remembers the epoch it took each
// partition at; when the set of fetchable partitions or an epoch changes, it is replaced
// whole (Unsubscribe, then Subscribe at the fetch offsets), and its late pushes are dropped.
//
// KIP-320: each position also carries the leader epoch of the record before it (read from
// the batch header the node stamped). A position taken with an epoch (a group's committed
// offset) and every position with one after a reconnect (the node may have restarted after
// a power loss that cut its log) is checked with OffsetsForLeaderEpoch before anything more
// of the partition is fetched or handed out: if the node's log for that epoch ends below
// the position, the records past that end are gone and other records now hold their
// offsets, so the consumer tells the app (onDivergence) and continues where the logs part.
// One request per reconnect or assignment, never per fetch.

import { Errors, TributaryError } from '../protocol/errors.js';
import {
  EARLIEST_TIMESTAMP,
  Kind,
  LATEST_TIMESTAMP,
  type FetchPartition,
  type FetchPartitionResult,
  type OffsetsForLeaderEpochResponse,
  type SubscribeData,
  SUBSCRIBE_CREDIT_BYTES_MAX,
} from '../protocol/frames.js';
import { decodeBatch, lastOffsetOf, readBatchHeader, splitBatches, type Header } from '../protocol/record-batch.js';
import type { Client, PushSubscription } from './client.js';
import { clientClosed, PartitionError, wireError } from './errors.js';
import { cborDecode, CONTENT_TYPE, isCborMarked } from './serde.js';

export type ValueDecoding = 'buffer' | 'string' | 'auto';

/** The value type a decoding gives: bytes, text, or (auto) CBOR-decoded data or bytes. */
export type DecodedValue<D extends ValueDecoding> = D extends 'string' ? string : D extends 'auto' ? unknown : Buffer;

export interface ConsumerRecord<V = Buffer> {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: V | null;
  headers: Header[];
  /** The leader epoch its batch was written in (Kafka's ConsumerRecord.leaderEpoch); -1 if the node stamped none. */
  leaderEpoch: number;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface PartitionAssignment extends TopicPartition {
  /** Where to start; omitted: by autoOffsetReset. */
  offset?: number;
  /**
   * The leader epoch of the record before `offset` (a committed offset's): the position is
   * then checked against the node's log before it is read (KIP-320). Omitted or -1: unknown, not checked.
   */
  leaderEpoch?: number;
}

/**
 * A position found past the end of the node's log for the epoch it was read in (KIP-320):
 * the node lost records this consumer had read (a power loss cut its log), and new records
 * now hold their offsets. The consumer continues at `divergedAt`, or, when the node's log
 * holds no epoch at or below the one read (`divergedAt` -1), where autoOffsetReset puts it;
 * with autoOffsetReset 'none' it fails the partition (OFFSET_OUT_OF_RANGE) instead.
 */
export interface LogDivergence extends TopicPartition {
  /** The offset of the next record this consumer would have read. */
  position: number;
  /** The leader epoch of the record before `position`, as this consumer read it. */
  positionLeaderEpoch: number;
  /** The node's largest leader epoch at or below `positionLeaderEpoch`; -1 when it has none. */
  leaderEpoch: number;
  /** Where the node's log for `leaderEpoch` ends: the first offset whose record differs; -1 when none. */
  divergedAt: number;
}

export type AutoOffsetReset = 'earliest' | 'latest' | 'none';

/**
 * How records reach the consumer: 'subscribe' has the node push batches as they are
 * appended, within a credit of bufferedBytesMax; 'fetch' asks with long-poll Fetch.
 */
export type DeliveryMode = 'subscribe' | 'fetch';

export interface ConsumerOptions<D extends ValueDecoding = 'buffer'> {
  /**
   * 'subscribe' (default): the node pushes new batches; a node that does not know Subscribe
   * is read with Fetch until the next reconnect. 'fetch': long-poll Fetch only.
   */
  delivery?: DeliveryMode;
  /** Longest a Fetch waits on the node for data (Fetch only). */
  maxWaitMs?: number;
  /** Fetch only. */
  minBytes?: number;
  /** Per Fetch response, and per pushed SubscribeData frame. */
  maxBytes?: number;
  /** Per partition in a Fetch response (at least one whole batch is always returned). */
  partitionMaxBytes?: number;
  /** Where to start without a position, and after OFFSET_OUT_OF_RANGE. Default 'latest', as Kafka. */
  autoOffsetReset?: AutoOffsetReset;
  /** 'auto' decodes CBOR values (marked `content-type: application/cbor`), else gives bytes. */
  valueDecoding?: D;
  /**
   * Fetched bytes held before the app takes them; no Fetch starts past it, and a
   * subscription's credit never takes the queue past it (by more than one batch).
   */
  bufferedBytesMax?: number;
  /** Answer time allowed on top of maxWaitMs; for Subscribe and Unsubscribe, all of it. */
  requestTimeoutMs?: number;
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** UNKNOWN_TOPIC answers tolerated (with backoff) before the error reaches the app. */
  unknownTopicRetries?: number;
  /**
   * Told of each position found diverged from the node's log (KIP-320), before anything more
   * of the partition is read; a promise it returns is awaited first. Without it the
   * consumer still continues where the logs part, silently.
   */
  onDivergence?: (divergence: LogDivergence) => void | Promise<void>;
}

export interface OffsetForTime extends TopicPartition {
  /** The first offset whose timestamp is at or after the one asked for; null when none. */
  offset: number | null;
  timestamp: number;
}

class PartitionState {
  /** Next offset the app gets; null until resolved by autoOffsetReset. */
  position: number | null = null;
  /** Next offset to fetch: past everything queued for this partition. */
  fetchOffset: number | null = null;
  /** The leader epoch of the record before `position`; -1: unknown (a seek, a reset). */
  leaderEpoch = -1;
  /** Set until OffsetsForLeaderEpoch has confirmed `position` (KIP-320): nothing is fetched meanwhile. */
  awaitingValidation = false;
  epoch = 0;
  /** Set when an error is queued for the app; fetching stops until a seek. */
  paused = false;
  retryAt = 0;
  failures = 0;
  unknownTopicAnswers = 0;
  highWatermark = -1;
  /** The error that paused the partition, for position(). */
  lastError: TributaryError | null = null;
  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}
}

interface Chunk {
  readonly state: PartitionState;
  readonly epoch: number;
  readonly batches: Buffer[];
  next: number;
  /** Records below this offset are skipped: the first batch may start before the fetch offset. */
  readonly minOffset: number;
  readonly bytes: number;
  /** When set, the app gets this error after the chunk's records. */
  error: TributaryError | null;
  errorOffset: number;
}

/** The subscription delivering to this consumer, as the consumer counts it. */
interface Subscribed {
  /** Set once the Subscribe answer is read (pushes may be handled just before). */
  handle: PushSubscription | null;
  /** Partitions taken, each with the epoch it was subscribed at: data under another is stale. */
  readonly members: Map<string, { readonly state: PartitionState; readonly epoch: number }>;
  /**
   * What the node may still push, counted as the node counts it: granted minus pushed,
   * below 0 after the one batch it may push past the credit.
   */
  creditBytes: number;
  /** Its connection is gone, or a grant went unsent: it must be replaced. */
  broken: boolean;
}


const EMPTY: never[] = [];

/** Wakes whoever waits; each wait is a fresh promise, so no wake is lost or doubled. */
class Signal {
  private waiters: (() => void)[] = [];
  wait(timeoutMs?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const done = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      this.waiters.push(done);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const i = this.waiters.indexOf(done);
          if (i >= 0) this.waiters.splice(i, 1);
          resolve();
        }, Math.max(0, timeoutMs));
      }
    });
  }
  notify(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
}

function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export class Consumer<D extends ValueDecoding = 'buffer'> {
  private readonly maxWaitMs: number;
  private readonly minBytes: number;
  private readonly maxBytes: number;
  private readonly partitionMaxBytes: number;
  private readonly autoOffsetReset: AutoOffsetReset;
  private readonly valueDecoding: ValueDecoding;
  private readonly bufferedBytesMax: number;
  private readonly requestTimeoutMs: number;
  private readonly retryBackoffMs: number;
  private readonly retryBackoffMaxMs: number;
  private readonly unknownTopicRetries: number;
  private readonly delivery: DeliveryMode;
  /** The credit window: bufferedBytesMax, as far as the node takes it. */
  private readonly creditWindowBytes: number;
  /** Credit is granted back in steps of at least this, not a frame per batch taken. */
  private readonly creditGrantBytesMin: number;

  private readonly states = new Map<string, PartitionState>();
  private readonly chunks: Chunk[] = [];
  private chunkHead = 0;
  private bufferedBytesNow = 0;
  /** Where in the assignment the next Fetch starts; see fetchOrder(). */
  private fetchStart = 0;
  private readonly fetchWake = new Signal();
  private readonly dataWake = new Signal();
  private loop: Promise<void> | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** A failure of the whole consumer (the node refused our Fetch): thrown to the app once. */
  private fatal: Error | null = null;
  /** The one subscription of subscribe delivery, from its Subscribe until it is replaced. */
  private subscription: Subscribed | null = null;
  private subscribeFailures = 0;
  /** The connectionCount on which the node refused Subscribe: Fetch is used until a reconnect. */
  private subscribeRefusedOn = -1;
  private readonly onDivergence: ConsumerOptions<D>['onDivergence'];
  private readonly stopHearingReconnects: () => void;

  constructor(
    private readonly client: Client,
    options: ConsumerOptions<D> = {},
    private readonly ownsClient = false,
  ) {
    this.maxWaitMs = intOption('maxWaitMs', options.maxWaitMs, 500, 0);
    this.minBytes = intOption('minBytes', options.minBytes, 1, 0);
    this.maxBytes = intOption('maxBytes', options.maxBytes, 8 * 1024 * 1024, 1);
    this.partitionMaxBytes = intOption('partitionMaxBytes', options.partitionMaxBytes, 1024 * 1024, 1);
    this.bufferedBytesMax = intOption('bufferedBytesMax', options.bufferedBytesMax, this.maxBytes, 1);
    this.requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, 30_000, 1);
    this.retryBackoffMs = intOption('retryBackoffMs', options.retryBackoffMs, 100, 0);
    this.retryBackoffMaxMs = intOption('retryBackoffMaxMs', options.retryBackoffMaxMs, 2000, 0);
    this.unknownTopicRetries = intOption('unknownTopicRetries', options.unknownTopicRetries, 3, 0);
    this.delivery = options.delivery ?? 'subscribe';
    if (!['subscribe', 'fetch'].includes(this.delivery)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `delivery must be 'subscribe' or 'fetch', got ${String(this.delivery)}`);
    }
    // The node holds no more credit than this and refuses a Subscribe asking for more, so
    // a larger grant would be lost and our count would drift from the node's.
    this.creditWindowBytes = Math.min(this.bufferedBytesMax, SUBSCRIBE_CREDIT_BYTES_MAX);
    this.creditGrantBytesMin = Math.max(1, Math.floor(this.creditWindowBytes / 4));
    this.autoOffsetReset = options.autoOffsetReset ?? 'latest';
    if (!['earliest', 'latest', 'none'].includes(this.autoOffsetReset)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `autoOffsetReset must be 'earliest', 'latest' or 'none', got ${String(this.autoOffsetReset)}`);
    }
    this.valueDecoding = options.valueDecoding ?? 'buffer';
    if (!['buffer', 'string', 'auto'].includes(this.valueDecoding)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `valueDecoding must be 'buffer', 'string' or 'auto', got ${String(this.valueDecoding)}`);
    }
    this.onDivergence = options.onDivergence;
    this.stopHearingReconnects = client.onReconnect(() => this.onReconnected());
  }

  /** Fetched bytes waiting for the app. */
  get bufferedBytes(): number {
    return this.bufferedBytesNow;
  }

  /** The partitions assigned now. */
  assignment(): TopicPartition[] {
    return [...this.states.values()].map((s) => ({ topic: s.topic, partition: s.partition }));
  }

  /**
   * Replaces the assignment. A partition kept from before keeps its position unless an
   * offset is given; a new one starts at its offset or by autoOffsetReset.
   */
  assign(partitions: readonly PartitionAssignment[]): void {
    this.ensureOpen();
    const next = new Map<string, PartitionState>();
    for (const a of partitions) {
      if (typeof a.topic !== 'string' || a.topic === '' || !Number.isInteger(a.partition) || a.partition < 0) {
        throw new TributaryError(Errors.INVALID_REQUEST, `bad assignment ${JSON.stringify(a)}`);
      }
      const key = tpKey(a.topic, a.partition);
      if (a.leaderEpoch !== undefined && (!Number.isInteger(a.leaderEpoch) || a.leaderEpoch < -1 || a.offset === undefined)) {
        throw new TributaryError(Errors.INVALID_REQUEST, `bad assignment ${JSON.stringify(a)}: a leaderEpoch is an integer of at least -1, given with an offset`);
      }
      const state = this.states.get(key) ?? next.get(key) ?? new PartitionState(a.topic, a.partition);
      next.set(key, state);
      if (a.offset !== undefined) this.seekState(state, a.offset, a.leaderEpoch);
    }
    for (const [key, state] of this.states) {
      if (!next.has(key)) state.epoch++; // drops whatever is queued or in flight for it
    }
    this.states.clear();
    for (const [key, state] of next) this.states.set(key, state);
    this.fatal = null;
    this.startLoop();
    this.fetchWake.notify();
  }

  /** Sets the next offset to read; data already fetched for the partition is dropped. */
  seek(topic: string, partition: number, offset: number): void {
    this.ensureOpen();
    this.seekState(this.stateOf(topic, partition), offset);
    this.fetchWake.notify();
  }

  /** Moves to the first kept offset of each partition (all assigned when none given). */
  async seekToBeginning(partitions?: readonly TopicPartition[]): Promise<void> {
    await this.seekTo(partitions, EARLIEST_TIMESTAMP);
  }

  /** Moves to the log end of each partition: only records written from now on are read. */
  async seekToEnd(partitions?: readonly TopicPartition[]): Promise<void> {
    await this.seekTo(partitions, LATEST_TIMESTAMP);
  }

  /** For each partition, the first offset with a timestamp at or after the one given. */
  async offsetsForTimes(query: readonly (TopicPartition & { timestamp: number })[]): Promise<OffsetForTime[]> {
    if (query.length === 0) return [];
    const response = await this.client.request(Kind.ListOffsets, {
      partitions: query.map((q) => ({ topic: q.topic, partition: q.partition, timestamp: q.timestamp })),
    });
    return query.map((q, i) => {
      const r = resultAt(response.partitions, i, q);
      if (r === undefined) throw new TributaryError(Errors.UNKNOWN, `node did not answer for ${q.topic}/${q.partition}`);
      if (r.error !== Errors.NONE.code) throw wireError(r.error, r.message);
      return { topic: q.topic, partition: q.partition, offset: r.offset < 0 ? null : r.offset, timestamp: r.timestamp };
    });
  }

  /** The offset of the next record the app will get; resolves a pending reset first. */
  async position(topic: string, partition: number): Promise<number> {
    const state = this.stateOf(topic, partition);
    for (;;) {
      if (state.position !== null) return state.position;
      this.ensureOpen();
      if (state.paused) {
        const cause = state.lastError ?? new TributaryError(Errors.OFFSET_OUT_OF_RANGE, 'no position');
        throw new PartitionError(cause, topic, partition, -1);
      }
      await this.resolveResets([state]);
      if (state.position === null && !state.paused) await this.fetchWake.wait(Math.max(1, state.retryAt - Date.now()));
    }
  }

  /**
   * The offset of the next record the app will get, if the partition has one now: set by
   * a seek or a start offset, by a reset already resolved, or by the records taken. Null
   * while a reset is still to be asked of the node; unlike position(), it never asks
   * (Kafka's hasValidPosition).
   */
  validPosition(topic: string, partition: number): number | null {
    return this.states.get(tpKey(topic, partition))?.position ?? null;
  }

  /** The leader epoch of the record before validPosition (what a commit carries); -1 when unknown. */
  positionLeaderEpoch(topic: string, partition: number): number {
    return this.states.get(tpKey(topic, partition))?.leaderEpoch ?? -1;
  }

  /** The high watermark from the last Fetch answer or push for the partition, or -1. */
  highWatermark(topic: string, partition: number): number {
    return this.stateOf(topic, partition).highWatermark;
  }

  /** Records one at a time. Breaking out of the loop does not close the consumer. */
  [Symbol.asyncIterator](): AsyncIterator<ConsumerRecord<DecodedValue<D>>> {
    let current: ConsumerRecord<DecodedValue<D>>[] = EMPTY;
    let index = 0;
    let state: PartitionState | null = null;
    let epoch = 0;
    const done: IteratorResult<ConsumerRecord<DecodedValue<D>>> = { value: undefined, done: true };
    const next = async (): Promise<IteratorResult<ConsumerRecord<DecodedValue<D>>>> => {
      for (;;) {
        if (state !== null && index < current.length && state.epoch === epoch) {
          const record = current[index++];
          state.position = record.offset + 1;
          state.leaderEpoch = record.leaderEpoch;
          return { value: record, done: false };
        }
        const taken = await this.take(false);
        if (taken === null) return done;
        current = taken.records;
        index = 0;
        state = taken.state;
        epoch = taken.epoch;
      }
    };
    return {
      next: () => {
        // The fast path stays synchronous: no async frame per record.
        if (state !== null && index < current.length && state.epoch === epoch) {
          const record = current[index++];
          state.position = record.offset + 1;
          state.leaderEpoch = record.leaderEpoch;
          return Promise.resolve({ value: record, done: false });
        }
        return next();
      },
      return: () => Promise.resolve(done),
    };
  }

  /** Records in arrays, as fetched and decoded (the fast path). The position moves past each array as it is given. */
  batches(): AsyncIterable<ConsumerRecord<DecodedValue<D>>[]> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<ConsumerRecord<DecodedValue<D>>[]>> => {
          const taken = await this.take(true);
          return taken === null ? { value: undefined, done: true } : { value: taken.records, done: false };
        },
        return: () => Promise.resolve({ value: undefined, done: true }),
      }),
    };
  }

  /** Stops fetching and ends every iteration; closes the client if this consumer made it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.stopHearingReconnects();
      // Not waited for: a shared client sends the Unsubscribe; its own client closes anyway.
      const subscription = this.subscription;
      this.subscription = null;
      void subscription?.handle?.unsubscribe();
      this.fetchWake.notify();
      this.dataWake.notify();
      for (const s of this.states.values()) s.epoch++;
      this.chunks.length = 0;
      this.chunkHead = 0;
      this.bufferedBytesNow = 0;
      // With its own client, closing it ends the fetch in flight at once. A shared client
      // stays open: the long poll in flight ends within maxWaitMs and its answer is dropped.
      if (this.ownsClient) {
        await this.client.close();
        await this.loop;
      }
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------
  // Positions.

  private ensureOpen(): void {
    if (this.closed) throw clientClosed('consumer');
  }

  private stateOf(topic: string, partition: number): PartitionState {
    const state = this.states.get(tpKey(topic, partition));
    if (state === undefined) throw new TributaryError(Errors.INVALID_REQUEST, `${topic}/${partition} is not assigned to this consumer`);
    return state;
  }

  /** `leaderEpoch`: of the record before `offset`, if known; the position is then validated first. */
  private seekState(state: PartitionState, offset: number, leaderEpoch = -1): void {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new TributaryError(Errors.INVALID_REQUEST, `offset must be a non-negative integer, got ${String(offset)}`);
    }
    state.epoch++;
    state.position = offset;
    state.fetchOffset = offset;
    state.leaderEpoch = leaderEpoch;
    state.awaitingValidation = leaderEpoch >= 0;
    state.paused = false;
    state.lastError = null;
    state.retryAt = 0;
    state.unknownTopicAnswers = 0;
  }

  private async seekTo(partitions: readonly TopicPartition[] | undefined, timestamp: number): Promise<void> {
    this.ensureOpen();
    const states = partitions === undefined ? [...this.states.values()] : partitions.map((p) => this.stateOf(p.topic, p.partition));
    if (states.length === 0) return;
    const epochs = states.map((s) => s.epoch);
    const response = await this.client.request(Kind.ListOffsets, {
      partitions: states.map((s) => ({ topic: s.topic, partition: s.partition, timestamp })),
    });
    states.forEach((s, i) => {
      const r = resultAt(response.partitions, i, s);
      if (r === undefined) throw new TributaryError(Errors.UNKNOWN, `node did not answer for ${s.topic}/${s.partition}`);
      if (r.error !== Errors.NONE.code) throw wireError(r.error, r.message);
      // A seek made while the answer was on its way is newer: it wins.
      if (s.epoch === epochs[i]) this.seekState(s, r.offset);
    });
    this.fetchWake.notify();
  }

  /** Partitions without a position get one by autoOffsetReset, through ListOffsets. */
  private async resolveResets(states: PartitionState[]): Promise<void> {
    const todo = states.filter((s) => s.fetchOffset === null && !s.paused && s.retryAt <= Date.now());
    if (todo.length === 0) return;
    if (this.autoOffsetReset === 'none') {
      for (const s of todo) this.failPartition(s, new TributaryError(Errors.OFFSET_OUT_OF_RANGE, "no position and autoOffsetReset is 'none'"), -1);
      return;
    }
    const timestamp = this.autoOffsetReset === 'earliest' ? EARLIEST_TIMESTAMP : LATEST_TIMESTAMP;
    const epochs = todo.map((s) => s.epoch);
    let response;
    try {
      response = await this.client.request(Kind.ListOffsets, {
        partitions: todo.map((s) => ({ topic: s.topic, partition: s.partition, timestamp })),
      });
    } catch (err) {
      for (const s of todo) this.partitionRetryOrFail(s, err as Error, -1);
      return;
    }
    todo.forEach((s, i) => {
      if (s.epoch !== epochs[i] || s.fetchOffset !== null) return;
      const r = resultAt(response.partitions, i, s);
      if (r === undefined || r.error !== Errors.NONE.code) {
        const err = r === undefined ? new TributaryError(Errors.UNKNOWN, 'no answer for the partition') : wireError(r.error, r.message);
        this.partitionRetryOrFail(s, err, -1);
        return;
      }
      s.position = r.offset;
      s.fetchOffset = r.offset;
      s.leaderEpoch = -1;
      s.failures = 0;
      s.unknownTopicAnswers = 0;
    });
  }

  // -------------------------------------------------------------------------------------
  // Validating positions against the node's log (KIP-320).

  /**
   * The node may have restarted, perhaps after a power loss that cut its log: every
   * position with a known epoch is checked before its partition is read again. What was
   * fetched ahead of it is dropped (a position can be checked, a prefetch past it cannot)
   * and fetched again once the position stands, as Kafka's consumer drops the buffered
   * data of a partition awaiting validation.
   */
  private onReconnected(): void {
    for (const s of this.states.values()) {
      if (s.position === null || s.leaderEpoch < 0 || s.paused) continue;
      s.epoch++;
      s.fetchOffset = s.position;
      s.awaitingValidation = true;
    }
    this.fetchWake.notify();
  }

  /**
   * OffsetsForLeaderEpoch for the positions awaiting it, by Kafka's rule
   * (SubscriptionState.maybeCompleteValidation): an end offset below the position is a
   * divergence, continued at that end offset in the node's epoch; no epoch at or below ours
   * on the node is one too, continued by autoOffsetReset; with 'none' either fails the
   * partition. A node that does not know the request is not asked again, as Kafka skips
   * validation against brokers older than it.
   */
  private async validatePositions(states: PartitionState[]): Promise<void> {
    const now = Date.now();
    const todo = states.filter((s) => s.awaitingValidation && !s.paused && s.retryAt <= now && this.states.get(tpKey(s.topic, s.partition)) === s);
    if (todo.length === 0) return;
    const epochs = todo.map((s) => s.epoch);
    let response: OffsetsForLeaderEpochResponse;
    try {
      response = await this.client.request(
        Kind.OffsetsForLeaderEpoch,
        { partitions: todo.map((s) => ({ topic: s.topic, partition: s.partition, leaderEpoch: s.leaderEpoch })) },
        { timeoutMs: this.requestTimeoutMs },
      );
    } catch (err) {
      // A node older than this request answers "unknown request kind"; any other
      // INVALID_REQUEST (a limit on the request, say) is an error like the rest.
      const unknownKind = err instanceof TributaryError && err.is(Errors.INVALID_REQUEST) && /unknown request kind/.test(err.message);
      todo.forEach((s, i) => {
        if (s.epoch !== epochs[i]) return;
        if (unknownKind) s.awaitingValidation = false;
        else this.partitionRetryOrFail(s, err as Error, s.position as number);
      });
      return;
    }
    const divergences: LogDivergence[] = [];
    todo.forEach((s, i) => {
      if (s.epoch !== epochs[i] || !s.awaitingValidation) return; // a seek since the request: it wins
      const r = resultAt(response.partitions ?? [], i, s);
      if (r === undefined || r.error !== Errors.NONE.code) {
        const err = r === undefined ? new TributaryError(Errors.UNKNOWN, 'node did not answer for the partition') : wireError(r.error, r.message);
        this.partitionRetryOrFail(s, err, s.position as number);
        return;
      }
      s.awaitingValidation = false;
      s.failures = 0;
      const d = divergenceOf(s, r.leaderEpoch, r.endOffset);
      if (d === null) return;
      divergences.push(d);
      this.continueAfterDivergence(s, d);
    });
    for (const d of divergences) await this.tellDivergence(d);
  }

  private continueAfterDivergence(s: PartitionState, d: LogDivergence): void {
    if (this.autoOffsetReset === 'none') {
      const where = d.divergedAt >= 0 ? `the node's log ends at ${d.divergedAt} in leader epoch ${d.leaderEpoch}` : `the node's log has no leader epoch at or below ${d.positionLeaderEpoch}`;
      this.failPartition(s, new TributaryError(Errors.OFFSET_OUT_OF_RANGE, `the log diverged: ${where}, below this position (read in epoch ${d.positionLeaderEpoch}); autoOffsetReset is 'none': seek`), d.position);
      return;
    }
    s.epoch++;
    if (d.divergedAt < 0) {
      s.position = null; // Kafka's requestOffsetReset
      s.fetchOffset = null;
      s.leaderEpoch = -1;
      return;
    }
    s.position = d.divergedAt;
    s.fetchOffset = d.divergedAt;
    s.leaderEpoch = d.leaderEpoch;
  }

  private async tellDivergence(d: LogDivergence): Promise<void> {
    if (this.onDivergence === undefined) return;
    try {
      await this.onDivergence(d);
    } catch (err) {
      this.fatal = err as Error; // the app's own failure: it hears of it on its next read
      this.dataWake.notify();
    }
  }

  // -------------------------------------------------------------------------------------
  // Delivery: subscribe or fetch.

  private startLoop(): void {
    this.loop ??= this.deliveryLoop().catch((err: unknown) => {
      // A bug in the loop must not vanish silently: hand it to the app.
      this.fatal = err as Error;
      this.dataWake.notify();
    });
  }

  private async deliveryLoop(): Promise<void> {
    while (!this.closed) {
      if (this.subscribes()) await this.subscribeLoop();
      else await this.fetchLoop();
    }
  }

  /** Subscribe delivery was asked for and the node has not refused it on this connection. */
  private subscribes(): boolean {
    return this.delivery === 'subscribe' && this.subscribeRefusedOn !== this.client.connectionCount;
  }

  private fetchable(s: PartitionState, now: number): boolean {
    return s.fetchOffset !== null && !s.paused && !s.awaitingValidation && s.retryAt <= now;
  }

  /**
   * Keeps one subscription that holds exactly the fetchable partitions, each at the epoch
   * it has now. Any change (assign, seek, reset, an error that pauses a partition, a retry
   * after backoff, a lost connection) replaces it whole: a partition cannot be moved within
   * a subscription, and one replacement per change costs one round trip more than a
   * subscription per partition but keeps a single credit window, counted exactly.
   */
  private async subscribeLoop(): Promise<void> {
    while (!this.closed && this.subscribes()) {
      if (this.fatal !== null) {
        await this.fetchWake.wait();
        continue;
      }
      const states = [...this.states.values()];
      // First: a divergence the node's log knows no epoch of is a reset, resolved next.
      await this.validatePositions(states);
      await this.resolveResets(states);
      if (this.closed) return;
      const now = Date.now();
      const wanted = states.filter((s) => this.fetchable(s, now));
      const current = this.subscription;
      if (current !== null && (current.broken || !holdsExactly(current, wanted))) {
        await this.unsubscribe(current);
        continue;
      }
      if (current === null && wanted.length > 0 && this.bufferedBytesNow < this.bufferedBytesMax) {
        await this.subscribeOnce(wanted);
        continue;
      }
      const retryAt = Math.min(...states.filter((s) => !s.paused && s.retryAt > now).map((s) => s.retryAt));
      await this.fetchWake.wait(Number.isFinite(retryAt) ? retryAt - now : undefined);
    }
  }

  /** Subscribes `wanted` at their fetch offsets with the free part of the window as credit. */
  private async subscribeOnce(wanted: PartitionState[]): Promise<void> {
    const creditBytes = Math.min(this.bufferedBytesMax - this.bufferedBytesNow, this.creditWindowBytes);
    const epochs = wanted.map((s) => s.epoch);
    const sub: Subscribed = {
      handle: null,
      members: new Map(wanted.map((s) => [tpKey(s.topic, s.partition), { state: s, epoch: s.epoch }])),
      creditBytes,
      broken: false,
    };
    this.subscription = sub;
    const partitions: FetchPartition[] = wanted.map((s) => ({
      topic: s.topic,
      partition: s.partition,
      fetchOffset: s.fetchOffset as number,
      maxBytes: this.partitionMaxBytes,
    }));
    let handle: PushSubscription;
    try {
      handle = await this.client.subscribe(
        // Pushes of at most partitionMaxBytes (1 MiB), not maxBytes: smaller pushes keep the
        // node sealing the next while we open this one, and the node holds less at a time
        // (measured: consume 2.4-2.8 M records/s against 1.8 M with 8 MiB pushes).
        { partitions, creditBytes, maxBytes: Math.min(this.maxBytes, this.partitionMaxBytes) },
        {
          onData: (data) => this.onSubscribeData(sub, data),
          onEnd: () => {
            sub.broken = true;
            this.fetchWake.notify();
          },
        },
        { timeoutMs: this.requestTimeoutMs },
      );
    } catch (err) {
      if (this.subscription === sub) this.subscription = null;
      if (!this.closed) await this.onSubscribeFailed(err);
      return;
    }
    sub.handle = handle;
    this.subscribeFailures = 0;
    if (this.closed || this.subscription !== sub) {
      void handle.unsubscribe();
      return;
    }
    wanted.forEach((s, i) => {
      const r = resultAt(handle.partitions, i, s);
      if (r !== undefined && r.error === Errors.NONE.code) return;
      sub.members.delete(tpKey(s.topic, s.partition));
      if (s.epoch !== epochs[i]) return; // a seek or reset since the request: it wins
      const err = r === undefined ? new TributaryError(Errors.UNKNOWN, 'node did not answer for the partition') : wireError(r.error, r.message);
      this.onPartitionError(s, err);
    });
    this.grantCredit(sub);
  }

  private async onSubscribeFailed(err: unknown): Promise<void> {
    if (err instanceof TributaryError && err.is(Errors.INVALID_REQUEST)) {
      // A node older than push delivery answers "unknown request kind 9" (and one at its
      // limit of subscriptions per connection refuses too): Fetch reads the same records,
      // so this connection uses it. A reconnect, perhaps to a newer node, tries again.
      this.subscribeRefusedOn = this.client.connectionCount;
      return;
    }
    if (err instanceof TributaryError && err.retriable) {
      // Subscribe changes nothing until answered, and an answer we missed opened a
      // subscription the client ends: asking again is safe.
      await this.fetchWake.wait(this.backoffMs(++this.subscribeFailures));
      return;
    }
    this.fatal = err as Error;
    this.dataWake.notify();
  }

  private async unsubscribe(sub: Subscribed): Promise<void> {
    if (this.subscription === sub) this.subscription = null;
    // Waited for, so the node has let go of the partitions before a Subscribe names them
    // again: it serves a connection's requests concurrently.
    await sub.handle?.unsubscribe();
  }

  /** A push: the same path as a Fetch answer, for the partitions still subscribed at their epoch. */
  private onSubscribeData(sub: Subscribed, data: SubscribeData): void {
    try {
      let pushedBytes = 0;
      for (const r of data.partitions) pushedBytes += r.records.byteLength;
      // The node counts every byte it pushed against the credit, stale ones too.
      sub.creditBytes -= pushedBytes;
      if (this.closed || this.subscription !== sub) return;
      let changed = false;
      for (const r of data.partitions) {
        const key = tpKey(r.topic, r.partition);
        const member = sub.members.get(key);
        if (member === undefined) continue;
        const s = member.state;
        // Stale: a seek, reset, unassign or error moved on; the subscription is replaced.
        if (s.epoch !== member.epoch || s.paused || this.states.get(key) !== s) continue;
        // A partition pushed with an error has left the subscription on the node.
        if (r.error !== Errors.NONE.code) sub.members.delete(key);
        this.onPartitionFetched(s, r);
        if (r.error !== Errors.NONE.code || s.paused) changed = true;
      }
      this.grantCredit(sub);
      if (changed) this.fetchWake.notify();
    } catch (err) {
      // A bug here must not vanish into the client's read loop: hand it to the app.
      this.fatal = err as Error;
      this.dataWake.notify();
    }
  }

  /**
   * Gives the node back what is free of the window: bytes queued plus credit stay within
   * bufferedBytesMax. Grants wait until a quarter of the window is free, so a slow trickle
   * of taken batches is not a Credit frame each.
   */
  private grantCredit(sub: Subscribed): void {
    const handle = sub.handle;
    if (handle === null || sub.broken || this.closed || this.subscription !== sub) return;
    const free = Math.min(this.bufferedBytesMax - this.bufferedBytesNow, this.creditWindowBytes) - sub.creditBytes;
    if (free < this.creditGrantBytesMin) return;
    sub.creditBytes += free;
    handle.credit(free).catch(() => {
      // Unsent: our count and the node's differ now; a new subscription starts both afresh.
      if (sub.broken) return;
      sub.broken = true;
      this.fetchWake.notify();
    });
  }

  private async fetchLoop(): Promise<void> {
    while (!this.closed && !this.subscribes()) {
      if (this.bufferedBytesNow >= this.bufferedBytesMax || this.fatal !== null) {
        await this.fetchWake.wait();
        continue;
      }
      const states = this.fetchOrder();
      // First: a divergence the node's log knows no epoch of is a reset, resolved next.
      await this.validatePositions(states);
      await this.resolveResets(states);
      if (this.closed) return;
      const now = Date.now();
      const wanted = states.filter((s) => this.fetchable(s, now) && this.states.get(tpKey(s.topic, s.partition)) === s);
      if (wanted.length === 0) {
        const retryAt = Math.min(...states.filter((s) => !s.paused && s.retryAt > now).map((s) => s.retryAt));
        await this.fetchWake.wait(Number.isFinite(retryAt) ? retryAt - now : undefined);
        continue;
      }
      const lastServed = await this.fetchOnce(wanted);
      this.rotateFetchOrder(states, lastServed);
    }
  }

  /**
   * The assignment, starting at `fetchStart`. The node fills a Fetch's maxBytes in request
   * order (KIP-74), so a fixed order would let the first partitions of a large backlog take
   * every response while the later ones get nothing until the first catch up.
   */
  private fetchOrder(): PartitionState[] {
    const states = [...this.states.values()];
    const start = states.length === 0 ? 0 : this.fetchStart % states.length;
    return start === 0 ? states : states.slice(start).concat(states.slice(0, start));
  }

  /**
   * The next Fetch starts just after the last partition that got records, so those that
   * were cut off by maxBytes come first: Kafka's consumer moves the partitions it got data
   * for to the end of its fetch order in the same way. When none or all got records, the
   * start still moves on by one.
   */
  private rotateFetchOrder(order: PartitionState[], lastServed: PartitionState | null): void {
    const i = lastServed === null ? -1 : order.indexOf(lastServed);
    const step = i >= 0 && i < order.length - 1 ? i + 1 : 1;
    this.fetchStart = (this.fetchStart + step) % order.length;
  }

  /** One Fetch; gives the last partition, in request order, that the node sent records for. */
  private async fetchOnce(wanted: PartitionState[]): Promise<PartitionState | null> {
    const epochs = wanted.map((s) => s.epoch);
    const partitions: FetchPartition[] = wanted.map((s) => ({
      topic: s.topic,
      partition: s.partition,
      fetchOffset: s.fetchOffset as number,
      maxBytes: this.partitionMaxBytes,
    }));
    let response;
    try {
      response = await this.client.request(
        Kind.Fetch,
        { maxWaitMs: this.maxWaitMs, minBytes: this.minBytes, maxBytes: this.maxBytes, partitions },
        { timeoutMs: this.maxWaitMs + this.requestTimeoutMs },
      );
    } catch (err) {
      if (this.closed) return null;
      if (err instanceof TributaryError && err.retriable) {
        // A Fetch reads and changes nothing, so it is always safe to ask again.
        await this.fetchWake.wait(this.backoffMs(1));
        return null;
      }
      this.fatal = err as Error;
      this.dataWake.notify();
      return null;
    }
    const results = response.partitions ?? [];
    let lastServed: PartitionState | null = null;
    for (let i = 0; i < wanted.length; i++) {
      const s = wanted[i];
      const r = resultAt(results, i, s);
      if (r === undefined) continue;
      if (r.error === Errors.NONE.code && r.records.byteLength > 0) lastServed = s;
      if (s.epoch !== epochs[i] || this.closed) continue;
      this.onPartitionFetched(s, r);
    }
    return lastServed;
  }

  private onPartitionFetched(s: PartitionState, r: FetchPartitionResult): void {
    const fetchOffset = s.fetchOffset as number;
    if (r.error !== Errors.NONE.code) {
      this.onPartitionError(s, wireError(r.error, r.message));
      return;
    }
    s.highWatermark = r.highWatermark;
    s.failures = 0;
    s.unknownTopicAnswers = 0;
    const records = Buffer.isBuffer(r.records) ? r.records : Buffer.from(r.records.buffer, r.records.byteOffset, r.records.byteLength);
    if (records.length === 0) return;
    let batches: Buffer[];
    let nextOffset: number;
    try {
      batches = splitBatches(records);
      if (batches.length === 0) throw new TributaryError(Errors.CORRUPT_BATCH, `fetch returned ${records.length} bytes without one whole batch`);
      nextOffset = lastOffsetOf(batches[batches.length - 1]) + 1;
      if (nextOffset <= fetchOffset) throw new TributaryError(Errors.CORRUPT_BATCH, `fetch at ${fetchOffset} returned batches ending at ${nextOffset - 1}`);
    } catch (err) {
      // Records that decode before the fault still reach the app, then the error does.
      this.push({ state: s, epoch: s.epoch, batches: [], next: 0, minOffset: fetchOffset, bytes: 0, error: asTributary(err), errorOffset: fetchOffset });
      s.paused = true;
      return;
    }
    s.fetchOffset = nextOffset;
    this.push({ state: s, epoch: s.epoch, batches, next: 0, minOffset: fetchOffset, bytes: records.length, error: null, errorOffset: -1 });
  }

  /** A partition's error from a Fetch answer, a Subscribe answer or a push. */
  private onPartitionError(s: PartitionState, err: TributaryError): void {
    if (err.is(Errors.OFFSET_OUT_OF_RANGE) && this.autoOffsetReset !== 'none') {
      // Kafka's auto.offset.reset: start over at the chosen end of the log.
      s.epoch++;
      s.position = null;
      s.fetchOffset = null;
      s.leaderEpoch = -1;
      return;
    }
    if (err.is(Errors.NOT_LEADER) && s.position !== null && s.leaderEpoch >= 0 && !s.awaitingValidation) {
      // Leadership moved, over a connection that stayed up: whichever node leads next may
      // have truncated its log meanwhile (a follower cut back to its leader's), so the
      // position is checked before it is read again, as Kafka's consumer validates on a
      // change of leader. What was fetched ahead of it is dropped.
      s.epoch++;
      s.fetchOffset = s.position;
      s.awaitingValidation = true;
    }
    this.partitionRetryOrFail(s, err, s.fetchOffset as number);
  }

  /** Retriable partition errors back off and try again; the rest go to the app. */
  private partitionRetryOrFail(s: PartitionState, err: Error, offset: number): void {
    const te = asTributary(err);
    const unknownTopic = te.is(Errors.UNKNOWN_TOPIC) && ++s.unknownTopicAnswers > this.unknownTopicRetries;
    const transient = te.retriable && !te.is(Errors.CORRUPT_BATCH) && !unknownTopic;
    if (transient) {
      s.retryAt = Date.now() + this.backoffMs(++s.failures);
      return;
    }
    this.failPartition(s, te, offset);
  }

  private failPartition(s: PartitionState, err: TributaryError, offset: number): void {
    s.paused = true;
    s.lastError = err;
    this.push({ state: s, epoch: s.epoch, batches: [], next: 0, minOffset: 0, bytes: 0, error: err, errorOffset: offset });
  }

  private backoffMs(failures: number): number {
    return Math.min(this.retryBackoffMaxMs, this.retryBackoffMs * 2 ** Math.max(0, failures - 1));
  }

  private push(chunk: Chunk): void {
    this.chunks.push(chunk);
    this.bufferedBytesNow += chunk.bytes;
    this.dataWake.notify();
  }

  // -------------------------------------------------------------------------------------
  // Handing records to the app.

  /**
   * The next decoded records in order, or null once closed. Throws a partition's error
   * (after its good records) and a fatal error once.
   */
  private async take(advance: boolean): Promise<{ records: ConsumerRecord<DecodedValue<D>>[]; state: PartitionState; epoch: number } | null> {
    for (;;) {
      if (this.closed) return null;
      if (this.fatal !== null) {
        const err = this.fatal;
        this.fatal = null;
        this.fetchWake.notify(); // the next iteration tries again
        throw err;
      }
      if (this.chunkHead >= this.chunks.length) {
        this.startLoop();
        await this.dataWake.wait();
        continue;
      }
      const chunk = this.chunks[this.chunkHead];
      const s = chunk.state;
      const live = s.epoch === chunk.epoch && this.states.get(tpKey(s.topic, s.partition)) === s;
      if (!live || chunk.next >= chunk.batches.length) {
        if (live && chunk.error !== null) {
          this.dropChunk();
          throw this.surface(s, chunk);
        }
        this.dropChunk();
        continue;
      }
      const records = this.decodeChunk(chunk);
      if (records.length === 0) continue;
      if (advance) {
        const last = records[records.length - 1];
        s.position = last.offset + 1;
        s.leaderEpoch = last.leaderEpoch;
      }
      return { records, state: s, epoch: chunk.epoch };
    }
  }

  private surface(s: PartitionState, chunk: Chunk): PartitionError {
    const err = chunk.error as TributaryError;
    const offset = chunk.errorOffset >= 0 ? chunk.errorOffset : (s.position ?? -1);
    // Whatever was fetched past the fault is stale; a seek resumes the partition.
    s.epoch++;
    s.paused = true;
    if (offset >= 0) {
      s.position = offset;
      s.fetchOffset = offset;
    }
    if (this.delivery === 'subscribe') this.fetchWake.notify(); // a subscription holding it is replaced
    return err instanceof PartitionError ? err : new PartitionError(err, s.topic, s.partition, offset);
  }

  private dropChunk(): void {
    const chunk = this.chunks[this.chunkHead];
    this.chunks[this.chunkHead++] = undefined as unknown as Chunk;
    this.bufferedBytesNow -= chunk.bytes;
    if (this.chunkHead > 256 && this.chunkHead * 2 > this.chunks.length) {
      this.chunks.splice(0, this.chunkHead);
      this.chunkHead = 0;
    }
    if (this.subscription !== null) this.grantCredit(this.subscription);
    if (this.bufferedBytesNow < this.bufferedBytesMax) this.fetchWake.notify();
  }

  /** Decodes the chunk's remaining batches; stops before a bad one, which then fails. */
  private decodeChunk(chunk: Chunk): ConsumerRecord<DecodedValue<D>>[] {
    const { topic, partition } = chunk.state;
    const out: ConsumerRecord<DecodedValue<D>>[] = [];
    const decoding = this.valueDecoding;
    while (chunk.next < chunk.batches.length) {
      const batch = chunk.batches[chunk.next];
      let decoded;
      try {
        decoded = decodeBatch(batch);
      } catch (err) {
        chunk.error = asTributary(err);
        chunk.errorOffset = Math.max(chunk.minOffset, safeBaseOffset(batch, chunk.minOffset));
        chunk.next = chunk.batches.length;
        chunk.state.paused = true;
        break;
      }
      chunk.next++;
      if (decoded.header.isControl) continue;
      const leaderEpoch = decoded.header.partitionLeaderEpoch;
      // decodeBatch's records are fresh objects nobody else holds: each becomes the
      // ConsumerRecord itself, topic and partition added, rather than being copied into a
      // second object per record.
      const records = decoded.records;
      for (let i = 0; i < records.length; i++) {
        const r = records[i];
        if (r.offset < chunk.minOffset) continue;
        const record = r as unknown as ConsumerRecord<unknown>;
        record.topic = topic;
        record.partition = partition;
        record.leaderEpoch = leaderEpoch;
        if (decoding !== 'buffer') record.value = decodeValue(r.value, r.headers, decoding);
        out.push(record as ConsumerRecord<DecodedValue<D>>);
      }
      if (out.length > 0 && out.length >= 4096) break; // keep arrays of a bounded size
    }
    return out;
  }
}

/** The divergence a validation answer shows for `s`'s position, or null when the position stands. */
function divergenceOf(s: PartitionState, leaderEpoch: number, endOffset: number): LogDivergence | null {
  const position = s.position as number;
  const unknown = leaderEpoch < 0 || endOffset < 0;
  if (!unknown && endOffset >= position) return null;
  return {
    topic: s.topic,
    partition: s.partition,
    position,
    positionLeaderEpoch: s.leaderEpoch,
    leaderEpoch: unknown ? -1 : leaderEpoch,
    divergedAt: unknown ? -1 : endOffset,
  };
}

/** Whether the subscription holds exactly these partitions, each at the epoch it has now. */
function holdsExactly(sub: Subscribed, wanted: readonly PartitionState[]): boolean {
  if (sub.members.size !== wanted.length) return false;
  for (const s of wanted) {
    const member = sub.members.get(tpKey(s.topic, s.partition));
    if (member === undefined || member.state !== s || member.epoch !== s.epoch) return false;
  }
  return true;
}

/** Answers come in request order; by name only if a node ever reorders them. */
function resultAt<R extends TopicPartition>(results: readonly R[], i: number, tp: TopicPartition): R | undefined {
  const r = results[i];
  if (r !== undefined && r.topic === tp.topic && r.partition === tp.partition) return r;
  return results.find((x) => x.topic === tp.topic && x.partition === tp.partition);
}

function decodeValue(value: Buffer | null, headers: Header[], decoding: ValueDecoding): unknown {
  if (value === null || decoding === 'buffer') return value;
  if (decoding === 'string') return value.toString('utf8');
  if (isCborMarked(headers, CONTENT_TYPE)) {
    try {
      return cborDecode(value);
    } catch {
      return value; // marked but not CBOR: the bytes are still the truth
    }
  }
  return value;
}

function safeBaseOffset(batch: Buffer, fallback: number): number {
  try {
    return readBatchHeader(batch).baseOffset;
  } catch {
    return fallback;
  }
}

function asTributary(err: unknown): TributaryError {
  if (err instanceof TributaryError) return err;
  return new TributaryError(Errors.UNKNOWN, (err as Error)?.message ?? String(err), { cause: err });
}

function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new TributaryError(Errors.INVALID_CONFIG, `${name} must be an integer of at least ${min}, got ${String(value)}`);
  return value;
}
