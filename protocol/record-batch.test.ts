// RecordBatch v2 round trips: seeded random records through encodeBatch and decodeBatch,
// the header fields, the in-place patches the broker makes (base offset, leader epoch),
// and the 64-bit and varint edges. Bad input is in record-batch.torture.test.ts; agreement
// with kafkajs in kafkajs-compat.test.ts.

import { describe, expect, it } from 'vitest';
import {
  BATCH_OVERHEAD,
  batchSizeAt,
  Compression,
  computeCrc,
  decodeBatch,
  encodeBatch,
  lastOffsetOf,
  LOG_OVERHEAD,
  OFFSET_CRC,
  readBatchHeader,
  readInt64,
  setBaseOffset,
  setPartitionLeaderEpoch,
  splitBatches,
  TimestampType,
  validateBatch,
  varintSize,
  writeInt64,
  writeVarint,
} from './record-batch.js';
import type { DecodedRecord, EncodeOptions, Header, Record } from './record-batch.js';
import { TributaryError } from './errors.js';
import { expectDecodeError, referenceVarint, testSeeds, withSeed } from './testdata/helpers.js';
import type { Rng } from './testdata/helpers.js';

const T0 = 1_700_000_000_000;

function randomBytesOrNull(rng: Rng, pNull: number): Buffer | null {
  if (rng.bool(pNull)) return null;
  // Sizes around the varint steps (63/64, 8191/8192), and now and then a large one.
  if (rng.bool(0.01)) return rng.bytes(rng.int(8192, 70_000));
  return rng.bytes(rng.pick([0, 0, 1, 5, 63, 64, 100, 8191, 8192, rng.int(0, 300)]));
}

function randomHeaders(rng: Rng): Header[] | undefined {
  if (rng.bool(0.4)) return undefined;
  const headers: Header[] = [];
  const count = rng.pick([0, 1, 2, 5, 64, 65]);
  for (let i = 0; i < count; i++) {
    const name = rng.pick(['', 'trace-id', 'content-type', 'ünïcödé ✓', '日本語', 'x'.repeat(200)]);
    headers.push([name, randomBytesOrNull(rng, 0.2)]);
  }
  return headers;
}

function randomRecords(rng: Rng): Record[] {
  const count = rng.pick([1, 1, 2, 3, 10, 100, rng.int(1, 300)]);
  const spread = rng.pick([0, 1, 1000, 2 ** 31, 2 ** 40]);
  const start = rng.int(0, 2 ** 42);
  const records: Record[] = [];
  for (let i = 0; i < count; i++) {
    const record: Record = { key: randomBytesOrNull(rng, 0.25), value: randomBytesOrNull(rng, 0.1) };
    // Timestamps in any order (the batch stores deltas from its smallest), some missing.
    if (!rng.bool(0.1)) record.timestamp = start + rng.int(0, spread);
    const headers = randomHeaders(rng);
    if (headers !== undefined) record.headers = headers;
    if (rng.bool(0.1)) delete record.key;
    records.push(record);
  }
  return records;
}

function randomOptions(rng: Rng, compression: Compression): EncodeOptions {
  return {
    compression,
    baseOffset: rng.pick([0, 1, 2 ** 31, 2 ** 40 - 3, 2 ** 40, 2 ** 53 - 1 - 1000]),
    partitionLeaderEpoch: rng.pick([-1, 0, 7, 2 ** 31 - 1]),
    producerId: rng.pick([-1, 0, 2 ** 40 + 5]),
    producerEpoch: rng.pick([-1, 0, 32767]),
    baseSequence: rng.pick([-1, 0, 2 ** 31 - 1]),
    isTransactional: rng.bool(0.2),
    timestamp: T0 + rng.int(0, 1000),
  };
}

/**
 * Compares decoded records field by field with what was encoded. Plain comparisons with a
 * message naming the first difference: thousands of records per test make expect() per
 * field the slowest part of the suite.
 */
