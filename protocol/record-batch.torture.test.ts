// The batch decoders tortured: every truncated prefix, a table of bad inputs, every single
// bit flipped, split chunks at every byte and seeded garbage. The rule under test: bad bytes
// give a DecodeError named CORRUPT_BATCH, never a RangeError, a TypeError or a hang.
//
// Where a check sits behind the CRC (the record parser), the bad batch is "resealed": its
// length field and CRC are recomputed, as a buggy or hostile producer would send it, so the
// parser itself must catch what is wrong.

import { crc32c } from '@node-rs/crc32';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  BATCH_OVERHEAD,
  batchSizeAt,
  Compression,
  COMPRESSED_RECORD_COUNT_MAX,
  decodeBatch,
  encodeBatch,
  LOG_OVERHEAD,
  OFFSET_ATTRIBUTES,
  OFFSET_BASE,
  OFFSET_CRC,
  OFFSET_LAST_OFFSET_DELTA,
  OFFSET_LEADER_EPOCH,
  OFFSET_LENGTH,
  OFFSET_MAGIC,
  OFFSET_RECORD_COUNT,
  readBatchHeader,
  splitBatches,
  validateBatch,
  validateRecords,
} from './record-batch.js';
import type { Record } from './record-batch.js';
import { DecodeError, InflateBoundError, TributaryError } from './errors.js';
import { expectDecodeError, testSeeds, withSeed, referenceVarint } from './testdata/helpers.js';

const T0 = 1_700_000_000_000;

function sampleRecords(): Record[] {
  return [
    { key: Buffer.from('sensor-1'), value: Buffer.from('{"t":21.5}'), timestamp: T0, headers: [['trace', Buffer.from('abc')]] },
    { key: null, value: Buffer.from('x'.repeat(130)), timestamp: T0 + 70_000 },
    { key: Buffer.alloc(0), value: null, timestamp: T0 + 1, headers: [['n', null]] },
  ];
}

const sample = encodeBatch(sampleRecords(), { baseOffset: 1000, partitionLeaderEpoch: 4 });
const sampleGzip = encodeBatch(sampleRecords(), { compression: Compression.Gzip });

/** Rewrites the length field and CRC so the batch passes the outer checks. */
function reseal(batch: Buffer): Buffer {
  const b = Buffer.from(batch);
  b.writeInt32BE(b.length - LOG_OVERHEAD, OFFSET_LENGTH);
  b.writeUInt32BE(crc32c(b.subarray(OFFSET_ATTRIBUTES)), OFFSET_CRC);
  return b;
}

// An independent writer of raw record bytes (BigInt zigzag varints), so bad records can be
// built field by field without going through the encoder under test.
const varint = referenceVarint;

/** A record body: [attributes, tsDelta, offsetDelta, ...rest], prefixed by its true length. */
function rawRecord(body: number[]): number[] {
  return [...varint(body.length), ...body];
}

const key = (s: string): number[] => [...varint(s.length), ...Buffer.from(s)];

/** A well-formed record body with the given offset delta: key "k", value "v", no headers. */
const goodBody = (offsetDelta = 0): number[] => [0, ...varint(0), ...varint(offsetDelta), ...key('k'), ...key('v'), ...varint(0)];

/** The smallest record body: null key, null value, no headers; 7 bytes with its length. */
const smallestBody = (offsetDelta = 0): number[] => [0, ...varint(0), ...varint(offsetDelta), ...varint(-1), ...varint(-1), ...varint(0)];

/** A resealed batch around raw record bytes. */
function rawBatch(records: number[] | Buffer, opts: { count?: number; lastOffsetDelta?: number; attributes?: number } = {}): Buffer {
  const payload = Buffer.from(records);
  const b = Buffer.alloc(BATCH_OVERHEAD + payload.length);
  b.writeInt8(2, OFFSET_MAGIC);
  b.writeInt16BE(opts.attributes ?? 0, OFFSET_ATTRIBUTES);
  const count = opts.count ?? 1;
  b.writeInt32BE(opts.lastOffsetDelta ?? count - 1, OFFSET_LAST_OFFSET_DELTA);
  b.writeBigInt64BE(BigInt(T0), 27);
  b.writeBigInt64BE(BigInt(T0), 35);
  b.writeBigInt64BE(-1n, 43);
  b.writeInt16BE(-1, 51);
  b.writeInt32BE(-1, 53);
  b.writeInt32BE(count, OFFSET_RECORD_COUNT);
  payload.copy(b, BATCH_OVERHEAD);
  return reseal(b);
}

describe('the raw batch builder used below', () => {
  it('builds batches the decoder accepts, so each bad case differs from a good one in one field only', () => {
    const one = decodeBatch(rawBatch(rawRecord(goodBody())));
    expect(one.records).toHaveLength(1);
    expect(one.records[0].key?.toString()).toBe('k');
    const two = decodeBatch(rawBatch([...rawRecord(goodBody(0)), ...rawRecord(goodBody(1))], { count: 2 }));
    expect(two.records.map((r) => r.offset)).toEqual([0, 1]);
    const zipped = decodeBatch(rawBatch(gzipSync(Buffer.from(rawRecord(goodBody()))), { attributes: Compression.Gzip }));
    expect(zipped.records[0].value?.toString()).toBe('v');
  });

  it('smallest records are 7 bytes, and as many as the bytes can hold decode: the count bound is tight', () => {
    expect(rawRecord(smallestBody(0))).toHaveLength(7);
    const bytes = [0, 1, 2].flatMap((i) => rawRecord(smallestBody(i)));
    const three = rawBatch(bytes, { count: 3 });
    expect(three.length).toBe(BATCH_OVERHEAD + 21);
    validateBatch(three);
    expect(decodeBatch(three).records.map((r) => [r.offset, r.key, r.value])).toEqual([
      [0, null, null],
      [1, null, null],
      [2, null, null],
    ]);
  });
});

