// The one way code of ours reads time and schedules work. Everything that waits, times out,
// expires or stamps takes a Clock, so that a test drives time instead of sleeping through it
// and a deterministic simulation of several nodes can run the same code on one clock.
// `systemClock` is the real one; `ManualClock` moves only when told.

/** A scheduled call; cancel() is a no-op once it ran or was cancelled. */
export interface ClockTimer {
  cancel(): void;
  /** Does not keep the process alive (Node's unref); a no-op on a manual clock. */
  unref(): this;
}

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch (Date.now): for timestamps and expiry dates. */
  now(): number;
  /** Monotonic milliseconds (performance.now): for durations, deadlines and rates. */
  monotonic(): number;
  /** Calls `fn` once, `ms` (at least 0) from now. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
}

class SystemTimer implements ClockTimer {
  constructor(private readonly handle: NodeJS.Timeout) {}

  cancel(): void {
    clearTimeout(this.handle);
  }

  unref(): this {
    this.handle.unref();
    return this;
  }
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout: (fn: () => void, ms: number): ClockTimer => new SystemTimer(setTimeout(fn, Math.max(0, ms))),
});

/**
 * A clock whose time, wall and monotonic alike, is read from `now`, with the timers of
 * `timers` (default the system's): for a test that pins or steps time by hand and keeps
 * real timers.
 */
export function clockAt(now: () => number, timers: Clock = systemClock): Clock {
  return { now, monotonic: now, setTimeout: (fn, ms) => timers.setTimeout(fn, ms) };
}

/** Resolves after `ms` on `clock`, or rejects with the signal's reason once it aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

interface ManualEntry {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

class ManualTimer implements ClockTimer {
  constructor(
    private readonly entry: ManualEntry,
    private readonly clock: ManualClock,
  ) {}

  cancel(): void {
    if (this.entry.cancelled) return;
    this.entry.cancelled = true;
    this.clock.forget(this.entry);
  }

  unref(): this {
    return this;
  }
}

/**
 * A clock that moves only by advance(): due timers run in the order they are due (those due
 * at the same instant in the order they were set), each at its own instant, and a timer set
 * by one of them runs in the same advance if it falls due within it. Wall and monotonic time
 * move together. No I/O happens inside one advance(): a jump across two keepalive rounds
 * finds every peer silent for both and cuts it, as a real node would after that long
 * without a pong; a test that jumps that far keeps its peers with advanceAsync's steps or
 * expects the cut.
 */
export class ManualClock implements Clock {
  private wallMs: number;
  private monotonicMs = 0;
  private seq = 0;
  private readonly timers: ManualEntry[] = [];

  constructor(startWallMs = 1_700_000_000_000) {
    this.wallMs = startWallMs;
  }

  now(): number {
    return this.wallMs;
  }

  monotonic(): number {
    return this.monotonicMs;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const entry: ManualEntry = { at: this.monotonicMs + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(entry);
    return new ManualTimer(entry, this);
  }

  /** Timers set and not yet run or cancelled. */
  get pending(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    if (!(Number.isFinite(ms) && ms >= 0)) throw new RangeError(`cannot advance a clock by ${ms} ms`);
    const until = this.monotonicMs + ms;
    for (;;) {
      const next = this.nextDue(until);
      if (next === null) break;
      this.moveTo(next.at);
      this.forget(next);
      next.fn();
    }
    this.moveTo(until);
  }

  /**
   * advance() in steps of `stepMs`, letting promise callbacks run between steps (so that
   * code which awaits between timers sees each one), until `ms` have passed.
   */
  async advanceAsync(ms: number, stepMs = 1): Promise<void> {
    const until = this.monotonicMs + ms;
    while (this.monotonicMs < until) {
      this.advance(Math.min(stepMs, until - this.monotonicMs));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** @internal for ManualTimer */
  forget(entry: ManualEntry): void {
    const i = this.timers.indexOf(entry);
    if (i >= 0) this.timers.splice(i, 1);
  }

  private nextDue(until: number): ManualEntry | null {
    let best: ManualEntry | null = null;
    for (const t of this.timers) {
      if (t.at > until) continue;
      if (best === null || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }

  private moveTo(monotonicMs: number): void {
    if (monotonicMs <= this.monotonicMs) return;
    this.wallMs += monotonicMs - this.monotonicMs;
    this.monotonicMs = monotonicMs;
  }
}
