// Pre-authentication slots: every socket holds one from its TCP accept until its Hello has
// succeeded or it closed. Until then the peer is a stranger, and strangers share a bounded
// room:
//
// - per source address (an IPv6 peer by its /64, as a host is commonly given a whole one;
//   loopback and `limits.exemptAddresses` excepted), at most
//   `handshakesPerAddressMax` sockets at once and `handshakesPerAddressPerSecond` new ones
//   per second (a token bucket holding one second's worth). Past either, the new socket is
//   refused at once: one address cannot take the whole room.
// - node-wide, at most `handshakesMax`. When full, the oldest unfinished socket (of any
//   address, exempt ones included) is evicted and the new one takes its place. Refusing the
//   newcomer instead would let whoever fills the room first keep it (an attacker holding
//   every slot until its deadline let a real device in 1 time in 70); evicting the oldest
//   makes an attacker's sockets live only as long as it takes others to arrive, while a
//   real client, which finishes in a few round trips, is rarely the oldest.
//
// Pure bookkeeping: no sockets, no timers; time comes from the injected clock, so that the
// rules are tested without waiting.

import { assert, AssertionError } from '../../protocol/errors.js';
import { addressGroupOf } from '../address-ranges.js';

/** Which per-address limit refused a socket: its config key. */
export type PreAuthRefusal = 'handshakesPerAddressMax' | 'handshakesPerAddressPerSecond';

export interface PreAuthSlotsOptions {
  /** Sockets before admission, node-wide; past it the oldest is evicted. */
  handshakesMax: number;
  /** Sockets before admission from one (non-exempt) address. */
  handshakesPerAddressMax: number;
  /** New sockets per second from one (non-exempt) address; the bucket holds one second's worth. */
  handshakesPerAddressPerSecond: number;
  /** Addresses the two per-address limits do not apply to (loopback, configured ranges). */
  exempt: { has(address: string): boolean };
  /** Milliseconds, monotonic. */
  now(): number;
  /** Addresses with nothing open that are still remembered; default ADDRESSES_IDLE_MAX. */
  addressesIdleMax?: number;
}

/**
 * Addresses remembered with nothing open, on top of those with a socket open (at most
 * handshakesMax of them, since each holds a slot). An address with nothing open is kept only
 * until its bucket is full again (at most a second), so that closing its sockets does not
 * reset its rate. A peer that rotates through more addresses than this in a second (an IPv6
 * prefix) makes the oldest of them be forgotten early: each such address then gets a full
 * bucket again, one second's worth of sockets more, which is what it could have had from a
 * fresh address anyway. Node-wide eviction still bounds what they hold. The table thus
 * holds at most handshakesMax + this many entries, whatever the peers do.
 */
export const ADDRESSES_IDLE_MAX = 4096;

/** A bucket refills in at most this long: its capacity is one second's worth. */
const BUCKET_FILL_MS = 1000;

/** What one non-exempt address holds. */
interface AddressEntry {
  readonly address: string;
  /** Sockets of this address holding a slot. */
  open: number;
  /** Tokens in its bucket; a new socket takes one. */
  tokens: number;
  /** When `tokens` was last brought up to date. */
  refilledAt: number;
  /** When `open` last fell to 0 (meaningful only then). */
  idleSince: number;
}

type SlotState = 'held' | 'released' | 'evicted';

/** One socket's place. Freed once, by `release` or by eviction, whichever comes first. */
export class PreAuthSlot {
  /** @internal */ state: SlotState = 'held';

  /** @internal */
  constructor(
    private readonly owner: PreAuthSlots,
    /** @internal */ readonly entry: AddressEntry | null,
    /** @internal */ readonly onEvict: () => void,
  ) {}

  /** True until released or evicted. */
  get held(): boolean {
    return this.state === 'held';
  }

  get evicted(): boolean {
    return this.state === 'evicted';
  }

  /** Frees the slot (the peer was admitted, or its socket closed). True if this call freed it. */
  release(): boolean {
    if (this.state !== 'held') return false;
    this.state = 'released';
    this.owner.free(this);
    return true;
  }
}