describe('truncated prefixes', () => {
  for (const [name, batch] of [
    ['uncompressed', sample],
    ['gzip', sampleGzip],
  ] as const) {
    it(`${name}: every prefix of a valid batch is CORRUPT_BATCH for decodeBatch and validateBatch`, () => {
      for (let n = 0; n < batch.length; n++) {
        const prefix = batch.subarray(0, n);
        expectDecodeError(() => decodeBatch(prefix), 'CORRUPT_BATCH', `prefix of ${n} bytes`);
        expectDecodeError(() => validateBatch(prefix), 'CORRUPT_BATCH', `prefix of ${n} bytes`);
      }
      expect(() => validateBatch(batch)).not.toThrow();
    });

    it(`${name}: every prefix resealed (length and CRC made consistent) is still CORRUPT_BATCH`, () => {
      // Where the bytes left could hold the claimed records (7 bytes each at least), this
      // reaches the record parser: the outer checks pass, the records run short. Shorter
      // uncompressed prefixes are already refused by validation's record count bound.
      const count = readBatchHeader(batch).recordCount;
      let parsed = 0;
      for (let n = BATCH_OVERHEAD; n < batch.length; n++) {
        const cut = reseal(batch.subarray(0, n));
        if (name === 'gzip' || count * 7 <= n - BATCH_OVERHEAD) {
          validateBatch(cut);
          parsed++;
        } else {
          expect(expectDecodeError(() => validateBatch(cut), 'CORRUPT_BATCH').message).toMatch(/cannot fit in/);
        }
        expectDecodeError(() => decodeBatch(cut), 'CORRUPT_BATCH', `resealed prefix of ${n} bytes`);
      }
      expect(parsed).toBeGreaterThan((batch.length - BATCH_OVERHEAD) / 2);
    });
  }

  it('readBatchHeader: prefixes shorter than the header are CORRUPT_BATCH; longer ones read the same header', () => {
    const full = readBatchHeader(sample);
    for (let n = 0; n < sample.length; n++) {
      const prefix = sample.subarray(0, n);
      if (n < BATCH_OVERHEAD) expectDecodeError(() => readBatchHeader(prefix), 'CORRUPT_BATCH', `prefix of ${n} bytes`);
      else expect(readBatchHeader(prefix)).toEqual(full);
    }
  });

  it('batchSizeAt: -1 until the length field is in, then the whole size', () => {
    for (let n = 0; n <= sample.length; n++) {
      expect(batchSizeAt(sample.subarray(0, n))).toBe(n < LOG_OVERHEAD ? -1 : sample.length);
    }
  });

  it('splitBatches: a lone partial batch is skipped, not an error', () => {
    for (let n = 0; n < sample.length; n++) expect(splitBatches(sample.subarray(0, n))).toEqual([]);
  });
});

interface BadCase {
  name: string;
  batch: () => Buffer;
  /** What the message must say, so the test fails if a different check catches it by luck. */
  says: RegExp;
  /** True when validateBatch (no per-record work) must already refuse it. */
  caughtByValidation: boolean;
}

function patched(batch: Buffer, patch: (b: Buffer) => void, resealAfter = false): Buffer {
  const b = Buffer.from(batch);
  patch(b);
  return resealAfter ? reseal(b) : b;
}

