// Who gets in, and what they may do, over real WebSockets on loopback: fleet credentials,
// per-request ACLs, revocation and expiry of open connections, dev mode, and every kind of
// bad handshake or sealed frame closed with a typed reason, counted, while the node keeps
// serving everyone else. Also: what crosses the wire holds no plaintext of the records.

import { createServer, connect as tcpConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { Encoder } from 'cbor-x';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCredential, verifyCredential, type CredentialClaims } from '../protocol/credential.js';
import { Errors } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION } from '../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { decodeBatch, encodeBatch, splitBatches } from '../protocol/record-batch.js';
import { REVOCATIONS_TOPIC, revocationKey, signRevocation, type RevocationTarget } from '../protocol/revocation.js';
import { CloseCode } from '../protocol/transport.js';
import { startBroker, type Broker } from '../node/broker.js';
import { EVICTED_REASON } from '../node/server/listener.js';
import { silentLogger } from '../node/logger.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';
import { rawSocket } from './helpers/tcp.js';
import { until } from './helpers/until.js';
import { clockAt } from '../protocol/clock.js';

const DAY = 86_400_000;
const fleet = generateIdentity();

interface Holder {
  identity: IdentityKeyPair;
  credential: Buffer;
}

function holder(claims: Partial<CredentialClaims> & Pick<CredentialClaims, 'role'>, options: { fleet?: IdentityKeyPair; issuedAt?: number } = {}): Holder {
  const identity = generateIdentity();
  const now = options.issuedAt ?? Date.now();
  const credential = issueCredential(
    options.fleet ?? fleet,
    { subject: identity.publicKey, produce: [], consume: [], expiresAt: now + 90 * DAY, ...claims },
    now,
  );
  return { identity, credential };
}

const admin = holder({ role: 'admin' });

type PartitionResults = { partitions: { topic: string; error: number; message?: string; baseOffset?: number; records?: Uint8Array }[] };
type TopicResults = { topics: { name: string; error: number; message?: string; internal?: boolean }[] };

function produce(c: RawClient, topic: string, values: string[], key?: Buffer): Promise<PartitionResults> {
  const records = encodeBatch(values.map((v) => ({ key: key ?? null, value: Buffer.from(v) })));
  return c.request<PartitionResults>(Kind.Produce, { acks: 1, partitions: [{ topic, partition: 0, records }] });
}

function fetchFrom(c: RawClient, topic: string, fetchOffset = 0): Promise<PartitionResults> {
  return c.request<PartitionResults>(Kind.Fetch, { maxWaitMs: 0, partitions: [{ topic, partition: 0, fetchOffset }] });
}

/** Connects with a credential and says Hello; resolves with Hello's answer and the client. */
async function hello(url: string, who?: Holder, nodePublicKey?: Buffer): Promise<{ client: RawClient; answer: { error?: number; message?: string } }> {
  const client = await RawClient.connect(url, { hello: false, identity: who?.identity, credential: who?.credential, nodePublicKey });
  const answer = await client.request<{ error?: number; message?: string }>(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'security-test' });
  return { client, answer };
}

async function expectRefused(url: string, who: Holder | undefined, message: RegExp): Promise<void> {
  const { client, answer } = await hello(url, who);
  expect(answer.error).toBe(Errors.UNAUTHORIZED.code);
  expect(answer.message).toMatch(message);
  const closed = await client.closed;
  expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
  expect(closed.reason).toMatch(message);
}

/** The counter values of one metric family from /metrics, by label value. */
async function counter(broker: Broker, name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{\\w+="([^"]+)"\\} (\\d+)`).exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** Waits until a counter reaches `atLeast` (the close is counted when the socket closes). */
async function counted(broker: Broker, name: string, label: string, atLeast: number): Promise<number> {
  let value = 0;
  await until(async () => (value = (await counter(broker, name)).get(label) ?? 0) >= atLeast, `${name}{${label}} >= ${atLeast}`, { intervalMs: 25 }).catch(() => undefined);
  return value;
}

