// The partitioner must agree with Kafka's Java producer, so a key lands on the same
// partition whichever client produced it. Checked three ways: values Java computed (Kafka's
// own UtilsTest, and kafkajs's table generated with Java), kafkajs's Java-compatible
// DefaultPartitioner on many seeded keys for partition counts 1..100, and the sticky
// partitioner's rules for keyless records.

import { describe, expect, it } from 'vitest';
import { murmur2, partitionForKey, StickyPartitioner, toPositive } from './partitioner.js';
import { AssertionError } from './errors.js';
import { mulberry32, testSeeds, withSeed } from './testdata/helpers.js';
import { kafkajsMurmur2, kafkajsPartition } from './testdata/kafkajs.js';

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('murmur2, values Java computed', () => {
  // Kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
  const kafkaUtilsTest: [string, number][] = [
    ['21', -973932308],
    ['foobar', -790332482],
    ['a-little-bit-long-string', -985981536],
    ['a-little-bit-longer-string', -1486304829],
    ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
    ['abc', 479470107],
  ];
  // kafkajs src/producer/partitioners/default/murmur2.spec.js, generated with Java's
  // Utils.murmur2 (its defaultJava/Test.java): every tail length 0..3 appears.
  const kafkajsJavaTable: [string, number][] = [
    ['0', 971027396],
    ['1', -1993445489],
    ['128', -326012175],
    ['2187', -1508407203],
    ['16384', -325739742],
    ['78125', -1654490814],
    ['279936', 1462227128],
    ['823543', -2014198330],
  ];

  it.each([...kafkaUtilsTest, ...kafkajsJavaTable])('murmur2(%j) = %d', (key, expected) => {
    expect(murmur2(utf8(key))).toBe(expected);
  });

  it('returns a signed 32-bit integer, like Java', () => {
    const values = kafkaUtilsTest.map(([key]) => murmur2(utf8(key)));
    for (const v of values) expect(v).toBe(v | 0);
    expect(values.some((v) => v < 0)).toBe(true);
  });

  it('hashes a Uint8Array view by its own bytes, not the whole underlying buffer', () => {
    const whole = utf8('xxfoobarxx');
    expect(murmur2(whole.subarray(2, 8))).toBe(-790332482);
    expect(murmur2(new Uint8Array(whole.buffer, whole.byteOffset + 2, 6))).toBe(-790332482);
  });
});

describe('toPositive', () => {
  it('clears the sign bit, as Kafka does (Math.abs would differ, and fail on -2^31)', () => {
    expect(toPositive(-1)).toBe(0x7fffffff);
    expect(toPositive(-(2 ** 31))).toBe(0);
    expect(toPositive(5)).toBe(5);
    expect(toPositive(-973932308)).toBe(-973932308 & 0x7fffffff);
  });
});

describe('agreement with kafkajs (Java-compatible DefaultPartitioner)', () => {
  function seededKeys(seed: number): Buffer[] {
    const keys: Buffer[] = [Buffer.alloc(0), utf8('a'), utf8('ünïcödé ✓'), utf8('日本語のキー'), utf8('😀'), Buffer.from([0xff, 0x80, 0x00, 0x7f])];
    withSeed(seed, (rng) => {
      for (let i = 0; i < 300; i++) {
        keys.push(rng.bool() ? rng.bytes(rng.int(0, 64)) : utf8(`sensor-${rng.int(0, 1e9)}`));
      }
      // Every tail length, and keys whose every byte has the high bit set (sign extension
      // is where hand-written ports of Java's byte arithmetic go wrong).
      for (let len = 0; len < 12; len++) keys.push(Buffer.alloc(len, 0xff));
    });
    return keys;
  }

  it.each(testSeeds([1, 2, 3]))('murmur2 equals kafkajs for seeded keys, seed %i', (seed) => {
    for (const key of seededKeys(seed)) expect(murmur2(key), key.toString('hex')).toBe(kafkajsMurmur2(key));
  });

  it.each(testSeeds([4, 5]))('partitionForKey equals kafkajs for every partition count 1..100, seed %i', (seed) => {
    const keys = seededKeys(seed).slice(0, 120);
    for (let count = 1; count <= 100; count++) {
      for (const key of keys) {
        const ours = partitionForKey(key, count);
        if (ours !== kafkajsPartition(key, count)) {
          throw new Error(`key ${key.toString('hex')}, ${count} partitions: ours ${ours}, kafkajs ${kafkajsPartition(key, count)}`);
        }
      }
    }
  });

  it('spreads keys over all partitions', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(partitionForKey(utf8(`key-${i}`), 12));
    expect(seen.size).toBe(12);
  });

  it.each([0, -1, 1.5, Number.NaN])('partition count %s is a bug, asserted', (count) => {
    expect(() => partitionForKey(utf8('k'), count)).toThrow(AssertionError);
  });
});

describe('StickyPartitioner (keyless records)', () => {
  it('keeps one partition until onNewBatch, then moves to a different one', () => {
    const sticky = new StickyPartitioner(mulberry32(7));
    const first = sticky.partition(10);
    for (let i = 0; i < 100; i++) expect(sticky.partition(10)).toBe(first);
    sticky.onNewBatch();
    const second = sticky.partition(10);
    expect(second).not.toBe(first);
    for (let i = 0; i < 100; i++) expect(sticky.partition(10)).toBe(second);
  });

  it.each(testSeeds([8, 9]))('never repeats the partition across a batch boundary, and visits all, seed %i', (seed) => {
    const sticky = new StickyPartitioner(mulberry32(seed));
    for (const count of [2, 3, 7, 100]) {
      const counts = new Array<number>(count).fill(0);
      let prev = sticky.partition(count);
      for (let batch = 0; batch < 200 * count; batch++) {
        sticky.onNewBatch();
        const next = sticky.partition(count);
        expect(next).not.toBe(prev);
        expect(next >= 0 && next < count && Number.isInteger(next)).toBe(true);
        counts[next]++;
        prev = next;
      }
      // Uniform over the others: each partition gets a fair share (loose bound, no timing).
      for (const c of counts) expect(c).toBeGreaterThan(100);
    }
  });

  it('with one partition there is nowhere else to go', () => {
    const sticky = new StickyPartitioner(mulberry32(1));
    expect(sticky.partition(1)).toBe(0);
    sticky.onNewBatch();
    expect(sticky.partition(1)).toBe(0);
  });

  it('repicks when the topic has fewer partitions than the sticky one', () => {
    // A random source that always lands on the last partition.
    const sticky = new StickyPartitioner(() => 0.999999);
    expect(sticky.partition(10)).toBe(9);
    const shrunk = sticky.partition(4);
    expect(shrunk).toBe(3);
    expect(sticky.partition(10)).toBe(3);
  });

  it('onNewBatch before any record, or twice in a row, still gives a valid partition', () => {
    const sticky = new StickyPartitioner(mulberry32(3));
    sticky.onNewBatch();
    const p = sticky.partition(5);
    sticky.onNewBatch();
    sticky.onNewBatch();
    const q = sticky.partition(5);
    expect(q).not.toBe(p);
  });

  it('uses Math.random by default', () => {
    const p = new StickyPartitioner().partition(1000);
    expect(p >= 0 && p < 1000).toBe(true);
  });
});
