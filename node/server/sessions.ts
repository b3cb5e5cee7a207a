// The admitted connections, by who they are: so that a principal holds at most
// `limits.connectionsPerPrincipalMax` of them, a revocation closes every open connection of
// the credential or key it names at once (subscriptions included: a subscriber that sends
// nothing would otherwise be pushed records for as long as it stayed), and a connection
// closes the moment its credential expires, not at its next request.
//
// Expiries wait in a min-heap under one timer, due at the earliest: one timer for the node,
// not one per device. A closed connection's entry is emptied at once (so it keeps nothing of
// the connection alive) and stays until it comes up or the heap holds more than twice the
// live connections, when it is rebuilt from them: reconnect storms cannot make it grow
// without bound.

import { systemClock, type Clock, type ClockTimer } from '../../protocol/clock.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import type { Revocation } from '../../protocol/revocation.js';
import { principalKeyOf, type Principal } from '../auth/acl.js';
import type { Lapse } from '../auth/authenticator.js';

/** What the registry needs of a connection. */
export interface Session {
  readonly principal: Principal | undefined;
  /** Closes the connection because its credential no longer admits it. */
  endForLapse(lapse: Lapse): void;
}

export interface SessionsOptions {
  connectionsPerPrincipalMax: number;
  /** Expiry dates are wall time (credentials carry them); default the system's clock. */
  clock?: Clock;
  /** Told when a principal is refused another connection, for the metrics. */
  onLimitReached?: () => void;
}

/** Node's setTimeout takes at most 2^31 - 1 ms (24.8 days); a later expiry re-arms on the way. */
const TIMER_MS_MAX = 0x7fffffff;

interface Expiry {
  at: number;
  /** Null once the connection has ended. */
  session: Session | null;
}

export class Sessions {
  // A device holds one connection: a lone session is kept as itself, not in a Set of one.
  private readonly byPrincipal = new Map<string, Session | Set<Session>>();
  private readonly byCredential = new Map<string, Session | Set<Session>>();
  private readonly expiries: Expiry[] = [];
  /** Each live connection's entry in `expiries`, to empty it when the connection ends. */
  private readonly expiryOf = new Map<Session, Expiry>();
  private timer: ClockTimer | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private live = 0;
  private readonly clock: Clock;

