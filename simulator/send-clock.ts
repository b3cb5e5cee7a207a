// One clock for all the devices of a worker process: a min-heap of what is due, by time, run
// from one repeating timer. A setTimeout per event (a Timeout and a closure, kept until the
// next event: a second for a device sending once a second) was, with the per-send Set of the
// device, most of what the workers' young collections promoted to the old generation, and
// the full collections of that garbage were what was left of the run's latency tail. Node
// also keeps one timer list per distinct duration, and jittered gaps have hundreds of them.

/** What the clock runs: a device, which keeps its own place in the heap. */
export interface Timed {
  /** When it is due, in the clock's time (ms). */
  dueAt: number;
  /** Its index in the heap, or -1 when not scheduled. Owned by the clock. */
  heapIndex: number;
  /** Called once when due, after it has left the heap (so it may schedule itself again). */
  fire(): void;
}

/** How often the clock looks for what is due: events fire at most about this late. */
export const SEND_CLOCK_TICK_MS = 1;

export class SendClock {
  /**
   * The heap, from index 0 to `size`. The array never shrinks: V8 drops the backing store of
   * an array emptied by pop(), and the next push would allocate one.
   */
  private readonly heap: (Timed | undefined)[] = [];
  private size = 0;
  private timer: { stop(): void } | null = null;

  constructor(
    private readonly now: () => number = () => performance.now(),
    /** Runs `tick` every SEND_CLOCK_TICK_MS while anything is scheduled; injectable for tests. */
    private readonly repeat: (tick: () => void) => { stop(): void } = realRepeat,
  ) {}

  /** How many are scheduled. */
  get scheduled(): number {
    return this.size;
  }

  /** Schedules `item` `delayMs` from now, moving it if it was already scheduled. */
  schedule(item: Timed, delayMs: number): void {
    item.dueAt = this.now() + delayMs;
    if (item.heapIndex >= 0) {
      this.siftUp(item.heapIndex);
      this.siftDown(item.heapIndex);
      return;
    }
    if (this.size < this.heap.length) this.heap[this.size] = item;
    else this.heap.push(item);
    item.heapIndex = this.size;
    this.size += 1;
    this.siftUp(item.heapIndex);
    if (this.timer === null) this.timer = this.repeat(() => this.runDue());
  }

  /** Takes `item` off the clock; nothing if it was not on it. */
  cancel(item: Timed): void {
    const i = item.heapIndex;
    if (i < 0) return;
    this.removeAt(i);
    if (i < this.size) {
      this.siftUp(i);
      this.siftDown(i);
    }
    this.stopIfIdle();
  }

  /** Fires everything due by now, earliest first. */
  runDue(): void {
    const now = this.now();
    // Fired items may schedule themselves again, due later than now: the loop ends there.
    while (this.size > 0) {
      const first = this.heap[0] as Timed;
      if (first.dueAt > now) break;
      this.removeAt(0);
      if (this.size > 0) this.siftDown(0);
      first.fire();
    }
    this.stopIfIdle();
  }

  private stopIfIdle(): void {
    if (this.size === 0 && this.timer !== null) {
      this.timer.stop();
      this.timer = null;
    }
  }

  /** Puts the last item at `i` and clears the last slot; the caller restores the order. */
  private removeAt(i: number): void {
    const item = this.heap[i] as Timed;
    item.heapIndex = -1;
    this.size -= 1;
    const last = this.heap[this.size] as Timed;
    this.heap[this.size] = undefined;
    if (i < this.size) {
      this.heap[i] = last;
      last.heapIndex = i;
    }
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const item = heap[i] as Timed;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex] as Timed;
      if (parent.dueAt <= item.dueAt) break;
      heap[i] = parent;
      parent.heapIndex = i;
      i = parentIndex;
    }
    heap[i] = item;
    item.heapIndex = i;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const size = this.size;
    const item = heap[i] as Timed;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= size) break;
      const right = left + 1;
      const child = right < size && (heap[right] as Timed).dueAt < (heap[left] as Timed).dueAt ? right : left;
      const smaller = heap[child] as Timed;
      if (smaller.dueAt >= item.dueAt) break;
      heap[i] = smaller;
      smaller.heapIndex = i;
      i = child;
    }
    heap[i] = item;
    item.heapIndex = i;
  }
}

function realRepeat(tick: () => void): { stop(): void } {
  const interval = setInterval(tick, SEND_CLOCK_TICK_MS);
  return { stop: () => clearInterval(interval) };
}
