// The producer's sending half (Kafka's Sender): sealed batches of each partition go on the
// wire in order, their answers come back, and failed attempts are retried or settled.
//
// Idempotence (the default, Kafka's enable.idempotence): the producer takes a producer id
// from the node before its first Produce and stamps every batch with it and a sequence per
// partition (devices/idempotence.ts). The node keeps a producer's last 5 batches per
// partition and answers a resend of one of them DUPLICATE_SEQUENCE with where it was
// written, so a resend can no longer duplicate: every retriable failure is retried, a lost
// connection and a timeout included, until deliveryTimeoutMs. From a partition's oldest
// unacknowledged batch on at most 5 are stamped (acknowledged ones included: answers may
// come out of order), so any resend falls within what the node remembers. The node appends
// a batch only if its sequence follows the last one, so a batch sent behind one that failed
// is refused (OUT_OF_ORDER_SEQUENCE) and simply resent after it: order holds.
//
// A gap no resend can fill: OUT_OF_ORDER_SEQUENCE for a batch that was sent with nothing
// before it unacknowledged means the node does not have sequences we saw acknowledged (it
// lost its producer state or the records). That batch fails with the error, and the
// partition starts again under a new producer id, sequences from 0, so the batches after it
// are not refused forever (Kafka since KIP-360 bumps the epoch instead). The trade-off: the
// partition goes on with a hole the application was told about (resending the failed
// records puts them after later ones), and a later batch whose earlier attempt's outcome was
// unknown is sent again under the new id, which the node cannot recognise: it would be
// duplicated if the node had in fact written it before losing its state. Failing every
// later batch instead would keep that promise only by losing them all.
//
// When one of our own batches leaves unacknowledged (a non-retriable error, out of
// deliveryTimeoutMs) the node may be left waiting for its sequences: if nothing was stamped
// after it and the node certainly does not have it, the next batch takes its sequences;
// otherwise the next batch is marked `afterGap`, and its OUT_OF_ORDER_SEQUENCE, when it
// comes, restarts the partition under a new producer id without failing it.
//
// Without idempotence (or with acks = 0) only errors where the node certainly did not append
// are retried: a lost connection or a timeout leaves the outcome unknown, and a blind resend
// could duplicate, so those batches fail with their (retriable) error and the application
// decides. More than one batch in flight per partition may then reorder on a retry.

import type { Clock, ClockTimer } from '../protocol/clock.js';
import { AssertionError, errorSpecForCode, Errors, TributaryError } from '../protocol/errors.js';
import { Kind, type Acks, type ProducePartition, type ProducePartitionResult, type ProduceResponse } from '../protocol/frames.js';
import { encodeBatch, type Compression } from '../protocol/record-batch.js';
import type { Client } from './client.js';
import { detailOf, wireError } from './errors.js';
import { initProducerId, nextSequence, stampBatch, type ProducerIdAndEpoch } from './idempotence.js';
import type { Batch, PartitionQueue } from './producer-batch.js';
import { soon } from './soon.js';

/** Errors where the node certainly did not append: a resend cannot duplicate. */
const NOT_APPENDED = new Set<number>([
  Errors.UNKNOWN_TOPIC.code,
  Errors.NOT_LEADER.code,
  Errors.STORAGE_FULL.code,
  Errors.TOO_MANY_REQUESTS.code,
  Errors.THROTTLED.code,
  Errors.SHUTTING_DOWN.code,
]);

/**
 * Failures that say nothing of whether the node appended: no answer came (NETWORK,
 * REQUEST_TIMED_OUT, CLIENT_CLOSED) or the node failed unexpectedly (UNKNOWN).
 */
const OUTCOME_UNKNOWN = new Set<number>([Errors.NETWORK.code, Errors.REQUEST_TIMED_OUT.code, Errors.CLIENT_CLOSED.code, Errors.UNKNOWN.code]);

/** Room in a Produce frame for the CBOR envelope and each partition entry's fields. */
const FRAME_ENVELOPE_BYTES = 1024;
const ENTRY_ENVELOPE_BYTES = 64;

