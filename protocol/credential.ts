// Fleet credentials: what a holder of a subject key may do, signed by the fleet authority.
// A node needs only the fleet's public key to check one, so a gateway admits a new device
// while it is offline from the datacenter.
//
//   credential = CBOR [ body: bytes, signature: bytes(64) ]
//   body       = CBOR { v: 1, id: text, iss: bytes(32), sub: bytes(32), role: text,
//                       produce: [text], consume: [text], ?groups: [text],
//                       iat: uint ms, exp: uint ms }
//
// A fleet-signed envelope (signed-envelope.ts, shared with revocations): Ed25519 over the
// body bytes exactly as sent, so no re-encoding can change what was signed. `iss` is the
// fleet public key, `sub` the holder's Ed25519 identity key (proved in the Noise handshake
// by its X25519 form).
// Topic patterns: `*` matches any run of characters, anything else matches itself.
// `groups` (consumer group id patterns, same syntax) is optional: a credential without it,
// such as every one issued before groups were authorized, gets its role's default (see
// node/auth/acl.ts). A node that does not know the field ignores it.

import { randomBytes } from 'node:crypto';
import sodium from 'sodium-native';
import { Errors, TributaryError } from './errors.js';
import type { IdentityKeyPair } from './key-file.js';
import { refusal, shown, signEnvelope, verifyEnvelope, type EnvelopePurpose } from './signed-envelope.js';

export const CREDENTIAL_VERSION = 1;
export const CREDENTIAL_BYTES_MAX = 4096;
const PATTERNS_MAX = 64;
const PATTERN_CHARS_MAX = 249;

export const ROLES = ['device', 'app', 'node', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface CredentialClaims {
  subject: Buffer;
  role: Role;
  produce: string[];
  consume: string[];
  /** Consumer group id patterns; absent: the role's default. */
  groups?: string[];
  /** Epoch ms. */
  expiresAt: number;
}

export interface Credential extends CredentialClaims {
  id: string;
  issuer: Buffer;
  issuedAt: number;
}

export type SigningKeyPair = IdentityKeyPair;

const CREDENTIAL: EnvelopePurpose = {
  name: 'credential',
  version: CREDENTIAL_VERSION,
  bytesMax: CREDENTIAL_BYTES_MAX,
  refusedAs: Errors.UNAUTHORIZED,
  otherFleet: 'issued by another fleet',
};

function refuse(detail: string): TributaryError {
  return refusal(CREDENTIAL, detail);
}

function invalid(detail: string): TributaryError {
  return new TributaryError(Errors.INVALID_CONFIG, detail);
}

function checkPatterns(which: string, patterns: unknown): string[] {
  const what = which === 'groups' ? 'group' : 'topic';
  if (!Array.isArray(patterns) || patterns.length > PATTERNS_MAX) throw invalid(`${which} must be a list of at most ${PATTERNS_MAX} ${what} patterns`);
  for (const p of patterns) {
    if (typeof p !== 'string' || p.length === 0 || p.length > PATTERN_CHARS_MAX || !/^[A-Za-z0-9._*-]+$/.test(p)) {
      throw invalid(`${which} pattern ${JSON.stringify(p)} must be 1-${PATTERN_CHARS_MAX} of [A-Za-z0-9._-] and *`);
    }
  }
  return patterns as string[];
}

/** Signs a credential with the fleet authority's key. */
export function issueCredential(fleet: SigningKeyPair, claims: CredentialClaims, now = Date.now()): Buffer {
  if (claims.subject.length !== sodium.crypto_sign_PUBLICKEYBYTES) throw invalid('subject must be a 32-byte Ed25519 public key');
  if (!ROLES.includes(claims.role)) throw invalid(`role must be one of ${ROLES.join(', ')}`);
  if (!Number.isSafeInteger(claims.expiresAt) || claims.expiresAt <= now) throw invalid('expiry must be in the future');
  return signEnvelope(CREDENTIAL, fleet, {
    v: CREDENTIAL_VERSION,
    id: randomBytes(12).toString('hex'),
    iss: fleet.publicKey,
    sub: claims.subject,
    role: claims.role,
    produce: checkPatterns('produce', claims.produce),
    consume: checkPatterns('consume', claims.consume),
    ...(claims.groups === undefined ? {} : { groups: checkPatterns('groups', claims.groups) }),
    iat: now,
    exp: claims.expiresAt,
  });
}

/**
 * Checks a credential against the fleet's public key at time `now`: shape, issuer,
 * signature, validity period. Throws TributaryError(UNAUTHORIZED) naming what failed.
 */
export function verifyCredential(bytes: Uint8Array, fleetPublicKey: Buffer, now = Date.now()): Credential {
  const claims = verifyEnvelope(CREDENTIAL, bytes, fleetPublicKey);
  const issuer = claims.iss;
  // Signed by our fleet from here on: the remaining checks guard against a buggy issuer.
  const subject = claims.sub;
  if (!(subject instanceof Uint8Array) || subject.length !== sodium.crypto_sign_PUBLICKEYBYTES) throw refuse('subject is not a public key');
  if (typeof claims.role !== 'string' || !ROLES.includes(claims.role as Role)) throw refuse(`unknown role ${shown(claims.role)}`);
  if (typeof claims.id !== 'string') throw refuse('no id');
  if (!Number.isSafeInteger(claims.iat) || !Number.isSafeInteger(claims.exp)) throw refuse('bad validity period');
  if ((claims.exp as number) <= now) throw refuse(`expired at ${new Date(claims.exp as number).toISOString()}`);
  let produce: string[];
  let consume: string[];
  let groups: string[] | undefined;
  try {
    produce = checkPatterns('produce', claims.produce);
    consume = checkPatterns('consume', claims.consume);
    if (claims.groups !== undefined) groups = checkPatterns('groups', claims.groups);
  } catch (err) {
    throw refuse((err as Error).message);
  }
  return {
    id: claims.id,
    issuer: Buffer.from(issuer),
    subject: Buffer.from(subject),
    role: claims.role as Role,
    produce,
    consume,
    ...(groups === undefined ? {} : { groups }),
    issuedAt: claims.iat as number,
    expiresAt: claims.exp as number,
  };
}

/** True when `topic` matches one of the patterns (`*` = any run of characters). */
export function topicAllowed(patterns: readonly string[], topic: string): boolean {
  for (const pattern of patterns) if (globMatch(pattern, topic)) return true;
  return false;
}

function globMatch(pattern: string, text: string): boolean {
  // Iterative wildcard match with one backtrack point: linear enough for short patterns,
  // and no regular expression built from input.
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = t;
    } else if (star >= 0) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}
