// How a read of a partition is cut, as Kafka cuts a Fetch: the rules a node applies to
// every Fetch, push and replica fetch, kept here so that whatever else answers fetches (the
// SDK's FakeNode, a later peer) cuts its answers as the node does. Pure: offsets and sizes
// in, offsets and sizes out; where the batches are kept (segment files, arrays) is the
// caller's.
//
// The rules:
// - A fetch offset must lie in the log, [log start offset, log end offset]; anything else
//   is OFFSET_OUT_OF_RANGE (the log end itself is in range: nothing to read yet).
// - An answer is whole stored batches, from the one holding the fetch offset on, as they
//   are stored (a batch's first offsets may lie below the fetch offset; the client skips
//   them). KIP-74: the first batch goes whole whatever maxBytes says, so that a batch
//   larger than maxBytes cannot stall its consumer; after it, batches while the total
//   stays within maxBytes.
// - KIP-74 for a request of several partitions: they are read in order from one budget of
//   the request's maxBytes, each within its own maxBytes too; the first that has data gets
//   at least one batch, and once the budget is spent the rest are skipped.
// - ListOffsets by time (Kafka's): the first record whose timestamp is at or after the time
//   asked, in offset order (not the smallest timestamp above it).

import { Errors, TributaryError } from './errors.js';
import { lastOffsetOf } from './record-batch.js';

/** True when a fetch may start at `fetchOffset` (false: OFFSET_OUT_OF_RANGE). */
export function isFetchOffsetInLog(fetchOffset: number, logStartOffset: number, logEndOffset: number): boolean {
  return Number.isSafeInteger(fetchOffset) && fetchOffset >= logStartOffset && fetchOffset <= logEndOffset;
}

/** The refusal of a fetch at `fetchOffset` outside the log of partition `label`. */
export function offsetOutOfRange(label: string, fetchOffset: number, logStartOffset: number, logEndOffset: number): TributaryError {
  return new TributaryError(Errors.OFFSET_OUT_OF_RANGE, `${label}: offset ${fetchOffset} is outside the log [${logStartOffset}, ${logEndOffset}]`);
}

/**
 * KIP-74: the bytes of whole batches a read may return when its first batch is
 * `firstBatchBytes` long: that batch whatever `maxBytes` says, else `maxBytes`.
 */
export function readBytesMax(firstBatchBytes: number, maxBytes: number): number {
  return Math.max(firstBatchBytes, maxBytes);
}

/**
 * KIP-74 across the partitions of one answer: what the next partition may read, given its
 * own maxBytes, the answer's and the bytes the partitions before it took. 0: skip it (the
 * budget is spent and an earlier partition had data); otherwise at least 1, so that the
 * first partition with data gets its first batch.
 */
export function partitionReadBytesMax(partitionMaxBytes: number, answerBytesMax: number, answerBytes: number): number {
  const room = Math.min(partitionMaxBytes, answerBytesMax - answerBytes);
  if (room <= 0 && answerBytes > 0) return 0;
  return Math.max(room, 1);
}

/**
 * The batches of a read from `batches` (a partition's stored batches, offsets increasing,
 * base offsets patched): indexes [start, end) of whole batches from the one holding
 * `fetchOffset`, cut by readBytesMax, none whose last offset is at or above `maxOffset`
 * (the high watermark). start === end: nothing to read.
 */
export function selectFetchBatches(batches: readonly Buffer[], fetchOffset: number, maxBytes: number, maxOffset: number): { start: number; end: number } {
  let start = 0;
  while (start < batches.length && lastOffsetOf(batches[start]) < fetchOffset) start++;
  if (start === batches.length) return { start, end: start };
  const bytesMax = readBytesMax(batches[start].length, maxBytes);
  let end = start;
  let bytes = 0;
  while (end < batches.length && bytes + batches[end].length <= bytesMax && lastOffsetOf(batches[end]) < maxOffset) {
    bytes += batches[end].length;
    end++;
  }
  return { start, end };
}

/** ListOffsets by time within a batch's records: the first at or after `timestampMs`. */
export function firstRecordAtOrAfter<R extends { timestamp: number }>(records: readonly R[], timestampMs: number): R | undefined {
  for (const record of records) if (record.timestamp >= timestampMs) return record;
  return undefined;
}
