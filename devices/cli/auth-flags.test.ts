// The auth flags and `credentials revoke` as a user runs them, with no real node: the built
// CLI is spawned against the fake node (which runs the real handshake responder) listening
// in this process, so these need the build (made here when stale) but no running node. What the fake node
// records shows what the CLI sent; what the CLI prints shows what it decided.

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { issueCredential, verifyCredential, type Role } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { generateIdentity, type IdentityKeyPair } from '../../protocol/key-file.js';
import { REVOCATIONS_TOPIC, verifyRevocation } from '../../protocol/revocation.js';
import { noisePublicKeyFromIdentity } from '../../protocol/secure-channel.js';
import { writeIdentityFile, writePrivateFile } from '../identity.js';
import { CLI_ENTRY, ensureBuiltCli } from '../testing/built-cli.js';
import { FakeNode } from '../testing/fake-node.js';

const entry = CLI_ENTRY;
const dir = mkdtempSync(join(tmpdir(), 'trib-cli-auth-'));

const AUTH_ENV_CLEARED = { TRIBUTARY_IDENTITY: '', TRIBUTARY_CREDENTIAL: '', TRIBUTARY_NODE_KEY: '', TRIBUTARY_FLEET_KEY: '' };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const running = new Set<ChildProcess>();

/** Spawns the CLI without blocking: the fake node it talks to runs on this event loop. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [entry, ...args], { env: { ...process.env, ...AUTH_ENV_CLEARED, TRIBUTARY_BROKER: server.url, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolveRun({ code, stdout, stderr });
    });
  });
}

function keyFile(name: string, identity: IdentityKeyPair = generateIdentity()): string {
  const path = join(dir, name);
  writeIdentityFile(path, identity);
  return path;
}

const DAY_MS = 86_400_000;
const fleet = generateIdentity();
const device = generateIdentity();

function credentialFile(name: string, subject: IdentityKeyPair, role: Role, options: { issuer?: IdentityKeyPair; now?: number } = {}): { path: string; bytes: Buffer } {
  const now = options.now ?? Date.now();
  const bytes = issueCredential(options.issuer ?? fleet, { subject: subject.publicKey, role, produce: ['*'], consume: ['*'], expiresAt: now + DAY_MS }, now);
  const path = join(dir, name);
  writePrivateFile(path, bytes, false);
  return { path, bytes };
}

const fleetPath = keyFile('fleet.key', fleet);
const devicePath = keyFile('device.key', device);
const deviceCredential = credentialFile('device.cred', device, 'device');
const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));

let node: FakeNode;
let server: { url: string; close(): Promise<void> };

beforeAll(async () => {
  ensureBuiltCli();
  node = new FakeNode();
  node.createTopic(REVOCATIONS_TOPIC, 1);
  server = await node.listen();
}, 300_000);

afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
  node.refuseHello = null;
  node.connections.length = 0;
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('auth flags', () => {
  it.each([['topics', 'list'], ['topics', 'create'], ['topics', 'describe'], ['topics', 'delete'], ['produce'], ['consume'], ['credentials', 'revoke']])(
    '%s %s --help lists the auth flags with their variables',
    async (...command) => {
      const help = await cli([...command.filter(Boolean), '--help']);
      expect(help.code).toBe(0);
      const text = help.stdout.replace(/\s+/g, ' ');
      for (const [flag, variable] of [
        ['--identity <file>', 'TRIBUTARY_IDENTITY'],
        ['--credential <file>', 'TRIBUTARY_CREDENTIAL'],
        ['--node-key <hex>', 'TRIBUTARY_NODE_KEY'],
        ['--fleet-key <hex>', 'TRIBUTARY_FLEET_KEY'],
      ]) {
        expect(text).toContain(flag);
        expect(text).toContain(`(env ${variable})`);
      }
    },
  );

  it('sends the credential byte-exact under the identity, and checks the pinned node', async () => {
    const r = await cli(['topics', 'list', '--identity', devicePath, '--credential', deviceCredential.path, '--node-key', node.identity.publicKey.toString('hex')]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toContain(REVOCATIONS_TOPIC);
    expect(node.connections).toHaveLength(1);
    expect(hex(node.connections[0].remotePayload)).toBe(hex(deviceCredential.bytes));
    expect(hex(node.connections[0].remoteStaticKey)).toBe(hex(noisePublicKeyFromIdentity(device.publicKey)));
  });

  it('takes the same from the environment', async () => {
    const r = await cli(['topics', 'list'], {
      TRIBUTARY_IDENTITY: devicePath,
      TRIBUTARY_CREDENTIAL: deviceCredential.path,
      TRIBUTARY_NODE_KEY: node.identity.publicKey.toString('hex'),
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(hex(node.connections[0].remotePayload)).toBe(hex(deviceCredential.bytes));
  });

  it('a flag wins over its variable', async () => {
    const r = await cli(['topics', 'list', '--node-key', node.identity.publicKey.toString('hex'), '--identity', devicePath], {
      TRIBUTARY_NODE_KEY: 'not hex',
      TRIBUTARY_IDENTITY: join(dir, 'missing.key'),
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
  });

  it('without any, connects anonymously', async () => {
    expect(await cli(['topics', 'list'])).toMatchObject({ code: 0, stderr: '' });
    expect(node.connections[0].remotePayload).toEqual(Buffer.alloc(0));
  });

  it('refuses a node that is not the pinned one at once, in one line', async () => {
    const r = await cli(['topics', 'list', '--node-key', generateIdentity().publicKey.toString('hex'), '--identity', devicePath, '--credential', deviceCredential.path]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`tributary: UNAUTHORIZED: refusing node at ${server.url}: the peer does not hold the pinned key, or refused us: it closed on IK message 1 (handshake message 1 failed authentication)\n`);
    // Not retried, and the credential never left the client.
    expect(node.connections).toHaveLength(1);
    expect(node.connections[0].remotePayload).toBeNull();
  });

  it('refuses a node without a node credential of the pinned fleet', async () => {
    const r = await cli(['topics', 'list', '--fleet-key', fleet.publicKey.toString('hex')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tributary: UNAUTHORIZED: refusing node at ${server.url}: the node has no valid credential of the pinned fleet: no credential was presented\n`);
  });

  it('reports a Hello answered UNAUTHORIZED in one line, without retrying', async () => {
    node.refuseHello = () => new TributaryError(Errors.UNAUTHORIZED, 'credential refused: revoked');
    const r = await cli(['topics', 'list', '--identity', devicePath, '--credential', deviceCredential.path, '--node-key', node.identity.publicKey.toString('hex')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tributary: UNAUTHORIZED: node at ${server.url} refused this client: credential refused: revoked\n`);
    expect(node.connections).toHaveLength(1);
  });

  const readable = keyFile('readable.key');
  chmodSync(readable, 0o644);
  const missing = join(dir, 'missing');
  it.each<[string, string[], Record<string, string>, string]>([
    ['bad hex in --node-key', ['--node-key', 'abc'], {}, '--node-key must be 64 hex characters'],
    ['bad hex in TRIBUTARY_FLEET_KEY', [], { TRIBUTARY_FLEET_KEY: 'abc' }, 'TRIBUTARY_FLEET_KEY must be 64 hex characters'],
    ['a missing --identity file', ['--identity', missing], {}, `INVALID_CONFIG: --identity: cannot read ${missing}: ENOENT`],
    ['a missing TRIBUTARY_CREDENTIAL file', ['--identity', devicePath], { TRIBUTARY_CREDENTIAL: missing }, `INVALID_CONFIG: TRIBUTARY_CREDENTIAL: cannot read ${missing}: ENOENT`],
    ['an identity file others can read', ['--identity', readable], {}, `INVALID_CONFIG: --identity: ${readable} is readable by others (mode 644); run: chmod 600 ${readable}`],
    ['a credential without an identity', ['--credential', deviceCredential.path], {}, 'INVALID_CONFIG: a credential needs the identity it was issued to (option identity)'],
    ['a credential of another identity', ['--credential', deviceCredential.path, '--identity', fleetPath], {}, 'INVALID_CONFIG: credential was issued to key'],
    ['a credential without a pin', ['--credential', deviceCredential.path, '--identity', devicePath], {}, 'INVALID_CONFIG: a credential is shown only to a pinned node'],
  ])('fails before connecting on %s, in one line', async (_what, flags, env, message) => {
    const r = await cli(['topics', 'list', ...flags], env);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toHaveLength(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr.startsWith('tributary: ')).toBe(true);
    expect(node.connections).toHaveLength(0);
  });
});

describe('credentials revoke', () => {
  function lastRevocation(): { key: string; revocation: ReturnType<typeof verifyRevocation> } {
    const records = node.records(REVOCATIONS_TOPIC, 0);
    const record = records[records.length - 1];
    const key = record.key!.toString('utf8');
    return { key, revocation: verifyRevocation(record.value!, fleet.publicKey, key) };
  }

  it('revokes the credential in a file: one record, keyed by its id, signed by the fleet', async () => {
    const id = verifyCredential(deviceCredential.bytes, fleet.publicKey).id;
    const before = node.records(REVOCATIONS_TOPIC, 0).length;
    const r = await cli(['credentials', 'revoke', '--fleet', fleetPath, '--credential-file', deviceCredential.path, '--reason', 'device lost', '--identity', devicePath, '--credential', deviceCredential.path, '--node-key', node.identity.publicKey.toString('hex')]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`revoked credential ${id} (role device, subject ${device.publicKey.toString('hex')}) (${REVOCATIONS_TOPIC}/0 at offset ${before})\n`);
    expect(node.records(REVOCATIONS_TOPIC, 0)).toHaveLength(before + 1);
    const { key, revocation } = lastRevocation();
    expect(key).toBe(`credential:${id}`);
    expect(revocation.target).toEqual({ credentialId: id });
    expect(revocation.reason).toBe('device lost');
    // It went over the authenticated connection.
    expect(hex(node.connections[0].remotePayload)).toBe(hex(deviceCredential.bytes));
  });

  it('revokes an expired credential, still checking its signature', async () => {
    const expired = credentialFile('expired.cred', device, 'device', { now: Date.now() - 10 * DAY_MS });
    const id = verifyCredential(expired.bytes, fleet.publicKey, Date.now() - 10 * DAY_MS).id;
    const r = await cli(['credentials', 'revoke', '--fleet', fleetPath, '--credential-file', expired.path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^revoked credential ${id} \\(role device, subject [0-9a-f]{64}, already expired\\)`));
    expect(lastRevocation().key).toBe(`credential:${id}`);
  });

  it('revokes by id and by subject', async () => {
    const byId = await cli(['credentials', 'revoke', '--fleet', fleetPath, '--id', '00ff00ff00ff00ff00ff00ff']);
    expect(byId.code).toBe(0);
    expect(byId.stdout).toMatch(/^revoked credential 00ff00ff00ff00ff00ff00ff \(/);
    expect(lastRevocation().key).toBe('credential:00ff00ff00ff00ff00ff00ff');
    const subject = generateIdentity().publicKey.toString('hex');
    const bySubject = await cli(['credentials', 'revoke', '--fleet', fleetPath, '--subject', subject]);
    expect(bySubject.code).toBe(0);
    expect(bySubject.stdout).toMatch(new RegExp(`^revoked every credential of ${subject} \\(`));
    const { key, revocation } = lastRevocation();
    expect(key).toBe(`subject:${subject}`);
    expect(hex((revocation.target as { subject: Buffer }).subject)).toBe(subject);
  });

  const otherFleet = generateIdentity();
  const foreign = credentialFile('foreign.cred', device, 'device', { issuer: otherFleet });
  const missing = join(dir, 'missing.cred');
  it.each<[string, string[], string]>([
    ['no target', [], 'tributary: give exactly one of --credential-file, --id and --subject\n'],
    ['two targets', ['--id', 'ab', '--subject', device.publicKey.toString('hex')], 'tributary: give exactly one of --credential-file, --id and --subject\n'],
    ['a credential of another fleet', ['--credential-file', foreign.path], `tributary: INVALID_CONFIG: --credential-file ${foreign.path}: credential refused: issued by another fleet\n`],
    ['a missing credential file', ['--credential-file', missing], `tributary: INVALID_CONFIG: --credential-file: cannot read ${missing}: ENOENT\n`],
    ['an id that is not lowercase hex', ['--id', 'XYZ'], 'tributary: INVALID_CONFIG: credential id must be 1-64 lowercase hex characters, got "XYZ"\n'],
    ['a subject that is not a key', ['--subject', 'abc'], 'tributary: INVALID_CONFIG: --subject must be 64 hex characters\n'],
    ['a reason too long', ['--id', 'ab', '--reason', 'x'.repeat(300)], 'tributary: INVALID_CONFIG: reason is longer than 256 characters\n'],
  ])('refuses %s in one line, before connecting', async (_what, flags, stderr) => {
    const r = await cli(['credentials', 'revoke', '--fleet', fleetPath, ...flags]);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr });
    expect(node.connections).toHaveLength(0);
  });

  it('needs --fleet', async () => {
    const r = await cli(['credentials', 'revoke', '--id', 'ab']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^tributary: required option '--fleet <file>' not specified/);
  });
});