/** The producer's settings that sending uses, checked by the Producer. */
export interface SenderConfig {
  readonly acks: Acks;
  readonly idempotent: boolean;
  readonly maxInFlightPerPartition: number;
  readonly compression: Compression;
  readonly retries: number;
  readonly retryBackoffMs: number;
  readonly retryBackoffMaxMs: number;
  readonly deliveryTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Where backoffs and deadlines are read and timed. */
  readonly clock: Clock;
  readonly onRetry?: (err: TributaryError, topic: string, partition: number) => void;
}

/** What the sender asks of the producer that feeds it. */
export interface SenderHost {
  /** Every partition queue the producer has. */
  queues(): Iterable<PartitionQueue>;
  /** A batch was settled and left its queue: its bytes are free, more may be admitted. */
  batchDone(b: Batch): void;
  /** Fenced: sends waiting for admission fail with `err`, open batches are sealed. */
  fenced(err: TributaryError): void;
}

export class Sender {
  private readonly withReadyBatch = new Set<PartitionQueue>();
  private drainScheduled = false;
  /** Batches put on the wire so far: orders attempts (Batch.sentAt). */
  private sends = 0;
  /** The id a partition takes when it first sends, or after a gap; null until the node gave one. */
  private producerIdNow: ProducerIdAndEpoch | null = null;
  private producerIdLoading = false;
  private producerIdAttempts = 0;
  private producerIdTimer: ClockTimer | null = null;
  private fencedBy: TributaryError | null = null;

  constructor(
    private readonly client: Client,
    private readonly config: SenderConfig,
    private readonly host: SenderHost,
  ) {}

  /** INVALID_PRODUCER_EPOCH, once the producer was fenced: every send fails with it. */
  get fenced(): TributaryError | null {
    return this.fencedBy;
  }

  /** The partition has a sealed batch to send. */
  ready(q: PartitionQueue): void {
    this.withReadyBatch.add(q);
    this.scheduleDrain();
  }

  scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    // A microtask: a synchronous burst of sends seals several batches first, and they leave
    // together in one request.
    soon(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  /**
   * Puts on the wire every batch that may go now. Each round takes the next batch of every
   * partition that has one, at most one per partition in a Produce request (packed up to
   * the node's frame limit); rounds go on while any partition has more room.
   */
  drain(): void {
    const frameBytes = Math.max(this.client.limits.frameBytesMax - FRAME_ENVELOPE_BYTES, 1);
    for (;;) {
      let entries: ProducePartition[] = [];
      let batches: Batch[] = [];
      let bytes = 0;
      let sent = false;
      for (const q of this.withReadyBatch) {
        const b = this.nextToSend(q);
        if (b === null) continue;
        const records = b.encoded;
        if (records === null) throw new AssertionError(`batch of ${q.topic}/${q.partition} chosen to send is not encoded`);
        const size = records.length + q.topic.length + ENTRY_ENVELOPE_BYTES;
        if (bytes + size > frameBytes && entries.length > 0) {
          this.sendProduce(entries, batches);
          entries = [];
          batches = [];
          bytes = 0;
        }
        b.onWire = true;
        b.sentAt = ++this.sends;
        b.sentAsHead = q.ready[0] === b;
        q.onWire++;
        entries.push({ topic: q.topic, partition: q.partition, records });
        batches.push(b);
        bytes += size;
        sent = true;
      }
      if (entries.length > 0) this.sendProduce(entries, batches);
      if (!sent) return;
    }
  }

  /**
   * The partition's next batch to send, encoded; null when it has none, no room on the
   * wire, or must wait (a backoff, an earlier batch's answer, a producer id). Batches go in
   * order: nothing passes a batch that waits. Batches out of deliveryTimeoutMs fail here.
   */
  private nextToSend(q: PartitionQueue): Batch | null {
    if (q.ready.length === 0) {
      this.withReadyBatch.delete(q);
      return null;
    }
    if (q.resetting || q.onWire >= this.config.maxInFlightPerPartition || this.fencedBy !== null) return null;
    const now = this.config.clock.monotonic();
    let i = 0;
    while (i < q.ready.length) {
      const b = q.ready[i];
      if (b.onWire) {
        i++;
        continue;
      }
      if (now >= b.deadline) {
        this.complete(b, this.deliveryTimedOut(b, b.lastError));
        continue;
      }
      if (b.retryAt > now) {
        this.armRetry(q, b.retryAt);
        return null;
      }
      // A resend goes only behind attempts made since its own last one. An earlier batch
      // still on the wire from before may yet fail, and this one would be refused behind it
      // again and again while that answer is on its way.
      if (b.sentAt > 0 && !sentSince(q.ready, i, b.sentAt)) return null;
      const prepared = this.prepare(q, b);
      if (prepared === 'ready') return b;
      if (prepared === 'waiting') return null;
      // 'failed': the batch could not be encoded and has failed; the next one may go.
    }
    return null;
  }

  /** Encodes the batch once and, when idempotent, stamps it with its partition's producer id and next sequence. */
  private prepare(q: PartitionQueue, b: Batch): 'ready' | 'waiting' | 'failed' {
    let stamp: ProducerIdAndEpoch | null = null;
    if (this.config.idempotent) {
      if (q.producerId < 0 && !this.takeProducerId(q)) return 'waiting';
      if (b.producerId !== q.producerId || b.producerEpoch !== q.producerEpoch) {
        if (!this.withinWindow(q)) return 'waiting';
        stamp = { producerId: q.producerId, producerEpoch: q.producerEpoch };
      }
    }
    const baseSequence = q.nextSequence;
    try {
      if (b.encoded === null) {
        b.encoded = encodeBatch(b.records, stamp === null ? { compression: this.config.compression } : { compression: this.config.compression, ...stamp, baseSequence });
        b.records = []; // the bytes are all a resend needs
      } else if (stamp !== null) {
        stampBatch(b.encoded, stamp, baseSequence);
      }
    } catch (err) {
      this.complete(b, err as Error);
      return 'failed';
    }
    if (stamp !== null) {
      b.producerId = stamp.producerId;
      b.producerEpoch = stamp.producerEpoch;
      b.baseSequence = baseSequence;
      b.stampIndex = q.stamped++;
      b.afterGap ||= q.gapAhead;
      q.gapAhead = false;
      q.nextSequence = nextSequence(baseSequence, b.count);
    }
    return 'ready';
  }

  /**
   * Whether one more batch may be stamped: the node recognises a resend only among the last
   * 5 batches it appended, so from the oldest unacknowledged batch on, at most
   * maxInFlightPerPartition (at most 5) may be stamped, acknowledged ones included. Answers
   * can come out of order (a batch refused NOT_LEADER after later ones were written), so
   * counting the batches on the wire alone would not do. Stamped batches are a prefix of
   * `ready`, in order, so the oldest unacknowledged one is the first.
   */
  private withinWindow(q: PartitionQueue): boolean {
    const oldest = q.ready[0];
    if (oldest.producerId !== q.producerId || oldest.producerEpoch !== q.producerEpoch) return true;
    return q.stamped - oldest.stampIndex < this.config.maxInFlightPerPartition;
  }

  /** Gives the partition the producer's current id, sequences from 0; false while the node is asked for one. */
  private takeProducerId(q: PartitionQueue): boolean {
    const id = this.producerIdNow;
    if (id === null) {
      this.loadProducerId();
      return false;
    }
    q.producerId = id.producerId;
    q.producerEpoch = id.producerEpoch;
    q.nextSequence = 0;
    q.stamped = 0;
    q.gapAhead = false;
    return true;
  }

  /** InitProducerId, once at a time; partitions waiting for an id are drained when it comes. */
  private loadProducerId(): void {
    if (this.producerIdLoading || this.producerIdTimer !== null) return;
    this.producerIdLoading = true;
    initProducerId(this.client, this.config.requestTimeoutMs).then(
      (id) => {
        this.producerIdLoading = false;
        this.producerIdAttempts = 0;
        this.producerIdNow = id;
        this.drain();
      },
      (err: unknown) => {
        this.producerIdLoading = false;
        this.producerIdFailed(err as Error);
      },
    );
  }

  /**
   * No producer id: the batches waiting for one fail with the error when it is not
   * retriable (UNAUTHORIZED, a node without idempotence) or when out of deliveryTimeoutMs;
   * otherwise the node is asked again after a backoff.
   */
  private producerIdFailed(err: Error): void {
    const retriable = err instanceof TributaryError && err.retriable && !this.client.isClosed;
    const now = this.config.clock.monotonic();
    let waiting = false;
    for (const q of this.withReadyBatch) {
      if (q.producerId >= 0) continue;
      for (const b of [...q.ready]) {
        if (!retriable) this.complete(b, err);
        else if (now >= b.deadline) this.complete(b, this.deliveryTimedOut(b, err));
      }
      if (q.ready.length > 0) waiting = true;
    }
    if (!retriable || !waiting) return;
    this.producerIdTimer = this.config.clock.setTimeout(() => {
      this.producerIdTimer = null;
      this.drain();
    }, this.backoffMs(this.producerIdAttempts++));
  }

  private sendProduce(partitions: ProducePartition[], batches: Batch[]): void {
    const body = { acks: this.config.acks, timeoutMs: this.config.requestTimeoutMs, partitions };
    const failed = (err: unknown) => {
      for (const b of batches) this.attemptDone(b, err as Error);
    };
    if (this.config.acks === 0) {
      this.client.fireAndForget(Kind.Produce, body, { timeoutMs: this.config.requestTimeoutMs }).then(() => {
        for (const b of batches) this.attemptDone(b, null, -1);
      }, failed);
      return;
    }
    this.client.request(Kind.Produce, body, { timeoutMs: this.config.requestTimeoutMs }).then((response) => this.onProduced(response, batches), failed);
  }

  private onProduced(response: ProduceResponse, batches: Batch[]): void {
    const results = response.partitions ?? [];
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i];
      const r = matchResult(results, i, b.queue);
      if (r === undefined) {
        this.attemptDone(b, new TributaryError(Errors.UNKNOWN, `node did not answer for ${b.queue.topic}/${b.queue.partition}`));
      } else if (r.error === Errors.NONE.code || r.error === Errors.DUPLICATE_SEQUENCE.code) {
        // DUPLICATE_SEQUENCE: a resend of a batch the node already has, at baseOffset. In
        // the log once, which is what the resend was for.
        this.attemptDone(b, null, r.baseOffset);
      } else {
        this.attemptDone(b, wireError(r.error, r.message));
      }
    }
  }

  /** One attempt of `b` is over: acknowledged at baseOffset (`err` null), refused, or lost. */
  private attemptDone(b: Batch, err: Error | null, baseOffset = -1): void {
    const q = b.queue;
    if (!(b.onWire && q.onWire > 0)) throw new AssertionError(`answer for a batch of ${q.topic}/${q.partition} that is not on the wire`);
    b.onWire = false;
    q.onWire--;
    if (err === null) this.complete(b, null, baseOffset);
    else this.failOrRetry(b, err);
    if (q.resetting && q.onWire === 0) this.restartSequences(q);
    this.scheduleDrain();
  }

  private failOrRetry(b: Batch, err: Error): void {
    if (this.fencedBy !== null) return this.complete(b, this.fencedBy);
    const code = err instanceof TributaryError ? err.code : Errors.UNKNOWN.code;
    if (this.config.idempotent) {
      if (code === Errors.OUT_OF_ORDER_SEQUENCE.code) return this.outOfOrder(b, err);
      if (code === Errors.INVALID_PRODUCER_EPOCH.code) {
        this.complete(b, err);
        return this.fence(err as TributaryError);
      }
      if (OUTCOME_UNKNOWN.has(code)) b.maybeAppended = true;
    }
    // Idempotent, a resend of a batch the node has is recognised, so any retriable failure
    // may be retried; otherwise only one where the node certainly did not append.
    const retriable = this.config.idempotent ? err instanceof TributaryError && err.retriable : NOT_APPENDED.has(code);
    if (!retriable || b.attempts >= this.config.retries || this.client.isClosed) return this.complete(b, err);
    const now = this.config.clock.monotonic();
    if (now >= b.deadline) return this.complete(b, this.deliveryTimedOut(b, err));
    b.lastError = err;
    b.retryAt = Math.min(b.deadline, now + this.backoffMs(b.attempts));
    b.attempts++;
    this.config.onRetry?.(err as TributaryError, b.queue.topic, b.queue.partition);
    // The batch keeps its place in `ready`: until it is sent again nothing behind it goes.
    this.armRetry(b.queue, b.retryAt);
  }

  /**
   * OUT_OF_ORDER_SEQUENCE: the node expected another sequence. If something before the
   * batch was unacknowledged when it was sent, that is what the node is missing: the batch
   * goes again after it. If not, the gap lies before anything we still hold: ours when a
   * batch before it left unacknowledged (`afterGap`), so the partition starts again under a
   * new producer id and the batch goes with it; otherwise the node lost what it had
   * acknowledged, and the batch fails (see the trade-off at the top of this file).
   */
  private outOfOrder(b: Batch, err: Error): void {
    const q = b.queue;
    if (!b.sentAsHead || q.resetting) return this.resendInTurn(b, err);
    q.resetting = true;
    if (b.afterGap) return this.resendInTurn(b, err);
    this.complete(b, err);
  }

  /** Sends the batch again as soon as everything before it is on the wire; not counted against `retries`. */
  private resendInTurn(b: Batch, err: Error): void {
    b.lastError ??= err;
    if (this.config.clock.monotonic() >= b.deadline) return this.complete(b, this.deliveryTimedOut(b, b.lastError));
    b.retryAt = 0;
  }

  /**
   * The partition starts again under a new producer id, sequences from 0: its batches are
   * stamped afresh when next sent. Only once none is on the wire, so that no answer to a
   * batch under the old id is still to come.
   */
  private restartSequences(q: PartitionQueue): void {
    q.resetting = false;
    // That id is spent on this partition; others go on with it, but none starts with it again.
    if (this.producerIdNow !== null && this.producerIdNow.producerId === q.producerId) this.producerIdNow = null;
    q.producerId = -1;
    q.producerEpoch = -1;
    q.nextSequence = 0;
    q.gapAhead = false;
    for (const b of q.ready) {
      b.afterGap = false;
      b.knownAppended = false;
    }
  }

  /**
   * INVALID_PRODUCER_EPOCH: a newer incarnation of this producer id exists (Kafka's
   * fencing). This producer stops: waiting sends and batches fail with the error, and so
   * does every later send; batches on the wire fail with it as their answers come.
   */
  private fence(err: TributaryError): void {
    if (this.fencedBy !== null) return;
    this.fencedBy = err;
    this.host.fenced(err);
    for (const q of this.host.queues()) {
      for (const b of [...q.ready]) if (!b.onWire) this.complete(b, err);
    }
  }

  private armRetry(q: PartitionQueue, at: number): void {
    if (q.retryTimer !== null && q.retryTimerAt <= at) return;
    q.retryTimer?.cancel();
    q.retryTimerAt = at;
    q.retryTimer = this.config.clock.setTimeout(() => {
      q.retryTimer = null;
      q.retryTimerAt = Infinity;
      this.drain();
    }, Math.max(0, at - this.config.clock.monotonic()));
  }

  private backoffMs(attempts: number): number {
    return Math.min(this.config.retryBackoffMaxMs, this.config.retryBackoffMs * 2 ** Math.min(attempts, 30));
  }

  /** The error a batch fails with once out of deliveryTimeoutMs: its last one's code, saying so. */
  private deliveryTimedOut(b: Batch, last: Error | null): TributaryError {
    const { topic, partition } = b.queue;
    const which = last instanceof TributaryError ? errorSpecForCode(last.code) : Errors.REQUEST_TIMED_OUT;
    const why = last === null ? 'not sent' : `last error: ${last instanceof TributaryError ? detailOf(last) : last.message}`;
    return new TributaryError(which, `batch for ${topic}/${partition} not delivered within deliveryTimeoutMs ${this.config.deliveryTimeoutMs} (${why})`, { cause: last ?? undefined });
  }

  /** Settles every record of the batch (with its offset, or with `err`) and frees its bytes. */
  private complete(b: Batch, err: Error | null, baseOffset = -1): void {
    const q = b.queue;
    const at = q.ready.indexOf(b);
    if (!(at >= 0 && !b.onWire)) throw new AssertionError(`settling a batch of ${q.topic}/${q.partition} that is ${at < 0 ? 'not queued' : 'on the wire'}`);
    if (err === null) this.acknowledged(q, b, at);
    else this.leftUnacknowledged(q, b, at);
    const { groups, slots, count } = b;
    const { topic, partition } = q;
    for (let i = 0; i < count; i++) {
      if (err !== null) groups[i].recordFailed(slots[i], err);
      else groups[i].recordDone(slots[i], topic, partition, baseOffset < 0 ? -1 : baseOffset + i);
    }
    b.groups = [];
    b.slots = [];
    b.records = [];
    b.encoded = null;
    q.ready.splice(at, 1);
    const waiters = b.onDone;
    b.onDone = null;
    if (waiters) for (const w of waiters) w();
    this.host.batchDone(b);
    if (q.ready.length > 0) this.scheduleDrain();
  }

  /** The node appends a producer's batches only in sequence, so it has every one before `b` too. */
  private acknowledged(q: PartitionQueue, b: Batch, at: number): void {
    if (b.producerId < 0) return;
    for (let i = 0; i < at; i++) {
      const e = q.ready[i];
      if (e.producerId === b.producerId && e.producerEpoch === b.producerEpoch) e.knownAppended = true;
    }
  }

  /**
   * A stamped batch fails. If the node may lack it, the node will wait for its sequences:
   * when nothing was stamped after it and the node certainly does not have it, the next
   * batch takes its sequences; otherwise the next one stamped is `afterGap`.
   */
  private leftUnacknowledged(q: PartitionQueue, b: Batch, at: number): void {
    if (b.producerId < 0 || b.producerId !== q.producerId || b.producerEpoch !== q.producerEpoch || b.knownAppended || q.resetting) return;
    if (!b.maybeAppended && q.nextSequence === nextSequence(b.baseSequence, b.count)) {
      q.nextSequence = b.baseSequence;
      q.gapAhead ||= b.afterGap;
      return;
    }
    const next = q.ready[at + 1];
    if (next !== undefined && next.producerId === q.producerId && next.producerEpoch === q.producerEpoch) next.afterGap = true;
    else q.gapAhead = true;
  }

  /** Clears the retry timers; for a producer closed with nothing left to send. */
  stopTimers(): void {
    this.producerIdTimer?.cancel();
    this.producerIdTimer = null;
    for (const q of this.host.queues()) {
      if (q.retryTimer === null) continue;
      q.retryTimer.cancel();
      q.retryTimer = null;
      q.retryTimerAt = Infinity;
    }
  }
}

function matchResult(results: ProducePartitionResult[], i: number, q: PartitionQueue): ProducePartitionResult | undefined {
  const r = results[i];
  if (r !== undefined && r.topic === q.topic && r.partition === q.partition) return r;
  return results.find((x) => x.topic === q.topic && x.partition === q.partition);
}

/** Whether every batch before index `i` (all on the wire) went out after `sentAt`. */
function sentSince(ready: readonly Batch[], i: number, sentAt: number): boolean {
  for (let j = 0; j < i; j++) if (ready[j].sentAt < sentAt) return false;
  return true;
}
