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

export class RequestMemory {
  private readonly byPrincipal = new Map<string, number>();
  private total = 0;

  constructor(private readonly options: RequestMemoryOptions) {}

  get totalBytes(): number {
    return this.total;
  }

  bytesOf(principal: string): number {
    return this.byPrincipal.get(principal) ?? 0;
  }

  /** Takes `bytes` for `principal`, or says which limit refuses them (and takes nothing). */
  reserve(principal: string, bytes: number): RequestMemoryLimit | null {
    if (this.total + bytes > this.options.totalMax) return this.refused('inflightBytesTotalMax');
    const held = this.bytesOf(principal);
    if (principal !== ANONYMOUS.key && held + bytes > this.options.perPrincipalMax) return this.refused('inflightBytesPerPrincipalMax');
    this.total += bytes;
    this.byPrincipal.set(principal, held + bytes);
    return null;
  }

  release(principal: string, bytes: number): void {
    this.total -= bytes;
    const left = this.bytesOf(principal) - bytes;
    if (left > 0) this.byPrincipal.set(principal, left);
    else this.byPrincipal.delete(principal);
  }

  private refused(limit: RequestMemoryLimit): RequestMemoryLimit {
    this.options.onLimitReached?.(limit);
    return limit;
  }
}
