// The offline fleet commands as an operator runs them: keys, fleet, credentials.

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyCredential } from '../../protocol/credential.js';
import { parsePublicKey } from '../../protocol/key-file.js';
import { CLI_ENTRY as CLI, ensureBuiltCli } from '../testing/built-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'trib-keys-'));
beforeAll(() => void ensureBuiltCli(), 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tributary(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

it('makes a fleet, a device identity and a credential the fleet key verifies', () => {
  const fleet = tributary('fleet', 'init', '--out', join(dir, 'fleet.key'));
  expect(fleet.status).toBe(0);
  const device = tributary('keys', 'generate', '--out', join(dir, 'device.key'));
  expect(device.status).toBe(0);
  expect(statSync(join(dir, 'device.key')).mode & 0o777).toBe(0o600);
  expect(tributary('keys', 'show', join(dir, 'device.key')).stdout).toBe(device.stdout);

  const issued = tributary('credentials', 'issue', '--fleet', join(dir, 'fleet.key'), '--subject', device.stdout.trim(), '--role', 'device',
    '--produce', 'sensors.*', '--produce', 'status', '--expires', '30d', '--out', join(dir, 'device.cred'));
  expect(issued.status).toBe(0);
  const credential = verifyCredential(readFileSync(join(dir, 'device.cred')), parsePublicKey(fleet.stdout));
  expect(credential.subject.toString('hex')).toBe(device.stdout.trim());
  expect(credential.produce).toEqual(['sensors.*', 'status']);
  expect(credential.consume).toEqual([]);
  expect(credential.groups).toBeUndefined(); // the role's default: a device uses no group
  expect(credential.expiresAt - credential.issuedAt).toBe(30 * 86_400_000);

  const app = tributary('credentials', 'issue', '--fleet', join(dir, 'fleet.key'), '--subject', device.stdout.trim(), '--role', 'app',
    '--consume', 'sensors.*', '--group', 'billing', '--group', 'billing.*', '--out', join(dir, 'app.cred'));
  expect(app.status).toBe(0);
  expect(verifyCredential(readFileSync(join(dir, 'app.cred')), parsePublicKey(fleet.stdout)).groups).toEqual(['billing', 'billing.*']);
});

it.each([
  ['admin', 'an admin'],
  ['app', 'an app'],
  ['device', 'a device'],
  ['node', 'a node'],
])('credentials issue --role %s says it issued %s credential', (role, phrase) => {
  const fleetKey = join(dir, 'roles-fleet.key');
  tributary('fleet', 'init', '--out', fleetKey, '--force');
  const subject = tributary('keys', 'generate', '--out', join(dir, `roles-${role}.key`), '--force').stdout.trim();
  const issued = tributary('credentials', 'issue', '--fleet', fleetKey, '--subject', subject, '--role', role, '--out', join(dir, `roles-${role}.cred`), '--force');
  expect(issued.status, issued.stderr).toBe(0);
  expect(issued.stderr).toMatch(new RegExp(`^issued ${phrase} credential, expires \\d{4}-\\d\\d-\\d\\dT`));
});

it('never overwrites a key silently, and refuses a key file others can read', () => {
  const path = join(dir, 'once.key');
  expect(tributary('keys', 'generate', '--out', path).status).toBe(0);
  const again = tributary('keys', 'generate', '--out', path);
  expect(again.status).not.toBe(0);
  expect(again.stderr.trim()).toMatch(/^tributary: .*exists; refusing to overwrite/);
  chmodSync(path, 0o644);
  const shown = tributary('keys', 'show', path);
  expect(shown.status).not.toBe(0);
  expect(shown.stderr.trim()).toMatch(/readable by others.*chmod 600/);
  expect(tributary('keys', 'generate', '--out', path, '--force').status).toBe(0);
  expect(statSync(path).mode & 0o777).toBe(0o600);
});

it.each([
  [['--role', 'root'], /--role must be one of/],
  [['--expires', 'forever'], /--expires must look like/],
  [['--subject', 'abc'], /--subject must be 64 hex/],
  [['--produce', 'bad topic!'], /pattern/],
  [['--group', 'bad group!'], /groups pattern "bad group!"/],
])('credentials issue refuses %j with one line', (override, message) => {
  const fleetKey = join(dir, 'f2.key');
  tributary('fleet', 'init', '--out', fleetKey, '--force');
  const subject = tributary('keys', 'generate', '--out', join(dir, `s-${Math.random()}.key`)).stdout.trim();
  const args: Record<string, string> = { '--fleet': fleetKey, '--subject': subject, '--role': 'device', '--out': join(dir, `c-${Math.random()}.cred`) };
  const flags = Object.entries(args).flat();
  const r = tributary('credentials', 'issue', ...flags, ...override);
  expect(r.status).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
});
