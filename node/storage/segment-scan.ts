// The full scan of one segment file, batch by batch from position 0 (or from a checkpointed
// batch boundary): what recovery runs on
// segments that may hold a torn or corrupt tail, and how lost indexes are rebuilt. It reads
// the file in large chunks and checks every batch (length inside the file, magic,
// contiguous base offsets and, with `checkCrc`, the CRC and record count via
// validateBatch). It stops at the first batch that fails; everything before it is whole.

import { BATCH_OVERHEAD, validateBatch } from '../../protocol/record-batch.js';
import { headerAt } from './batch-walk.js';
import type { BatchRef } from './batch-walk.js';
import { readFully } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { SegmentIndexes } from './segment-indexes.js';

export interface SegmentScan {
  /** Bytes of whole, valid batches from the start of the file. */
  validBytes: number;
  /** One past the last offset of the valid batches (the segment's base when none). */
  nextOffset: number;
  batches: number;
  /** The indexes append would have built for the valid batches. */
  indexes: SegmentIndexes;
  /** Why the scan stopped before the end of the file; null when the whole file is valid. */
  stopReason: string | null;
}

const SCAN_CHUNK_BYTES = 1024 * 1024;
// One read buffer for every scan: an unclean start scans hundreds of segments, and a fresh
// megabyte each is garbage the collector must chase. Safe to share: a scan is synchronous
// and never nests. Made at the first scan (a clean start never needs it).
let sharedChunk: Buffer | null = null;

export function scanSegment(
  ops: FileOps,
  fd: number,
  sizeBytes: number,
  baseOffset: number,
  indexIntervalBytes: number,
  checkCrc: boolean,
  /** Continue from a known batch boundary (a checkpoint) instead of position 0. */
  from?: { position: number; offset: number; indexes: SegmentIndexes },
): SegmentScan {
  const indexes = from?.indexes ?? new SegmentIndexes(baseOffset);
  sharedChunk ??= Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
  let chunk = sharedChunk;
  let chunkStart = 0;
  let chunkLength = 0;
  // Makes [from, from + need) present in `chunk`; false if the file ends sooner.
  const load = (from: number, need: number): boolean => {
    if (need > chunk.length) chunk = Buffer.allocUnsafe(need);
    chunkStart = from;
    chunkLength = readFully(ops, fd, chunk, 0, Math.min(chunk.length, sizeBytes - from), from);
    return chunkLength >= need;
  };
  let position = from?.position ?? 0;
  let expected = from?.offset ?? baseOffset;
  let batches = 0;
  let stopReason: string | null = null;
  while (position < sizeBytes) {
    if (sizeBytes - position < BATCH_OVERHEAD) {
      stopReason = `torn batch: ${sizeBytes - position} bytes at position ${position}`;
      break;
    }
    if (position + BATCH_OVERHEAD > chunkStart + chunkLength && !load(position, BATCH_OVERHEAD)) {
      stopReason = `file ends before position ${position + BATCH_OVERHEAD}`;
      break;
    }
    let ref: BatchRef;
    try {
      ref = headerAt(chunk, position - chunkStart, position, expected, sizeBytes);
      if (position + ref.sizeBytes > chunkStart + chunkLength && !load(position, ref.sizeBytes)) {
        throw new Error(`file ends inside the batch at position ${position}`);
      }
      if (checkCrc) validateBatch(chunk.subarray(position - chunkStart, position - chunkStart + ref.sizeBytes));
    } catch (err) {
      stopReason = `invalid batch at position ${position} (offset ${expected}): ${(err as Error).message}`;
      break;
    }
    indexes.onBatch(ref.baseOffset, position, ref.sizeBytes, ref.maxTimestamp, indexIntervalBytes);
    position += ref.sizeBytes;
    expected = ref.lastOffset + 1;
    batches++;
  }
  return { validBytes: position, nextOffset: expected, batches, indexes, stopReason };
}
