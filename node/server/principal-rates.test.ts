// The per-principal bucket of inflated bytes, on an injected clock: grants and give-backs,
// refill, grants of one principal that overlap, principals apart, idle entries forgotten
// once full, a bounded table, and the grant a request holds.

import { describe, expect, it } from 'vitest';
import { Errors, InflateBoundError, LimitReachedError } from '../../protocol/errors.js';
import { inflateWithin, requestBudget } from '../storage/request-budget.js';
import { PrincipalRates } from './principal-rates.js';

const MIB = 1024 * 1024;
const RATE = 64 * MIB;

function rates(clock: { now: number }, principalsIdleMax?: number): PrincipalRates {
  return new PrincipalRates({ decompressBytesPerSecond: RATE, now: () => clock.now, principalsIdleMax });
}

describe('PrincipalRates', () => {
  it('grants what the bucket holds, at most what is asked; the bucket holds one second and refills at the rate', () => {
    const clock = { now: 1000 };
    const r = rates(clock);
    expect(r.take('a', 40 * MIB)).toBe(40 * MIB);
    r.giveBack('a', 0);
    expect(r.take('a', 40 * MIB)).toBe(24 * MIB);
    r.giveBack('a', 0);
    expect(r.take('a', 40 * MIB)).toBe(0);
    r.giveBack('a', 0);
    clock.now += 250; // a quarter of a second: a quarter of the rate
    expect(r.tokens('a')).toBe(16 * MIB);
    clock.now += 10_000; // never more than one second's worth
    expect(r.tokens('a')).toBe(RATE);
  });

  it('gives back what a grant did not use; never past the capacity', () => {
    const clock = { now: 0 };
    const r = rates(clock);
    const granted = r.take('a', 64 * MIB);
    r.giveBack('a', granted - 3 * MIB); // inflated 3 MiB of it
    expect(r.tokens('a')).toBe(61 * MIB);
    r.take('a', MIB);
    r.giveBack('a', 10 * RATE);
    expect(r.tokens('a')).toBe(RATE);
  });

  it('grants of one principal that overlap share its bucket: the second gets what the first left', () => {
    const clock = { now: 0 };
    const r = rates(clock);
    const first = r.take('a', 48 * MIB);
    const second = r.take('a', 48 * MIB);
    const third = r.take('a', 48 * MIB);
    expect([first, second, third]).toEqual([48 * MIB, 16 * MIB, 0]);
    r.giveBack('a', first - MIB);
    r.giveBack('a', second);
    r.giveBack('a', third);
    expect(r.tokens('a')).toBe(RATE - MIB);
  });

  it("one principal's bucket is its own: another's is full", () => {
    const clock = { now: 0 };
    const r = rates(clock);
    r.giveBack('a', r.take('a', RATE) - RATE);
    expect(r.tokens('a')).toBe(0);
    expect(r.take('b', RATE)).toBe(RATE);
  });

  it('forgets a principal with no grant out once its bucket is full again, and never one with a grant out', () => {
    const clock = { now: 0 };
    const r = rates(clock);
    r.giveBack('a', r.take('a', RATE) - RATE / 2); // half spent: full again in 500 ms
    r.giveBack('held', r.take('held', RATE) - RATE / 2);
    const held = r.take('held', MIB); // remembered, and now with a grant out
    expect(held).toBe(MIB);
    clock.now += 499;
    r.giveBack('c', r.take('c', 0));
    expect(r.principalsTracked).toBe(3);
    clock.now += 1;
    r.giveBack('c', r.take('c', 0));
    // 'a' is full and forgotten; 'held' holds a grant; 'c' spent nothing.
    expect(r.principalsTracked).toBe(2);
    clock.now += 60_000;
    r.giveBack('c', r.take('c', 0));
    expect(r.principalsTracked).toBe(2);
    r.giveBack('held', 0);
    expect(r.tokens('held')).toBe(RATE);
  });

  it('holds at most principalsIdleMax idle principals: the one idle longest is forgotten first', () => {
    const clock = { now: 0 };
    const r = rates(clock, 3);
    for (let i = 0; i < 100; i++) r.giveBack(`p${i}`, r.take(`p${i}`, RATE) - RATE);
    expect(r.principalsTracked).toBe(3);
    // The last three are remembered with empty buckets; an early one starts full again.
    expect(r.tokens('p99')).toBe(0);
    expect(r.tokens('p0')).toBe(RATE);
  });

  it('a clock that goes back refills nothing, and refills again from there', () => {
    const clock = { now: 10_000 };
    const r = rates(clock);
    r.giveBack('a', r.take('a', RATE) - RATE);
    clock.now = 5_000;
    expect(r.tokens('a')).toBe(0);
    clock.now = 5_500;
    expect(r.tokens('a')).toBe(RATE / 2);
  });
});

/** An inflate of `bytes` that stops at its bound, as zlib does. */
function inflating(bytes: number): (bytesMax: number) => { inflatedBytes: number } {
  return (bytesMax) => {
    if (bytes > bytesMax) throw new InflateBoundError(`past ${bytesMax}`, bytesMax, 61);
    return { inflatedBytes: bytes };
  };
}

describe('DecompressGrant', () => {
  const limits = { requestDecompressBytesMax: 16 * MIB, requestScanBytesMax: MIB };

  it('takes nothing from the bucket until the request first inflates: nothing may be inflated before', () => {
    const clock = { now: 0 };
    const r = rates(clock);
    const grant = r.grantFor('a', requestBudget(limits));
    expect(grant.budget.decompressBytesLeft).toBe(0);
    grant.release();
    expect(r.principalsTracked).toBe(0);
    expect(grant.budgetToInflate().decompressBytesLeft).toBe(16 * MIB);
    expect(r.tokens('a')).toBe(RATE - 16 * MIB);
  });

  it('gives back what the request left, once', () => {
    const clock = { now: 0 };
    const r = rates(clock);
    const grant = r.grantFor('a', requestBudget(limits));
    inflateWithin(grant.budgetToInflate(), MIB, inflating(300_000));
    grant.release();
    grant.release();
    expect(r.tokens('a')).toBe(RATE - 300_000);
    expect(grant.budget.decompressBytesLeft).toBe(0);
  });

  it("names the request's limit when the bucket granted all it asked, the principal's when it granted less", () => {
    const clock = { now: 0 };
    const r = rates(clock);
    const refusal = (): LimitReachedError => {
      const grant = r.grantFor('a', requestBudget(limits));
      try {
        // Two batches of 10 MiB of records: the second passes what is left of the grant.
        inflateWithin(grant.budgetToInflate(), 32 * MIB, inflating(10 * MIB));
        inflateWithin(grant.budget, 32 * MIB, inflating(10 * MIB));
      } catch (err) {
        return err as LimitReachedError;
      } finally {
        grant.release();
      }
      throw new Error('not refused');
    };
    // 64 MiB: three grants of 16 MiB whole, then 16 MiB, then nothing.
    for (let i = 0; i < 4; i++) expect(refusal().limit).toBe('requestDecompressBytesMax');
    const spent = refusal();
    expect(spent.limit).toBe('decompressBytesPerPrincipalPerSecond');
    expect(spent.errorName).toBe(Errors.THROTTLED.name);
    expect(spent.message).toMatch(/limits\.decompressBytesPerPrincipalPerSecond/);
  });
});
