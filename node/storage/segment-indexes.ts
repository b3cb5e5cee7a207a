// When a batch earns an index entry. One rule, used both by append and by the recovery
// scan that rebuilds indexes, so a rebuilt index is byte for byte the one append would have
// written. It is Kafka's (LogSegment.append): once more than index.interval.bytes of log
// were written since the last entry, the next batch gets an offset index entry, and the time
// index gets the running max timestamp if it grew.

import { OffsetIndex } from './offset-index.js';
import { TimeIndex } from './time-index.js';

export class SegmentIndexes {
  readonly offsetIndex: OffsetIndex;
  readonly timeIndex: TimeIndex;
  /** Largest batch max timestamp in the segment; -1 while there is none (Kafka's NO_TIMESTAMP). */
  maxTimestamp = -1;
  /** Base offset of the batch that first reached maxTimestamp, relative to the segment. */
  relativeOffsetOfMaxTimestamp = 0;
  bytesSinceLastIndexEntry = 0;

  constructor(
    readonly baseOffset: number,
    offsetIndex: OffsetIndex = new OffsetIndex(),
    timeIndex: TimeIndex = new TimeIndex(),
  ) {
    this.offsetIndex = offsetIndex;
    this.timeIndex = timeIndex;
    const last = timeIndex.last();
    if (last !== null) {
      this.maxTimestamp = last.timestamp;
      this.relativeOffsetOfMaxTimestamp = last.relativeOffset;
    }
  }

  onBatch(batchBaseOffset: number, position: number, sizeBytes: number, batchMaxTimestamp: number, indexIntervalBytes: number): void {
    const relativeOffset = batchBaseOffset - this.baseOffset;
    if (batchMaxTimestamp > this.maxTimestamp) {
      this.maxTimestamp = batchMaxTimestamp;
      this.relativeOffsetOfMaxTimestamp = relativeOffset;
    }
    if (this.bytesSinceLastIndexEntry > indexIntervalBytes) {
      this.offsetIndex.append(relativeOffset, position);
      if (this.maxTimestamp >= 0) this.timeIndex.maybeAppend(this.maxTimestamp, this.relativeOffsetOfMaxTimestamp);
      this.bytesSinceLastIndexEntry = 0;
    }
    this.bytesSinceLastIndexEntry += sizeBytes;
  }

  /** Kafka's onBecomeInactiveSegment: the last time index entry carries the segment's max. */
  sealTimeIndex(): void {
    if (this.maxTimestamp >= 0) this.timeIndex.maybeAppend(this.maxTimestamp, this.relativeOffsetOfMaxTimestamp);
  }
}
