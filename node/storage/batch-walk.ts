// Walking a segment file batch header by batch header, the "short scan" after an index
// lookup. Only headers are looked at (no CRC, no records); what is checked is what a wrong
// step would break: the length stays inside the file, the magic is 2, and base offsets
// increase (contiguous until the log cleaner removes batches of a compacted topic). The
// base offset and length lie outside the CRC, so this walk is the only guard against a
// flipped bit there sending the walk into the middle of a batch.

import { Errors, TributaryError } from '../../protocol/errors.js';
import {
  BATCH_OVERHEAD,
  LOG_OVERHEAD,
  MAGIC,
  OFFSET_LAST_OFFSET_DELTA,
  OFFSET_LENGTH,
  OFFSET_MAGIC,
  OFFSET_MAX_TIMESTAMP,
  readInt64,
} from '../../protocol/record-batch.js';
import { readFully } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { chargeScan } from './request-budget.js';
import type { RequestBudget } from './request-budget.js';

export interface BatchRef {
  position: number;
  sizeBytes: number;
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
}

// Headers are read through one reused window: a walk across many small batches costs one
// read per window, not one per batch. 8 KiB covers a typical walk (at most ~one
// index.interval.bytes past the index entry) without copying much more than it needs.
// Safe to share because walks are synchronous and never nest.
const WINDOW_BYTES = 8 * 1024;
const window = Buffer.allocUnsafe(WINDOW_BYTES);

const INT32_MAX = 0x7fffffff;

function corrupt(detail: string): TributaryError {
  return new TributaryError(Errors.CORRUPT_BATCH, detail);
}

/**
 * Checks and reads the header of the batch at `at` in `buf` (file position `position`),
 * which must start at `expectedOffset` and end by `end`. Throws CORRUPT_BATCH otherwise.
 */
export function headerAt(buf: Buffer, at: number, position: number, expectedOffset: number, end: number): BatchRef {
  const sizeBytes = LOG_OVERHEAD + buf.readInt32BE(at + OFFSET_LENGTH);
  if (sizeBytes < BATCH_OVERHEAD || position + sizeBytes > end) {
    throw corrupt(`batch at position ${position} declares ${sizeBytes} bytes, ${end - position} remain in the segment`);
  }
  const magic = buf.readInt8(at + OFFSET_MAGIC);
  if (magic !== MAGIC) throw corrupt(`batch at position ${position} has magic ${magic}`);
  const baseOffset = readInt64(buf, at);
  // Offsets only grow; the log cleaner leaves gaps where it removed whole batches (Kafka
  // semantics), so a later base offset is fine, but never one past what a segment's int32
  // relative offsets can reach: that is a flipped bit, not a gap.
  if (baseOffset < expectedOffset || baseOffset - expectedOffset > INT32_MAX) {
    throw corrupt(`batch at position ${position} has base offset ${baseOffset}, expected ${expectedOffset} or a later one`);
  }
  const lastOffsetDelta = buf.readInt32BE(at + OFFSET_LAST_OFFSET_DELTA);
  if (lastOffsetDelta < 0) throw corrupt(`batch at position ${position} has last offset delta ${lastOffsetDelta}`);
  const maxTimestamp = readInt64(buf, at + OFFSET_MAX_TIMESTAMP);
  return { position, sizeBytes, baseOffset, lastOffset: baseOffset + lastOffsetDelta, maxTimestamp };
}

/**
 * Walks from the batch at `position` (whose base offset is `expectedOffset`) until `stop`
 * accepts a batch, which is returned; null when `end` is reached first. With a `budget`,
 * every window read is taken from its scanBytesLeft first (THROTTLED once it is spent).
 */
export function walkBatches(
  ops: FileOps,
  fd: number,
  position: number,
  expectedOffset: number,
  end: number,
  /** `header` is the batch's first BATCH_OVERHEAD bytes, valid only during the call. */
  stop: (ref: BatchRef, header: Buffer) => boolean,
  budget?: RequestBudget,
): BatchRef | null {
  let windowStart = 0;
  let windowLength = 0;
  let pos = position;
  let expected = expectedOffset;
  while (pos < end) {
    if (end - pos < BATCH_OVERHEAD) throw corrupt(`${end - pos} bytes at position ${pos} are too few for a batch`);
    if (pos < windowStart || pos + BATCH_OVERHEAD > windowStart + windowLength) {
      windowStart = pos;
      const length = Math.min(WINDOW_BYTES, end - pos);
      if (budget !== undefined) chargeScan(budget, length);
      windowLength = readFully(ops, fd, window, 0, length, pos);
      if (windowLength < BATCH_OVERHEAD) throw corrupt(`segment file ends at ${pos + windowLength}, expected ${end}`);
    }
    const ref = headerAt(window, pos - windowStart, pos, expected, end);
    if (stop(ref, window.subarray(pos - windowStart, pos - windowStart + BATCH_OVERHEAD))) return ref;
    pos += ref.sizeBytes;
    expected = ref.lastOffset + 1;
  }
  return null;
}
