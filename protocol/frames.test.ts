// The frame codec: [kind, correlationId, body] in CBOR. Round trips (batch bytes must come
// back byte for byte), every truncated prefix, a table of bad shapes, CBOR bombs the
// structural pre-check must refuse before cbor-x allocates, and seeded garbage: decodeFrame
// answers bad bytes with DecodeError(INVALID_REQUEST) and nothing else.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Decoder } from 'cbor-x';
import { checkCborStructure } from './cbor-walk.js';
import { decodeFrame, encodeFrame, Kind, kindName, RESPONSE } from './frames.js';
import type { FrameLimits, ProduceRequest } from './frames.js';
import { DecodeError, TributaryError } from './errors.js';
import { encodeBatch } from './record-batch.js';
import { expectDecodeError, testSeeds, withSeed } from './testdata/helpers.js';
import type { Rng } from './testdata/helpers.js';

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

  // Regression (fixed): cbor-x turns CBOR tags into objects (tag 1 -> Date, tag 258 -> Set,
  // unknown tags -> Tag), and decodeFrame once accepted any non-array object as the body
  // "map". A body must be a plain CBOR map.
  it.each([
    ['a Date (tag 1)', '83 01 01 c1 1a5f5e1000'],
    ['a Set (tag 258)', '83 01 01 d90102 83 010203'],
    ['an unknown tag (tag 100)', '83 01 01 d864 a0'],
  ])('body %s is not a map', (_name, bytes) => {
    expectDecodeError(() => decodeFrame(hex(bytes)), 'INVALID_REQUEST');
  });
});

