// A flood of strangers against a real node, through real processes: the built node as a
// child process with a fleet key, and an attacker in another process (bench/preauth-flood)
// opening TCP connections and WebSocket upgrades as fast as it can, never handshaking.
// Twice: (a) from an address of its own, in a network namespace joined to the host by a
// veth pair, where the per-address limits refuse it; (b) from loopback, which is exempt
// from them, where only the eviction of the oldest unfinished socket protects the node.
// Once the node pushes back on the flood (it refused or evicted one of its sockets), real
// devices make single connection attempts (TCP, Noise handshake with a fleet credential,
// Hello answered OK, within a deadline) while it goes on, and at least 9 in 10 must get in.
// Needs root and `ip` (iproute2) for the namespace.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FloodReport } from '../bench/preauth-flood.js';
import { DEFAULT_LIMITS } from '../node/config.js';
import { issueCredential } from '../protocol/credential.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { ROOT, startNodeProcess, stopAllNodes, tempDir, type NodeProcess } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

const FLOOD = join(ROOT, 'dist/bench/preauth-flood.js');
/** Legitimate attempts per attack, one started every ATTEMPT_SPACING_MS, so that they span it. */
const ATTEMPTS = 10;
const ATTEMPTS_OK_MIN = 9;
const ATTEMPT_SPACING_MS = 300;
/** A real device's single try: TCP, Noise handshake, Hello answered. */
const ATTEMPT_DEADLINE_MS = 5000;
/** How long the node may take to push back on the flood at all. */
const PRESSING_WITHIN_MS = 20_000;
/** Bounds of each flood; the test stops it (SIGTERM) before either once the attempts are done. */
const FLOOD_SECONDS_MAX = 30;
const FLOOD_CONNECTIONS_MAX = 200_000;

// ---------------------------------------------------------------------------------------
// The network namespace: a veth pair on a /24 of its own, names unique to this process.

