// Our RecordBatch v2 codec against an outside implementation, kafkajs, both ways:
//   (a) batches kafkajs encodes decode with ours to the same records;
//   (b) batches ours encodes decode with kafkajs's decoder to the same records, and their
//       CRC checks out under kafkajs's own (pure JS) CRC-32C;
//   (c) uncompressed, both encoders write the same bytes for the same input;
//   and every batch kafkajs encodes passes the node's produce check (validateRecords).
// And the committed golden vectors (testdata/record-batch-vectors.json, made by kafkajs),
// so that any change to the bytes we write is a visible decision in review.
//
// To regenerate the vectors after a deliberate format change:
//   TRIBUTARY_WRITE_VECTORS=1 npx vitest run protocol/kafkajs-compat.test.ts
// which rewrites the JSON from VECTOR_SPECS below with what kafkajs encodes.

import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Compression, decodeBatch, encodeBatch, OFFSET_ATTRIBUTES, OFFSET_CRC, TimestampType, validateBatch, validateRecords } from './record-batch.js';
import type { DecodedRecord, EncodeOptions, Header, Record } from './record-batch.js';
import { testSeeds, withSeedAsync } from './testdata/helpers.js';
import type { Rng } from './testdata/helpers.js';
import {
  headersAsKafkaObject,
  KAFKAJS_VERSION,
  KafkaCompression,
  kafkajsCrc32c,
  kafkajsDecode,
  kafkajsEncode,
} from './testdata/kafkajs.js';
import type { KafkaBatchSpec, KafkaDecodedBatch, KafkaRecordSpec } from './testdata/kafkajs.js';

const VECTORS_URL = new URL('./testdata/record-batch-vectors.json', import.meta.url);
/** The node's default max.message.bytes (node/storage/config.ts). */
const MAX_MESSAGE_BYTES_DEFAULT = 1024 * 1024 + 12;

// ---------------------------------------------------------------------------------------
// Golden vectors: inputs in JSON (bytes as hex), and the batch kafkajs encodes from them.

interface VectorRecord {
  key: string | null;
  value: string | null;
  timestamp: number;
  headers: [string, string][];
}

interface VectorInput {
  name: string;
  compression: 'none' | 'gzip';
  baseOffset: number;
  partitionLeaderEpoch: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  transactional: boolean;
  /** kafkajs's base timestamp: the first record's, as Java's producer does. */
  firstTimestamp: number;
  records: VectorRecord[];
  /** Whether our encoder must reproduce `hex` byte for byte; when not, `why`. */
  ourEncoderMatches: boolean;
  why?: string;
}

interface Vector extends VectorInput {
  hex: string;
}

interface VectorFile {
  about: string;
  producer: string;
  vectors: Vector[];
}

const T0 = 1_700_000_000_000;
const hexOf = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

function defaults(name: string, records: VectorRecord[]): VectorInput {
  return {
    name,
    compression: 'none',
    baseOffset: 0,
    partitionLeaderEpoch: 0,
    producerId: -1,
    producerEpoch: 0,
    baseSequence: 0,
    transactional: false,
    firstTimestamp: records[0].timestamp,
    records,
    ourEncoderMatches: true,
  };
}

const rec = (key: string | null, value: string | null, timestamp: number, headers: [string, string][] = []): VectorRecord => ({
  key: key === null ? null : hexOf(key),
  value: value === null ? null : hexOf(value),
  timestamp,
  headers: headers.map(([n, v]) => [n, hexOf(v)]),
});

/** The generator's inputs. Edit, then regenerate (see the top of this file). */
const VECTOR_SPECS: VectorInput[] = [
  defaults('one keyed record', [rec('k', 'v', T0)]),
  defaults('null key and tombstone value', [rec(null, 'no key', T0), rec('gone', null, T0 + 1)]),
  defaults('empty key and empty value', [rec('', '', T0)]),
  defaults('headers, repeated header name', [
    rec('sensor-7', '{"t":21.5}', T0, [
      ['content-type', 'application/json'],
      ['trace', 'a'],
      ['trace', 'b'],
    ]),
    rec('sensor-8', '{"t":19}', T0 + 5, [['empty-value', '']]),
  ]),
  defaults('several records with timestamp deltas, 2-byte varints', [
    rec('a', 'x'.repeat(100), T0),
    rec('b', 'y'.repeat(200), T0 + 63),
    rec('c', 'z'.repeat(64), T0 + 64),
    rec('d', 'w', T0 + 100_000),
  ]),
  defaults('far-apart timestamps: delta past 2^32 ms', [rec('early', '1', 1_000), rec('late', '2', 1_000 + 2 ** 40 + 7)]),
  {
    ...defaults('idempotent producer fields and offsets', [rec('k1', 'v1', T0), rec('k2', 'v2', T0 + 1)]),
    baseOffset: 2 ** 40 + 3,
    partitionLeaderEpoch: 17,
    producerId: 123_456_789_012,
    producerEpoch: 3,
    baseSequence: 1000,
  },
  { ...defaults('transactional', [rec('k', 'in a transaction', T0)]), transactional: true },
  {
    ...defaults('negative timestamp delta: base is the first record, not the smallest', [rec('k', 'later', T0 + 50), rec('k', 'earlier', T0)]),
    ourEncoderMatches: false,
    why: 'our encoder takes the smallest timestamp as the base (all deltas >= 0); kafkajs here, like Java, the first record',
  },
  {
    ...defaults('gzip', [rec('k1', 'compressible '.repeat(20), T0), rec(null, 'compressible '.repeat(20), T0 + 1, [['h', 'v']])]),
    compression: 'gzip',
    ourEncoderMatches: false,
    why: 'gzip bytes depend on the deflate level (ours 1, kafkajs zlib default 6) and zlib version; only decoding is pinned',
  },
];

