// What one principal (one identity key) may make the node inflate per second, all its
// connections and requests together: limits.decompressBytesPerPrincipalPerSecond, a token
// bucket of inflated bytes holding one second's worth. limits.requestDecompressBytesMax
// bounds one request, but a connection pipelines inflightMax (32) of them and a principal
// may hold connectionsPerPrincipalMax connections: 32 ListOffsets over 64 valid gzip batches
// of 4.4 KB that inflate to 1 MB each blocked the event loop for 1,078 ms in one burst,
// each request spending a fresh 64 MiB.
//
// A request that inflates takes a grant before its first inflate: min(what the request may
// inflate, what the bucket holds). It inflates within that, and gives back what it did not
// use when it is done. So the requests of one principal never together inflate more than
// its bucket held, however they interleave, and a request that inflates a little costs its
// principal a little. Every anonymous client (dev mode, loopback only) is the one principal
// `anonymous`: one local user, one bucket.
//
// Bounded memory: a principal is remembered while a grant of its is out, then only until its
// bucket is full again (forgetting it then changes nothing). Beyond PRINCIPALS_IDLE_MAX such
// idle principals, the one idle longest is forgotten early: its next request finds a full
// bucket, which is one second's worth more than its rate allowed, for a principal that
// PRINCIPALS_IDLE_MAX others outran within that second. A principal is only ever in the
// table after it inflated, so devices that send uncompressed batches never enter it.
//
// Pure bookkeeping: no timers; time comes from the injected clock, as in pre-auth.ts.

import { AssertionError } from '../../protocol/errors.js';
import type { RequestBudget } from '../storage/request-budget.js';

/** Idle principals remembered: above the 10,000 devices of a full gateway, ~100 B each. */
export const PRINCIPALS_IDLE_MAX = 16_384;

/** A bucket refills in at most this long: its capacity is one second's worth. */
const BUCKET_FILL_MS = 1000;

export interface PrincipalRatesOptions {
  /** Bytes a principal may inflate per second; its bucket holds one second's worth. */
  decompressBytesPerSecond: number;
  /** Milliseconds, monotonic. */
  now(): number;
  /** Idle principals remembered; default PRINCIPALS_IDLE_MAX. */
  principalsIdleMax?: number;
}

interface PrincipalEntry {
  readonly key: string;
  /** Bytes its bucket holds. */
  tokens: number;
  /** When `tokens` was last brought up to date. */
  refilledAt: number;
  /** Grants taken and not yet given back. */
  grantsOut: number;
  /** With no grant out: when its bucket is full again. */
  fullAt: number;
}

export class PrincipalRates {
  private readonly principals = new Map<string, PrincipalEntry>();
  /** Entries with no grant out, in the order they became so (oldest first). */
  private readonly idle = new Map<string, PrincipalEntry>();
  private readonly capacity: number;
  private readonly idleMax: number;

  constructor(private readonly options: PrincipalRatesOptions) {
    if (!(Number.isInteger(options.decompressBytesPerSecond) && options.decompressBytesPerSecond > 0)) {
      throw new AssertionError(`decompressBytesPerSecond ${options.decompressBytesPerSecond} must be a positive integer`);
    }
    this.capacity = options.decompressBytesPerSecond;
    this.idleMax = options.principalsIdleMax ?? PRINCIPALS_IDLE_MAX;
  }

  /** Principals remembered (with a grant out, or a bucket not yet full). */
  get principalsTracked(): number {
    return this.principals.size;
  }

  /** What `principal`'s bucket holds now, whole bytes; its capacity when it is not remembered. */
  tokens(principal: string): number {
    const entry = this.principals.get(principal);
    if (entry === undefined) return this.capacity;
    refill(entry, this.options.now(), this.capacity);
    return Math.floor(entry.tokens);
  }

