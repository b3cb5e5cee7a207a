import { describe, expect, it } from 'vitest';
import { SendClock, type Timed } from './send-clock.js';

/** A clock on manual time: `ticks` counts the repeating timers started, `running` says if one is. */
function manualClock(): { clock: SendClock; at: { now: number }; timer: { running: boolean; starts: number } } {
  const at = { now: 0 };
  const timer = { running: false, starts: 0 };
  const clock = new SendClock(
    () => at.now,
    () => {
      timer.running = true;
      timer.starts += 1;
      return { stop: () => void (timer.running = false) };
    },
  );
  return { clock, at, timer };
}

class Item implements Timed {
  dueAt = 0;
  heapIndex = -1;
  constructor(
    readonly name: string,
    private readonly fired: string[],
    private readonly onFire: (self: Item) => void = () => undefined,
  ) {}
  fire(): void {
    this.fired.push(this.name);
    this.onFire(this);
  }
}

describe('SendClock', () => {
  it('fires what is due, earliest first, and nothing early', () => {
    const { clock, at } = manualClock();
    const fired: string[] = [];
    // Scheduled out of order, with a tie: ties may fire in either order, but both fire.
    const delays: [string, number][] = [['e', 50], ['a', 10], ['d', 40], ['b', 20], ['c', 30], ['c2', 30], ['f', 60]];
    for (const [name, delay] of delays) clock.schedule(new Item(name, fired), delay);
    at.now = 29;
    clock.runDue();
    expect(fired).toEqual(['a', 'b']);
    at.now = 45;
    clock.runDue();
    expect(fired.slice(2, 4).sort()).toEqual(['c', 'c2']);
    expect(fired.slice(4)).toEqual(['d']);
    at.now = 1000;
    clock.runDue();
    expect(fired.slice(5)).toEqual(['e', 'f']);
    expect(clock.scheduled).toBe(0);
  });

  it('keeps the order over many random schedules, moves and cancels', () => {
    const { clock, at } = manualClock();
    const fired: string[] = [];
    let seed = 7;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const items = Array.from({ length: 300 }, (_, i) => new Item(String(i), fired));
    for (const item of items) clock.schedule(item, Math.floor(random() * 1000));
    // Move a third, cancel a tenth.
    for (const item of items) if (random() < 0.33) clock.schedule(item, Math.floor(random() * 1000));
    const cancelled = new Set(items.filter(() => random() < 0.1));
    for (const item of cancelled) clock.cancel(item);
    const expected = items.filter((i) => !cancelled.has(i)).map((i) => i.dueAt);
    const dueOf = new Map(items.map((i) => [i.name, i.dueAt]));
    for (at.now = 0; at.now < 1000; at.now += 7) clock.runDue();
    at.now = 1000;
    clock.runDue();
    expect(fired.length).toBe(expected.length);
    const firedDue = fired.map((n) => dueOf.get(n) as number);
    expect(firedDue).toEqual([...firedDue].sort((x, y) => x - y));
    expect(fired.some((n) => cancelled.has(items[Number(n)]))).toBe(false);
  });

  it('lets a fired item schedule itself again without firing twice in one run', () => {
    const { clock, at } = manualClock();
    const fired: string[] = [];
    const item = new Item('x', fired, (self) => clock.schedule(self, 100));
    clock.schedule(item, 100);
    at.now = 100;
    clock.runDue();
    expect(fired).toEqual(['x']);
    at.now = 250;
    clock.runDue();
    expect(fired).toEqual(['x', 'x']);
    expect(item.dueAt).toBe(350);
  });

  it('runs its timer only while something is scheduled', () => {
    const { clock, at, timer } = manualClock();
    const fired: string[] = [];
    const a = new Item('a', fired);
    const b = new Item('b', fired);
    expect(timer.running).toBe(false);
    clock.schedule(a, 5);
    clock.schedule(b, 10);
    expect(timer).toEqual({ running: true, starts: 1 });
    clock.cancel(b);
    clock.cancel(b); // not scheduled any more: nothing
    expect(timer.running).toBe(true);
    at.now = 5;
    clock.runDue();
    expect(fired).toEqual(['a']);
    expect(timer.running).toBe(false);
    clock.schedule(a, 1);
    expect(timer).toEqual({ running: true, starts: 2 });
  });

  it('fires on the real timer', async () => {
    const clock = new SendClock();
    const fired: string[] = [];
    await new Promise<void>((resolve) => {
      clock.schedule(new Item('late', fired, () => resolve()), 20);
      clock.schedule(new Item('soon', fired), 5);
    });
    expect(fired).toEqual(['soon', 'late']);
    expect(clock.scheduled).toBe(0);
  });
});