interface Netns {
  readonly name: string;
  readonly hostAddress: string;
  readonly nsAddress: string;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A 10.201.X.0/24 no interface of this host uses yet (another test run may hold one). */
function freeSubnet(): string {
  const used = ip('-4', '-o', 'addr', 'show');
  for (let tries = 0; tries < 100; tries++) {
    const x = 1 + Math.floor(Math.random() * 254);
    if (!used.includes(` 10.201.${x}.`)) return `10.201.${x}`;
  }
  throw new Error('no free 10.201.X.0/24 for the test namespace');
}

const tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
const netnsName = `trib-preauth-${tag}`;
const hostVeth = `tpa${tag}h`;
const nsVeth = `tpa${tag}n`;
let netnsMade = false;

function makeNetns(): Netns {
  const subnet = freeSubnet();
  const netns = { name: netnsName, hostAddress: `${subnet}.1`, nsAddress: `${subnet}.2` };
  ip('netns', 'add', netns.name);
  netnsMade = true;
  ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', nsVeth);
  ip('link', 'set', nsVeth, 'netns', netns.name);
  ip('addr', 'add', `${netns.hostAddress}/24`, 'dev', hostVeth);
  ip('link', 'set', hostVeth, 'up');
  ip('netns', 'exec', netns.name, 'ip', 'addr', 'add', `${netns.nsAddress}/24`, 'dev', nsVeth);
  ip('netns', 'exec', netns.name, 'ip', 'link', 'set', nsVeth, 'up');
  ip('netns', 'exec', netns.name, 'ip', 'link', 'set', 'lo', 'up');
  return netns;
}

/** Deleting the namespace takes its end of the pair, and so the host's end, with it. */
function removeNetns(): void {
  if (netnsMade) {
    try {
      ip('netns', 'del', netnsName);
    } catch {
      // Already gone.
    }
  }
  try {
    ip('link', 'del', hostVeth);
  } catch {
    // Gone with the namespace, or never made.
  }
}

// ---------------------------------------------------------------------------------------
// The attacker process.

const floods = new Set<ChildProcess>();

interface Flood {
  /** Resolves once the node refused or evicted one of the attacker's sockets. */
  readonly pressing: Promise<void>;
  /** Stops it (SIGTERM) and resolves with its report. */
  stop(): Promise<FloodReport>;
}

function startFlood(command: string[], host: string, port: number): Flood {
  const args = [...command, FLOOD, '--host', host, '--port', String(port), '--seconds', String(FLOOD_SECONDS_MAX), '--connections', String(FLOOD_CONNECTIONS_MAX)];
  const proc = spawn(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  floods.add(proc);
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => {
    floods.delete(proc);
    resolve(code);
  }));
  const lines = () => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event: string });
  const pressing = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the node neither refused nor evicted any of the attacker's sockets within ${PRESSING_WITHIN_MS} ms`)), PRESSING_WITHIN_MS);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!lines().some((l) => l.event === 'pressing')) return;
      clearTimeout(timer);
      resolve();
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the attacker exited (${code}) before the node pushed back: ${err}${out}`));
    });
  });
  pressing.catch(() => undefined);
  return {
    pressing,
    async stop() {
      proc.kill('SIGTERM');
      const code = await exited;
      const done = lines().find((l) => l.event === 'done');
      if (code !== 0 || done === undefined) throw new Error(`the attacker exited with ${code} and no report: ${err}${out}`);
      return done as FloodReport;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Legitimate devices.

const DAY = 86_400_000;
const fleet = generateIdentity();

interface Device {
  identity: IdentityKeyPair;
  credential: Buffer;
}

function device(): Device {
  const identity = generateIdentity();
  const credential = issueCredential(fleet, { subject: identity.publicKey, role: 'device', produce: ['sensors.*'], consume: [], expiresAt: Date.now() + DAY });
  return { identity, credential };
}

/** One try, no retry: connected, handshaken and Hello answered OK within the deadline, or why not. */
async function attempt(url: string, who: Device): Promise<{ ok: boolean; ms: number; detail: string }> {
  const started = performance.now();
  let timedOut = false;
  const work = RawClient.connect(url, { hello: false, identity: who.identity, credential: who.credential }).then(async (client) => {
    try {
      const answer = await client.request<{ error?: number; message?: string }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'preauth-attack-test' });
      return (answer.error ?? 0) === 0 ? 'ok' : `Hello answered ${answer.error}: ${answer.message}`;
    } finally {
      client.close();
    }
  });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<string>((resolve) => {
    timer = setTimeout(() => {
      timedOut = true;
      resolve(`no Hello answer within ${ATTEMPT_DEADLINE_MS} ms`);
    }, ATTEMPT_DEADLINE_MS);
  });
  const detail = await Promise.race([work.catch((err: unknown) => `failed: ${(err as Error)?.message ?? String(err)}`), deadline]);
  clearTimeout(timer);
  return { ok: detail === 'ok' && !timedOut, ms: Math.round(performance.now() - started), detail };
}

/** ATTEMPTS tries, one started every ATTEMPT_SPACING_MS, each from a device of its own. */
async function attempts(url: string): Promise<{ ok: boolean; ms: number; detail: string }[]> {
  const runs: Promise<{ ok: boolean; ms: number; detail: string }>[] = [];
  for (let i = 0; i < ATTEMPTS; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, ATTEMPT_SPACING_MS));
    runs.push(attempt(url, device()));
  }
  return Promise.all(runs);
}

// ---------------------------------------------------------------------------------------
// The node's own counts.

/** Every sample of the node's /metrics, by `name{labels}`. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

function delta(before: Map<string, number>, after: Map<string, number>, key: string): number {
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

/** What the node counted during the attack: refusals, closes and limits reached that moved. */
function moved(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of after.keys()) {
    if (!/^tributary_(connections_refused_total|connections_closed_total|limits_reached_total)\{/.test(key)) continue;
    const d = delta(before, after, key);
    if (d !== 0) out[key.replace(/^tributary_/, '')] = d;
  }
  return out;
}

// ---------------------------------------------------------------------------------------

describe('a flood of strangers that never handshake', () => {
  const dir = tempDir('trib-preauth-');
  let node: NodeProcess;
  let netns: Netns;

  beforeAll(async () => {
    expect(existsSync(FLOOD), `${FLOOD} is missing: npm run build`).toBe(true);
    netns = makeNetns();
    // Default limits: the point is that they hold. Listening on every interface, so that
    // the namespace reaches it through the host's end of the veth pair.
    node = await startNodeProcess({ dataDir: join(dir.path, 'data'), args: ['--host', '0.0.0.0', '--fleet-key', fleet.publicKey.toString('hex')] });
  });

  afterAll(async () => {
    for (const proc of floods) proc.kill('SIGKILL');
    await stopAllNodes();
    removeNetns();
    dir.remove();
  });

  async function underAttack(flood: Flood, url: string) {
    const before = await scrape(node.port);
    try {
      await flood.pressing;
      const tries = await attempts(url);
      const report = await flood.stop();
      const after = await scrape(node.port);
      return { tries, report, before, after };
    } finally {
      // A failed attempt must not leave the attacker running into the next test.
      await flood.stop().catch(() => undefined);
    }
  }

  it('from an address of its own: the per-address limits refuse it, and devices get in', async () => {
    const flood = startFlood(['ip', 'netns', 'exec', netns.name, process.execPath], netns.hostAddress, node.port);
    // The devices come from the host's end of the pair: an address like any other, not loopback.
    const { tries, report, before, after } = await underAttack(flood, `ws://${netns.hostAddress}:${node.port}/v1`);
    const refused =
      delta(before, after, 'tributary_connections_refused_total{reason="handshakes_per_address"}') +
      delta(before, after, 'tributary_connections_refused_total{reason="handshake_rate_per_address"}');
    console.info(`preauth attack from ${netns.nsAddress}: ${JSON.stringify({ report, node: moved(before, after), nodeRssMiB: Math.round((after.get('process_resident_memory_bytes') ?? 0) / 1048576), tries })}`);

    expect(report.stoppedBy, 'the flood ended before the devices were done').toBe('signal');
    expect(tries.filter((t) => t.ok).length, JSON.stringify(tries)).toBeGreaterThanOrEqual(ATTEMPTS_OK_MIN);
    // The attack pressed: most of its sockets were refused by the node, which counted them.
    expect(refused).toBeGreaterThanOrEqual(1000);
    const refusedSeen = Object.entries(report.outcomes).filter(([what]) => /^503 handshakesPerAddress/.test(what)).reduce((n, [, k]) => n + k, 0);
    expect(refusedSeen).toBeGreaterThanOrEqual(1000);
  });

  it('from loopback (exempt from per-address limits): the oldest are evicted, and devices get in', async () => {
    const flood = startFlood([process.execPath], '127.0.0.1', node.port);
    const { tries, report, before, after } = await underAttack(flood, node.url);
    const evicted = delta(before, after, 'tributary_connections_closed_total{reason="preauth_evicted"}');
    console.info(`preauth attack from loopback: ${JSON.stringify({ report, node: moved(before, after), nodeRssMiB: Math.round((after.get('process_resident_memory_bytes') ?? 0) / 1048576), tries })}`);

    expect(report.stoppedBy, 'the flood ended before the devices were done').toBe('signal');
    expect(tries.filter((t) => t.ok).length, JSON.stringify(tries)).toBeGreaterThanOrEqual(ATTEMPTS_OK_MIN);
    // The attack pressed: while the devices tried, it replaced the whole room at least once;
    // and nothing was refused by address.
    expect(evicted).toBeGreaterThanOrEqual(DEFAULT_LIMITS.handshakesMax);
    expect(delta(before, after, 'tributary_limits_reached_total{limit="handshakesMax"}')).toBe(evicted);
    expect(delta(before, after, 'tributary_connections_refused_total{reason="handshakes_per_address"}')).toBe(0);
  });
});
