// The sparse offset index of one segment, Kafka's `.index` file:
//
//   entry (8 bytes, big-endian), one per ~index.interval.bytes of log:
//        0     4  relativeOffset  int32   batch base offset - segment base offset
//        4     4  position        int32   byte position of that batch in the .log file
//
// Entries are strictly increasing in both fields. The segment's first batch (position 0)
// has no entry; a lookup below the first entry answers position 0. Kafka indexes a batch's
// last offset; we index its base offset, which lands a lookup on the batch that holds the
// offset rather than the one before it. Both are valid sparse indexes of the same log.
//
// In memory the entries sit in two typed arrays (no per-entry objects), grown by doubling;
// the number of entries is bounded by segment.bytes / 61 (the smallest batch).

import { AssertionError } from '../../protocol/errors.js';

export const OFFSET_INDEX_ENTRY_BYTES = 8;

export interface IndexEntry {
  relativeOffset: number;
  position: number;
}

export class OffsetIndex {
  private relativeOffsets: Int32Array;
  private positions: Int32Array;
  private count = 0;

  constructor(capacity = 64) {
    this.relativeOffsets = new Int32Array(capacity);
    this.positions = new Int32Array(capacity);
  }

  get entries(): number {
    return this.count;
  }

  get sizeBytes(): number {
    return this.count * OFFSET_INDEX_ENTRY_BYTES;
  }

  append(relativeOffset: number, position: number): void {
    if (this.count > 0) {
      if (!(relativeOffset > this.relativeOffsets[this.count - 1])) throw new AssertionError(`offset index: relative offset ${relativeOffset} not increasing`);
      if (!(position > this.positions[this.count - 1])) throw new AssertionError(`offset index: position ${position} not increasing`);
    }
    if (!(relativeOffset >= 0 && relativeOffset <= 0x7fffffff)) throw new AssertionError(`offset index: relative offset ${relativeOffset} outside int32`);
    if (!(position >= 0 && position <= 0x7fffffff)) throw new AssertionError(`offset index: position ${position} outside int32`);
    if (this.count === this.positions.length) this.grow();
    this.relativeOffsets[this.count] = relativeOffset;
    this.positions[this.count] = position;
    this.count++;
  }

  /** The last entry whose relative offset is <= `relativeOffset`; {0, 0} when there is none. */
  lookup(relativeOffset: number): IndexEntry {
    let lo = 0;
    let hi = this.count - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.relativeOffsets[mid] <= relativeOffset) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found < 0) return { relativeOffset: 0, position: 0 };
    return { relativeOffset: this.relativeOffsets[found], position: this.positions[found] };
  }

  /** Drops the entries at or past `position` (they point at bytes not known to be durable). */
  truncateAtPosition(position: number): void {
    while (this.count > 0 && this.positions[this.count - 1] >= position) this.count--;
  }

  last(): IndexEntry | null {
    if (this.count === 0) return null;
    return { relativeOffset: this.relativeOffsets[this.count - 1], position: this.positions[this.count - 1] };
  }

  /** The file's bytes; with `belowPosition`, only the entries pointing below it. */
  encode(belowPosition = Number.POSITIVE_INFINITY): Buffer {
    let count = this.count;
    while (count > 0 && this.positions[count - 1] >= belowPosition) count--;
    const buf = Buffer.allocUnsafe(count * OFFSET_INDEX_ENTRY_BYTES);
    for (let i = 0; i < count; i++) {
      buf.writeInt32BE(this.relativeOffsets[i], i * OFFSET_INDEX_ENTRY_BYTES);
      buf.writeInt32BE(this.positions[i], i * OFFSET_INDEX_ENTRY_BYTES + 4);
    }
    return buf;
  }

  /**
   * Reads an index file back, or null when it cannot be the index of a log of `logSizeBytes`
   * (a torn size, entries out of order, a position past the end): the caller rebuilds it.
   */
  static decode(buf: Buffer, logSizeBytes: number): OffsetIndex | null {
    if (buf.length % OFFSET_INDEX_ENTRY_BYTES !== 0) return null;
    const count = buf.length / OFFSET_INDEX_ENTRY_BYTES;
    const index = new OffsetIndex(Math.max(count, 16));
    let lastRelative = -1;
    let lastPosition = 0;
    for (let i = 0; i < count; i++) {
      const relativeOffset = buf.readInt32BE(i * OFFSET_INDEX_ENTRY_BYTES);
      const position = buf.readInt32BE(i * OFFSET_INDEX_ENTRY_BYTES + 4);
      if (relativeOffset <= lastRelative || position <= lastPosition || position >= logSizeBytes) return null;
      index.relativeOffsets[i] = relativeOffset;
      index.positions[i] = position;
      lastRelative = relativeOffset;
      lastPosition = position;
    }
    index.count = count;
    return index;
  }

  private grow(): void {
    const capacity = Math.max(16, this.positions.length * 2);
    const relativeOffsets = new Int32Array(capacity);
    const positions = new Int32Array(capacity);
    relativeOffsets.set(this.relativeOffsets.subarray(0, this.count));
    positions.set(this.positions.subarray(0, this.count));
    this.relativeOffsets = relativeOffsets;
    this.positions = positions;
  }
}
