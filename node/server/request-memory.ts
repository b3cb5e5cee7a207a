// Bytes of requests the node holds, per principal and node-wide: frames being reassembled
// from their sealed chunks and requests read and not yet answered (a long-poll Fetch holds
// its frame up to fetchWaitMsMax). Each connection is bounded on its own (frameBytesMax,
// inflightBytesMax), but a principal opens up to connectionsPerPrincipalMax connections
// and many principals share a node: limits.inflightBytesPerPrincipalMax and
// limits.inflightBytesTotalMax bound them together. A request past either is answered
// THROTTLED (retriable) at once, which frees its bytes; a chunk of an unfinished frame past
// either closes the connection with 1013 (try again later). Anonymous clients (dev mode,
// loopback only) are one principal, bounded by the node's total only.

import { ANONYMOUS } from '../auth/acl.js';

export type RequestMemoryLimit = 'inflightBytesPerPrincipalMax' | 'inflightBytesTotalMax';

export interface RequestMemoryOptions {
  perPrincipalMax: number;
  totalMax: number;
  onLimitReached?: (limit: RequestMemoryLimit) => void;
}

/**
 * One principal's tally, shared by its connections: taken once per connection, so that
 * a request costs two additions, not a lookup and a rehash of a node-wide table (a device
 * sends one a second, and 10,000 of them made that churn show in the garbage collector).
 */
export class RequestAccount {
  bytes = 0;
  /** Connections holding this account. */
  users = 0;

  constructor(
    readonly principal: string,
    private readonly memory: RequestMemory,
  ) {}

  /** Takes `bytes`, or says which limit refuses them (and takes nothing). */
  reserve(bytes: number): RequestMemoryLimit | null {
    return this.memory.reserveFor(this, bytes);
  }

  release(bytes: number): void {
    this.memory.releaseFor(this, bytes);
  }
}

export class RequestMemory {
  private readonly accounts = new Map<string, RequestAccount>();
  private total = 0;

  constructor(private readonly options: RequestMemoryOptions) {}

  get totalBytes(): number {
    return this.total;
  }

  bytesOf(principal: string): number {
    return this.accounts.get(principal)?.bytes ?? 0;
  }

  /** The account of `principal` for one more connection; give it back with `leave`. */
  account(principal: string): RequestAccount {
    let account = this.accounts.get(principal);
    if (!account) this.accounts.set(principal, (account = new RequestAccount(principal, this)));
    account.users++;
    return account;
  }

  /** A connection is done with its account (its requests may still release bytes after). */
  leave(account: RequestAccount): void {
    account.users--;
    this.forgetIfIdle(account);
  }

  /** @internal RequestAccount.reserve */
  reserveFor(account: RequestAccount, bytes: number): RequestMemoryLimit | null {
    if (this.total + bytes > this.options.totalMax) return this.refused('inflightBytesTotalMax');
    if (account.principal !== ANONYMOUS.key && account.bytes + bytes > this.options.perPrincipalMax) return this.refused('inflightBytesPerPrincipalMax');
    this.total += bytes;
    account.bytes += bytes;
    return null;
  }

  /** @internal RequestAccount.release */
  releaseFor(account: RequestAccount, bytes: number): void {
    this.total -= bytes;
    account.bytes -= bytes;
    this.forgetIfIdle(account);
  }

  private forgetIfIdle(account: RequestAccount): void {
    if (account.users <= 0 && account.bytes <= 0 && this.accounts.get(account.principal) === account) this.accounts.delete(account.principal);
  }

  private refused(limit: RequestMemoryLimit): RequestMemoryLimit {
    this.options.onLimitReached?.(limit);
    return limit;
  }
}
