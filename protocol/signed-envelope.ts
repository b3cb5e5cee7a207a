// Fleet-signed envelopes: the one layout of credentials (credential.ts) and revocations
// (revocation.ts), signed and checked in one place.
//
//   envelope = CBOR [ body: bytes, signature: bytes(64) ]
//   body     = CBOR { v: uint, iss: bytes(32), ...the purpose's own fields }
//
// The signature is Ed25519 (libsodium crypto_sign_detached) by the fleet authority over the
// body bytes exactly as sent, so no re-encoding can change what was signed. The checks run
// in a fixed order, cheapest and least trusting first: size, the [body, signature] pair,
// the signature's length, the body being a CBOR map, its version, its issuer being our
// fleet, and only then the signature. Each refusal says which check failed.
//
// The purpose is not part of the signed bytes (the format predates this module and signed
// envelopes are kept on disks and in files). A credential and a revocation are told apart
// only because each lacks a field the other requires: a credential has no `at`, a
// revocation no `role`. A new purpose signed by the same key must keep it so, or carry its
// purpose in its body (signed-envelope.test.ts checks the two there are).

import { Decoder, Encoder } from 'cbor-x';
import sodium from 'sodium-native';
import { assert, Errors, TributaryError, type ErrorSpec } from './errors.js';
import type { IdentityKeyPair } from './key-file.js';

/** What an envelope carries, and how a refusal of one is reported. */
export interface EnvelopePurpose {
  /** For messages: 'credential', 'revocation'. */
  readonly name: string;
  /** The body's `v`. */
  readonly version: number;
  /** Bytes of a whole envelope. */
  readonly bytesMax: number;
  /** A refused envelope is a TributaryError of this kind, its detail `<name> refused: ...`. */
  readonly refusedAs: ErrorSpec;
  /** The detail when `iss` is not our fleet's key. */
  readonly otherFleet: string;
}

// Kept as they were when the first envelopes were signed: a change here changes bytes.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/** A TributaryError(purpose.refusedAs) saying `<name> refused: <detail>`. */
export function refusal(purpose: EnvelopePurpose, detail: string): TributaryError {
  return new TributaryError(purpose.refusedAs, `${purpose.name} refused: ${detail}`);
}

/** A body as signed: the layout's `v` and `iss`, and the purpose's own fields. */
export type EnvelopeBody = { v: number; iss: Buffer } & Record<string, unknown>;

/** A body as verified: `v` and `iss` checked, every other field as decoded, unchecked. */
export type VerifiedBody = { v: number; iss: Uint8Array } & Record<string, unknown>;

/**
 * Signs `body` with the fleet authority's key; returns the envelope's bytes. The body's
 * fields are encoded in the order given: each purpose keeps the order it always had, so
 * that what it signs stays byte for byte what it signed. Throws INVALID_CONFIG if the
 * envelope would pass purpose.bytesMax, which no verifier would take.
 */
export function signEnvelope(purpose: EnvelopePurpose, fleet: IdentityKeyPair, body: EnvelopeBody): Buffer {
  assert(body.v === purpose.version && body.iss.equals(fleet.publicKey), `a ${purpose.name} body must carry version ${purpose.version} and the signing key as iss`);
  const bodyBytes = encoder.encode(body);
  const signature = Buffer.alloc(sodium.crypto_sign_BYTES);
  sodium.crypto_sign_detached(signature, bodyBytes, fleet.secretKey);
  const envelope = Buffer.from(encoder.encode([bodyBytes, signature]));
  if (envelope.length > purpose.bytesMax) {
    throw new TributaryError(Errors.INVALID_CONFIG, `${purpose.name} of ${envelope.length} bytes exceeds ${purpose.bytesMax}`);
  }
  return envelope;
}

/**
 * The body of an envelope of `purpose` that the fleet whose public key is given signed:
 * a map whose `v` is the purpose's version and whose `iss` is that key. Its other fields
 * are as decoded, for the purpose to check. Throws refusal(purpose, ...) naming the
 * failed check.
 */
export function verifyEnvelope(purpose: EnvelopePurpose, bytes: Uint8Array, fleetPublicKey: Buffer): VerifiedBody {
  if (bytes.length === 0 || bytes.length > purpose.bytesMax) throw refusal(purpose, `size ${bytes.length} outside 1..${purpose.bytesMax}`);
  const outer = decodeOrRefuse(purpose, bytes);
  if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array) || !(outer[1] instanceof Uint8Array)) {
    throw refusal(purpose, 'not a [body, signature] pair');
  }
  const [body, signature] = outer as [Uint8Array, Uint8Array];
  if (signature.length !== sodium.crypto_sign_BYTES) throw refusal(purpose, 'signature has the wrong length');
  const claims = decodeOrRefuse(purpose, body) as Record<string, unknown>;
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw refusal(purpose, 'body is not a map');
  if (claims.v !== purpose.version) throw refusal(purpose, `version ${shown(claims.v)} is not ${purpose.version}`);
  if (!(claims.iss instanceof Uint8Array) || !Buffer.from(claims.iss).equals(fleetPublicKey)) throw refusal(purpose, purpose.otherFleet);
  if (!sodium.crypto_sign_verify_detached(Buffer.from(signature), Buffer.from(body), fleetPublicKey)) throw refusal(purpose, 'signature does not verify');
  return claims as VerifiedBody;
}

/**
 * A decoded value for an error message, never by calling its own methods: a map such as
 * {toString: 1} from unverified input would make String() throw, or run nothing we wrote.
 */
export function shown(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);
  return `(${Array.isArray(value) ? 'array' : typeof value})`;
}

function decodeOrRefuse(purpose: EnvelopePurpose, bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch {
    throw refusal(purpose, 'not valid CBOR');
  }
}
