// Push delivery over a real WebSocket: Subscribe, SubscribeData, Credit and Unsubscribe as
// the node speaks them, byte-level, with the credit bound and every refusal.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Errors } from '../protocol/errors.js';
import { Kind, RESPONSE, type Frame } from '../protocol/frames.js';
import { decodeBatch, encodeBatch, splitBatches } from '../protocol/record-batch.js';
import { issueCredential } from '../protocol/credential.js';
import { generateIdentity } from '../protocol/key-file.js';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';
import { SUBSCRIPTIONS_MAX } from '../node/server/subscriptions.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';

type PushBody = { subscriptionId: number; partitions: { topic: string; partition: number; error: number; message?: string; highWatermark: number; records: Uint8Array }[] };
type SubscribeAnswer = { error: number; subscriptionId: number; partitions: { topic: string; partition: number; error: number; message?: string }[] };

const dir = tempDir();
let broker: Broker;
let admin: RawClient;

async function produce(c: RawClient, topic: string, values: string[], partition = 0): Promise<void> {
  const records = encodeBatch(values.map((v) => ({ value: Buffer.from(v) })));
  const answer = await c.request<{ partitions: { error: number }[] }>(Kind.Produce, { acks: 1, partitions: [{ topic, partition, records }] });
  expect(answer.partitions[0].error).toBe(0);
}

function valuesOf(push: Frame): string[] {
  const body = push.body as unknown as PushBody;
  return body.partitions.flatMap((p) => splitBatches(Buffer.from(p.records)).flatMap((b) => decodeBatch(b).records.map((r) => String(r.value))));
}

async function subscribe(c: RawClient, partitions: { topic: string; partition: number; fetchOffset: number }[], creditBytes: number): Promise<SubscribeAnswer> {
  return c.request<SubscribeAnswer>(Kind.Subscribe, { partitions, creditBytes });
}

beforeAll(async () => {
  broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
  admin = await RawClient.connect(broker.url);
  await admin.request(Kind.CreateTopics, { topics: [{ name: 'live', partitions: 2 }, { name: 'credit', partitions: 1 }, { name: 'doomed', partitions: 1 }] });
});

afterAll(async () => {
  admin?.close();
  await broker?.close();
  dir.remove();
});

