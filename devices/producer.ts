// The producer: records in, acknowledged offsets out.
//
//   send/sendBatch -> admission (FIFO; waits for metadata and buffer space)
//     -> per-partition batch (sealed at batchBytes or after lingerMs)
//     -> drain: per partition, the next batches in order, up to maxInFlightPerPartition on
//        the wire, each encoded (and, when idempotent, stamped) once; at most one batch per
//        partition in a Produce request, packed up to the node's frame limit
//     -> answer: each record resolves with baseOffset + its index in the batch
//
// Ordering: admission is first-in first-out, a key always maps to the same partition, and a
// partition's batches go on the wire in order and are resent in that order.
//
// Memory: `bufferBytesMax` bounds the records held from admission until their answer, as
// Kafka's buffer.memory does; a send waits up to maxBlockMs for space, then BUFFER_FULL.
// `admissionQueueMax` bounds the sends waiting for admission: past it a send fails at once
// with BUFFER_FULL, so a caller that never awaits cannot grow the queue without limit.
//
// Sending, retries and idempotence: sender.ts. In short: idempotent by default (a producer
// id from the node, a sequence per partition on every batch, so a resend is written once);
// up to maxInFlightPerPartition batches of a partition on the wire, in order; every
// retriable failure retried until deliveryTimeoutMs. Without idempotence only errors where
// the node certainly did not append are retried.

import type { Clock, ClockTimer } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind, type Acks } from '../protocol/frames.js';
import { partitionForKey, StickyPartitioner } from '../protocol/partitioner.js';
import { Compression, type Header, type Record as BatchRecord } from '../protocol/record-batch.js';
import { answerOf } from './admin.js';
import type { Client } from './client.js';
import { clientClosed, wireError } from './errors.js';
import { IDEMPOTENT_IN_FLIGHT_MAX } from './idempotence.js';
import { Batch, EachRecordGroup, OpenQueues, PartitionQueue, SendGroup, type RecordMetadata } from './producer-batch.js';
import { Sender, type SenderConfig } from './sender.js';
import { cborHeader, isCborPayload, KEY_CONTENT_TYPE, CONTENT_TYPE, payloadBytes, toHeaders, type HeadersInit, type Payload } from './serde.js';
import { soon } from './soon.js';

export interface ProducerMessage {
  /** Records with the same key go to the same partition, in order. */
  key?: Payload;
  /** Uint8Array as is, string as UTF-8, null as a tombstone, anything else as CBOR. */
  value: Payload;
  headers?: HeadersInit;
  /** Overrides the partitioner. */
  partition?: number;
  /** Milliseconds since the epoch; defaults to the time of the send. */
  timestamp?: number;
}

export type { RecordMetadata };

export type CompressionName = 'none' | 'gzip';

