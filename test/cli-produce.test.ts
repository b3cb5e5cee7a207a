// `tributary produce` as a user runs it, against real node processes: a bad line stops it
// with an exact count and nothing after it, --skip-bad-lines goes on past bad lines, and a
// node that is unreachable or out of storage is said at once on stderr, with --timeout-ms
// bounding the whole wait.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it, vi } from 'vitest';
import { metricSample } from './helpers/metrics.js';
import { CLI, nodeForFile, runCli, startNodeProcess, type CliRun, type NodeProcess } from './helpers/node-process.js';

const shared = nodeForFile('trib-produce-');
const { cli, ok, track } = shared;

/** Every record of the topic, as `consume --from-beginning --print-key` prints them. */
async function readBack(topic: string, count: number): Promise<string[]> {
  if (count === 0) return [];
  const out = await ok(['consume', topic, '--from-beginning', '--print-key', '--max-messages', String(count), '--timeout-ms', '10000']);
  return out.trimEnd().split('\n');
}

async function logEnd(topic: string): Promise<number> {
  const described = await ok(['topics', 'describe', topic]);
  return Number(described.trimEnd().split('\n')[2].split(/\s+/)[4]);
}

it('stops at a line without the key separator: the records before it are produced, none after it, and the count is exact', async () => {
  await ok(['topics', 'create', 'keyed', '--partitions', '3']);
  // Many chunks of stdin before the bad line, so batches are still on their way when it is read.
  const good = Array.from({ length: 100_000 }, (_, i) => `k${i % 7}:v${i}`);
  const r = await cli(['produce', 'keyed', '--key-separator', ':'], [...good, 'no-separator-here', 'k1:after-1', 'k2:after-2'].join('\n') + '\n');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe("tributary: line 100001 refused: no key separator ':' (100000 records before it produced, none after it)\n");
  const described = (await ok(['topics', 'describe', 'keyed'])).trimEnd().split('\n').slice(2);
  expect(described.reduce((sum, row) => sum + Number(row.split(/\s+/)[5]), 0)).toBe(100_000);
  const read = await readBack('keyed', 100_000);
  expect(read.sort()).toEqual(good.map((l) => l.replace(':', '\t')).sort());
}, 120_000);

it('stops at a record larger than the topic takes, with the records before it (same batch or not) produced', async () => {
  await ok(['topics', 'create', 'small', '--partitions', '1', '--config', 'max.message.bytes=2000']);
  const big = 'y'.repeat(3000);
  const r = await cli(['produce', 'small'], `first\nsecond\n${big}\nthird\n`);
  expect(r.code).toBe(1);
  expect(r.stderr).toBe("tributary: line 3 refused: its 3000 bytes make a record larger than the topic's max.message.bytes 2000 allows (2 records before it produced, none after it)\n");
  expect(await readBack('small', 2)).toEqual(['null\tfirst', 'null\tsecond']);
  expect(await logEnd('small')).toBe(2);
});

it('--skip-bad-lines names each bad line, produces the rest, and sums up', async () => {
  await ok(['topics', 'create', 'skipping', '--partitions', '1', '--config', 'max.message.bytes=2000']);
  const input = ['a:1', 'no separator', 'b:2', `c:${'z'.repeat(3000)}`, 'd:4'].join('\n') + '\n';
  const r = await cli(['produce', 'skipping', '--key-separator', ':', '--skip-bad-lines'], input);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr.split('\n')).toEqual([
    "tributary: skipped line 2: no key separator ':'",
    "tributary: skipped line 4: its 3002 bytes make a record larger than the topic's max.message.bytes 2000 allows",
    'produced 3 records, skipped 2 bad lines',
    '',
  ]);
  expect(await readBack('skipping', 3)).toEqual(['a\t1', 'b\t2', 'd\t4']);
  const help = await cli(['produce', '--help']);
  expect(help.stdout).toMatch(/--skip-bad-lines/);
  expect(help.stdout).toMatch(/--timeout-ms <n>/);
});

