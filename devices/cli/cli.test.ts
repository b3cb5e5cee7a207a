// The `tributary` client commands as a user runs them: the built entry point spawned as a
// process, against a real node started in-process on an ephemeral port. Every spawned
// process is waited for, and killed by its pid if it outlives its deadline.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../../node/broker.js';
import { silentLogger } from '../../node/logger.js';
import { issueCredential, verifyCredential, type Role } from '../../protocol/credential.js';
import { generateIdentity, type IdentityKeyPair } from '../../protocol/key-file.js';
import { REVOCATIONS_TOPIC } from '../../protocol/revocation.js';
import { writeIdentityFile, writePrivateFile } from '../identity.js';
import { connect, type Connection } from '../index.js';
import { CLI_ENTRY, ensureBuiltCli } from '../testing/built-cli.js';

const entry = CLI_ENTRY;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const running = new Set<ChildProcess>();

/** The auth variables of whoever runs the tests must not change what these runs do. */
const AUTH_ENV_CLEARED = { TRIBUTARY_IDENTITY: '', TRIBUTARY_CREDENTIAL: '', TRIBUTARY_NODE_KEY: '', TRIBUTARY_FLEET_KEY: '' };

function cli(args: string[], options: { input?: string | Buffer; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [entry, ...args], {
      env: { ...process.env, ...AUTH_ENV_CLEARED, TRIBUTARY_BROKER: broker.url, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolveRun({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(options.input ?? '');
  });
}

let dataDir: string;
let broker: Broker;
let conn: Connection;

beforeAll(async () => {
  ensureBuiltCli();
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-cli-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger });
  conn = await connect(broker.url);
}, 300_000);

afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});

