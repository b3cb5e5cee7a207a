// The frame codec: [kind, correlationId, body] in CBOR. Round trips (batch bytes must come
// back byte for byte), every truncated prefix, a table of bad shapes, and seeded garbage:
// decodeFrame answers bad bytes with DecodeError(INVALID_REQUEST) and nothing else.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, Kind, kindName, RESPONSE } from './frames.js';
import type { ProduceRequest } from './frames.js';
import { DecodeError } from './errors.js';
import { encodeBatch } from './record-batch.js';
import { expectDecodeError, testSeeds, withSeed } from './testdata/helpers.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const batch = encodeBatch(
  [
    { key: Buffer.from('sensor-1'), value: Buffer.alloc(300, 0xab), timestamp: 1_700_000_000_000 },
    { key: null, value: Buffer.from([0, 1, 2, 0xff]), timestamp: 1_700_000_000_001 },
  ],
  { baseOffset: 5 },
);

const produce: ProduceRequest = {
  acks: -1,
  timeoutMs: 30_000,
  partitions: [
    { topic: 'telemetry', partition: 0, records: batch },
    { topic: 'telemetry', partition: 1, records: new Uint8Array(batch) },
  ],
};

describe('round trip', () => {
  it('kind, correlation id and body come back', () => {
    const frame = decodeFrame(encodeFrame(Kind.Metadata, 7, { topics: ['a', 'b'] }));
    expect(frame).toEqual({ kind: Kind.Metadata, correlationId: 7, body: { topics: ['a', 'b'] } });
  });

  it('record batches (Buffer or plain Uint8Array) come back as Buffers with identical bytes', () => {
    const { body } = decodeFrame(encodeFrame(Kind.Produce, 1, produce));
    const partitions = (body as unknown as ProduceRequest).partitions;
    for (const p of partitions) {
      expect(Buffer.isBuffer(p.records)).toBe(true);
      expect(Buffer.from(p.records).equals(batch)).toBe(true);
    }
  });

  it('a byte string is a plain CBOR byte string (major type 2), with no typed-array tag', () => {
    // tagUint8Array: false keeps frames readable by any CBOR library.
    const frame = encodeFrame(Kind.Produce, 1, { records: new Uint8Array([1, 2, 3]) });
    expect(frame.toString('hex')).toBe('830501b90001677265636f726473' + '43010203');
  });

  it('golden bytes: a small Metadata request, so a change of encoding is a visible decision', () => {
    const frame = encodeFrame(Kind.Metadata, 300, { topics: ['t'] });
    // 83: array(3); 02: kind; 19 012c: uint16 300; b9 0001: map(1); 66 "topics"; 81: array(1);
    // 61 "t". cbor-x writes every map length in 16 bits (b9), not the shortest form (a1): valid
    // CBOR that any decoder reads, though not the deterministic encoding of RFC 8949 4.2.
    expect(frame.toString('hex')).toBe('8302' + '19012c' + 'b90001' + '66746f70696373' + '81' + '6174');
    // The shortest form, as another CBOR library would write it, decodes the same.
    expect(decodeFrame(hex('8302 19012c a1 66746f70696373 81 6174'))).toEqual({ kind: 2, correlationId: 300, body: { topics: ['t'] } });
  });

  it('golden bytes: a Produce request carrying the kafkajs "one keyed record" vector, untouched', () => {
    const vectors = JSON.parse(readFileSync(new URL('./testdata/record-batch-vectors.json', import.meta.url), 'utf8')) as {
      vectors: { name: string; hex: string }[];
    };
    const batchHex = vectors.vectors.find((v) => v.name === 'one keyed record')?.hex ?? '';
    expect(batchHex.length).toBe(140);
    const body = { acks: 1, timeoutMs: 1000, partitions: [{ topic: 't', partition: 0, records: Buffer.from(batchHex, 'hex') }] };
    const expected =
      '830509' + // array(3), kind 5 (Produce), correlation id 9
      'b90003' + '6461636b73' + '01' + // map(3): "acks" 1
      '6974696d656f75744d73' + '1903e8' + // "timeoutMs" 1000
      '6a706172746974696f6e73' + '81' + // "partitions": array(1)
      'b90003' + '65746f706963' + '6174' + '69706172746974696f6e' + '00' + // {topic "t", partition 0,
      '677265636f726473' + '5846' + batchHex; // records: bytes(70) = the batch, as it is}
    expect(encodeFrame(Kind.Produce, 9, body).toString('hex')).toBe(expected);
    const decoded = decodeFrame(hex(expected)).body as unknown as ProduceRequest;
    expect(Buffer.from(decoded.partitions[0].records).toString('hex')).toBe(batchHex);
  });

  it.each([0, 1, 255, 0xffff, 0xffffffff])('correlation id %d survives', (id) => {
    expect(decodeFrame(encodeFrame(Kind.Fetch | RESPONSE, id, {})).correlationId).toBe(id);
  });

  it('numbers, negative numbers, nested maps, strings and nulls in bodies survive', () => {
    const body = { error: 0, offset: 2 ** 40 + 1, neg: -5, half: 0.5, s: 'ünïcödé', n: null, nested: { a: [1, { b: 'c' }] } };
    expect(decodeFrame(encodeFrame(Kind.ListOffsets | RESPONSE, 3, body)).body).toEqual(body);
  });

  it('a frame encoded earlier is not overwritten by later encodes (the encoder reuses its buffer)', () => {
    // Transports may hold a sent frame unwritten for a while; its bytes must not change.
    const first = encodeFrame(Kind.Produce, 1, produce);
    const copy = Buffer.from(first);
    for (let i = 0; i < 2000; i++) encodeFrame(Kind.Produce, i, { partitions: [{ topic: 'x', partition: i, records: batch }] });
    expect(first.equals(copy)).toBe(true);
  });

  it('a failed decode leaves the shared decoder usable', () => {
    expectDecodeError(() => decodeFrame(hex('8301016568656c')), 'INVALID_REQUEST');
    expectDecodeError(() => decodeFrame(Buffer.concat([Buffer.alloc(100_000, 0x81), Buffer.from([0x01])])), 'INVALID_REQUEST');
    expect(decodeFrame(encodeFrame(Kind.Hello, 9, { version: 1, clientId: 'c' }))).toEqual({ kind: 1, correlationId: 9, body: { version: 1, clientId: 'c' } });
  });

  it('kindName names requests and responses', () => {
    expect(kindName(Kind.Produce)).toBe('Produce');
    expect(kindName(Kind.Produce | RESPONSE)).toBe('ProduceResponse');
    expect(kindName(0x7f)).toBe('Kind127');
  });
});