// The structural pre-check (cbor-walk.ts) refuses these before cbor-x allocates anything.
// Each error names the limit or fault, and its byte offset shows where the walk stopped:
// early, not after decoding the whole input.
describe('bombs, refused by the pre-check', () => {
  const MIB = 1024 * 1024;

  /** `[1, 1, {a: <head> <filler...>}]`, `total` bytes long. */
  function frameWith(head: number[], filler: number, total: number): Buffer {
    const prefix = Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, ...head]);
    const frame = Buffer.alloc(total, filler);
    prefix.copy(frame);
    return frame;
  }

  function refused(bytes: Uint8Array, says: RegExp, limits?: FrameLimits): DecodeError {
    const err = expectDecodeError(() => decodeFrame(bytes, limits), 'INVALID_REQUEST');
    expect(err.message).toMatch(says);
    return err;
  }

  it('15 MiB: an array of 15M empty maps, refused at its head', () => {
    const count = 15 * MIB - 11;
    const frame = frameWith([0x9a, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff], 0xa0, 15 * MIB);
    const err = refused(frame, /array of 15728629 entries: more than 100000 items \(itemsMax\)/);
    expect(err.at).toBe(6);
  });

  it('15 MiB: an indefinite-length array of empty maps, refused at item 100001', () => {
    const frame = frameWith([0x9f], 0xa0, 15 * MIB);
    const err = refused(frame, /more than 100000 items \(itemsMax\)/);
    // Items 1-6 are the frame's array, kind, id, body map, key "a" and the indefinite
    // array; the 100001st is the 99995th map, at byte 7 + 99994.
    expect(err.at).toBe(7 + 99_994);
  });

  it('15 MiB: an indefinite-length array of one-byte integers, never closed', () => {
    refused(frameWith([0x9f], 0x01, 15 * MIB), /more than 100000 items/);
  });

  it('an indefinite-length array never closed, within the item limit', () => {
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, 0x9f, 0x01, 0x02]), /ends inside an indefinite-length array/);
    refused(Buffer.from([0x9f]), /ends inside an indefinite-length array/);
    refused(Buffer.from([0x83, 0x01, 0x01, 0xbf, 0x61, 0x61, 0x01]), /ends inside an indefinite-length map/);
  });

  it('deep nesting: 15 MiB of nested arrays, refused at level 33', () => {
    const frame = Buffer.alloc(15 * MIB, 0x81);
    expect(refused(frame, /nests deeper than 32 levels \(depthMax\)/).at).toBe(32);
    // Indefinite-length, maps and tags nest too.
    expect(refused(Buffer.alloc(MIB, 0x9f), /deeper than 32/).at).toBe(32);
    expect(refused(Buffer.concat([Buffer.from([0x83, 0x01, 0x01]), Buffer.from('a16161'.repeat(40), 'hex')]), /deeper than 32/).at).toBe(3 + 31 * 3);
    expect(refused(Buffer.concat([Buffer.from([0x83, 0x01, 0x01]), Buffer.alloc(100, 0xc6)]), /deeper than 32/).at).toBe(3 + 31);
  });

  it('32 levels decode; 33 do not', () => {
    // [1, 1, {a: [[...[0]...]]}]: the frame array, the body map, then 30 arrays.
    const nested = (levels: number): Buffer => Buffer.concat([Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61]), Buffer.alloc(levels - 2, 0x81), Buffer.from([0x00])]);
    const body = decodeFrame(nested(32)).body;
    let depth = 2;
    for (let v = body.a; Array.isArray(v); v = v[0]) depth++;
    expect(depth).toBe(32);
    refused(nested(33), /deeper than 32/);
  });

  it('declared lengths past the end: strings, arrays, maps, indefinite strings', () => {
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, 0x5a, 0x00, 0xf0, 0x00, 0x00, 0x00]), /byte string of 15728640 bytes runs past the end \(1 left\)/);
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), /text string of \d+ bytes runs past the end \(0 left\)/);
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, 0x99, 0x00, 0x05, 0x01, 0x02]), /array of 5 entries runs past the end \(2 bytes left\)/);
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa2, 0x61, 0x61, 0x01]), /map of 2 entries runs past the end \(3 bytes left\)/);
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, 0x5f, 0x44, 0x01]), /string chunk of 4 bytes runs past the end/);
    refused(Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61, 0x5f, 0x41, 0x01]), /ends inside an indefinite-length string/);
    refused(Buffer.from([0x83, 0x01, 0x1a, 0x00]), /ends inside an item head/);
  });

  it('15 MiB: an indefinite-length byte string of empty chunks counts each chunk', () => {
    const err = refused(frameWith([0x5f], 0x40, 15 * MIB), /more chunks than itemsMax leaves/);
    // Six items before the chunks; the 99995th chunk is one too many.
    expect(err.at).toBe(7 + 99_994);
  });

  it('malformed heads the decoder might tolerate: wrong chunk type, indefinite integers and tags, stray breaks', () => {
    refused(hex('83 01 01 a1 6161 5f 6161 ff'), /chunk is not a definite string of its type/);
    refused(hex('83 01 01 a1 6161 5f 5f ff ff'), /chunk is not a definite string of its type/);
    refused(hex('83 01 01 a1 6161 1f'), /unsigned integer with indefinite length/);
    refused(hex('83 01 01 a1 6161 3f'), /negative integer with indefinite length/);
    refused(hex('83 01 01 a1 6161 df 00'), /tag with indefinite length/);
    refused(hex('ff'), /break code outside/);
    refused(hex('83 01 01 a1 6161 81 ff'), /break code outside/);
    refused(hex('83 01 01 a1 6161 fc'), /reserved additional info 28/);
  });

  it('limits are parameters: a frame within the defaults is refused under tighter ones, and vice versa', () => {
    const frame = encodeFrame(Kind.Metadata, 1, { topics: Array.from({ length: 200 }, (_, i) => `t${i}`) });
    expect(decodeFrame(frame).body.topics).toHaveLength(200);
    refused(frame, /more than 100 items/, { itemsMax: 100 });
    refused(frame, /deeper than 2 levels/, { depthMax: 2 });
    const big = encodeFrame(Kind.Metadata, 1, { topics: Array.from({ length: 150_000 }, () => 't') });
    refused(big, /more than 100000 items/);
    expect(decodeFrame(big, { itemsMax: 200_000 }).body.topics).toHaveLength(150_000);
    // Deeper than the walker's first stack (64 entries), allowed: it grows, and later walks
    // still see the right depths.
    const deep = Buffer.concat([Buffer.from([0x83, 0x01, 0x01, 0xa1, 0x61, 0x61]), Buffer.alloc(300, 0x81), Buffer.from([0x00])]);
    expect(Array.isArray(decodeFrame(deep, { depthMax: 302 }).body.a)).toBe(true);
    refused(deep, /deeper than 301 levels/, { depthMax: 301 });
    refused(deep, /deeper than 32 levels/);
    expect(decodeFrame(frame).body.topics).toHaveLength(200);
  });

  it('a limit that is not a non-negative number is a configuration error, not a pass', () => {
    const frame = encodeFrame(Kind.Metadata, 1, {});
    for (const limits of [{ itemsMax: Number.NaN }, { depthMax: Number.NaN }, { itemsMax: -1 }, { depthMax: -1 }]) {
      let thrown: unknown;
      try {
        decodeFrame(frame, limits);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, JSON.stringify(limits)).toBeInstanceOf(TributaryError);
      expect((thrown as TributaryError).errorName).toBe('INVALID_CONFIG');
    }
  });

  it('a Produce frame of large batches is a few heads: limits are counted in items, not bytes', () => {
    const large = encodeBatch([{ key: null, value: Buffer.alloc(256 * 1024, 7), timestamp: 1_700_000_000_000 }]);
    const partitions = Array.from({ length: 4 }, (_, p) => ({ topic: 'telemetry', partition: p, records: large }));
    const frame = encodeFrame(Kind.Produce, 1, { acks: -1, timeoutMs: 1000, partitions });
    // 3 frame heads + 7 body heads + 4 x 7 partition heads.
    const decoded = decodeFrame(frame, { itemsMax: 38 }).body as unknown as ProduceRequest;
    expect(decoded.partitions.map((p) => Buffer.from(p.records).equals(large))).toEqual([true, true, true, true]);
    refused(frame, /more than 37 items/, { itemsMax: 37 });
  });
});

