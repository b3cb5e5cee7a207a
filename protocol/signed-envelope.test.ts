import { Decoder, Encoder } from 'cbor-x';
import sodium from 'sodium-native';
import { describe, expect, it } from 'vitest';
import { verifyCredential } from './credential.js';
import { AssertionError, Errors } from './errors.js';
import { generateIdentity } from './key-file.js';
import { revocationKey, signRevocation, verifyRevocation } from './revocation.js';
import { signEnvelope, verifyEnvelope, type EnvelopeBody, type EnvelopePurpose } from './signed-envelope.js';
import { thrown } from '../test/helpers/thrown.js';

// Envelopes as the code signed them before credentials and revocations shared one verifier
// (issue 17): these bytes are on disks and in operators' files, so they must verify for
// good, and a revocation must still be signed to the same bytes. The fleet key is made from
// a seed of 32 bytes of 0x17, the subject's from 32 bytes of 0x42; signed at NOW, the
// credential expires a year later.
const NOW = 1_800_000_000_000;
const YEAR = 365 * 86_400_000;
const FLEET_SEED = Buffer.alloc(32, 0x17);
const SUBJECT_SEED = Buffer.alloc(32, 0x42);
const BEFORE = {
  fleetPublicKey: '31debe55d37c722768b137131caa6087080b2e0b60b94bd785d14575cfa498bc',
  subject: '2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12',
  credential:
    '8258cbb9000a617601626964781864633636386661373337366539333636363032393763386663697373582031debe55d37c722768b137131caa6087080b2e0b60b94bd785d14575cfa498bc6373756258202152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db1264726f6c65636170706770726f64756365816973656e736f72732e2a67636f6e73756d65816a636f6d6d616e64732e2a6667726f757073816962696c6c696e672e2a63696174fb427a3185c500000063657870fb427aa700d7c000005840b7878875c2d60ecae90fc043847b46a2b5c523e1ed8cd8076009fe363cab18cdeb6ec8281f4439620afd99ac61012dd4ab97c3b34f31ac447fd444bb42601506',
  /** { credentialId: '0123456789abcdef01234567' }, reason 'device stolen'. */
  revocationOfCredential:
    '82586cb9000561760163697373582031debe55d37c722768b137131caa6087080b2e0b60b94bd785d14575cfa498bc64637265647818303132333435363738396162636465663031323334353637626174fb427a3185c500000066726561736f6e6d6465766963652073746f6c656e584017daf44faca8c28f535a2108671bb5e67f256919f4b5f7acc5ba74ae3505fa1fef87a42ca276bdb4fd2c1e812b5a58d5e041ece3db2cff92bf8332b375309000',
  /** { subject }, no reason. */
  revocationOfSubject:
    '82585eb9000461760163697373582031debe55d37c722768b137131caa6087080b2e0b60b94bd785d14575cfa498bc6373756258202152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12626174fb427a3185c5000000584083b03bf854aa5282b150ba96ffd911bc4be98736732b0e367092509bdc3569196440873b309c4bf4b968f082688d5b67cc4b147700eedc101e004fa98105fa00',
};
const CREDENTIAL_ID = '0123456789abcdef01234567';

function keyPairFromSeed(seed: Buffer): { publicKey: Buffer; secretKey: Buffer } {
  const publicKey = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES);
  const secretKey = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES);
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed);
  return { publicKey, secretKey };
}

const fleet = keyPairFromSeed(FLEET_SEED);
const subject = keyPairFromSeed(SUBJECT_SEED).publicKey;
const hex = (s: string) => Buffer.from(s, 'hex');


describe('envelopes signed before the shared verifier', () => {
  it('the fixtures were made from the seeds they name', () => {
    expect(fleet.publicKey.toString('hex')).toBe(BEFORE.fleetPublicKey);
    expect(subject.toString('hex')).toBe(BEFORE.subject);
  });

  it('a credential verifies, with every claim it was issued with', () => {
    const c = verifyCredential(hex(BEFORE.credential), fleet.publicKey, NOW + 1);
    expect(c).toEqual({
      id: c.id,
      issuer: fleet.publicKey,
      subject,
      role: 'app',
      produce: ['sensors.*'],
      consume: ['commands.*'],
      groups: ['billing.*'],
      issuedAt: NOW,
      expiresAt: NOW + YEAR,
    });
    expect(c.id).toMatch(/^[0-9a-f]{24}$/);
  });

  it('revocations of a credential and of a subject verify under their record keys', () => {
    const byId = verifyRevocation(hex(BEFORE.revocationOfCredential), fleet.publicKey, revocationKey({ credentialId: CREDENTIAL_ID }));
    expect(byId).toEqual({ target: { credentialId: CREDENTIAL_ID }, issuer: fleet.publicKey, revokedAt: NOW, reason: 'device stolen' });
    const bySubject = verifyRevocation(hex(BEFORE.revocationOfSubject), fleet.publicKey, revocationKey({ subject }));
    expect(bySubject).toEqual({ target: { subject }, issuer: fleet.publicKey, revokedAt: NOW });
  });

  it('a revocation is still signed to the same bytes (Ed25519 signatures are deterministic)', () => {
    expect(signRevocation(fleet, { credentialId: CREDENTIAL_ID }, { reason: 'device stolen', now: NOW }).toString('hex')).toBe(BEFORE.revocationOfCredential);
    expect(signRevocation(fleet, { subject }, { now: NOW }).toString('hex')).toBe(BEFORE.revocationOfSubject);
  });

  it('a credential is not a revocation and a revocation is not a credential, though the fleet signed both', () => {
    // Both are [body, signature] under the same key, with no purpose in the signed bytes:
    // what tells them apart is only that each lacks a field the other requires.
    const asRevocation = thrown(() => verifyRevocation(hex(BEFORE.credential), fleet.publicKey));
    expect([asRevocation.code, asRevocation.detail]).toEqual([Errors.INVALID_RECORD.code, 'revocation refused: no signing time']);
    for (const [revocation, why] of [
      [BEFORE.revocationOfCredential, 'subject is not a public key'],
      [BEFORE.revocationOfSubject, 'unknown role undefined'],
    ]) {
      const asCredential = thrown(() => verifyCredential(hex(revocation), fleet.publicKey, NOW));
      expect([asCredential.code, asCredential.detail]).toEqual([Errors.UNAUTHORIZED.code, `credential refused: ${why}`]);
    }
  });
});

