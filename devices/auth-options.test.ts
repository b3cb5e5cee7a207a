// Identity, credential and pins from files, hex and the environment: what resolves to what,
// which source wins, and the one line each kind of mistake gives. Then connect() itself,
// with the environment stubbed, against the fake node.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { issueCredential } from '../protocol/credential.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { noisePublicKeyFromIdentity } from '../protocol/secure-channel.js';
import { AUTH_ENV, resolveAuthOptions } from './auth-options.js';
import { connect, type Connection } from './connection.js';
import { writeIdentityFile, writePrivateFile } from './identity.js';
import { FakeNode } from './testing/fake-node.js';

const dir = mkdtempSync(join(tmpdir(), 'trib-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fleet = generateIdentity();
const device = generateIdentity();
const credential = issueCredential(fleet, { subject: device.publicKey, role: 'device', produce: ['*'], consume: [], expiresAt: Date.now() + 86_400_000 });
const identityPath = join(dir, 'device.key');
const credentialPath = join(dir, 'device.cred');
writeIdentityFile(identityPath, device);
writePrivateFile(credentialPath, credential, false);
const nodeKeyHex = generateIdentity().publicKey.toString('hex');
const fleetKeyHex = fleet.publicKey.toString('hex');
const missing = join(dir, 'missing');

function hex(bytes: Uint8Array | null | undefined): string | undefined {
  return bytes ? Buffer.from(bytes).toString('hex') : undefined;
}

function thrownBy(f: () => unknown): TributaryError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(TributaryError);
    return err as TributaryError;
  }
  throw new Error('did not throw');
}

