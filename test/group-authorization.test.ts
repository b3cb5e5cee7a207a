// Consumer groups under attack, over real WebSockets: a node with a fleet key, a billing app
// reading its topic through its group, and principals that try to take the group from it
// (a device, another team's app, a thief of a member id, a commit from outside). What must
// hold: each is refused with a typed error, the app reads every record, and nobody learns
// of groups it may not use.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { connect, type Connection } from '../devices/index.js';
import { holder as fleetHolder, type Holder } from './helpers/credentials.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { RawClient } from './helpers/raw-client.js';

const fleet = generateIdentity();
const holder = (claims: Parameters<typeof fleetHolder>[1]): Holder => fleetHolder(fleet, claims);
const TOPIC = 'sensors.billing';
const WAIT = { timeout: 20_000, interval: 20 };



const admin = holder({ role: 'admin' });
const billingApp = holder({ role: 'app', consume: ['sensors.*'], groups: ['billing'] });
// Another key of the same team: same rights, another principal.
const billingColleague = holder({ role: 'app', consume: ['sensors.*'], groups: ['billing'] });
const opsApp = holder({ role: 'app', consume: ['sensors.*'], groups: ['ops.*'] });
// A device whose topic patterns reach everything still has no group.
const device = holder({ role: 'device', produce: ['*'], consume: ['*'] });
// Issued without groups: an app's default is its consume patterns.
const legacyApp = holder({ role: 'app', consume: ['sensors.*'] });

let dataDir: string;
let broker: Broker;
const opened: (Connection | RawClient)[] = [];

async function raw(who: Holder): Promise<RawClient> {
  const client = await RawClient.connect(broker.url, { hello: false, identity: who.identity, credential: who.credential });
  const answer = await client.request<{ error?: number }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'group-auth-test' });
  expect(answer.error ?? 0).toBe(0);
  opened.push(client);
  return client;
}

async function sdk(who: Holder): Promise<Connection> {
  const conn = await connect(broker.url, { ...who, nodePublicKey: broker.publicKey, clientId: 'group-auth-test' });
  opened.push(conn);
  return conn;
}

type Answer = { error?: number; message?: string; memberId?: string; memberEpoch?: number; assignment?: { topic: string; partitions: number[] }[] };

function heartbeat(c: RawClient, body: Record<string, unknown>): Promise<Answer> {
  return c.request<Answer>(Kind.ConsumerGroupHeartbeat, { memberId: '', memberEpoch: 0, ownedPartitions: [], ...body });
}

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tributary-group-auth-'));
  broker = await startBroker({ dataDir, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, groupHeartbeatIntervalMs: 50 });
  const conn = await sdk(admin);
  await conn.admin().createTopic(TOPIC, { partitions: 2 });
});