const BAD_CASES: BadCase[] = [
  { name: 'bad magic', batch: () => patched(sample, (b) => b.writeInt8(1, OFFSET_MAGIC)), says: /magic 1, expected 2/, caughtByValidation: true },
  { name: 'bad CRC', batch: () => patched(sample, (b) => (b[OFFSET_CRC + 3] ^= 0x01)), says: /CRC-32C mismatch/, caughtByValidation: true },
  {
    name: 'length field one too big',
    batch: () => patched(sample, (b) => b.writeInt32BE(b.length - LOG_OVERHEAD + 1, OFFSET_LENGTH)),
    says: /length field says/,
    caughtByValidation: true,
  },
  {
    name: 'length field one too small',
    batch: () => patched(sample, (b) => b.writeInt32BE(b.length - LOG_OVERHEAD - 1, OFFSET_LENGTH)),
    says: /length field says/,
    caughtByValidation: true,
  },
  { name: 'length field negative', batch: () => patched(sample, (b) => b.writeInt32BE(-5, OFFSET_LENGTH)), says: /length field says/, caughtByValidation: true },
  { name: 'length field at int32 max', batch: () => patched(sample, (b) => b.writeInt32BE(0x7fffffff, OFFSET_LENGTH)), says: /length field says/, caughtByValidation: true },
  { name: 'shorter than the header', batch: () => Buffer.alloc(BATCH_OVERHEAD - 1), says: /shorter than its 61-byte header/, caughtByValidation: true },
  {
    name: 'record count 0',
    batch: () => patched(sample, (b) => b.writeInt32BE(0, OFFSET_RECORD_COUNT), true),
    says: /record count 0/,
    caughtByValidation: true,
  },
  {
    name: 'record count negative',
    batch: () => patched(sample, (b) => b.writeInt32BE(-3, OFFSET_RECORD_COUNT), true),
    says: /record count -3/,
    caughtByValidation: true,
  },
  {
    name: 'record count above last offset delta + 1',
    batch: () => patched(sample, (b) => b.writeInt32BE(4, OFFSET_RECORD_COUNT), true),
    says: /record count 4 does not fit last offset delta 2/,
    caughtByValidation: true,
  },
  {
    name: 'record count above the records present (offset span widened to match)',
    batch: () =>
      patched(
        sample,
        (b) => {
          b.writeInt32BE(4, OFFSET_RECORD_COUNT);
          b.writeInt32BE(3, OFFSET_LAST_OFFSET_DELTA);
        },
        true,
      ),
    says: /truncated varint/,
    caughtByValidation: false,
  },
  {
    name: 'record count below the records present',
    batch: () => rawBatch([...rawRecord(goodBody(0)), ...rawRecord(goodBody(1))], { count: 1, lastOffsetDelta: 1 }),
    says: /bytes left after 1 records/,
    caughtByValidation: false,
  },
  {
    name: 'record count far above what the bytes could hold',
    batch: () => rawBatch(rawRecord(goodBody()), { count: 0x7fffffff, lastOffsetDelta: 0x7fffffff }),
    says: /record count 2147483647 cannot fit in 9 bytes/,
    caughtByValidation: true,
  },
  {
    // 70 bytes claiming a billion offsets: validation must refuse it, since the broker
    // stores batches without decoding them.
    name: 'a 70-byte uncompressed batch claiming 1e9 records',
    batch: () => rawBatch(rawRecord(goodBody()), { count: 1e9 }),
    says: /record count 1000000000 cannot fit in 9 bytes/,
    caughtByValidation: true,
  },
  {
    // Three smallest records (7 bytes each) hold 21 bytes: a count of 4 is one too many.
    name: 'record count one above what smallest records could fill',
    batch: () => rawBatch([0, 1, 2].flatMap((i) => rawRecord(smallestBody(i))), { count: 4 }),
    says: /record count 4 cannot fit in 21 bytes/,
    caughtByValidation: true,
  },
  {
    name: 'compressed batch claiming 2^31-1 records',
    batch: () => rawBatch(gzipSync(Buffer.from(rawRecord(goodBody()))), { attributes: Compression.Gzip, count: 0x7fffffff }),
    says: /record count 2147483647 of a compressed batch is above 9586980/,
    caughtByValidation: true,
  },
  {
    name: 'compressed batch claiming one record above the cap',
    batch: () => rawBatch(gzipSync(Buffer.from(rawRecord(goodBody()))), { attributes: Compression.Gzip, count: COMPRESSED_RECORD_COUNT_MAX + 1 }),
    says: /record count 9586981 of a compressed batch is above 9586980/,
    caughtByValidation: true,
  },
  {
    // At the cap, validation lets it through; the count check after inflating catches it.
    name: 'compressed batch claiming exactly the cap',
    batch: () => rawBatch(gzipSync(Buffer.from(rawRecord(goodBody()))), { attributes: Compression.Gzip, count: COMPRESSED_RECORD_COUNT_MAX }),
    says: /record count 9586980 cannot fit in 9 bytes/,
    caughtByValidation: false,
  },
  {
    name: 'varint longer than 10 bytes',
    batch: () => rawBatch([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
    says: /varint longer than 10 bytes/,
    caughtByValidation: false,
  },
  {
    name: 'varint of 10 bytes past 2^53',
    batch: () => rawBatch([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
    says: /varint outside the safe integer range/,
    caughtByValidation: false,
  },
  {
    name: 'negative record length',
    batch: () => rawBatch([...varint(-2), ...goodBody()]),
    says: /negative record length -2/,
    caughtByValidation: false,
  },
  {
    name: 'record length running past the end',
    batch: () => rawBatch([...varint(goodBody().length + 1), ...goodBody()]),
    says: /record length \d+ runs past the end/,
    caughtByValidation: false,
  },
  {
    name: 'record length shorter than its fields',
    batch: () => rawBatch([...varint(goodBody().length - 1), ...goodBody()]),
    // The last field (header count) falls outside the record's declared span.
    says: /truncated varint/,
    caughtByValidation: false,
  },
  {
    name: 'record length longer than its fields',
    batch: () => rawBatch([...varint(goodBody().length + 1), ...goodBody(), 0]),
    says: /record declared \d+ bytes, used \d+/,
    caughtByValidation: false,
  },
  {
    name: 'key length -2',
    batch: () => rawBatch(rawRecord([0, ...varint(0), ...varint(0), ...varint(-2), ...key('v'), ...varint(0)])),
    says: /negative length -2/,
    caughtByValidation: false,
  },
  {
    name: 'value length running past the end',
    batch: () => rawBatch(rawRecord([0, ...varint(0), ...varint(0), ...key('k'), ...varint(1000), 1, 2, 3])),
    says: /length 1000 runs past the end/,
    caughtByValidation: false,
  },
  {
    name: 'offset delta above the last offset delta',
    batch: () => rawBatch(rawRecord(goodBody(1))),
    says: /offset delta 1 outside the batch/,
    caughtByValidation: false,
  },
  {
    name: 'negative offset delta',
    batch: () => rawBatch(rawRecord(goodBody(-1))),
    says: /offset delta -1 outside the batch/,
    caughtByValidation: false,
  },
  {
    name: 'negative header count',
    batch: () => rawBatch(rawRecord([0, ...varint(0), ...varint(0), ...key('k'), ...key('v'), ...varint(-1)])),
    says: /bad header count -1/,
    caughtByValidation: false,
  },
  {
    name: 'header count above the bytes left',
    batch: () => rawBatch(rawRecord([0, ...varint(0), ...varint(0), ...key('k'), ...key('v'), ...varint(1_000_000)])),
    says: /bad header count 1000000/,
    caughtByValidation: false,
  },
  {
    name: 'null header name',
    batch: () => rawBatch(rawRecord([0, ...varint(0), ...varint(0), ...key('k'), ...key('v'), ...varint(1), ...varint(-1), ...key('x')])),
    says: /null header name/,
    caughtByValidation: false,
  },
  {
    name: 'base offset beyond 2^53',
    batch: () => patched(sample, (b) => b.writeBigInt64BE(2n ** 60n, OFFSET_BASE)),
    says: /int64 outside the safe integer range/,
    caughtByValidation: false,
  },
  {
    name: 'bad gzip payload',
    batch: () => rawBatch(Buffer.from('this is not gzip'), { attributes: Compression.Gzip }),
    says: /gzip payload does not decompress/,
    caughtByValidation: false,
  },
  {
    name: 'gzip payload cut short',
    batch: () => {
      const zipped = gzipSync(Buffer.from(rawRecord(goodBody())));
      return rawBatch(zipped.subarray(0, zipped.length - 5), { attributes: Compression.Gzip });
    },
    says: /gzip payload does not decompress/,
    caughtByValidation: false,
  },
  {
    name: 'gzip payload decompressing to too few records',
    batch: () => {
      const longValue = [0, ...varint(0), ...varint(0), ...key('k'), ...key('v'.repeat(40)), ...varint(0)];
      return rawBatch(gzipSync(Buffer.from(rawRecord(longValue))), { attributes: Compression.Gzip, count: 2 });
    },
    says: /truncated varint/,
    caughtByValidation: false,
  },
  {
    name: 'snappy codec (not supported)',
    batch: () => rawBatch(rawRecord(goodBody()), { attributes: Compression.Snappy }),
    says: /compression codec 2 is not supported/,
    caughtByValidation: false,
  },
  {
    name: 'zstd codec (not supported)',
    batch: () => rawBatch(rawRecord(goodBody()), { attributes: Compression.Zstd }),
    says: /compression codec 4 is not supported/,
    caughtByValidation: false,
  },
  {
    name: 'lz4 codec (not supported)',
    batch: () => rawBatch(rawRecord(goodBody()), { attributes: Compression.Lz4 }),
    says: /compression codec 3 is not supported/,
    caughtByValidation: false,
  },
  ...[5, 6, 7].map(
    (codec): BadCase => ({
      name: `codec ${codec} (no such codec)`,
      batch: () => rawBatch(rawRecord(goodBody()), { attributes: codec }),
      says: new RegExp(`unknown compression codec ${codec}`),
      caughtByValidation: true,
    }),
  ),
  {
    // Bits above the codec do not hide it: transactional (0x10) with codec 6.
    name: 'codec 6 under other attribute bits',
    batch: () => rawBatch(rawRecord(goodBody()), { attributes: 0x10 | 6 }),
    says: /unknown compression codec 6/,
    caughtByValidation: true,
  },
];

describe('bad inputs, each with its typed error', () => {
  it.each(BAD_CASES)('$name', ({ batch, says, caughtByValidation }) => {
    const bytes = batch();
    const err = expectDecodeError(() => decodeBatch(bytes), 'CORRUPT_BATCH');
    expect(err.message).toMatch(says);
    expect(err.retriable).toBe(true);
    if (caughtByValidation) {
      expect(expectDecodeError(() => validateBatch(bytes), 'CORRUPT_BATCH').message).toMatch(says);
    } else {
      // Behind the CRC, or a field the broker overwrites: validation, which does no
      // per-record work, lets it through.
      expect(() => validateBatch(bytes)).not.toThrow();
    }
  });
});

describe('decompression bound', () => {
  // One record whose value is 1 MiB of zeros: gzip at level 1 makes it under 8 KiB.
  const zeros = encodeBatch([{ key: null, value: Buffer.alloc(1024 * 1024), timestamp: T0 }], { compression: Compression.Gzip });
  const inflatedBytes = gunzipSync(zeros.subarray(BATCH_OVERHEAD)).length;

  it('a batch inflating to exactly decompressedBytesMax decodes; one byte less refuses it', () => {
    expect(zeros.length).toBeLessThan(8192);
    expect(decodeBatch(zeros, { decompressedBytesMax: inflatedBytes }).records[0].value?.length).toBe(1024 * 1024);
    const err = expectDecodeError(() => decodeBatch(zeros, { decompressedBytesMax: inflatedBytes - 1 }), 'CORRUPT_BATCH');
    expect(err.message).toMatch(new RegExp(`decompresses past ${inflatedBytes - 1} bytes`));
    expect(err.at).toBe(BATCH_OVERHEAD);
  });

  it('a small gzip of many zeros is refused at the 64 MiB default', () => {
    // 64 MiB + 1 of zeros deflates to about 64 KiB; decoding it must stop at the limit.
    const payload = gzipSync(Buffer.alloc(64 * 1024 * 1024 + 1), { level: 9 });
    expect(payload.length).toBeLessThan(128 * 1024);
    const bomb = rawBatch(payload, { attributes: Compression.Gzip });
    validateBatch(bomb);
    expect(expectDecodeError(() => decodeBatch(bomb), 'CORRUPT_BATCH').message).toMatch(/gzip payload decompresses past 67108864 bytes/);
  });

  it('a bad decompressedBytesMax is a configuration error, not a corrupt batch', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      let thrown: unknown;
      try {
        decodeBatch(zeros, { decompressedBytesMax: bad });
      } catch (err) {
        thrown = err;
      }
      expect(thrown, String(bad)).toBeInstanceOf(TributaryError);
      expect((thrown as TributaryError).errorName).toBe('INVALID_CONFIG');
    }
  });

  it('an uncompressed batch ignores the bound: nothing is inflated', () => {
    const plain = encodeBatch([{ key: null, value: Buffer.alloc(1000), timestamp: T0 }]);
    expect(decodeBatch(plain, { decompressedBytesMax: 1 }).records).toHaveLength(1);
  });
});

describe('bit flips', () => {
  // Offsets 0..7 (base offset) and 12..15 (leader epoch) lie outside the CRC by Kafka's
  // design: the broker rewrites them in place. Every other byte is guarded, by the length
  // check (8..11), the magic check (16), or CRC-32C, which catches every single-bit error.
  const outsideCrc = (i: number): boolean => (i >= OFFSET_BASE && i < OFFSET_LENGTH) || (i >= OFFSET_LEADER_EPOCH && i < OFFSET_MAGIC);

  for (const [name, batch] of [
    ['uncompressed', sample],
    ['gzip', sampleGzip],
  ] as const) {
    it(`${name}: every single-bit flip inside the checked span is caught by validateBatch`, () => {
      let caught = 0;
      for (let i = 0; i < batch.length; i++) {
        if (outsideCrc(i)) continue;
        for (let bit = 0; bit < 8; bit++) {
          const flipped = Buffer.from(batch);
          flipped[i] ^= 1 << bit;
          expectDecodeError(() => validateBatch(flipped), 'CORRUPT_BATCH', `byte ${i} bit ${bit}`);
          expectDecodeError(() => decodeBatch(flipped), 'CORRUPT_BATCH', `byte ${i} bit ${bit}`);
          caught++;
        }
      }
      expect(caught).toBe((batch.length - 12) * 8);
    });
  }

  it('flips in the base offset and leader epoch pass validation and show in the header, by design', () => {
    for (let i = 0; i < sample.length; i++) {
      if (!outsideCrc(i)) continue;
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(sample);
        flipped[i] ^= 1 << bit;
        validateBatch(flipped);
        const baseOffset = flipped.readBigInt64BE(OFFSET_BASE);
        if (baseOffset > BigInt(Number.MAX_SAFE_INTEGER) || baseOffset < BigInt(Number.MIN_SAFE_INTEGER)) {
          // A high bit puts the base offset past 2^53: refused when read, never rounded.
          expectDecodeError(() => readBatchHeader(flipped), 'CORRUPT_BATCH', `byte ${i} bit ${bit}`);
          continue;
        }
        const header = readBatchHeader(flipped);
        expect(header.baseOffset).toBe(Number(baseOffset));
        expect(header.partitionLeaderEpoch).toBe(flipped.readInt32BE(OFFSET_LEADER_EPOCH));
        expect(header.baseOffset !== 1000 || header.partitionLeaderEpoch !== 4).toBe(true);
      }
    }
  });

  it('every single-bit flip in the records, resealed, decodes or gives CORRUPT_BATCH: nothing else', () => {
    let refused = 0;
    for (let i = BATCH_OVERHEAD; i < sample.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(sample);
        flipped[i] ^= 1 << bit;
        try {
          decodeBatch(reseal(flipped));
        } catch (err) {
          expect(err, `byte ${i} bit ${bit}`).toBeInstanceOf(DecodeError);
          expect((err as DecodeError).errorName).toBe('CORRUPT_BATCH');
          refused++;
        }
      }
    }
    // Most flips break the structure (lengths, deltas); flips inside key/value bytes do not.
    expect(refused).toBeGreaterThan(0);
  });
});