describe('signed envelopes', () => {
  const PURPOSE: EnvelopePurpose = { name: 'test envelope', version: 3, bytesMax: 200, refusedAs: Errors.INVALID_REQUEST, otherFleet: 'from another fleet' };
  const enc = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
  const body: EnvelopeBody = { v: 3, iss: fleet.publicKey, n: 7, what: 'x' };

  function refusedWith(bytes: Uint8Array, detail: string): void {
    const err = thrown(() => verifyEnvelope(PURPOSE, bytes, fleet.publicKey));
    expect([err.code, err.detail], detail).toEqual([Errors.INVALID_REQUEST.code, `test envelope refused: ${detail}`]);
  }

  it('a signed body comes back as it was, its fields in the order given', () => {
    const envelope = signEnvelope(PURPOSE, fleet, body);
    const verified = verifyEnvelope(PURPOSE, envelope, fleet.publicKey);
    expect(verified).toEqual({ v: 3, iss: fleet.publicKey, n: 7, what: 'x' });
    expect(Object.keys(verified)).toEqual(['v', 'iss', 'n', 'what']);
  });

  it('refuses, naming the check, in the order cheapest first: size, pair, signature length, map, version, issuer, signature', () => {
    const sign = (b: Record<string, unknown>, signer = fleet) => {
      const bodyBytes = enc.encode(b);
      const signature = Buffer.alloc(64);
      sodium.crypto_sign_detached(signature, bodyBytes, signer.secretKey);
      return enc.encode([bodyBytes, signature]);
    };
    refusedWith(Buffer.alloc(0), 'size 0 outside 1..200');
    refusedWith(Buffer.alloc(201), 'size 201 outside 1..200');
    refusedWith(Buffer.from([0x5f, 0x41]), 'not valid CBOR');
    refusedWith(enc.encode([enc.encode(body)]), 'not a [body, signature] pair');
    refusedWith(enc.encode([enc.encode(body), Buffer.alloc(63)]), 'signature has the wrong length');
    refusedWith(enc.encode([Buffer.from([0xff]), Buffer.alloc(64)]), 'not valid CBOR');
    refusedWith(enc.encode([enc.encode(['v', 3]), Buffer.alloc(64)]), 'body is not a map');
    refusedWith(sign({ ...body, v: { toString: 1 } }), 'version (object) is not 3');
    refusedWith(sign({ ...body, v: 1 }), 'version 1 is not 3');
    refusedWith(sign({ ...body, iss: generateIdentity().publicKey }), 'from another fleet');
    refusedWith(sign(body, generateIdentity()), 'signature does not verify');
    // The hand-made path is sound: the same body signed by the fleet verifies.
    expect(verifyEnvelope(PURPOSE, sign(body), fleet.publicKey).n).toBe(7);
  });

  it('refuses to sign past bytesMax, and a body naming another version or issuer is a bug', () => {
    const big = thrown(() => signEnvelope(PURPOSE, fleet, { ...body, what: 'x'.repeat(100) }));
    expect(big.code).toBe(Errors.INVALID_CONFIG.code);
    expect(big.detail).toMatch(/^test envelope of 2\d\d bytes exceeds 200$/);
    expect(() => signEnvelope(PURPOSE, fleet, { ...body, v: 1 })).toThrow(AssertionError);
    expect(() => signEnvelope(PURPOSE, fleet, { ...body, iss: generateIdentity().publicKey })).toThrow(AssertionError);
  });

  it('the body of a credential signed before, signed again, is the same envelope byte for byte', () => {
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true });
    const [bodyBytes] = dec.decode(hex(BEFORE.credential)) as [Uint8Array, Uint8Array];
    const old = dec.decode(bodyBytes) as Record<string, unknown>;
    const credential: EnvelopePurpose = { name: 'credential', version: 1, bytesMax: 4096, refusedAs: Errors.UNAUTHORIZED, otherFleet: 'issued by another fleet' };
    const again = signEnvelope(credential, fleet, { ...old, v: 1, iss: Buffer.from(old.iss as Uint8Array) });
    expect(again.toString('hex')).toBe(BEFORE.credential);
  });
});
