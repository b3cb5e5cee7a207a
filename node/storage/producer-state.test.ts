// ProducerStateManager alone: which batches of an idempotent producer are appended, which are
// recognised as resends (and answered with where they were written), which are refused and
// with what code; and the snapshot codec, whose every damaged form must be refused so that
// the log falls back to a replay instead of trusting a wrong state.

import { crc32c } from '@node-rs/crc32';
import { Encoder } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { Errors, TributaryError } from '../../protocol/errors.js';
import {
  nextSequence,
  PRODUCER_BATCHES_KEPT,
  PRODUCER_ID_EXPIRATION_MS,
  ProducerStateManager,
  SNAPSHOT_FILE,
  snapshotFileName,
} from './producer-state.js';
import type { ProducerBatch, ProducerBatchHeader } from './producer-state.js';

const INT32_MAX = 0x7fffffff;
const T0 = 1_700_000_000_000;

function header(producerId: number, producerEpoch: number, baseSequence: number, recordCount = 1): ProducerBatchHeader {
  return { producerId, producerEpoch, baseSequence, recordCount };
}

/** The refusal `run` throws; fails the test when it throws nothing or something untyped. */
function refusal(run: () => unknown): TributaryError {
  try {
    run();
  } catch (err) {
    if (err instanceof TributaryError) return err;
    throw err;
  }
  throw new Error('expected a refusal, got none');
}

/** A producer as a log sees it: each accepted batch is checked, then recorded at the log end. */
class Partition {
  readonly state = new ProducerStateManager('t-0');
  logEndOffset = 0;
  /** Every batch appended, per producer, in order. */
  readonly written = new Map<number, ProducerBatch[]>();

  append(h: ProducerBatchHeader, nowMs = T0): ProducerBatch {
    expect(this.state.check(h), `producer ${h.producerId} sequence ${h.baseSequence} must be new`).toBeNull();
    const firstOffset = this.logEndOffset;
    this.state.update(h, firstOffset, nowMs);
    this.logEndOffset += h.recordCount;
    const batch = { firstSeq: h.baseSequence, lastSeq: nextSequence(h.baseSequence, h.recordCount - 1), firstOffset, lastOffset: firstOffset + h.recordCount - 1 };
    const list = this.written.get(h.producerId) ?? [];
    list.push(batch);
    this.written.set(h.producerId, list);
    return batch;
  }

  /** Appends `n` consecutive batches of 1..3 records for the producer; returns the next sequence. */
  appendMany(producerId: number, epoch: number, firstSeq: number, n: number, nowMs = T0): number {
    let seq = firstSeq;
    for (let i = 0; i < n; i++) {
      const count = 1 + ((producerId + i) % 3);
      this.append(header(producerId, epoch, seq, count), nowMs);
      seq = nextSequence(seq, count);
    }
    return seq;
  }
}

function expectOutOfOrder(state: ProducerStateManager, h: ProducerBatchHeader, expected: number): void {
  const err = refusal(() => state.check(h));
  expect(err.code).toBe(Errors.OUT_OF_ORDER_SEQUENCE.code);
  expect(err.code).toBe(45);
  expect(err.message).toContain(`sequence ${h.baseSequence}, expected ${expected}`);
}

/** Every observable answer `state` gives for a producer whose batches were `written`. */
function expectRemembers(state: ProducerStateManager, producerId: number, epoch: number, written: ProducerBatch[]): void {
  const kept = written.slice(-PRODUCER_BATCHES_KEPT);
  for (const batch of kept) {
    const count = batch.lastOffset - batch.firstOffset + 1;
    expect(state.check(header(producerId, epoch, batch.firstSeq, count)), `producer ${producerId} resend of ${batch.firstSeq}`).toEqual(batch);
  }
  const next = nextSequence(written[written.length - 1].lastSeq);
  expect(state.check(header(producerId, epoch, next, 2))).toBeNull();
  expectOutOfOrder(state, header(producerId, epoch, nextSequence(next), 1), next);
  if (epoch > 0) expect(refusal(() => state.check(header(producerId, epoch - 1, next))).code).toBe(Errors.INVALID_PRODUCER_EPOCH.code);
}

