import { describe, expect, it } from 'vitest';
import { DecodeError, Errors, InflateBoundError, LimitReachedError } from '../../protocol/errors.js';
import { chargeScan, chargeSegmentOpen, inflateWithin, requestBudget, type RequestBudget } from './request-budget.js';

const MIB = 1024 * 1024;

function budget(decompressBytesLeft: number, scanBytesLeft = MIB): RequestBudget {
  return { decompressBytesLeft, scanBytesLeft };
}

/** What `run` throws, or null. */
function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (err) {
    return err;
  }
  return null;
}

/** An inflate that inflates `bytes`, or stops at its bound like zlib when that is fewer. */
function inflating(bytes: number, seen: number[] = []): (bytesMax: number) => { inflatedBytes: number } {
  return (bytesMax) => {
    seen.push(bytesMax);
    if (bytes > bytesMax) throw new InflateBoundError(`past ${bytesMax}`, bytesMax, 61);
    return { inflatedBytes: bytes };
  };
}

describe('requestBudget', () => {
  it('starts from the two limits', () => {
    expect(requestBudget({ requestDecompressBytesMax: 64 * MIB, requestScanBytesMax: 16 * MIB })).toEqual({ decompressBytesLeft: 64 * MIB, scanBytesLeft: 16 * MIB, scanBytesMax: 16 * MIB });
  });
});

describe('inflateWithin', () => {
  it('bounds the inflate by max.message.bytes when the budget holds more, and takes what was inflated', () => {
    const b = budget(10 * MIB);
    const bounds: number[] = [];
    expect(inflateWithin(b, MIB, inflating(300_000, bounds))).toEqual({ inflatedBytes: 300_000 });
    expect(bounds).toEqual([MIB]);
    expect(b.decompressBytesLeft).toBe(10 * MIB - 300_000);
  });

  it('bounds it by what the budget has left when that is less', () => {
    const b = budget(500_000);
    const bounds: number[] = [];
    inflateWithin(b, MIB, inflating(200_000, bounds));
    inflateWithin(b, MIB, inflating(300_000, bounds));
    expect(bounds).toEqual([500_000, 300_000]);
    expect(b.decompressBytesLeft).toBe(0);
  });

  it('past max.message.bytes: CORRUPT_BATCH naming it, and the bound is taken from the budget', () => {
    const b = budget(10 * MIB);
    const err = thrown(() => inflateWithin(b, MIB, inflating(64 * MIB)));
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).errorName).toBe('CORRUPT_BATCH');
    expect((err as DecodeError).message).toMatch(/its records inflate past 1048576 bytes, the topic's max\.message\.bytes/);
    expect(b.decompressBytesLeft).toBe(9 * MIB);
  });

  it('past what the budget had left: THROTTLED naming limits.requestDecompressBytesMax, the budget spent', () => {
    const b = budget(300_000);
    const err = thrown(() => inflateWithin(b, MIB, inflating(400_000)));
    expect(err).toBeInstanceOf(LimitReachedError);
    expect((err as LimitReachedError).errorName).toBe('THROTTLED');
    expect((err as LimitReachedError).retriable).toBe(true);
    expect((err as LimitReachedError).limit).toBe('requestDecompressBytesMax');
    expect((err as LimitReachedError).message).toMatch(/limits\.requestDecompressBytesMax.*send fewer partitions per request/);
    expect(b.decompressBytesLeft).toBe(0);
  });

  it('once spent, the next batch is THROTTLED without being inflated at all', () => {
    const b = budget(0);
    const bounds: number[] = [];
    expect((thrown(() => inflateWithin(b, MIB, inflating(1, bounds))) as LimitReachedError).limit).toBe('requestDecompressBytesMax');
    expect(bounds).toEqual([]);
  });

  it('other failures pass through and cost nothing', () => {
    const b = budget(MIB);
    const bad = new DecodeError(Errors.CORRUPT_BATCH, 'truncated varint');
    expect(
      thrown(() =>
        inflateWithin(b, MIB, () => {
          throw bad;
        }),
      ),
    ).toBe(bad);
    expect(b.decompressBytesLeft).toBe(MIB);
  });
});

describe('chargeScan', () => {
  it('takes bytes until fewer are left than asked; then THROTTLED naming limits.requestScanBytesMax, and spent for what follows', () => {
    const b = budget(MIB, 10_000);
    chargeScan(b, 6000);
    chargeScan(b, 4000);
    expect(b.scanBytesLeft).toBe(0);
    const c = budget(MIB, 10_000);
    chargeScan(c, 6000);
    const err = thrown(() => chargeScan(c, 4001));
    expect((err as LimitReachedError).limit).toBe('requestScanBytesMax');
    expect((err as LimitReachedError).errorName).toBe('THROTTLED');
    expect((err as LimitReachedError).message).toMatch(/limits\.requestScanBytesMax/);
    expect(c.scanBytesLeft).toBe(0);
    expect((thrown(() => chargeScan(c, 1)) as LimitReachedError).limit).toBe('requestScanBytesMax');
  });
});

describe('chargeSegmentOpen', () => {
  it('takes what an open reads, as chargeScan does', () => {
    const b = requestBudget({ requestDecompressBytesMax: MIB, requestScanBytesMax: 10_000 });
    chargeSegmentOpen(b, 4000);
    expect(b.scanBytesLeft).toBe(6000);
    expect((thrown(() => chargeSegmentOpen(b, 6001)) as LimitReachedError).limit).toBe('requestScanBytesMax');
    expect(b.scanBytesLeft).toBe(0);
  });

  it('charges one open at most a whole budget: a budget that paid for nothing yet opens any segment, then is spent', () => {
    const b = requestBudget({ requestDecompressBytesMax: MIB, requestScanBytesMax: 10_000 });
    chargeSegmentOpen(b, 50_000);
    expect(b.scanBytesLeft).toBe(0);
    const c = requestBudget({ requestDecompressBytesMax: MIB, requestScanBytesMax: 10_000 });
    chargeScan(c, 1);
    expect((thrown(() => chargeSegmentOpen(c, 50_000)) as LimitReachedError).limit).toBe('requestScanBytesMax');
  });
});
