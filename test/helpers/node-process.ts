// Starts real nodes as child processes (the built `tributary start`), for tests that kill
// them. Every process started here is tracked, and `stopAllNodes` (call it in afterEach)
// SIGKILLs whatever a failing test left running.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { startChildNode } from '../../simulator/child-node.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(ROOT, 'dist/node/cli/main.js');

export interface NodeProcess {
  readonly url: string;
  readonly port: number;
  readonly proc: ChildProcess;
  output(): string;
  /** SIGTERM and wait: the clean path. Resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait: the crash path. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();

export async function startNodeProcess(options: {
  dataDir: string;
  port?: number;
  args?: string[];
  startTimeoutMs?: number;
  /** A command the node runs under, e.g. nsenter into a mount namespace; it must exec the node. */
  wrap?: string[];
}): Promise<NodeProcess> {
  const node = await startChildNode({
    cli: CLI,
    args: ['--data', options.dataDir, '--port', String(options.port ?? 0), '--log-level', 'warn', ...(options.args ?? [])],
    wrap: options.wrap,
    startTimeoutMs: options.startTimeoutMs,
    onSpawn: (proc) => {
      running.add(proc);
      proc.once('exit', () => running.delete(proc));
    },
  });
  return { url: node.url, port: node.port, proc: node.proc, output: node.output, stop: () => node.stop(), kill: node.kill };
}

export async function stopAllNodes(): Promise<void> {
  const waits = [...running].map((p) => new Promise<void>((r) => {
    p.once('exit', () => r());
    p.kill('SIGKILL');
  }));
  await Promise.all(waits);
}

export function tempDir(prefix = 'trib-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program with `input` on its stdin, bounded in time; never left running. */
export function runProcess(command: string, args: string[], options: { input?: string; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv; label?: string } = {}): Promise<CliRun> {
  const { input = '', timeoutMs = 20_000, cwd, env = process.env, label = `${command} ${args.join(' ')}` } = options;
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${label} did not finish within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A program that exits without reading its input must not fail the run with EPIPE.
    proc.stdin.on('error', () => {});
    proc.stdin.end(input);
  });
}

/** Runs the built CLI with `args` (and stdin), bounded in time; never left running. */
export function runCli(args: string[], input = '', timeoutMs = 20_000, env?: NodeJS.ProcessEnv): Promise<CliRun> {
  return runProcess(process.execPath, [CLI, ...args], { input, timeoutMs, env, label: `tributary ${args.join(' ')}` });
}

/** Runs the built CLI and expects success; its trimmed stdout. */
export async function cliOk(args: string[], input = ''): Promise<string> {
  const r = await runCli(args, input);
  if (r.code !== 0) throw new Error(`tributary ${args.join(' ')} exited with ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * The README's offline fleet set-up in folder `at`: a fleet key, identities for a node, an
 * admin and a device, and their credentials (the device may use `sensors.*`). Files are
 * `fleet.key`, `<who>.key`, `<who>.cred`; returns the fleet public key and the identities.
 */
export async function setUpFleet(at: (name: string) => string): Promise<{ fleetKey: string; identities: Record<'node' | 'admin' | 'device', string> }> {
  const fleetKey = await cliOk(['fleet', 'init', '--out', at('fleet.key')]);
  const identities = { node: '', admin: '', device: '' };
  for (const who of ['node', 'admin', 'device'] as const) identities[who] = await cliOk(['keys', 'generate', '--out', at(`${who}.key`)]);
  const issue = (who: keyof typeof identities, role: string, extra: string[] = []) =>
    cliOk(['credentials', 'issue', '--fleet', at('fleet.key'), '--subject', identities[who], '--role', role, '--expires', '1d', '--out', at(`${who}.cred`), ...extra]);
  await issue('node', 'node');
  await issue('admin', 'admin');
  await issue('device', 'device', ['--produce', 'sensors.*', '--consume', 'sensors.*']);
  return { fleetKey, identities };
}

/**
 * One node process for every test of a file (started before the first, removed after the
 * last) and the CLI pointed at it; `track` a CLI process a test spawns itself, and it is
 * SIGKILLed after that test if still running.
 */
export function nodeForFile(prefix: string): {
  readonly node: NodeProcess;
  /** A folder of this file's, removed after its last test. */
  folder: string;
  cli(args: string[], input?: string): Promise<CliRun>;
  ok(args: string[], input?: string): Promise<string>;
  track(child: ChildProcess): ChildProcess;
} {
  const dir = tempDir(prefix);
  let node: NodeProcess | undefined;
  const spawned = new Set<ChildProcess>();
  beforeAll(async () => {
    node = await startNodeProcess({ dataDir: join(dir.path, 'data') });
  });
  afterEach(() => {
    for (const child of spawned) child.kill('SIGKILL');
    spawned.clear();
  });
  afterAll(async () => {
    await stopAllNodes();
    dir.remove();
  });
  const started = (): NodeProcess => {
    if (node === undefined) throw new Error('the node starts before the first test');
    return node;
  };
  const cli = (args: string[], input = '') => runCli([...args, '--broker', started().url], input, 60_000);
  return {
    get node() {
      return started();
    },
    folder: dir.path,
    cli,
    async ok(args: string[], input = '') {
      const r = await cli(args, input);
      expect(r.code, `tributary ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    },
    track(child: ChildProcess) {
      spawned.add(child);
      child.once('exit', () => spawned.delete(child));
      return child;
    },
  };
}

/** One JSON line of a node's log (pino): its level, message and fields. */
export interface LogLine {
  level: number;
  msg: string;
  topic?: string;
  partition?: number;
  [field: string]: unknown;
}

/** The node's JSON log lines (stderr; the start line on stdout is not JSON). */
export function logLines(node: NodeProcess): LogLine[] {
  return node
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}
