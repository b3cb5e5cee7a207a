import { describe, expect, it } from 'vitest';
import { AssertionError } from '../../protocol/errors.js';
import { OffsetIndex } from './offset-index.js';
import { SegmentIndexes } from './segment-indexes.js';
import { TimeIndex } from './time-index.js';

describe('OffsetIndex', () => {
  it('finds the last entry at or below an offset, {0, 0} below the first', () => {
    const index = new OffsetIndex(1);
    for (let i = 1; i <= 100; i++) index.append(i * 10, i * 1000);
    expect(index.lookup(5)).toEqual({ relativeOffset: 0, position: 0 });
    expect(index.lookup(10)).toEqual({ relativeOffset: 10, position: 1000 });
    expect(index.lookup(19)).toEqual({ relativeOffset: 10, position: 1000 });
    expect(index.lookup(555)).toEqual({ relativeOffset: 550, position: 55000 });
    expect(index.lookup(1e9)).toEqual({ relativeOffset: 1000, position: 100000 });
  });

  it('round-trips through its file format and refuses damaged files', () => {
    const index = new OffsetIndex();
    index.append(3, 200);
    index.append(9, 900);
    const bytes = index.encode();
    expect(bytes.toString('hex')).toBe('00000003000000c80000000900000384');
    expect(OffsetIndex.decode(bytes, 1000)?.lookup(10)).toEqual({ relativeOffset: 9, position: 900 });
    expect(OffsetIndex.decode(bytes.subarray(0, 12), 1000)).toBeNull(); // torn entry
    expect(OffsetIndex.decode(bytes, 900)).toBeNull(); // position past the log
    expect(OffsetIndex.decode(Buffer.concat([bytes.subarray(8), bytes.subarray(0, 8)]), 1000)).toBeNull(); // out of order
    expect(OffsetIndex.decode(Buffer.alloc(0), 0)?.entries).toBe(0);
  });

  it('asserts that entries increase', () => {
    const index = new OffsetIndex();
    index.append(5, 500);
    expect(() => index.append(5, 600)).toThrow(AssertionError);
    expect(() => index.append(6, 400)).toThrow(AssertionError);
  });
});

describe('TimeIndex', () => {
  it('keeps only growing timestamps and finds the last at or below a time', () => {
    const index = new TimeIndex(1);
    expect(index.maybeAppend(100, 0)).toBe(true);
    expect(index.maybeAppend(100, 5)).toBe(false);
    expect(index.maybeAppend(90, 6)).toBe(false);
    expect(index.maybeAppend(200, 7)).toBe(true);
    expect(index.lookup(99)).toBeNull();
    expect(index.lookup(150)).toEqual({ timestamp: 100, relativeOffset: 0 });
    expect(index.lookup(200)).toEqual({ timestamp: 200, relativeOffset: 7 });
    const bytes = index.encode();
    expect(bytes.toString('hex')).toBe('000000000000006400000000' + '00000000000000c800000007');
    expect(TimeIndex.decode(bytes)?.last()).toEqual({ timestamp: 200, relativeOffset: 7 });
    expect(TimeIndex.decode(bytes.subarray(0, 13))).toBeNull();
    expect(TimeIndex.decode(Buffer.concat([bytes.subarray(12), bytes.subarray(0, 12)]))).toBeNull();
  });
});

describe('SegmentIndexes', () => {
  it("indexes at Kafka's cadence: after more than index.interval.bytes since the last entry", () => {
    const indexes = new SegmentIndexes(1000);
    let position = 0;
    // 10 batches of 100 bytes, 2 offsets each, timestamps 5, 4, 7, 7, 9, ...
    const timestamps = [5, 4, 7, 7, 9, 8, 12, 12, 12, 20];
    for (let i = 0; i < 10; i++) {
      indexes.onBatch(1000 + 2 * i, position, 100, timestamps[i], 250);
      position += 100;
    }
    // Entries once 300 bytes had passed since the last: batches 3, 6, 9.
    expect(indexes.offsetIndex.encode().toString('hex')).toBe(['000000060000012c', '0000000c00000258', '0000001200000384'].join(''));
    expect(indexes.timeIndex.last()).toEqual({ timestamp: 20, relativeOffset: 18 });
    expect(indexes.timeIndex.lookup(10)).toEqual({ timestamp: 7, relativeOffset: 4 });
    expect(indexes.maxTimestamp).toBe(20);
  });
});
