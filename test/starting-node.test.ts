// A node binds its port before it opens storage (which after a crash checks every
// partition's tail): in between it is up but not serving. Probes see 503, sockets are told
// to try again later (1013), and a client that keeps trying is admitted once it serves.

import { afterEach, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { Kind } from '../protocol/frames.js';
import { CloseCode } from '../protocol/transport.js';
import { Client, webSocketTransportFactory } from '../devices/client.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { tempDir } from './helpers/node-process.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const clean of cleanups.splice(0).reverse()) await clean();
});

it('while storage opens: /healthz and /metrics answer 503, a WebSocket is closed with 1013, and a client that keeps trying gets in once the node serves', async () => {
  const dir = tempDir();
  cleanups.push(() => dir.remove());
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let bound: (port: number) => void = () => {};
  const portKnown = new Promise<number>((resolve) => (bound = resolve));
  const starting = startBroker({
    dataDir: dir.path,
    port: 0,
    logger: silentLogger,
    faults: {
      beforeStorageOpens: async (port) => {
        bound(port);
        await held;
      },
    },
  });
  cleanups.push(async () => {
    release();
    await (await starting).close();
  });
  const port = await portKnown;

  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  expect([health.status, health.headers.get('retry-after'), await health.json()]).toEqual([503, '1', { status: 'starting' }]);
  const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect([metrics.status, metrics.headers.get('retry-after'), await metrics.text()]).toEqual([503, '1', 'the node is starting: its metrics exist once storage is open\n']);

  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1`);
  ws.on('error', () => {});
  const closed = await new Promise<[number, string]>((resolve) => ws.once('close', (code, reason) => resolve([code, reason.toString()])));
  expect(closed).toEqual([CloseCode.TRY_AGAIN_LATER, 'node starting']);

  // The SDK takes 1013 as "try again": it keeps trying within its connect timeout.
  let attempts = 0;
  const open = webSocketTransportFactory();
  const connecting = Client.connect(`ws://127.0.0.1:${port}/v1`, {
    connectTimeoutMs: 60_000,
    transportFactory: (url, options) => {
      attempts++;
      return open(url, options);
    },
  });
  await vi.waitFor(() => expect(attempts).toBeGreaterThanOrEqual(2), { timeout: 10_000, interval: 20 });
  release();
  const broker: Broker = await starting;
  const client = await connecting;
  cleanups.push(() => client.close());
  expect(await client.request(Kind.Metadata, { topics: [] })).toMatchObject({ topics: [] });
  const served = await fetch(`http://127.0.0.1:${broker.port}/healthz`);
  expect([served.status, ((await served.json()) as { status: string }).status]).toEqual([200, 'ok']);
});