function expectRoundTrip(decoded: readonly DecodedRecord[], records: readonly Record[], options: EncodeOptions): void {
  const sameBytes = (got: Uint8Array | null, want: Uint8Array | null | undefined): boolean =>
    want === null || want === undefined ? got === null : got !== null && Buffer.isBuffer(got) && got.equals(want);
  expect(decoded.length).toBe(records.length);
  for (let i = 0; i < records.length; i++) {
    const d = decoded[i];
    const r = records[i];
    const differs = (field: string): never => {
      throw new Error(`record ${i}: ${field} differs after the round trip`);
    };
    if (d.offset !== (options.baseOffset ?? 0) + i) differs('offset');
    if (d.timestamp !== (r.timestamp ?? options.timestamp)) differs('timestamp');
    if (!sameBytes(d.key, r.key)) differs('key');
    if (!sameBytes(d.value, r.value)) differs('value');
    const headers = r.headers ?? [];
    if (d.headers.length !== headers.length) differs('header count');
    headers.forEach(([name, value], h) => {
      if (d.headers[h][0] !== name) differs(`header ${h} name`);
      const got = d.headers[h][1];
      if (!sameBytes(got === null ? null : Buffer.from(got), value)) differs(`header ${h} value`);
    });
  }
}

describe('round trip, seeded random records', () => {
  for (const compression of [Compression.None, Compression.Gzip]) {
    it.each(testSeeds([1, 2, 3, 42, 0xdecade]))(`${Compression[compression]}, seed %i`, (seed) => {
      withSeed(seed, (rng) => {
        for (let round = 0; round < 25; round++) {
          const records = randomRecords(rng);
          const options = randomOptions(rng, compression);
          const batch = encodeBatch(records, options);
          validateBatch(batch);
          const { header, records: decoded } = decodeBatch(batch);
          const timestamps = records.map((r) => r.timestamp ?? (options.timestamp as number));
          expect(header).toMatchObject({
            baseOffset: options.baseOffset,
            batchLength: batch.length - LOG_OVERHEAD,
            partitionLeaderEpoch: options.partitionLeaderEpoch,
            magic: 2,
            compression,
            timestampType: TimestampType.CreateTime,
            isTransactional: options.isTransactional,
            isControl: false,
            lastOffsetDelta: records.length - 1,
            baseTimestamp: Math.min(...timestamps),
            maxTimestamp: Math.max(...timestamps),
            producerId: options.producerId,
            producerEpoch: options.producerEpoch,
            baseSequence: options.baseSequence,
            recordCount: records.length,
          });
          expect(header.crc).toBe(computeCrc(batch));
          expect(batchSizeAt(batch)).toBe(batch.length);
          expect(lastOffsetOf(batch)).toBe((options.baseOffset as number) + records.length - 1);
          expectRoundTrip(decoded, records, options);
        }
      });
    });
  }
});

describe('in-place patches by the broker', () => {
  it.each(testSeeds([5, 6]))('setBaseOffset and setPartitionLeaderEpoch keep the CRC valid, seed %i', (seed) => {
    withSeed(seed, (rng) => {
      for (let round = 0; round < 20; round++) {
        const records = randomRecords(rng);
        const options = randomOptions(rng, rng.pick([Compression.None, Compression.Gzip]));
        const batch = encodeBatch(records, options);
        const crc = batch.readUInt32BE(OFFSET_CRC);
        // Offsets near 2^40 and up to the largest a batch can reach below 2^53.
        const baseOffset = rng.pick([0, 2 ** 40 - 1, 2 ** 40, 2 ** 40 + rng.int(0, 2 ** 20), Number.MAX_SAFE_INTEGER - records.length]);
        const epoch = rng.pick([0, 1, 2 ** 31 - 1, -1]);
        setBaseOffset(batch, baseOffset);
        setPartitionLeaderEpoch(batch, epoch);
        expect(batch.readUInt32BE(OFFSET_CRC)).toBe(crc);
        validateBatch(batch);
        const { header, records: decoded } = decodeBatch(batch);
        expect(header.baseOffset).toBe(baseOffset);
        expect(header.partitionLeaderEpoch).toBe(epoch);
        expect(lastOffsetOf(batch)).toBe(baseOffset + records.length - 1);
        expectRoundTrip(decoded, records, { ...options, baseOffset });
      }
    });
  });

  it('patches a batch in place inside a larger buffer at `at`, leaving its neighbours alone', () => {
    const a = encodeBatch([{ value: Buffer.from('a'), timestamp: T0 }]);
    const b = encodeBatch([{ value: Buffer.from('b'), timestamp: T0 }, { value: Buffer.from('c'), timestamp: T0 }]);
    const log = Buffer.concat([a, b, a]);
    setBaseOffset(log, 2 ** 40 + 1, a.length);
    setPartitionLeaderEpoch(log, 9, a.length);
    const [first, second, third] = splitBatches(log);
    expect(first.equals(a) && third.equals(a)).toBe(true);
    expect(readBatchHeader(log, a.length)).toMatchObject({ baseOffset: 2 ** 40 + 1, partitionLeaderEpoch: 9 });
    expect(lastOffsetOf(log, a.length)).toBe(2 ** 40 + 2);
    expect(decodeBatch(second).records.map((r) => r.offset)).toEqual([2 ** 40 + 1, 2 ** 40 + 2]);
  });
});

