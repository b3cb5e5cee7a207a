// The partition's recovery point checkpoint, `recovery-point.checkpoint`:
//
//   0\n          format version
//   <offset>\n   every segment whose base offset is below this is sealed: its log was
//                fsynced, then its index files were written, before this file was
//
// An unclean start trusts segments below it and scans every segment from it on (Kafka's
// recovery-point-offset-checkpoint, per partition). It advances only when segments are
// sealed (at roll), so it costs nothing per append. Missing or unreadable means 0: scan all,
// which is slow but never wrong.

import * as path from 'node:path';
import { readFileSyncOrNull, writeFileDurable } from './file-ops.js';
import type { FileOps } from './file-ops.js';

export const RECOVERY_CHECKPOINT_FILE = 'recovery-point.checkpoint';

export function readRecoveryCheckpoint(ops: FileOps, dir: string): number {
  const bytes = readFileSyncOrNull(ops, path.join(dir, RECOVERY_CHECKPOINT_FILE));
  if (bytes === null) return 0;
  const match = /^0\n(\d{1,16})\n$/.exec(bytes.toString('latin1'));
  if (match === null) return 0;
  const offset = Number(match[1]);
  return Number.isSafeInteger(offset) ? offset : 0;
}

export async function writeRecoveryCheckpoint(ops: FileOps, dir: string, offset: number): Promise<void> {
  await writeFileDurable(ops, dir, RECOVERY_CHECKPOINT_FILE, Buffer.from(`0\n${offset}\n`, 'latin1'));
}