describe('truncated prefixes', () => {
  it.each([
    ['Produce with batches', encodeFrame(Kind.Produce, 12345, produce)],
    ['Metadata', encodeFrame(Kind.Metadata, 1, { topics: ['telemetry'] })],
    ['empty body', encodeFrame(Kind.Hello, 0, {})],
  ])('%s: every proper prefix is INVALID_REQUEST', (_name, frame) => {
    for (let n = 0; n < frame.length; n++) {
      expectDecodeError(() => decodeFrame(frame.subarray(0, n)), 'INVALID_REQUEST', `prefix of ${n} bytes`);
    }
    expect(() => decodeFrame(frame)).not.toThrow();
  });

  it('a whole frame followed by extra bytes is INVALID_REQUEST (one frame per message)', () => {
    const frame = encodeFrame(Kind.Metadata, 1, {});
    expectDecodeError(() => decodeFrame(Buffer.concat([frame, Buffer.from([0])])), 'INVALID_REQUEST');
    expectDecodeError(() => decodeFrame(Buffer.concat([frame, frame])), 'INVALID_REQUEST');
  });
});

describe('bad shapes, each INVALID_REQUEST', () => {
  const cases: [string, string][] = [
    ['empty input', ''],
    ['a bare number', '01'],
    ['a map, not an array', 'a0'],
    ['a byte string', '43010203'],
    ['null', 'f6'],
    ['array of 2', '82 01 01'],
    ['array of 4', '84 01 01 a0 a0'],
    ['empty array', '80'],
    ['negative kind', '83 20 01 a0'],
    ['float kind', '83 f93e00 01 a0'],
    ['kind 256', '83 190100 01 a0'],
    ['huge kind (uint64 max)', '83 1bffffffffffffffff 01 a0'],
    ['string kind', '83 6131 01 a0'],
    ['null kind', '83 f6 01 a0'],
    ['negative correlation id', '83 01 20 a0'],
    ['float correlation id 1.5', '83 01 fb3ff8000000000000 a0'],
    ['correlation id 2^32', '83 01 1b0000000100000000 a0'],
    ['correlation id past 2^53 (a BigInt)', '83 01 1b0020000000000001 a0'],
    ['string correlation id', '83 01 6131 a0'],
    ['body a number', '83 01 01 01'],
    ['body a string', '83 01 01 6161'],
    ['body null', '83 01 01 f6'],
    ['body undefined', '83 01 01 f7'],
    ['body an array', '83 01 01 80'],
    ['body a byte string', '83 01 01 43010203'],
    ['a map with a map as key', '83 01 01 a1 a0 a0'],
    ['stray break code', '83 01 01 bf 6161 ff'],
    ['reserved additional info', '83 01 01 1c'],
    ['declared length past the end', '83 01 01 5a ffffffff 00'],
    ['array length past 2^32', '9b 0000000100000000'],
    ['deep nesting', '81'.repeat(50_000) + '01'],
  ];

  it.each(cases)('%s', (_name, bytes) => {
    expectDecodeError(() => decodeFrame(hex(bytes)), 'INVALID_REQUEST');
  });

  // BUG in frames.ts (reported, not fixed here: not this owner's file): cbor-x turns CBOR
  // tags into objects (tag 1 -> Date, tag 258 -> Set, unknown tags -> Tag), and decodeFrame
  // accepts any non-array object as the body "map". A body must be a plain CBOR map.
  it.each([
    ['a Date (tag 1)', '83 01 01 c1 1a5f5e1000'],
    ['a Set (tag 258)', '83 01 01 d90102 83 010203'],
    ['an unknown tag (tag 100)', '83 01 01 d864 a0'],
  ])('body %s is not a map', (_name, bytes) => {
    expectDecodeError(() => decodeFrame(hex(bytes)), 'INVALID_REQUEST');
  });
});

