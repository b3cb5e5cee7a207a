// A revocation signed where the fleet key is kept, with no node (`credentials revoke
// --out`), and published elsewhere (`credentials publish-revocation`): the file holds the
// fleet-signed record, and a file that is not one this fleet signed is refused in one line
// before any connection. The broker given here has no listener, so a command that tried to
// connect would say that it cannot reach it instead. test/fleet-setup.test.ts publishes a
// file to a real node.

import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCredential } from '../protocol/credential.js';
import { readCredentialFile } from '../devices/identity.js';
import { revocationKey, verifyRevocation } from '../protocol/revocation.js';
import { cliOk, runCli as runBuiltCli, setUpFleet, tempDir, type CliRun } from './helpers/node-process.js';

const dir = tempDir('trib-revoke-offline-');
const at = (name: string) => join(dir.path, name);
let fleetKey = '';
let nobody = '';
let admin: string[] = [];

/** A loopback URL with no listener: a port the OS handed out and that was closed again. */
async function unreachableBroker(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `ws://127.0.0.1:${port}/v1`;
}

beforeAll(async () => {
  ({ fleetKey } = await setUpFleet(at));
  nobody = await unreachableBroker();
  admin = ['--broker', nobody, '--identity', at('admin.key'), '--credential', at('admin.cred')];
  await cliOk(['fleet', 'init', '--out', at('other-fleet.key')]);
  await cliOk(['credentials', 'revoke', '--fleet', at('other-fleet.key'), '--id', 'ab', '--out', at('other-fleet.revocation')]);
  await cliOk(['credentials', 'revoke', '--fleet', at('fleet.key'), '--id', 'ef', '--out', at('this-fleet.revocation')]);
});

/** The built CLI with the fleet key variable set as given (none by default). */
function runCli(args: string[], fleetKeyVariable = ''): Promise<CliRun> {
  return runBuiltCli(args, '', 20_000, { ...process.env, TRIBUTARY_FLEET_KEY: fleetKeyVariable });
}

afterAll(() => dir.remove());

describe('credentials revoke --out', () => {
  it('signs the revocation into a file, offline: the record publish-revocation sends', async () => {
    const out = await cliOk(['credentials', 'revoke', '--fleet', at('fleet.key'), '--credential-file', at('device.cred'), '--reason', 'lost', '--out', at('device.revocation')]);
    const id = verifyCredential(readCredentialFile(at('device.cred')), Buffer.from(fleetKey, 'hex')).id;
    expect(out).toMatch(new RegExp(`^wrote a revocation of credential ${id} \\(role device, subject [0-9a-f]{64}\\) to ${at('device.revocation')}; send it with: tributary credentials publish-revocation ${at('device.revocation')}$`));
    const revocation = verifyRevocation(readFileSync(at('device.revocation')), Buffer.from(fleetKey, 'hex'));
    expect(revocation.target).toEqual({ credentialId: id });
    expect(revocation.reason).toBe('lost');
    expect(revocationKey(revocation.target)).toBe(`credential:${id}`);
  });

  it('keeps an existing file unless --force', async () => {
    const flags = ['credentials', 'revoke', '--fleet', at('fleet.key'), '--id', 'cd', '--out', at('twice.revocation')];
    await cliOk(flags);
    const again = await runCli(flags);
    expect(again).toMatchObject({ code: 1, stdout: '', stderr: `tributary: INVALID_CONFIG: ${at('twice.revocation')} exists; refusing to overwrite it (use --force)\n` });
    await cliOk([...flags.slice(0, 4), '--subject', 'ab'.repeat(32), '--out', at('twice.revocation'), '--force']);
    expect(verifyRevocation(readFileSync(at('twice.revocation')), Buffer.from(fleetKey, 'hex')).target).toEqual({ subject: Buffer.from('ab'.repeat(32), 'hex') });
  });

  it.each<[string, () => string[], () => string]>([
    [
      'the flags of a node',
      () => ['--id', 'ab', '--out', at('x.revocation'), '--broker', nobody, '--identity', at('admin.key')],
      () => `tributary: --out signs offline and connects to no node, so it takes no --broker or --identity; send the file with: tributary credentials publish-revocation ${at('x.revocation')}\n`,
    ],
    ['--force without --out', () => ['--id', 'ab', '--force', ...admin], () => 'tributary: --force only applies to --out\n'],
  ])('refuses %s in one line', async (_what, flags, stderr) => {
    const r = await runCli(['credentials', 'revoke', '--fleet', at('fleet.key'), ...flags()]);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: stderr() });
  });
});

