import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../protocol/clock.js';
import { Errors } from '../../protocol/errors.js';
import { generateIdentity } from '../../protocol/key-file.js';
import { ANONYMOUS, principalKeyOf, type Principal } from '../auth/acl.js';
import type { Lapse } from '../auth/authenticator.js';
import { Sessions, type Session } from './sessions.js';

const T0 = Date.UTC(2026, 11, 1);

class FakeSession implements Session {
  ended: Lapse[] = [];
  constructor(readonly principal: Principal | undefined) {}
  endForLapse(lapse: Lapse): void {
    this.ended.push(lapse);
  }
}

const subjects = new Map<string, Buffer>();

/** A principal as principalOf makes one, with a real identity key per name. */
function principal(name: string, credentialId: string, expiresAt = T0 + 86_400_000): Principal {
  let subject = subjects.get(name);
  if (!subject) subjects.set(name, (subject = generateIdentity().publicKey));
  return { name: `device:${name}`, key: principalKeyOf(subject), role: 'device', produce: [], consume: [], groups: [], credentialId, subject, expiresAt };
}

const lapse: Lapse = { why: 'revoked', error: { detail: 'revoked' } as never };

let clock: ManualClock;

beforeEach(() => {
  clock = new ManualClock(T0);
});

describe('Sessions', () => {
  it('bounds the connections of each principal, not of others; a closed one frees its place', () => {
    let reached = 0;
    const sessions = new Sessions({ connectionsPerPrincipalMax: 2, clock, onLimitReached: () => reached++ });
    const a1 = new FakeSession(principal('aa', 'c1'));
    const a2 = new FakeSession(principal('aa', 'c2'));
    const a3 = new FakeSession(principal('aa', 'c3'));
    expect(sessions.admit(a1)).toBeNull();
    expect(sessions.admit(a2)).toBeNull();
    const refused = sessions.admit(a3);
    expect([refused?.code, refused?.retriable]).toEqual([Errors.THROTTLED.code, true]);
    expect(sessions.admit(new FakeSession(principal('bb', 'c4')))).toBeNull();
    sessions.remove(a1);
    sessions.remove(a1); // idempotent
    expect(sessions.admit(a3)).toBeNull();
    expect([sessions.countOf(a1.principal?.key as string), sessions.size, reached]).toEqual([2, 3, 1]);
    // Anonymous connections (dev mode, loopback) are not bounded per principal.
    for (let i = 0; i < 5; i++) expect(sessions.admit(new FakeSession(ANONYMOUS))).toBeNull();
    expect(sessions.size).toBe(3);
  });

  it('a revocation of a credential ends its connections only; of a subject key, every connection of the key', () => {
    const sessions = new Sessions({ connectionsPerPrincipalMax: 10, clock });
    const a1 = new FakeSession(principal('aa', 'c1'));
    const a2 = new FakeSession(principal('aa', 'c2'));
    const b = new FakeSession(principal('bb', 'c3'));
    for (const s of [a1, a2, b]) sessions.admit(s);
    expect(sessions.revoke({ target: { credentialId: 'c1' } } as never, lapse)).toBe(1);
    expect([a1.ended.length, a2.ended.length, b.ended.length]).toEqual([1, 0, 0]);
    // Named by the other Ed25519 encoding of the same key (the sign bit flipped): the same
    // X25519 key, which is what the handshake proved and revocations are matched by.
    const flipped = Buffer.from(b.principal?.subject as Buffer);
    flipped[31] ^= 0x80;
    expect(sessions.revoke({ target: { subject: flipped } } as never, lapse)).toBe(1);
    expect(b.ended).toHaveLength(1);
    expect(sessions.revoke({ target: { credentialId: 'c1' } } as never, lapse)).toBe(0); // gone already
    expect(sessions.size).toBe(1);
  });

  it('ends a connection when its credential expires, with no request from it, and only then', () => {
    const sessions = new Sessions({ connectionsPerPrincipalMax: 10, clock });
    const soon = new FakeSession(principal('aa', 'c1', T0 + 60_000));
    const later = new FakeSession(principal('bb', 'c2', T0 + 120_000));
    const gone = new FakeSession(principal('cc', 'c3', T0 + 30_000));
    for (const s of [later, soon, gone]) sessions.admit(s);
    sessions.remove(gone);
    clock.advance(59_999);
    expect([soon.ended.length, later.ended.length, gone.ended.length]).toEqual([0, 0, 0]);
    clock.advance(1);
    expect(soon.ended.map((l) => [l.why, l.error.detail])).toEqual([['expired', 'credential expired at 2026-12-01T00:01:00.000Z']]);
    expect(later.ended).toHaveLength(0);
    clock.advance(60_000);
    expect(later.ended).toHaveLength(1);
    expect(sessions.size).toBe(0);
  });

  it('waits past the longest timer setTimeout takes for a credential valid 90 days', () => {
    // On the system's clock (faked): Node's setTimeout, not the node's logic, has the limit.
    vi.useFakeTimers();
    vi.setSystemTime(T0);
    try {
      const sessions = new Sessions({ connectionsPerPrincipalMax: 10 });
      const s = new FakeSession(principal('aa', 'c1', T0 + 90 * 86_400_000));
      sessions.admit(s);
      vi.advanceTimersByTime(89 * 86_400_000);
      expect(s.ended).toHaveLength(0);
      vi.advanceTimersByTime(86_400_000);
      expect(s.ended).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('reconnect storms do not grow what it keeps: entries of closed connections are dropped', () => {
    const sessions = new Sessions({ connectionsPerPrincipalMax: 10, clock });
    const live = Array.from({ length: 10 }, (_, i) => new FakeSession(principal(`live${i}`, `l${i}`)));
    for (const s of live) sessions.admit(s);
    for (let round = 0; round < 1000; round++) {
      const s = new FakeSession(principal('storm', `s${round}`));
      sessions.admit(s);
      sessions.remove(s);
    }
    // At most twice the live connections (ten, and the one of the storm) and 64 of slack,
    // and none of them keeps a closed connection.
    const expiries = (sessions as unknown as { expiries: { session: Session | null }[] }).expiries;
    expect(expiries.length).toBeLessThanOrEqual(2 * 11 + 64 + 1);
    expect(expiries.filter((e) => e.session !== null && !live.includes(e.session as FakeSession))).toEqual([]);
    clock.advance(86_400_000);
    expect(live.every((s) => s.ended.length === 1)).toBe(true);
  });
});
