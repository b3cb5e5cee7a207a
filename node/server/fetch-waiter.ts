// The long-poll waiting room (Kafka's fetch purgatory). A Fetch that finds fewer than
// minBytes waits here until one of its partitions appends, its wait runs out, the request
// is aborted, or the node shuts down; then the handler reads again.

import type { Clock } from '../../protocol/clock.js';
import type { PartitionLog } from '../storage/partition-log.js';

export class FetchWaiter {
  private readonly waiting = new Set<() => void>();
  private closed = false;

  constructor(private readonly clock: Clock) {}

  get waitingCount(): number {
    return this.waiting.size;
  }

  waitForAppend(partitions: readonly PartitionLog[], waitMs: number, signal: AbortSignal): Promise<void> {
    if (this.closed || signal.aborted || waitMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const unsubscribe = partitions.map((p) => p.onAppend(done));
      const timer = this.clock.setTimeout(done, waitMs);
      signal.addEventListener('abort', done, { once: true });
      this.waiting.add(done);
      const self = this;
      function done(): void {
        if (!self.waiting.delete(done)) return;
        timer.cancel();
        signal.removeEventListener('abort', done);
        for (const u of unsubscribe) u();
        resolve();
      }
    });
  }

  /** Releases every waiting fetch; they answer with what they have. */
  close(): void {
    this.closed = true;
    for (const done of [...this.waiting]) done();
  }
}
