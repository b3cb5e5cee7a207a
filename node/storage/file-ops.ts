// The storage engine's only door to the file system. Everything goes through a FileOps so a
// test (or the simulator) can inject a full disk, a failing fsync or a torn write without
// touching a real device; `nodeFileOps` is the real thing.
//
// Hot-path operations are synchronous (positional reads and writes against the page cache
// cost microseconds and a Promise per batch would cost more); fsync is asynchronous so the
// event loop keeps serving while the device flushes.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface DirEntry {
  name: string;
  isDirectory: boolean;
}

export interface FileOps {
  openSync(file: string, flags: string): number;
  closeSync(fd: number): void;
  readSync(fd: number, buffer: Buffer, offset: number, length: number, position: number): number;
  writeSync(fd: number, buffer: Buffer, offset: number, length: number, position: number): number;
  ftruncateSync(fd: number, length: number): void;
  /** Times in ms on the node's clock; birthtimeMs is 0 where the file system keeps none. */
  fstatSync(fd: number): { size: number; mtimeMs: number; birthtimeMs: number };
  unlinkSync(file: string): void;
  fdatasync(fd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  mkdir(dir: string): Promise<void>;
  readdir(dir: string): Promise<DirEntry[]>;
  rename(from: string, to: string): Promise<void>;
  /** Removes a file or a whole folder; absent is fine. */
  rm(target: string): Promise<void>;
}

function callbackToPromise(run: (done: (err: NodeJS.ErrnoException | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => run((err) => (err ? reject(err) : resolve())));
}

export const nodeFileOps: FileOps = {
  openSync: (file, flags) => fs.openSync(file, flags, 0o644),
  closeSync: (fd) => fs.closeSync(fd),
  readSync: (fd, buffer, offset, length, position) => fs.readSync(fd, buffer, offset, length, position),
  writeSync: (fd, buffer, offset, length, position) => fs.writeSync(fd, buffer, offset, length, position),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  fstatSync: (fd) => fs.fstatSync(fd),
  unlinkSync: (file) => fs.unlinkSync(file),
  // The callback forms: fs.promises would allocate a FileHandle per call.
  fdatasync: (fd) => callbackToPromise((done) => fs.fdatasync(fd, done)),
  fsync: (fd) => callbackToPromise((done) => fs.fsync(fd, done)),
  mkdir: async (dir) => {
    await fs.promises.mkdir(dir, { recursive: true });
  },
  readdir: async (dir) => {
    const entries = await fs.promises.readdir(dir, { withFileTypes: true });
    return entries.map((e) => ({ name: e.name, isDirectory: e.isDirectory() }));
  },
  rename: (from, to) => fs.promises.rename(from, to),
  rm: (target) => fs.promises.rm(target, { recursive: true, force: true }),
};

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

/** The file system is out of space (or the user's quota): retriable once space is freed. */
export function isDiskFull(err: unknown): boolean {
  return isErrno(err, 'ENOSPC') || isErrno(err, 'EDQUOT');
}

/**
 * A failed fsync or fdatasync of log data or of a folder. After one, Linux may have dropped
 * the dirty pages (or directory entries) and cleared the error, so a later fsync that
 * succeeds proves nothing about them: whoever meets this stops rather than retries, as Kafka
 * and PostgreSQL do. Keeps the errno's code, so isErrno and isDiskFull still read it.
 */
export class FsyncFailedError extends Error {
  readonly code: string | undefined;

  constructor(what: string, cause: unknown) {
    super(`fsync of ${what} failed: ${(cause as Error).message}`, { cause });
    this.name = 'FsyncFailedError';
    this.code = (cause as NodeJS.ErrnoException).code;
  }
}

/** Writes all of `buf` at `position`; a short write is continued, as POSIX allows one. */
export function writeFully(ops: FileOps, fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = ops.writeSync(fd, buf, done, buf.length - done, position + done);
    if (n <= 0) throw new Error(`write returned ${n} with ${buf.length - done} bytes left`);
    done += n;
  }
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
export function readFully(ops: FileOps, fd: number, buf: Buffer, offset: number, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const n = ops.readSync(fd, buf, offset + done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** A whole small file (an index, a config), or null when it does not exist. */
export function readFileSyncOrNull(ops: FileOps, file: string): Buffer | null {
  let fd: number;
  try {
    fd = ops.openSync(file, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return null;
    throw err;
  }
  try {
    const size = ops.fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(size);
    const n = readFully(ops, fd, buf, 0, size, 0);
    return n === size ? buf : buf.subarray(0, n);
  } finally {
    ops.closeSync(fd);
  }
}

/** The size of a file, or -1 when it does not exist. */
export function fileSizeOrMissing(ops: FileOps, file: string): number {
  let fd: number;
  try {
    fd = ops.openSync(file, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return -1;
    throw err;
  }
  try {
    return ops.fstatSync(fd).size;
  } finally {
    ops.closeSync(fd);
  }
}

/**
 * A new directory entry (create, rename, unlink) is durable only once its folder is fsynced.
 * Failing to open the folder (EMFILE) syncs nothing and may be retried; a failed fsync of it
 * is an FsyncFailedError.
 */
export async function fsyncDir(ops: FileOps, dir: string): Promise<void> {
  const fd = ops.openSync(dir, 'r');
  try {
    await ops.fsync(fd);
  } catch (err) {
    throw new FsyncFailedError(`the folder ${path.basename(dir)}`, err);
  } finally {
    ops.closeSync(fd);
  }
}

export const TMP_PREFIX = '.tmp-';
const TMP_NAME = /^\.tmp-[0-9a-f]{16}$/;

/**
 * Whether `name` is exactly a name writeFileDurable makes. A prefix alone is not enough
 * beside topic configs: a topic may be named `.tmp-x`, and its `.tmp-x.json` is no leftover.
 */
export function isTemporaryName(name: string): boolean {
  return TMP_NAME.test(name);
}

/**
 * Replaces `dir/name` atomically and durably: a crash leaves either the old content or the
 * new, never a torn file. The temporary name is short and fixed-prefix so a leftover is
 * recognised and removed at the next start, and long target names still fit NAME_MAX.
 * `syncDir` = false lets a caller that writes several files fsync the folder once.
 */
export async function writeFileDurable(ops: FileOps, dir: string, name: string, data: Buffer, syncDir = true): Promise<void> {
  const tmp = path.join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
  const fd = ops.openSync(tmp, 'w');
  try {
    writeFully(ops, fd, data, 0);
    await ops.fsync(fd);
  } catch (err) {
    ops.closeSync(fd);
    await ops.rm(tmp);
    throw err;
  }
  ops.closeSync(fd);
  await ops.rename(tmp, path.join(dir, name));
  if (syncDir) await fsyncDir(ops, dir);
}
