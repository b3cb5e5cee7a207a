// Clients that never read their answers, over real WebSockets: they pipeline Metadata
// requests (whose answers grow with the node) and stop reading their sockets. What must
// hold: the node stops reading each of them once its queue passes sendBufferBytesMax, the
// bytes queued towards all of them stop growing past sendBufferBytesTotalMax and a share
// each, and a client that reads is served all the while.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { encodeFrame, Kind } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { SEND_SHARE_BYTES } from '../node/server/send-budget.js';
import { metricSample, scrapeMetrics } from './helpers/metrics.js';
import { RawClient } from './helpers/raw-client.js';

const MIB = 1024 * 1024;
const SEND_BUFFER_MAX = 1 * MIB;
const SEND_BUFFER_TOTAL_MAX = 2 * MIB;
const ATTACKERS = 8;
const REQUESTS_EACH = 600;
const WAIT = { timeout: 30_000, interval: 50 };

let dataDir: string;
let broker: Broker;
const clients: RawClient[] = [];

const metricValue = (series: string): Promise<number> => metricSample(broker.port, series);

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-send-budget-'));
  broker = await startBroker({
    dataDir,
    port: 0,
    logger: silentLogger,
    limits: { sendBufferBytesMax: SEND_BUFFER_MAX, sendBufferBytesTotalMax: SEND_BUFFER_TOTAL_MAX },
  });
  const admin = await RawClient.connect(broker.url);
  clients.push(admin);
  // Enough partitions that one Metadata answer is tens of KiB.
  const topics = Array.from({ length: 40 }, (_, i) => ({ name: `wide-${i}`, partitions: 25 }));
  const created = await admin.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics });
  expect(created.topics.every((t) => t.error === 0)).toBe(true);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the send budget', () => {
  it('clients that never read are stopped at their queue and the node-wide budget, while a reader is served', async () => {
    const attackers: RawClient[] = [];
    for (let i = 0; i < ATTACKERS; i++) {
      const c = await RawClient.connect(broker.url);
      clients.push(c);
      attackers.push(c);
      // Stop reading the socket: what the node sends piles up in the kernel, then in the node.
      (c.ws as unknown as { _socket: Socket })._socket.pause();
      for (let n = 0; n < REQUESTS_EACH; n++) c.send(Kind.Metadata, {});
    }
    const answerBytes = encodeFrame(Kind.Metadata, 1, await clients[0].request(Kind.Metadata, {})).length;
    expect(answerBytes).toBeGreaterThan(16 * 1024);

    // The node goes over its total budget and holds the attackers' requests.
    await vi.waitFor(async () => expect(await metricValue('tributary_send_buffer_bytes')).toBeGreaterThan(SEND_BUFFER_TOTAL_MAX), WAIT);
    const reader = await RawClient.connect(broker.url);
    clients.push(reader);
    // A client that reads gets every answer: Metadata, a produce, and what it produced.
    for (let round = 0; round < 5; round++) {
      const meta = await reader.request<{ topics: unknown[] }>(Kind.Metadata, {});
      expect(meta.topics).toHaveLength(40);
      const produced = await reader.request<{ partitions: { error: number; baseOffset: number }[] }>(Kind.Produce, {
        acks: 1,
        partitions: [{ topic: 'wide-0', partition: round, records: encodeBatch([{ value: Buffer.from(`r${round}`) }]) }],
      });
      expect(produced.partitions[0].error).toBe(Errors.NONE.code);
    }

    // What the node queues stays within its total, the one connection that took it past it,
    // and per connection a share and the answers it was writing when it stopped. Each
    // connection alone may queue 1 MiB: eight of them would hold 8 MiB without the total.
    const stats = broker.stats();
    expect(stats.sendBufferedBytes).toBeLessThanOrEqual(SEND_BUFFER_TOTAL_MAX + SEND_BUFFER_MAX + ATTACKERS * (SEND_SHARE_BYTES + 2 * answerBytes));
    expect(ATTACKERS * SEND_BUFFER_MAX).toBeGreaterThan(SEND_BUFFER_TOTAL_MAX + SEND_BUFFER_MAX + ATTACKERS * (SEND_SHARE_BYTES + 2 * answerBytes));
    // And it stopped reading them: most of their requests are still unread.
    const metadataServed = await metricValue('tributary_requests_total{kind="Metadata"}');
    expect(metadataServed).toBeLessThan((ATTACKERS * REQUESTS_EACH) / 2);
    const text = await scrapeMetrics(broker.port);
    expect(text).toMatch(/tributary_limits_reached_total\{limit="sendBufferBytes(Total)?Max"\} [1-9]/);

    // Once they read again, they are answered in full.
    for (const c of attackers) (c.ws as unknown as { _socket: Socket })._socket.resume();
    await vi.waitFor(async () => expect(await metricValue('tributary_requests_total{kind="Metadata"}')).toBeGreaterThanOrEqual(ATTACKERS * REQUESTS_EACH), { timeout: 120_000, interval: 200 });
    await vi.waitFor(async () => expect(await metricValue('tributary_send_buffer_bytes')).toBe(0), WAIT);
  }, 180_000);
});
