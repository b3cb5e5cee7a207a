// Topic configs changed at run time, as a user does it: `tributary topics alter` and
// `tributary topics configs` (the built command) against a secured node process started from
// a config file with node-wide topic defaults, across a restart; and the AlterConfigs and
// DescribeConfigs frames through the SDK, including the bad shapes the node must refuse.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { TOPIC_CONFIG_KEYS } from '../node/storage/config.js';
import { connect, type Connection } from '../devices/index.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind } from '../protocol/frames.js';
import { runCli, setUpFleet, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

afterEach(stopAllNodes);

async function ok(args: string[], input = ''): Promise<string> {
  const r = await runCli(args, input);
  expect(r.code, `tributary ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** `topics configs` output as key -> 'value source'. */
function parseConfigs(out: string): Record<string, string> {
  const [header, ...rows] = out.split('\n');
  expect(header.split(/\s+/)).toEqual(['KEY', 'VALUE', 'SOURCE']);
  return Object.fromEntries(rows.map((row) => {
    const [key, value, source] = row.split(/\s+/);
    return [key, `${value} ${source}`];
  }));
}

it('alters a topic at run time with the CLI: shown with its source, kept across a restart, admin only', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  const at = (name: string) => join(dir.path, name);
  try {
    const { fleetKey, identities } = await setUpFleet(at);
    writeFileSync(
      at('node.yaml'),
      `auth:\n  fleetPublicKey: ${fleetKey}\n  identity: ${at('node.key')}\n  credential: ${at('node.cred')}\ntopicDefaults:\n  retention.bytes: 1073741824\n`,
    );
    let node = await startNodeProcess({ dataDir: at('data'), args: ['--config', at('node.yaml')] });
    const as = (who: string) => ['--broker', node.url, '--identity', at(`${who}.key`), '--credential', at(`${who}.cred`), '--fleet-key', fleetKey];

    await ok(['topics', 'create', 'sensors.temp', '--partitions', '2', '--config', 'segment.bytes=1048576', ...as('admin')]);
    const altered = await ok(['topics', 'alter', 'sensors.temp', '--config', 'retention.ms=3600000', '--config', 'flush=batch', '--delete-config', 'segment.bytes', ...as('admin')]);
    expect(altered).toBe('altered topic sensors.temp: retention.ms=3600000, flush=batch, segment.bytes (deleted)');
    const configs = parseConfigs(await ok(['topics', 'configs', 'sensors.temp', ...as('admin')]));
    expect(configs['retention.ms']).toBe('3600000 topic');
    expect(configs['flush']).toBe('batch topic');
    expect(configs['retention.bytes']).toBe('1073741824 node');
    expect(configs['segment.bytes']).toBe('67108864 default');
    expect(Object.keys(configs)).toHaveLength(TOPIC_CONFIG_KEYS.length);
    // Produce still works under the new flush policy (acks wait for the fsync now).
    await ok(['produce', 'sensors.temp', '--acks', 'all', ...as('device')], 'a\nb\n');

    // A device may read the configs of topics it uses, but alter none.
    expect(parseConfigs(await ok(['topics', 'configs', 'sensors.temp', ...as('device')]))['flush']).toBe('batch topic');
    const refused = await runCli(['topics', 'alter', 'sensors.temp', '--config', 'retention.ms=1', ...as('device')]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/UNAUTHORIZED.*may not alter the config of topic 'sensors\.temp'/);
    const hidden = await runCli(['topics', 'configs', '__revocations', ...as('device')]);
    expect(hidden.code).not.toBe(0);
    expect(hidden.stderr).toMatch(/may not produce to or consume from '__revocations'/);

    // Bad input: one clear line each, non-zero, nothing changed.
    const bad: [string[], RegExp][] = [
      [['--config', 'retention.ms'], /^tributary: --config expects key=value, got 'retention\.ms'\n$/],
      [['--config', 'retention.typo=5'], /^tributary: .*unknown topic config key 'retention\.typo'.*\n$/],
      [['--config', 'flush=sometimes'], /^tributary: .*'flush' = 'sometimes': must be one of batch, interval, os\n$/],
      [['--config', 'retention.ms=1', '--config', 'segment.bytes=10'], /^tributary: .*'segment\.bytes' = 10: must be between 1024 and \d+\n$/],
      [['--delete-config', 'retention.typo'], /^tributary: .*unknown topic config key 'retention\.typo'.*\n$/],
      [[], /^tributary: nothing to change: give --config key=value or --delete-config key\n$/],
    ];
    for (const [args, message] of bad) {
      const r = await runCli(['topics', 'alter', 'sensors.temp', ...args, ...as('admin')]);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
    const missing = await runCli(['topics', 'alter', 'nope', '--config', 'retention.ms=1', ...as('admin')]);
    expect(missing.stderr).toMatch(/UNKNOWN_TOPIC.*'nope'/);
    const internal = await runCli(['topics', 'alter', '__revocations', '--config', 'cleanup.policy=delete', ...as('admin')]);
    expect(internal.code).not.toBe(0);
    expect(internal.stderr).toMatch(/internal topic: its cleanup\.policy stays 'compact'/);
    expect(parseConfigs(await ok(['topics', 'configs', 'sensors.temp', ...as('admin')]))['retention.ms']).toBe('3600000 topic');

    // After a restart the topic's own values are still there.
    expect(await node.stop()).toBe(0);
    node = await startNodeProcess({ dataDir: at('data'), args: ['--config', at('node.yaml')] });
    const again = parseConfigs(await ok(['topics', 'configs', 'sensors.temp', ...as('admin')]));
    expect(again).toEqual(configs);
    const read = await ok(['consume', 'sensors.temp', '--from-beginning', '--max-messages', '2', '--timeout-ms', '5000', ...as('admin')]);
    expect(read.split('\n').sort()).toEqual(['a', 'b']);
    expect(await node.stop()).toBe(0);
  } finally {
    dir.remove();
  }
});

it('AlterConfigs and DescribeConfigs through the SDK: per-topic results, and malformed requests refused', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tributary-configs-'));
  let broker: Broker | undefined;
  let conn: Connection | undefined;
  try {
    broker = await startBroker({ dataDir, port: 0, logger: silentLogger, topicDefaults: { flush: 'os' } });
    conn = await connect(broker.url);
    const admin = conn.admin();
    await admin.createTopic('alpha', { partitions: 1 });
    await admin.alterTopicConfigs('alpha', { set: { 'retention.ms': 60_000, 'max.message.bytes': '2048' }, delete: ['segment.ms'] });
    const [alpha, missing] = await admin.describeTopicConfigs(['alpha', 'missing']);
    expect(alpha.error).toBeNull();
    const byName = Object.fromEntries(alpha.configs.map((c) => [c.name, c]));
    expect(byName['retention.ms']).toEqual({ name: 'retention.ms', value: 60_000, source: 'topic' });
    expect(byName['max.message.bytes']).toEqual({ name: 'max.message.bytes', value: 2048, source: 'topic' });
    expect(byName['flush']).toEqual({ name: 'flush', value: 'os', source: 'node' });
    expect(byName['segment.ms'].source).toBe('default');
    expect(missing.error?.errorName).toBe('UNKNOWN_TOPIC');
    expect(missing.configs).toEqual([]);
    // The new max.message.bytes applies to the next produce at once.
    const producer = conn.producer({ lingerMs: 0 });
    await expect(producer.send('alpha', { value: Buffer.alloc(4096, 1) })).rejects.toMatchObject({ errorName: 'BATCH_TOO_LARGE' });
    await producer.send('alpha', { value: Buffer.alloc(100, 1) });

    const err = await admin.alterTopicConfigs('alpha', { set: { 'retention.ms': 1, 'segment.bytes': 1 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).errorName).toBe('INVALID_CONFIG');
    const [after] = await admin.describeTopicConfigs(['alpha']);
    expect(after.configs.find((c) => c.name === 'retention.ms')?.value).toBe(60_000); // all or nothing

    // Malformed requests: the whole request fails with INVALID_REQUEST; the connection stays usable.
    const raw = conn.client as unknown as { request(kind: number, body: object): Promise<{ error?: number; topics?: { error: number; message?: string }[] }> };
    const malformed: object[] = [
      {},
      { topics: 'alpha' },
      { topics: Array.from({ length: 1001 }, () => ({ name: 'alpha', configs: [] })) },
    ];
    for (const body of malformed) {
      await expect(raw.request(Kind.AlterConfigs, body), JSON.stringify(body).slice(0, 60)).rejects.toMatchObject({ errorName: 'INVALID_REQUEST' });
    }
    const perTopic: [object, string][] = [
      [{ name: 'alpha', configs: [{ name: 'retention.ms', op: 'add', value: 1 }] }, 'INVALID_REQUEST'],
      [{ name: 'alpha', configs: [{ name: 'retention.ms', op: 'delete', value: 1 }] }, 'INVALID_REQUEST'],
      [{ name: 'alpha', configs: [{ name: 'retention.ms', op: 'set' }] }, 'INVALID_CONFIG'],
      [{ name: 'alpha', configs: [{ name: 7, op: 'set', value: 1 }] }, 'INVALID_REQUEST'],
      [{ name: 'alpha', configs: Array.from({ length: 101 }, () => ({ name: 'retention.ms', op: 'delete' })) }, 'INVALID_REQUEST'],
      [{ name: 'alpha' }, 'INVALID_REQUEST'],
    ];
    for (const [topic, code] of perTopic) {
      const answer = await raw.request(Kind.AlterConfigs, { topics: [topic] });
      expect(answer.topics?.[0].error, JSON.stringify(topic).slice(0, 80)).toBe(Errors[code as keyof typeof Errors].code);
    }
    await expect(raw.request(Kind.DescribeConfigs, { topics: [1] })).rejects.toMatchObject({ errorName: 'INVALID_REQUEST' });
    const [still] = await admin.describeTopicConfigs(['alpha']);
    expect(still.configs.find((c) => c.name === 'retention.ms')?.value).toBe(60_000);
  } finally {
    await conn?.close();
    await broker?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