/** Random plain values of the kinds bodies hold, nested a few levels. */
function randomValue(rng: Rng, depth: number): unknown {
  switch (rng.int(0, depth >= 3 ? 6 : 8)) {
    case 0:
      return rng.int(-1e6, 1e6);
    case 1:
      return rng.pick([rng.float(), 2 ** 40 + rng.int(0, 9), -(2 ** 60), 0.5, Number.NaN]);
    case 2:
      return 'ü'.repeat(rng.int(0, 30));
    case 3:
      return rng.bytes(rng.int(0, 300));
    case 4:
      return null;
    case 5:
      return rng.bool();
    case 6:
      // Lengths that need 1, 2 and 4 bytes of head.
      return 'x'.repeat(rng.pick([0, 23, 24, 255, 256, 65_535, 65_536]));
    case 7:
      return Array.from({ length: rng.pick([0, 1, 5, 23, 24]) }, () => randomValue(rng, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: rng.int(0, 6) }, (_, i) => [`k${i}`, randomValue(rng, depth + 1)]));
  }
}

describe('the pre-check agrees with the decoder', () => {
  const plain = new Decoder({ useRecords: false, mapsAsObjects: true });

  it.each(testSeeds([31, 32]))('seed %i: every frame the encoder writes passes it and round-trips', (seed) => {
    withSeed(seed, (rng) => {
      for (let round = 0; round < 500; round++) {
        const body = { v: randomValue(rng, 0) };
        const frame = encodeFrame(Kind.Metadata | RESPONSE, round, body);
        checkCborStructure(frame, { itemsMax: Number.MAX_SAFE_INTEGER, depthMax: Number.MAX_SAFE_INTEGER });
        expect(decodeFrame(frame).body).toEqual(plain.decode(frame)[2]);
      }
    });
  });

  it.each(testSeeds([33, 34]))('seed %i: on mutated frames, whatever cbor-x decodes the pre-check lets through (unlimited)', (seed) => {
    withSeed(seed, (rng) => {
      const frames = [encodeFrame(Kind.Produce, 77, produce), encodeFrame(Kind.Metadata, 1, { topics: ['a', 'b'], n: [1.5, null, true] })];
      for (let round = 0; round < 3000; round++) {
        const bytes = Buffer.from(rng.pick(frames));
        for (let f = rng.int(1, 3); f > 0; f--) bytes[rng.int(0, bytes.length - 1)] = rng.int(0, 255);
        let decodes = true;
        try {
          plain.decode(bytes);
        } catch {
          decodes = false;
        }
        if (!decodes) continue;
        try {
          checkCborStructure(bytes, { itemsMax: Number.MAX_SAFE_INTEGER, depthMax: Number.MAX_SAFE_INTEGER });
        } catch (err) {
          throw new Error(`cbor-x decodes ${bytes.toString('hex')} but the pre-check refused it: ${String(err)}`, { cause: err });
        }
      }
    });
  });
});

describe('seeded garbage', () => {
  // Bytes drawn mostly from container, string and break heads, so the pre-check's paths
  // (indefinite lengths, chunks, breaks, long arguments, the limits) are walked, not just
  // its first byte. Small random limits make the limit checks fire too.
  const HEADS = [0x80, 0x81, 0x83, 0x98, 0x99, 0x9a, 0x9b, 0x9f, 0xa0, 0xa1, 0xb8, 0xbf, 0x40, 0x41, 0x58, 0x5f, 0x60, 0x61, 0x7f, 0xc1, 0xd8, 0xdf, 0xff, 0x00, 0x01, 0x18, 0x1b, 0xf9, 0xfb, 0xfc, 0xf7];
  it.each(testSeeds([24, 25]))('seed %i: head-heavy garbage under random limits gives INVALID_REQUEST or a valid frame', (seed) => {
    withSeed(seed, (rng) => {
      for (let round = 0; round < 5000; round++) {
        const bytes = Buffer.from(Array.from({ length: rng.int(1, 48) }, () => (rng.bool(0.8) ? rng.pick(HEADS) : rng.int(0, 255))));
        if (rng.bool()) bytes[0] = 0x83;
        const limits = rng.bool() ? undefined : { itemsMax: rng.int(0, 20), depthMax: rng.int(0, 6) };
        try {
          const frame = decodeFrame(bytes, limits);
          expect(Number.isInteger(frame.kind) && Number.isInteger(frame.correlationId)).toBe(true);
        } catch (err) {
          if (!(err instanceof DecodeError) || err.errorName !== 'INVALID_REQUEST') {
            throw new Error(`decodeFrame threw ${String(err)} on ${bytes.toString('hex')}`, { cause: err });
          }
        }
      }
    });
  });

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
