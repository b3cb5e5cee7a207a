// Identity and credential files on disk. Secret keys are written 0600 and never
// overwritten by accident; a key file that others can read is refused, as ssh refuses
// one, because whoever reads it can act as its holder.

import { closeSync, fchmodSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Decoder } from 'cbor-x';
import { CREDENTIAL_BYTES_MAX } from './credential.js';
import { Errors, TributaryError } from './errors.js';
import { encodeKeyFile, parseKeyFile, type IdentityKeyPair } from './key-file.js';

export function writeIdentityFile(path: string, identity: IdentityKeyPair, options: { overwrite?: boolean } = {}): void {
  writePrivateFile(path, encodeKeyFile(identity), options.overwrite ?? false);
}

export function readIdentityFile(path: string): IdentityKeyPair {
  const fd = openOrFail(path);
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (mode & 0o077) {
      throw new TributaryError(Errors.INVALID_CONFIG, `${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
    }
    return parseKeyFile(readFileSync(fd, 'utf8'), path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a credential file as `credentials issue` wrote it: the bytes a client sends in the
 * handshake. A credential is no secret, so its mode is not checked; its size is, before
 * anything is read, since a credential larger than CREDENTIAL_BYTES_MAX is never valid.
 */
export function readCredentialFile(path: string): Buffer {
  const fd = openOrFail(path);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new TributaryError(Errors.INVALID_CONFIG, `${path} is not a file`);
    if (stat.size === 0 || stat.size > CREDENTIAL_BYTES_MAX) {
      throw new TributaryError(Errors.INVALID_CONFIG, `${path} is ${stat.size} bytes; a credential is 1 to ${CREDENTIAL_BYTES_MAX}`);
    }
    const bytes = readFileSync(fd);
    if (peekCredential(bytes) === null) throw new TributaryError(Errors.INVALID_CONFIG, `${path} is not a Tributary credential`);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** What a credential says about itself, read WITHOUT checking its signature. */
export interface CredentialPeek {
  id: string;
  subject: Buffer;
  role: string;
  expiresAt: number;
}

const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/**
 * Reads a credential's claims without verifying it, or null when the bytes are not shaped
 * like one. Only for checks a holder makes on its own file before using it (is this the
 * credential of my identity? which id do I revoke?): nothing read here is trusted, and
 * whatever decides anything calls verifyCredential. The layout is protocol/credential.ts's.
 */
export function peekCredential(bytes: Uint8Array): CredentialPeek | null {
  if (bytes.length === 0 || bytes.length > CREDENTIAL_BYTES_MAX) return null;
  try {
    const outer: unknown = decoder.decode(bytes);
    if (!Array.isArray(outer) || outer.length !== 2 || !(outer[0] instanceof Uint8Array)) return null;
    const claims = decoder.decode(outer[0] as Uint8Array) as Record<string, unknown> | null;
    if (claims === null || typeof claims !== 'object') return null;
    const { id, sub, role, exp } = claims;
    if (typeof id !== 'string' || !(sub instanceof Uint8Array) || typeof role !== 'string' || !Number.isSafeInteger(exp)) return null;
    return { id, subject: Buffer.from(sub), role, expiresAt: exp as number };
  } catch {
    return null;
  }
}

/** Writes a file only its owner can read. `wx` unless overwriting: an old key is never lost silently. */
export function writePrivateFile(path: string, contents: string | Buffer, overwrite: boolean): void {
  let fd: number;
  try {
    fd = openSync(path, overwrite ? 'w' : 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new TributaryError(Errors.INVALID_CONFIG, `${path} exists; refusing to overwrite it (use --force)`);
    throw new TributaryError(Errors.INVALID_CONFIG, `cannot write ${path}: ${code ?? (err as Error).message}`);
  }
  try {
    fchmodSync(fd, 0o600); // an overwritten file keeps its old mode otherwise
    writeFileSync(fd, contents);
  } finally {
    closeSync(fd);
  }
}

function openOrFail(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