afterAll(async () => {
  await conn?.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('tributary client commands', () => {
  it('runs the example flow: create, produce with a key separator, consume with keys', async () => {
    const created = await cli(['topics', 'create', 'sensors', '--partitions', '3']);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toBe('created topic sensors with 3 partitions\n');

    const produced = await cli(['produce', 'sensors', '--key-separator', ':'], { input: 'dev-1:21.5\ndev-2:19.0\n' });
    expect(produced).toMatchObject({ code: 0, stderr: 'produced 2 records\n' });

    const consumed = await cli(['consume', 'sensors', '--from-beginning', '--max-messages', '2', '--print-key']);
    expect(consumed.code).toBe(0);
    // Different keys may sit on different partitions, whose relative order is not defined.
    expect(consumed.stdout.split('\n').filter(Boolean).sort()).toEqual(['dev-1\t21.5', 'dev-2\t19.0']);
  });

  it('lists, describes and deletes topics', async () => {
    await cli(['topics', 'create', 'described', '--partitions', '2', '--config', 'retention.ms=3600000']);
    await cli(['produce', 'described', '--partition', '1'], { input: 'a\nb\nc\n' });
    const list = await cli(['topics', 'list']);
    expect(list.stdout.split('\n')).toContain('described');
    const d = await cli(['topics', 'describe', 'described']);
    expect(d.code).toBe(0);
    const lines = d.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Topic: described\tPartitions: 2\tConfig: .*retention\.ms=3600000/);
    expect(lines[1].split(/\s+/)).toEqual(['PARTITION', 'LEADER', 'EPOCH', 'LOG-START', 'LOG-END', 'RECORDS']);
    expect(lines[2].split(/\s+/)).toEqual(['0', broker.nodeId, '0', '0', '0', '0']);
    expect(lines[3].split(/\s+/)).toEqual(['1', broker.nodeId, '0', '0', '3', '3']);
    expect(await cli(['topics', 'delete', 'described'])).toMatchObject({ code: 0, stdout: 'deleted topic described\n' });
    expect((await cli(['topics', 'list'])).stdout.split('\n')).not.toContain('described');
  });

  it('a line without the key separator is an error naming the line; the lines before it are produced', async () => {
    await cli(['topics', 'create', 'nosep', '--partitions', '1']);
    const r = await cli(['produce', 'nosep', '--key-separator', ':'], { input: 'a:1\nb:2\njust-a-value\nc:3\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("tributary: line 3 refused: no key separator ':' (2 records before it produced, none after it)\n");
    const d = await conn.admin().describeTopic('nosep');
    expect(d.partitions[0].logEndOffset).toBe(2);
  });

  it('fails with one clear line when no node runs', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((r) => server.close(() => r()));
    const url = `ws://127.0.0.1:${port}/v1`;
    const r = await cli(['topics', 'list', '--broker', url]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(`tributary: cannot reach node at ${url}: ECONNREFUSED\n`);
    expect(r.stdout).toBe('');
  });

  it('reports server errors as one line: unknown topic, existing topic, bad option values', async () => {
    const unknown = await cli(['consume', 'ghost', '--max-messages', '1']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^tributary: UNKNOWN_TOPIC: .*ghost.*\n$/);
    const produceUnknown = await cli(['produce', 'ghost'], { input: 'x\n' });
    expect(produceUnknown.code).toBe(1);
    expect(produceUnknown.stderr).toMatch(/^tributary: UNKNOWN_TOPIC: .*ghost.*\n$/);
    await cli(['topics', 'create', 'twice', '--partitions', '1']);
    const again = await cli(['topics', 'create', 'twice', '--partitions', '1']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^tributary: TOPIC_ALREADY_EXISTS: .*\n$/);
    const bad = await cli(['topics', 'create', 'x', '--partitions', 'many']);
    expect(bad).toMatchObject({ code: 1, stderr: "tributary: --partitions must be a decimal integer of at least 1, got 'many'\n" });
    const badAcks = await cli(['produce', 'twice', '--acks', '2']);
    expect(badAcks).toMatchObject({ code: 1, stderr: "tributary: --acks must be 0, 1 or all, got '2'\n" });
  });

  it('consumes from the end by default, from an offset of one partition, and stops after --timeout-ms of silence', async () => {
    await cli(['topics', 'create', 'positions', '--partitions', '2']);
    await cli(['produce', 'positions', '--partition', '0'], { input: 'p0-0\np0-1\np0-2\np0-3\n' });
    const latest = await cli(['consume', 'positions', '--timeout-ms', '300']);
    expect(latest).toMatchObject({ code: 0, stdout: '' });
    const fromOffset = await cli(['consume', 'positions', '--partition', '0', '--offset', '2', '--timeout-ms', '300', '--print-offset', '--print-key']);
    expect(fromOffset.code).toBe(0);
    expect(fromOffset.stdout).toBe('0:2\tnull\tp0-2\n0:3\tnull\tp0-3\n');
    const wrongPartition = await cli(['consume', 'positions', '--partition', '5', '--from-beginning']);
    expect(wrongPartition.code).toBe(1);
    expect(wrongPartition.stderr).toBe('tributary: topic positions has no partition 5 (it has 2)\n');
  });

  it('streams a large stdin with gzip and acks=all, and consumes it all back in order per partition', async () => {
    await cli(['topics', 'create', 'bulk', '--partitions', '1']);
    const total = 50_000;
    const input = Array.from({ length: total }, (_, i) => `line-${i}`).join('\n') + '\n';
    const produced = await cli(['produce', 'bulk', '--compression', 'gzip', '--acks', 'all', '--linger-ms', '1', '--batch-bytes', '32768'], { input });
    expect(produced).toMatchObject({ code: 0, stderr: `produced ${total} records\n` });
    const consumed = await cli(['consume', 'bulk', '--from-beginning', '--max-messages', String(total)]);
    expect(consumed.code).toBe(0);
    const lines = consumed.stdout.split('\n');
    expect(lines).toHaveLength(total + 1);
    expect(lines[0]).toBe('line-0');
    expect(lines[total - 1]).toBe(`line-${total - 1}`);
    expect(lines.slice(0, total).every((l, i) => l === `line-${i}`)).toBe(true);
  }, 60_000);

  it('ends quietly when the reader of its output goes away (| head)', async () => {
    await cli(['topics', 'create', 'piped', '--partitions', '1']);
    // More output than a pipe holds, so writes are still going on when the reader leaves.
    await cli(['produce', 'piped'], { input: Array.from({ length: 200_000 }, (_, i) => `value-${i}`).join('\n') });
    const child = spawn(process.execPath, [entry, 'consume', 'piped', '--from-beginning', '--timeout-ms', '5000'], {
      env: { ...process.env, TRIBUTARY_BROKER: broker.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(child);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // Read the first chunk, then close our end of the pipe, as `head` does.
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    child.stdout!.destroy();
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    running.delete(child);
    expect(code).toBe(0);
    expect(stderr).toMatch(/^consumed \d+ records \(written to stdout before its reader went away, which may not have read them all\)\n$/);
  });

  it('says in --help that it starts at the end, and what --group does', async () => {
    const help = await cli(['consume', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/latest/);
    expect(help.stdout).toMatch(/--group <id>/);
    expect(help.stdout).toMatch(/where the group\s+last committed/);
  });
});

// With the node of issue 3: a secure channel on every connection, credentials checked at
// Hello, revocations taken from __revocations.
describe('tributary against a node that checks credentials', () => {
  const DAY_MS = 86_400_000;
  const fleet = generateIdentity();
  const nodeIdentity = generateIdentity();
  let fleetDir: string;
  let fleetBroker: Broker;

  function keyFile(name: string, identity: IdentityKeyPair): string {
    const path = join(fleetDir, name);
    writeIdentityFile(path, identity);
    return path;
  }

  function credential(subject: IdentityKeyPair, role: Role, topics: string[] = ['*']): Buffer {
    return issueCredential(fleet, { subject: subject.publicKey, role, produce: topics, consume: topics, expiresAt: Date.now() + DAY_MS });
  }

  function credentialFile(name: string, bytes: Buffer): string {
    const path = join(fleetDir, name);
    writePrivateFile(path, bytes, false);
    return path;
  }

  let admin: string[];
  let device: string[];
  let deviceCredentialPath: string;
  const fleetKeyHex = fleet.publicKey.toString('hex');

  beforeAll(async () => {
    fleetDir = mkdtempSync(join(tmpdir(), 'tributary-cli-fleet-'));
    fleetBroker = await startBroker({
      dataDir: join(fleetDir, 'data'),
      port: 0,
      logger: silentLogger,
      auth: { fleetPublicKey: fleet.publicKey, identity: nodeIdentity, credential: credential(nodeIdentity, 'node'), anonymous: 'none' },
    });
    const adminIdentity = generateIdentity();
    // A credential is shown only to a pinned node: here, any node of the fleet.
    admin = ['--identity', keyFile('admin.key', adminIdentity), '--credential', credentialFile('admin.cred', credential(adminIdentity, 'admin')), '--fleet-key', fleetKeyHex];
    const deviceIdentity = generateIdentity();
    deviceCredentialPath = credentialFile('device.cred', credential(deviceIdentity, 'device', ['sensors']));
    device = ['--identity', keyFile('device.key', deviceIdentity), '--credential', deviceCredentialPath, '--fleet-key', fleetKeyHex];
  });

  afterAll(async () => {
    await fleetBroker?.close();
    if (fleetDir) rmSync(fleetDir, { recursive: true, force: true });
  });

  const on = (args: string[], options: Parameters<typeof cli>[1] = {}) => cli([...args, '--broker', fleetBroker.url], options);

  it('pins the node by its key or by the fleet, and refuses an impostor pin at once', async () => {
    expect(await on(['topics', 'create', 'sensors', '--partitions', '1', ...admin, '--node-key', fleetBroker.publicKey.toString('hex')])).toMatchObject({ code: 0 });
    expect(await on(['topics', 'list', ...admin, '--fleet-key', fleetKeyHex])).toMatchObject({ code: 0 });
    const impostor = await on(['topics', 'list', ...admin, '--node-key', generateIdentity().publicKey.toString('hex')]);
    expect(impostor.code).toBe(1);
    expect(impostor.stderr).toBe(`tributary: UNAUTHORIZED: refusing node at ${fleetBroker.url}: the peer does not hold the pinned key, or refused us: it closed on IK message 1 (handshake message 1 failed authentication)\n`);
    const otherFleet = await on(['topics', 'list', ...admin, '--fleet-key', generateIdentity().publicKey.toString('hex')]);
    expect(otherFleet.code).toBe(1);
    expect(otherFleet.stderr).toMatch(/^tributary: UNAUTHORIZED: refusing node at .*: the node has no valid credential of the pinned fleet: credential refused: issued by another fleet\n$/);
  });

  it('takes the identity and credential from the environment', async () => {
    const env = { TRIBUTARY_IDENTITY: device[1], TRIBUTARY_CREDENTIAL: device[3], TRIBUTARY_FLEET_KEY: fleetKeyHex };
    expect(await on(['produce', 'sensors'], { input: 'from-env\n', env })).toMatchObject({ code: 0, stderr: 'produced 1 record\n' });
  });

  it('refuses an anonymous client in one line', async () => {
    const r = await on(['topics', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tributary: UNAUTHORIZED: node at .* refused this client: .*\n$/);
  });

  it('a device may not revoke; an admin revokes the device, which is then refused', async () => {
    const id = verifyCredential(readFileSync(deviceCredentialPath), fleet.publicKey).id;
    expect(await on(['produce', 'sensors', ...device], { input: 'before\n' })).toMatchObject({ code: 0 });
    const byDevice = await on(['credentials', 'revoke', '--fleet', keyFile('fleet.key', fleet), '--credential-file', deviceCredentialPath, ...device]);
    expect(byDevice.code).toBe(1);
    expect(byDevice.stderr).toMatch(/^tributary: UNAUTHORIZED: /);
    const revoked = await on(['credentials', 'revoke', '--fleet', join(fleetDir, 'fleet.key'), '--credential-file', deviceCredentialPath, '--reason', 'lost', ...admin]);
    expect(revoked).toMatchObject({ code: 0, stderr: '' });
    expect(revoked.stdout).toMatch(new RegExp(`^revoked credential ${id} \\(role device, subject [0-9a-f]{64}\\) \\(${REVOCATIONS_TOPIC}/0 at offset \\d+\\)\n$`));
    const after = await on(['produce', 'sensors', ...device], { input: 'after\n' });
    expect(after.code).toBe(1);
    expect(after.stderr).toBe(`tributary: UNAUTHORIZED: node at ${fleetBroker.url} refused this client: credential revoked: lost\n`);
  });
});
