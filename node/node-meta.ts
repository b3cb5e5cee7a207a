// The node's identity on disk, as Kafka's meta.properties: a node id chosen once, on the
// first start in an empty data folder, and kept so that peers and logs can name the node.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Errors, TributaryError } from '../protocol/errors.js';

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
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify(meta, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dirFd = openSync(dataDir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return meta;
}
