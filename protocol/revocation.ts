// Revocations: the fleet authority's signed word that a credential, or every credential of
// a subject key, no longer admits anyone. They are records of the internal topic
// `__revocations`, so they travel to every node the way any record does (uplink,
// replication), and a node trusts one because the fleet signed it, not because of who
// produced it.
//
//   record key   = 'credential:' + credential id   or   'subject:' + hex(subject key)
//   record value = CBOR [ body: bytes, signature: bytes(64) ]
//   body         = CBOR { v: 1, iss: bytes(32), cred?: text, sub?: bytes(32), at: uint ms,
//                         reason?: text }
//
// Exactly one of `cred` and `sub` is set. The key is derived from it, so a compacted topic
// keeps one record per revoked thing. The value is a fleet-signed envelope, signed and
// checked as credentials are (signed-envelope.ts).

import sodium from 'sodium-native';
import type { Credential } from './credential.js';
import { Errors, TributaryError } from './errors.js';
import { noisePublicKeyFromIdentity } from './secure-channel.js';
import type { IdentityKeyPair } from './key-file.js';
import { refusal, signEnvelope, verifyEnvelope, type EnvelopePurpose } from './signed-envelope.js';

export const REVOCATIONS_TOPIC = '__revocations';
export const REVOCATION_VERSION = 1;
export const REVOCATION_BYTES_MAX = 1024;
const REASON_CHARS_MAX = 256;
const CREDENTIAL_ID = /^[0-9a-f]{1,64}$/;

/** What is revoked: one credential by its id, or every credential naming a subject key. */
export type RevocationTarget = { credentialId: string } | { subject: Buffer };

export interface Revocation {
  target: RevocationTarget;
  issuer: Buffer;
  /** Epoch ms when it was signed. */
  revokedAt: number;
  reason?: string;
}

const REVOCATION: EnvelopePurpose = {
  name: 'revocation',
  version: REVOCATION_VERSION,
  bytesMax: REVOCATION_BYTES_MAX,
  refusedAs: Errors.INVALID_RECORD,
  otherFleet: 'signed by another fleet',
};

function invalid(detail: string): TributaryError {
  return refusal(REVOCATION, detail);
}

/** The record key a revocation of `target` is stored under. */
export function revocationKey(target: RevocationTarget): string {
  return 'credentialId' in target ? `credential:${target.credentialId}` : `subject:${target.subject.toString('hex')}`;
}

function checkTarget(target: RevocationTarget): void {
  if ('credentialId' in target) {
    if (typeof target.credentialId !== 'string' || !CREDENTIAL_ID.test(target.credentialId)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `credential id must be 1-64 lowercase hex characters, got ${JSON.stringify(target.credentialId)}`);
    }
  } else if (!Buffer.isBuffer(target.subject) || target.subject.length !== sodium.crypto_sign_PUBLICKEYBYTES) {
    throw new TributaryError(Errors.INVALID_CONFIG, 'subject must be a 32-byte Ed25519 public key');
  }
}

/** Signs a revocation with the fleet authority's key; returns the record value. */
export function signRevocation(fleet: IdentityKeyPair, target: RevocationTarget, options: { reason?: string; now?: number } = {}): Buffer {
  checkTarget(target);
  if (options.reason !== undefined && options.reason.length > REASON_CHARS_MAX) {
    throw new TributaryError(Errors.INVALID_CONFIG, `reason is longer than ${REASON_CHARS_MAX} characters`);
  }
  return signEnvelope(REVOCATION, fleet, {
    v: REVOCATION_VERSION,
    iss: fleet.publicKey,
    ...('credentialId' in target ? { cred: target.credentialId } : { sub: target.subject }),
    at: options.now ?? Date.now(),
    ...(options.reason ? { reason: options.reason } : {}),
  });
}

/**
 * Checks a revocation record against the fleet's public key and the record key it was
 * stored under. Throws TributaryError(INVALID_RECORD) naming what is wrong.
 */
export function verifyRevocation(value: Uint8Array, fleetPublicKey: Buffer, key?: string): Revocation {
  const claims = verifyEnvelope(REVOCATION, value, fleetPublicKey);
  let target: RevocationTarget;
  if (typeof claims.cred === 'string' && claims.sub === undefined) target = { credentialId: claims.cred };
  else if (claims.sub instanceof Uint8Array && claims.cred === undefined) target = { subject: Buffer.from(claims.sub) };
  else throw invalid('must name exactly one of a credential id and a subject key');
  try {
    checkTarget(target);
  } catch (err) {
    throw invalid((err as TributaryError).detail);
  }
  if (!Number.isSafeInteger(claims.at)) throw invalid('no signing time');
  if (claims.reason !== undefined && (typeof claims.reason !== 'string' || claims.reason.length > REASON_CHARS_MAX)) throw invalid('bad reason');
  if (key !== undefined && key !== revocationKey(target)) throw invalid(`stored under key '${key}', expected '${revocationKey(target)}'`);
  return { target, issuer: Buffer.from(claims.iss), revokedAt: claims.at as number, ...(claims.reason ? { reason: claims.reason as string } : {}) };
}

/**
 * How a subject key is looked up: by its X25519 form, the key the handshake proves, since
 * two Ed25519 encodings that differ only in the sign bit are the same X25519 key, and a
 * revocation of one must cover a credential naming the other.
 */
export function subjectKey(subject: Buffer): string {
  try {
    return noisePublicKeyFromIdentity(subject).toString('hex');
  } catch {
    return `ed25519:${subject.toString('hex')}`; // not a valid point: admits no one anyway
  }
}

/** The revocations a node knows: answers whether a credential still admits its holder. */
export class RevocationList {
  private readonly credentialIds = new Map<string, Revocation>();
  /** By subjectKey(). */
  private readonly subjects = new Map<string, Revocation>();

  get size(): number {
    return this.credentialIds.size + this.subjects.size;
  }

  add(revocation: Revocation): void {
    const t = revocation.target;
    if ('credentialId' in t) this.credentialIds.set(t.credentialId, revocation);
    else this.subjects.set(subjectKey(t.subject), revocation);
  }

  /**
   * The revocation that applies to `credential`, if any. A caller that asks often for one
   * credential passes its subjectKey(), worked out once.
   */
  find(credential: Pick<Credential, 'id' | 'subject'> & { subjectKey?: string }): Revocation | undefined {
    return this.credentialIds.get(credential.id) ?? this.subjects.get(credential.subjectKey ?? subjectKey(credential.subject));
  }
}