describe('sequences of one producer', () => {
  it('a new producer must start at sequence 0, and check alone changes nothing', () => {
    const state = new ProducerStateManager('t-0');
    expectOutOfOrder(state, header(1, 0, 3), 0);
    expectOutOfOrder(state, header(1, 0, 1), 0);
    expect(state.check(header(1, 0, 0, 4))).toBeNull();
    // Not recorded until update: the same batch is still new, not a resend.
    expect(state.check(header(1, 0, 0, 4))).toBeNull();
    expect(state.producerCount).toBe(0);
  });

  it('accepts consecutive batches of any size', () => {
    const p = new Partition();
    let seq = 0;
    for (let i = 0; i < 20; i++) {
      const count = 1 + (i % 4);
      const batch = p.append(header(1, 0, seq, count));
      expect(batch.firstSeq).toBe(seq);
      seq += count;
    }
    expect(p.state.producerCount).toBe(1);
    expect(p.logEndOffset).toBe(seq);
    expectRemembers(p.state, 1, 0, p.written.get(1)!);
  });

  it('answers a resend of each of the last 5 batches with that batch, and nothing changes', () => {
    const p = new Partition();
    const next = p.appendMany(1, 0, 0, 9);
    const written = p.written.get(1)!;
    for (let back = 1; back <= PRODUCER_BATCHES_KEPT; back++) {
      const batch = written[written.length - back];
      const count = batch.lastSeq - batch.firstSeq + 1;
      const earlier = p.state.check(header(1, 0, batch.firstSeq, count));
      expect(earlier, `resend of the batch ${back} back`).toEqual(batch);
    }
    // Resends are answers, not appends: the next sequence expected is unchanged.
    expect(p.state.check(header(1, 0, next))).toBeNull();
    expectOutOfOrder(p.state, header(1, 0, nextSequence(next)), next);
  });

  it('no longer recognises the 6th newest batch, and refuses it as out of order', () => {
    const p = new Partition();
    const next = p.appendMany(1, 0, 0, PRODUCER_BATCHES_KEPT + 1);
    const written = p.written.get(1)!;
    const sixth = written[written.length - PRODUCER_BATCHES_KEPT - 1];
    expect(sixth.firstSeq).toBe(0);
    expectOutOfOrder(p.state, header(1, 0, sixth.firstSeq, sixth.lastSeq - sixth.firstSeq + 1), next);
    // The 5th newest still is.
    const fifth = written[written.length - PRODUCER_BATCHES_KEPT];
    expect(p.state.check(header(1, 0, fifth.firstSeq, fifth.lastSeq - fifth.firstSeq + 1))).toEqual(fifth);
  });

  it('refuses a gap, an overlap and a resend whose record count differs', () => {
    const p = new Partition();
    p.append(header(1, 0, 0, 3)); // 0..2
    p.append(header(1, 0, 3, 2)); // 3..4
    expectOutOfOrder(p.state, header(1, 0, 6), 5);
    expectOutOfOrder(p.state, header(1, 0, 1000), 5);
    expectOutOfOrder(p.state, header(1, 0, 4), 5);
    expectOutOfOrder(p.state, header(1, 0, 1, 2), 5);
    // Same first sequence as a kept batch, other length: not that batch, and not next either.
    expectOutOfOrder(p.state, header(1, 0, 3, 1), 5);
    expectOutOfOrder(p.state, header(1, 0, 0, 4), 5);
    expect(p.state.check(header(1, 0, 5))).toBeNull();
  });

  it('refuses an older epoch with INVALID_PRODUCER_EPOCH, even for a resend or the next sequence', () => {
    const p = new Partition();
    p.append(header(1, 2, 0, 2));
    for (const seq of [0, 2, 7]) {
      const err = refusal(() => p.state.check(header(1, 1, seq, 2)));
      expect(err.code).toBe(Errors.INVALID_PRODUCER_EPOCH.code);
      expect(err.code).toBe(47);
    }
    expect(refusal(() => p.state.check(header(1, 0, 0, 2))).code).toBe(47);
  });

  it('a newer epoch must restart at 0, and then forgets the older epoch', () => {
    const p = new Partition();
    const next = p.appendMany(1, 0, 0, 4);
    expectOutOfOrder(p.state, header(1, 1, next), 0);
    expectOutOfOrder(p.state, header(1, 1, 1), 0);
    const first = p.append(header(1, 1, 0, 2));
    expect(p.state.check(header(1, 1, 0, 2))).toEqual(first);
    expect(refusal(() => p.state.check(header(1, 0, next))).code).toBe(Errors.INVALID_PRODUCER_EPOCH.code);
    // The old epoch's batches are no longer resends of anything.
    const old = p.written.get(1)![3];
    expectOutOfOrder(p.state, header(1, 1, old.firstSeq, old.lastSeq - old.firstSeq + 1), 2);
    expect(p.state.check(header(1, 1, 2))).toBeNull();
    expect(p.state.producerCount).toBe(1);
  });

  it('rejects a negative sequence or epoch with INVALID_REQUEST, for new and known producers', () => {
    const p = new Partition();
    p.append(header(1, 0, 0));
    for (const h of [header(1, 0, -1), header(1, 0, -INT32_MAX - 1), header(2, 0, -1), header(1, -1, 1), header(2, -1, 0)]) {
      const err = refusal(() => p.state.check(h));
      expect(err.code, JSON.stringify(h)).toBe(Errors.INVALID_REQUEST.code);
      expect(err.code).toBe(42);
    }
    expect(p.state.check(header(1, 0, 1))).toBeNull();
  });
});