describe('split chunks', () => {
  const batches = [
    encodeBatch([{ key: null, value: Buffer.from('a'), timestamp: T0 }], { baseOffset: 0 }),
    encodeBatch(sampleRecords(), { baseOffset: 1 }),
    encodeBatch(sampleRecords(), { baseOffset: 4, compression: Compression.Gzip }),
    encodeBatch([{ key: Buffer.from('big'), value: Buffer.alloc(5000, 7), timestamp: T0 }], { baseOffset: 7 }),
  ];
  const all = Buffer.concat(batches);
  const ends = batches.reduce<number[]>((acc, b) => [...acc, (acc.at(-1) ?? 0) + b.length], []);

  it('splits a concatenation into the batches, bytes untouched', () => {
    const parts = splitBatches(all);
    expect(parts.map((p) => p.toString('hex'))).toEqual(batches.map((b) => b.toString('hex')));
    expect(parts.map((p) => decodeBatch(p).header.baseOffset)).toEqual([0, 1, 4, 7]);
  });

  it('cut at every byte position: the whole batches before the cut, the partial one skipped', () => {
    for (let cut = 0; cut <= all.length; cut++) {
      const whole = ends.filter((end) => end <= cut).length;
      const parts = splitBatches(all.subarray(0, cut));
      expect(parts.length, `cut at ${cut}`).toBe(whole);
      parts.forEach((p, i) => expect(p.equals(batches[i])).toBe(true));
    }
  });

  it('fed one byte at a time into a growing buffer, each batch appears exactly when its last byte arrives', () => {
    let pending = Buffer.alloc(0);
    const seen: Buffer[] = [];
    for (let i = 0; i < all.length; i++) {
      pending = Buffer.concat([pending, all.subarray(i, i + 1)]);
      const parts = splitBatches(pending);
      for (const p of parts) {
        expect(i + 1, 'batch completed at the wrong byte').toBe(ends[seen.length]);
        seen.push(Buffer.from(p));
      }
      const used = parts.reduce((n, p) => n + p.length, 0);
      pending = pending.subarray(used);
    }
    expect(seen.map((b) => b.toString('hex'))).toEqual(batches.map((b) => b.toString('hex')));
    expect(pending.length).toBe(0);
  });

  it('a length field below the header size is CORRUPT_BATCH, not a partial batch to wait for', () => {
    for (const length of [0, 1, BATCH_OVERHEAD - LOG_OVERHEAD - 1, -1, -12, -13, -(2 ** 31)]) {
      const bad = Buffer.from(all);
      bad.writeInt32BE(length, batches[0].length + OFFSET_LENGTH);
      const err = expectDecodeError(() => splitBatches(bad), 'CORRUPT_BATCH', `length field ${length}`);
      expect(err.at).toBe(batches[0].length);
      // batchSizeAt never answers -1 ("need more bytes") once the length field is in.
      expect(batchSizeAt(bad, batches[0].length)).not.toBe(-1);
      expect(batchSizeAt(bad, batches[0].length)).toBeLessThan(BATCH_OVERHEAD);
    }
  });
});

