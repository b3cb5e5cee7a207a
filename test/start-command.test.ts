// `tributary start` as a user runs it: flags and a YAML config, one clear line on a bad
// setting, a clean stop on SIGTERM that leaves the clean-shutdown marker, and who it admits.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { RawClient } from './helpers/raw-client.js';
import { resolveConfig } from '../node/cli/start.js';
import { CLI, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

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

it.each([
  ['an unknown setting', 'prot: 7400\n', /unknown setting 'prot'/],
  ['a bad value', 'port: seventy\n', /port must be an integer/],
  ['bad YAML', 'port: [\n', /not valid YAML/],
  ['a bad topic default', 'auth:\n  anonymous: loopback\ntopicDefaults:\n  flush: sometimes\n', /flush/],
  ['no fleet key (a config refuses anonymous clients)', 'nodeId: gw\n', /no fleet key is set/],
  ['a bad fleet key', 'auth:\n  fleetPublicKey: abc\n', /auth\.fleetPublicKey must be 64 hex/],
  ['a bad anonymous policy', 'auth:\n  anonymous: everyone\n', /auth\.anonymous must be loopback or none/],
  ['an unknown auth setting', 'auth:\n  fleet: x\n', /unknown setting 'auth\.fleet'/],
  ['a bad storage size', 'storage:\n  maxBytes: 5 parsecs\n', /storage\.maxBytes must be a byte count such as 1073741824, 512MiB or 2GB, got "5 parsecs"/],
  ['a negative free space', 'storage:\n  minFreeBytes: -1\n', /storage\.minFreeBytes must be a byte count/],
  ['a bad guard action', 'storage:\n  guard: panic\n', /storage\.guard must be refuse or drop, got "panic"/],
  ['a non-boolean dropUnsent', 'storage:\n  dropUnsent: "yes"\n', /storage\.dropUnsent must be true or false/],
  ['an unknown storage setting', 'storage:\n  maxbytes: 1GB\n', /unknown setting 'storage\.maxbytes'/],
  ['a bad cron expression', 'schedule:\n  retention: every five minutes\n', /schedule\.retention must be a cron expression/],
  ['an unknown job', 'schedule:\n  vacuum: "* * * * * *"\n', /unknown setting 'schedule\.vacuum' \(known: retention, compaction, checkpoint, diskGuard\)/],
])('refuses %s in the config with one clear line', (_, yaml, message) => {
  const dir = tempDir();
  try {
    const config = join(dir.path, 'bad.yaml');
    writeFileSync(config, yaml);
    const r = spawnSync(process.execPath, [CLI, 'start', '--config', config, '--data', join(dir.path, 'data'), '--port', '0'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
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

it('config check names every mistake, one line each, with exit code 2; a good config is ok', () => {
  const dir = tempDir();
  try {
    const bad = join(dir.path, 'bad.yaml');
    writeFileSync(bad, 'prot: 7400\nport: seventy\nlimits:\n  inflightMax: 0\n  nope: 1\nauth:\n  anonymous: everyone\ntopicDefaults:\n  flush: sometimes\n');
    const r = spawnSync(process.execPath, [CLI, 'config', 'check', bad], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines.map((l) => l.replace(/^tributary: /, ''))).toEqual([
      `${bad}: unknown setting 'prot'`,
      'port must be an integer from 0 to 65535, got "seventy"',
      'limits.inflightMax must be an integer from 1 to 1024, got 0',
      `${bad}: unknown setting 'limits.nope'`,
      'auth.anonymous must be loopback or none, got "everyone"',
    ]);
    // Once the settings themselves are right, the next checks speak: here the topic default.
    const good = join(dir.path, 'good.yaml');
    writeFileSync(good, `auth:\n  fleetPublicKey: ${generateIdentity().publicKey.toString('hex')}\ntopicDefaults:\n  flush: batch\n`);
    const ok = spawnSync(process.execPath, [CLI, 'config', 'check', good], { encoding: 'utf8', timeout: 20_000 });
    expect([ok.status, ok.stdout]).toEqual([0, `config ok: ${good}\n`]);
    writeFileSync(good, 'auth:\n  anonymous: loopback\ntopicDefaults:\n  flush: sometimes\n');
    const topicDefault = spawnSync(process.execPath, [CLI, 'config', 'check', good], { encoding: 'utf8', timeout: 20_000 });
    expect(topicDefault.status).toBe(2);
    expect(topicDefault.stderr).toMatch(/flush/);
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
