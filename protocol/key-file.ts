// The identity key file: one Ed25519 key pair as JSON, so an operator can read which key a
// file holds. The same format serves devices, apps, nodes, admins and the fleet authority.
//
//   { "format": "tributary-identity", "version": 1, "publicKey": hex(32), "secretKey": hex(64) }
//
// libsodium's Ed25519 secret key is seed || public key, so the file is checked to hold one
// consistent pair. Files are written 0600 by their owners (node/ and devices/).

import sodium from 'sodium-native';
import { Errors, TributaryError } from './errors.js';

export const KEY_FILE_FORMAT = 'tributary-identity';

export interface IdentityKeyPair {
  publicKey: Buffer;
  secretKey: Buffer;
}

export function generateIdentity(): IdentityKeyPair {
  const publicKey = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES);
  const secretKey = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES);
  sodium.crypto_sign_keypair(publicKey, secretKey);
  return { publicKey, secretKey };
}

export function encodeKeyFile(identity: IdentityKeyPair): string {
  return `${JSON.stringify({ format: KEY_FILE_FORMAT, version: 1, publicKey: identity.publicKey.toString('hex'), secretKey: identity.secretKey.toString('hex') }, null, 2)}\n`;
}

export function parseKeyFile(text: string, source = 'key file'): IdentityKeyPair {
  const bad = (detail: string) => new TributaryError(Errors.INVALID_CONFIG, `${source}: ${detail}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw bad('not a Tributary identity file (not JSON)');
  }
  const f = json as Record<string, unknown>;
  if (f === null || typeof f !== 'object' || f.format !== KEY_FILE_FORMAT) throw bad('not a Tributary identity file');
  if (f.version !== 1) throw bad(`version ${String(f.version)} is not supported`);
  const publicKey = hexKey(f.publicKey, sodium.crypto_sign_PUBLICKEYBYTES);
  const secretKey = hexKey(f.secretKey, sodium.crypto_sign_SECRETKEYBYTES);
  if (!publicKey || !secretKey) throw bad('keys must be hex of 32 (public) and 64 (secret) bytes');
  if (!secretKey.subarray(32).equals(publicKey)) throw bad('public and secret key do not belong together');
  return { publicKey, secretKey };
}

/** A public key given on a command line or in a config: 64 hex characters. */
export function parsePublicKey(text: string, what = 'public key'): Buffer {
  const key = hexKey(text.trim(), sodium.crypto_sign_PUBLICKEYBYTES);
  if (!key) throw new TributaryError(Errors.INVALID_CONFIG, `${what} must be 64 hex characters`);
  return key;
}

function hexKey(value: unknown, bytes: number): Buffer | null {
  if (typeof value !== 'string' || value.length !== bytes * 2 || !/^[0-9a-f]+$/i.test(value)) return null;
  return Buffer.from(value, 'hex');
}
