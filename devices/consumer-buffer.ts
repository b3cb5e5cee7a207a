// The consumer's partition buffer: the assignment, a position in each partition, and the
// chunks of fetched batches queued for the app, whichever way they arrived. A Delivery
// (delivery-subscribe.ts, delivery-fetch.ts) asks the node for the fetchable partitions at
// their fetch offsets and hands every answer or push to onPartitionFetched/onPartitionError,
// so positions, resets, corrupt batches and partition errors behave alike under both.
//
//   delivery -> onPartitionFetched: split into whole batches -> chunk per partition, queued
//     (bufferedBytes, bounded by bufferedBytesMax through the delivery) -> the app
//   app: records()/batches() take chunks in order and decode them batch by batch
//
// Decoding happens when the app takes a chunk, not when it arrives, so a seek never pays
// for records it throws away and a corrupt batch surfaces exactly after the last good record
// before it.
//
// Each partition carries an epoch, bumped by every seek or reset. Data fetched or pushed
// under an older epoch is dropped wherever it is met (in flight, queued, or half read), so
// a seek is always obeyed exactly.
//
// KIP-320: each position also carries the leader epoch of the record before it (read from
// the batch header the node stamped). A position taken with an epoch (a group's committed
// offset) and every position with one after a reconnect (the node may have restarted after
// a power loss that cut its log) is checked with OffsetsForLeaderEpoch before anything more
// of the partition is fetched or handed out: if the node's log for that epoch ends below
// the position, the records past that end are gone and other records now hold their
// offsets, so the consumer tells the app (onDivergence) and continues where the logs part.
// One request per reconnect or assignment, never per fetch.

import type { Clock, ClockTimer } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { EARLIEST_TIMESTAMP, Kind, LATEST_TIMESTAMP, type FetchPartitionResult, type OffsetsForLeaderEpochResponse } from '../protocol/frames.js';
import { decodeBatch, lastOffsetOf, readBatchHeader, splitBatches, type Header } from '../protocol/record-batch.js';
import type { Client } from './client.js';
import type {
  AutoOffsetReset,
  ConsumerOptions,
  ConsumerRecord,
  DecodedValue,
  LogDivergence,
  PartitionAssignment,
  TopicPartition,
  ValueDecoding,
} from './consumer-types.js';
import { clientClosed, PartitionError, wireError } from './errors.js';
import { cborDecode, CONTENT_TYPE, isCborMarked } from './serde.js';

/**
 * A way of bringing records into a PartitionBuffer: it asks the node for the buffer's
 * fetchable partitions at their fetch offsets, keeps the buffer within bufferedBytesMax,
 * and hands every answer to onPartitionFetched.
 */
export interface Delivery {
  /** Feeds the buffer until it closes; the buffer starts it once, at the first assign or read. */
  run(): Promise<void>;
  /** The app took bytes out of the buffer: there may be room for more. */
  onTaken(): void;
  /** The client reconnected; called before the buffer marks positions for validation. */
  onReconnect(): void;
  /** The buffer closed: let go of what the node holds for this consumer, without waiting. */
  close(): void;
}

export interface BufferSettings {
  autoOffsetReset: AutoOffsetReset;
  valueDecoding: ValueDecoding;
  bufferedBytesMax: number;
  requestTimeoutMs: number;
  retryBackoffMs: number;
  retryBackoffMaxMs: number;
  unknownTopicRetries: number;
  onDivergence: ConsumerOptions['onDivergence'];
  clock: Clock;
}

export class PartitionState {
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
  /** On the buffer's clock's monotonic time; 0: no backoff. */
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

const EMPTY: never[] = [];

/**
 * Wakes whoever waits; each wait is a fresh promise, so no wake is lost or doubled. A waiter
 * that was busy between looking at the state and waiting hands in the count it noted before
 * looking: a wake that came meanwhile then ends its wait at once.
 */
class Signal {
  private waiters: (() => void)[] = [];
  private notified = 0;
  constructor(private readonly clock: Clock) {}
  get count(): number {
    return this.notified;
  }
  wait(timeoutMs?: number, since?: number): Promise<void> {
    if (since !== undefined && since !== this.notified) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: ClockTimer | null = null;
      const done = () => {
        timer?.cancel();
        resolve();
      };
      this.waiters.push(done);
      if (timeoutMs !== undefined) {
        timer = this.clock.setTimeout(() => {
          const i = this.waiters.indexOf(done);
          if (i >= 0) this.waiters.splice(i, 1);
          resolve();
        }, Math.max(0, timeoutMs));
      }
    });
  }
  notify(): void {
    this.notified++;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }
}

