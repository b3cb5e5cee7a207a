import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { encodeFrame, Kind, PROTOCOL_VERSION, RESPONSE, type SubscribeData } from '../protocol/frames.js';
import { encodeBatch } from '../protocol/record-batch.js';
import { Client, type PushHandler, type TransportFactory } from './client.js';
import { ConnectionError } from './errors.js';
import { FakeNode } from './testing/fake-node.js';
import { until } from '../test/helpers/until.js';

const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function track(client: Client): Client {
  clients.push(client);
  return client;
}

function connectTo(node: FakeNode, options: ConstructorParameters<typeof Client>[1] = {}): Promise<Client> {
  return Client.connect('mem://fake', { transportFactory: node.transportFactory, ...options }).then(track);
}

/** A port nothing listens on: bind an ephemeral one, then release it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('Client', () => {
  it('says Hello first with the protocol version and client id, and adopts the node limits', async () => {
    const node = new FakeNode();
    node.frameBytesMax = 4096;
    node.inflightMax = 3;
    const client = await connectTo(node, { clientId: 'sensor-7' });
    expect(node.requests[0].kind).toBe(Kind.Hello);
    expect(node.requests[0].body).toEqual({ version: PROTOCOL_VERSION, clientId: 'sensor-7' });
    expect(client.limits).toEqual({ frameBytesMax: 4096, inflightMax: 3 });
    expect(client.nodeId).toBe('fake-1');
  });

  it('matches answers to requests by correlation id when they come back out of order', async () => {
    const node = new FakeNode();
    node.createTopic('a', 1);
    node.createTopic('b', 1);
    const held: (() => void)[] = [];
    node.hook = () => new Promise((resolve) => held.push(() => resolve(undefined)));
    const client = await connectTo(node);
    const first = client.request(Kind.Metadata, { topics: ['a'] });
    const second = client.request(Kind.Metadata, { topics: ['b'] });
    await until(() => held.length === 2, 'both requests reached the node');
    held[1]();
    held[0]();
    expect((await first).topics[0].name).toBe('a');
    expect((await second).topics[0].name).toBe('b');
  });

  it('keeps at most inflightMax requests on the wire and queues the rest locally', async () => {
    const node = new FakeNode();
    node.inflightMax = 2;
    const held: (() => void)[] = [];
    node.hook = () => new Promise((resolve) => held.push(() => resolve(undefined)));
    const client = await connectTo(node);
    const answers = Array.from({ length: 7 }, () => client.request(Kind.Metadata, {}));
    await until(() => held.length === 2, 'two requests on the wire');
    expect(client.pendingRequests).toBe(7);
    while (held.length > 0 || node.requests.length < 8) {
      await until(() => held.length > 0, 'next request');
      held.shift()!();
    }
    await Promise.all(answers);
    // The node counts what it holds at once on the connection: never a third, however the
    // answers and the queued requests interleaved.
    expect(node.maxInflightSeen).toBe(2);
  });

  it('matches answers to requests with more on the wire than its small table holds, in any order', async () => {
    const node = new FakeNode();
    node.inflightMax = 32;
    const held: { topic: string; answer: () => void }[] = [];
    node.hook = (req) =>
      new Promise((resolve) => {
        const topic = (req.body.topics as string[])[0];
        held.push({ topic, answer: () => resolve({ answer: { nodeId: 'fake', topics: [{ name: topic, error: 0, partitions: [], config: {} }] } }) });
      });
    const client = await connectTo(node);
    const names = Array.from({ length: 20 }, (_, i) => `t${i}`);
    const answers = names.map((name) => client.request(Kind.Metadata, { topics: [name] }));
    await until(() => held.length === 20, 'all twenty on the wire');
    // Last first, then the rest from the middle out: each answer must reach its own request.
    const order = [19, ...Array.from({ length: 19 }, (_, i) => (i % 2 === 0 ? 9 - i / 2 : 10 + (i - 1) / 2))];
    for (const i of order) held[i].answer();
    const got = await Promise.all(answers);
    expect(got.map((a) => a.topics[0].name)).toEqual(names);
    expect(client.pendingRequests).toBe(0);
    await client.close();
  });

  it('a lost connection fails every request on the wire, oldest first', async () => {
    const node = new FakeNode();
    node.inflightMax = 32;
    node.hook = () => 'silent';
    const client = await connectTo(node, { reconnect: { initialMs: 60_000, maxMs: 60_000 } });
    const failed: number[] = [];
    const answers = Array.from({ length: 12 }, (_, i) => client.request(Kind.Metadata, {}).catch(() => void failed.push(i)));
    await until(() => node.requests.length >= 13, 'twelve requests on the wire');
    node.dropConnections();
    await Promise.all(answers);
    expect(failed).toEqual(Array.from({ length: 12 }, (_, i) => i));
    await client.close();
  });

  it('bounds the local queue: past requestQueueMax a request fails at once with TOO_MANY_REQUESTS', async () => {
    const node = new FakeNode();
    node.inflightMax = 1;
    node.hook = () => 'silent';
    const client = await connectTo(node, { requestQueueMax: 2, requestTimeoutMs: 60_000 });
    const onWire = client.request(Kind.Metadata, {});
    await until(() => node.requests.length === 2, 'first request sent');
    const queued = [client.request(Kind.Metadata, {}), client.request(Kind.Metadata, {})];
    await expect(client.request(Kind.Metadata, {})).rejects.toMatchObject({ code: Errors.TOO_MANY_REQUESTS.code });
    for (const p of [onWire, ...queued]) p.catch(() => {});
  });

  it('times a request out with REQUEST_TIMED_OUT, and keeps its slot until the late answer', async () => {
    const node = new FakeNode();
    node.inflightMax = 1;
    let release: (() => void) | null = null;
    node.hook = () =>
      node.requests.filter((r) => r.kind === Kind.Metadata).length === 1
        ? new Promise((resolve) => (release = () => resolve(undefined)))
        : undefined;
    const clock = new ManualClock();
    const client = await connectTo(node, { clock });
    let slowFailed = false;
    const slow = client.request(Kind.Metadata, {}, { timeoutMs: 30 }).finally(() => (slowFailed = true));
    const next = client.request(Kind.Metadata, {}, { timeoutMs: 60_000 });
    await until(() => release !== null, 'first request at the node');
    await clock.advanceAsync(29);
    expect(slowFailed).toBe(false);
    clock.advance(1);
    const err = await slow.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TributaryError);
    expect((err as TributaryError).code).toBe(Errors.REQUEST_TIMED_OUT.code);
    expect((err as TributaryError).retriable).toBe(true);
    // The node still works on the first request, so the second must not be sent yet.
    expect(node.requests.filter((r) => r.kind === Kind.Metadata).length).toBe(1);
    release!();
    await expect(next).resolves.toMatchObject({ nodeId: 'fake-1' });
  });

  it('rejects with the node error code and its message, without repeating the name', async () => {
    const node = new FakeNode();
    node.hook = () => ({ answer: { error: Errors.INVALID_REQUEST.code, message: 'INVALID_REQUEST: topics must be a list' } });
    const client = await connectTo(node);
    const err = (await client.request(Kind.Metadata, {}).catch((e: unknown) => e)) as TributaryError;
    expect(err).toBeInstanceOf(TributaryError);
    expect(err.code).toBe(Errors.INVALID_REQUEST.code);
    expect(err.message).toBe('INVALID_REQUEST: topics must be a list');
  });

  it('fails requests on a dropped connection with retriable NETWORK, then reconnects and says Hello again', async () => {
    const node = new FakeNode();
    node.hook = (req) => (node.connections.indexOf(req.connection) === 0 ? 'silent' : undefined);
    const disconnects: number[] = [];
    const client = await connectTo(node, { reconnect: { initialMs: 5, maxMs: 20 }, onDisconnect: (i) => disconnects.push(i.code) });
    const lost = client.request(Kind.Metadata, {});
    await until(() => node.requests.length === 2, 'request sent');
    node.dropConnections();
    const err = (await lost.catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.NETWORK.code);
    expect(err.retriable).toBe(true);
    expect(err.message).toMatch(/outcome is unknown/);
    expect(disconnects).toEqual([1001]);
    // A request made while disconnected waits for the reconnect instead of failing.
    await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
    expect(client.connectionCount).toBe(2);
    expect(node.requests.filter((r) => r.kind === Kind.Hello)).toHaveLength(2);
    expect(node.requests[2].kind).toBe(Kind.Hello);
  });

  it('keeps retrying a node that is down for a while after a drop, on its clock', async () => {
    const node = new FakeNode();
    const clock = new ManualClock();
    let attempts = 0;
    const transportFactory: typeof node.transportFactory = (url, options) => (attempts++, node.transportFactory(url, options));
    const client = await connectTo(node, { clock, transportFactory, reconnect: { initialMs: 2, maxMs: 10 } });
    node.refuse = true;
    node.dropConnections();
    await until(() => !client.isConnected, 'disconnected');
    const answer = client.request(Kind.Metadata, {}, { timeoutMs: 60_000 });
    // Backoffs of at most 2, 4, 8 and 10 ms: at least four refused attempts within 24 ms of the clock.
    await clock.advanceAsync(24);
    expect(attempts).toBeGreaterThanOrEqual(5);
    expect(client.isConnected).toBe(false);
    node.refuse = false;
    clock.advance(10);
    await expect(answer).resolves.toMatchObject({ nodeId: 'fake-1' });
    expect(client.connectionCount).toBe(2);
  });

  it('given several node URLs, goes on to the next when the node it was on is gone', async () => {
    const nodes = { 'mem://a': new FakeNode(), 'mem://b': new FakeNode() };
    nodes['mem://a'].nodeId = 'node-a';
    nodes['mem://b'].nodeId = 'node-b';
    const transportFactory: TransportFactory = (url, options) => nodes[url as keyof typeof nodes].transportFactory(url, options);
    // On a manual clock the client stays away until the clock passes its reconnect backoff.
    const clock = new ManualClock();
    const client = track(await Client.connect(['mem://a', 'mem://b'], { transportFactory, clock, reconnect: { initialMs: 1, maxMs: 5 } }));
    expect(client.urls).toEqual(['mem://a', 'mem://b']);
    expect(client.nodeId).toBe('node-a');
    nodes['mem://a'].refuse = true;
    nodes['mem://a'].dropConnections();
    await until(() => !client.isConnected, 'disconnected');
    const answer = client.request(Kind.Metadata, {});
    await clock.advanceAsync(5);
    await expect(answer).resolves.toMatchObject({ nodeId: 'node-b' });
    expect(client.url).toBe('mem://b');
    expect(client.connectionCount).toBe(2);
  });

  it('names every URL when none of them can be reached', async () => {
    const urls = [`ws://127.0.0.1:${await closedPort()}/v1`, `ws://127.0.0.1:${await closedPort()}/v1`];
    // Every round starts at least one backoff (100 ms or more) before the deadline, so each
    // attempt has time to be refused rather than cut short.
    const client = track(new Client(urls, { connectTimeoutMs: 1000, reconnect: { initialMs: 200, maxMs: 400 } }));
    const err = await client.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toBe(`cannot reach node at ${urls.join(', ')}: ECONNREFUSED`);
  });

  it('gives up the first connect after connectTimeoutMs with "cannot reach node at URL: ECONNREFUSED"', async () => {
    const url = `ws://127.0.0.1:${await closedPort()}/v1`;
    const client = track(new Client(url, { connectTimeoutMs: 300, reconnect: { initialMs: 20, maxMs: 50 } }));
    const queued = client.request(Kind.Metadata, {});
    const err = await client.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toBe(`cannot reach node at ${url}: ECONNREFUSED`);
    expect((err as TributaryError).code).toBe(Errors.NETWORK.code);
    await expect(queued).rejects.toBeInstanceOf(ConnectionError);
    expect(client.isClosed).toBe(true);
  });

  it('fails at once on a malformed URL instead of retrying', async () => {
    const client = track(new Client('http//nope', { connectTimeoutMs: 60_000 }));
    const err = (await client.connect().catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.INVALID_CONFIG.code);
    expect(err.message).toContain("invalid node URL 'http//nope'");
  });

  it('does not retry a node that refuses the protocol version', async () => {
    const node = new FakeNode();
    // Hello travels sealed, so the refusal comes from the node's side rather than from a
    // rewritten frame.
    node.refuseHello = () => new TributaryError(Errors.UNSUPPORTED_VERSION, 'this node speaks version 99 only');
    const client = track(new Client('mem://fake', { transportFactory: node.transportFactory, connectTimeoutMs: 60_000 }));
    const err = (await client.connect().catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.UNSUPPORTED_VERSION.code);
    expect(node.requests[0].body).toEqual({ version: PROTOCOL_VERSION, clientId: client.clientId });
    expect(node.connections).toHaveLength(1);
  });

  it('refuses a frame larger than the node frameBytesMax locally with FRAME_TOO_LARGE', async () => {
    const node = new FakeNode();
    node.frameBytesMax = 2048;
    const client = await connectTo(node);
    const err = (await client
      .request(Kind.Produce, { acks: 1, timeoutMs: 1000, partitions: [{ topic: 't', partition: 0, records: Buffer.alloc(4096) }] })
      .catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.FRAME_TOO_LARGE.code);
    expect(node.requests.filter((r) => r.kind === Kind.Produce)).toHaveLength(0);
    // The connection is still usable.
    await expect(client.request(Kind.Metadata, {})).resolves.toBeDefined();
  });

  it('fireAndForget resolves once written, with no answer expected', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    const client = await connectTo(node);
    const { encodeBatch } = await import('../protocol/record-batch.js');
    await client.fireAndForget(Kind.Produce, { acks: 0, timeoutMs: 1000, partitions: [{ topic: 't', partition: 0, records: encodeBatch([{ value: Buffer.from('x') }]) }] });
    await until(() => node.records('t', 0).length === 1, 'record appended');
    expect(client.pendingRequests).toBe(0);
  });

  it('close() rejects what is pending with CLIENT_CLOSED and refuses new requests', async () => {
    const node = new FakeNode();
    node.hook = () => 'silent';
    const client = await connectTo(node);
    const pending = client.request(Kind.Metadata, {});
    await until(() => node.requests.length === 2, 'sent');
    await client.close();
    await expect(pending).rejects.toMatchObject({ code: Errors.CLIENT_CLOSED.code });
    await expect(client.request(Kind.Metadata, {})).rejects.toMatchObject({ code: Errors.CLIENT_CLOSED.code });
  });

  it('works over a real WebSocket and closes without leaving handles behind', async () => {
    const node = new FakeNode();
    const server = await node.listen();
    try {
      const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'TCPSocketWrap').length;
      const client = await Client.connect(server.url, { requestTimeoutMs: 5000 });
      await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1', topics: [] });
      await client.close();
      await new Promise((r) => setImmediate(r));
      const after = process.getActiveResourcesInfo().filter((r) => r === 'Timeout' || r === 'TCPSocketWrap').length;
      expect(after).toBeLessThanOrEqual(before);
    } finally {
      await server.close();
    }
  });
});

describe('Client pushes and subscriptions', () => {
  function recorder(): PushHandler & { data: SubscribeData[]; ends: number } {
    const r = {
      data: [] as SubscribeData[],
      ends: 0,
      onData: (d: SubscribeData) => void r.data.push(d),
      onEnd: () => void r.ends++,
    };
    return r;
  }

  function sentKinds(node: FakeNode, kind: Kind, connection: number): number {
    return node.requests.filter((r) => r.kind === kind && r.connection === node.connections[connection]).length;
  }

  it('routes SubscribeData by subscription id; unknown pushes and ids are dropped and the client stays usable', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    node.append('t', 0, encodeBatch([{ value: Buffer.from('a') }]));
    const client = await connectTo(node);
    const handler = recorder();
    const sub = await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1 << 20 }], creditBytes: 1 << 20 }, handler);
    expect(sub).toMatchObject({ subscriptionId: 1, connection: 1, isActive: true });
    expect(sub.partitions).toEqual([{ topic: 't', partition: 0, error: 0 }]);
    await until(() => handler.data.length === 1, 'the first push');
    expect(handler.data[0].subscriptionId).toBe(1);
    const wire = node.connections[0].transport;
    wire.send(encodeFrame(0x7f | RESPONSE, 0, { what: 'a push this client does not know' }));
    wire.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { subscriptionId: 99, partitions: [] }));
    wire.send(encodeFrame(Kind.Metadata | RESPONSE, 0, { topics: [] }));
    node.append('t', 0, encodeBatch([{ value: Buffer.from('b') }]));
    await until(() => handler.data.length === 2, 'the second push');
    expect(handler.data.map((d) => d.subscriptionId)).toEqual([1, 1]);
    await expect(client.request(Kind.Metadata, { topics: ['t'] })).resolves.toMatchObject({ nodeId: 'fake-1' });
    expect(client.connectionCount).toBe(1);
    await sub.unsubscribe();
    expect(sub.isActive).toBe(false);
    expect(node.subscriptions[0].ended).toBe(true);
    node.append('t', 0, encodeBatch([{ value: Buffer.from('c') }]));
    await expect(client.request(Kind.Metadata, { topics: ['t'] })).resolves.toBeDefined();
    expect(handler.data).toHaveLength(2);
    expect(handler.ends).toBe(0);
  });

  it('a malformed SubscribeData resets the connection, which ends its subscriptions', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    const client = await connectTo(node, { reconnect: { initialMs: 1 } });
    const handler = recorder();
    const sub = await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1 << 20 }], creditBytes: 1 << 20 }, handler);
    node.connections[0].transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { subscriptionId: 1, partitions: [{ topic: 't' }] }));
    await until(() => client.connectionCount === 2, 'reconnected');
    expect(handler.ends).toBe(1);
    expect(sub.isActive).toBe(false);
    expect(handler.data).toHaveLength(0);
  });

  it('a subscription ends with its connection; its Credit and Unsubscribe are never sent on the next one', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    node.inflightMax = 1;
    const client = await connectTo(node, { reconnect: { initialMs: 1 } });
    const handler = recorder();
    const sub = await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1 << 20 }], creditBytes: 0 }, handler);
    // A request the node sits on takes the one slot, so the Credit waits in the local queue.
    node.hook = (req) => (req.kind === Kind.Metadata ? 'silent' : undefined);
    const held = client.request(Kind.Metadata, {}).catch((e: unknown) => e);
    const credit = sub.credit(4096).catch((e: unknown) => e);
    node.hook = null;
    node.dropConnections();
    expect(await held).toMatchObject({ code: Errors.NETWORK.code });
    await until(() => client.connectionCount === 2, 'reconnected');
    expect(await credit).toMatchObject({ code: Errors.NETWORK.code });
    expect(handler.ends).toBe(1);
    await expect(sub.credit(1)).rejects.toMatchObject({ code: Errors.NETWORK.code });
    await sub.unsubscribe();
    // The next connection reuses id 1 for a new subscription: it must be left alone.
    const next = await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1 << 20 }], creditBytes: 0 }, recorder());
    expect(next.subscriptionId).toBe(1);
    await expect(client.request(Kind.Metadata, {})).resolves.toBeDefined();
    expect(sentKinds(node, Kind.Credit, 1)).toBe(0);
    expect(sentKinds(node, Kind.Unsubscribe, 1)).toBe(0);
    expect(node.subscriptions[1].ended).toBe(false);
  });

  it('pushes that come ahead of the Subscribe answer are held and handed over in order, within the credit', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    const client = await connectTo(node);
    const push = (n: number, bytes: number) =>
      encodeFrame(Kind.SubscribeData | RESPONSE, 0, {
        subscriptionId: 1,
        partitions: [{ topic: 't', partition: 0, error: 0, highWatermark: n, logStartOffset: 0, records: Buffer.alloc(bytes) }],
      });
    // Ahead of the answer: a stale push of an id no one has, then two of the new subscription.
    node.hook = (req) => {
      if (req.kind !== Kind.Subscribe) return undefined;
      req.connection.transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { subscriptionId: 7, partitions: [] }));
      req.connection.transport.send(push(1, 60));
      req.connection.transport.send(push(2, 60)); // past the credit by less than this frame: the node's one-batch allowance
      return undefined;
    };
    const handler = recorder();
    const sub = await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1024 }], creditBytes: 100 }, handler);
    expect(handler.data.map((d) => d.partitions[0].highWatermark)).toEqual([1, 2]);
    expect(sub.isActive).toBe(true);
    expect(handler.ends).toBe(0);
  });

  it('more pushes ahead of the answer than its credit allows end the new subscription rather than leave a hole', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    const client = await connectTo(node);
    node.hook = (req) => {
      if (req.kind !== Kind.Subscribe) return undefined;
      for (let n = 0; n < 3; n++) {
        req.connection.transport.send(
          encodeFrame(Kind.SubscribeData | RESPONSE, 0, {
            subscriptionId: 1,
            partitions: [{ topic: 't', partition: 0, error: 0, highWatermark: n, logStartOffset: 0, records: Buffer.alloc(60) }],
          }),
        );
      }
      return undefined;
    };
    const handler = recorder();
    const sub = await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1024 }], creditBytes: 100 }, handler);
    expect(sub.isActive).toBe(false);
    expect(handler.ends).toBe(1);
    expect(handler.data).toHaveLength(0);
    await until(() => node.subscriptions[0].ended, 'unsubscribed on the node');
    // The next Subscribe, with nothing pushed ahead, is delivered normally.
    node.hook = null;
    node.append('t', 0, encodeBatch([{ value: Buffer.from('x') }]));
    const next = recorder();
    await client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1024 }], creditBytes: 1024 }, next);
    await until(() => next.data.length === 1, 'a push');
    expect(next.ends).toBe(0);
  });

  it('a Subscribe answered after its timeout is unsubscribed at once', async () => {
    const node = new FakeNode();
    node.createTopic('t', 1);
    let answerSubscribe!: () => void;
    const answered = new Promise<void>((resolve) => (answerSubscribe = resolve));
    node.hook = async (req) => {
      if (req.kind === Kind.Subscribe) await answered;
      return undefined;
    };
    const client = await connectTo(node);
    const handler = recorder();
    const subscribing = client.subscribe({ partitions: [{ topic: 't', partition: 0, fetchOffset: 0, maxBytes: 1024 }], creditBytes: 1024 }, handler, { timeoutMs: 5 });
    await expect(subscribing).rejects.toMatchObject({ code: Errors.REQUEST_TIMED_OUT.code });
    answerSubscribe();
    await until(() => node.subscriptions[0]?.ended === true, 'the orphan unsubscribed');
    node.append('t', 0, encodeBatch([{ value: Buffer.from('x') }]));
    await expect(client.request(Kind.Metadata, {})).resolves.toBeDefined();
    expect(handler.data).toHaveLength(0);
  });
});
