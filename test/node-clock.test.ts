// A real node on a ManualClock: its deadlines come when the test moves the clock, never
// from waiting. A socket that made its handshake and sends no Hello is closed at
// helloTimeoutMs, not a moment before; keepalive rounds keep a client whose pongs come
// between them and cut every client at a jump over two; a long poll on an empty partition
// is answered, empty, at its maxWaitMs.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { ManualClock } from '../protocol/clock.js';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { CloseCode } from '../protocol/transport.js';
import { metricSample } from './helpers/metrics.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';
import { until } from './helpers/until.js';

const HELLO_TIMEOUT_MS = 10_000;
/** The listener's keepalive round (its PING_INTERVAL_MS). */
const PING_INTERVAL_MS = 30_000;
const clock = new ManualClock();
const dir = tempDir('trib-clock-');
const clients: RawClient[] = [];
let broker: Broker;

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, clock, limits: { helloTimeoutMs: HELLO_TIMEOUT_MS } });
  const admin = await client(true);
  const created = await admin.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics: [{ name: 'quiet', partitions: 1 }] });
  expect(created.topics[0].error).toBe(Errors.NONE.code);
});

afterAll(async () => {
  // Closed before the node, so that its shutdown waits for nobody on a clock that stands still.
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.closed));
  await broker?.close();
  dir.remove();
});

async function client(hello: boolean): Promise<RawClient> {
  const c = await RawClient.connect(broker.url, { hello });
  clients.push(c);
  return c;
}

describe('a node on a manual clock', () => {
  it('closes a socket that sends no Hello when the clock reaches helloTimeoutMs, and not before', async () => {
    const before = broker.stats().connections;
    const late = await client(false);
    const silent = await client(false);
    // Both are served: each one's Hello timer is set, at the same instant of the clock.
    await until(() => broker.stats().connections === before + 2, 'both connections served');
    clock.advance(HELLO_TIMEOUT_MS - 1);
    // A moment before the deadline a Hello is still taken: neither timer has run.
    const answer = await late.request<{ error?: number; nodeId?: string }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'late' });
    expect([answer.error ?? Errors.NONE.code, answer.nodeId]).toEqual([Errors.NONE.code, broker.nodeId]);
    clock.advance(1);
    expect(await silent.closed).toEqual({ code: CloseCode.POLICY_VIOLATION, reason: `no Hello within ${HELLO_TIMEOUT_MS} ms` });
    expect(await metricSample(broker.port, 'tributary_connections_closed_total{reason="hello_timeout"}')).toBe(1);
    // The one that said Hello in time stays when its deadline has long passed. (Not past
    // the keepalive's second round, 60 s in: within one advance() no pong could answer the first.)
    clock.advance(HELLO_TIMEOUT_MS);
    const metadata = await late.request<{ error?: number; topics: { name: string }[] }>(Kind.Metadata, {});
    expect([metadata.error ?? Errors.NONE.code, metadata.topics.map((t) => t.name)]).toEqual([Errors.NONE.code, ['quiet']]);
  });

  it('keeps a client across keepalive rounds when the clock moves in steps its pongs come between, and cuts all at a jump over two', async () => {
    const stepped = await client(true);
    const jumped = await client(true);
    // Three rounds of 30 s, a second a step: every ping is answered before the next round.
    await clock.advanceAsync(3 * PING_INTERVAL_MS, 1000);
    for (const c of [stepped, jumped]) {
      const metadata = await c.request<{ error?: number }>(Kind.Metadata, {});
      expect(metadata.error ?? Errors.NONE.code).toBe(Errors.NONE.code);
    }
    // Two rounds in one advance(): no pong can come between them, so every peer is silent
    // for both and terminated (no close frame: 1006 on the client's side).
    clock.advance(2 * PING_INTERVAL_MS);
    expect([(await stepped.closed).code, (await jumped.closed).code]).toEqual([1006, 1006]);
    await until(() => broker.stats().connections === 0, 'every connection cut');
  });

  it('answers a long poll on an empty partition, empty, when the clock reaches its maxWaitMs', async () => {
    const c = await client(true);
    const id = c.send(Kind.Fetch, { maxWaitMs: 5000, partitions: [{ topic: 'quiet', partition: 0, fetchOffset: 0 }] });
    await until(() => broker.stats().fetchesWaiting === 1, 'the fetch waiting for an append');
    clock.advance(4999);
    // The wait's timer runs within advance(): had it been due, it would have left the room.
    expect(broker.stats().fetchesWaiting).toBe(1);
    clock.advance(1);
    expect(broker.stats().fetchesWaiting).toBe(0);
    const answer = await c.response(id);
    const partition = (answer.body.partitions as { error: number; highWatermark: number; records: Uint8Array }[])[0];
    expect([partition.error, partition.highWatermark, partition.records.length]).toEqual([Errors.NONE.code, 0, 0]);
  });
});