/** `n` node URLs on distinct ports just freed: connecting to them is refused. */
async function deadUrls(n: number): Promise<string[]> {
  const servers = Array.from({ length: n }, () => createServer());
  await Promise.all(servers.map((server) => new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))));
  const urls = servers.map((server) => `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
  await Promise.all(servers.map((server) => new Promise<void>((r) => server.close(() => r()))));
  return urls;
}

it('a refused connection is said at once as such, and --timeout-ms gives up with nothing sent', async () => {
  const [url] = await deadUrls(1);
  const r = await runCli(['produce', 'anything', '--broker', url, '--timeout-ms', '1500'], 'x\n');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(
    `tributary: node unreachable at ${url} (ECONNREFUSED); retrying (until --timeout-ms 1500)\n` +
      `tributary: cannot reach node at ${url}: ECONNREFUSED (gave up after --timeout-ms 1500; nothing was sent)\n`,
  );
});

it('with several --broker nodes, each one found unreachable is named once, and the give-up names them all', async () => {
  const [a, b] = await deadUrls(2);
  const r = await runCli(['produce', 'anything', '--broker', `${a},${b}`, '--timeout-ms', '1500'], 'x\n');
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(
    `tributary: node unreachable at ${a} (ECONNREFUSED); retrying (until --timeout-ms 1500)\n` +
      `tributary: node unreachable at ${b} (ECONNREFUSED); retrying (until --timeout-ms 1500)\n` +
      `tributary: cannot reach node at ${a}, ${b}: ECONNREFUSED (gave up after --timeout-ms 1500; nothing was sent)\n`,
  );
});

it('a node stopped mid-run: retrying is said at once, and --timeout-ms ends it with the count acknowledged', async () => {
  const own = await startNodeProcess({ dataDir: join(shared.folder, 'stopped') });
  await runCli(['topics', 'create', 'midrun', '--partitions', '1', '--broker', own.url]);
  const child = spawn(process.execPath, [CLI, 'produce', 'midrun', '--broker', own.url, '--timeout-ms', '8000'], { stdio: ['pipe', 'pipe', 'pipe'] });
  track(child);
  const done = collect(child);
  child.stdin!.write('before\n');
  await vi.waitFor(async () => expect((await runCli(['consume', 'midrun', '--from-beginning', '--max-messages', '1', '--timeout-ms', '2000', '--broker', own.url])).stdout).toBe('before\n'), { timeout: 10_000, interval: 100 });
  expect(await own.stop()).toBe(0);
  child.stdin!.write('after\n');
  const r = await done;
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(
    `tributary: node unreachable at ${own.url} (ECONNREFUSED); retrying (until --timeout-ms 8000)\n` +
      `tributary: gave up after --timeout-ms 8000, node unreachable at ${own.url} (ECONNREFUSED): 1 record acknowledged; the other 1 sent may or may not have been written\n`,
  );
}, 30_000);

it('says at once that the node is out of storage (STORAGE_FULL) while it retries', async () => {
  const folder = mkdtempSync(join(tmpdir(), 'trib-produce-full-'));
  let full: NodeProcess | undefined;
  try {
    const config = join(folder, 'tributary.yaml');
    // A config file turns dev mode off; the CLI connects anonymously from loopback.
    writeFileSync(config, 'auth:\n  anonymous: loopback\nstorage:\n  maxBytes: 64KiB\n  minFreeBytes: 0\n  guard: refuse\n');
    full = await startNodeProcess({ dataDir: join(folder, 'data'), args: ['--config', config] });
    const url = full.url;
    const on = (args: string[], input = '') => runCli([...args, '--broker', url], input, 30_000);
    expect((await on(['topics', 'create', 'readings', '--partitions', '1'])).code).toBe(0);
    // Past the budget; the guard refuses from its next check on (this run may meet it already).
    await on(['produce', 'readings', '--timeout-ms', '3000'], Array.from({ length: 100 }, () => 'x'.repeat(1000)).join('\n') + '\n');
    const port = full.port;
    await vi.waitFor(async () => expect(await metricSample(port, 'tributary_disk_guard_refusing')).toBe(1), { timeout: 10_000, interval: 100 });
    const r = await on(['produce', 'readings', '--timeout-ms', '2000'], 'one more\n');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `tributary: node at ${url} is out of storage (STORAGE_FULL); retrying (until --timeout-ms 2000)\n` +
        `tributary: gave up after --timeout-ms 2000, node at ${url} is out of storage (STORAGE_FULL): 0 records acknowledged; the other 1 sent may or may not have been written\n`,
    );
  } finally {
    await full?.stop();
    rmSync(folder, { recursive: true, force: true });
  }
}, 30_000);

function collect(child: ChildProcess): Promise<CliRun> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => {
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A node that stalls after the handshake: a proxy that passes the client's first `passed`
 * writes (the WebSocket upgrade; Noise message 1; message 3 with Hello, each sent only after
 * the node's answer to the one before) and swallows every write after them.
 */
async function stallingProxy(target: number, passed: number): Promise<{ url: string; close(): void }> {
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((client) => {
    const node = connect(target, '127.0.0.1');
    sockets.add(client).add(node);
    let writes = 0;
    node.pipe(client);
    client.on('data', (d: Buffer) => {
      if (writes++ < passed) node.write(d);
    });
    for (const s of [client, node]) s.on('error', () => {});
    client.on('close', () => node.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

it.each([
  [3, "node at {url} did not answer for the topic's metadata (nothing was sent)"],
  [4, '0 records acknowledged; the other 1 sent may or may not have been written'],
])('--timeout-ms bounds a node that stalls after the handshake (client writes passed: %i)', async (passed, told) => {
  await ok(['topics', 'create', `stalled-${passed}`, '--partitions', '1']);
  const proxy = await stallingProxy(shared.node.port, passed);
  try {
    const r = await runCli(['produce', `stalled-${passed}`, '--broker', proxy.url, '--timeout-ms', '1500'], 'x\n');
    expect([r.code, r.stderr]).toEqual([1, `tributary: gave up after --timeout-ms 1500: ${told.replace('{url}', proxy.url)}\n`]);
  } finally {
    proxy.close();
  }
});
