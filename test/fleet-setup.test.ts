// The README's "Set up a fleet", step by step, as a user runs it: the built `tributary`
// command for every step, and a real node process started from a config file. It shows the
// pieces working together: offline keys and credentials, a secured node that pins its
// identity and shows its credential, clients that pin the fleet key, ACLs, revocations
// signed offline and published online. (test/readme-walkthrough.test.ts runs the README's
// own text.)

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { runCli, setUpFleet, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

afterEach(stopAllNodes);

async function ok(args: string[], input = ''): Promise<string> {
  const r = await runCli(args, input);
  expect(r.code, `tributary ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

it('sets up a fleet offline, runs a secured node from a config, and enforces credentials, ACLs and revocations signed offline', async () => {
  const dir = tempDir();
  const at = (name: string) => join(dir.path, name);
  try {
    // 1-3, 6. Fleet key, node identity and node credential; admin and device the same way.
    const { fleetKey, identities } = await setUpFleet(at);

    // 4. A secured node from a config file.
    writeFileSync(at('node.yaml'), `auth:\n  fleetPublicKey: ${fleetKey}\n  identity: ${at('node.key')}\n  credential: ${at('node.cred')}\n`);
    const node = await startNodeProcess({ dataDir: at('data'), args: ['--config', at('node.yaml')] });
    expect(node.output()).toContain(`node key ${identities.node}`);
    const as = (who: string) => ['--broker', node.url, '--identity', at(`${who}.key`), '--credential', at(`${who}.cred`), '--fleet-key', fleetKey];

    // 5. The admin makes topics; clients pin the fleet key and the node proves it is in it.
    await ok(['topics', 'create', 'sensors.temp', '--partitions', '1', ...as('admin')]);
    await ok(['topics', 'create', 'alarms', '--partitions', '1', ...as('admin')]);

    // 7. The device produces where its credential allows, and nowhere else.
    await ok(['produce', 'sensors.temp', ...as('device')], '21.5\n22.0\n');
    const refused = await runCli(['produce', 'alarms', ...as('device')], 'fire\n');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/UNAUTHORIZED/);
    // Said as the produce it is, though the CLI asks for the topic's metadata first.
    expect(refused.stderr).toMatch(/^tributary: UNAUTHORIZED: device:[0-9a-f]{16} may not produce to or consume from 'alarms'\n$/);
    const read = await ok(['consume', 'sensors.temp', '--from-beginning', '--max-messages', '2', '--timeout-ms', '5000', ...as('device')]);
    expect(read.split('\n')).toEqual(['21.5', '22.0']);
    // Anonymous clients are refused by a node with a config.
    const anonymous = await runCli(['topics', 'list', '--broker', node.url]);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/admits only holders of a fleet credential/);
    // A client pinning another fleet refuses this node before showing its credential.
    const otherFleet = await ok(['fleet', 'init', '--out', at('other-fleet.key')]);
    const wrongPin = await runCli(['topics', 'list', '--broker', node.url, '--identity', at('admin.key'), '--credential', at('admin.cred'), '--fleet-key', otherFleet]);
    expect(wrongPin.code).not.toBe(0);
    expect(wrongPin.stderr).toMatch(/refusing node .*another fleet/);

    // 8. The fleet key signs the revocation offline, into a file: nothing is revoked yet.
    const signed = await ok(['credentials', 'revoke', '--fleet', at('fleet.key'), '--credential-file', at('device.cred'), '--reason', 'lost', '--out', at('device.revocation')]);
    expect(signed).toMatch(/^wrote a revocation of credential [0-9a-f]+ \(role device, subject [0-9a-f]{64}\) to /);
    await ok(['produce', 'sensors.temp', ...as('device')], '22.5\n');
    // A device may not publish it; the admin does, and the device is refused from then on,
    // also after a restart.
    const byDevice = await runCli(['credentials', 'publish-revocation', at('device.revocation'), ...as('device')]);
    expect(byDevice.code).not.toBe(0);
    expect(byDevice.stderr).toMatch(/UNAUTHORIZED: .*may not produce to or consume from '__revocations'/);
    const revoked = await ok(['credentials', 'publish-revocation', at('device.revocation'), ...as('admin')]);
    expect(revoked).toMatch(/^revoked credential [0-9a-f]+ \(__revocations\/0 at offset 0\)$/);
    const after = await runCli(['produce', 'sensors.temp', ...as('device')], '23.0\n');
    expect(after.code).not.toBe(0);
    expect(after.stderr).toMatch(/credential revoked: lost/);
    expect(await node.stop()).toBe(0);
    const restarted = await startNodeProcess({ dataDir: at('data'), args: ['--config', at('node.yaml')] });
    const again = await runCli(['produce', 'sensors.temp', '--broker', restarted.url, ...as('device').slice(2)], '24.0\n');
    expect(again.stderr).toMatch(/credential revoked: lost/);
    // The node kept its identity key across the restart (clients may pin it).
    expect(restarted.output()).toContain(`node key ${identities.node}`);
    expect(readFileSync(at('node.key'), 'utf8')).toContain(identities.node);
    expect(await restarted.stop()).toBe(0);
  } finally {
    dir.remove();
  }
});
