// Revocation and expiry cut a connection off at once, over real WebSockets: a subscriber
// that sends no request at all is closed the moment its credential is revoked or expires,
// and is pushed no record appended after the revocation. Also: a principal holds at most
// limits.connectionsPerPrincipalMax connections, while others still get in.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCredential, verifyCredential } from '../protocol/credential.js';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION, type Frame } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { encodeBatch, splitBatches, lastOffsetOf } from '../protocol/record-batch.js';
import { REVOCATIONS_TOPIC, revocationKey, signRevocation, type RevocationTarget } from '../protocol/revocation.js';
import { CloseCode } from '../protocol/transport.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { holder as fleetHolder, type Holder } from './helpers/credentials.js';
import { metricSample, scrapeMetrics } from './helpers/metrics.js';
import { RawClient } from './helpers/raw-client.js';

const fleet = generateIdentity();
const holder = (claims: Parameters<typeof fleetHolder>[1]): Holder => fleetHolder(fleet, claims);
const TOPIC = 'sensors.temp';



const admin = holder({ role: 'admin' });
let dataDir: string;
let broker: Broker;
let op: RawClient;
const clients: RawClient[] = [];

async function hello(who: Holder): Promise<{ client: RawClient; answer: { error?: number; message?: string } }> {
  const client = await RawClient.connect(broker.url, { hello: false, identity: who.identity, credential: who.credential });
  clients.push(client);
  const answer = await client.request<{ error?: number; message?: string }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'cutoff-test' });
  return { client, answer };
}

async function admitted(who: Holder): Promise<RawClient> {
  const { client, answer } = await hello(who);
  expect(answer.error ?? 0).toBe(0);
  return client;
}

async function produce(values: string[]): Promise<number> {
  const answer = await op.request<{ partitions: { error: number; baseOffset: number }[] }>(Kind.Produce, {
    acks: 1,
    partitions: [{ topic: TOPIC, partition: 0, records: encodeBatch(values.map((v) => ({ value: Buffer.from(v) }))) }],
  });
  expect(answer.partitions[0].error).toBe(0);
  return answer.partitions[0].baseOffset;
}

async function revoke(target: RevocationTarget, reason: string): Promise<void> {
  const answer = await op.request<{ partitions: { error: number }[] }>(Kind.Produce, {
    acks: 1,
    partitions: [{ topic: REVOCATIONS_TOPIC, partition: 0, records: encodeBatch([{ key: Buffer.from(revocationKey(target)), value: signRevocation(fleet, target, { reason }) }]) }],
  });
  expect(answer.partitions[0].error).toBe(0);
}

/** Subscribes from offset 0 with credit to spare; resolves once the subscription is on. */
async function subscribe(client: RawClient): Promise<void> {
  const answer = await client.request<{ error: number; partitions: { error: number }[] }>(Kind.Subscribe, {
    creditBytes: 1024 * 1024,
    partitions: [{ topic: TOPIC, partition: 0, fetchOffset: 0 }],
  });
  expect([answer.error, answer.partitions[0].error]).toEqual([0, 0]);
}

/** The last offset of every record pushed to `client` so far. */
async function pushedLastOffset(client: RawClient): Promise<number> {
  let last = -1;
  for (let push: Frame | null; (push = await client.nextPush(0)) !== null; ) {
    for (const p of (push.body as { partitions: { records: Uint8Array }[] }).partitions) {
      for (const batch of splitBatches(Buffer.from(p.records))) last = Math.max(last, lastOffsetOf(batch));
    }
  }
  return last;
}

