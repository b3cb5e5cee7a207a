import { describe, expect, it } from 'vitest';
import { encodeBatch, readBatchHeader, validateBatch } from '../protocol/record-batch.js';
import { nextSequence, stampBatch } from './idempotence.js';

describe('idempotence helpers', () => {
  it('sequences are int32 and wrap from 2^31 - 1 to 0, as Kafka does', () => {
    expect(nextSequence(0, 5)).toBe(5);
    expect(nextSequence(0x7ffffffe, 1)).toBe(0x7fffffff);
    expect(nextSequence(0x7fffffff, 1)).toBe(0);
    expect(nextSequence(0x7ffffffd, 5)).toBe(2);
  });

  it('stampBatch rewrites producer id, epoch and base sequence and keeps the CRC valid', () => {
    const records = [{ value: Buffer.from('a') }, { value: Buffer.from('b') }];
    const batch = encodeBatch(records, { producerId: 1, producerEpoch: 0, baseSequence: 40 });
    stampBatch(batch, { producerId: 2 ** 40 + 3, producerEpoch: 7 }, 0x7fffffff);
    expect(() => validateBatch(batch)).not.toThrow();
    const h = readBatchHeader(batch);
    expect([h.producerId, h.producerEpoch, h.baseSequence, h.recordCount]).toEqual([2 ** 40 + 3, 7, 0x7fffffff, 2]);
    // The same bytes encodeBatch gives for those fields.
    const fresh = encodeBatch(records, { producerId: 2 ** 40 + 3, producerEpoch: 7, baseSequence: 0x7fffffff, timestamp: h.baseTimestamp });
    expect(readBatchHeader(fresh).crc).toBe(h.crc);
  });
});
