import { readFileSync } from 'node:fs';
import { Encoder } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { issueCredential, topicAllowed, verifyCredential, type CredentialClaims } from './credential.js';
import { Errors, TributaryError } from './errors.js';
import { generateIdentity as generateSigningKeyPair } from './key-file.js';
import { mulberry32 } from './testdata/helpers.js';

const NOW = 1_800_000_000_000;
const DAY = 86_400_000;
const fleet = generateSigningKeyPair();
const device = generateSigningKeyPair();
const claims: CredentialClaims = { subject: device.publicKey, role: 'device', produce: ['sensors.*'], consume: [], expiresAt: NOW + 90 * DAY };

function refusedWith(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TributaryError);
  expect((caught as TributaryError).code).toBe(Errors.UNAUTHORIZED.code);
  expect((caught as TributaryError).message).toMatch(message);
}

describe('credentials', () => {
  it('a credential issued by the fleet verifies and carries its claims', () => {
    const c = verifyCredential(issueCredential(fleet, claims, NOW), fleet.publicKey, NOW + DAY);
    expect(c.subject.equals(device.publicKey)).toBe(true);
    expect(c.issuer.equals(fleet.publicKey)).toBe(true);
    expect([c.role, c.produce, c.consume, c.issuedAt, c.expiresAt]).toEqual(['device', ['sensors.*'], [], NOW, NOW + 90 * DAY]);
    expect(c.id).toMatch(/^[0-9a-f]{24}$/);
  });

  it('carries group patterns when issued with them, and none otherwise', () => {
    const withGroups = verifyCredential(issueCredential(fleet, { ...claims, groups: ['billing.*', 'fleet-7'] }, NOW), fleet.publicKey, NOW);
    expect(withGroups.groups).toEqual(['billing.*', 'fleet-7']);
    const noGroups = verifyCredential(issueCredential(fleet, { ...claims, groups: [] }, NOW), fleet.publicKey, NOW);
    expect(noGroups.groups).toEqual([]);
    expect('groups' in verifyCredential(issueCredential(fleet, claims, NOW), fleet.publicKey, NOW)).toBe(false);
    expect(() => issueCredential(fleet, { ...claims, groups: ['bad group!'] }, NOW)).toThrow(/groups pattern "bad group!"/);
  });

  it('credentials issued before groups existed still verify, without groups of their own', () => {
    const fixture = JSON.parse(readFileSync(new URL('./testdata/credentials-before-groups.json', import.meta.url), 'utf8')) as Record<string, string>;
    const fleetPublicKey = Buffer.from(fixture.fleetPublicKey, 'hex');
    const device = verifyCredential(Buffer.from(fixture.device, 'hex'), fleetPublicKey, NOW);
    expect([device.role, device.produce, device.consume, device.groups]).toEqual(['device', ['sensors.*'], ['commands.dev-1'], undefined]);
    const app = verifyCredential(Buffer.from(fixture.app, 'hex'), fleetPublicKey, NOW);
    expect([app.role, app.consume, app.groups]).toEqual(['app', ['sensors.*'], undefined]);
  });

  it('refuses another fleet, an expired credential and a forged one', () => {
    const bytes = issueCredential(fleet, claims, NOW);
    refusedWith(() => verifyCredential(bytes, generateSigningKeyPair().publicKey, NOW), /another fleet/);
    refusedWith(() => verifyCredential(bytes, fleet.publicKey, NOW + 91 * DAY), /expired/);
    // A forger without the fleet's secret key signs with its own key but names our fleet.
    const forger = generateSigningKeyPair();
    const forged = issueCredential({ publicKey: fleet.publicKey, secretKey: forger.secretKey }, { ...claims, role: 'admin' }, NOW);
    refusedWith(() => verifyCredential(forged, fleet.publicKey, NOW), /signature does not verify/);
  });

  it('detects any flipped bit', () => {
    const bytes = issueCredential(fleet, claims, NOW);
    for (let i = 0; i < bytes.length; i++) {
      const bad = Buffer.from(bytes);
      bad[i] ^= 0x01;
      expect(() => verifyCredential(bad, fleet.publicKey, NOW), `byte ${i}`).toThrow(TributaryError);
    }
  });

  it('refuses malformed input with a typed error, never a crash', () => {
    const enc = new Encoder({ useRecords: false, mapsAsObjects: true });
    const cases: [Uint8Array, RegExp][] = [
      [Buffer.alloc(0), /size/],
      [Buffer.alloc(5000), /size/],
      [Buffer.from([0xff, 0xff]), /CBOR|pair/],
      [enc.encode({ a: 1 }), /pair/],
      [enc.encode([Buffer.alloc(3), Buffer.alloc(10)]), /signature has the wrong length/],
      [enc.encode([Buffer.from([0xff]), Buffer.alloc(64)]), /CBOR|map/],
      [enc.encode([enc.encode({ v: 2 }), Buffer.alloc(64)]), /version/],
    ];
    for (const [bytes, message] of cases) refusedWith(() => verifyCredential(bytes, fleet.publicKey, NOW), message);
    const random = mulberry32(7);
    for (let n = 0; n < 500; n++) {
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 200) }, () => Math.floor(random() * 256)));
      expect(() => verifyCredential(junk, fleet.publicKey, NOW)).toThrow(TributaryError);
    }
  });

  it('refuses to issue bad claims', () => {
    expect(() => issueCredential(fleet, { ...claims, subject: Buffer.alloc(5) }, NOW)).toThrow(/subject/);
    expect(() => issueCredential(fleet, { ...claims, expiresAt: NOW - 1 }, NOW)).toThrow(/future/);
    expect(() => issueCredential(fleet, { ...claims, produce: ['bad topic!'] }, NOW)).toThrow(/pattern/);
    expect(() => issueCredential(fleet, { ...claims, role: 'root' as never }, NOW)).toThrow(/role/);
  });
});

describe('topic patterns', () => {
  it.each([
    [['sensors.*'], 'sensors.temp', true],
    [['sensors.*'], 'sensors.', true],
    [['sensors.*'], 'alarms', false],
    [['sensors.*'], 'sensors', false],
    [['*'], 'anything', true],
    [['a*b*c'], 'aXXbYYc', true],
    [['a*b*c'], 'aXXbYY', false],
    [['exact'], 'exact', true],
    [['exact'], 'exactly', false],
    [['x', 'alarms'], 'alarms', true],
    [[], 'sensors.temp', false],
  ])('%j allows %s: %s', (patterns, topic, allowed) => {
    expect(topicAllowed(patterns, topic)).toBe(allowed);
  });
});