export interface ProducerOptions {
  /** 0: no answer; 1: the leader appended; -1 / 'all': all in-sync replicas. */
  acks?: Acks | 'all';
  /**
   * Kafka's enable.idempotence; default true. The producer asks the node for a producer id
   * before its first Produce (InitProducerId; kept across reconnects) and stamps every batch
   * with it and a per-partition sequence, so the node writes a resent batch once. Every
   * retriable failure, a lost connection or a timeout included, is then retried until
   * deliveryTimeoutMs. Off with acks = 0, where nothing is answered and so nothing can be
   * deduplicated (asking for both is INVALID_CONFIG). A node older than idempotent
   * producers refuses InitProducerId: use false with it.
   */
  idempotent?: boolean;
  /**
   * Batches of one partition on the wire at once, each in its own Produce request. Default
   * 5 when idempotent, and at most 5 then (the node remembers 5 batches per producer and
   * partition; Kafka's max.in.flight.requests.per.connection); default 1 without
   * idempotence, where more lets a retried batch land after a later one.
   */
  maxInFlightPerPartition?: number;
  compression?: CompressionName;
  /** A partition's batch is sent once it holds this many (estimated) bytes. */
  batchBytes?: number;
  /**
   * Longest a record waits for its batch to fill before it is sent anyway. 0: sent as soon
   * as the calling code has run, with the records it sent alongside.
   */
  lingerMs?: number;
  /** Bytes of records held between send() and their answer. */
  bufferBytesMax?: number;
  /** Longest a send waits for buffer space or topic metadata. */
  maxBlockMs?: number;
  /**
   * Sends (send or sendBatch calls) that may wait for admission at once; one more fails at
   * once with BUFFER_FULL (retriable). Default 100,000.
   */
  admissionQueueMax?: number;
  /**
   * Resends of a failed batch. Idempotent: default unlimited, bounded by deliveryTimeoutMs.
   * Otherwise default 5, and only batches the node refused without appending (NOT_LEADER,
   * THROTTLED, ...) are resent.
   */
  retries?: number;
  /** Wait before the first resend of a batch; it doubles with each resend up to retryBackoffMaxMs. */
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /**
   * Kafka's delivery.timeout.ms: the longest from a batch's creation (lingering included) to
   * its outcome; default 120,000. A batch not delivered by then fails with its last error
   * instead of being sent again. An attempt already on the wire is waited for, at most
   * requestTimeoutMs.
   */
  deliveryTimeoutMs?: number;
  /** Per Produce request, from send to answer. */
  requestTimeoutMs?: number;
  /**
   * Called each time a batch is to be sent again after a retriable failure (STORAGE_FULL,
   * a lost connection...), so a caller can tell that delivery is waiting; Kafka's producer
   * logs these as warnings.
   */
  onRetry?: (err: TributaryError, topic: string, partition: number) => void;
  /**
   * Where lingering, backoffs, maxBlockMs and deliveryTimeoutMs are timed, and a record's
   * default timestamp read; default the client's clock.
   */
  clock?: Clock;
}

/** varints, attributes and deltas around a record's key, value and headers. */
const RECORD_OVERHEAD_BYTES = 24;

interface TopicState {
  partitionCount: number;
  loading: boolean;
  readonly sticky: StickyPartitioner;
  readonly queues: PartitionQueue[];
}

interface Admission {
  readonly topic: string;
  readonly messages: readonly ProducerMessage[];
  next: number;
  readonly group: SendGroup;
  readonly timestamp: number;
  /** The clock's monotonic time past which the send fails (maxBlockMs). */
  readonly deadline: number;
  waitingFor: 'space' | 'metadata' | null;
  onAdmitted: (() => void)[] | null;
}

export class Producer {
  private readonly batchBytes: number;
  private readonly lingerMs: number;
  private readonly bufferBytesMax: number;
  private readonly maxBlockMs: number;
  private readonly admissionQueueMax: number;
  private readonly deliveryTimeoutMs: number;
  private readonly sender: Sender;
  private readonly clock: Clock;