describe('seeded garbage', () => {
  it.each(testSeeds([11, 12, 13]))('seed %i: random bytes give CORRUPT_BATCH or decode, never another error', (seed) => {
    withSeed(seed, (rng) => {
      for (let round = 0; round < 2000; round++) {
        const kind = rng.int(0, 2);
        let bytes: Buffer;
        if (kind === 0) {
          // Pure noise of any size.
          bytes = rng.bytes(rng.int(0, 200));
        } else {
          // A valid header, random records behind a correct CRC: the parser sees it all.
          const records = rng.bytes(rng.int(0, 120));
          bytes = rawBatch(records, { count: rng.int(1, 5), attributes: rng.pick([0, 0, 0, 1]) });
          if (kind === 2) bytes = reseal(Buffer.concat([sample.subarray(0, rng.int(BATCH_OVERHEAD, sample.length)), records]));
        }
        for (const fn of [decodeBatch, validateBatch, readBatchHeader, splitBatches]) {
          try {
            fn(bytes);
          } catch (err) {
            if (!(err instanceof DecodeError) || err.errorName !== 'CORRUPT_BATCH') {
              throw new Error(`${fn.name} threw ${String(err)} on ${bytes.toString('hex')}`, { cause: err });
            }
          }
        }
      }
    });
  });
});