const bytesOrNull = (hex: string | null): Buffer | null => (hex === null ? null : Buffer.from(hex, 'hex'));

function kafkaSpecOf(v: VectorInput): KafkaBatchSpec {
  return {
    compression: v.compression === 'gzip' ? KafkaCompression.Gzip : KafkaCompression.None,
    firstOffset: v.baseOffset,
    firstTimestamp: v.firstTimestamp,
    partitionLeaderEpoch: v.partitionLeaderEpoch,
    producerId: v.producerId,
    producerEpoch: v.producerEpoch,
    firstSequence: v.baseSequence,
    transactional: v.transactional,
    records: v.records.map((r) => ({
      key: bytesOrNull(r.key),
      value: bytesOrNull(r.value),
      timestamp: r.timestamp,
      headers: r.headers.map(([n, h]) => [n, Buffer.from(h, 'hex')] as [string, Buffer]),
    })),
  };
}

function ourInputOf(v: VectorInput): { records: Record[]; options: EncodeOptions } {
  return {
    records: v.records.map((r) => ({
      key: bytesOrNull(r.key),
      value: bytesOrNull(r.value),
      timestamp: r.timestamp,
      headers: r.headers.map(([n, h]) => [n, Buffer.from(h, 'hex')] as Header),
    })),
    options: {
      baseOffset: v.baseOffset,
      partitionLeaderEpoch: v.partitionLeaderEpoch,
      producerId: v.producerId,
      producerEpoch: v.producerEpoch,
      baseSequence: v.baseSequence,
      isTransactional: v.transactional,
      compression: v.compression === 'gzip' ? Compression.Gzip : Compression.None,
    },
  };
}

async function generateVectorFile(): Promise<VectorFile> {
  const vectors: Vector[] = [];
  for (const spec of VECTOR_SPECS) {
    vectors.push({ ...spec, hex: (await kafkajsEncode(kafkaSpecOf(spec))).toString('hex') });
  }
  return {
    about:
      'RecordBatch v2 golden vectors. Inputs (bytes as hex) and the batch kafkajs encodes from them. ' +
      'Generated by protocol/kafkajs-compat.test.ts with TRIBUTARY_WRITE_VECTORS=1; do not edit by hand.',
    producer: `kafkajs ${KAFKAJS_VERSION}`,
    vectors,
  };
}

if (process.env.TRIBUTARY_WRITE_VECTORS === '1') {
  writeFileSync(VECTORS_URL, `${JSON.stringify(await generateVectorFile(), null, 2)}\n`);
}

const committed = JSON.parse(readFileSync(VECTORS_URL, 'utf8')) as VectorFile;

