// `tributary start` as a user runs it: flags and a YAML config, one clear line on a bad
// setting or a port in use, a clean stop on SIGTERM that leaves the clean-shutdown marker,
// who it admits and where it listens. (Whole configs: test/config-check.test.ts.)

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { RawClient } from './helpers/raw-client.js';
import { resolveConfig } from '../node/cli/start.js';
import { CLI, runCli, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

afterEach(stopAllNodes);

it('reads a YAML config, lets flags override it, and stops cleanly on SIGTERM', async () => {
  const dir = tempDir();
  try {
    const config = join(dir.path, 'node.yaml');
    writeFileSync(config, `dataDir: ${join(dir.path, 'from-config')}\nnodeId: gateway-7\ntopicDefaults:\n  segment.bytes: 2048\nauth:\n  anonymous: loopback\n`);
    const node = await startNodeProcess({ dataDir: join(dir.path, 'from-flag'), args: ['--config', config] });
    expect(node.output()).toMatch(/node gateway-7 listening on ws:\/\/127\.0\.0\.1:\d+\/v1/);
    const c = await RawClient.connect(node.url);
    await c.request(Kind.CreateTopics, { topics: [{ name: 't', partitions: 1 }] });
    const meta = await c.request<{ topics: { config: Record<string, unknown> }[] }>(Kind.Metadata, { topics: ['t'] });
    expect(meta.topics[0].config['segment.bytes']).toBe(2048);
    c.close();
    expect(await node.stop()).toBe(0);
    // --data won over the config file's dataDir, and the stop was clean.
    expect(existsSync(join(dir.path, 'from-flag', '.clean-shutdown'))).toBe(true);
    expect(existsSync(join(dir.path, 'from-config'))).toBe(false);
  } finally {
    dir.remove();
  }
});

// A config with one mistake: with a config file and no fleet key, the node needs
// auth.anonymous set to be otherwise right.
const DEV = 'auth:\n  anonymous: loopback\n';

it.each([
  ['an unknown setting', `${DEV}prot: 7400\n`, /^prot: unknown key \(did you mean port\?\); valid keys: dataDir, host, port, nodeId, limits, topicDefaults, auth, log, storage, schedule$/],
  ['a bad value', `${DEV}port: seventy\n`, /port must be an integer/],
  ['bad YAML', 'port: [\n', /not valid YAML/],
  ['a bad topic default', `${DEV}topicDefaults:\n  flush: sometimes\n`, /^topicDefaults\.flush = 'sometimes': must be one of batch, interval, os$/],
  ['an unknown topic default', `${DEV}topicDefaults:\n  retention.hours: 1\n`, /^topicDefaults\.retention\.hours: unknown key; valid keys under topicDefaults: segment\.bytes, /],
  ['no fleet key (a config refuses anonymous clients)', 'nodeId: gw\n', /no fleet key is set/],
  ['a bad fleet key', 'auth:\n  fleetPublicKey: abc\n', /auth\.fleetPublicKey must be 64 hex/],
  ['a bad anonymous policy', 'auth:\n  anonymous: everyone\n', /auth\.anonymous must be loopback or none/],
  ['an unknown auth setting', 'auth:\n  fleet: x\n', /^auth\.fleet: unknown key; valid keys under auth: fleetPublicKey, identity, credential, anonymous$/],
  ['a bad storage size', `${DEV}storage:\n  maxBytes: 5 parsecs\n`, /storage\.maxBytes must be a byte count such as 1073741824, 512MiB or 2GB, got "5 parsecs"/],
  ['a negative free space', `${DEV}storage:\n  minFreeBytes: -1\n`, /storage\.minFreeBytes must be a byte count/],
  ['a bad guard action', `${DEV}storage:\n  guard: panic\n`, /storage\.guard must be refuse or drop, got "panic"/],
  ['a non-boolean dropUnsent', `${DEV}storage:\n  dropUnsent: "yes"\n`, /storage\.dropUnsent must be true or false/],
  ['an unknown storage setting', `${DEV}storage:\n  maxbytes: 1GB\n`, /^storage\.maxbytes: unknown key \(did you mean maxBytes\?\); valid keys under storage: maxBytes, minFreeBytes, guard, dropUnsent$/],
  ['a bad cron expression', `${DEV}schedule:\n  retention: every five minutes\n`, /schedule\.retention must be a cron expression/],
  ['an unknown job', `${DEV}schedule:\n  vacuum: "* * * * * *"\n`, /^schedule\.vacuum: unknown key; valid keys under schedule: retention, compaction, checkpoint, diskGuard$/],
  ['a map where a value belongs', `${DEV}limits: 5\n`, /^limits must be a map of settings, got 5$/],
])('refuses %s in the config with one clear line', (_, yaml, message) => {
  const dir = tempDir();
  try {
    const config = join(dir.path, 'bad.yaml');
    writeFileSync(config, yaml);
    const r = spawnSync(process.execPath, [CLI, 'start', '--config', config, '--data', join(dir.path, 'data'), '--port', '0'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0].replace(/^tributary: /, '')).toMatch(message);
  } finally {
    dir.remove();
  }
});

it.each([
  [['topics', 'create', 'z'], /required option '--partitions/],
  [['nonsense'], /unknown command 'nonsense'/],
  [['start', '--port'], /argument missing/],
])('a usage mistake (%j) is one line and a non-zero exit', (args, message) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  expect(r.status).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^tributary: /);
  expect(lines[0]).toMatch(message);
});

