// Bytes of requests a principal makes the node hold, over real WebSockets: long-poll
// Fetches padded with megabytes the node must keep until they answer, and frames larger
// than the principal may have in the node at once. What must hold: past
// limits.inflightBytesPerPrincipalMax the requests are answered THROTTLED at once (and an
// unfinished frame ends its connection with 1013), the bytes held stay within the bound,
// and another principal is served all the while.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { CloseCode } from '../protocol/transport.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { holder as fleetHolder, type Holder } from './helpers/credentials.js';
import { metricSample, scrapeMetrics } from './helpers/metrics.js';
import { RawClient } from './helpers/raw-client.js';
import { until } from './helpers/until.js';

const MIB = 1024 * 1024;
const PER_PRINCIPAL_MAX = 8 * MIB;
const PADDING = 3 * MIB;
const fleet = generateIdentity();
const holder = (claims: Parameters<typeof fleetHolder>[1]): Holder => fleetHolder(fleet, claims);
const attacker = holder({ role: 'app', consume: ['commands.*'], produce: ['commands.*'] });
const device = holder({ role: 'device', produce: ['sensors.*'] });
const admin = holder({ role: 'admin' });

let dataDir: string;
let broker: Broker;
const clients: RawClient[] = [];

async function admitted(who: Holder): Promise<RawClient> {
  const c = await RawClient.connect(broker.url, { hello: false, identity: who.identity, credential: who.credential });
  clients.push(c);
  const answer = await c.request<{ error?: number }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'request-memory' });
  expect(answer.error ?? 0).toBe(0);
  return c;
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-request-memory-'));
  broker = await startBroker({
    dataDir,
    port: 0,
    logger: silentLogger,
    auth: { fleetPublicKey: fleet.publicKey },
    limits: { inflightBytesPerPrincipalMax: PER_PRINCIPAL_MAX, fetchWaitMsMax: 20_000 },
  });
  const op = await admitted(admin);
  const created = await op.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics: [{ name: 'commands.a', partitions: 1 }, { name: 'sensors.t', partitions: 1 }] });
  expect(created.topics.map((t) => t.error)).toEqual([0, 0]);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('request bytes per principal', () => {
  it('padded long polls past the bound are answered THROTTLED at once, across connections, while another principal produces', async () => {
    const conns = [await admitted(attacker), await admitted(attacker), await admitted(attacker)];
    // Each waits up to 20 s for data that never comes, holding its padding meanwhile.
    const poll = { maxWaitMs: 20_000, partitions: [{ topic: 'commands.a', partition: 0, fetchOffset: 0 }], padding: 'p'.repeat(PADDING) };
    type Outcome = { error: number; message: string } | 'closed' | 'waiting';
    const live: Outcome[] = [];
    let settled = 0;
    for (const c of conns) {
      for (const id of [c.send(Kind.Fetch, poll), c.send(Kind.Fetch, poll)]) {
        const at = live.push('waiting') - 1;
        void c.response(id).then(
          (f) => (live[at] = f.body as { error: number; message: string }),
          () => (live[at] = 'closed'),
        ).finally(() => settled++);
      }
    }
    // Every poll is settled once each is answered, or cut with its connection, or held in
    // the node's long-poll waiting room, where nothing comes for 20 s.
    await until(() => settled + broker.stats().fetchesWaiting === live.length, 'every poll answered, closed or waiting at the node');
    const outcomes = [...live];
    // At most two fit under 8 MiB; every other one is answered THROTTLED at once, or, when
    // its chunks arrived while the bound was reached, its connection is closed with 1013.
    expect(outcomes.filter((o) => o === 'waiting').length).toBeLessThanOrEqual(2);
    for (const o of outcomes) {
      if (o === 'waiting' || o === 'closed') continue;
      expect([o.error, o.message]).toEqual([Errors.THROTTLED.code, expect.stringMatching(/limits\.inflightBytesPerPrincipalMax/)]);
    }
    expect(outcomes.some((o) => o !== 'waiting')).toBe(true);
    if (outcomes.includes('closed')) expect(await metricSample(broker.port, 'tributary_connections_closed_total{reason="request_bytes_max"}')).toBeGreaterThanOrEqual(1);
    expect(await metricSample(broker.port, 'tributary_request_bytes_held')).toBeLessThanOrEqual(PER_PRINCIPAL_MAX);

    const d = await admitted(device);
    const produced = await d.request<{ partitions: { error: number }[] }>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: 'sensors.t', partition: 0, records: encodeBatch([{ value: Buffer.from('21.5') }]) }],
    });
    expect(produced.partitions[0].error).toBe(0);
    const text = await scrapeMetrics(broker.port);
    expect(text).toMatch(/tributary_limits_reached_total\{limit="inflightBytesPerPrincipalMax"\} [1-9]/);
    for (const c of conns) c.close();
    await vi.waitFor(async () => expect(await metricSample(broker.port, 'tributary_request_bytes_held')).toBe(0), { timeout: 10_000, interval: 50 });
  });

  it('a frame larger than the principal may hold ends its connection with 1013 while it is received, and its bytes are let go', async () => {
    const c = await admitted(attacker);
    c.send(Kind.Produce, { acks: 1, partitions: [{ topic: 'commands.a', partition: 0, records: encodeBatch([{ value: Buffer.alloc(PER_PRINCIPAL_MAX + MIB) }]) }] });
    const closed = await c.closed;
    expect([closed.code, closed.reason]).toEqual([CloseCode.TRY_AGAIN_LATER, expect.stringMatching(/unfinished frames/)]);
    await vi.waitFor(async () => expect(await metricSample(broker.port, 'tributary_request_bytes_held')).toBe(0), { timeout: 10_000, interval: 50 });
    expect(await metricSample(broker.port, 'tributary_connections_closed_total{reason="request_bytes_max"}')).toBeGreaterThanOrEqual(1);
    // Within the bound, the same principal's large produce goes through.
    const ok = await admitted(attacker);
    const answer = await ok.request<{ partitions: { error: number; message?: string }[] }>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: 'commands.a', partition: 0, records: encodeBatch([{ value: Buffer.alloc(MIB / 2) }]) }],
    });
    expect(answer.partitions[0].error).toBe(0);
  });
});
