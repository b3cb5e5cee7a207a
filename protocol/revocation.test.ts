import { Encoder } from 'cbor-x';
import sodium from 'sodium-native';
import { describe, expect, it } from 'vitest';
import { Errors, TributaryError } from './errors.js';
import { generateIdentity } from './key-file.js';
import {
  REVOCATION_BYTES_MAX,
  REVOCATION_VERSION,
  RevocationList,
  revocationKey,
  signRevocation,
  verifyRevocation,
  type Revocation,
  type RevocationTarget,
} from './revocation.js';
import { mulberry32 } from './testdata/helpers.js';

const NOW = 1_800_000_000_000;
const fleet = generateIdentity();
const device = generateIdentity();
const CREDENTIAL_ID = '0123456789abcdef01234567';
const byId: RevocationTarget = { credentialId: CREDENTIAL_ID };
const bySubject: RevocationTarget = { subject: device.publicKey };

// The encoder revocation.ts itself uses, so hand-built records differ from signed ones only
// in the shape we mean to get wrong.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

/** Signs `claims` as the fleet would, whatever they hold: only the shape is wrong. */
function signedByHand(claims: Record<string, unknown>, signer = fleet): Buffer {
  const body = encoder.encode(claims);
  const signature = Buffer.alloc(sodium.crypto_sign_BYTES);
  sodium.crypto_sign_detached(signature, body, signer.secretKey);
  return Buffer.from(encoder.encode([body, signature]));
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

function refusedWith(fn: () => unknown, code: number, message: RegExp, context = ''): void {
  const err = caught(fn);
  expect(err, `nothing thrown ${context}`).toBeInstanceOf(TributaryError);
  expect((err as TributaryError).code, `${(err as Error).message} ${context}`).toBe(code);
  expect((err as TributaryError).message, context).toMatch(message);
}

const invalidRecord = (fn: () => unknown, message: RegExp, context = '') => refusedWith(fn, Errors.INVALID_RECORD.code, message, context);
const invalidConfig = (fn: () => unknown, message: RegExp) => refusedWith(fn, Errors.INVALID_CONFIG.code, message);

describe('signed revocations', () => {
  it('a revocation of a credential id verifies and carries its target, issuer, time and reason', () => {
    const value = signRevocation(fleet, byId, { reason: 'device stolen', now: NOW });
    const r = verifyRevocation(value, fleet.publicKey, revocationKey(byId));
    expect(r.target).toEqual({ credentialId: CREDENTIAL_ID });
    expect(r.issuer.equals(fleet.publicKey)).toBe(true);
    expect(r.revokedAt).toBe(NOW);
    expect(r.reason).toBe('device stolen');
    expect(revocationKey(byId)).toBe(`credential:${CREDENTIAL_ID}`);
  });

  it('a revocation of a subject key verifies and names that key', () => {
    const value = signRevocation(fleet, bySubject, { reason: 'key leaked', now: NOW });
    const r = verifyRevocation(value, fleet.publicKey, revocationKey(bySubject));
    expect('subject' in r.target && r.target.subject.equals(device.publicKey)).toBe(true);
    expect('credentialId' in r.target).toBe(false);
    expect(r.issuer.equals(fleet.publicKey)).toBe(true);
    expect(r.revokedAt).toBe(NOW);
    expect(r.reason).toBe('key leaked');
    expect(revocationKey(bySubject)).toBe(`subject:${device.publicKey.toString('hex')}`);
  });

  it('without a reason none is made up, and without a key the record key is not checked', () => {
    const r = verifyRevocation(signRevocation(fleet, byId, { now: NOW }), fleet.publicKey);
    expect(r.reason).toBeUndefined();
    expect(r.target).toEqual(byId);
  });

  it('refuses a revocation signed by another fleet', () => {
    const value = signRevocation(generateIdentity(), byId, { now: NOW });
    invalidRecord(() => verifyRevocation(value, fleet.publicKey, revocationKey(byId)), /another fleet/);
  });

  it('refuses a forger who names our fleet as issuer but signs with its own key', () => {
    const forger = generateIdentity();
    const forged = signRevocation({ publicKey: fleet.publicKey, secretKey: forger.secretKey }, bySubject, { now: NOW });
    invalidRecord(() => verifyRevocation(forged, fleet.publicKey, revocationKey(bySubject)), /signature does not verify/);
  });

  it('detects every single flipped bit of a signed record', () => {
    for (const target of [byId, bySubject]) {
      const value = signRevocation(fleet, target, { reason: 'r', now: NOW });
      const key = revocationKey(target);
      for (let i = 0; i < value.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const bad = Buffer.from(value);
          bad[i] ^= 1 << bit;
          invalidRecord(() => verifyRevocation(bad, fleet.publicKey, key), /revocation refused/, `(${key}, byte ${i}, bit ${bit})`);
        }
      }
    }
  });

  it('refuses a record stored under another key than its target gives', () => {
    const value = signRevocation(fleet, byId, { now: NOW });
    invalidRecord(() => verifyRevocation(value, fleet.publicKey, 'credential:ffff'), /stored under key 'credential:ffff', expected 'credential:0123/);
    invalidRecord(() => verifyRevocation(value, fleet.publicKey, revocationKey(bySubject)), /stored under key/);
    const subjectValue = signRevocation(fleet, bySubject, { now: NOW });
    invalidRecord(() => verifyRevocation(subjectValue, fleet.publicKey, revocationKey(byId)), /stored under key/);
    invalidRecord(() => verifyRevocation(subjectValue, fleet.publicKey, ''), /stored under key/);
  });

  it('refuses empty and oversized input by its size', () => {
    invalidRecord(() => verifyRevocation(Buffer.alloc(0), fleet.publicKey), /size 0 outside 1\.\.1024/);
    invalidRecord(() => verifyRevocation(Buffer.alloc(REVOCATION_BYTES_MAX + 1), fleet.publicKey), /size 1025 outside/);
    // A record padded past the limit with a long but valid reason is refused the same way.
    const padded = signedByHand({ v: REVOCATION_VERSION, iss: fleet.publicKey, cred: CREDENTIAL_ID, at: NOW, reason: 'x'.repeat(REVOCATION_BYTES_MAX) });
    invalidRecord(() => verifyRevocation(padded, fleet.publicKey), /size \d+ outside/);
  });

  it('refuses bytes that are not CBOR, or CBOR that is not a [body, signature] pair', () => {
    invalidRecord(() => verifyRevocation(Buffer.from([0xff, 0xff]), fleet.publicKey), /not valid CBOR|pair/);
    invalidRecord(() => verifyRevocation(Buffer.from([0x5f, 0x41]), fleet.publicKey), /not valid CBOR/);
    const cases: [unknown, RegExp][] = [
      [{ a: 1 }, /not a \[body, signature\] pair/],
      [[Buffer.alloc(3)], /pair/],
      [[Buffer.alloc(3), Buffer.alloc(64), Buffer.alloc(1)], /pair/],
      [['body', Buffer.alloc(64)], /pair/],
      [[Buffer.alloc(3), 'signature'], /pair/],
      [[Buffer.alloc(3), Buffer.alloc(63)], /signature has the wrong length/],
      [[Buffer.from([0xff]), Buffer.alloc(64)], /not valid CBOR/],
      [[encoder.encode([1, 2]), Buffer.alloc(64)], /body is not a map/],
      [[encoder.encode({ v: 2, iss: fleet.publicKey }), Buffer.alloc(64)], /version 2 is not 1/],
      [[encoder.encode({ v: 1, iss: 'fleet' }), Buffer.alloc(64)], /another fleet/],
    ];
    for (const [value, message] of cases) invalidRecord(() => verifyRevocation(encoder.encode(value), fleet.publicKey), message, JSON.stringify(value));
  });

  it('refuses a body signed by the fleet that names both or neither of a credential and a subject', () => {
    const base = { v: REVOCATION_VERSION, iss: fleet.publicKey, at: NOW };
    const both = signedByHand({ ...base, cred: CREDENTIAL_ID, sub: device.publicKey });
    const neither = signedByHand(base);
    const credNotText = signedByHand({ ...base, cred: 42 });
    for (const value of [both, neither, credNotText]) {
      invalidRecord(() => verifyRevocation(value, fleet.publicKey), /must name exactly one of a credential id and a subject key/);
    }
    // The hand-built path itself is sound: the same body with one target verifies.
    expect(verifyRevocation(signedByHand({ ...base, cred: CREDENTIAL_ID }), fleet.publicKey).target).toEqual(byId);
  });

  it('refuses a fleet-signed body whose target, time or reason is malformed', () => {
    const base = { v: REVOCATION_VERSION, iss: fleet.publicKey, at: NOW };
    invalidRecord(() => verifyRevocation(signedByHand({ ...base, cred: 'NOT-HEX' }), fleet.publicKey), /credential id must be 1-64 lowercase hex/);
    invalidRecord(() => verifyRevocation(signedByHand({ ...base, sub: Buffer.alloc(31) }), fleet.publicKey), /subject must be a 32-byte/);
    invalidRecord(() => verifyRevocation(signedByHand({ v: REVOCATION_VERSION, iss: fleet.publicKey, cred: CREDENTIAL_ID }), fleet.publicKey), /no signing time/);
    invalidRecord(() => verifyRevocation(signedByHand({ ...base, cred: CREDENTIAL_ID, at: 1.5 }), fleet.publicKey), /no signing time/);
    invalidRecord(() => verifyRevocation(signedByHand({ ...base, cred: CREDENTIAL_ID, reason: 7 }), fleet.publicKey), /bad reason/);
    invalidRecord(() => verifyRevocation(signedByHand({ ...base, cred: CREDENTIAL_ID, reason: 'x'.repeat(257) }), fleet.publicKey), /bad reason/);
  });

  it('refuses random bytes with a typed error, never a crash', () => {
    const seed = 20_240_611;
    const random = mulberry32(seed);
    for (let n = 0; n < 500; n++) {
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
      invalidRecord(() => verifyRevocation(junk, fleet.publicKey), /revocation refused/, `(seed ${seed}, case ${n}, ${junk.toString('hex')})`);
    }
  });

  it('refuses to sign a bad credential id, a subject of the wrong length or a reason too long', () => {
    invalidConfig(() => signRevocation(fleet, { credentialId: '' }), /credential id must be 1-64 lowercase hex/);
    invalidConfig(() => signRevocation(fleet, { credentialId: 'ABCDEF' }), /credential id/);
    invalidConfig(() => signRevocation(fleet, { credentialId: 'a'.repeat(65) }), /credential id/);
    invalidConfig(() => signRevocation(fleet, { credentialId: 'xyz' }), /credential id/);
    invalidConfig(() => signRevocation(fleet, { subject: Buffer.alloc(31) }), /subject must be a 32-byte/);
    invalidConfig(() => signRevocation(fleet, { subject: Buffer.alloc(33) }), /subject must be a 32-byte/);
    invalidConfig(() => signRevocation(fleet, byId, { reason: 'x'.repeat(257) }), /reason is longer than 256/);
    // The limits themselves are allowed.
    expect(() => signRevocation(fleet, { credentialId: 'f'.repeat(64) }, { reason: 'x'.repeat(256) })).not.toThrow();
  });
});

describe('RevocationList', () => {
  const credentialId = 'aa11';
  const subject = generateIdentity().publicKey;
  const byIdRevocation: Revocation = { target: { credentialId }, issuer: fleet.publicKey, revokedAt: NOW, reason: 'lost' };
  const bySubjectRevocation: Revocation = { target: { subject }, issuer: fleet.publicKey, revokedAt: NOW + 1 };

  it('finds a revocation by credential id, by subject key, and nothing for anyone else', () => {
    const list = new RevocationList();
    expect(list.size).toBe(0);
    expect(list.find({ id: credentialId, subject })).toBeUndefined();
    list.add(byIdRevocation);
    expect(list.size).toBe(1);
    expect(list.find({ id: credentialId, subject: generateIdentity().publicKey })).toBe(byIdRevocation);
    list.add(bySubjectRevocation);
    expect(list.size).toBe(2);
    expect(list.find({ id: 'bb22', subject: Buffer.from(subject) })).toBe(bySubjectRevocation);
    expect(list.find({ id: 'bb22', subject: generateIdentity().publicKey })).toBeUndefined();
    expect(list.find({ id: credentialId.toUpperCase(), subject: device.publicKey })).toBeUndefined();
  });

  it('a subject revocation covers the same key written with the other Ed25519 sign bit', () => {
    // Both encodings are the same X25519 key, which is what the handshake proves.
    const flipped = Buffer.from(subject);
    flipped[31] ^= 0x80;
    const list = new RevocationList();
    list.add(bySubjectRevocation);
    expect(list.find({ id: 'cc33', subject: flipped })).toBe(bySubjectRevocation);
  });

  it('counts a target once however often it is revoked, keeping the latest', () => {
    const list = new RevocationList();
    list.add(byIdRevocation);
    const again: Revocation = { ...byIdRevocation, revokedAt: NOW + 5, reason: 'again' };
    list.add(again);
    list.add({ ...bySubjectRevocation, target: { subject: Buffer.from(subject) } });
    expect(list.size).toBe(2);
    expect(list.find({ id: credentialId, subject: device.publicKey })).toBe(again);
  });

  it('takes what verifyRevocation returns', () => {
    const list = new RevocationList();
    list.add(verifyRevocation(signRevocation(fleet, bySubject, { now: NOW }), fleet.publicKey, revocationKey(bySubject)));
    expect(list.find({ id: 'cc33', subject: device.publicKey })?.revokedAt).toBe(NOW);
  });
});