describe('resolveAuthOptions', () => {
  it('reads the identity and credential files and parses the pins', () => {
    const r = resolveAuthOptions({ identityFile: identityPath, credentialFile: credentialPath, nodePublicKey: nodeKeyHex, fleetPublicKey: fleetKeyHex.toUpperCase() }, {});
    expect(hex(r.identity?.publicKey)).toBe(hex(device.publicKey));
    expect(hex(r.identity?.secretKey)).toBe(hex(device.secretKey));
    expect(hex(r.credential)).toBe(hex(credential));
    expect(hex(r.nodePublicKey)).toBe(nodeKeyHex);
    expect(hex(r.fleetPublicKey)).toBe(fleetKeyHex);
  });

  it('falls back to the environment for each setting not given', () => {
    const env = { TRIBUTARY_IDENTITY: identityPath, TRIBUTARY_CREDENTIAL: credentialPath, TRIBUTARY_NODE_KEY: nodeKeyHex, TRIBUTARY_FLEET_KEY: fleetKeyHex };
    const r = resolveAuthOptions({}, env);
    expect(hex(r.identity?.publicKey)).toBe(hex(device.publicKey));
    expect(hex(r.credential)).toBe(hex(credential));
    expect(hex(r.nodePublicKey)).toBe(nodeKeyHex);
    expect(hex(r.fleetPublicKey)).toBe(fleetKeyHex);
  });

  it('resolves nothing when nothing is given: an anonymous client that accepts any node', () => {
    expect(resolveAuthOptions({}, {})).toEqual({});
    // An empty variable is unset, as a shell's `VAR= cmd` means.
    expect(resolveAuthOptions({}, { TRIBUTARY_IDENTITY: '', TRIBUTARY_NODE_KEY: '' })).toEqual({});
  });

  it('an option given in either form wins over its variable, which is then not even read', () => {
    const broken = { TRIBUTARY_IDENTITY: join(dir, 'missing.key'), TRIBUTARY_CREDENTIAL: join(dir, 'missing.cred'), TRIBUTARY_NODE_KEY: 'nope', TRIBUTARY_FLEET_KEY: 'nope' };
    const fromFiles = resolveAuthOptions({ identityFile: identityPath, credentialFile: credentialPath, nodePublicKey: nodeKeyHex, fleetPublicKey: fleetKeyHex }, broken);
    expect(hex(fromFiles.identity?.publicKey)).toBe(hex(device.publicKey));
    expect(hex(fromFiles.nodePublicKey)).toBe(nodeKeyHex);
    const other = generateIdentity();
    const fromValues = resolveAuthOptions({ identity: other, credential: Buffer.from('x'), nodePublicKey: other.publicKey, fleetPublicKey: other.publicKey }, broken);
    expect(fromValues.identity).toBe(other);
    expect(hex(fromValues.credential)).toBe('78');
    expect(fromValues.nodePublicKey).toBe(other.publicKey);
  });

  it('each setting falls back on its own', () => {
    const r = resolveAuthOptions({ nodePublicKey: nodeKeyHex }, { TRIBUTARY_FLEET_KEY: fleetKeyHex, TRIBUTARY_NODE_KEY: 'ignored' });
    expect(hex(r.nodePublicKey)).toBe(nodeKeyHex);
    expect(hex(r.fleetPublicKey)).toBe(fleetKeyHex);
  });

  const readable = join(dir, 'readable.key');
  writeIdentityFile(readable, generateIdentity());
  chmodSync(readable, 0o644);
  const notJson = join(dir, 'not-json.key');
  writePrivateFile(notJson, 'hello', false);
  const empty = join(dir, 'empty.cred');
  writeFileSync(empty, '');
  const huge = join(dir, 'huge.cred');
  writeFileSync(huge, Buffer.alloc(5000));
  const garbage = join(dir, 'garbage.cred');
  writeFileSync(garbage, 'not a credential');

  it.each<[string, Parameters<typeof resolveAuthOptions>[0], Record<string, string>, string]>([
    ['a missing identity file', { identityFile: missing }, {}, `identityFile: cannot read ${missing}: ENOENT`],
    ['a missing identity file from the environment', {}, { TRIBUTARY_IDENTITY: missing }, `TRIBUTARY_IDENTITY: cannot read ${missing}: ENOENT`],
    ['an identity file others can read', { identityFile: readable }, {}, `identityFile: ${readable} is readable by others (mode 644); run: chmod 600 ${readable}`],
    ['an identity file that is not one', {}, { TRIBUTARY_IDENTITY: notJson }, `TRIBUTARY_IDENTITY: ${notJson}: not a Tributary identity file (not JSON)`],
    ['an empty path', { identityFile: '' }, {}, 'identityFile must not be empty'],
    ['a missing credential file', { credentialFile: missing }, {}, `credentialFile: cannot read ${missing}: ENOENT`],
    ['an empty credential file', {}, { TRIBUTARY_CREDENTIAL: empty }, `TRIBUTARY_CREDENTIAL: ${empty} is 0 bytes; a credential is 1 to 4096`],
    ['a credential file too large to be one', { credentialFile: huge }, {}, `credentialFile: ${huge} is 5000 bytes; a credential is 1 to 4096`],
    ['a credential file that is not one', { credentialFile: garbage }, {}, `credentialFile: ${garbage} is not a Tributary credential`],
    ['a credential path that is a folder', { credentialFile: dir }, {}, `credentialFile: ${dir} is not a file`],
    ['short hex for the node key', { nodePublicKey: 'abc' }, {}, 'nodePublicKey must be 64 hex characters'],
    ['bad hex in TRIBUTARY_NODE_KEY', {}, { TRIBUTARY_NODE_KEY: 'zz'.repeat(32) }, 'TRIBUTARY_NODE_KEY must be 64 hex characters'],
    ['a fleet key that is no curve point', { fleetPublicKey: '00'.repeat(32) }, {}, 'fleetPublicKey is not an Ed25519 public key'],
    ['bad hex in TRIBUTARY_FLEET_KEY', {}, { TRIBUTARY_FLEET_KEY: 'x' }, 'TRIBUTARY_FLEET_KEY must be 64 hex characters'],
    ['both an identity and an identity file', { identity: device, identityFile: identityPath }, {}, 'give identity or identityFile, not both'],
    ['both a credential and a credential file', { credential, credentialFile: credentialPath }, {}, 'give credential or credentialFile, not both'],
  ])('refuses %s with one INVALID_CONFIG line', (_what, options, env, message) => {
    const err = thrownBy(() => resolveAuthOptions(options, env));
    expect(err.code).toBe(Errors.INVALID_CONFIG.code);
    expect(err.message).toBe(`INVALID_CONFIG: ${message}`);
  });

  it('says the flag the user typed when given the command line names', () => {
    const names = { identityFile: '--identity', credentialFile: '--credential', nodePublicKey: '--node-key', fleetPublicKey: '--fleet-key' };
    expect(thrownBy(() => resolveAuthOptions({ identityFile: missing }, {}, names)).detail).toBe(`--identity: cannot read ${missing}: ENOENT`);
    expect(thrownBy(() => resolveAuthOptions({ nodePublicKey: 'abc' }, {}, names)).detail).toBe('--node-key must be 64 hex characters');
    expect(thrownBy(() => resolveAuthOptions({}, { TRIBUTARY_NODE_KEY: 'abc' }, names)).detail).toBe('TRIBUTARY_NODE_KEY must be 64 hex characters');
  });

  it('names the four variables', () => {
    expect(Object.values(AUTH_ENV).sort()).toEqual(['TRIBUTARY_CREDENTIAL', 'TRIBUTARY_FLEET_KEY', 'TRIBUTARY_IDENTITY', 'TRIBUTARY_NODE_KEY']);
  });
});