describe('Subscribe', () => {
  it('pushes what is there, then what is appended, with no request per batch', async () => {
    await produce(admin, 'live', ['a1', 'a2']);
    const c = await RawClient.connect(broker.url);
    const answer = await subscribe(c, [{ topic: 'live', partition: 0, fetchOffset: 0 }, { topic: 'live', partition: 1, fetchOffset: 0 }], 1 << 20);
    expect(answer.error).toBe(0);
    expect(answer.partitions.map((p) => p.error)).toEqual([0, 0]);
    const first = (await c.nextPush()) as Frame;
    expect(first.kind).toBe(Kind.SubscribeData | RESPONSE);
    // The answer came first, so the client knew the subscription id before any data.
    const kinds = c.received.map((f) => f.kind);
    expect(kinds.indexOf(Kind.Subscribe | RESPONSE)).toBeLessThan(kinds.indexOf(Kind.SubscribeData | RESPONSE));
    expect((first.body as unknown as PushBody).subscriptionId).toBe(answer.subscriptionId);
    expect(valuesOf(first)).toEqual(['a1', 'a2']);
    await produce(admin, 'live', ['b1'], 1);
    await produce(admin, 'live', ['a3'], 0);
    const pushed = [...valuesOf((await c.nextPush()) as Frame), ...valuesOf((await c.nextPush()) as Frame)];
    expect(pushed.sort()).toEqual(['a3', 'b1']);
    c.close();
  });

  it('never pushes past the credit (beyond one whole batch), and goes on when credit is granted', async () => {
    for (let i = 0; i < 5; i++) await produce(admin, 'credit', [`c${i}`.padEnd(200, '.')]);
    const batchBytes = (await admin.request<{ partitions: { records: Uint8Array }[] }>(Kind.Fetch, { maxWaitMs: 0, partitions: [{ topic: 'credit', partition: 0, fetchOffset: 0, maxBytes: 1 }] })).partitions[0].records.length;
    const c = await RawClient.connect(broker.url);
    // Credit for a batch and a half: the first push holds one batch, the second the next
    // (at least one whole batch while any credit is left), then nothing until a grant.
    const answer = await subscribe(c, [{ topic: 'credit', partition: 0, fetchOffset: 0 }], Math.floor(batchBytes * 1.5));
    const got: string[] = [];
    for (let i = 0; i < 2; i++) got.push(...valuesOf((await c.nextPush()) as Frame).map((v) => v.slice(0, 2)));
    expect(got).toEqual(['c0', 'c1']);
    // A round trip on the same connection: any push due would have come before its answer.
    await c.request(Kind.Metadata, { topics: ['credit'] });
    expect(c.pendingPushes).toBe(0);
    c.send(Kind.Credit, { subscriptionId: answer.subscriptionId, bytes: 10 * batchBytes });
    const rest: string[] = [];
    while (rest.length < 3) rest.push(...valuesOf((await c.nextPush()) as Frame).map((v) => v.slice(0, 2)));
    expect(rest).toEqual(['c2', 'c3', 'c4']);
    c.close();
  });

  it('answers each partition it cannot take, and takes the rest', async () => {
    const end = (await admin.request<{ partitions: { offset: number }[] }>(Kind.ListOffsets, { partitions: [{ topic: 'live', partition: 0, timestamp: -1 }] })).partitions[0].offset;
    const c = await RawClient.connect(broker.url);
    const answer = await subscribe(
      c,
      [
        { topic: 'live', partition: 0, fetchOffset: end + 5 },
        { topic: 'nope', partition: 0, fetchOffset: 0 },
        { topic: 'live', partition: 1, fetchOffset: 0 },
        { topic: 'live', partition: 1, fetchOffset: 0 },
      ],
      1 << 20,
    );
    expect(answer.partitions.map((p) => p.error)).toEqual([Errors.OFFSET_OUT_OF_RANGE.code, Errors.UNKNOWN_TOPIC.code, 0, Errors.INVALID_REQUEST.code]);
    c.close();
  });

  it('a deleted topic is pushed once as UNKNOWN_TOPIC and leaves the subscription', async () => {
    const c = await RawClient.connect(broker.url);
    const answer = await subscribe(c, [{ topic: 'doomed', partition: 0, fetchOffset: 0 }], 1 << 20);
    await admin.request(Kind.DeleteTopics, { topics: ['doomed'] });
    await admin.request(Kind.CreateTopics, { topics: [{ name: 'doomed', partitions: 1 }] });
    // The next wake (here a grant) finds the subscribed log gone.
    c.send(Kind.Credit, { subscriptionId: answer.subscriptionId, bytes: 1 });
    const gone = (await c.nextPush()) as Frame;
    const body = gone.body as unknown as PushBody;
    expect(body.partitions.map((p) => [p.topic, p.error])).toEqual([['doomed', Errors.UNKNOWN_TOPIC.code]]);
    // The recreated topic is another log: what is appended there is not pushed.
    await produce(admin, 'doomed', ['new']);
    c.send(Kind.Credit, { subscriptionId: answer.subscriptionId, bytes: 1 });
    await c.request(Kind.Metadata, {});
    expect(c.pendingPushes).toBe(0);
    c.close();
  });


  it('a late grant for an ended subscription is no error, but a malformed one is answered as malformed', async () => {
    const c = await RawClient.connect(broker.url);
    const answer = await subscribe(c, [{ topic: 'live', partition: 0, fetchOffset: 0 }], 1 << 20);
    expect((await c.request<{ error: number }>(Kind.Unsubscribe, { subscriptionId: answer.subscriptionId })).error).toBe(0);
    // Well formed: the subscription may have just ended on the node's side; no answer.
    const late = c.send(Kind.Credit, { subscriptionId: answer.subscriptionId, bytes: 1 });
    // Malformed: the body is read before the node looks for the subscription, so it is
    // refused whatever became of it.
    const malformed = await c.request<{ error: number; message: string }>(Kind.Credit, { subscriptionId: answer.subscriptionId, bytes: -1 });
    expect(malformed.error).toBe(Errors.INVALID_REQUEST.code);
    expect(malformed.message).toMatch(/^bytes must be an integer from 0/);
    // Answers come in order of handling here: the Metadata answer is after any to the late grant.
    await c.request(Kind.Metadata, {});
    expect(c.received.filter((f) => f.correlationId === late)).toEqual([]);
    c.close();
  });
  it('Unsubscribe stops pushes; a connection holds at most SUBSCRIPTIONS_MAX subscriptions', async () => {
    const c = await RawClient.connect(broker.url);
    const answer = await subscribe(c, [{ topic: 'live', partition: 1, fetchOffset: 0 }], 1 << 20);
    await c.nextPush();
    expect((await c.request<{ error: number }>(Kind.Unsubscribe, { subscriptionId: answer.subscriptionId })).error).toBe(0);
    await produce(c, 'live', ['after'], 1);
    expect(c.pendingPushes).toBe(0);
    const again = await c.request<{ error: number; message: string }>(Kind.Unsubscribe, { subscriptionId: answer.subscriptionId });
    expect(again.error).toBe(Errors.INVALID_REQUEST.code);
    for (let i = 0; i < SUBSCRIPTIONS_MAX; i++) expect((await subscribe(c, [], 0)).error).toBe(0);
    const over = await c.request<{ error: number; message: string }>(Kind.Subscribe, { partitions: [], creditBytes: 0 });
    expect(over.error).toBe(Errors.INVALID_REQUEST.code);
    expect(over.message).toMatch(/at most 16 subscriptions/);
    c.close();
  });
});

describe('Subscribe with ACLs', () => {
  const fleetDir = tempDir();
  const fleet = generateIdentity();
  let secured: Broker;

  beforeAll(async () => {
    secured = await startBroker({ dataDir: fleetDir.path, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey } });
  });

  afterAll(async () => {
    await secured?.close();
    fleetDir.remove();
  });

  it('a partition the principal may not consume is refused; the rest is served', async () => {
    const issue = (role: 'admin' | 'app', consume: string[]) => {
      const identity = generateIdentity();
      return { identity, credential: issueCredential(fleet, { subject: identity.publicKey, role, produce: [], consume, expiresAt: Date.now() + 60_000 }) };
    };
    const op = issue('admin', []);
    const a = await RawClient.connect(secured.url, { ...op, nodePublicKey: secured.publicKey });
    await a.request(Kind.CreateTopics, { topics: [{ name: 'sensors.t', partitions: 1 }, { name: 'alarms', partitions: 1 }] });
    await produce(a, 'sensors.t', ['21.5']);
    const app = issue('app', ['sensors.*']);
    const c = await RawClient.connect(secured.url, { ...app, nodePublicKey: secured.publicKey });
    const answer = await subscribe(c, [{ topic: 'alarms', partition: 0, fetchOffset: 0 }, { topic: 'sensors.t', partition: 0, fetchOffset: 0 }], 1 << 20);
    expect(answer.partitions.map((p) => p.error)).toEqual([Errors.UNAUTHORIZED.code, 0]);
    expect(answer.partitions[0].message).toMatch(/may not consume from 'alarms'/);
    expect(valuesOf((await c.nextPush()) as Frame)).toEqual(['21.5']);
    a.close();
    c.close();
  });
});