  /** Takes min(`bytesMax`, what the bucket holds) from it: the grant, which may be 0. */
  take(principal: string, bytesMax: number): number {
    const now = this.options.now();
    this.forgetFull(now);
    let entry = this.principals.get(principal);
    if (entry === undefined) {
      entry = { key: principal, tokens: this.capacity, refilledAt: now, grantsOut: 0, fullAt: now };
      this.principals.set(principal, entry);
    } else {
      refill(entry, now, this.capacity);
    }
    const granted = Math.max(0, Math.min(bytesMax, Math.floor(entry.tokens)));
    entry.tokens -= granted;
    if (entry.grantsOut++ === 0) this.idle.delete(principal);
    return granted;
  }

  /** Returns the unused part of a grant of `principal`'s, once per grant. */
  giveBack(principal: string, bytes: number): void {
    const entry = this.principals.get(principal);
    if (entry === undefined || entry.grantsOut <= 0) throw new AssertionError(`a grant of ${principal} given back that was not taken`);
    const now = this.options.now();
    refill(entry, now, this.capacity);
    entry.tokens = Math.min(this.capacity, entry.tokens + Math.max(0, bytes));
    if (--entry.grantsOut > 0) return;
    entry.fullAt = now + ((this.capacity - entry.tokens) * BUCKET_FILL_MS) / this.capacity;
    if (this.idle.size >= this.idleMax) this.forget(this.idle.values().next().value as PrincipalEntry);
    this.idle.set(principal, entry);
  }

  /**
   * A grant for one request, taken at its first inflate from `budget`'s decompression
   * share (the request's limit), which stays 0 until then.
   */
  grantFor(principal: string, budget: RequestBudget): DecompressGrant {
    return new DecompressGrant(this, principal, budget);
  }

  /**
   * Forgets idle entries whose bucket is full, oldest first, stopping at the first that is
   * not: one that spent much may keep those behind it for up to a second, within idleMax.
   */
  private forgetFull(now: number): void {
    for (const entry of this.idle.values()) {
      if (entry.fullAt > now) return;
      this.forget(entry);
    }
  }

  private forget(entry: PrincipalEntry): void {
    if (entry.grantsOut !== 0) throw new AssertionError(`forgetting principal ${entry.key} with ${entry.grantsOut} grants out`);
    this.idle.delete(entry.key);
    this.principals.delete(entry.key);
  }
}

/**
 * One request's share of its principal's bucket. Nothing may be inflated before it is
 * taken (the budget's share is 0 until then, so a forgotten grant refuses rather than lets
 * through); `budgetToInflate` takes it at the first call, so a request that inflates nothing
 * (a Produce of uncompressed batches) never touches the table. `release`, in the handler's
 * `finally`, gives back what is left.
 */
export class DecompressGrant {
  private readonly bytesMax: number;
  private held = false;

  constructor(
    private readonly rates: PrincipalRates,
    private readonly principal: string,
    readonly budget: RequestBudget,
  ) {
    this.bytesMax = budget.decompressBytesLeft;
    budget.decompressBytesLeft = 0;
  }

  /** The request's budget with its decompression share granted. */
  budgetToInflate(): RequestBudget {
    if (!this.held) {
      this.held = true;
      const granted = this.rates.take(this.principal, this.bytesMax);
      if (granted < this.bytesMax) this.budget.decompressLimit = 'decompressBytesPerPrincipalPerSecond';
      this.budget.decompressBytesLeft = granted;
    }
    return this.budget;
  }

  /** Gives back what the request did not inflate; the budget can inflate nothing more. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    this.rates.giveBack(this.principal, this.budget.decompressBytesLeft);
    this.budget.decompressBytesLeft = 0;
  }
}

function refill(entry: PrincipalEntry, now: number, capacity: number): void {
  // A clock that went back refills nothing, and counts from there.
  const elapsedMs = Math.max(0, now - entry.refilledAt);
  entry.tokens = Math.min(capacity, entry.tokens + (elapsedMs * capacity) / BUCKET_FILL_MS);
  entry.refilledAt = now;
}