describe('a node with a fleet key', () => {
  const dir = tempDir();
  let broker: Broker;
  let clock = Date.now();
  const start = (limits = {}) =>
    startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, auth: { fleetPublicKey: fleet.publicKey }, clock: clockAt(() => clock), limits: { helloTimeoutMs: 2000, ...limits } });

  beforeAll(async () => {
    broker = await start();
    const { client, answer } = await hello(broker.url, admin);
    expect(answer.error ?? 0).toBe(0);
    const created = await client.request<TopicResults>(Kind.CreateTopics, {
      topics: ['sensors.temp', 'sensors.vibration', 'alarms'].map((name) => ({ name, partitions: 1 })),
    });
    expect(created.topics.map((t) => t.error)).toEqual([0, 0, 0]);
    client.close();
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  it('admits a device with a valid credential, within what it may do', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const { client, answer } = await hello(broker.url, device);
    expect(answer.error ?? 0).toBe(0);
    const ok = await produce(client, 'sensors.temp', ['21.5']);
    expect(ok.partitions[0].error).toBe(0);
    client.close();
  });

  it('a credential for sensors.* cannot produce to alarms, and the connection stays usable', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const { client } = await hello(broker.url, device);
    const before = (await counter(broker, 'tributary_requests_unauthorized_total')).get('produce') ?? 0;
    const refused = await produce(client, 'alarms', ['fire']);
    expect(refused.partitions[0].error).toBe(Errors.UNAUTHORIZED.code);
    expect(refused.partitions[0].message).toMatch(/may not produce to 'alarms'/);
    // Nothing reached the log, and the same connection goes on working.
    expect(broker.logs.partition('alarms', 0)?.logEndOffset).toBe(0);
    expect((await produce(client, 'sensors.vibration', ['0.3'])).partitions[0].error).toBe(0);
    expect((await counter(broker, 'tributary_requests_unauthorized_total')).get('produce')).toBe(before + 1);
    // Nor may it read, create, delete, or write the node's internal topics.
    expect((await fetchFrom(client, 'sensors.temp')).partitions[0].error).toBe(Errors.UNAUTHORIZED.code);
    const created = await client.request<TopicResults>(Kind.CreateTopics, { topics: [{ name: 'sensors.new', partitions: 1 }] });
    expect(created.topics[0].error).toBe(Errors.UNAUTHORIZED.code);
    expect(broker.logs.topic('sensors.new')).toBeUndefined();
    const deleted = await client.request<TopicResults>(Kind.DeleteTopics, { topics: ['sensors.temp'] });
    expect(deleted.topics[0].error).toBe(Errors.UNAUTHORIZED.code);
    expect(broker.logs.topic('sensors.temp')).toBeDefined();
    const revocation = signRevocation(fleet, { credentialId: 'abcdef' });
    const sneaky = await client.request<PartitionResults>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: REVOCATIONS_TOPIC, partition: 0, records: encodeBatch([{ key: Buffer.from('credential:abcdef'), value: revocation }]) }],
    });
    expect(sneaky.partitions[0].error).toBe(Errors.UNAUTHORIZED.code);
    client.close();
  });

  it('a group commits and reads offsets only of topics its principal may consume', async () => {
    const app = holder({ role: 'app', consume: ['sensors.*'], groups: ['dashboards'] });
    const { client } = await hello(broker.url, app);
    const committed = await client.request<{ partitions: { error: number }[] }>(Kind.OffsetCommit, {
      groupId: 'dashboards',
      offsets: [{ topic: 'sensors.temp', partition: 0, offset: 3 }, { topic: 'alarms', partition: 0, offset: 3 }],
    });
    expect(committed.partitions.map((p) => p.error)).toEqual([0, Errors.UNAUTHORIZED.code]);
    const fetched = await client.request<{ partitions: { offset: number; error: number }[] }>(Kind.OffsetFetch, {
      groupId: 'dashboards',
      partitions: [{ topic: 'sensors.temp', partition: 0 }, { topic: 'alarms', partition: 0 }],
    });
    expect(fetched.partitions.map((p) => [p.offset, p.error])).toEqual([[3, 0], [-1, Errors.UNAUTHORIZED.code]]);
    client.close();
  });

  it('a request both malformed and refused is answered for its form: the body is read before any rule, as Kafka parses before it authorizes', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const { client } = await hello(broker.url, device);
    // A Produce part with a bad partition, to a topic the device may not write: that part's
    // form is what is wrong with it first; the good part beside it is served.
    const records = encodeBatch([{ value: Buffer.from('x') }]);
    const produced = await client.request<PartitionResults>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: 'alarms', partition: 'zero', records }, { topic: 'sensors.temp', partition: 0, records }],
    });
    expect(produced.partitions.map((p) => [p.topic, p.error])).toEqual([['alarms', Errors.INVALID_REQUEST.code], ['sensors.temp', 0]]);
    expect(produced.partitions[0].message).toMatch(/^partition must be an integer/);
    expect(broker.logs.partition('alarms', 0)?.logEndOffset).toBe(0);
    client.close();
    // An OffsetCommit whose offset is malformed fails whole, whether or not its topic is one
    // the principal may read or the node has: nothing of it is committed.
    const app = holder({ role: 'app', consume: ['sensors.*'], groups: ['malformed'] });
    const reader = await hello(broker.url, app);
    for (const topic of ['alarms', 'sensors.none', 'sensors.temp']) {
      const answer = await reader.client.request<{ error: number; message?: string }>(Kind.OffsetCommit, {
        groupId: 'malformed',
        offsets: [{ topic: 'sensors.temp', partition: 0, offset: 1 }, { topic, partition: 0, offset: -5 }],
      });
      expect([topic, answer.error, answer.message]).toEqual([topic, Errors.INVALID_REQUEST.code, expect.stringMatching(/^offset must be an integer from 0/)]);
    }
    const fetched = await reader.client.request<{ partitions: { offset: number; error: number }[] }>(Kind.OffsetFetch, { groupId: 'malformed', partitions: [{ topic: 'sensors.temp', partition: 0 }] });
    expect(fetched.partitions.map((p) => [p.offset, p.error])).toEqual([[-1, 0]]);
    reader.client.close();
  });

  it('InitProducerId: only a principal that may produce somewhere gets a producer id', async () => {
    const reader = holder({ role: 'app', consume: ['sensors.*'] });
    const { client: r } = await hello(broker.url, reader);
    const refused = await r.request<{ error: number; message: string }>(Kind.InitProducerId, {});
    expect(refused.error).toBe(Errors.UNAUTHORIZED.code);
    expect(refused.message).toMatch(/may not produce anywhere/);
    r.close();
    const writer = holder({ role: 'device', produce: ['sensors.*'] });
    const { client: w } = await hello(broker.url, writer);
    const a = await w.request<{ error: number; producerId: number; producerEpoch: number }>(Kind.InitProducerId, {});
    const b = await w.request<{ error: number; producerId: number; producerEpoch: number }>(Kind.InitProducerId, {});
    expect([a.error, a.producerEpoch, b.error]).toEqual([0, 0, 0]);
    expect(b.producerId).not.toBe(a.producerId);
    w.close();
  });

  it('Metadata shows only the topics a principal may use, and refuses naming others', async () => {
    const app = holder({ role: 'app', consume: ['sensors.temp'] });
    const { client } = await hello(broker.url, app);
    const all = await client.request<TopicResults>(Kind.Metadata, {});
    expect(all.topics.map((t) => t.name)).toEqual(['sensors.temp']);
    const named = await client.request<TopicResults>(Kind.Metadata, { topics: ['alarms', 'no-such-topic', 'sensors.temp'] });
    // A refusal says nothing about whether the topic exists.
    expect(named.topics.map((t) => t.error)).toEqual([Errors.UNAUTHORIZED.code, Errors.UNAUTHORIZED.code, 0]);
    const fetched = await fetchFrom(client, 'sensors.temp');
    expect(fetched.partitions[0].error).toBe(0);
    client.close();
  });

  it('refuses wrong-fleet, expired, forged and borrowed credentials, and anonymous clients', async () => {
    await expectRefused(broker.url, holder({ role: 'admin' }, { fleet: generateIdentity() }), /another fleet/);
    await expectRefused(broker.url, holder({ role: 'device', expiresAt: Date.now() - DAY }, { issuedAt: Date.now() - 2 * DAY }), /expired/);
    // A forger names our fleet as issuer but can sign only with its own key.
    const forger = generateIdentity();
    const identity = generateIdentity();
    const forged = issueCredential({ publicKey: fleet.publicKey, secretKey: forger.secretKey }, { subject: identity.publicKey, role: 'admin', produce: [], consume: [], expiresAt: Date.now() + DAY });
    await expectRefused(broker.url, { identity, credential: forged }, /signature does not verify/);
    // A valid credential copied from its holder, used with another key.
    await expectRefused(broker.url, { identity: generateIdentity(), credential: admin.credential }, /not the key that made the handshake/);
    await expectRefused(broker.url, undefined, /admits only holders of a fleet credential/);
    expect(await counted(broker, 'tributary_connections_closed_total', 'unauthorized', 5)).toBeGreaterThanOrEqual(5);
  });

  it('a credential crafted to trip its decoder is refused like any other, and gives back its handshake slot', async () => {
    // {v: {toString: 1}}: a message built with String(v) would throw a TypeError.
    const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
    const crafted = Buffer.from(encoder.encode([encoder.encode({ v: { toString: 1 } }), Buffer.alloc(64)]));
    for (let i = 0; i < 3; i++) await expectRefused(broker.url, { identity: generateIdentity(), credential: crafted }, /credential refused: version \(object\) is not 1/);
    await until(() => broker.stats().handshakesInProgress === 0, 'no handshake in progress');
    expect(broker.stats().handshakesInProgress).toBe(0);
  });

  it('a revocation ends open connections at once, refuses new ones, and survives a restart', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const other = holder({ role: 'device', produce: ['sensors.*'] });
    const { client: open } = await hello(broker.url, device);
    expect((await produce(open, 'sensors.temp', ['1'])).partitions[0].error).toBe(0);

    const { client: op } = await hello(broker.url, admin);
    // A record the fleet did not sign is refused, whoever sends it.
    const target: RevocationTarget = { credentialId: verifyCredential(device.credential, fleet.publicKey).id };
    const unsigned = signRevocation(generateIdentity(), target);
    const bad = await op.request<PartitionResults>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: REVOCATIONS_TOPIC, partition: 0, records: encodeBatch([{ key: Buffer.from(revocationKey(target)), value: unsigned }]) }],
    });
    expect(bad.partitions[0].error).toBe(Errors.INVALID_RECORD.code);
    expect((await produce(open, 'sensors.temp', ['2'])).partitions[0].error).toBe(0);

    const revocation = signRevocation(fleet, target, { reason: 'gateway stolen' });
    const good = await op.request<PartitionResults>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: REVOCATIONS_TOPIC, partition: 0, records: encodeBatch([{ key: Buffer.from(revocationKey(target)), value: revocation }]) }],
    });
    expect(good.partitions[0].error).toBe(0);

    // Closed without waiting for its next request, saying why.
    const closed = await open.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/credential revoked: gateway stolen/);
    expect(await counted(broker, 'tributary_connections_closed_total', 'credential_revoked', 1)).toBe(1);
    await expectRefused(broker.url, device, /credential revoked/);
    // Another holder is untouched.
    const { client: fine, answer } = await hello(broker.url, other);
    expect(answer.error ?? 0).toBe(0);
    fine.close();
    op.close();

    await broker.close();
    broker = await start();
    expect(broker.stats().revocations).toBe(1);
    await expectRefused(broker.url, device, /credential revoked/);
  });

  it('a client that pins the node key connects in one round trip (Noise IK), under the same rules', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const sent: Buffer[] = [];
    const client = await RawClient.connect(broker.url, { identity: device.identity, credential: device.credential, nodePublicKey: broker.publicKey, tamper: (m) => (sent.push(m), m) });
    // IK: message 1 (with the credential inside), then straight to the stream header.
    expect(sent[0].length).toBe(96 + device.credential.length);
    expect(sent[1].length).toBe(24);
    expect((await produce(client, 'sensors.temp', ['ik'])).partitions[0].error).toBe(0);
    expect((await produce(client, 'alarms', ['ik'])).partitions[0].error).toBe(Errors.UNAUTHORIZED.code);
    client.close();
    await expectRefusedIK(holder({ role: 'admin' }, { fleet: generateIdentity() }), /another fleet/);
  });

  async function expectRefusedIK(who: Holder, message: RegExp): Promise<void> {
    const { client, answer } = await hello(broker.url, who, broker.publicKey);
    expect(answer.error).toBe(Errors.UNAUTHORIZED.code);
    expect(answer.message).toMatch(message);
    expect((await client.closed).code).toBe(CloseCode.POLICY_VIOLATION);
  }

  it('an IK handshake aimed at another node key fails at message 1', async () => {
    const before = (await counter(broker, 'tributary_connections_closed_total')).get('handshake_failed') ?? 0;
    const c = await RawClient.open(broker.url);
    await expect(c.handshake({ nodePublicKey: generateIdentity().publicKey })).rejects.toThrow(/does not hold the pinned key/);
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toBe('handshake message 1 failed authentication');
    expect(await counted(broker, 'tributary_connections_closed_total', 'handshake_failed', before + 1)).toBe(before + 1);
  });

  it('a replayed IK message 1 gets nowhere: the replayer cannot make a sealed Hello', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'] });
    const sent: Buffer[] = [];
    const original = await RawClient.connect(broker.url, { identity: device.identity, credential: device.credential, nodePublicKey: broker.publicKey, tamper: (m) => (sent.push(m), m) });
    original.close();
    const replay = await RawClient.open(broker.url);
    const message2 = replay.nextWireMessage();
    replay.sendWire(sent[0]);
    await message2; // without the ephemeral key it is useless
    replay.sendWire(sent[1]); // the original stream header: it opens nothing under the new keys
    replay.sendWire(sent[2]); // the original sealed Hello
    const closed = await replay.closed;
    expect(closed.code).toBe(CloseCode.PROTOCOL_ERROR);
    expect(closed.reason).toBe('sealed frame failed authentication');
  });

  it('a credential that expires while its connection is open ends it at the next request', async () => {
    const device = holder({ role: 'device', produce: ['sensors.*'], expiresAt: clock + 60_000 });
    const { client } = await hello(broker.url, device);
    expect((await produce(client, 'sensors.temp', ['ok'])).partitions[0].error).toBe(0);
    clock += 61_000;
    try {
      const late = (await produce(client, 'sensors.temp', ['late'])) as unknown as { error: number; message: string };
      expect(late.error).toBe(Errors.UNAUTHORIZED.code);
      expect(late.message).toMatch(/credential expired/);
      expect((await client.closed).code).toBe(CloseCode.POLICY_VIOLATION);
    } finally {
      clock = Date.now();
    }
  });
});