  private readonly topics = new Map<string, TopicState>();
  private readonly admissions: Admission[] = [];
  private admissionHead = 0;
  /** One timer for the whole queue, due at the head's deadline; see armBlockTimer(). */
  private blockTimer: ClockTimer | null = null;
  private blockTimerAt = Infinity;
  private bufferedBytesNow = 0;
  private readonly withOpenBatch = new OpenQueues();
  private lingerTimer: ClockTimer | null = null;
  /** With lingerMs 0: a microtask will send the open batches. */
  private lingerQueued = false;
  private closed = false;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly client: Client,
    options: ProducerOptions = {},
    private readonly ownsClient = false,
  ) {
    const acks = options.acks === 'all' ? -1 : (options.acks ?? 1);
    if (acks !== 0 && acks !== 1 && acks !== -1) {
      throw new TributaryError(Errors.INVALID_REQUIRED_ACKS, `acks must be 0, 1, -1 or 'all', got ${String(options.acks)}`);
    }
    const idempotent = idempotence(options.idempotent, acks);
    const maxInFlightPerPartition = positiveInteger('maxInFlightPerPartition', options.maxInFlightPerPartition, idempotent ? IDEMPOTENT_IN_FLIGHT_MAX : 1);
    if (idempotent && maxInFlightPerPartition > IDEMPOTENT_IN_FLIGHT_MAX) {
      throw new TributaryError(
        Errors.INVALID_CONFIG,
        `maxInFlightPerPartition must be at most ${IDEMPOTENT_IN_FLIGHT_MAX} for an idempotent producer (the node remembers ${IDEMPOTENT_IN_FLIGHT_MAX} batches per producer and partition), got ${maxInFlightPerPartition}`,
      );
    }
    const compression = options.compression ?? 'none';
    if (compression !== 'none' && compression !== 'gzip') {
      throw new TributaryError(Errors.INVALID_CONFIG, `compression must be 'none' or 'gzip', got ${String(compression)}`);
    }
    this.batchBytes = positive('batchBytes', options.batchBytes, 256 * 1024);
    this.lingerMs = nonNegative('lingerMs', options.lingerMs, 5);
    this.bufferBytesMax = positive('bufferBytesMax', options.bufferBytesMax, 32 * 1024 * 1024);
    this.maxBlockMs = nonNegative('maxBlockMs', options.maxBlockMs, 60_000);
    this.admissionQueueMax = positiveInteger('admissionQueueMax', options.admissionQueueMax, 100_000);
    this.deliveryTimeoutMs = positive('deliveryTimeoutMs', options.deliveryTimeoutMs, 120_000);
    this.clock = options.clock ?? client.clock;
    const config: SenderConfig = {
      acks,
      idempotent,
      maxInFlightPerPartition,
      compression: compression === 'gzip' ? Compression.Gzip : Compression.None,
      // Idempotent, a resend cannot duplicate, so time (deliveryTimeoutMs) bounds retrying, not a count.
      retries: options.retries === Infinity ? Infinity : nonNegative('retries', options.retries, idempotent ? Infinity : 5),
      retryBackoffMs: nonNegative('retryBackoffMs', options.retryBackoffMs, 100),
      retryBackoffMaxMs: nonNegative('retryBackoffMaxMs', options.retryBackoffMaxMs, 2000),
      deliveryTimeoutMs: this.deliveryTimeoutMs,
      requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs, 30_000),
      clock: this.clock,
      onRetry: options.onRetry,
    };
    this.sender = new Sender(client, config, {
      queues: () => this.queues(),
      batchDone: (b) => this.batchDone(b),
      fenced: (err) => this.fence(err),
    });
  }

  /** Bytes of records held now, from admission until their answer. */
  get bufferedBytes(): number {
    return this.bufferedBytesNow;
  }

  /** Sends waiting for admission now (at most admissionQueueMax). */
  get queuedSends(): number {
    return this.admissions.length - this.admissionHead;
  }

  /** Sends one record; resolves once the node has it (per acks) with its partition and offset. */
  send(topic: string, message: ProducerMessage): Promise<RecordMetadata> {
    return new Promise<RecordMetadata>((resolve, reject) => {
      this.enqueue(topic, [message], (results) => resolve(results[0]), reject);
    });
  }

  /**
   * Sends records in order with one promise for all, resolving with each record's metadata
   * in input order. If it rejects, records before the failure may still have been written.
   */
  sendBatch(topic: string, messages: readonly ProducerMessage[]): Promise<RecordMetadata[]> {
    if (messages.length === 0) return Promise.resolve([]);
    return new Promise<RecordMetadata[]>((resolve, reject) => {
      this.enqueue(topic, messages, resolve, reject);
    });
  }

  /**
   * Kafka's send(record, callback) for many records: sends them in order and calls
   * `onRecord` once for each, with its metadata or its error, as its batch is answered, so a
   * record written after another of the call failed is still told. No promise per record:
   * the way to stream a great many (the command line's produce). Wait with whenWritable().
   */
  sendEach(topic: string, messages: readonly ProducerMessage[], onRecord: (index: number, result: RecordMetadata | null, err: Error | null) => void): void {
    if (messages.length === 0) return;
    this.enqueueGroup(topic, messages, new EachRecordGroup(messages.length, onRecord));
  }

  /**
   * Resolves when every send made so far has entered the buffer: the place for a caller
   * that streams input to wait, so its own memory stays bounded by the producer's.
   */
  whenWritable(): Promise<void> {
    const last = this.lastPendingAdmission();
    if (last === null) return Promise.resolve();
    return new Promise<void>((resolve) => (last.onAdmitted ??= []).push(resolve));
  }

  /** Sends everything now; resolves when every record sent before the call is answered. */
  async flush(): Promise<void> {
    await this.whenWritable();
    this.sealAll();
    this.sender.drain();
    const waits: Promise<void>[] = [];
    for (const q of this.queues()) {
      for (const b of q.ready) waits.push(new Promise<void>((resolve) => (b.onDone ??= []).push(resolve)));
    }
    await Promise.all(waits);
  }

  /** Flushes, then refuses further sends; closes the client if this producer made it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      await this.flush();
      this.lingerTimer?.cancel();
      this.lingerTimer = null;
      this.sender.stopTimers();
      if (this.ownsClient) await this.client.close();
    })();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------
  // Admission.

  private enqueue(
    topic: string,
    messages: readonly ProducerMessage[],
    resolve: (results: RecordMetadata[]) => void,
    reject: (err: Error) => void,
  ): void {
    this.enqueueGroup(topic, messages, new SendGroup(messages.length, resolve, reject));
  }

  private enqueueGroup(topic: string, messages: readonly ProducerMessage[], group: SendGroup): void {
    if (this.closed) return group.fail(clientClosed('producer'));
    if (this.sender.fenced !== null) return group.fail(this.sender.fenced);
    if (this.queuedSends >= this.admissionQueueMax) {
      // Past the bound a send fails at once rather than waiting: the caller is expected to
      // await its sends or whenWritable(), and one that does not must not exhaust memory.
      return group.fail(new TributaryError(Errors.BUFFER_FULL, `${this.queuedSends} sends are waiting for room in the producer buffer (admissionQueueMax ${this.admissionQueueMax})`));
    }
    const entry: Admission = { topic, messages, next: 0, group, timestamp: this.clock.now(), deadline: this.clock.monotonic() + this.maxBlockMs, waitingFor: null, onAdmitted: null };
    this.admissions.push(entry);
    this.admit();
  }

  private isFinished(entry: Admission): boolean {
    return entry.group.settled || entry.next >= entry.messages.length;
  }

  private lastPendingAdmission(): Admission | null {
    for (let i = this.admissions.length - 1; i >= this.admissionHead; i--) {
      const e = this.admissions[i];
      if (e !== undefined && !this.isFinished(e)) return e;
    }
    return null;
  }

  /**
   * Kafka's max.block.ms: a waiting caller is told, rather than held without limit.
   * Admission is first-in first-out and deadlines are set on entry, so the head always has
   * the earliest: one timer, due at the head's deadline, serves the whole queue.
   */
  private armBlockTimer(): void {
    if (this.admissionHead >= this.admissions.length) {
      this.blockTimer?.cancel();
      this.blockTimer = null;
      this.blockTimerAt = Infinity;
      return;
    }
    const deadline = this.admissions[this.admissionHead].deadline;
    // A timer due earlier than the head's deadline (set for an entry since admitted) finds
    // nothing due when it fires and arms itself again.
    if (this.blockTimer !== null && this.blockTimerAt <= deadline) return;
    this.blockTimer?.cancel();
    this.blockTimerAt = deadline;
    this.blockTimer = this.clock.setTimeout(() => this.blockedTooLong(), deadline - this.clock.monotonic());
  }

  /** Fails every waiting send whose deadline has passed: a prefix of the queue. */
  private blockedTooLong(): void {
    this.blockTimer = null;
    this.blockTimerAt = Infinity;
    const now = this.clock.monotonic();
    const head = this.admissions[this.admissionHead];
    // What holds the head holds everything behind it.
    const metadata = head?.waitingFor === 'metadata';
    for (let i = this.admissionHead; i < this.admissions.length; i++) {
      const entry = this.admissions[i];
      if (entry.deadline > now) break;
      if (this.isFinished(entry)) continue;
      entry.group.failFrom(
        entry.next,
        metadata
          ? new TributaryError(Errors.REQUEST_TIMED_OUT, `no metadata for topic '${head.topic}' within maxBlockMs ${this.maxBlockMs}`)
          : new TributaryError(Errors.BUFFER_FULL, `no room in the producer buffer (bufferBytesMax ${this.bufferBytesMax}) within maxBlockMs ${this.maxBlockMs}`),
      );
    }
    this.admit();
  }

  /** Moves waiting sends into batches, in order, while metadata and buffer space allow. */
  private admit(): void {
    while (this.admissionHead < this.admissions.length) {
      const entry = this.admissions[this.admissionHead];
      if (!this.isFinished(entry)) {
        const topic = this.topicState(entry.topic);
        if (topic.partitionCount === 0) {
          entry.waitingFor = 'metadata';
          this.loadMetadata(entry.topic, topic);
          this.armBlockTimer();
          return;
        }
        if (!this.admitFrom(entry, topic)) {
          this.armBlockTimer();
          return;
        }
      }
      this.finishAdmission(entry);
      this.admissions[this.admissionHead++] = undefined as unknown as Admission;
      // Compact now and then, so a queue that never empties does not keep its dead prefix.
      if (this.admissionHead >= 1024 && this.admissionHead * 2 >= this.admissions.length) {
        this.admissions.splice(0, this.admissionHead);
        this.admissionHead = 0;
      }
    }
    this.admissions.length = 0;
    this.admissionHead = 0;
    this.armBlockTimer();
  }

  private finishAdmission(entry: Admission): void {
    entry.waitingFor = null;
    const waiters = entry.onAdmitted;
    entry.onAdmitted = null;
    if (waiters) for (const w of waiters) w();
  }

  /** Appends the entry's records; false when it must wait for buffer space. */
  private admitFrom(entry: Admission, topic: TopicState): boolean {
    const { messages, group } = entry;
    const count = topic.partitionCount;
    while (entry.next < messages.length) {
      const m = messages[entry.next];
      let record: BatchRecord;
      let size: number;
      let partition: number;
      try {
        record = toRecord(m, entry.timestamp);
        size = recordBytes(record);
        partition = this.explicitPartition(m, entry.topic, count);
      } catch (err) {
        group.failFrom(entry.next, err as Error);
        return true;
      }
      if (size > this.bufferBytesMax) {
        group.failFrom(entry.next, new TributaryError(Errors.BUFFER_FULL, `record of ${size} bytes is larger than bufferBytesMax ${this.bufferBytesMax}`));
        return true;
      }
      if (this.bufferedBytesNow + size > this.bufferBytesMax) {
        entry.waitingFor = 'space';
        // Free space as fast as possible: send what lingers instead of waiting for it.
        this.sealAll();
        this.sender.scheduleDrain();
        return false;
      }
      if (partition < 0) {
        partition = record.key != null ? partitionForKey(record.key, count) : this.stickyPartition(topic, size);
      }
      this.append(this.partitionQueue(entry.topic, topic, partition), record, size, group, entry.next);
      entry.next++;
    }
    return true;
  }

  private explicitPartition(m: ProducerMessage, topic: string, count: number): number {
    const p = m.partition;
    if (p === undefined) return -1;
    if (!Number.isInteger(p) || p < 0 || p >= count) {
      throw new TributaryError(Errors.UNKNOWN_TOPIC, `partition ${String(p)} of topic '${topic}' does not exist (it has ${count})`);
    }
    return p;
  }

  /**
   * KIP-480: keyless records stick to one partition until its batch is complete, then move
   * on, so they form full batches instead of one small batch per partition.
   */
  private stickyPartition(topic: TopicState, size: number): number {
    const count = topic.partitionCount;
    const p = topic.sticky.partition(count);
    const open = topic.queues[p]?.open ?? null;
    if (open !== null && open.bytes + size <= this.batchBytes) return p;
    topic.sticky.onNewBatch();
    return topic.sticky.partition(count);
  }

  private append(q: PartitionQueue, record: BatchRecord, size: number, group: SendGroup, slot: number): void {
    let b = q.open;
    if (b !== null && b.bytes + size > this.batchBytes) {
      this.seal(q);
      b = null;
    }
    if (b === null) {
      b = q.open = new Batch(q, this.clock.monotonic() + this.deliveryTimeoutMs);
      this.withOpenBatch.add(q);
      this.armLinger();
    }
    b.records.push(record);
    b.groups.push(group);
    b.slots.push(slot);
    b.count++;
    b.bytes += size;
    this.bufferedBytesNow += size;
    if (b.bytes >= this.batchBytes) this.seal(q);
  }

  private seal(q: PartitionQueue): void {
    const b = q.open;
    if (b === null) return;
    q.open = null;
    this.withOpenBatch.delete(q);
    q.ready.push(b);
    this.sender.ready(q);
  }

  private sealAll(): void {
    this.withOpenBatch.forEach((q) => this.seal(q));
  }

  private armLinger(): void {
    if (this.lingerTimer !== null || this.lingerQueued) return;
    if (this.lingerMs === 0) {
      // No timer: the batches go once the code that called send() has run (so the records
      // of one synchronous loop still share batches). A timer, even of 0 ms, waits for the
      // event loop's timer phase, which a busy process reaches late: a device client with
      // thousands of sockets ready at once runs it seconds late.
      this.lingerQueued = true;
      soon(() => {
        this.lingerQueued = false;
        if (this.closed && this.withOpenBatch.size === 0) return;
        this.sealAll();
        this.sender.drain();
      });
      return;
    }
    this.lingerTimer = this.clock.setTimeout(() => {
      this.lingerTimer = null;
      this.sealAll();
      this.sender.drain();
    }, this.lingerMs);
  }

  private topicState(name: string): TopicState {
    let t = this.topics.get(name);
    if (t === undefined) {
      t = { partitionCount: 0, loading: false, sticky: new StickyPartitioner(), queues: [] };
      this.topics.set(name, t);
    }
    return t;
  }

  private partitionQueue(topicName: string, topic: TopicState, partition: number): PartitionQueue {
    let q = topic.queues[partition];
    if (q === undefined) q = topic.queues[partition] = new PartitionQueue(topicName, partition);
    return q;
  }

  /** Fetches the partition count once; sends for the topic wait for it in order. */
  private loadMetadata(name: string, topic: TopicState): void {
    if (topic.loading) return;
    topic.loading = true;
    this.client.request(Kind.Metadata, { topics: [name] }, { timeoutMs: this.maxBlockMs }).then(
      (response) => {
        topic.loading = false;
        const meta = answerOf(response.topics, 0, name);
        if (meta === undefined) return this.metadataFailed(name, new TributaryError(Errors.UNKNOWN_TOPIC, `topic '${name}' does not exist`));
        if (meta.error !== Errors.NONE.code) return this.metadataFailed(name, wireError(meta.error, meta.message ?? `topic '${name}'`));
        if (meta.partitions.length === 0) return this.metadataFailed(name, new TributaryError(Errors.UNKNOWN_TOPIC, `topic '${name}' has no partitions`));
        topic.partitionCount = meta.partitions.length;
        this.admit();
      },
      (err: unknown) => {
        topic.loading = false;
        this.metadataFailed(name, err as Error);
      },
    );
  }

  /** Fails every waiting send for the topic; the next send asks again. */
  private metadataFailed(name: string, err: Error): void {
    const topic = this.topics.get(name);
    if (topic !== undefined && topic.partitionCount === 0) this.topics.delete(name);
    for (let i = this.admissionHead; i < this.admissions.length; i++) {
      const e = this.admissions[i];
      if (e !== undefined && e.topic === name && !this.isFinished(e)) {
        e.group.failFrom(e.next, err);
        this.finishAdmission(e);
      }
    }
    this.admit();
  }

  // -------------------------------------------------------------------------------------
  // What the sender asks of the producer.

  private *queues(): Generator<PartitionQueue> {
    for (const topic of this.topics.values()) {
      for (const q of topic.queues) if (q !== undefined) yield q;
    }
  }

  private batchDone(b: Batch): void {
    this.bufferedBytesNow -= b.bytes;
    this.admit();
  }

  /** Fenced: every send waiting for admission fails, and open batches go to the sender to fail. */
  private fence(err: TributaryError): void {
    for (let i = this.admissionHead; i < this.admissions.length; i++) {
      const e = this.admissions[i];
      if (e !== undefined && !this.isFinished(e)) {
        e.group.failFrom(e.next, err);
        this.finishAdmission(e);
      }
    }
    for (const q of this.queues()) this.seal(q);
  }
}

