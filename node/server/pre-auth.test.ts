// The pre-authentication slots on an injected clock: who is evicted when the room is full,
// which addresses the per-address caps and rates refuse, that the address table stays
// bounded whatever the peers do, and that a slot is freed exactly once.

import { describe, expect, it } from 'vitest';
import { ExemptAddresses } from '../address-ranges.js';
import { PreAuthSlot, PreAuthSlots, type PreAuthRefusal, type PreAuthSlotsOptions } from './pre-auth.js';

class Clock {
  ms = 1_000_000;
  now = () => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

interface Room {
  slots: PreAuthSlots;
  clock: Clock;
  /** Names of sockets evicted, in order. */
  evicted: string[];
  /** Takes a slot for socket `name` from `address`; the refusal if there is one. */
  take(name: string, address: string): PreAuthSlot | PreAuthRefusal;
  /** As `take`, expecting a slot. */
  hold(name: string, address: string): PreAuthSlot;
}

function room(options: Partial<PreAuthSlotsOptions> = {}, exempt: string[] = []): Room {
  const clock = new Clock();
  const evicted: string[] = [];
  const slots = new PreAuthSlots({
    handshakesMax: 8,
    handshakesPerAddressMax: 3,
    handshakesPerAddressPerSecond: 5,
    exempt: new ExemptAddresses(exempt),
    now: clock.now,
    ...options,
  });
  const take = (name: string, address: string) => slots.take(address, () => evicted.push(name));
  const hold = (name: string, address: string) => {
    const slot = take(name, address);
    if (typeof slot === 'string') throw new Error(`${name} from ${address} refused: ${slot}`);
    return slot;
  };
  return { slots, clock, evicted, take, hold };
}

describe('PreAuthSlots: node-wide', () => {
  it('when full, evicts the oldest unfinished socket, of any address, exempt ones included', () => {
    const r = room({ handshakesMax: 4 });
    const a = r.hold('a', '127.0.0.1');
    const b = r.hold('b', '10.0.0.1');
    r.hold('c', '10.0.0.2');
    r.hold('d', '::1');
    expect(r.evicted).toEqual([]);
    r.hold('e', '10.0.0.3');
    expect(r.evicted).toEqual(['a']);
    expect([a.held, a.evicted]).toEqual([false, true]);
    // b finishes (its Hello succeeded): c is now the oldest unfinished one.
    b.release();
    r.hold('f', '10.0.0.4');
    expect(r.evicted).toEqual(['a']);
    r.hold('g', '10.0.0.5');
    expect(r.evicted).toEqual(['a', 'c']);
    expect(r.slots.size).toBe(4);
  });

  it('frees the evicted slot before telling its owner, so a release from the owner is a no-op', () => {
    const r = room({ handshakesMax: 1 });
    let first: PreAuthSlot | null = null;
    let releasedByOwner: boolean | null = null;
    const taken = r.slots.take('10.0.0.1', () => (releasedByOwner = first?.release() ?? null));
    if (typeof taken === 'string') throw new Error(taken);
    first = taken;
    r.hold('second', '10.0.0.2');
    expect(releasedByOwner).toBe(false);
    expect(r.slots.size).toBe(1);
  });

  it('frees a released or closed socket exactly once', () => {
    const r = room();
    const a = r.hold('a', '10.0.0.1');
    expect(r.slots.size).toBe(1);
    expect(a.release()).toBe(true);
    expect(a.release()).toBe(false);
    expect(r.slots.size).toBe(0);
    // The address's count went down once: its three sockets may be open again.
    for (const name of ['b', 'c', 'd']) r.hold(name, '10.0.0.1');
    expect(r.take('e', '10.0.0.1')).toBe('handshakesPerAddressMax');
    // An evicted slot's later release (its socket's close) frees nothing more.
    const tight = room({ handshakesMax: 1 });
    const old = tight.hold('old', '10.0.0.1');
    tight.hold('new', '10.0.0.1');
    expect(old.release()).toBe(false);
    expect(tight.slots.size).toBe(1);
    expect(tight.take('third', '10.0.0.1')).not.toBe('handshakesPerAddressMax');
  });
});

describe('PreAuthSlots: per address', () => {
  it('refuses a non-exempt address past handshakesPerAddressMax sockets at once, and not others', () => {
    const r = room();
    const held = ['a', 'b', 'c'].map((n) => r.hold(n, '203.0.113.7'));
    expect(r.take('d', '203.0.113.7')).toBe('handshakesPerAddressMax');
    // The same address in its IPv4-mapped IPv6 form is the same address.
    expect(r.take('e', '::ffff:203.0.113.7')).toBe('handshakesPerAddressMax');
    r.hold('other', '203.0.113.8');
    held[0].release();
    r.hold('f', '203.0.113.7');
    expect(r.evicted).toEqual([]);
  });

  it('counts IPv6 peers by their /64: a host cannot take more by using more of its addresses', () => {
    const r = room();
    r.hold('a', '2001:db8:7:1::1');
    r.hold('b', '2001:db8:7:1:ffff:ffff:ffff:ffff');
    r.hold('c', '2001:db8:7:1:0:0:0:abcd');
    expect(r.take('d', '2001:db8:7:1::2')).toBe('handshakesPerAddressMax');
    r.hold('another-64', '2001:db8:7:2::1');
    expect(r.evicted).toEqual([]);
  });

  it('refuses a non-exempt address past handshakesPerAddressPerSecond new sockets, and refills one second\'s worth', () => {
    const r = room({ handshakesPerAddressMax: 100 });
    // A full bucket: five at once, each released at once (they are not open, only new).
    for (let i = 0; i < 5; i++) r.hold(`s${i}`, '198.51.100.1').release();
    expect(r.take('s5', '198.51.100.1')).toBe('handshakesPerAddressPerSecond');
    // One token back every 200 ms.
    r.clock.advance(199);
    expect(r.take('s6', '198.51.100.1')).toBe('handshakesPerAddressPerSecond');
    r.clock.advance(1);
    r.hold('s7', '198.51.100.1').release();
    expect(r.take('s8', '198.51.100.1')).toBe('handshakesPerAddressPerSecond');
    // Never more than one second's worth, however long it waited.
    r.clock.advance(60_000);
    for (let i = 0; i < 5; i++) r.hold(`t${i}`, '198.51.100.1').release();
    expect(r.take('t5', '198.51.100.1')).toBe('handshakesPerAddressPerSecond');
    // Another address has its own bucket.
    r.hold('other', '198.51.100.2');
  });

  it('lets loopback and the exempt ranges past both per-address limits', () => {
    const r = room({ handshakesMax: 1000 }, ['10.20.0.0/16', '2001:db8::/32']);
    for (const address of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1', '10.20.30.40', '::ffff:10.20.0.1', '2001:db8::5']) {
      for (let i = 0; i < 20; i++) r.hold(`${address}#${i}`, address);
    }
    expect(r.slots.size).toBe(140);
    expect(r.slots.addressesTracked).toBe(0);
    // Just outside a range is an address like any other.
    for (let i = 0; i < 3; i++) r.hold(`x${i}`, '10.21.0.1');
    expect(r.take('x3', '10.21.0.1')).toBe('handshakesPerAddressMax');
  });

  it('refuses without evicting anyone, and a refused socket holds nothing', () => {
    const r = room({ handshakesMax: 3, handshakesPerAddressMax: 2 });
    r.hold('a', '192.0.2.1');
    r.hold('b', '192.0.2.1');
    r.hold('c', '192.0.2.2');
    expect(r.take('d', '192.0.2.1')).toBe('handshakesPerAddressMax');
    expect(r.evicted).toEqual([]);
    expect(r.slots.size).toBe(3);
  });
});

describe('PreAuthSlots: the address table', () => {
  it('forgets an address once it has nothing open and its bucket is full again', () => {
    const r = room();
    const a = r.hold('a', '192.0.2.1');
    r.hold('b', '192.0.2.2').release();
    expect(r.slots.addressesTracked).toBe(2);
    // Within the second its spent token is remembered.
    r.clock.advance(999);
    r.hold('c', '192.0.2.9').release();
    expect(r.slots.addressesTracked).toBe(3);
    r.clock.advance(1);
    r.hold('d', '127.0.0.1');
    // 192.0.2.2 is forgotten; 192.0.2.1 still has a socket open; 192.0.2.9 is not a second idle yet.
    expect(r.slots.addressesTracked).toBe(2);
    a.release();
    r.clock.advance(1000);
    r.hold('e', '127.0.0.1');
    expect(r.slots.addressesTracked).toBe(0);
  });

  it('stays bounded by handshakesMax plus the idle bound against a peer rotating through addresses', () => {
    const handshakesMax = 16;
    const addressesIdleMax = 64;
    const r = room({ handshakesMax, addressesIdleMax });
    let peak = 0;
    // 10,000 addresses (each its own /64) within one millisecond: no bucket gets a chance to refill.
    for (let i = 0; i < 10_000; i++) {
      r.hold(`s${i}`, `2001:db8:${i.toString(16)}::1`);
      peak = Math.max(peak, r.slots.addressesTracked);
    }
    expect(peak).toBe(handshakesMax + addressesIdleMax);
    expect(r.slots.size).toBe(handshakesMax);
    expect(r.evicted).toHaveLength(10_000 - handshakesMax);
  });

  it('forgets only addresses with nothing open, so their caps hold while the table churns', () => {
    const r = room({ handshakesMax: 4, addressesIdleMax: 1, handshakesPerAddressMax: 1 });
    r.hold('kept', '192.0.2.1');
    for (let i = 0; i < 100; i++) {
      r.hold(`r${i}`, `198.51.100.${i}`).release();
      expect(r.slots.addressesTracked).toBeLessThanOrEqual(5);
    }
    expect(r.take('second', '192.0.2.1')).toBe('handshakesPerAddressMax');
    expect(r.evicted).toEqual([]);
  });
});