describe('a node in dev mode (no config)', () => {
  const dir = tempDir();
  let broker: Broker;

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, limits: { handshakeTimeoutMs: 300, helloTimeoutMs: 300 } });
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  it('admits anonymous clients from loopback, and refuses credentials it cannot check', async () => {
    expect(broker.anonymous).toBe('loopback');
    const { client, answer } = await hello(broker.url);
    expect(answer.error ?? 0).toBe(0);
    const created = await client.request<TopicResults>(Kind.CreateTopics, { topics: [{ name: 'dev', partitions: 1 }] });
    expect(created.topics[0].error).toBe(0);
    client.close();
    await expectRefused(broker.url, admin, /no fleet key/);
  });

  it('a replayed handshake fails', async () => {
    // Record what a real client sends, then play its handshake messages to a new connection.
    const sent: Buffer[] = [];
    const original = await RawClient.connect(broker.url, { tamper: (m) => (sent.push(Buffer.from(m)), m) });
    original.close();
    const before = (await counter(broker, 'tributary_connections_closed_total')).get('handshake_failed') ?? 0;
    const replay = await RawClient.open(broker.url);
    const message2 = replay.nextWireMessage();
    replay.sendWire(sent[0]);
    await message2; // the replayer cannot use it
    replay.sendWire(sent[1]);
    const closed = await replay.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/handshake message 3 failed authentication/);
    expect(await counted(broker, 'tributary_connections_closed_total', 'handshake_failed', before + 1)).toBe(before + 1);
  });

  it('garbage, truncated, oversized and silent handshakes are closed with a typed reason, and others are served', async () => {
    const cases: { name: string; send: (c: RawClient) => void; code: number; reason: RegExp; label: string }[] = [
      { name: 'truncated message 1', send: (c) => c.sendWire(Buffer.alloc(10, 7)), code: CloseCode.PROTOCOL_ERROR, reason: /must be 32 bytes/, label: 'handshake_malformed' },
      { name: 'oversized message 1', send: (c) => c.sendWire(Buffer.alloc(5000, 1)), code: CloseCode.TOO_BIG, reason: /.*/, label: 'handshake_too_big' },
      { name: 'text frame', send: (c) => c.ws.send('hello'), code: CloseCode.PROTOCOL_ERROR, reason: /text frames/, label: 'handshake_malformed' },
      { name: 'silence', send: () => {}, code: CloseCode.TRY_AGAIN_LATER, reason: /handshake did not finish within 300 ms/, label: 'handshake_timeout' },
    ];
    for (const k of cases) {
      const before = (await counter(broker, 'tributary_connections_closed_total')).get(k.label) ?? 0;
      const c = await RawClient.open(broker.url);
      k.send(c);
      const closed = await c.closed;
      expect([k.name, closed.code], closed.reason).toEqual([k.name, k.code]);
      expect(closed.reason).toMatch(k.reason);
      expect(await counted(broker, 'tributary_connections_closed_total', k.label, before + 1), k.name).toBe(before + 1);
      const { client, answer } = await hello(broker.url);
      expect(answer.error ?? 0).toBe(0);
      client.close();
    }
  });

  it('garbage message 3 fails authentication', async () => {
    const c = await RawClient.open(broker.url);
    const message2 = c.nextWireMessage();
    c.sendWire(generateIdentity().publicKey); // 32 bytes: a plausible ephemeral key
    await message2;
    c.sendWire(Buffer.alloc(200, 0x5a));
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.POLICY_VIOLATION);
    expect(closed.reason).toMatch(/failed authentication/);
  });

  it('a bit flipped in a sealed frame is detected and closes the connection', async () => {
    // Messages: 0 = handshake 1, 1 = handshake 3, 2 = stream header, 3 = sealed Hello.
    for (const bit of [0, 7, 100]) {
      const c = await RawClient.open(broker.url);
      await c.handshake({
        tamper: (m, i) => {
          if (i !== 3) return m;
          const flipped = Buffer.from(m);
          flipped[Math.floor(bit / 8) % flipped.length] ^= 1 << bit % 8;
          return flipped;
        },
      });
      c.send(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'flip' });
      const closed = await c.closed;
      expect(closed.code).toBe(CloseCode.PROTOCOL_ERROR);
      expect(closed.reason).toBe('sealed frame failed authentication');
    }
    expect(await counted(broker, 'tributary_connections_closed_total', 'sealed_frame_failed', 3)).toBeGreaterThanOrEqual(3);
  });

  it('unsealed bytes after the handshake are refused as a failed sealed frame', async () => {
    const c = await RawClient.open(broker.url);
    await c.handshake();
    c.sendWire(Buffer.from('not sealed at all'));
    const closed = await c.closed;
    expect(closed.code).toBe(CloseCode.PROTOCOL_ERROR);
    expect(closed.reason).toBe('sealed frame failed authentication');
  });

});