describe('golden vectors (testdata/record-batch-vectors.json)', () => {
  it('hold exactly the generator specs in this file, so neither drifts alone', () => {
    const inputs = committed.vectors.map(({ hex: _hex, ...input }) => input);
    expect(inputs).toEqual(VECTOR_SPECS);
    expect(committed.vectors.length).toBeGreaterThanOrEqual(10);
  });

  for (const vector of committed.vectors) {
    describe(vector.name, () => {
      const bytes = Buffer.from(vector.hex, 'hex');
      const { records, options } = ourInputOf(vector);

      it('is what kafkajs encodes today', async () => {
        const live = await kafkajsEncode(kafkaSpecOf(vector));
        if (vector.compression === 'none') {
          expect(live.toString('hex')).toBe(vector.hex);
        } else {
          // Compressed bytes follow the zlib build; the records inside must not change.
          expect(await kafkajsDecode(live)).toEqual(await kafkajsDecode(bytes));
        }
      });

      it('passes our validation and decodes with ours to its inputs', () => {
        validateBatch(bytes);
        // The node's produce check, records and all, within the default max.message.bytes.
        expect(validateRecords(bytes, MAX_MESSAGE_BYTES_DEFAULT).inflatedBytes > 0).toBe(vector.compression === 'gzip');
        const { header, records: decoded } = decodeBatch(bytes);
        expect(header.baseOffset).toBe(vector.baseOffset);
        expect(header.partitionLeaderEpoch).toBe(vector.partitionLeaderEpoch);
        expect(header.producerId).toBe(vector.producerId);
        expect(header.producerEpoch).toBe(vector.producerEpoch);
        expect(header.baseSequence).toBe(vector.baseSequence);
        expect(header.isTransactional).toBe(vector.transactional);
        expect(header.compression).toBe(options.compression);
        expect(header.timestampType).toBe(TimestampType.CreateTime);
        expect(header.baseTimestamp).toBe(vector.firstTimestamp);
        expect(header.maxTimestamp).toBe(Math.max(...vector.records.map((r) => r.timestamp)));
        expect(header.recordCount).toBe(vector.records.length);
        expectRecordsEqual(decoded, records, vector.baseOffset);
      });

      if (vector.ourEncoderMatches) {
        it('is what our encoder writes, byte for byte', () => {
          expect(encodeBatch(records, options).toString('hex')).toBe(vector.hex);
        });
      } else {
        it(`differs from our encoder's bytes for a stated reason: ${vector.why ?? '(none given)'}`, () => {
          // Asserting the difference keeps the flag honest: if the bytes ever match, this
          // vector should say so.
          expect(vector.why).toBeTruthy();
          const ours = encodeBatch(records, options);
          expect(ours.toString('hex')).not.toBe(vector.hex);
          expectRecordsEqual(decodeBatch(ours).records, records, vector.baseOffset);
        });
      }
    });
  }
});

function expectRecordsEqual(decoded: readonly DecodedRecord[], expected: readonly Record[], baseOffset: number): void {
  expect(decoded.length).toBe(expected.length);
  decoded.forEach((d, i) => {
    const e = expected[i];
    expect(d.offset).toBe(baseOffset + i);
    expect(d.timestamp).toBe(e.timestamp);
    expect(d.key === null ? null : d.key.toString('hex')).toBe(e.key == null ? null : Buffer.from(e.key).toString('hex'));
    expect(d.value === null ? null : d.value.toString('hex')).toBe(e.value === null ? null : Buffer.from(e.value).toString('hex'));
    const headers = (e.headers ?? []).map(([n, v]) => [n, v === null ? null : Buffer.from(v).toString('hex')]);
    expect(d.headers.map(([n, v]) => [n, v === null ? null : Buffer.from(v).toString('hex')])).toEqual(headers);
  });
}

// ---------------------------------------------------------------------------------------
// Live checks, both ways, on seeded random batches.

/** Random records within what kafkajs can encode: non-null header values, adjacent repeats. */
function randomKafkaRecords(rng: Rng, timestamps: 'non-decreasing' | 'any'): KafkaRecordSpec[] {
  const count = rng.int(1, 40);
  let ts = rng.int(0, 2 ** 41);
  const records: KafkaRecordSpec[] = [];
  for (let i = 0; i < count; i++) {
    ts += timestamps === 'any' ? rng.pick([0, 1, -1, 1000, -70_000, 2 ** 33, -(2 ** 20)]) : rng.pick([0, 0, 1, 63, 64, 8191, 8192, 2 ** 35]);
    const headers: [string, Buffer][] = [];
    const headerNames = rng.int(0, 3);
    for (let h = 0; h < headerNames; h++) {
      const name = rng.pick(['trace', 'content-type', 'h', 'ünïcödé', '']) + (h === 0 ? '' : `-${h}`);
      const repeats = rng.int(1, 2);
      for (let k = 0; k < repeats; k++) headers.push([name, rng.bytes(rng.pick([0, 1, 30, 200]))]);
    }
    records.push({
      key: rng.bool(0.2) ? null : rng.bytes(rng.pick([0, 1, 8, 16, 63, 64, 300])),
      value: rng.bool(0.1) ? null : rng.bytes(rng.pick([0, 1, 100, 127, 128, 1000, 5000])),
      timestamp: ts,
      headers,
    });
  }
  return records;
}

function kafkaBatchSpec(rng: Rng, records: KafkaRecordSpec[], compression: number): KafkaBatchSpec {
  return {
    compression,
    firstOffset: rng.pick([0, 1, 123_456, 2 ** 40 - 1]),
    firstTimestamp: records[0].timestamp,
    partitionLeaderEpoch: rng.int(0, 1000),
    producerId: rng.pick([-1, 0, 99, 2 ** 45]),
    producerEpoch: rng.int(0, 32767),
    firstSequence: rng.int(0, 2 ** 31 - 1),
    transactional: rng.bool(0.2),
    records,
  };
}

