// The node-wide budget for bytes queued towards clients. Each connection may queue up to
// limits.sendBufferBytesMax before the node stops reading its requests and making its
// answers and pushes; all connections together up to limits.sendBufferBytesTotalMax. Past
// that, a connection is served only while its own queue is under SEND_SHARE_BYTES, and what
// it is sent at once (a Fetch answer, a push) is cut to that share, at least one batch
// (KIP-74). So clients that read keep being served, a little at a time, while those that do
// not (a principal opening connections and never reading Metadata answers) hold at most
// their share each, and the pings they do not answer end them within two ping intervals.
//
// Counting every connection's queue at every send would cost a walk over all of them; only
// queues of SEND_SHARE_BYTES or more are tracked (a device's answers leave at once and never
// are), their sizes re-read at each send and every REFRESH_MS while any is tracked.

import type { FrameTransport } from '../../protocol/transport.js';

/** What a connection may queue while the node is over its budget; less is never tracked. */
export const SEND_SHARE_BYTES = 64 * 1024;
const REFRESH_MS = 50;

export interface SendBudgetOptions {
  /** limits.sendBufferBytesMax. */
  perConnectionMax: number;
  /** limits.sendBufferBytesTotalMax. */
  totalMax: number;
  /** Told when the node first goes over its budget (once per time over), for the metrics. */
  onOver?: () => void;
}

export class SendBudget {
  /** Queues of SEND_SHARE_BYTES or more, by transport, at their last reading. */
  private readonly tracked = new Map<FrameTransport, number>();
  private total = 0;
  private over = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly options: SendBudgetOptions) {}

  /** Bytes queued towards clients, as last read (queues under the share not counted). */
  get totalBytes(): number {
    return this.total;
  }

  get isOver(): boolean {
    return this.total > this.options.totalMax;
  }

  /** What a connection may have queued and still be read from and sent to now. */
  allowance(): number {
    return this.isOver ? SEND_SHARE_BYTES : this.options.perConnectionMax;
  }

  /** The most one answer or push may carry now: `requested`, or the share while over. */
  answerBytesMax(requested: number): number {
    return this.isOver ? Math.min(requested, SEND_SHARE_BYTES) : requested;
  }

  /** Reads a transport's queue after something was sent to it: O(1) when it is short. */
  note(transport: FrameTransport): void {
    const bytes = transport.isClosed ? 0 : transport.bufferedBytes;
    const seen = this.tracked.get(transport);
    if (seen === undefined) {
      if (bytes < SEND_SHARE_BYTES) return;
      this.tracked.set(transport, bytes);
      this.total += bytes;
      this.arm();
    } else if (bytes < SEND_SHARE_BYTES) {
      this.tracked.delete(transport);
      this.total -= seen;
    } else {
      this.tracked.set(transport, bytes);
      this.total += bytes - seen;
    }
    this.checkOver();
  }

  /**
   * Resolves once `transport`'s queue is within what it may have (`allowance`), or it has
   * closed: its own queue drains, or the node's budget frees.
   */
  async waitForRoom(transport: FrameTransport): Promise<void> {
    while (!transport.isClosed && transport.bufferedBytes > this.allowance()) {
      const allowance = this.allowance();
      let wake!: () => void;
      const budgetFreed = new Promise<void>((resolve) => (wake = resolve));
      this.waiters.add(wake);
      try {
        await Promise.race([transport.drained(allowance / 2), budgetFreed]);
      } finally {
        this.waiters.delete(wake);
      }
      this.note(transport);
    }
  }

  private checkOver(): void {
    const over = this.isOver;
    if (over && !this.over) this.options.onOver?.();
    if (!over && this.over) for (const wake of [...this.waiters]) wake();
    this.over = over;
  }

  private arm(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  /** Re-reads every tracked queue; stops when none is left. */
  private refresh(): void {
    for (const transport of [...this.tracked.keys()]) this.note(transport);
    if (this.tracked.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const wake of [...this.waiters]) wake();
  }
}