describe('a node whose room for strangers is full (handshakesMax)', () => {
  const dir = tempDir();
  let broker: Broker;

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger, limits: { handshakesMax: 4 } });
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  it('evicts the oldest unfinished socket for a new one: 503 to one still in HTTP, 1013 to a WebSocket', async () => {
    // Accepted in this order: the silent socket first, then three WebSockets before their handshake.
    const silent = await rawSocket(broker.port);
    const strangers: RawClient[] = [];
    for (let i = 0; i < 3; i++) strangers.push(await RawClient.open(broker.url));
    expect(broker.stats().handshakesInProgress).toBe(4);

    // A fifth socket takes the silent one's place, which is answered 503 and cut.
    const first = await hello(broker.url);
    expect(first.answer.error ?? 0).toBe(0);
    await silent.closed;
    expect(silent.received()).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(silent.received()).toMatch(/\r\nRetry-After: 1\r\n/);
    expect(silent.received()).toMatch(/handshakesMax/);

    // The room is full again; the next newcomer evicts the oldest WebSocket, with 1013 so that it retries.
    strangers.push(await RawClient.open(broker.url));
    const second = await hello(broker.url);
    expect(second.answer.error ?? 0).toBe(0);
    const evicted = await strangers[0].closed;
    expect(evicted).toEqual({ code: CloseCode.TRY_AGAIN_LATER, reason: EVICTED_REASON });
    expect(strangers.slice(1).map((s) => s.ws.readyState)).toEqual([WebSocket.OPEN, WebSocket.OPEN, WebSocket.OPEN]);
    expect(broker.stats().handshakesInProgress).toBe(3);

    // Counted once each, as evictions (not as abandoned handshakes), and nothing refused.
    expect((await counter(broker, 'tributary_connections_closed_total')).get('preauth_evicted')).toBe(2);
    expect((await counter(broker, 'tributary_limits_reached_total')).get('handshakesMax')).toBe(2);
    expect((await counter(broker, 'tributary_connections_closed_total')).get('handshake_abandoned')).toBeUndefined();
    expect([...(await counter(broker, 'tributary_connections_refused_total')).keys()]).toEqual([]);

    for (const c of [...strangers, first.client, second.client]) c.close();
    await Promise.all(strangers.map((s) => s.closed));
    await until(() => broker.stats().handshakesInProgress === 0, 'no handshake in progress');
    expect(broker.stats().handshakesInProgress).toBe(0);
  });
});