function ourOptionsFor(spec: KafkaBatchSpec): EncodeOptions {
  return {
    baseOffset: spec.firstOffset,
    partitionLeaderEpoch: spec.partitionLeaderEpoch,
    producerId: spec.producerId,
    producerEpoch: spec.producerEpoch,
    baseSequence: spec.firstSequence,
    isTransactional: spec.transactional,
    compression: spec.compression === KafkaCompression.Gzip ? Compression.Gzip : Compression.None,
  };
}

function expectKafkaDecoded(theirs: KafkaDecodedBatch, spec: KafkaBatchSpec): void {
  expect(theirs.firstOffset).toBe(String(spec.firstOffset));
  expect(theirs.partitionLeaderEpoch).toBe(spec.partitionLeaderEpoch);
  expect(theirs.producerId).toBe(String(spec.producerId));
  expect(theirs.producerEpoch).toBe(spec.producerEpoch);
  expect(theirs.firstSequence).toBe(spec.firstSequence);
  expect(theirs.inTransaction).toBe(spec.transactional);
  expect(theirs.lastOffsetDelta).toBe(spec.records.length - 1);
  expect(theirs.maxTimestamp).toBe(String(Math.max(...spec.records.map((r) => r.timestamp))));
  expect(theirs.records.length).toBe(spec.records.length);
  theirs.records.forEach((d, i) => {
    const e = spec.records[i];
    expect(d.offset).toBe(String(spec.firstOffset + i));
    expect(d.timestamp).toBe(String(e.timestamp));
    expect(d.key).toEqual(e.key);
    expect(d.value).toEqual(e.value);
    expect(d.headers).toEqual(headersAsKafkaObject(e.headers));
  });
}

const SEEDS = testSeeds([1, 2, 3, 0xc0ffee, 0x7a1b]);
const COMPRESSIONS = [
  ['none', KafkaCompression.None],
  ['gzip', KafkaCompression.Gzip],
] as const;

describe('kafkajs encodes, we decode (a)', () => {
  for (const [codecName, codec] of COMPRESSIONS) {
    it.each(SEEDS)(`${codecName}, seed %i: same records, including negative timestamp deltas`, async (seed) => {
      await withSeedAsync(seed, async (rng) => {
        for (let round = 0; round < 10; round++) {
          const spec = kafkaBatchSpec(rng, randomKafkaRecords(rng, 'any'), codec);
          const batch = await kafkajsEncode(spec);
          // A producer's batch as the node checks it at produce.
          validateRecords(batch, MAX_MESSAGE_BYTES_DEFAULT);
          const { header, records } = decodeBatch(batch);
          expect(header.baseTimestamp).toBe(spec.firstTimestamp);
          expect(header.isTransactional).toBe(spec.transactional);
          expectRecordsEqual(
            records,
            spec.records.map((r) => ({ ...r, headers: r.headers as Header[] })),
            spec.firstOffset,
          );
        }
      });
    });
  }
});

describe('we encode, kafkajs decodes (b)', () => {
  for (const [codecName, codec] of COMPRESSIONS) {
    it.each(SEEDS)(`${codecName}, seed %i: same records, and kafkajs's CRC-32C agrees`, async (seed) => {
      await withSeedAsync(seed, async (rng) => {
        for (let round = 0; round < 10; round++) {
          const spec = kafkaBatchSpec(rng, randomKafkaRecords(rng, 'any'), codec);
          const ours = encodeBatch(spec.records, ourOptionsFor(spec));
          // kafkajs does not check CRCs when decoding, so check it with its CRC function.
          expect(kafkajsCrc32c(ours.subarray(OFFSET_ATTRIBUTES))).toBe(ours.readUInt32BE(OFFSET_CRC));
          const theirs = await kafkajsDecode(ours);
          // Our base is the smallest timestamp; absolute timestamps must still agree.
          expect(theirs.firstTimestamp).toBe(String(Math.min(...spec.records.map((r) => r.timestamp))));
          expectKafkaDecoded(theirs, spec);
        }
      });
    });
  }
});

describe('same input, same bytes, uncompressed (c)', () => {
  it.each(SEEDS)('seed %i: with non-decreasing timestamps the two encoders agree byte for byte', async (seed) => {
    await withSeedAsync(seed, async (rng) => {
      for (let round = 0; round < 30; round++) {
        const spec = kafkaBatchSpec(rng, randomKafkaRecords(rng, 'non-decreasing'), KafkaCompression.None);
        const theirs = await kafkajsEncode(spec);
        const ours = encodeBatch(spec.records, ourOptionsFor(spec));
        expect(ours.toString('hex')).toBe(theirs.toString('hex'));
      }
    });
  });
});