export function tpKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export class PartitionBuffer<D extends ValueDecoding = 'buffer'> {
  readonly clock: Clock;
  readonly bufferedBytesMax: number;
  readonly requestTimeoutMs: number;
  private readonly settings: BufferSettings;
  private readonly delivery: Delivery;

  private readonly states = new Map<string, PartitionState>();
  private readonly chunks: Chunk[] = [];
  private chunkHead = 0;
  private bufferedBytesNow = 0;
  /** Wakes the delivery: the assignment, a position or the room in the buffer changed. */
  private readonly deliveryWake: Signal;
  /** Wakes the app: a chunk was queued, or the consumer failed or closed. */
  private readonly dataWake: Signal;
  private loop: Promise<void> | null = null;
  private closedNow = false;
  /** A failure of the whole consumer (the node refused our Fetch): thrown to the app once. */
  private fatal: Error | null = null;

  constructor(
    private readonly client: Client,
    settings: BufferSettings,
    delivery: (buffer: PartitionBuffer<D>) => Delivery,
  ) {
    this.settings = settings;
    this.clock = settings.clock;
    this.bufferedBytesMax = settings.bufferedBytesMax;
    this.requestTimeoutMs = settings.requestTimeoutMs;
    this.deliveryWake = new Signal(this.clock);
    this.dataWake = new Signal(this.clock);
    this.delivery = delivery(this);
  }

  // -------------------------------------------------------------------------------------
  // What a Delivery reads and calls.

  get closed(): boolean {
    return this.closedNow;
  }

  /** Fetched bytes waiting for the app. */
  get bufferedBytes(): number {
    return this.bufferedBytesNow;
  }

  /** The consumer failed as a whole and the app has not heard of it yet: nothing more is fetched. */
  get failed(): boolean {
    return this.fatal !== null;
  }

  /** The assigned partitions, in assignment order. */
  partitions(): PartitionState[] {
    return [...this.states.values()];
  }

  /** Whether `s` is still the assigned state of its partition (not unassigned since). */
  isAssigned(s: PartitionState): boolean {
    return this.states.get(tpKey(s.topic, s.partition)) === s;
  }

  /** Has a fetch offset and nothing holds it back: no error, validation or backoff. */
  fetchable(s: PartitionState, now: number): boolean {
    return s.fetchOffset !== null && !s.paused && !s.awaitingValidation && s.retryAt <= now;
  }

  /**
   * Gets `states` ready to be fetched: positions awaiting validation are checked, then
   * those without one are reset. First the validation, because a divergence the node's log
   * knows no epoch of is a reset, resolved next.
   */
  async prepare(states: PartitionState[]): Promise<void> {
    await this.validatePositions(states);
    await this.resolveResets(states);
  }

  /**
   * How long the delivery may wait before a partition of `states` needs it again: until the
   * first backoff ends; 0 when a position check or a reset is due already; undefined when
   * none waits on time. Due already happens: prepare() read the clock a moment before
   * `now`, and a timer may fire a fraction of a millisecond before the monotonic clock
   * reaches its time (Node's timers count whole milliseconds), so prepare() can find a
   * retry not yet due that is due by `now`; waiting for a change then waited for ever.
   */
  retryDelayMs(states: readonly PartitionState[], now: number): number | undefined {
    let retryAt = Infinity;
    for (const s of states) {
      if (s.paused) continue;
      if (s.retryAt > now) retryAt = Math.min(retryAt, s.retryAt);
      else if (s.awaitingValidation || s.fetchOffset === null) return 0;
    }
    return Number.isFinite(retryAt) ? retryAt - now : undefined;
  }

  /**
   * Counts the changes a delivery is woken for. A delivery notes it before it looks at the
   * partitions and hands it to waitForChange, so that a change made while it was busy (an
   * assign during a ListOffsets, say) is not slept through.
   */
  get changes(): number {
    return this.deliveryWake.count;
  }

  /** Waits for a change since `since` (see `changes`), or until `timeoutMs` passed. */
  waitForChange(since: number, timeoutMs?: number): Promise<void> {
    return this.deliveryWake.wait(timeoutMs, since);
  }

  /** Waits `ms` after a failed request, or less if a change comes first. */
  backOff(ms: number): Promise<void> {
    return this.deliveryWake.wait(ms);
  }

  wakeDelivery(): void {
    this.deliveryWake.notify();
  }

  /** The consumer fails as a whole: the app's next read throws `err`, once. */
  fail(err: Error): void {
    this.fatal = err;
    this.dataWake.notify();
  }

  backoffMs(failures: number): number {
    return Math.min(this.settings.retryBackoffMaxMs, this.settings.retryBackoffMs * 2 ** Math.max(0, failures - 1));
  }

  /** A partition's answer from the node: a Fetch's, or a push. */
  onPartitionFetched(s: PartitionState, r: FetchPartitionResult): void {
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
  onPartitionError(s: PartitionState, err: TributaryError): void {
    if (err.is(Errors.OFFSET_OUT_OF_RANGE) && this.settings.autoOffsetReset !== 'none') {
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

  // -------------------------------------------------------------------------------------
  // The assignment and positions, for the Consumer.

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
    this.deliveryWake.notify();
  }

  /** Sets the next offset to read; data already fetched for the partition is dropped. */
  seek(topic: string, partition: number, offset: number): void {
    this.ensureOpen();
    this.seekState(this.stateOf(topic, partition), offset);
    this.deliveryWake.notify();
  }

  /** Seeks each partition (all assigned when none given) to the offset ListOffsets finds for `timestamp`. */
  async seekTo(partitions: readonly TopicPartition[] | undefined, timestamp: number): Promise<void> {
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
    this.deliveryWake.notify();
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
      if (state.position === null && !state.paused) await this.deliveryWake.wait(Math.max(1, state.retryAt - this.clock.monotonic()));
    }
  }

  /** The partition's position if it has one now; never asks the node. */
  validPosition(topic: string, partition: number): number | null {
    return this.states.get(tpKey(topic, partition))?.position ?? null;
  }

  /** The leader epoch of the record before validPosition; -1 when unknown. */
  positionLeaderEpoch(topic: string, partition: number): number {
    return this.states.get(tpKey(topic, partition))?.leaderEpoch ?? -1;
  }

  /** The high watermark from the last Fetch answer or push for the partition, or -1. */
  highWatermark(topic: string, partition: number): number {
    return this.stateOf(topic, partition).highWatermark;
  }

  /**
   * The node may have restarted, perhaps after a power loss that cut its log: every
   * position with a known epoch is checked before its partition is read again. What was
   * fetched ahead of it is dropped (a position can be checked, a prefetch past it cannot)
   * and fetched again once the position stands, as Kafka's consumer drops the buffered
   * data of a partition awaiting validation.
   */
  onReconnected(): void {
    this.delivery.onReconnect();
    for (const s of this.states.values()) {
      if (s.position === null || s.leaderEpoch < 0 || s.paused) continue;
      s.epoch++;
      s.fetchOffset = s.position;
      s.awaitingValidation = true;
    }
    this.deliveryWake.notify();
  }

  /** Ends delivery and every iteration, and drops what is queued; resolves at once. */
  close(): void {
    if (this.closedNow) return;
    this.closedNow = true;
    this.delivery.close();
    this.deliveryWake.notify();
    this.dataWake.notify();
    for (const s of this.states.values()) s.epoch++;
    this.chunks.length = 0;
    this.chunkHead = 0;
    this.bufferedBytesNow = 0;
  }

  /** The delivery's run, once started; it ends soon after close(). */
  get running(): Promise<void> | null {
    return this.loop;
  }

  ensureOpen(): void {
    if (this.closedNow) throw clientClosed('consumer');
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

  /** Partitions without a position get one by autoOffsetReset, through ListOffsets. */
  private async resolveResets(states: PartitionState[]): Promise<void> {
    const now = this.clock.monotonic();
    const todo = states.filter((s) => s.fetchOffset === null && !s.paused && s.retryAt <= now);
    if (todo.length === 0) return;
    if (this.settings.autoOffsetReset === 'none') {
      for (const s of todo) this.failPartition(s, new TributaryError(Errors.OFFSET_OUT_OF_RANGE, "no position and autoOffsetReset is 'none'"), -1);
      return;
    }
    const timestamp = this.settings.autoOffsetReset === 'earliest' ? EARLIEST_TIMESTAMP : LATEST_TIMESTAMP;
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
   * OffsetsForLeaderEpoch for the positions awaiting it, by Kafka's rule
   * (SubscriptionState.maybeCompleteValidation): an end offset below the position is a
   * divergence, continued at that end offset in the node's epoch; no epoch at or below ours
   * on the node is one too, continued by autoOffsetReset; with 'none' either fails the
   * partition. A node that does not know the request is not asked again, as Kafka skips
   * validation against brokers older than it.
   */
  private async validatePositions(states: PartitionState[]): Promise<void> {
    const now = this.clock.monotonic();
    const todo = states.filter((s) => s.awaitingValidation && !s.paused && s.retryAt <= now && this.isAssigned(s));
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
    if (this.settings.autoOffsetReset === 'none') {
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
    const onDivergence = this.settings.onDivergence;
    if (onDivergence === undefined) return;
    try {
      await onDivergence(d);
    } catch (err) {
      this.fail(err as Error); // the app's own failure: it hears of it on its next read
    }
  }

  // -------------------------------------------------------------------------------------
  // Partition errors.

  /** Retriable partition errors back off and try again; the rest go to the app. */
  private partitionRetryOrFail(s: PartitionState, err: Error, offset: number): void {
    const te = asTributary(err);
    const unknownTopic = te.is(Errors.UNKNOWN_TOPIC) && ++s.unknownTopicAnswers > this.settings.unknownTopicRetries;
    const transient = te.retriable && !te.is(Errors.CORRUPT_BATCH) && !unknownTopic;
    if (transient) {
      s.retryAt = this.clock.monotonic() + this.backoffMs(++s.failures);
      return;
    }
    this.failPartition(s, te, offset);
  }

  private failPartition(s: PartitionState, err: TributaryError, offset: number): void {
    s.paused = true;
    s.lastError = err;
    this.push({ state: s, epoch: s.epoch, batches: [], next: 0, minOffset: 0, bytes: 0, error: err, errorOffset: offset });
  }

  private push(chunk: Chunk): void {
    this.chunks.push(chunk);
    this.bufferedBytesNow += chunk.bytes;
    this.dataWake.notify();
  }

  // -------------------------------------------------------------------------------------
  // Handing records to the app.

  private startLoop(): void {
    this.loop ??= this.delivery.run().catch((err: unknown) => {
      // A bug in the delivery must not vanish silently: hand it to the app.
      this.fail(err as Error);
    });
  }

  /** Records one at a time; each moves the position past it as it is handed out. */
  records(): AsyncIterator<ConsumerRecord<DecodedValue<D>>> {
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

  /** Records in arrays, as fetched and decoded; the position moves past each array as it is given. */
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

  /**
   * The next decoded records in order, or null once closed. Throws a partition's error
   * (after its good records) and a fatal error once.
   */
  private async take(advance: boolean): Promise<{ records: ConsumerRecord<DecodedValue<D>>[]; state: PartitionState; epoch: number } | null> {
    for (;;) {
      if (this.closedNow) return null;
      if (this.fatal !== null) {
        const err = this.fatal;
        this.fatal = null;
        this.deliveryWake.notify(); // the next iteration tries again
        throw err;
      }
      if (this.chunkHead >= this.chunks.length) {
        this.startLoop();
        await this.dataWake.wait();
        continue;
      }
      const chunk = this.chunks[this.chunkHead];
      const s = chunk.state;
      const live = s.epoch === chunk.epoch && this.isAssigned(s);
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
    // A subscription holding the partition is replaced; a fetch loop just looks again.
    this.deliveryWake.notify();
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
    this.delivery.onTaken();
    if (this.bufferedBytesNow < this.bufferedBytesMax) this.deliveryWake.notify();
  }

  /** Decodes the chunk's remaining batches; stops before a bad one, which then fails. */
  private decodeChunk(chunk: Chunk): ConsumerRecord<DecodedValue<D>>[] {
    const { topic, partition } = chunk.state;
    const out: ConsumerRecord<DecodedValue<D>>[] = [];
    const decoding: ValueDecoding = this.settings.valueDecoding;
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

/** Answers come in request order; by name only if a node ever reorders them. */
export function resultAt<R extends TopicPartition>(results: readonly R[], i: number, tp: TopicPartition): R | undefined {
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
