// Every command's output may go to a reader that has already left (`| head -1`, `| true`):
// help, lists and tables end quietly, never with an unhandled 'error' event and a stack
// trace; a full disk is one line and exit code 1. Real processes and real pipes, against a
// real node process.

import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, runCli, startNodeProcess, stopAllNodes, tempDir, type NodeProcess } from './helpers/node-process.js';

const dir = tempDir('trib-epipe-');
let node: NodeProcess;

beforeAll(async () => {
  node = await startNodeProcess({ dataDir: join(dir.path, 'data') });
  const on = (args: string[], input = '') => runCli([...args, '--broker', node.url], input);
  expect((await on(['topics', 'create', 'readings', '--partitions', '2'])).code).toBe(0);
  expect((await on(['produce', 'readings'], 'a\nb\nc\n')).code).toBe(0);
  expect((await on(['consume', 'readings', '--group', 'dashboards', '--from-beginning', '--max-messages', '3', '--timeout-ms', '10000'])).code).toBe(0);
});

afterAll(async () => {
  await stopAllNodes();
  dir.remove();
});

/** Runs the CLI with its stdout a pipe whose reading end is closed before it writes. */
function withReaderGone(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.destroy();
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tributary ${args.join(' ')} did not finish: ${stderr}`));
    }, 20_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

it('help of every level ends quietly when its reader has gone', async () => {
  for (const args of [['--help'], ['topics', '--help'], ['consume', '--help'], ['produce', '--help'], ['groups', 'describe', '--help'], ['--version']]) {
    expect(await withReaderGone(args), args.join(' ')).toEqual({ code: 0, stderr: '' });
  }
});

it('lists and tables end quietly when their reader has gone', async () => {
  const b = ['--broker', node.url];
  for (const args of [
    ['topics', 'list', ...b],
    ['topics', 'describe', 'readings', ...b],
    ['topics', 'configs', 'readings', ...b],
    ['groups', 'list', ...b],
    ['groups', 'describe', 'dashboards', ...b],
    ['consume', 'readings', '--from-beginning', '--max-messages', '3', '--timeout-ms', '10000', ...b],
  ]) {
    const r = await withReaderGone(args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    expect(r.stderr).not.toMatch(/Error|at .*\.js|node:/);
  }
});

it('`tributary --help | true` and `tributary topics list | true` end quietly, exit code 0', async () => {
  for (const args of ['--help', `topics list --broker ${node.url}`]) {
    // `true` leaves before the command writes; the command's exit code goes to stderr.
    const script = `{ "${process.execPath}" "${CLI}" ${args}; echo "exit $?" >&2; } | true`;
    const stderr = await new Promise<string>((resolve) => {
      const sh = spawn('sh', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
      let text = '';
      sh.stderr!.on('data', (d: Buffer) => (text += d.toString()));
      sh.once('close', () => resolve(text));
    });
    expect(stderr, args).toBe('exit 0\n');
  }
});

it('a list onto a full disk is one line and exit code 1', async () => {
  const full = openSync('/dev/full', 'w');
  try {
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, 'topics', 'list', '--broker', node.url], { stdio: ['ignore', full, 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('close', (code) => resolve({ code, stderr }));
    });
    expect(r).toEqual({ code: 1, stderr: 'tributary: cannot write to stdout (ENOSPC)\n' });
  } finally {
    closeSync(full);
  }
});