describe('what crosses the wire', () => {
  const dir = tempDir();
  let broker: Broker;
  let proxy: Server;
  const captured: Buffer[] = [];
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger: silentLogger });
    // A TCP proxy in front of the node that keeps every byte going either way.
    proxy = createServer((inbound) => {
      const outbound = tcpConnect(broker.port, '127.0.0.1');
      for (const s of [inbound, outbound]) {
        sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      }
      inbound.on('data', (d: Buffer) => (captured.push(Buffer.from(d)), outbound.write(d)));
      outbound.on('data', (d: Buffer) => (captured.push(Buffer.from(d)), inbound.write(d)));
      inbound.on('close', () => outbound.destroy());
      outbound.on('close', () => inbound.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => proxy.close(r));
    await broker?.close();
    dir.remove();
  });

  it('holds no plaintext of the records, keys or topic names', async () => {
    const url = `ws://127.0.0.1:${(proxy.address() as AddressInfo).port}/v1`;
    const c = await RawClient.connect(url);
    const topic = 'plaintext-probe-topic';
    await c.request(Kind.CreateTopics, { topics: [{ name: topic, partitions: 1 }] });
    const marker = 'SECRET-READING-7f3a9c';
    const values = Array.from({ length: 50 }, (_, i) => `${marker}-${i}`);
    expect((await produce(c, topic, values, Buffer.from('KEY-device-42'))).partitions[0].error).toBe(0);
    const fetched = await fetchFrom(c, topic);
    const read = splitBatches(Buffer.from(fetched.partitions[0].records as Uint8Array)).flatMap((b) => decodeBatch(b).records);
    expect(read.map((r) => r.value?.toString())).toEqual(values);
    c.close();
    await c.closed;

    const wire = Buffer.concat(captured);
    // The records went through the proxy (both ways), so their absence means something.
    expect(wire.length).toBeGreaterThan(2 * values.join('').length);
    for (const needle of [marker, 'KEY-device-42', topic, 'raw-test']) expect(wire.includes(Buffer.from(needle)), needle).toBe(false);
  });
});