describe('credentials publish-revocation', () => {
  it.each<[string, () => string, () => string[], () => string]>([
    ['no fleet key to check against', () => at('other-fleet.revocation'), () => admin, () => `tributary: give --fleet-key (or TRIBUTARY_FLEET_KEY): ${at('other-fleet.revocation')} is checked against the fleet key before it is sent\n`],
    ['a revocation of another fleet', () => at('other-fleet.revocation'), () => ['--fleet-key', fleetKey, ...admin], () => `tributary: INVALID_CONFIG: ${at('other-fleet.revocation')}: revocation refused: signed by another fleet\n`],
    ['a revocation whose signature was changed', () => corrupted(), () => ['--fleet-key', fleetKey, ...admin], () => `tributary: INVALID_CONFIG: ${at('corrupt.revocation')}: revocation refused: signature does not verify\n`],
    ['a file that is not CBOR', () => written('text.revocation', 'revoke device 7\n'), () => ['--fleet-key', fleetKey, ...admin], () => `tributary: INVALID_CONFIG: ${at('text.revocation')}: revocation refused: not valid CBOR\n`],
    ['a credential', () => at('device.cred'), () => ['--fleet-key', fleetKey, ...admin], () => `tributary: INVALID_CONFIG: ${at('device.cred')} is a credential, not a revocation; sign one with: tributary credentials revoke --out FILE\n`],
    ['an empty file', () => written('empty.revocation', ''), () => ['--fleet-key', fleetKey, ...admin], () => `tributary: INVALID_CONFIG: ${at('empty.revocation')} is 0 bytes; a revocation is 1 to 1024\n`],
    ['a missing file', () => at('missing.revocation'), () => ['--fleet-key', fleetKey, ...admin], () => `tributary: INVALID_CONFIG: cannot read ${at('missing.revocation')}: ENOENT\n`],
    ['a fleet key that is not a key', () => at('other-fleet.revocation'), () => ['--fleet-key', 'abc', ...admin], () => 'tributary: INVALID_CONFIG: --fleet-key must be 64 hex characters\n'],
  ])('refuses %s in one line, before connecting', async (_what, file, flags, stderr) => {
    const r = await runCli(['credentials', 'publish-revocation', file(), ...flags()]);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: stderr() });
  });

  it('takes the fleet key from TRIBUTARY_FLEET_KEY, and only then connects', async () => {
    const r = await runCli(['credentials', 'publish-revocation', at('other-fleet.revocation'), ...admin], fleetKey);
    expect(r.stderr).toBe(`tributary: INVALID_CONFIG: ${at('other-fleet.revocation')}: revocation refused: signed by another fleet\n`);
    const sent = await runCli(['credentials', 'publish-revocation', at('this-fleet.revocation'), ...admin], fleetKey);
    expect(sent.code).toBe(1);
    expect(sent.stderr).toMatch(new RegExp(`^tributary: cannot reach node at ${nobody}`));
  });
});

/** A file in the test folder with `contents`; its path. */
function written(name: string, contents: string | Buffer): string {
  writeFileSync(at(name), contents);
  return at(name);
}

/** A revocation this fleet signed, with the last byte of its signature flipped. */
function corrupted(): string {
  const bytes = readFileSync(at('this-fleet.revocation'));
  bytes[bytes.length - 1] ^= 1;
  return written('corrupt.revocation', bytes);
}
