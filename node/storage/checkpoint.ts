// The partition's recovery point checkpoint, `recovery-point.checkpoint`:
//
//   1\n                       format version (0: the first line only, as written before)
//   <offset>\n                every segment whose base offset is below this is sealed: its
//                             log was fsynced, then its index files were written, before
//                             this file was
//   <base> <offset> <pos>\n   optional: the active segment `base` was fdatasynced through
//                             file position `pos`, where offset `offset` begins, and its
//                             index files hold every entry below `pos` (the checkpoint job)
//
// An unclean start trusts segments below the second line and scans every segment from it
// on (Kafka's recovery-point-offset-checkpoint, per partition). The third line lets it
// trust the active segment's synced part too and scan only what came after `pos`, so an
// open never reads a whole segment. The second line advances when segments are sealed (at
// roll), the third when the checkpoint job runs: nothing is written per append. Missing or
// unreadable means 0: scan all, which is slow but never wrong.

import * as path from 'node:path';
import { readFileSyncOrNull, writeFileDurable } from './file-ops.js';
import type { FileOps } from './file-ops.js';

export const RECOVERY_CHECKPOINT_FILE = 'recovery-point.checkpoint';

/** How far the active segment was synced when the checkpoint job last ran. */
export interface ActiveSegmentCheckpoint {
  baseOffset: number;
  /** The offset of the first batch at or after `position`: the synced log end. */
  offset: number;
  position: number;
}

export interface RecoveryCheckpoint {
  /** Segments with a base offset below this are sealed. */
  sealedBelow: number;
  active: ActiveSegmentCheckpoint | null;
}

const NONE: RecoveryCheckpoint = { sealedBelow: 0, active: null };

function safe(text: string): number | null {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}

export function readRecoveryCheckpoint(ops: FileOps, dir: string): RecoveryCheckpoint {
  const bytes = readFileSyncOrNull(ops, path.join(dir, RECOVERY_CHECKPOINT_FILE));
  if (bytes === null) return NONE;
  const match = /^(?:0\n(\d{1,16})\n|1\n(\d{1,16})\n(?:(\d{1,16}) (\d{1,16}) (\d{1,10})\n)?)$/.exec(bytes.toString('latin1'));
  if (match === null) return NONE;
  const sealedBelow = safe(match[1] ?? match[2]);
  if (sealedBelow === null) return NONE;
  if (match[3] === undefined) return { sealedBelow, active: null };
  const [baseOffset, offset, position] = [safe(match[3]), safe(match[4]), safe(match[5])];
  // A line that does not make sense is ignored (the active segment is then scanned whole).
  if (baseOffset === null || offset === null || position === null || baseOffset < sealedBelow || offset < baseOffset) return { sealedBelow, active: null };
  return { sealedBelow, active: { baseOffset, offset, position } };
}

export async function writeRecoveryCheckpoint(ops: FileOps, dir: string, sealedBelow: number, active: ActiveSegmentCheckpoint | null = null): Promise<void> {
  const activeLine = active === null ? '' : `${active.baseOffset} ${active.offset} ${active.position}\n`;
  await writeFileDurable(ops, dir, RECOVERY_CHECKPOINT_FILE, Buffer.from(`1\n${sealedBelow}\n${activeLine}`, 'latin1'));
}
