// The time index of one segment, Kafka's `.timeindex` file:
//
//   entry (12 bytes, big-endian):
//        0     8  timestamp       int64   the segment's max timestamp so far
//        8     4  relativeOffset  int32   base offset of the batch that first reached it,
//                                         minus the segment base offset
//
// Timestamps are strictly increasing; relative offsets never decrease. An entry is added at
// the offset index's cadence (Kafka's rule: LogSegment.append), only when the max timestamp
// grew, plus one final entry when the segment is sealed, so the last entry always carries the
// segment's max timestamp. Record timestamps come from devices and need not be monotonic;
// the index holds running maxima, which are.
//
// Why an entry means what it does: every batch before the entry's batch has a max
// timestamp below the entry's, so a search for the first record at or after T may start at
// the batch of the last entry whose timestamp is <= T.

import { AssertionError } from '../../protocol/errors.js';
import { writeInt64 } from '../../protocol/record-batch.js';

export const TIME_INDEX_ENTRY_BYTES = 12;

export interface TimeIndexEntry {
  timestamp: number;
  relativeOffset: number;
}

export class TimeIndex {
  // Float64 holds every safe integer exactly; timestamps stay far below 2^53.
  private timestamps: Float64Array;
  private relativeOffsets: Int32Array;
  private count = 0;

  constructor(capacity = 64) {
    this.timestamps = new Float64Array(capacity);
    this.relativeOffsets = new Int32Array(capacity);
  }

  get entries(): number {
    return this.count;
  }

  /** Appends when `timestamp` exceeds the last entry's; returns whether it did. */
  maybeAppend(timestamp: number, relativeOffset: number): boolean {
    if (this.count > 0) {
      if (timestamp <= this.timestamps[this.count - 1]) return false;
      if (!(relativeOffset >= this.relativeOffsets[this.count - 1])) throw new AssertionError(`time index: relative offset ${relativeOffset} going backwards`);
    }
    if (!(relativeOffset >= 0 && relativeOffset <= 0x7fffffff)) throw new AssertionError(`time index: relative offset ${relativeOffset} outside int32`);
    if (this.count === this.timestamps.length) this.grow();
    this.timestamps[this.count] = timestamp;
    this.relativeOffsets[this.count] = relativeOffset;
    this.count++;
    return true;
  }

  /** The last entry whose timestamp is <= `timestamp`; null when the first entry is later. */
  lookup(timestamp: number): TimeIndexEntry | null {
    let lo = 0;
    let hi = this.count - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.timestamps[mid] <= timestamp) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return null;
    return { timestamp: this.timestamps[found], relativeOffset: this.relativeOffsets[found] };
  }

  /** Drops the entries whose batch is at or past `relativeOffset`. */
  truncateAtRelativeOffset(relativeOffset: number): void {
    while (this.count > 0 && this.relativeOffsets[this.count - 1] >= relativeOffset) this.count--;
  }

  last(): TimeIndexEntry | null {
    if (this.count === 0) return null;
    return { timestamp: this.timestamps[this.count - 1], relativeOffset: this.relativeOffsets[this.count - 1] };
  }

  /** The file's bytes; with `belowRelativeOffset`, only the entries of batches below it. */
  encode(belowRelativeOffset = Number.POSITIVE_INFINITY): Buffer {
    let count = this.count;
    while (count > 0 && this.relativeOffsets[count - 1] >= belowRelativeOffset) count--;
    const buf = Buffer.allocUnsafe(count * TIME_INDEX_ENTRY_BYTES);
    for (let i = 0; i < count; i++) {
      writeInt64(buf, i * TIME_INDEX_ENTRY_BYTES, this.timestamps[i]);
      buf.writeInt32BE(this.relativeOffsets[i], i * TIME_INDEX_ENTRY_BYTES + 8);
    }
    return buf;
  }

  /** Reads a time index file back, or null when it is not a well-formed one. */
  static decode(buf: Buffer): TimeIndex | null {
    if (buf.length % TIME_INDEX_ENTRY_BYTES !== 0) return null;
    const count = buf.length / TIME_INDEX_ENTRY_BYTES;
    const index = new TimeIndex(Math.max(count, 16));
    let lastTimestamp = Number.NEGATIVE_INFINITY;
    let lastRelative = 0;
    for (let i = 0; i < count; i++) {
      const at = i * TIME_INDEX_ENTRY_BYTES;
      const hi = buf.readInt32BE(at);
      const timestamp = hi * 4294967296 + buf.readUInt32BE(at + 4);
      const relativeOffset = buf.readInt32BE(at + 8);
      if (!Number.isSafeInteger(timestamp) || timestamp <= lastTimestamp || relativeOffset < lastRelative) return null;
      index.timestamps[i] = timestamp;
      index.relativeOffsets[i] = relativeOffset;
      lastTimestamp = timestamp;
      lastRelative = relativeOffset;
    }
    index.count = count;
    return index;
  }

  private grow(): void {
    const capacity = Math.max(16, this.timestamps.length * 2);
    const timestamps = new Float64Array(capacity);
    const relativeOffsets = new Int32Array(capacity);
    timestamps.set(this.timestamps.subarray(0, this.count));
    relativeOffsets.set(this.relativeOffsets.subarray(0, this.count));
    this.timestamps = timestamps;
    this.relativeOffsets = relativeOffsets;
  }
}
