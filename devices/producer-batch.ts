// What the producer holds between send() and the answer, shared by admission (producer.ts)
// and sending (sender.ts): a call's group of records, a batch of one partition, and a
// partition's queue of sealed batches with its idempotence state.

import type { ClockTimer } from '../protocol/clock.js';
import type { Record as BatchRecord } from '../protocol/record-batch.js';

/** Where a sent record was written: what send() resolves with. */
export interface RecordMetadata {
  topic: string;
  partition: number;
  /** -1 with acks = 0: nothing was answered. */
  offset: number;
}

/** One call's worth of sends: a single send() or a whole sendBatch(), settled as one. */
export class SendGroup {
  remaining: number;
  /** No more of its records are admitted, and (for a send or sendBatch) its promise is settled. */
  settled = false;
  readonly results: RecordMetadata[];
  constructor(
    readonly size: number,
    private readonly onResolve: (results: RecordMetadata[]) => void,
    private readonly onReject: (err: Error) => void,
  ) {
    this.remaining = size;
    this.results = new Array<RecordMetadata>(size);
  }
  recordDone(slot: number, topic: string, partition: number, offset: number): void {
    if (this.settled) return;
    this.results[slot] = { topic, partition, offset };
    if (--this.remaining === 0) {
      this.settled = true;
      this.onResolve(this.results);
    }
  }
  /** The batch holding record `slot` failed. */
  recordFailed(_slot: number, err: Error): void {
    this.fail(err);
  }
  /** Records from `slot` on will not be sent (admission stopped at it); those before are in batches. */
  failFrom(_slot: number, err: Error): void {
    this.fail(err);
  }
  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.onReject(err);
  }
}

/**
 * sendEach(): every record's outcome told on its own, as Kafka's send(record, callback), with
 * no promise per record: a record acknowledged after another of the call failed is still told.
 */
export class EachRecordGroup extends SendGroup {
  constructor(
    size: number,
    private readonly onRecord: (index: number, result: RecordMetadata | null, err: Error | null) => void,
  ) {
    super(size, () => {}, () => {});
  }
  override recordDone(slot: number, topic: string, partition: number, offset: number): void {
    this.onRecord(slot, { topic, partition, offset }, null);
  }
  override recordFailed(slot: number, err: Error): void {
    this.onRecord(slot, null, err);
  }
  override failFrom(slot: number, err: Error): void {
    if (this.settled) return;
    this.settled = true;
    for (let i = slot; i < this.size; i++) this.onRecord(i, null, err);
  }
  override fail(err: Error): void {
    this.failFrom(0, err);
  }
}

export class Batch {
  records: BatchRecord[] = [];
  /** Parallel to records: who waits for each, and at which slot of their group. */
  groups: SendGroup[] = [];
  slots: number[] = [];
  count = 0;
  bytes = 0;
  /** Encoded once, when first drained; resends send these bytes (restamped only after a gap). */
  encoded: Buffer | null = null;
  /** Failed attempts that were retried, counted against `retries`. */
  attempts = 0;
  /** What the last failed attempt ended with: what the batch fails with when out of time. */
  lastError: Error | null = null;
  /** The producer's clock's monotonic time before which the batch is not sent again (backoff). */
  retryAt = 0;
  /** When its last attempt went out, in the producer's count of sends; 0 before the first. */
  sentAt = 0;
  onWire = false;
  /** Nothing before it in the partition was unacknowledged when it was last sent. */
  sentAsHead = false;
  /** An attempt ended without an answer that says: the node may have the batch. */
  maybeAppended = false;
  /** A later batch under the same producer id was acknowledged, so the node has this one. */
  knownAppended = false;
  /** A batch before it left unacknowledged: the node may wait for sequences that never come. */
  afterGap = false;
  /** What is stamped in `encoded`: -1 until the first send of an idempotent batch. */
  producerId = -1;
  producerEpoch = -1;
  baseSequence = -1;
  /** Its place among the batches its partition stamped under that producer id. */
  stampIndex = -1;
  onDone: (() => void)[] | null = null;
  constructor(
    readonly queue: PartitionQueue,
    /** The producer's clock's monotonic time past which the batch is not sent again (deliveryTimeoutMs). */
    readonly deadline: number,
  ) {}
}

export class PartitionQueue {
  open: Batch | null = null;
  /** Sealed, unacknowledged batches in order (sequence order); any of them may be on the wire. */
  readonly ready: Batch[] = [];
  /** Batches of `ready` on the wire now (at most maxInFlightPerPartition). */
  onWire = 0;
  retryTimer: ClockTimer | null = null;
  retryTimerAt = Infinity;
  /** The producer id this partition's batches are stamped with (-1: none yet) and the next sequence. */
  producerId = -1;
  producerEpoch = -1;
  nextSequence = 0;
  /** Batches stamped under that producer id so far. */
  stamped = 0;
  /** A batch left unacknowledged and nothing stamped after it remains: the next one stamped is `afterGap`. */
  gapAhead = false;
  /** Waiting for its batches on the wire to land, to start again under a new producer id. */
  resetting = false;
  /** Where it stands in its producer's OpenQueues; -1 when it has no open batch. */
  openAt = -1;
  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}
}

/**
 * The partition queues that have an open batch, in the order they opened one: a Set would
 * do, but V8 reallocates a Set's table as entries come and go, and a device's producer adds
 * and removes its one queue at every send. That table then lived until the next send, a
 * second later: long enough to be promoted, and left for a full GC. This reuses one array.
 */
export class OpenQueues {
  private readonly items: (PartitionQueue | null)[] = [];
  /** Slots in use (some may be null, removed), and the queues listed. */
  private end = 0;
  private count = 0;
  private iterating = false;

  get size(): number {
    return this.count;
  }

  add(q: PartitionQueue): void {
    if (q.openAt >= 0) return;
    // Queues that closed their batch leave holes while others stay open: close them up
    // before the array would grow past twice what is listed.
    if (this.end === this.items.length && this.count * 2 < this.end && !this.iterating) this.compact();
    if (this.end === this.items.length) this.items.push(null);
    q.openAt = this.end;
    this.items[this.end++] = q;
    this.count++;
  }

  delete(q: PartitionQueue): void {
    const at = q.openAt;
    if (at < 0) return;
    this.items[at] = null;
    q.openAt = -1;
    this.count--;
    if (this.count === 0 && !this.iterating) this.end = 0;
  }

  /** Calls `fn` on each queue listed, oldest first; `fn` may remove it (or add others, also visited). */
  forEach(fn: (q: PartitionQueue) => void): void {
    const outer = this.iterating;
    this.iterating = true;
    try {
      for (let i = 0; i < this.end; i++) {
        const q = this.items[i];
        if (q !== null && q.openAt === i) fn(q);
      }
    } finally {
      this.iterating = outer;
      if (!outer && this.count === 0) this.end = 0;
    }
  }

  /** Array slots in use, listed or not: what `add` reuses instead of growing. */
  get slots(): number {
    return this.end;
  }

  private compact(): void {
    let to = 0;
    for (let i = 0; i < this.end; i++) {
      const q = this.items[i];
      if (q === null) continue;
      q.openAt = to;
      this.items[to++] = q;
    }
    for (let i = to; i < this.end; i++) this.items[i] = null;
    this.end = to;
  }
}