describe('seeded garbage', () => {
  it.each(testSeeds([21, 22, 23]))('seed %i: random bytes and mutated frames give INVALID_REQUEST or a valid frame, nothing else', (seed) => {
    const valid = [encodeFrame(Kind.Produce, 77, produce), encodeFrame(Kind.Metadata, 1, { topics: ['a'] })];
    withSeed(seed, (rng) => {
      for (let round = 0; round < 3000; round++) {
        let bytes: Buffer;
        if (rng.bool()) {
          bytes = rng.bytes(rng.int(0, 64));
          // Start with an array(3) header half the time, to get past the first check.
          if (rng.bool() && bytes.length > 0) bytes[0] = 0x83;
        } else {
          bytes = Buffer.from(rng.pick(valid));
          const flips = rng.int(1, 4);
          for (let f = 0; f < flips; f++) bytes[rng.int(0, bytes.length - 1)] = rng.int(0, 255);
        }
        try {
          const frame = decodeFrame(bytes);
          // Whatever decodes must have the promised shape.
          expect(Number.isInteger(frame.kind) && frame.kind >= 0 && frame.kind <= 255).toBe(true);
          expect(Number.isInteger(frame.correlationId) && frame.correlationId >= 0).toBe(true);
          expect(typeof frame.body === 'object' && frame.body !== null && !Array.isArray(frame.body)).toBe(true);
        } catch (err) {
          if (!(err instanceof DecodeError) || err.errorName !== 'INVALID_REQUEST') {
            throw new Error(`decodeFrame threw ${String(err)} on ${bytes.toString('hex')}`, { cause: err });
          }
        }
      }
    });
  });
});
