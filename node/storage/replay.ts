// Replaying a partition's log from its start: how a node rebuilds in memory what an internal
// topic holds (__revocations, __consumer_offsets; sync/'s next) before it serves anyone.
//
// The log is read in chunks of about `chunkBytes` with readBatches, which has already
// checked each batch it returns (length, increasing offsets, CRC) and says where each one
// ends, so nothing here walks the bytes to find batches or computes a CRC again. Each
// batch is decoded and its records handed over in offset order; a chunk is let go before
// the next is read, so what a replay holds is one chunk (or one batch, when a batch is
// larger than a chunk: KIP-74 reads it whole) whatever the size of the log. Offsets the
// log cleaner removed are simply not there: a compacted log replays with holes between
// its offsets.
//
// What a failure means follows who checked what. A batch the log cannot serve (a CRC that
// does not match, a torn length) is an error of the read, thrown as the read throws it: the
// log is damaged, as for any reader. A batch the log served whose records do not decode
// (a bad varint inside a good CRC, a codec that inflates past its bound) was written by
// something that skipped produce's checks; its owner decides, through
// `onUndecodableBatch`, whether the replay skips it and goes on.

import { AssertionError, Errors, TributaryError } from '../../protocol/errors.js';
import { decodeBatch, type DecodedRecord } from '../../protocol/record-batch.js';
import type { PartitionLog, StoredBatch } from './partition-log.js';

/** What a replay reads: a partition's log, or anything that serves batches as it does (validated). */
export type ReplayableLog = Pick<PartitionLog, 'topic' | 'partition' | 'logStartOffset' | 'logEndOffset' | 'readBatches'>;

export const REPLAY_CHUNK_BYTES_DEFAULT = 1024 * 1024;

export interface ReplayOptions {
  /** Bytes asked of each read. Default 1 MiB. */
  chunkBytes?: number;
  /** Bytes a compressed batch may inflate to (what produce allowed it); past it, undecodable. */
  decompressedBytesMax: number;
  /**
   * Told of a batch the log served whose records do not decode, and the error; the replay
   * goes on after it, having handed over none of its records. Without it the replay throws
   * CORRUPT_BATCH naming the batch's offsets.
   */
  onUndecodableBatch?: (batch: StoredBatch, err: unknown) => void;
}

export interface ReplaySummary {
  batches: number;
  records: number;
  undecodableBatches: number;
}

/**
 * Hands every record of `log`, from its log start offset to its log end offset as they are
 * at the call, to `onRecord`, in offset order. Synchronous: no append can come between two
 * records. Keys and values of an uncompressed batch are views into the chunk read: copy
 * what is kept. An error `onRecord` throws ends the replay.
 */
export function replayLog(log: ReplayableLog, onRecord: (record: DecodedRecord) => void, options: ReplayOptions): ReplaySummary {
  const chunkBytes = options.chunkBytes ?? REPLAY_CHUNK_BYTES_DEFAULT;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) {
    throw new TributaryError(Errors.INVALID_CONFIG, `chunkBytes must be a positive integer, got ${chunkBytes}`);
  }
  const summary: ReplaySummary = { batches: 0, records: 0, undecodableBatches: 0 };
  const end = log.logEndOffset;
  let offset = log.logStartOffset;
  while (offset < end) {
    const read = log.readBatches(offset, chunkBytes, end);
    // No batch at or after `offset` below the end: the rest of the log holds no record.
    if (read.batches.length === 0) break;
    const from = offset;
    let at = 0;
    for (const batch of read.batches) {
      const bytes = read.bytes.subarray(at, at + batch.sizeBytes);
      at += batch.sizeBytes;
      offset = batch.lastOffset + 1;
      summary.batches++;
      let records: DecodedRecord[];
      try {
        records = decodeBatch(bytes, { decompressedBytesMax: options.decompressedBytesMax, validated: true }).records;
      } catch (err) {
        summary.undecodableBatches++;
        if (!options.onUndecodableBatch) {
          const detail = `${log.topic}-${log.partition}: the batch at offsets ${batch.baseOffset}..${batch.lastOffset} does not decode: ${(err as Error)?.message ?? String(err)}`;
          throw new TributaryError(Errors.CORRUPT_BATCH, detail, { cause: err });
        }
        options.onUndecodableBatch(batch, err);
        continue;
      }
      for (const record of records) onRecord(record);
      summary.records += records.length;
    }
    // The loop ends because every read moves past the offset it started at.
    if (!(offset > from && at === read.bytes.length)) throw new AssertionError(`replay read from ${from} to ${offset}, ${at} of ${read.bytes.length} bytes in its batches`);
  }
  return summary;
}