const NO_HEADERS: Header[] = [];
const CBOR_VALUE_HEADERS: Header[] = [cborHeader(CONTENT_TYPE)];

/** The record as encodeBatch takes it; the one object made per record on the send path. */
function toRecord(m: ProducerMessage, timestamp: number): BatchRecord {
  if (m === null || typeof m !== 'object') {
    throw new TributaryError(Errors.INVALID_REQUEST, 'a message must be an object { key?, value, headers?, partition?, timestamp? }');
  }
  const value = m.value;
  const key = m.key;
  let headers = m.headers === undefined ? NO_HEADERS : toHeaders(m.headers);
  if (isCborPayload(value)) headers = headers === NO_HEADERS ? CBOR_VALUE_HEADERS : [...headers, cborHeader(CONTENT_TYPE)];
  if (isCborPayload(key)) headers = [...headers, cborHeader(KEY_CONTENT_TYPE)];
  const ts = m.timestamp ?? timestamp;
  if (!Number.isSafeInteger(ts) || ts < 0) throw new TributaryError(Errors.INVALID_REQUEST, `timestamp must be ms since the epoch, got ${String(ts)}`);
  return { key: payloadBytes(key), value: payloadBytes(value), timestamp: ts, headers };
}

function recordBytes(r: BatchRecord): number {
  let size = RECORD_OVERHEAD_BYTES + (r.value === null ? 0 : r.value.length) + (r.key == null ? 0 : r.key.length);
  const headers = r.headers;
  if (headers !== undefined) {
    for (let i = 0; i < headers.length; i++) size += headers[i][0].length + (headers[i][1]?.length ?? 0) + 4;
  }
  return size;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new TributaryError(Errors.INVALID_CONFIG, `${name} must be a positive number, got ${String(value)}`);
  return value;
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) throw new TributaryError(Errors.INVALID_CONFIG, `${name} must be a positive integer, got ${String(value)}`);
  return value;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) throw new TributaryError(Errors.INVALID_CONFIG, `${name} must be zero or more, got ${String(value)}`);
  return value;
}

/** Idempotence is on unless turned off, and cannot be with acks = 0 (nothing is answered). */
function idempotence(option: boolean | undefined, acks: Acks): boolean {
  if (option !== undefined && typeof option !== 'boolean') throw new TributaryError(Errors.INVALID_CONFIG, `idempotent must be true or false, got ${String(option)}`);
  if (option === true && acks === 0) {
    throw new TributaryError(Errors.INVALID_CONFIG, 'idempotent needs acks 1 or all: with acks 0 nothing is answered, so nothing can be deduplicated');
  }
  return option !== false && acks !== 0;
}
