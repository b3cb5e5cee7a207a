// Committed offsets are bounded per principal and node-wide, over real WebSockets: one
// principal committing to group after group is refused with RESOURCE_LIMIT naming the
// limit, while another principal's commits go on; and a restart loads no more than the
// node-wide limits, however much the topic holds.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { startBroker, type Broker, type BrokerOptions } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { holder as fleetHolder, type Holder } from './helpers/credentials.js';
import { scrapeMetrics, sampleOf } from './helpers/metrics.js';
import { RawClient } from './helpers/raw-client.js';
import { clockAt } from '../protocol/clock.js';

const fleet = generateIdentity();
const holder = (claims: Parameters<typeof fleetHolder>[1]): Holder => fleetHolder(fleet, claims);
const TOPIC = 'sensors.temp';



const attacker = holder({ role: 'app', consume: ['sensors.*'], groups: ['*'] });
const billing = holder({ role: 'app', consume: ['sensors.*'], groups: ['billing'] });
const admin = holder({ role: 'admin' });

const dataDir = mkdtempSync(join(tmpdir(), 'tributary-offsets-limits-'));
const clients: RawClient[] = [];
let broker: Broker | undefined;

async function start(limits: BrokerOptions['limits']): Promise<Broker> {
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, limits });
  return broker;
}

async function client(who: Holder): Promise<RawClient> {
  const c = await RawClient.connect((broker as Broker).url, { hello: false, identity: who.identity, credential: who.credential });
  expect((await c.request<{ error?: number }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'offsets-limits' })).error ?? 0).toBe(0);
  clients.push(c);
  return c;
}

type CommitAnswer = { error?: number; message?: string; partitions?: { error: number; message?: string }[] };

function commit(c: RawClient, groupId: string, offset: number, metadata = ''): Promise<CommitAnswer> {
  return c.request<CommitAnswer>(Kind.OffsetCommit, { groupId, offsets: [{ topic: TOPIC, partition: 0, offset, metadata }] });
}

async function metrics(): Promise<string> {
  return scrapeMetrics((broker as Broker).port);
}

afterAll(async () => {
  for (const c of clients) c.close();
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('committed offsets are bounded', () => {
  it('one principal committing to group after group is stopped at its limit while another commits on; a restart loads within the node-wide limits', async () => {
    await start({ offsetGroupsPerPrincipalMax: 20, offsetMetadataBytesPerPrincipalMax: 64 * 1024 });
    const a = await client(admin);
    expect((await a.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics: [{ name: TOPIC, partitions: 1 }] })).topics[0].error).toBe(0);
    const bad = await client(attacker);
    const good = await client(billing);

    // The attacker's commits and the app's interleave on the node.
    const flood = Array.from({ length: 60 }, (_, i) => commit(bad, `spam-${i}`, i, 'x'.repeat(1000)));
    const legit = Array.from({ length: 10 }, (_, i) => commit(good, 'billing', i));
    const [floodAnswers, legitAnswers] = await Promise.all([Promise.all(flood), Promise.all(legit)]);
    const outcomes = floodAnswers.map((r) => r.partitions?.[0].error);
    expect(outcomes.filter((e) => e === 0)).toHaveLength(20);
    expect(outcomes.filter((e) => e === Errors.RESOURCE_LIMIT.code)).toHaveLength(40);
    expect(floodAnswers.find((r) => r.partitions?.[0].error !== 0)?.partitions?.[0].message).toMatch(/limits\.offsetGroupsPerPrincipalMax/);
    expect(legitAnswers.every((r) => r.partitions?.[0].error === 0)).toBe(true);
    // Its metadata is bounded too: 20 groups hold 20,000 bytes; 45 KiB more is refused.
    const heavy = await commit(bad, 'spam-0', 99, 'y'.repeat(4096));
    expect(heavy.partitions?.[0].error).toBe(0);
    const answers = await Promise.all(Array.from({ length: 19 }, (_, i) => commit(bad, `spam-${i + 1}`, 99, 'y'.repeat(4096))));
    expect(answers.map((r) => r.partitions?.[0].message).find((m) => m !== undefined)).toMatch(/limits\.offsetMetadataBytesPerPrincipalMax/);

    const text = await metrics();
    expect(text).toMatch(/tributary_limits_reached_total\{limit="offsetGroupsPerPrincipalMax"\} 40/);
    expect(sampleOf(text, 'tributary_committed_offset_groups')).toBe(21);

    // Restarted with a node-wide bound below what the topic holds: the start loads within it.
    for (const c of clients.splice(0)) c.close();
    await (broker as Broker).close();
    await start({ offsetGroupsMax: 5 });
    const after = await metrics();
    expect(sampleOf(after, 'tributary_committed_offset_groups')).toBe(5);
    expect(sampleOf(after, 'tributary_committed_offsets_skipped_at_start')).toBeGreaterThan(0);
    // And a new group is refused node-wide, naming the limit.
    const c = await client(attacker);
    const refused = await commit(c, 'spam-new', 1);
    expect(refused.partitions?.[0]).toEqual({ topic: TOPIC, partition: 0, error: Errors.RESOURCE_LIMIT.code, message: expect.stringMatching(/5 groups \(limits\.offsetGroupsMax\)/) });
  });

  it("the retention job deletes an empty group's offsets past limits.offsetsRetentionMs, and deleting a topic deletes its offsets", async () => {
    for (const c of clients.splice(0)) c.close();
    await (broker as Broker).close();
    let clock = Date.now();
    broker = await startBroker({ dataDir, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, clock: clockAt(() => clock), limits: { offsetsRetentionMs: 60_000 } });
    const c = await client(billing);
    expect((await commit(c, 'billing', 3)).partitions?.[0].error).toBe(0);
    const a = await client(admin);
    expect((await a.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics: [{ name: 'sensors.gone', partitions: 1 }] })).topics[0].error).toBe(0);
    expect((await c.request<CommitAnswer>(Kind.OffsetCommit, { groupId: 'billing', offsets: [{ topic: 'sensors.gone', partition: 0, offset: 1 }] })).partitions?.[0].error).toBe(0);
    expect((await a.request<{ topics: { error: number }[] }>(Kind.DeleteTopics, { topics: ['sensors.gone'] })).topics[0].error).toBe(0);
    const fetched = await c.request<{ partitions: { topic: string }[] }>(Kind.OffsetFetch, { groupId: 'billing' });
    expect(fetched.partitions.map((p) => p.topic)).not.toContain('sensors.gone');

    await (broker as Broker).maintenance.runNow('retention');
    expect(sampleOf(await metrics(), 'tributary_committed_offset_groups')).toBeGreaterThan(0);
    clock += 61_000;
    await (broker as Broker).maintenance.runNow('retention');
    const after = await c.request<{ partitions: unknown[] }>(Kind.OffsetFetch, { groupId: 'billing' });
    expect(after.partitions).toEqual([]);
  });
});
