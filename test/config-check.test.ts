// `tributary config check FILE` as an operator runs it before a first start: every mistake a
// start would refuse (settings, topic defaults, the fleet key rule, the key and credential
// files and the credential itself) at once, one line each that names its key, exit code 2;
// and `tributary start` with the same config refuses with the same lines, before it makes
// anything in its data folder.

import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { writeIdentityFile } from '../devices/identity.js';
import { issueCredential, type Role } from '../protocol/credential.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { runCli, tempDir } from './helpers/node-process.js';

const DAY_MS = 86_400_000;

/** A fleet, a node key and credentials of it, as files in `dir`. */
function fleetFiles(dir: string) {
  const fleet = generateIdentity();
  const at = (name: string) => join(dir, name);
  const key = (name: string, identity = generateIdentity()) => {
    writeIdentityFile(at(name), identity);
    return identity;
  };
  const credential = (name: string, subject: IdentityKeyPair, role: Role, issuedAt = Date.now()) => {
    writeFileSync(at(name), issueCredential(fleet, { subject: subject.publicKey, role, produce: [], consume: [], expiresAt: issuedAt + DAY_MS }, issuedAt));
  };
  return { fleetKey: fleet.publicKey.toString('hex'), at, key, credential };
}

const linesOf = (stderr: string) => stderr.trim().split('\n').map((l) => l.replace(/^tributary: /, ''));

it('names every mistake of a config at once, one line each with its key, exit code 2; start refuses it with the same lines and makes nothing', async () => {
  const dir = tempDir();
  try {
    const f = fleetFiles(dir.path);
    const node = f.key('node.key');
    chmodSync(f.at('node.key'), 0o644);
    f.credential('device.cred', generateIdentity(), 'device');
    const config = f.at('node.yaml');
    writeFileSync(
      config,
      [
        'port: "0x10"',
        'limits:',
        '  conectionsMax: 10',
        'topicDefaults:',
        '  flush: sometimes',
        'auth:',
        `  fleetPublicKey: ${f.fleetKey}`,
        `  identity: ${f.at('node.key')}`,
        `  credential: ${f.at('device.cred')}`,
        '',
      ].join('\n'),
    );
    const expected = [
      'port must be an integer from 0 to 65535 written in decimal digits, got "0x10"',
      expect.stringMatching(/^limits\.conectionsMax: unknown key \(did you mean connectionsMax\?\); valid keys under limits: frameBytesMax, inflightMax, .*, connectionsMax, .*, groupMembersMax$/),
      "topicDefaults.flush = 'sometimes': must be one of batch, interval, os",
      `auth.identity: ${f.at('node.key')} is readable by others (mode 644); run: chmod 600 ${f.at('node.key')}`,
      'auth.credential: role is device, a node needs a node credential',
    ];
    const check = await runCli(['config', 'check', config]);
    expect(check.code).toBe(2);
    expect(linesOf(check.stderr)).toEqual(expected);

    const data = f.at('data');
    const start = await runCli(['start', '--config', config, '--data', data]);
    expect(start.code).toBe(2);
    expect(linesOf(start.stderr)).toEqual(expected);
    expect(existsSync(data)).toBe(false);

    // Mended, it is ok, and the node it describes starts.
    chmodSync(f.at('node.key'), 0o600);
    f.credential('node.cred', node, 'node');
    writeFileSync(config, `port: 0\nauth:\n  fleetPublicKey: ${f.fleetKey}\n  identity: ${f.at('node.key')}\n  credential: ${f.at('node.cred')}\n`);
    const ok = await runCli(['config', 'check', config]);
    expect([ok.code, ok.stdout, ok.stderr]).toEqual([0, `config ok: ${config}\n`, '']);
  } finally {
    dir.remove();
  }
});

it('checks the node credential against the fleet key, its expiry and the key the node will use', async () => {
  const dir = tempDir();
  try {
    const f = fleetFiles(dir.path);
    const other = fleetFiles(dir.path);
    const node = f.key('node.key');
    const admin = f.key('admin.key');
    f.credential('node.cred', node, 'node');
    f.credential('expired.cred', node, 'node', Date.now() - 2 * DAY_MS);
    const config = f.at('node.yaml');
    const check = async (auth: string, data = f.at('data')) => {
      writeFileSync(config, `dataDir: ${data}\nauth:\n${auth}`);
      return runCli(['config', 'check', config]);
    };

    // Issued for the node key, shown by a node using another one.
    let r = await check(`  fleetPublicKey: ${f.fleetKey}\n  identity: ${f.at('admin.key')}\n  credential: ${f.at('node.cred')}\n`);
    expect([r.code, linesOf(r.stderr)]).toEqual([2, [`auth.credential: issued for key ${node.publicKey.toString('hex')}, not for the node's identity key ${admin.publicKey.toString('hex')}`]]);
    // Signed by another fleet.
    r = await check(`  fleetPublicKey: ${other.fleetKey}\n  identity: ${f.at('node.key')}\n  credential: ${f.at('node.cred')}\n`);
    expect([r.code, linesOf(r.stderr)]).toEqual([2, ['auth.credential: issued by another fleet']]);
    // Expired.
    r = await check(`  fleetPublicKey: ${f.fleetKey}\n  identity: ${f.at('node.key')}\n  credential: ${f.at('expired.cred')}\n`);
    expect(r.code).toBe(2);
    expect(linesOf(r.stderr)).toEqual([expect.stringMatching(/^auth\.credential: expired at \d{4}-/)]);
    // No identity file: the node would make a new key in its data folder, which no credential names yet.
    r = await check(`  fleetPublicKey: ${f.fleetKey}\n  credential: ${f.at('node.cred')}\n`);
    expect(r.code).toBe(2);
    expect(linesOf(r.stderr)).toEqual([expect.stringMatching(new RegExp(`^auth\\.credential: issued for key ${node.publicKey.toString('hex')}, but the node has no identity key yet \\(${f.at('data')}/node\\.key is made on the first start\\)`))]);
    // Files that are not there, and a missing fleet key: each its own line.
    r = await check(`  identity: ${f.at('nope.key')}\n  credential: ${f.at('nope.cred')}\n`);
    expect([r.code, linesOf(r.stderr)]).toEqual([
      2,
      [
        'auth.fleetPublicKey: anonymous clients are refused but no fleet key is set, so no client could connect: set auth.fleetPublicKey (or auth.anonymous: loopback for a development node)',
        `auth.identity: cannot read ${f.at('nope.key')}: no such file`,
        `auth.credential: cannot read ${f.at('nope.cred')}: no such file`,
      ],
    ]);
  } finally {
    dir.remove();
  }
});

it('a malformed YAML file is one line per error: file, line and column, and the parser\'s reason', async () => {
  const dir = tempDir();
  try {
    const config = join(dir.path, 'bad.yaml');
    writeFileSync(config, 'auth:\n  anonymous: loopback\nport: [\n');
    const r = await runCli(['config', 'check', config]);
    expect(r.code).toBe(2);
    expect(linesOf(r.stderr)).toEqual([`${config}:4:1: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]`]);
    writeFileSync(config, 'port: 1\nport: 2\n');
    const duplicate = await runCli(['config', 'check', config]);
    expect([duplicate.code, linesOf(duplicate.stderr)]).toEqual([2, [`${config}:2:1: not valid YAML: Map keys must be unique`]]);
  } finally {
    dir.remove();
  }
});
