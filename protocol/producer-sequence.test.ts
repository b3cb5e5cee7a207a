// The idempotent producer's sequence rule alone, on what a partition holds of one producer:
// what is appended, what is a resend (and of which batch), what is refused and with what
// code. node/storage/producer-state.test.ts checks the same rule through the node's state.

import { describe, expect, it } from 'vitest';
import { thrown } from '../test/helpers/thrown.js';
import { Errors } from './errors.js';
import { checkSequence, PRODUCER_BATCHES_KEPT, rememberBatch, type ProducerBatchHeader, type ProducerSequences } from './producer-sequence.js';

const SEQUENCE_MAX = 0x7fffffff;

function header(baseSequence: number, recordCount = 10, producerEpoch = 0): ProducerBatchHeader {
  return { producerId: 7, producerEpoch, baseSequence, recordCount };
}


/** What a partition holds after appending batches of 10 records from sequence 0, at offsets from 100. */
function heldAfter(batches: number, epoch = 0): ProducerSequences {
  const held: ProducerSequences = { epoch, batches: [] };
  for (let i = 0; i < batches; i++) rememberBatch(held, header(i * 10, 10, epoch), 100 + i * 10);
  return held;
}

describe('checkSequence', () => {
  it('a producer the partition holds nothing of starts at sequence 0', () => {
    expect(checkSequence(undefined, header(0), 't-0')).toBeNull();
    const err = thrown(() => checkSequence(undefined, header(10), 't-0'));
    expect([err.code, err.detail]).toEqual([Errors.OUT_OF_ORDER_SEQUENCE.code, 't-0: producer 7 sent sequence 10, expected 0']);
  });

  it('appends the batch that follows the last one, refuses a gap OUT_OF_ORDER_SEQUENCE', () => {
    const held = heldAfter(2);
    expect(checkSequence(held, header(20), 't-0')).toBeNull();
    expect(thrown(() => checkSequence(held, header(30), 't-0')).detail).toBe('t-0: producer 7 sent sequence 30, expected 20');
  });

  it('answers a resend of any of the last 5 batches with that batch, and not an older one', () => {
    const held = heldAfter(PRODUCER_BATCHES_KEPT + 1);
    expect(checkSequence(held, header(10), 't-0')).toEqual({ firstSeq: 10, lastSeq: 19, firstOffset: 110, lastOffset: 119 });
    expect(checkSequence(held, header(50), 't-0')).toEqual({ firstSeq: 50, lastSeq: 59, firstOffset: 150, lastOffset: 159 });
    expect(thrown(() => checkSequence(held, header(0), 't-0')).code).toBe(Errors.OUT_OF_ORDER_SEQUENCE.code);
    // Same first sequence, other records: not that batch.
    expect(thrown(() => checkSequence(held, header(10, 5), 't-0')).code).toBe(Errors.OUT_OF_ORDER_SEQUENCE.code);
  });

  it('a newer epoch starts again at 0; an older one is refused INVALID_PRODUCER_EPOCH', () => {
    const held = heldAfter(2, 3);
    expect(checkSequence(held, header(0, 10, 4), 't-0')).toBeNull();
    expect(thrown(() => checkSequence(held, header(20, 10, 4), 't-0')).code).toBe(Errors.OUT_OF_ORDER_SEQUENCE.code);
    const err = thrown(() => checkSequence(held, header(20, 10, 2), 't-0'));
    expect([err.code, err.detail]).toEqual([Errors.INVALID_PRODUCER_EPOCH.code, 't-0: producer 7 epoch 2 is older than 3']);
  });

  it('refuses a negative sequence or epoch INVALID_REQUEST', () => {
    expect(thrown(() => checkSequence(undefined, header(-1), 't-0')).code).toBe(Errors.INVALID_REQUEST.code);
    expect(thrown(() => checkSequence(heldAfter(1), header(10, 10, -1), 't-0')).code).toBe(Errors.INVALID_REQUEST.code);
  });

  it('sequences wrap after 2^31 - 1 to 0', () => {
    const held: ProducerSequences = { epoch: 0, batches: [] };
    rememberBatch(held, header(SEQUENCE_MAX - 4, 10), 0);
    expect(held.batches[0].lastSeq).toBe(4);
    expect(checkSequence(held, header(5), 't-0')).toBeNull();
    expect(checkSequence(held, header(SEQUENCE_MAX - 4, 10), 't-0')).toBe(held.batches[0]);
  });
});

describe('rememberBatch', () => {
  it('keeps the last PRODUCER_BATCHES_KEPT batches, oldest first', () => {
    const held = heldAfter(PRODUCER_BATCHES_KEPT + 2);
    expect(held.batches.map((b) => b.firstSeq)).toEqual([20, 30, 40, 50, 60]);
    expect(held.batches[4]).toEqual({ firstSeq: 60, lastSeq: 69, firstOffset: 160, lastOffset: 169 });
  });
});