// ---------------------------------------------------------------------------------------
// validateRecords: the node's check of a producer's batch, records and all (Kafka's
// LogValidator). Each bad batch is resealed, so the outer checks pass and only the record
// check can catch it; the gzip ones hold their bad records inside a correct gzip stream.

/** Offset deltas of the records, each a well-formed record with a 12-byte value. */
function recordsWithDeltas(deltas: number[]): number[] {
  return deltas.flatMap((d) => rawRecord([0, ...varint(0), ...varint(d), ...key('k'), ...key('v'.repeat(12)), ...varint(0)]));
}

const gzipBatch = (records: number[], opts: { count?: number; lastOffsetDelta?: number } = {}): Buffer =>
  rawBatch(gzipSync(Buffer.from(records)), { ...opts, attributes: Compression.Gzip });

/** A gzip payload of `inflatedBytes` zeros: a bomb past any bound below that. */
function gzipBomb(inflatedBytes: number): Buffer {
  return rawBatch(gzipSync(Buffer.alloc(inflatedBytes), { level: 9 }), { attributes: Compression.Gzip });
}

const RECORDS_BYTES_MAX = 64 * 1024;

interface RecordsCase {
  name: string;
  batch: () => Buffer;
  error: 'CORRUPT_BATCH' | 'UNSUPPORTED_COMPRESSION_TYPE';
  says: RegExp;
}