describe('sequence wrap at 2^31 - 1', () => {
  it('nextSequence wraps to 0 as int32 sequences do', () => {
    expect(nextSequence(0)).toBe(1);
    expect(nextSequence(INT32_MAX - 1)).toBe(INT32_MAX);
    expect(nextSequence(INT32_MAX)).toBe(0);
    expect(nextSequence(INT32_MAX - 1, 3)).toBe(1);
    expect(nextSequence(INT32_MAX, 0)).toBe(INT32_MAX);
  });

  it('expects 0 after a batch ending at 2^31 - 1, and remembers batches on both sides', () => {
    const p = new Partition();
    // One huge batch brings the producer to the end of the sequence space.
    p.append(header(1, 0, 0, INT32_MAX - 1)); // 0 .. 2^31 - 3
    const before = p.append(header(1, 0, INT32_MAX - 1, 2)); // 2^31 - 2 .. 2^31 - 1
    expect(before.lastSeq).toBe(INT32_MAX);
    expectOutOfOrder(p.state, header(1, 0, INT32_MAX), 0);
    expectOutOfOrder(p.state, header(1, 0, INT32_MAX + 1), 0);
    const after = p.append(header(1, 0, 0, 3));
    expect(after).toEqual({ firstSeq: 0, lastSeq: 2, firstOffset: INT32_MAX + 1, lastOffset: INT32_MAX + 3 });
    expect(p.state.check(header(1, 0, INT32_MAX - 1, 2))).toEqual(before);
    expect(p.state.check(header(1, 0, 0, 3))).toEqual(after);
    expect(p.state.check(header(1, 0, 3))).toBeNull();
    expectOutOfOrder(p.state, header(1, 0, 4), 3);
  });

  it('takes a batch whose sequences run across the wrap', () => {
    const p = new Partition();
    p.append(header(1, 0, 0, INT32_MAX - 1)); // ends at 2^31 - 3
    const across = p.append(header(1, 0, INT32_MAX - 1, 4)); // 2^31 - 2, 2^31 - 1, 0, 1
    expect(across.firstSeq).toBe(INT32_MAX - 1);
    expect(across.lastSeq).toBe(1);
    expect(p.state.check(header(1, 0, INT32_MAX - 1, 4))).toEqual(across);
    expect(p.state.check(header(1, 0, 2))).toBeNull();
    expectOutOfOrder(p.state, header(1, 0, 0), 2);
    expectOutOfOrder(p.state, header(1, 0, INT32_MAX), 2);
  });
});

describe('several producers', () => {
  it('keep their sequences, epochs and resends apart', () => {
    const p = new Partition();
    // Interleaved: the same sequence numbers in each, written at different offsets.
    let seq1 = 0;
    let seq2 = 0;
    let seq3 = 0;
    for (let i = 0; i < 8; i++) {
      seq1 = p.appendMany(1, 0, seq1, 1);
      seq2 = p.appendMany(2, 5, seq2, 1);
      if (i % 2 === 0) seq3 = p.appendMany(3, 0, seq3, 1);
    }
    expect(p.state.producerCount).toBe(3);
    // Producer 2 moves to a new epoch; producers 1 and 3 are unaffected.
    p.append(header(2, 6, 0, 1));
    expectRemembers(p.state, 1, 0, p.written.get(1)!);
    expectRemembers(p.state, 3, 0, p.written.get(3)!);
    expectRemembers(p.state, 2, 6, p.written.get(2)!.slice(-1));
    // A refusal for one is not a refusal for another.
    expectOutOfOrder(p.state, header(1, 0, seq1 + 7), seq1);
    expect(p.state.check(header(3, 0, seq3))).toBeNull();
    expectOutOfOrder(p.state, header(4, 0, seq1), 0);
  });
});