afterAll(async () => {
  for (const c of opened) {
    if (c instanceof RawClient) c.close();
    else await c.close().catch(() => undefined);
  }
  await broker?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('consumer groups are authorized', () => {
  it('no one else can join, commit to, read or describe the billing group, and the app reads every record meanwhile', async () => {
    const app = await sdk(billingApp);
    const member = app.groupConsumer<'string'>({ groupId: 'billing', topics: [TOPIC], valueDecoding: 'string', autoOffsetReset: 'earliest' });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const record of member) seen.push(record.value ?? '');
    })().catch(() => undefined);
    await vi.waitFor(() => expect(member.assignment).toHaveLength(2), WAIT);

    for (const attacker of [device, opsApp]) {
      const c = await raw(attacker);
      const join = await heartbeat(c, { groupId: 'billing', subscribedTopics: [TOPIC] });
      expect([join.error, join.message]).toEqual([Errors.UNAUTHORIZED.code, expect.stringMatching(/may not use group 'billing'/)]);
      const commit = await c.request<Answer>(Kind.OffsetCommit, { groupId: 'billing', offsets: [{ topic: TOPIC, partition: 0, offset: 1_000_000 }] });
      expect(commit.error).toBe(Errors.UNAUTHORIZED.code);
      expect((await c.request<Answer>(Kind.OffsetFetch, { groupId: 'billing' })).error).toBe(Errors.UNAUTHORIZED.code);
      expect((await c.request<Answer>(Kind.DescribeGroup, { groupId: 'billing' })).error).toBe(Errors.UNAUTHORIZED.code);
      // Not even whether a group exists: one that does not answers the same.
      expect((await c.request<Answer>(Kind.DescribeGroup, { groupId: 'billing-archive' })).error).toBe(Errors.UNAUTHORIZED.code);
      const listed = await c.request<{ groups: { groupId: string }[] }>(Kind.ListGroups, {});
      expect(listed.groups.map((g) => g.groupId)).not.toContain('billing');
    }

    const producer = (await sdk(admin)).producer({ lingerMs: 0 });
    await producer.sendBatch(TOPIC, Array.from({ length: 10 }, (_, i) => ({ partition: i % 2, value: `r${i}` })));
    await vi.waitFor(() => expect(seen).toHaveLength(10), WAIT);
    expect(seen.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`).sort());
    expect(member.assignment).toHaveLength(2);

    const metrics = await scrapeMetrics(broker.port);
    expect(metrics).toMatch(/tributary_requests_unauthorized_total\{action="group"\} (\d+)/);
    await member.close();
    await reading;
  });

  it("a member id is its principal's: another principal cannot heartbeat, leave or commit with it", async () => {
    const owner = await raw(billingApp);
    const joined = await heartbeat(owner, { groupId: 'billing', subscribedTopics: [TOPIC] });
    expect(joined.error).toBe(0);
    const thief = await raw(billingColleague);
    const stolen = { groupId: 'billing', memberId: joined.memberId, memberEpoch: joined.memberEpoch };
    expect((await heartbeat(thief, { ...stolen, ownedPartitions: [] })).error).toBe(Errors.UNAUTHORIZED.code);
    expect((await heartbeat(thief, { ...stolen, memberEpoch: -1 })).error).toBe(Errors.UNAUTHORIZED.code);
    const commit = await thief.request<Answer>(Kind.OffsetCommit, { ...stolen, offsets: [{ topic: TOPIC, partition: 0, offset: 3 }] });
    expect([commit.error, commit.message]).toEqual([Errors.UNAUTHORIZED.code, expect.stringMatching(/belongs to another principal/)]);
    // The owner's member is untouched.
    const again = await heartbeat(owner, { ...stolen, ownedPartitions: joined.assignment });
    expect([again.error, again.memberId]).toEqual([0, joined.memberId]);
    await heartbeat(owner, { ...stolen, memberEpoch: -1 });
  });

  it('commits are fenced by member epoch; from outside the group only while it has no members', async () => {
    const c = await raw(billingApp);
    const joined = await heartbeat(c, { groupId: 'billing', subscribedTopics: [TOPIC] });
    const offsets = [{ topic: TOPIC, partition: 0, offset: 4 }];
    const outside = await c.request<Answer>(Kind.OffsetCommit, { groupId: 'billing', offsets });
    expect([outside.error, outside.message]).toEqual([Errors.NON_EMPTY_GROUP.code, expect.stringMatching(/1 live member; commits from outside the group/)]);
    const zombie = await c.request<Answer>(Kind.OffsetCommit, { groupId: 'billing', memberId: joined.memberId, memberEpoch: (joined.memberEpoch ?? 0) + 5, offsets });
    expect(zombie.error).toBe(Errors.FENCED_MEMBER_EPOCH.code);
    const ok = await c.request<{ partitions: { error: number }[] }>(Kind.OffsetCommit, { groupId: 'billing', memberId: joined.memberId, memberEpoch: joined.memberEpoch, offsets });
    expect(ok.partitions.map((p) => p.error)).toEqual([0]);
    await heartbeat(c, { groupId: 'billing', memberId: joined.memberId, memberEpoch: -1 });
    // Empty now: a reset from outside goes through.
    const reset = await c.request<{ partitions: { error: number }[] }>(Kind.OffsetCommit, { groupId: 'billing', offsets: [{ topic: TOPIC, partition: 0, offset: 0 }] });
    expect(reset.partitions.map((p) => p.error)).toEqual([0]);
  });

  it('a credential issued before groups existed keeps working by its role default: an app, the groups its consume patterns match', async () => {
    const c = await raw(legacyApp);
    const allowed = await heartbeat(c, { groupId: 'sensors.dashboard', subscribedTopics: [TOPIC] });
    expect(allowed.error).toBe(0);
    expect((await heartbeat(c, { groupId: 'billing', subscribedTopics: [TOPIC] })).error).toBe(Errors.UNAUTHORIZED.code);
    const listed = await c.request<{ groups: { groupId: string }[] }>(Kind.ListGroups, {});
    expect(listed.groups.map((g) => g.groupId)).toEqual(['sensors.dashboard']);
    await heartbeat(c, { groupId: 'sensors.dashboard', memberId: allowed.memberId, memberEpoch: -1 });
  });

  it('the SDK member commits with its member id and epoch, so its commits pass while it is in the group', async () => {
    const app = await sdk(billingApp);
    const member = app.groupConsumer<'string'>({ groupId: 'billing', topics: [TOPIC], valueDecoding: 'string', autoCommit: false, autoOffsetReset: 'earliest' });
    const iterator = member[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    await member.commit();
    const reader = await raw(billingApp);
    const fetched = await reader.request<{ partitions: { partition: number; offset: number }[] }>(Kind.OffsetFetch, { groupId: 'billing', partitions: [{ topic: TOPIC, partition: first.value?.partition }] });
    expect(fetched.partitions[0].offset).toBe((first.value?.offset ?? -2) + 1);
    await member.close();
  });

  it('an SDK member refused the group fails with UNAUTHORIZED, not a retry loop', async () => {
    const conn = await sdk(opsApp);
    const member = conn.groupConsumer({ groupId: 'billing', topics: [TOPIC] });
    const err = await member[Symbol.asyncIterator]()
      .next()
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).code).toBe(Errors.UNAUTHORIZED.code);
    await member.close();
  });
});
