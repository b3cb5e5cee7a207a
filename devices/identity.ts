// Identity and credential files on disk. Secret keys are written 0600 and never
// overwritten by accident; a key file that others can read is refused, as ssh refuses
// one, because whoever reads it can act as its holder.

import { closeSync, fchmodSync, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Errors, TributaryError } from '../protocol/errors.js';
import { encodeKeyFile, parseKeyFile, type IdentityKeyPair } from '../protocol/key-file.js';

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