describe('expire', () => {
  it('forgets only producers idle longer than PRODUCER_ID_EXPIRATION_MS', () => {
    const p = new Partition();
    p.appendMany(1, 0, 0, 3, T0);
    const next2 = p.appendMany(2, 0, 0, 3, T0 + 1000);
    p.state.expire(T0 + PRODUCER_ID_EXPIRATION_MS);
    expect(p.state.producerCount).toBe(2);
    expectRemembers(p.state, 1, 0, p.written.get(1)!);
    // Idle one millisecond longer than the limit.
    p.state.expire(T0 + PRODUCER_ID_EXPIRATION_MS + 1);
    expect(p.state.producerCount).toBe(1);
    const next1 = nextSequence(p.written.get(1)!.at(-1)!.lastSeq);
    expectOutOfOrder(p.state, header(1, 0, next1), 0);
    expect(p.state.check(header(2, 0, next2))).toBeNull();
    p.state.expire(T0 + 1000 + PRODUCER_ID_EXPIRATION_MS + 1);
    expect(p.state.producerCount).toBe(0);
  });

  it('counts idleness from the latest append, whatever order the times came in', () => {
    const p = new Partition();
    p.append(header(1, 0, 0), T0 + 5000);
    // Replayed batches carry their own timestamps, which need not increase.
    p.append(header(1, 0, 1), T0);
    p.state.expire(T0 + 5000 + PRODUCER_ID_EXPIRATION_MS);
    expect(p.state.producerCount).toBe(1);
    p.state.expire(T0 + 5001 + PRODUCER_ID_EXPIRATION_MS);
    expect(p.state.producerCount).toBe(0);
  });
});

