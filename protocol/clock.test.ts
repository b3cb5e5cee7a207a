import { describe, expect, it } from 'vitest';
import { ManualClock, sleep, systemClock } from './clock.js';

describe('ManualClock', () => {
  it('runs due timers in due order, each at its own instant, and none before it is due', () => {
    const clock = new ManualClock(1_000);
    const seen: string[] = [];
    clock.setTimeout(() => seen.push(`b@${clock.monotonic()}`), 20);
    clock.setTimeout(() => seen.push(`a@${clock.monotonic()}`), 10);
    clock.setTimeout(() => seen.push(`a2@${clock.monotonic()}`), 10);
    clock.advance(9);
    expect(seen).toEqual([]);
    clock.advance(11);
    expect(seen).toEqual(['a@10', 'a2@10', 'b@20']);
    expect([clock.now(), clock.monotonic(), clock.pending]).toEqual([1_020, 20, 0]);
  });

  it('runs a timer set by a timer within the same advance when it falls due in it, and not one cancelled', () => {
    const clock = new ManualClock();
    const seen: number[] = [];
    clock.setTimeout(() => {
      seen.push(clock.monotonic());
      clock.setTimeout(() => seen.push(clock.monotonic()), 5);
      clock.setTimeout(() => seen.push(clock.monotonic()), 50);
    }, 5);
    const cancelled = clock.setTimeout(() => seen.push(-1), 7);
    cancelled.cancel();
    cancelled.cancel();
    clock.advance(12);
    expect(seen).toEqual([5, 10]);
    expect(clock.pending).toBe(1);
    expect(() => clock.advance(-1)).toThrow(RangeError);
  });

  it('ends a sleep when time reaches it, or at once with the reason when its signal aborts', async () => {
    const clock = new ManualClock();
    let slept = false;
    const done = sleep(clock, 100).then(() => (slept = true));
    await clock.advanceAsync(99, 10);
    expect(slept).toBe(false);
    await clock.advanceAsync(1);
    await done;
    expect(slept).toBe(true);
    const abort = new AbortController();
    const aborted = sleep(clock, 1_000, abort.signal);
    abort.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(clock.pending).toBe(0);
  });
});

describe('systemClock', () => {
  it('reads the process clocks and schedules real timers', async () => {
    const before = Date.now();
    expect(systemClock.now()).toBeGreaterThanOrEqual(before);
    expect(systemClock.monotonic()).toBeGreaterThan(0);
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 1).unref());
    // Node runs timers in due order: had the cancelled one stayed, it would run before the later one.
    const order: string[] = [];
    systemClock.setTimeout(() => order.push('cancelled'), 0).cancel();
    await new Promise<void>((resolve) => systemClock.setTimeout(() => resolve(void order.push('later')), 2));
    expect(order).toEqual(['later']);
  });
});
