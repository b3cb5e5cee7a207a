// The node's identity on disk, as Kafka's meta.properties: a node id chosen once, on the
// first start in an empty data folder, and kept so that peers and logs can name the node.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readIdentityFile } from '../protocol/identity-files.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { encodeKeyFile, generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';

const FILE = 'node.json';

export interface NodeMeta {
  nodeId: string;
  createdAt: string;
}

export function loadOrCreateNodeMeta(dataDir: string, wantedNodeId?: string): NodeMeta {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, FILE);
  let existing: NodeMeta | undefined;
  try {
    existing = JSON.parse(readFileSync(path, 'utf8')) as NodeMeta;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new TributaryError(Errors.STORAGE_ERROR, `cannot read ${path}: ${(err as Error).message}`);
    }
  }
  if (existing) {
    if (wantedNodeId && wantedNodeId !== existing.nodeId) {
      throw new TributaryError(Errors.INVALID_CONFIG, `data folder belongs to node '${existing.nodeId}', not '${wantedNodeId}'`);
    }
    return existing;
  }
  const meta: NodeMeta = { nodeId: wantedNodeId ?? `node-${randomBytes(4).toString('hex')}`, createdAt: new Date().toISOString() };
  writeFileDurably(dataDir, path, `${JSON.stringify(meta, null, 2)}\n`, 0o644);
  return meta;
}

/** Writes a whole file that a crash leaves either absent or complete: temp, fsync, rename, fsync dir. */
export function writeFileDurably(dir: string, path: string, contents: string, mode: number): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, contents);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

export const NODE_KEY_FILE = 'node.key';

/**
 * The node's identity key (Ed25519, the same file format as `tributary keys generate`),
 * made on the first start in an empty data folder and kept: clients may pin its public key.
 * Written 0600 and fsynced before use, so a power loss cannot give the node a new key.
 */
export function loadOrCreateNodeIdentity(dataDir: string): { identity: IdentityKeyPair; path: string; created: boolean } {
  const path = join(dataDir, NODE_KEY_FILE);
  try {
    return { identity: readIdentityFile(path), path, created: false };
  } catch (err) {
    if (!(err instanceof TributaryError) || !/ENOENT/.test(err.detail)) throw err;
  }
  const identity = generateIdentity();
  writeFileDurably(dataDir, path, encodeKeyFile(identity), 0o600);
  return { identity, path, created: true };
}

const LOCK_FILE = '.lock';
const lockedHere = new Set<string>();

/**
 * Takes the data folder for this process, as Kafka's `.lock`: two nodes writing the same
 * segments would corrupt them. The lock file holds the owner's pid; one left by a process
 * that no longer runs (a crash, a SIGKILL) is taken over. Returns the release.
 */
// A held folder is not a configuration mistake (exit code 1, not 2): the same config works
// once the other node stops.
export function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  if (lockedHere.has(path)) throw new TributaryError(Errors.STORAGE_ERROR, `data folder ${dataDir} is already in use by this process`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      lockedHere.add(path);
      return () => {
        lockedHere.delete(path);
        try {
          unlinkSync(path);
        } catch {
          // Already gone: nothing holds the folder either way.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new TributaryError(Errors.STORAGE_ERROR, `cannot create ${path}: ${(err as Error).message}`);
      }
    }
    const owner = Number.parseInt(readFileSyncOr(path, ''), 10);
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && processRuns(owner)) {
      throw new TributaryError(Errors.STORAGE_ERROR, `data folder ${dataDir} is in use by process ${owner} (remove ${path} only if no node runs there)`);
    }
    // Stale: its owner is gone. Remove it and try once more.
    try {
      unlinkSync(path);
    } catch {
      // Another starter removed it first; the retry decides who wins.
    }
  }
  throw new TributaryError(Errors.STORAGE_ERROR, `data folder ${dataDir} is being taken by another process`);
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readFileSyncOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}
