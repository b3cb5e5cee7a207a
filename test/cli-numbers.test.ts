// Numbers on the command line are decimal integers as typed: '0x10', '1e9', ' 7' and '7.0'
// are each more likely a slip than a wish (JavaScript's Number() reads all four), so every
// number flag refuses them with one line naming the flag, and a non-zero exit. Flags checked
// before connecting make no request: those runs point at a TCP listener that must see no
// connection. Flags only read once connected run against a node process.

import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, startNodeProcess, stopAllNodes, tempDir, type NodeProcess } from './helpers/node-process.js';

const BAD = ['0x10', '1e9', ' 7', '7.0'];

const data = tempDir();
const keys = tempDir();
let node: NodeProcess;
let listener: Server;
let listenerUrl: string;
let connectionsSeen = 0;

beforeAll(async () => {
  node = await startNodeProcess({ dataDir: data.path });
  const created = await runCli(['topics', 'create', 'numbers', '--partitions', '1', '--broker', node.url]);
  expect(created.code, created.stderr).toBe(0);
  listener = createServer((socket) => {
    connectionsSeen++;
    socket.destroy();
  });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  listenerUrl = `ws://127.0.0.1:${(listener.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  await stopAllNodes();
  listener?.close();
  data.remove();
  keys.remove();
});

/** Each bad value of `flag`, in `args` where the value goes at '{}'. */
function cases(flag: string, args: string[], values = BAD): [string, string, string[]][] {
  return values.map((value) => [flag, value, args.map((a) => (a === '{}' ? value : a))]);
}

function expectOneLineNaming(r: { code: number | null; stdout: string; stderr: string }, flag: string, value: string): void {
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.code).not.toBeNull();
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0].startsWith(`tributary: ${flag} `), lines[0]).toBe(true);
  expect(lines[0]).toContain(`got '${value}'`);
}

describe('number flags checked before connecting', () => {
  const table = [
    // Every bad shape for one flag; the flags that share its parser, one shape each.
    ...cases('--partitions', ['topics', 'create', 'never', '--partitions', '{}']),
    ...cases('--partition', ['produce', 'numbers', '--partition', '{}'], ['0x10']),
    ...cases('--offset', ['consume', 'numbers', '--partition', '0', '--offset', '{}'], ['1e9']),
    ...cases('--partition', ['consume', 'numbers', '--partition', '{}'], [' 7']),
    ...cases('--max-messages', ['consume', 'numbers', '--max-messages', '{}'], ['7.0']),
    ...cases('--timeout-ms', ['consume', 'numbers', '--timeout-ms', '{}'], ['0x10']),
    ...cases('--to-offset', ['groups', 'reset-offsets', 'g', '--topic', 'numbers', '--to-offset', '{}']),
  ];

  it.each(table)('%s %j is refused in one line, with no connection made', async (flag, value, args) => {
    const r = await runCli([...args, '--broker', listenerUrl]);
    expectOneLineNaming(r, flag, value);
  });

  it('the listener saw no connection from any of them', async () => {
    // Connections are accepted in order: once this one is seen, any earlier one was too.
    const control = connect((listener.address() as AddressInfo).port, '127.0.0.1');
    await once(listener, 'connection');
    control.destroy();
    expect(connectionsSeen).toBe(1);
  });
});

describe('number flags read once connected, and offline commands', () => {
  it.each([...cases('--linger-ms', ['produce', 'numbers', '--linger-ms', '{}'], ['1e9']), ...cases('--batch-bytes', ['produce', 'numbers', '--batch-bytes', '{}'], ['0x10'])])(
    '%s %j is refused in one line',
    async (flag, value, args) => {
      const r = await runCli([...args, '--broker', node.url], 'not sent\n');
      expectOneLineNaming(r, flag, value);
    },
  );

  it.each(['0x10', '1e6', ' 7'])('topics create --config retention.ms=%j: the node refuses the text as typed, and no topic is made', async (value) => {
    const r = await runCli(['topics', 'create', 'configured', '--partitions', '1', '--config', `retention.ms=${value}`, '--broker', node.url]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tributary: INVALID_CONFIG: topic config 'retention.ms' = '${value}': must be an integer\n`);
    const listed = await runCli(['topics', 'list', '--broker', node.url]);
    expect(listed.stdout.split('\n')).not.toContain('configured');
  });

  let subject = '';
  const fleet = join(keys.path, 'fleet.key');
  beforeAll(async () => {
    if ((await runCli(['fleet', 'init', '--out', fleet])).code !== 0) throw new Error('fleet init failed');
    subject = (await runCli(['keys', 'generate', '--out', join(keys.path, 'device.key')])).stdout.trim();
  });

  it.each([' 90d', '90d ', '0x10d', '1e2d', '0d'])('credentials issue --expires %j is refused in one line', async (value) => {
    const r = await runCli(['credentials', 'issue', '--fleet', fleet, '--subject', subject, '--role', 'device', '--expires', value, '--out', join(keys.path, 'device.cred')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tributary: INVALID_CONFIG: --expires must look like 90d, 12h, 30m or 45s, got '${value}'\n`);
  });

  it.each([...cases('--devices', ['--devices', '{}'], [...BAD, '1e3']), ...cases('--duration', ['--duration', '{}'], ['1e2'])])(
    'sim %s %j is refused in one line with exit code 2, before starting anything',
    async (flag, value, args) => {
      const out = tempDir();
      try {
        const r = await runCli(['sim', join(ROOT, 'simulator/scenarios/smoke.yaml'), '--out', join(out.path, 'report'), ...args]);
        expect(r.code).toBe(2);
        expect(r.stderr).toBe(`tributary: ${flag} must be a decimal integer, got '${value}'\n`);
        expect(r.stdout).toBe('');
      } finally {
        out.remove();
      }
    },
  );
});
