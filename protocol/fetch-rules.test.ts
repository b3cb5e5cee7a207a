// The fetch rules alone: where a fetch may start, and how an answer is cut from stored
// batches (KIP-74), for a partition and across the partitions of one answer.

import { describe, expect, it } from 'vitest';
import { Errors } from './errors.js';
import { firstRecordAtOrAfter, isFetchOffsetInLog, offsetOutOfRange, partitionReadBytesMax, readBytesMax, selectFetchBatches } from './fetch-rules.js';
import { encodeBatch, setBaseOffset } from './record-batch.js';

/** Stored batches of `counts[i]` records each, `valueBytes` per value, base offsets from `from`. */
function log(counts: number[], valueBytes = 100, from = 0): Buffer[] {
  let offset = from;
  return counts.map((count) => {
    const batch = encodeBatch(Array.from({ length: count }, () => ({ value: Buffer.alloc(valueBytes), timestamp: 1 })));
    setBaseOffset(batch, offset);
    offset += count;
    return batch;
  });
}

describe('isFetchOffsetInLog', () => {
  it('takes [log start, log end], the log end included, and nothing else', () => {
    expect([9, 10, 15, 20, 21].map((o) => isFetchOffsetInLog(o, 10, 20))).toEqual([false, true, true, true, false]);
    expect(isFetchOffsetInLog(10.5, 10, 20)).toBe(false);
    expect(isFetchOffsetInLog(Number.NaN, 10, 20)).toBe(false);
    expect(isFetchOffsetInLog(2 ** 53, 0, 2 ** 53)).toBe(false);
  });
});

describe('readBytesMax (KIP-74)', () => {
  it('is maxBytes, or the first batch whole when it is larger', () => {
    expect(readBytesMax(100, 1000)).toBe(1000);
    expect(readBytesMax(5000, 1000)).toBe(5000);
  });
});

describe('partitionReadBytesMax (KIP-74 across partitions)', () => {
  it('gives each partition the least of its maxBytes and what the answer has left', () => {
    expect(partitionReadBytesMax(300, 1000, 0)).toBe(300);
    expect(partitionReadBytesMax(800, 1000, 600)).toBe(400);
  });

  it('skips a partition once the budget is spent by earlier ones', () => {
    expect(partitionReadBytesMax(300, 1000, 1000)).toBe(0);
    expect(partitionReadBytesMax(300, 1000, 1200)).toBe(0);
  });

  it('lets the first partition with data read its first batch even from no room at all', () => {
    expect(partitionReadBytesMax(300, 0, 0)).toBe(1);
    expect(partitionReadBytesMax(0, 1000, 0)).toBe(1);
  });
});

describe('selectFetchBatches', () => {
  const batches = log([10, 10, 10, 10]);
  const size = batches[0].length;

  it('starts at the batch holding the fetch offset, whole, and takes batches within maxBytes', () => {
    expect(selectFetchBatches(batches, 15, 2 * size, 40)).toEqual({ start: 1, end: 3 });
    expect(selectFetchBatches(batches, 10, 2 * size + size - 1, 40)).toEqual({ start: 1, end: 3 });
    expect(selectFetchBatches(batches, 0, 100 * size, 40)).toEqual({ start: 0, end: 4 });
  });

  it('gives the first batch whole however small maxBytes is, and only it', () => {
    expect(selectFetchBatches(batches, 25, 1, 40)).toEqual({ start: 2, end: 3 });
  });

  it('takes no batch whose last offset reaches maxOffset (the high watermark)', () => {
    expect(selectFetchBatches(batches, 0, 100 * size, 30)).toEqual({ start: 0, end: 3 });
    expect(selectFetchBatches(batches, 0, 100 * size, 29)).toEqual({ start: 0, end: 2 });
    expect(selectFetchBatches(batches, 25, 100 * size, 29)).toEqual({ start: 2, end: 2 });
  });

  it('reads nothing at the log end, or from a log without batches', () => {
    expect(selectFetchBatches(batches, 40, 100 * size, 40)).toEqual({ start: 4, end: 4 });
    expect(selectFetchBatches([], 0, 100, 0)).toEqual({ start: 0, end: 0 });
  });

  it('steps over a gap the cleaner left, to the next batch after the fetch offset', () => {
    const gapped = [...log([10]), ...log([10], 100, 50)];
    expect(selectFetchBatches(gapped, 20, 100 * size, 60)).toEqual({ start: 1, end: 2 });
  });
});

describe('offsetOutOfRange', () => {
  it('names the partition, the offset and the log', () => {
    const err = offsetOutOfRange('t-0', 25, 0, 20);
    expect([err.code, err.detail]).toEqual([Errors.OFFSET_OUT_OF_RANGE.code, 't-0: offset 25 is outside the log [0, 20]']);
  });
});

describe('firstRecordAtOrAfter (ListOffsets by time)', () => {
  it('is the first record in offset order at or after the time, not the nearest in time', () => {
    const records = [10, 30, 20, 40].map((timestamp, offset) => ({ offset, timestamp }));
    expect(firstRecordAtOrAfter(records, 15)).toEqual({ offset: 1, timestamp: 30 });
    expect(firstRecordAtOrAfter(records, 30)).toEqual({ offset: 1, timestamp: 30 });
    expect(firstRecordAtOrAfter(records, 41)).toBeUndefined();
  });
});