describe('encoder details', () => {
  it('defaults: base offset 0, epoch -1, no producer id, sequence -1, CreateTime, timestamp from options', () => {
    const batch = encodeBatch([{ value: Buffer.from('v') }], { timestamp: T0 });
    expect(readBatchHeader(batch)).toMatchObject({
      baseOffset: 0,
      partitionLeaderEpoch: -1,
      producerId: -1,
      producerEpoch: -1,
      baseSequence: -1,
      timestampType: TimestampType.CreateTime,
      baseTimestamp: T0,
      maxTimestamp: T0,
      isTransactional: false,
    });
    expect(decodeBatch(batch).records[0]).toMatchObject({ offset: 0, timestamp: T0, key: null });
  });

  it('records without a timestamp, and no option, get the time of encoding', () => {
    const before = Date.now();
    const { records } = decodeBatch(encodeBatch([{ value: null }]));
    expect(records[0].timestamp).toBeGreaterThanOrEqual(before);
    expect(records[0].timestamp).toBeLessThanOrEqual(Date.now());
  });

  it('the base timestamp is the smallest, so deltas of out-of-order records stay non-negative', () => {
    const batch = encodeBatch([
      { value: null, timestamp: T0 + 10 },
      { value: null, timestamp: T0 },
      { value: null, timestamp: T0 + 5 },
    ]);
    const { header, records } = decodeBatch(batch);
    expect(header.baseTimestamp).toBe(T0);
    expect(header.maxTimestamp).toBe(T0 + 10);
    expect(records.map((r) => r.timestamp)).toEqual([T0 + 10, T0, T0 + 5]);
  });

  it('LogAppendTime: every record reads as the batch max timestamp, as Kafka defines it', () => {
    const batch = encodeBatch(
      [
        { value: null, timestamp: T0 },
        { value: null, timestamp: T0 + 7 },
      ],
      { timestampType: TimestampType.LogAppendTime },
    );
    const { header, records } = decodeBatch(batch);
    expect(header.timestampType).toBe(TimestampType.LogAppendTime);
    expect(records.map((r) => r.timestamp)).toEqual([T0 + 7, T0 + 7]);
  });

  it('a batch needs a record: empty is INVALID_REQUEST', () => {
    const err = (() => {
      try {
        encodeBatch([]);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).errorName).toBe('INVALID_REQUEST');
  });

  it.each([1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60])('timestamp %s is refused, not written as a wrong delta', (timestamp) => {
    expect(() => encodeBatch([{ value: null, timestamp: T0 }, { value: null, timestamp }])).toThrow(/integer milliseconds/);
  });

  it.each([Compression.Snappy, Compression.Lz4, Compression.Zstd])('unsupported codec %s is INVALID_CONFIG on encode', (compression) => {
    expect(() => encodeBatch([{ value: null }], { compression })).toThrow(/INVALID_CONFIG/);
  });

  it('keys and values come back as Buffers; an uncompressed batch is not copied', () => {
    const batch = encodeBatch([{ key: new Uint8Array([1, 2]), value: new Uint8Array([3]), timestamp: T0 }]);
    const [r] = decodeBatch(batch).records;
    expect(Buffer.isBuffer(r.key) && Buffer.isBuffer(r.value)).toBe(true);
    expect(r.value?.buffer).toBe(batch.buffer);
  });

  it('validated: the CRC a log read has checked is not computed again, and nothing else changes', () => {
    const batch = encodeBatch([{ key: Buffer.from('k'), value: Buffer.from('v'), timestamp: T0 }]);
    const stale = Buffer.from(batch);
    stale[OFFSET_CRC] ^= 0xff;
    expect(() => decodeBatch(stale)).toThrow(/CRC-32C mismatch/);
    // Only a caller that checked these very bytes says so; then the CRC is not read again.
    const decoded = decodeBatch(stale, { validated: true });
    expect(decoded.records.map((r) => [String(r.key), String(r.value)])).toEqual([['k', 'v']]);
    expect(decoded.header).toEqual({ ...decodeBatch(batch).header, crc: stale.readUInt32BE(OFFSET_CRC) });
  });

  it('header names are written as UTF-8, any characters', () => {
    const names = ['', 'a', 'ünïcödé', '😀 emoji', 'x'.repeat(1000)];
    const batch = encodeBatch([{ value: null, timestamp: T0, headers: names.map((n) => [n, Buffer.from(n)] as Header) }]);
    const [r] = decodeBatch(batch).records;
    expect(r.headers.map(([n]) => n)).toEqual(names);
    expect(r.headers.map(([, v]) => (v === null ? null : Buffer.from(v).toString('utf8')))).toEqual(names);
  });

  it('header names that change from record to record at the same index are read fresh', () => {
    // The decoder reuses the last name seen at each header index when the bytes match; a
    // name of the same length with different bytes, or a non-ASCII one, must not reuse it.
    const names = ['abc', 'abd', 'abc', 'ab', 'ünï', 'abc', 'a'.repeat(70), 'a'.repeat(70), 'b'.repeat(70), '', 'abc'];
    const records = names.map((n, i) => ({ value: null, timestamp: T0, headers: [['same', null], [n, Buffer.from([i])]] as Header[] }));
    const decoded = decodeBatch(encodeBatch(records)).records;
    expect(decoded.map((r) => r.headers[1][0])).toEqual(names);
    expect(decoded.map((r) => r.headers[0][0])).toEqual(names.map(() => 'same'));
  });

  it('a header name that is not valid UTF-8 reads as Buffer#toString reads it', () => {
    const raw = Buffer.from([0x61, 0xff, 0x62]);
    const batch = encodeBatch([{ value: null, timestamp: T0, headers: [['xyz', null]] }]);
    // Swap the 3-byte name for bytes no string encodes to; the CRC is recomputed.
    const at = batch.indexOf('xyz');
    raw.copy(batch, at);
    batch.writeUInt32BE(computeCrc(batch), OFFSET_CRC);
    expect(decodeBatch(batch).records[0].headers[0][0]).toBe(raw.toString('utf8'));
  });

  it('the header overhead is 61 bytes and a minimal record 7 (length, attributes, 2 deltas, 2 nulls, 0 headers)', () => {
    const batch = encodeBatch([{ key: null, value: null, timestamp: T0 }]);
    expect(BATCH_OVERHEAD).toBe(61);
    expect(batch.length).toBe(61 + 7);
  });
});

describe('64-bit fields and varints at their edges', () => {
  it.each([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, -(2 ** 32), 2 ** 40, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER])(
    'writeInt64/readInt64 round trip %d, and match BigInt big-endian',
    (n) => {
      const b = Buffer.alloc(8);
      writeInt64(b, 0, n);
      expect(b.readBigInt64BE(0)).toBe(BigInt(n));
      expect(readInt64(b, 0)).toBe(n);
    },
  );

  it('readInt64 refuses values past 2^53 rather than rounding them', () => {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(2n ** 53n, 0);
    expectDecodeError(() => readInt64(b, 0), 'CORRUPT_BATCH');
    b.writeBigInt64BE(-(2n ** 63n), 0);
    expectDecodeError(() => readInt64(b, 0), 'CORRUPT_BATCH');
  });



  const edges: number[] = [];
  for (let bits = 0; bits <= 53; bits++) {
    const p = 2 ** bits;
    edges.push(p - 1, p, -p, -p + 1, -p - 1);
  }
  // 2^30 is where writeVarint leaves its 32-bit fast path.
  edges.push(0x3fffffff, 0x40000000, -0x40000000, -0x40000001);

  it('writeVarint and varintSize agree with a BigInt reference at every power of two', () => {
    for (const n of edges) {
      if (!Number.isSafeInteger(n)) continue;
      const b = Buffer.alloc(10);
      const end = writeVarint(b, 0, n);
      expect(b.subarray(0, end).toString('hex'), `n = ${n}`).toBe(Buffer.from(referenceVarint(n)).toString('hex'));
      expect(varintSize(n), `n = ${n}`).toBe(end);
    }
  });

  it('timestamp deltas at every varint edge round trip', () => {
    const deltas = edges.filter((d) => d >= 0 && d <= 2 ** 50);
    const records = deltas.map((d) => ({ value: null, timestamp: 1000 + d }));
    const { records: decoded } = decodeBatch(encodeBatch(records));
    expect(decoded.map((r) => r.timestamp)).toEqual(records.map((r) => r.timestamp));
  });
});