async function closedCount(reason: string): Promise<number> {
  return (await metricSample(broker.port, `tributary_connections_closed_total{reason="${reason}"}`)) || 0;
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-cutoff-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, limits: { connectionsPerPrincipalMax: 2 } });
  op = await admitted(admin);
  const created = await op.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics: [{ name: TOPIC, partitions: 1 }] });
  expect(created.topics[0].error).toBe(0);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('revocation and expiry cut off at once', () => {
  it('a silent subscriber is closed when its credential is revoked, and is pushed nothing appended after', async () => {
    const reader = holder({ role: 'app', consume: ['sensors.*'] });
    const bystander = holder({ role: 'app', consume: ['sensors.*'] });
    const sub = await admitted(reader);
    const other = await admitted(bystander);
    await subscribe(sub);
    await subscribe(other);
    const before = await produce(['a', 'b']);
    // Pushes reach it while it may read.
    const first = await sub.nextPush(5000);
    expect(first).not.toBeNull();

    await revoke({ credentialId: verifyCredential(reader.credential, fleet.publicKey).id }, 'laptop lost');
    const after = await produce(['c', 'd', 'e']);
    expect(after).toBeGreaterThan(before);
    const closed = await sub.closed;
    expect([closed.code, closed.reason]).toEqual([CloseCode.POLICY_VIOLATION, 'credential revoked: laptop lost']);
    expect(await pushedLastOffset(sub)).toBeLessThan(after);
    expect(await closedCount('credential_revoked')).toBeGreaterThanOrEqual(1);
    // The other subscriber of the same rights, another key, is served on.
    let reached = -1;
    while (reached < after + 2) {
      const push = await other.nextPush(5000);
      expect(push).not.toBeNull();
      for (const p of (push?.body as { partitions: { records: Uint8Array }[] }).partitions) {
        for (const batch of splitBatches(Buffer.from(p.records))) reached = Math.max(reached, lastOffsetOf(batch));
      }
    }
  });

  it('revoking a subject key closes every connection of that key, whichever credential it holds', async () => {
    const identity = generateIdentity();
    const claims = { subject: identity.publicKey, role: 'app', produce: [], consume: ['sensors.*'], expiresAt: Date.now() + 86_400_000 } as const;
    const one = await admitted({ identity, credential: issueCredential(fleet, { ...claims, consume: [...claims.consume], produce: [] }) });
    const two = await admitted({ identity, credential: issueCredential(fleet, { ...claims, consume: [...claims.consume], produce: [] }) });
    await subscribe(one);
    await revoke({ subject: identity.publicKey }, 'key leaked');
    for (const c of [one, two]) expect((await c.closed).reason).toBe('subject key revoked: key leaked');
  });

  it('a silent subscriber is closed when its credential expires', async () => {
    const reader = holder({ role: 'app', consume: ['sensors.*'], expiresAt: Date.now() + 1500 });
    const sub = await admitted(reader);
    await subscribe(sub);
    const closed = await sub.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/^credential expired at /);
    expect(await closedCount('credential_expired')).toBeGreaterThanOrEqual(1);
  });
});

describe('connections per principal', () => {
  it('a principal past limits.connectionsPerPrincipalMax is answered THROTTLED at Hello; others get in, and so does it once one closes', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const a = await admitted(device);
    await admitted(device);
    const { client: third, answer } = await hello(device);
    expect([answer.error, answer.message]).toEqual([Errors.THROTTLED.code, expect.stringMatching(/2 connections open already \(limits\.connectionsPerPrincipalMax\)/)]);
    expect((await third.closed).code).toBe(CloseCode.POLICY_VIOLATION);
    await admitted(holder({ role: 'device', produce: ['sensors.*'] }));
    a.close();
    await a.closed;
    // The node learns of the close as the socket ends; the next Hello waits for nothing else.
    let retried = await hello(device);
    for (let attempt = 0; retried.answer.error === Errors.THROTTLED.code && attempt < 50; attempt++) {
      await retried.client.closed;
      retried = await hello(device);
    }
    expect(retried.answer.error ?? 0).toBe(0);
    expect(await closedCount('connections_per_principal')).toBeGreaterThanOrEqual(1);
    const text = await scrapeMetrics(broker.port);
    expect(text).toMatch(/tributary_limits_reached_total\{limit="connectionsPerPrincipalMax"\} [1-9]/);
  });
});
