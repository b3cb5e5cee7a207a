// The budget for bytes queued towards clients. Each connection may queue up to
// limits.sendBufferBytesMax before the node stops reading its requests and making its
// answers and pushes; each principal up to limits.sendBufferBytesPerPrincipalMax over all
// its connections; all connections together up to limits.sendBufferBytesTotalMax. A
// connection whose principal is over its bound, or any connection while the node is over
// its total, is served only while its own queue is under SEND_SHARE_BYTES, and what it is
// sent at once (a Fetch answer, a push) is cut to that share, at least one batch (KIP-74).
// So clients that read keep being served, and a principal that stops reading on many
// connections holds at most its own bound and a share per connection, without slowing
// everyone else; the pings its connections do not answer end them within two intervals.
//
// Counting every connection's queue at every send would cost a walk over all of them; only
// queues of SEND_SHARE_BYTES or more are tracked (a device's answers leave at once and never
// are), re-read at each send and every REFRESH_MS while any is tracked, by which a
// connection held by its principal's or the node's bound learns that it is free. Anonymous clients
// (dev mode, loopback only) are one principal and bounded by the node's total only.

import { systemClock, type Clock, type ClockTimer } from '../../protocol/clock.js';
import type { FrameTransport } from '../../protocol/transport.js';
import { ANONYMOUS } from '../auth/acl.js';

/** What a connection may queue while it is throttled; less is never tracked. */
export const SEND_SHARE_BYTES = 64 * 1024;
const REFRESH_MS = 50;
/** The principal of every anonymous client: bounded by the node's total only. */
const ANONYMOUS_KEY = ANONYMOUS.key;

export interface SendBudgetOptions {
  /** limits.sendBufferBytesMax. */
  perConnectionMax: number;
  /** limits.sendBufferBytesPerPrincipalMax. */
  perPrincipalMax: number;
  /** limits.sendBufferBytesTotalMax. */
  totalMax: number;
  /** Told when the node first goes over its total (once per time over), for the logs. */
  onOver?: () => void;
  /** Times the re-reads; default the system's clock. */
  clock?: Clock;
}

interface Tracked {
  bytes: number;
  principal: string;
}

export class SendBudget {
  /** Queues of SEND_SHARE_BYTES or more, by transport, at their last reading. */
  private readonly tracked = new Map<FrameTransport, Tracked>();
  private readonly byPrincipal = new Map<string, number>();
  private total = 0;
  private over = false;
  /** The next re-read, every REFRESH_MS while a queue is tracked or a connection waits. */
  private timer: ClockTimer | null = null;
  /** Transports whose owner waits for room, with the principal each counts against. */
  private readonly waiters = new Map<FrameTransport, { principal: string; resolve: (() => void)[] }>();

  private readonly clock: Clock;

  constructor(private readonly options: SendBudgetOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Bytes queued towards clients, as last read (queues under the share not counted). */
  get totalBytes(): number {
    return this.total;
  }

  get isOver(): boolean {
    return this.total > this.options.totalMax;
  }

  /** Bytes queued towards `principal`'s connections (queues under the share not counted). */
  bytesOf(principal: string): number {
    return this.byPrincipal.get(principal) ?? 0;
  }

  /** Whether connections of `principal` are served a share at a time now. */
  isThrottled(principal: string): boolean {
    return this.isOver || (principal !== ANONYMOUS_KEY && this.bytesOf(principal) > this.options.perPrincipalMax);
  }

  /** What a connection of `principal` may have queued and still be read from and sent to. */
  allowance(principal: string): number {
    return this.isThrottled(principal) ? SEND_SHARE_BYTES : this.options.perConnectionMax;
  }

  /** The most one answer or push to `principal` may carry now: `requested`, or the share. */
  answerBytesMax(requested: number, principal: string): number {
    return this.isThrottled(principal) ? Math.min(requested, SEND_SHARE_BYTES) : requested;
  }

  /** Reads a transport's queue after something was sent to it: O(1) when it is short. */
  note(transport: FrameTransport, principal: string): void {
    const bytes = transport.isClosed ? 0 : transport.bufferedBytes;
    const seen = this.tracked.get(transport);
    if (seen === undefined) {
      if (bytes >= SEND_SHARE_BYTES) {
        this.tracked.set(transport, { bytes, principal });
        this.add(principal, bytes);
        this.arm();
      }
    } else if (bytes < SEND_SHARE_BYTES) {
      this.tracked.delete(transport);
      this.add(seen.principal, -seen.bytes);
    } else {
      this.add(seen.principal, bytes - seen.bytes);
      seen.bytes = bytes;
    }
    this.checkOver();
    if (this.waiters.size > 0) this.wakeIfRoom(transport, bytes);
  }

  /**
   * Resolves once `transport`'s queue is within what it may have, or it has closed. Once
   * over, it resumes at half its allowance, so that a client reading slowly is not woken
   * for every chunk. A connection over its own bound waits for its socket to drain (the
   * socket's write callbacks wake it at once, and nothing is left registered when it
   * does); one held by its principal's or the node's bound is re-read at each send and
   * every REFRESH_MS, since what frees it is other connections draining.
   */
  async waitForRoom(transport: FrameTransport, principal: string): Promise<void> {
    for (;;) {
      this.note(transport, principal);
      if (transport.isClosed || transport.bufferedBytes <= this.allowance(principal)) return;
      if (this.isThrottled(principal)) await this.untilRoom(transport, principal);
      else await transport.drained(this.options.perConnectionMax / 2);
    }
  }

  private untilRoom(transport: FrameTransport, principal: string): Promise<void> {
    return new Promise<void>((resolve) => {
      let waiting = this.waiters.get(transport);
      if (!waiting) this.waiters.set(transport, (waiting = { principal, resolve: [] }));
      waiting.resolve.push(resolve);
      // A queue over its allowance is over the share, so it is tracked and re-read.
      this.arm();
    });
  }

  private wakeIfRoom(transport: FrameTransport, bytes: number): void {
    const waiting = this.waiters.get(transport);
    if (!waiting) return;
    // Woken too when it is no longer held by others' bounds: it then waits on its own drain.
    if (!transport.isClosed && bytes > this.allowance(waiting.principal) / 2 && this.isThrottled(waiting.principal)) return;
    this.waiters.delete(transport);
    for (const resolve of waiting.resolve) resolve();
  }

  private add(principal: string, bytes: number): void {
    this.total += bytes;
    const left = this.bytesOf(principal) + bytes;
    if (left > 0) this.byPrincipal.set(principal, left);
    else this.byPrincipal.delete(principal);
  }

  private checkOver(): void {
    const over = this.isOver;
    if (over && !this.over) this.options.onOver?.();
    this.over = over;
  }

  private arm(): void {
    if (this.timer !== null) return;
    this.timer = this.clock.setTimeout(() => this.refresh(), REFRESH_MS).unref();
  }

  /** Re-reads every tracked queue and every waiter's; re-armed until none is left. */
  private refresh(): void {
    this.timer = null;
    for (const [transport, seen] of [...this.tracked]) this.note(transport, seen.principal);
    for (const [transport, waiting] of [...this.waiters]) this.note(transport, waiting.principal);
    if (this.tracked.size > 0 || this.waiters.size > 0) this.arm();
  }

  close(): void {
    this.timer?.cancel();
    this.timer = null;
    for (const waiting of this.waiters.values()) for (const resolve of waiting.resolve) resolve();
    this.waiters.clear();
  }
}