describe('connect() with files, hex and the environment', () => {
  const connections: Connection[] = [];
  afterEach(async () => {
    vi.unstubAllEnvs();
    await Promise.all(connections.splice(0).map((c) => c.close()));
  });

  function clearAuthEnv(): void {
    for (const name of Object.values(AUTH_ENV)) vi.stubEnv(name, '');
  }

  it('takes identity, credential and node pin from the environment', async () => {
    const node = new FakeNode();
    clearAuthEnv();
    vi.stubEnv('TRIBUTARY_IDENTITY', identityPath);
    vi.stubEnv('TRIBUTARY_CREDENTIAL', credentialPath);
    vi.stubEnv('TRIBUTARY_NODE_KEY', node.identity.publicKey.toString('hex'));
    const conn = await connect('mem://fake', { transportFactory: node.transportFactory });
    connections.push(conn);
    expect(hex(node.connections[0].remotePayload)).toBe(hex(credential));
    expect(hex(node.connections[0].remoteStaticKey)).toBe(hex(noisePublicKeyFromIdentity(device.publicKey)));
  });

  it('a pin in the environment refuses another node; a pin given as an option overrides it', async () => {
    const node = new FakeNode();
    clearAuthEnv();
    vi.stubEnv('TRIBUTARY_NODE_KEY', nodeKeyHex);
    const err = (await connect('mem://fake', { transportFactory: node.transportFactory, connectTimeoutMs: 60_000 }).catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.UNAUTHORIZED.code);
    expect(node.connections).toHaveLength(1);
    const conn = await connect('mem://fake', { transportFactory: node.transportFactory, nodePublicKey: node.identity.publicKey.toString('hex') });
    connections.push(conn);
    await expect(conn.client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
  });

  it('fails before connecting when a file named in the environment is unreadable', async () => {
    const node = new FakeNode();
    clearAuthEnv();
    vi.stubEnv('TRIBUTARY_IDENTITY', missing);
    await expect(connect('mem://fake', { transportFactory: node.transportFactory })).rejects.toThrow(`INVALID_CONFIG: TRIBUTARY_IDENTITY: cannot read ${missing}: ENOENT`);
    expect(node.connections).toHaveLength(0);
  });

  it('with no auth settings anywhere, connects anonymously', async () => {
    const node = new FakeNode();
    clearAuthEnv();
    connections.push(await connect('mem://fake', { transportFactory: node.transportFactory }));
    expect(node.connections[0].remotePayload).toEqual(Buffer.alloc(0));
  });
});