const RECORDS_CASES: RecordsCase[] = [
  {
    name: 'a gzip bomb past max.message.bytes',
    batch: () => gzipBomb(64 * 1024 * 1024),
    error: 'CORRUPT_BATCH',
    says: /gzip payload decompresses past 65536 bytes \(max\.message\.bytes\)/,
  },
  {
    name: 'fewer records than the header counts',
    batch: () => gzipBatch(recordsWithDeltas([0, 1]), { count: 3 }),
    error: 'CORRUPT_BATCH',
    says: /the header counts 3 records, the records hold 2/,
  },
  {
    name: 'more records than the header counts',
    batch: () => gzipBatch(recordsWithDeltas([0, 1, 2]), { count: 2, lastOffsetDelta: 2 }),
    error: 'CORRUPT_BATCH',
    says: /\d+ bytes left after the 2 records the header counts/,
  },
  {
    name: 'a gap in the offset deltas',
    batch: () => gzipBatch(recordsWithDeltas([0, 2, 2]), { count: 3 }),
    error: 'CORRUPT_BATCH',
    says: /record 1 has offset delta 2 \(a gap\)/,
  },
  {
    name: 'a repeat in the offset deltas',
    batch: () => gzipBatch(recordsWithDeltas([0, 1, 1]), { count: 3 }),
    error: 'CORRUPT_BATCH',
    says: /record 2 has offset delta 1 \(a repeat\)/,
  },
  {
    name: 'offset deltas not starting at 0',
    batch: () => gzipBatch(recordsWithDeltas([1, 2]), { count: 2 }),
    error: 'CORRUPT_BATCH',
    says: /record 0 has offset delta 1 \(a gap\)/,
  },
  {
    name: 'a last offset delta past the last record',
    batch: () => gzipBatch(recordsWithDeltas([0, 1]), { count: 2, lastOffsetDelta: 5 }),
    error: 'CORRUPT_BATCH',
    says: /last offset delta 5 in the header, the last record's is 1/,
  },
  {
    name: 'trailing bytes after the records',
    batch: () => gzipBatch([...recordsWithDeltas([0, 1]), 0, 0, 0], { count: 2 }),
    error: 'CORRUPT_BATCH',
    says: /3 bytes left after the 2 records the header counts/,
  },
  {
    name: 'records that do not parse: a varint longer than 10 bytes',
    batch: () => gzipBatch([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
    error: 'CORRUPT_BATCH',
    says: /varint longer than 10 bytes/,
  },
  {
    name: 'records that do not parse: a value running past its record',
    batch: () => gzipBatch(rawRecord([0, ...varint(0), ...varint(0), ...key('k'), ...varint(1000), 1, 2, 3, 4, 5, 6, 7])),
    error: 'CORRUPT_BATCH',
    says: /length 1000 runs past the end of the record/,
  },
  {
    name: 'a gzip payload that is not gzip',
    batch: () => rawBatch(Buffer.from('this is not gzip at all'), { attributes: Compression.Gzip }),
    error: 'CORRUPT_BATCH',
    says: /gzip payload does not decompress/,
  },
  {
    name: 'uncompressed, a gap in the offset deltas (the check reads records without inflating too)',
    batch: () => rawBatch(recordsWithDeltas([0, 2, 2]), { count: 3 }),
    error: 'CORRUPT_BATCH',
    says: /record 1 has offset delta 2 \(a gap\)/,
  },
  {
    name: 'a bad CRC: refused before anything is inflated',
    batch: () => patched(gzipBomb(64 * 1024 * 1024), (b) => (b[OFFSET_CRC] ^= 0x01)),
    error: 'CORRUPT_BATCH',
    says: /CRC-32C mismatch/,
  },
  ...(
    [
      ['snappy', Compression.Snappy],
      ['lz4', Compression.Lz4],
      ['zstd', Compression.Zstd],
    ] as const
  ).map(
    ([codec, value]): RecordsCase => ({
      name: `${codec}, which this node cannot inflate`,
      batch: () => rawBatch(recordsWithDeltas([0]), { attributes: value }),
      error: 'UNSUPPORTED_COMPRESSION_TYPE',
      says: new RegExp(`compression codec ${codec} \\(${value}\\) cannot be inflated on this node`),
    }),
  ),
];

describe('validateRecords: bad batches, each with its typed error', () => {
  it.each(RECORDS_CASES)('$name', ({ batch, error, says }) => {
    const bytes = batch();
    const err = expectDecodeError(() => validateRecords(bytes, RECORDS_BYTES_MAX), error);
    expect(err.message).toMatch(says);
    expect(err.retriable).toBe(error === 'CORRUPT_BATCH');
  });

  it('a bomb past max.message.bytes is an InflateBoundError at that bound: all the caller pays', () => {
    const err = expectDecodeError(() => validateRecords(gzipBomb(64 * 1024 * 1024), RECORDS_BYTES_MAX), 'CORRUPT_BATCH');
    expect(err).toBeInstanceOf(InflateBoundError);
    expect((err as InflateBoundError).boundBytes).toBe(RECORDS_BYTES_MAX);
  });

  it('a lower inflate bound (a budget) stops it there, named as the given bound, not max.message.bytes', () => {
    const err = expectDecodeError(() => validateRecords(gzipBomb(1024 * 1024), RECORDS_BYTES_MAX, 1000), 'CORRUPT_BATCH');
    expect(err).toBeInstanceOf(InflateBoundError);
    expect((err as InflateBoundError).boundBytes).toBe(1000);
    expect(err.message).toMatch(/decompresses past 1000 bytes \(the bound this check was given\)/);
    // A bound of 0 inflates nothing, after the CRC is checked.
    expect((expectDecodeError(() => validateRecords(gzipBomb(10), RECORDS_BYTES_MAX, 0), 'CORRUPT_BATCH') as InflateBoundError).boundBytes).toBe(0);
  });

  it('the bound is inclusive: records inflating to exactly max.message.bytes pass, one byte less refuses', () => {
    const batch = encodeBatch([{ key: null, value: Buffer.alloc(60_000), timestamp: T0 }], { compression: Compression.Gzip });
    const inflated = gunzipSync(batch.subarray(BATCH_OVERHEAD)).length;
    expect(validateRecords(batch, inflated)).toEqual({ inflatedBytes: inflated });
    expect(expectDecodeError(() => validateRecords(batch, inflated - 1), 'CORRUPT_BATCH')).toBeInstanceOf(InflateBoundError);
  });

  it('every bad case of the decoder table is refused by validateRecords too, with a typed error', () => {
    // The table's snappy, lz4 and zstd batches are otherwise valid: those are unsupported.
    for (const { name, batch } of BAD_CASES) {
      const unsupported = /^(snappy|lz4|zstd) codec/.test(name);
      expectDecodeError(() => validateRecords(batch(), RECORDS_BYTES_MAX), unsupported ? 'UNSUPPORTED_COMPRESSION_TYPE' : 'CORRUPT_BATCH', name);
    }
  });
});

describe('validateRecords: good batches pass', () => {
  it('our encoder, gzip and uncompressed: inflatedBytes is what gzip held, 0 when nothing is inflated', () => {
    expect(validateRecords(sampleGzip, RECORDS_BYTES_MAX)).toEqual({ inflatedBytes: gunzipSync(sampleGzip.subarray(BATCH_OVERHEAD)).length });
    expect(validateRecords(sample, RECORDS_BYTES_MAX)).toEqual({ inflatedBytes: 0 });
    expect(decodeBatch(sampleGzip).inflatedBytes).toBe(validateRecords(sampleGzip, RECORDS_BYTES_MAX).inflatedBytes);
  });

  it.each(testSeeds([21, 22]))('seed %i: random batches of our encoder pass, whatever their records', (seed) => {
    withSeed(seed, (rng) => {
      for (let round = 0; round < 200; round++) {
        const records: Record[] = Array.from({ length: rng.int(1, 50) }, (_, i) => ({
          key: rng.bool(0.2) ? null : rng.bytes(rng.int(0, 40)),
          value: rng.bool(0.1) ? null : rng.bytes(rng.int(0, 300)),
          timestamp: T0 + rng.int(-5000, 5000) + i,
          headers: rng.bool(0.3) ? [['h', rng.bytes(rng.int(0, 10))]] : undefined,
        }));
        const compression = rng.pick([Compression.None, Compression.Gzip]);
        const batch = encodeBatch(records, { compression, baseOffset: rng.pick([0, 7, 2 ** 50]) });
        validateRecords(batch, 1024 * 1024);
      }
    });
  });
});

describe('validateRecords tortured', () => {
  for (const [name, batch] of [
    ['uncompressed', sample],
    ['gzip', sampleGzip],
  ] as const) {
    it(`${name}: every resealed prefix is CORRUPT_BATCH`, () => {
      for (let n = 0; n < batch.length; n++) {
        expectDecodeError(() => validateRecords(reseal(batch.subarray(0, Math.max(n, BATCH_OVERHEAD))), RECORDS_BYTES_MAX), 'CORRUPT_BATCH', `prefix of ${n} bytes`);
        expectDecodeError(() => validateRecords(batch.subarray(0, n), RECORDS_BYTES_MAX), 'CORRUPT_BATCH', `prefix of ${n} bytes`);
      }
    });
  }

  it('every single-bit flip in the records (inflated, then gzipped again and resealed) passes or is CORRUPT_BATCH', () => {
    const inflated = gunzipSync(sampleGzip.subarray(BATCH_OVERHEAD));
    const count = readBatchHeader(sampleGzip).recordCount;
    let refused = 0;
    for (let i = 0; i < inflated.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(inflated);
        flipped[i] ^= 1 << bit;
        try {
          validateRecords(gzipBatch([...flipped], { count }), RECORDS_BYTES_MAX);
        } catch (err) {
          expect(err, `byte ${i} bit ${bit}`).toBeInstanceOf(DecodeError);
          expect((err as DecodeError).errorName).toBe('CORRUPT_BATCH');
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it.each(testSeeds([31, 32]))('seed %i: random records behind a correct CRC, gzip or not: CORRUPT_BATCH or pass, nothing else', (seed) => {
    withSeed(seed, (rng) => {
      for (let round = 0; round < 2000; round++) {
        const records = rng.bytes(rng.int(0, 120));
        const count = rng.int(1, 5);
        const bytes = rng.bool() ? rawBatch(records, { count }) : gzipBatch([...records], { count });
        try {
          validateRecords(bytes, rng.pick([1, 100, RECORDS_BYTES_MAX]));
        } catch (err) {
          if (!(err instanceof DecodeError) || err.errorName !== 'CORRUPT_BATCH') {
            throw new Error(`validateRecords threw ${String(err)} on ${bytes.toString('hex')}`, { cause: err });
          }
        }
      }
    });
  });
});