export class PreAuthSlots {
  /** Held slots in the order they were taken: the first is the oldest unfinished socket. */
  private readonly held = new Set<PreAuthSlot>();
  private readonly addresses = new Map<string, AddressEntry>();
  /** Entries with nothing open, in the order they became so (oldest first). */
  private readonly idle = new Map<string, AddressEntry>();
  private readonly bucketCapacity: number;
  private readonly idleMax: number;

  constructor(private readonly options: PreAuthSlotsOptions) {
    this.bucketCapacity = options.handshakesPerAddressPerSecond;
    this.idleMax = options.addressesIdleMax ?? ADDRESSES_IDLE_MAX;
  }

  /** Sockets holding a slot. */
  get size(): number {
    return this.held.size;
  }

  /** Addresses remembered (with sockets open, or a bucket not yet full). */
  get addressesTracked(): number {
    return this.addresses.size;
  }

  /**
   * A slot for a new socket from `address`, or the per-address limit that refuses it. When
   * the node-wide room is full, the oldest held slot is evicted first: it is freed, then its
   * `onEvict` is called (to close its socket).
   */
  take(address: string, onEvict: () => void): PreAuthSlot | PreAuthRefusal {
    let entry: AddressEntry | null = null;
    const now = this.options.now();
    this.forgetIdle(now);
    if (!this.options.exempt.has(address)) {
      entry = this.entryFor(addressGroupOf(address), now);
      refill(entry, now, this.bucketCapacity);
      if (entry.open >= this.options.handshakesPerAddressMax) return 'handshakesPerAddressMax';
      if (entry.tokens < 1) return 'handshakesPerAddressPerSecond';
      entry.tokens -= 1;
      if (entry.open++ === 0) this.idle.delete(entry.address);
    }
    while (this.held.size >= this.options.handshakesMax) this.evictOldest();
    const slot = new PreAuthSlot(this, entry, onEvict);
    this.held.add(slot);
    return slot;
  }

  /** @internal Called once per slot, by its release or its eviction. */
  free(slot: PreAuthSlot): void {
    // Once per connection: the messages are built only when an assertion fails.
    if (!this.held.delete(slot)) throw new AssertionError('a pre-auth slot was freed twice');
    const entry = slot.entry;
    if (entry === null) return;
    entry.open -= 1;
    if (entry.open < 0) throw new AssertionError(`address ${entry.address} has ${entry.open} sockets open`);
    if (entry.open === 0) {
      entry.idleSince = this.options.now();
      this.idle.set(entry.address, entry);
    }
  }

  private evictOldest(): void {
    const oldest = this.held.values().next().value;
    assert(oldest !== undefined, 'the pre-auth room is full but holds no slot');
    oldest.state = 'evicted';
    this.free(oldest);
    oldest.onEvict();
  }

  private entryFor(address: string, now: number): AddressEntry {
    const known = this.addresses.get(address);
    if (known) return known;
    // Entries with a socket open number at most handshakesMax (each holds a slot), so past
    // this bound at least one idle entry is left to forget.
    if (this.addresses.size >= this.options.handshakesMax + this.idleMax) {
      const oldest = this.idle.values().next().value;
      assert(oldest !== undefined, 'the address table is full of addresses with sockets open');
      this.forget(oldest);
    }
    const entry: AddressEntry = { address, open: 0, tokens: this.bucketCapacity, refilledAt: now, idleSince: now };
    this.addresses.set(address, entry);
    this.idle.set(address, entry);
    return entry;
  }

  /** Forgets addresses with nothing open whose bucket is full: they are as if never seen. */
  private forgetIdle(now: number): void {
    for (const entry of this.idle.values()) {
      if (entry.idleSince + BUCKET_FILL_MS > now) return;
      this.forget(entry);
    }
  }

  private forget(entry: AddressEntry): void {
    if (entry.open !== 0) throw new AssertionError(`forgetting address ${entry.address} with ${entry.open} sockets open`);
    this.idle.delete(entry.address);
    this.addresses.delete(entry.address);
  }
}

function refill(entry: AddressEntry, now: number, capacity: number): void {
  const elapsedMs = Math.max(0, now - entry.refilledAt);
  entry.tokens = Math.min(capacity, entry.tokens + (elapsedMs * capacity) / BUCKET_FILL_MS);
  entry.refilledAt = now;
}
