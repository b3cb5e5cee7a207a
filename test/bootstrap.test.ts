// Bootstrap from a list of nodes, with real node processes: a client given two node URLs
// goes on to the second when the first is SIGKILLed, and the command line takes the same
// list in --broker.

import { createServer, type AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { Client } from '../devices/client.js';
import { Kind, LATEST_TIMESTAMP } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { runCli, startNodeProcess, stopAllNodes, tempDir } from './helpers/node-process.js';

const dirs: { remove(): void }[] = [];
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await stopAllNodes();
  for (const d of dirs.splice(0)) d.remove();
});

function dataDir(): string {
  const dir = tempDir('trib-bootstrap-');
  dirs.push(dir);
  return dir.path;
}

/** A URL nothing listens on: bind an ephemeral port, then release it. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `ws://127.0.0.1:${port}/v1`;
}

it('a client given two nodes goes on to the second when the first is SIGKILLed, and its requests continue there', async () => {
  const [first, second] = await Promise.all([startNodeProcess({ dataDir: dataDir() }), startNodeProcess({ dataDir: dataDir() })]);
  let disconnected!: () => void;
  const gone = new Promise<void>((resolve) => (disconnected = resolve));
  const client = await Client.connect([first.url, second.url], { reconnect: { initialMs: 20, maxMs: 200 }, onDisconnect: () => disconnected() });
  clients.push(client);
  expect(client.url).toBe(first.url);
  const firstNodeId = client.nodeId;
  const created = await client.request(Kind.CreateTopics, { topics: [{ name: 'boot', partitions: 1 }] });
  expect(created.topics[0].error).toBe(0);

  await first.kill();
  await gone;

  // The topic does not exist on the second node: creating it there shows who answers.
  const again = await client.request(Kind.CreateTopics, { topics: [{ name: 'boot', partitions: 1 }] });
  expect(again.topics[0].error).toBe(0);
  expect(client.url).toBe(second.url);
  expect(client.nodeId).not.toBe(firstNodeId);
  const produced = await client.request(Kind.Produce, {
    acks: 1,
    timeoutMs: 10_000,
    partitions: [{ topic: 'boot', partition: 0, records: encodeBatch([{ value: Buffer.from('after the kill') }]) }],
  });
  expect(produced.partitions[0]).toMatchObject({ error: 0, baseOffset: 0 });
  const offsets = await client.request(Kind.ListOffsets, { partitions: [{ topic: 'boot', partition: 0, timestamp: LATEST_TIMESTAMP }] });
  expect(offsets.partitions[0]).toMatchObject({ error: 0, offset: 1 });
  expect(client.connectionCount).toBe(2);
}, 60_000);

it('the command line takes --broker dead,alive and runs on the node that answers', async () => {
  const alive = await startNodeProcess({ dataDir: dataDir() });
  const dead = await deadUrl();
  const alone = await runCli(['topics', 'list', '--broker', dead]);
  expect(alone.code).toBe(1);
  expect(alone.stderr).toBe(`tributary: cannot reach node at ${dead}: ECONNREFUSED\n`);

  const created = await runCli(['topics', 'create', 'boot', '--partitions', '2', '--broker', `${dead},${alive.url}`]);
  expect(created.stderr).toBe('');
  expect(created.code).toBe(0);
  const listed = await runCli(['topics', 'list', '--broker', alive.url]);
  expect(listed.stdout.split('\n')).toContain('boot');
}, 60_000);