it('a bare start is dev mode and says so; a fleet key turns anonymous clients away', async () => {
  const dir = tempDir();
  try {
    const dev = await startNodeProcess({ dataDir: join(dir.path, 'dev') });
    const key = JSON.parse(readFileSync(join(dir.path, 'dev', 'node.key'), 'utf8')) as { publicKey: string };
    expect(dev.output()).toMatch(/dev mode: anonymous clients from loopback only/);
    expect(dev.output()).toContain(`node key ${key.publicKey}`);
    expect(dev.output()).toMatch(/"level":40,.*dev mode: no fleet key/);
    expect(statSync(join(dir.path, 'dev', 'node.key')).mode & 0o777).toBe(0o600);
    const c = await RawClient.connect(dev.url);
    c.close();
    expect(await dev.stop()).toBe(0);

    const fleetKey = generateIdentity().publicKey.toString('hex');
    const secured = await startNodeProcess({ dataDir: join(dir.path, 'secured'), args: ['--fleet-key', fleetKey] });
    expect(secured.output()).toMatch(/credentials required/);
    const anonymous = await RawClient.connect(secured.url, { hello: false });
    const answer = await anonymous.request<{ error: number; message: string }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'anon' });
    expect(answer.error).toBe(Errors.UNAUTHORIZED.code);
    expect(answer.message).toMatch(/admits only holders of a fleet credential/);
    expect(await secured.stop()).toBe(0);
  } finally {
    dir.remove();
  }
});

it('TRIBUTARY_* variables override the config file, and flags override both', async () => {
  const dir = tempDir();
  try {
    const config = join(dir.path, 'node.yaml');
    writeFileSync(config, `nodeId: from-file\ndataDir: ${join(dir.path, 'file-data')}\nauth:\n  anonymous: loopback\n`);
    const r = spawnSync(process.execPath, [CLI, 'start', '--config', config, '--port', 'x'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, TRIBUTARY_NODE_ID: 'from-env', TRIBUTARY_PORT: '0' },
    });
    // The flag wins over the variable: --port x is the mistake reported.
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/port must be an integer/);
    // Variables over the file, flags over both.
    const env = { TRIBUTARY_NODE_ID: 'from-env', TRIBUTARY_PORT: '7411', TRIBUTARY_DATA: join(dir.path, 'env-data') };
    const resolved = resolveConfig({ config }, env);
    expect([resolved.nodeId, resolved.port, resolved.dataDir]).toEqual(['from-env', 7411, join(dir.path, 'env-data')]);
    const flagged = resolveConfig({ config, nodeId: 'from-flag', port: '7412' }, env);
    expect([flagged.nodeId, flagged.port]).toEqual(['from-flag', 7412]);
  } finally {
    dir.remove();
  }
});

it('stops cleanly on a SIGTERM sent the moment it says it is listening', async () => {
  // A SIGTERM that finds no handler kills the process without the clean shutdown; the
  // handlers must be in place before the node announces itself. Several tries, since the
  // window was a few microseconds wide.
  const dir = tempDir();
  try {
    for (let i = 0; i < 8; i++) {
      const node = await startNodeProcess({ dataDir: join(dir.path, `d${i}`) });
      expect(await node.stop(), `try ${i}`).toBe(0);
      expect(existsSync(join(dir.path, `d${i}`, '.clean-shutdown')), `try ${i}`).toBe(true);
    }
  } finally {
    dir.remove();
  }
});

