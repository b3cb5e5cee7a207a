// `tributary consume` as a user runs it, against a real node process, with its stdout on a
// full disk (/dev/full) or a pipe the reader closes: `--group` commits only what reached
// stdout, a failed write stops it with one line, and the count told is what was written.
// And a member that leaves commits where it stands on every partition, so a later member
// starting at the end skips nothing.

import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { CLI, nodeForFile } from './helpers/node-process.js';

const shared = nodeForFile('trib-consume-');
const { cli, ok, track } = shared;

/** The COMMITTED column of `groups describe`, by partition. */
async function committedOf(group: string): Promise<string[]> {
  const rows = (await ok(['groups', 'describe', group])).trimEnd().split('\n').slice(2);
  return rows.map((row) => row.split(/\s+/)[2]);
}

/** Runs consume with stdout on /dev/full. */
function consumeToFullDisk(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const full = openSync('/dev/full', 'w');
  try {
    const child = spawn(process.execPath, [CLI, 'consume', ...args, '--broker', shared.node.url], { stdio: ['ignore', full, 'pipe'] });
    track(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) =>
      child.once('close', (code) => {
        resolve({ code, stderr });
      }),
    );
  } finally {
    closeSync(full);
  }
}

const values = (n: number) => Array.from({ length: n }, (_, i) => `value-${String(i).padStart(6, '0')}`);

it('consume --group onto a full disk fails in one line and commits none of the records it could not write', async () => {
  await ok(['topics', 'create', 'to-full', '--partitions', '3']);
  await ok(['produce', 'to-full', '--key-separator', ':'], values(3000).map((v, i) => `k${i}:${v}`).join('\n') + '\n');
  const r = await consumeToFullDisk(['to-full', '--group', 'full-disk', '--from-beginning', '--timeout-ms', '10000']);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe('tributary: cannot write to stdout (ENOSPC) after 0 records; the group committed only the records written\n');
  // Nothing was written: each partition stays at its log start.
  expect(await committedOf('full-disk')).toEqual(['0', '0', '0']);
  // A second member, starting where the group committed (not at the end), gets every record.
  const second = await ok(['consume', 'to-full', '--group', 'full-disk', '--max-messages', '3000', '--timeout-ms', '10000']);
  expect(second.trimEnd().split('\n').sort()).toEqual(values(3000));
});

it('plain consume onto a full disk fails in one line and counts nothing as consumed', async () => {
  await ok(['topics', 'create', 'to-full-plain', '--partitions', '1']);
  await ok(['produce', 'to-full-plain'], values(3000).join('\n') + '\n');
  const r = await consumeToFullDisk(['to-full-plain', '--from-beginning', '--timeout-ms', '10000']);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe('tributary: cannot write to stdout (ENOSPC) after 0 records\n');
});

it('consume --group whose reader closes the pipe commits exactly what it wrote; a second member gets the rest', async () => {
  const total = 200_000;
  await ok(['topics', 'create', 'to-pipe', '--partitions', '1']);
  await ok(['produce', 'to-pipe'], values(total).join('\n') + '\n');
  const child = spawn(process.execPath, [CLI, 'consume', 'to-pipe', '--group', 'closed-pipe', '--from-beginning', '--timeout-ms', '10000', '--broker', shared.node.url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // Read the first chunk, then close our end, as `head -1` does.
  const received = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
  child.stdout!.destroy();
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  expect(code).toBe(1);
  const told = /^tributary: cannot write to stdout \(EPIPE\) after (\d+) records; the group committed only the records written\n$/.exec(stderr);
  expect(told, stderr).not.toBeNull();
  const written = Number(told![1]);
  const lines = received.split('\n').slice(0, -1);
  expect(lines).toEqual(values(lines.length));
  expect(written).toBeGreaterThanOrEqual(lines.length);
  expect(written).toBeLessThan(total);
  expect(await committedOf('closed-pipe')).toEqual([String(written)]);
  const rest = await ok(['consume', 'to-pipe', '--group', 'closed-pipe', '--max-messages', String(total - written), '--timeout-ms', '10000']);
  expect(rest.trimEnd().split('\n')).toEqual(values(total).slice(written));
  expect(await committedOf('closed-pipe')).toEqual([String(total)]);
}, 60_000);

it('a member that leaves commits every partition it was given, so the next one starting at the end skips nothing', async () => {
  await ok(['topics', 'create', 'leaving', '--partitions', '3']);
  await ok(['produce', 'leaving', '--partition', '0'], 'p0-0\np0-1\np0-2\np0-3\np0-4\n');
  // Partitions 1 and 2 have nothing yet: read from the beginning, they start at their log start.
  const first = await ok(['consume', 'leaving', '--group', 'leavers', '--from-beginning', '--max-messages', '5', '--timeout-ms', '10000']);
  expect(first).toBe('p0-0\np0-1\np0-2\np0-3\np0-4\n');
  expect(await committedOf('leavers')).toEqual(['5', '0', '0']);
  for (const p of [0, 1, 2]) await ok(['produce', 'leaving', '--partition', String(p)], `p${p}-late-a\np${p}-late-b\n`);
  // Without --from-beginning: a partition with no committed offset would start at its end.
  const second = await ok(['consume', 'leaving', '--group', 'leavers', '--max-messages', '6', '--timeout-ms', '10000']);
  expect(second.trimEnd().split('\n').sort()).toEqual(['p0-late-a', 'p0-late-b', 'p1-late-a', 'p1-late-b', 'p2-late-a', 'p2-late-b']);
  expect(await committedOf('leavers')).toEqual(['7', '2', '2']);
});