  constructor(private readonly options: SessionsOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** Admitted connections of `principalKey`. */
  countOf(principalKey: string): number {
    return sizeOf(this.byPrincipal.get(principalKey));
  }

  /** Admitted connections, all principals together. */
  get size(): number {
    return this.live;
  }

  /**
   * Registers a connection whose Hello is being answered, or says why it may not have
   * another: THROTTLED (retriable: a device whose old connection is not yet known dead gets
   * in once it is).
   */
  admit(session: Session): TributaryError | null {
    const principal = session.principal;
    // Anonymous clients (dev mode, from loopback only) are all one principal: a simulated
    // fleet of thousands arrives that way. connectionsMax bounds them; nothing can revoke
    // or expire them.
    if (!principal || principal.role === 'anonymous') return null;
    const max = this.options.connectionsPerPrincipalMax;
    if (this.countOf(principal.key) >= max) {
      this.options.onLimitReached?.();
      return new TributaryError(Errors.THROTTLED, `${principal.name} has ${max} connections open already (limits.connectionsPerPrincipalMax); close one or retry later`);
    }
    if (add(this.byPrincipal, principal.key, session)) this.live++;
    if (principal.credentialId !== undefined) add(this.byCredential, principal.credentialId, session);
    if (principal.expiresAt !== undefined) {
      const expiry = { at: principal.expiresAt, session };
      this.expiryOf.set(session, expiry);
      this.scheduleExpiry(expiry);
    }
    return null;
  }

  /** The connection ended (idempotent). Its expiry entry is dropped when it comes up. */
  remove(session: Session): void {
    const principal = session.principal;
    if (!principal || principal.role === 'anonymous') return;
    if (remove(this.byPrincipal, principal.key, session)) this.live--;
    if (principal.credentialId !== undefined) remove(this.byCredential, principal.credentialId, session);
    const expiry = this.expiryOf.get(session);
    if (expiry) {
      expiry.session = null;
      this.expiryOf.delete(session);
    }
    if (this.byPrincipal.size === 0) this.clearTimer();
  }

  /** Closes every open connection the revocation names; returns how many. */
  revoke(revocation: Revocation, lapse: Lapse): number {
    const target = revocation.target;
    const named = 'credentialId' in target ? this.byCredential.get(target.credentialId) : this.byPrincipal.get(principalKeyOf(target.subject));
    if (!named) return 0;
    const sessions = named instanceof Set ? [...named] : [named];
    for (const session of sessions) {
      this.remove(session);
      session.endForLapse(lapse);
    }
    return sessions.length;
  }

  /** Stops the expiry timer (the node is closing). */
  close(): void {
    this.clearTimer();
    this.expiries.length = 0;
    this.expiryOf.clear();
  }

  /** Drops the entries of connections that have ended. */
  private rebuildExpiries(): void {
    const live = this.expiries.filter((e) => e.session !== null);
    this.expiries.length = 0;
    for (const e of live) heapPush(this.expiries, e);
  }

  private scheduleExpiry(expiry: Expiry): void {
    if (this.expiries.length > 2 * this.live + 64) this.rebuildExpiries();
    heapPush(this.expiries, expiry);
    if (expiry.at < this.timerAt) this.armTimer();
  }

  private armTimer(): void {
    this.clearTimer();
    const next = this.expiries[0];
    if (next === undefined) return;
    this.timerAt = next.at;
    const delay = Math.min(TIMER_MS_MAX, Math.max(0, next.at - this.clock.now()));
    // An expiry must not keep a stopping process alive.
    this.timer = this.clock.setTimeout(() => this.expireDue(), delay).unref();
  }

  private clearTimer(): void {
    this.timer?.cancel();
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private expireDue(): void {
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    while (this.expiries.length > 0 && this.expiries[0].at <= now) {
      const { session, at } = heapPop(this.expiries) as Expiry;
      if (session === null) continue;
      this.remove(session);
      session.endForLapse({ why: 'expired', error: new TributaryError(Errors.UNAUTHORIZED, `credential expired at ${new Date(at).toISOString()}`) });
    }
    this.armTimer();
  }
}

function sizeOf(held: Session | Set<Session> | undefined): number {
  return held === undefined ? 0 : held instanceof Set ? held.size : 1;
}

/** Adds `session` under `key`; false when it was there already. */
function add<K>(map: Map<K, Session | Set<Session>>, key: K, session: Session): boolean {
  const held = map.get(key);
  if (held === undefined) {
    map.set(key, session);
    return true;
  }
  if (held === session) return false;
  if (!(held instanceof Set)) {
    map.set(key, new Set([held, session]));
    return true;
  }
  const before = held.size;
  held.add(session);
  return held.size > before;
}

/** Removes `session` from under `key`; false when it was not there. */
function remove<K>(map: Map<K, Session | Set<Session>>, key: K, session: Session): boolean {
  const held = map.get(key);
  if (held === session) {
    map.delete(key);
    return true;
  }
  if (!(held instanceof Set) || !held.delete(session)) return false;
  if (held.size === 1) map.set(key, held.values().next().value as Session);
  return true;
}

function heapPush(heap: Expiry[], item: Expiry): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent].at <= heap[i].at) break;
    [heap[parent], heap[i]] = [heap[i], heap[parent]];
    i = parent;
  }
}

function heapPop(heap: Expiry[]): Expiry | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last !== undefined) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < heap.length && heap[l].at < heap[least].at) least = l;
      if (r < heap.length && heap[r].at < heap[least].at) least = r;
      if (least === i) break;
      [heap[least], heap[i]] = [heap[i], heap[least]];
      i = least;
    }
  }
  return top;
}