describe('snapshot and load', () => {
  /** Three producers in unusual corners: many batches, a later epoch, large ids and offsets, a wrap. */
  function busyPartition(): Partition {
    const p = new Partition();
    p.logEndOffset = 2 ** 40;
    p.appendMany(1, 0, 0, 8, T0);
    p.appendMany(2 ** 45 + 3, 3, 0, 2, T0 + 10);
    p.append(header(7, 0, 0, INT32_MAX - 1), T0 + 20);
    p.append(header(7, 0, INT32_MAX - 1, 4), T0 + 30);
    p.appendMany(1, 0, nextSequence(p.written.get(1)!.at(-1)!.lastSeq), 1, T0 + 40);
    return p;
  }

  it('round-trips: the loaded state answers every resend, next sequence, epoch and expiry alike', () => {
    const p = busyPartition();
    const bytes = p.state.snapshot(p.logEndOffset);
    const loaded = new ProducerStateManager('t-0');
    // Whatever it held before is replaced.
    loaded.update(header(9, 0, 0, 1), 0, T0);
    expect(loaded.load(bytes)).toBe(p.logEndOffset);
    expect(loaded.producerCount).toBe(3);
    expectOutOfOrder(loaded, header(9, 0, 1), 0);
    for (const [id, written] of p.written) {
      const epoch = id === 2 ** 45 + 3 ? 3 : 0;
      expectRemembers(loaded, id, epoch, written);
      const sixth = written.at(-PRODUCER_BATCHES_KEPT - 1);
      if (sixth !== undefined) {
        const next = nextSequence(written.at(-1)!.lastSeq);
        expectOutOfOrder(loaded, header(id, epoch, sixth.firstSeq, sixth.lastSeq - sixth.firstSeq + 1), next);
      }
    }
    // The last-append times came along: producer 1 (last at T0 + 40) outlives producer 7 (T0 + 30).
    loaded.expire(T0 + 31 + PRODUCER_ID_EXPIRATION_MS);
    expect(loaded.producerCount).toBe(1);
    expectRemembers(loaded, 1, 0, p.written.get(1)!);
    // And a snapshot of the loaded state is the same bytes.
    const again = new ProducerStateManager('t-0');
    again.load(bytes);
    expect(again.snapshot(p.logEndOffset).equals(bytes)).toBe(true);
  });

  it('round-trips an empty state', () => {
    const bytes = new ProducerStateManager('t-0').snapshot(0);
    const loaded = new ProducerStateManager('t-0');
    expect(loaded.load(bytes)).toBe(0);
    expect(loaded.producerCount).toBe(0);
  });

  it('refuses every single flipped bit', () => {
    const p = busyPartition();
    const bytes = p.state.snapshot(p.logEndOffset);
    expect(bytes.length).toBeGreaterThan(100);
    const loaded = new ProducerStateManager('t-0');
    for (let at = 0; at < bytes.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const damaged = Buffer.from(bytes);
        damaged[at] ^= 1 << bit;
        expect(() => loaded.load(damaged), `byte ${at} bit ${bit}`).toThrow(/snapshot/);
      }
    }
    expect(loaded.producerCount).toBe(0);
  });

  it('refuses every truncation', () => {
    const bytes = busyPartition().state.snapshot(99);
    const loaded = new ProducerStateManager('t-0');
    for (let length = 0; length < bytes.length; length++) {
      expect(() => loaded.load(bytes.subarray(0, length)), `${length} of ${bytes.length} bytes`).toThrow(/snapshot/);
    }
    expect(loaded.producerCount).toBe(0);
  });

  /** A snapshot file around any CBOR value, with a checksum that matches. */
  function framed(body: unknown): Buffer {
    const encoded = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false }).encode(body);
    const out = Buffer.alloc(4 + encoded.length);
    out.writeUInt32BE(crc32c(encoded), 0);
    out.set(encoded, 4);
    return out;
  }

  it('accepts the framing it writes (so the table below tests the checks, not the framing)', () => {
    const loaded = new ProducerStateManager('t-0');
    expect(loaded.load(framed({ v: 1, offset: 5, producers: [[1, 0, T0, [[0, 1, 3, 4]]]] }))).toBe(5);
    expect(loaded.check(header(1, 0, 0, 2))).toEqual({ firstSeq: 0, lastSeq: 1, firstOffset: 3, lastOffset: 4 });
  });

  it.each([
    ['version 2', { v: 2, offset: 0, producers: [] }, /version/],
    ['version 0', { v: 0, offset: 0, producers: [] }, /version/],
    ['version as a string', { v: '1', offset: 0, producers: [] }, /version/],
    ['no version', { offset: 0, producers: [] }, /version/],
    ['not a map', 17, /version/],
    ['null', null, /version/],
    ['an array', [1, 0, []], /version/],
    ['no offset', { v: 1, producers: [] }, /malformed/],
    ['offset a fraction', { v: 1, offset: 1.5, producers: [] }, /malformed/],
    ['producers not a list', { v: 1, offset: 0, producers: {} }, /malformed/],
    ['an entry too short', { v: 1, offset: 0, producers: [[1, 0, T0]] }, /malformed/],
    ['an entry not a list', { v: 1, offset: 0, producers: [5] }, /malformed/],
    ['a producer id as a string', { v: 1, offset: 0, producers: [['1', 0, T0, []]] }, /malformed/],
    ['batches not a list', { v: 1, offset: 0, producers: [[1, 0, T0, 3]] }, /malformed/],
    ['a batch too short', { v: 1, offset: 0, producers: [[1, 0, T0, [[0, 1, 2]]]] }, /malformed/],
    ['a batch with a fraction', { v: 1, offset: 0, producers: [[1, 0, T0, [[0, 1, 2, 3.5]]]] }, /malformed/],
    ['a batch with a string', { v: 1, offset: 0, producers: [[1, 0, T0, [[0, '1', 2, 3]]]] }, /malformed/],
  ])('refuses a well-framed snapshot with %s', (_name, body, message) => {
    const loaded = new ProducerStateManager('t-0');
    loaded.update(header(1, 0, 0), 0, T0);
    expect(() => loaded.load(framed(body))).toThrow(message);
    // A refused snapshot leaves the state as it was.
    expect(loaded.producerCount).toBe(1);
    expect(loaded.check(header(1, 0, 0))).toEqual({ firstSeq: 0, lastSeq: 0, firstOffset: 0, lastOffset: 0 });
  });
});

describe('snapshot file names', () => {
  it('are the offset in 20 digits, as Kafka names them', () => {
    expect(snapshotFileName(0)).toBe('00000000000000000000.snapshot');
    expect(snapshotFileName(1234)).toBe('00000000000000001234.snapshot');
    expect(SNAPSHOT_FILE.exec(snapshotFileName(2 ** 53 - 1))?.[1]).toBe(String(2 ** 53 - 1).padStart(20, '0'));
    expect(SNAPSHOT_FILE.test('00000000000000001234.snapshot.tmp')).toBe(false);
    expect(SNAPSHOT_FILE.test('1234.snapshot')).toBe(false);
  });
});
