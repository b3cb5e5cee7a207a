// The idempotent producer's sequence rule (Kafka's ProducerStateEntry and its checks), per
// producer id and partition: what a leader keeps of a producer (its epoch and its last 5
// batches) and what it answers a batch with. The node's partition logs apply it
// (node/storage/producer-state.ts, which also snapshots it), and so does the SDK's FakeNode,
// so that the two never disagree on what a producer sees:
//   - a batch resent after a lost answer is recognised (same first and last sequence as
//     one of the last 5) and answered with where it was written, not appended twice;
//   - a batch whose first sequence is not the next one expected is refused
//     OUT_OF_ORDER_SEQUENCE: an earlier one is missing, and appending would reorder;
//   - a producer (or a new epoch of it) starts at sequence 0;
//   - a batch from an older epoch of the same producer id is refused INVALID_PRODUCER_EPOCH.

import { Errors, TributaryError } from './errors.js';
import { nextSequence } from './record-batch.js';

/** Batches remembered per producer and partition, as Kafka (and its producers' in-flight limit). */
export const PRODUCER_BATCHES_KEPT = 5;

/** What an idempotent batch says about itself (from its RecordBatch header). */
export interface ProducerBatchHeader {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  /** Records in the batch: its sequences are baseSequence .. baseSequence + count - 1. */
  recordCount: number;
}

/** One appended batch of a producer, as its partition remembers it. */
export interface ProducerBatch {
  firstSeq: number;
  lastSeq: number;
  firstOffset: number;
  lastOffset: number;
}

/** What a partition keeps of one producer id. */
export interface ProducerSequences {
  epoch: number;
  /** Oldest first, at most PRODUCER_BATCHES_KEPT. */
  batches: ProducerBatch[];
}

/**
 * Checks an idempotent batch before it is appended, against what the partition `held` of
 * its producer (undefined: nothing). Returns the earlier batch when this one is a resend of
 * it; null when it may be appended; throws the refusal otherwise, its message starting
 * with `label` (the partition).
 */
export function checkSequence(held: ProducerSequences | undefined, header: ProducerBatchHeader, label: string): ProducerBatch | null {
  const { producerId, producerEpoch, baseSequence, recordCount } = header;
  if (baseSequence < 0 || producerEpoch < 0) {
    throw new TributaryError(Errors.INVALID_REQUEST, `${label}: producer ${producerId} sent sequence ${baseSequence} epoch ${producerEpoch}`);
  }
  if (held === undefined || producerEpoch > held.epoch) {
    // A producer (or a new epoch of it) starts its sequences at 0: anything else means
    // batches before this one never arrived.
    if (baseSequence !== 0) throw outOfOrder(label, producerId, baseSequence, 0);
    return null;
  }
  if (producerEpoch < held.epoch) {
    throw new TributaryError(Errors.INVALID_PRODUCER_EPOCH, `${label}: producer ${producerId} epoch ${producerEpoch} is older than ${held.epoch}`);
  }
  const lastSeq = nextSequence(baseSequence, recordCount - 1);
  for (const batch of held.batches) {
    if (batch.firstSeq === baseSequence && batch.lastSeq === lastSeq) return batch;
  }
  const last = held.batches[held.batches.length - 1];
  const expected = last === undefined ? 0 : nextSequence(last.lastSeq);
  if (baseSequence !== expected) throw outOfOrder(label, producerId, baseSequence, expected);
  return null;
}

function outOfOrder(label: string, producerId: number, got: number, expected: number): TributaryError {
  return new TributaryError(Errors.OUT_OF_ORDER_SEQUENCE, `${label}: producer ${producerId} sent sequence ${got}, expected ${expected}`);
}

/**
 * Remembers a batch appended at `firstOffset` in `held`, which must be at the batch's
 * epoch: the oldest of PRODUCER_BATCHES_KEPT goes.
 */
export function rememberBatch(held: ProducerSequences, header: ProducerBatchHeader, firstOffset: number): void {
  const { baseSequence, recordCount } = header;
  const lastSeq = nextSequence(baseSequence, recordCount - 1);
  const lastOffset = firstOffset + recordCount - 1;
  if (held.batches.length < PRODUCER_BATCHES_KEPT) {
    held.batches.push({ firstSeq: baseSequence, lastSeq, firstOffset, lastOffset });
    return;
  }
  // The oldest record is reused for the newest: a producer appends a batch a second, so a
  // new object each time lived five seconds, long enough to be promoted and left for a
  // full GC. (checkSequence hands records out, but every caller reads them at once.)
  const reused = held.batches.shift() as ProducerBatch;
  reused.firstSeq = baseSequence;
  reused.lastSeq = lastSeq;
  reused.firstOffset = firstOffset;
  reused.lastOffset = lastOffset;
  held.batches.push(reused);
}