it('reads storage sizes with units and cron schedules, keeping the defaults of what is not set', () => {
  const dir = tempDir();
  try {
    const config = join(dir.path, 'node.yaml');
    writeFileSync(config, 'auth:\n  anonymous: loopback\nstorage:\n  maxBytes: 1.5GiB\n  minFreeBytes: 200MB\n  guard: drop\nschedule:\n  retention: "0 * * * * *"\n');
    const resolved = resolveConfig({ config }, {});
    expect(resolved.storage).toEqual({ maxBytes: 1.5 * 2 ** 30, minFreeBytes: 200_000_000, guard: 'drop', dropUnsent: false });
    expect(resolved.schedule).toEqual({ retention: '0 * * * * *', compaction: '30 * * * * *', checkpoint: '15 * * * * *', diskGuard: '*/5 * * * * *' });
    const bare = resolveConfig({}, {});
    expect(bare.storage).toEqual({ maxBytes: 0, minFreeBytes: 64 * 2 ** 20, guard: 'refuse', dropUnsent: false });
  } finally {
    dir.remove();
  }
});

it.each([
  [['--port', '0x10'], {}, '--port must be an integer from 0 to 65535 written in decimal digits, got "0x10"'],
  [['--port', '1e4'], {}, '--port must be an integer from 0 to 65535 written in decimal digits, got "1e4"'],
  [['--port', ' 80'], {}, '--port must be an integer from 0 to 65535 written in decimal digits, got " 80"'],
  [[], { TRIBUTARY_PORT: '1e4' }, 'TRIBUTARY_PORT must be an integer from 0 to 65535 written in decimal digits, got "1e4"'],
])('a port is decimal digits: start %j %j is refused with one line, exit code 2', async (args, env, message) => {
  const dir = tempDir();
  try {
    const data = join(dir.path, 'data');
    const r = spawnSync(process.execPath, [CLI, 'start', '--data', data, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });
    expect([r.status, r.stderr]).toEqual([2, `tributary: ${message}\n`]);
    expect(existsSync(data)).toBe(false);
  } finally {
    dir.remove();
  }
});

it('a port in use is one line and exit code 1, and a new data folder is not made', async () => {
  const dir = tempDir();
  const holder = createServer();
  try {
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as AddressInfo).port;
    const data = join(dir.path, 'new-node');
    const r = await runCli(['start', '--data', data, '--port', String(port)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tributary: port ${port} on 127.0.0.1 is in use (EADDRINUSE): another node or program listens there; stop it, or choose another --port\n`);
    expect(r.stdout).toBe('');
    expect(existsSync(data)).toBe(false);
  } finally {
    holder.close();
    dir.remove();
  }
});

it('the start line shows the address bound: 0.0.0.0 as such with where clients reach it, a host name as the address it resolved to', async () => {
  const dir = tempDir();
  try {
    const every = await startNodeProcess({ dataDir: join(dir.path, 'every'), args: ['--host', '0.0.0.0'] });
    const m = /listening on ws:\/\/0\.0\.0\.0:(\d+)\/v1 \(every IPv4 interface: ws:\/\/127\.0\.0\.1:(\d+)\/v1[,;]/.exec(every.output());
    expect(m, every.output()).not.toBeNull();
    const port = Number((m as RegExpExecArray)[1]);
    expect(port).toBeGreaterThan(0);
    expect(Number((m as RegExpExecArray)[2])).toBe(port);
    const c = await RawClient.connect(`ws://127.0.0.1:${port}/v1`);
    c.close();
    expect(await every.stop()).toBe(0);

    const named = await startNodeProcess({ dataDir: join(dir.path, 'named'), args: ['--host', 'localhost'] });
    expect(named.output()).toMatch(/listening on ws:\/\/(127\.0\.0\.1|\[::1\]):[1-9]\d*\/v1 \(data in /);
    const local = await RawClient.connect(named.url);
    local.close();
    expect(await named.stop()).toBe(0);
  } finally {
    dir.remove();
  }
});
