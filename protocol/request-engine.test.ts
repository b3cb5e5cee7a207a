// The request engine against peers in memory (memoryPipe), with time driven by a
// ManualClock: timeouts and backoff are shown by moving the clock, never by sleeping. One
// test runs it over real WebSockets.

import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ManualClock } from './clock.js';
import { Errors, TributaryError } from './errors.js';
import { decodeFrame, encodeFrame, Kind, RESPONSE } from './frames.js';
import { RequestEngine, type Greeting, type GreetingLink, type RequestEngineOptions, type TransportFactory } from './request-engine.js';
import { memoryPipe, readFrames, socketTransport, type FrameTransport } from './transport.js';

interface Received {
  url: string;
  kind: number;
  correlationId: number;
  body: Record<string, unknown>;
  transport: FrameTransport;
  answer(body?: Record<string, unknown>): void;
}

/**
 * Peers in memory, one per URL. Each answers the greeting with its limits; every other
 * request is recorded and answered only when the test says so, unless `autoAnswer`.
 */
class MemoryPeers {
  readonly attempts: string[] = [];
  readonly received: Received[] = [];
  readonly down = new Set<string>();
  readonly connections: { url: string; transport: FrameTransport }[] = [];
  autoAnswer = false;
  inflightMax = 8;

  readonly transportFactory: TransportFactory = async (url) => {
    this.attempts.push(url);
    if (this.down.has(url)) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const [ours, theirs] = memoryPipe();
    this.serve(url, theirs);
    return ours;
  };

  serve(url: string, transport: FrameTransport): void {
    this.connections.push({ url, transport });
    readFrames(transport, {
      frame: (bytes) => {
        const { kind, correlationId, body } = decodeFrame(bytes);
        const answer = (answerBody: Record<string, unknown> = { from: url }) => transport.send(encodeFrame(kind | RESPONSE, correlationId, answerBody));
        if (kind === Kind.Hello) return answer({ nodeId: url, frameBytesMax: 1 << 20, inflightMax: this.inflightMax });
        this.received.push({ url, kind, correlationId, body, transport, answer });
        if (this.autoAnswer) answer();
      },
      end: () => {},
    });
  }

  /** Cuts every connection to `url`, as a node that crashed. */
  cut(url: string): void {
    for (const c of this.connections) if (c.url === url) c.transport.close(1001, 'gone');
  }
}

const greet = async (link: GreetingLink): Promise<Greeting> => {
  const hello = await link.request(Kind.Hello, { version: 1, clientId: 'test' });
  return { peerId: String(hello.nodeId), limits: { frameBytesMax: hello.frameBytesMax as number, inflightMax: hello.inflightMax as number } };
};

const engines: RequestEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
});

function engineFor(peers: MemoryPeers, clock: ManualClock, options: Partial<RequestEngineOptions> = {}): RequestEngine {
  const engine = new RequestEngine({
    urls: ['mem://a'],
    transportFactory: peers.transportFactory,
    greet,
    clock,
    // No jitter: each backoff is exactly half its nominal delay (100 ms nominal: 50, 100, 200...).
    random: () => 0,
    reconnectInitialMs: 100,
    reconnectMaxMs: 10_000,
    ...options,
  });
  engines.push(engine);
  return engine;
}

/** Lets the in-memory pipes and promise callbacks run (no time passes on the clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** A promise's outcome so far, read without waiting. */
function watch<T>(promise: Promise<T>): { readonly state: 'pending' | 'resolved' | 'rejected'; readonly value: T | undefined; readonly error: unknown } {
  const seen = { state: 'pending' as 'pending' | 'resolved' | 'rejected', value: undefined as T | undefined, error: undefined as unknown };
  promise.then(
    (v) => Object.assign(seen, { state: 'resolved', value: v }),
    (e: unknown) => Object.assign(seen, { state: 'rejected', error: e }),
  );
  return seen;
}

describe('RequestEngine: requests', () => {
  it('matches answers to requests by correlation id when they come back out of order', async () => {
    const peers = new MemoryPeers();
    const engine = engineFor(peers, new ManualClock());
    await engine.connect();
    const first = engine.request(Kind.Metadata, { topics: ['a'] });
    const second = engine.request(Kind.Metadata, { topics: ['b'] });
    await settle();
    expect(peers.received.map((r) => r.body)).toEqual([{ topics: ['a'] }, { topics: ['b'] }]);
    peers.received[1].answer({ name: 'b' });
    peers.received[0].answer({ name: 'a' });
    expect(await first).toEqual({ name: 'a' });
    expect(await second).toEqual({ name: 'b' });
    expect(engine.pendingRequests).toBe(0);
  });

  it('queues requests made before connecting, then keeps at most inflightMax on the wire', async () => {
    const peers = new MemoryPeers();
    peers.inflightMax = 2;
    const engine = engineFor(peers, new ManualClock());
    const answers = [1, 2, 3].map((n) => engine.request(Kind.Metadata, { n }));
    expect(engine.pendingRequests).toBe(3);
    await settle();
    expect(engine.isReady).toBe(true);
    expect(peers.received.map((r) => r.body.n)).toEqual([1, 2]);
    peers.received[0].answer();
    await answers[0];
    await settle();
    expect(peers.received.map((r) => r.body.n)).toEqual([1, 2, 3]);
    peers.received[1].answer();
    peers.received[2].answer();
    await Promise.all(answers);
  });

  it('rejects a top-level error answer with the error of its code', async () => {
    const peers = new MemoryPeers();
    const engine = engineFor(peers, new ManualClock());
    const answer = engine.request(Kind.Metadata, {});
    await settle();
    peers.received[0].answer({ error: Errors.UNKNOWN_TOPIC.code, message: 'UNKNOWN_TOPIC: no topic x' });
    await expect(answer).rejects.toMatchObject({ code: Errors.UNKNOWN_TOPIC.code, message: 'UNKNOWN_TOPIC: no topic x' });
  });

  it('times a request out on its clock, not before, and keeps its slot until the late answer', async () => {
    const peers = new MemoryPeers();
    peers.inflightMax = 1;
    const clock = new ManualClock();
    const engine = engineFor(peers, clock);
    await engine.connect();
    const slow = watch(engine.request(Kind.Metadata, { n: 1 }, { timeoutMs: 1000 }));
    const next = engine.request(Kind.Metadata, { n: 2 }, { timeoutMs: 60_000 });
    await settle();
    clock.advance(999);
    await settle();
    expect(slow.state).toBe('pending');
    clock.advance(1);
    await settle();
    expect(slow.state).toBe('rejected');
    expect(slow.error).toMatchObject({ code: Errors.REQUEST_TIMED_OUT.code, message: 'REQUEST_TIMED_OUT: Metadata to mem://a got no answer within 1000 ms' });
    // The peer still counts the first against inflightMax: the second waits for its answer.
    expect(peers.received).toHaveLength(1);
    peers.received[0].answer();
    await settle();
    expect(peers.received.map((r) => r.body.n)).toEqual([1, 2]);
    peers.received[1].answer({ ok: true });
    expect(await next).toEqual({ ok: true });
  });

  it('a dropped connection fails what is on the wire with NETWORK and keeps what is queued', async () => {
    const peers = new MemoryPeers();
    peers.inflightMax = 1;
    const clock = new ManualClock();
    const lost: number[] = [];
    const engine = engineFor(peers, clock, { onLost: (info) => lost.push(info.code) });
    await engine.connect();
    const onWire = engine.request(Kind.Metadata, { n: 1 });
    const queued = engine.request(Kind.Metadata, { n: 2 });
    await settle();
    peers.cut('mem://a');
    await expect(onWire).rejects.toMatchObject({ code: Errors.NETWORK.code, retriable: true });
    expect(lost).toEqual([1001]);
    peers.autoAnswer = true;
    await clock.advanceAsync(50);
    expect(await queued).toEqual({ from: 'mem://a' });
    expect(engine.connectionCount).toBe(2);
  });
});

describe('RequestEngine: pushes', () => {
  it('hands frames with correlation id 0 to onPush by kind, in the order read', async () => {
    const peers = new MemoryPeers();
    const seen: string[] = [];
    const engine = engineFor(peers, new ManualClock(), { onPush: (kind, body) => seen.push(`push ${kind} ${String(body.n)}`) });
    const answer = engine.request(Kind.Metadata, {}).then(() => seen.push('answer'));
    await settle();
    const { transport } = peers.received[0];
    transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { n: 1 }));
    peers.received[0].answer();
    transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { n: 2 }));
    await answer;
    await settle();
    // The answer's promise settles after both pushes were read; the push ahead of it came first.
    expect(seen[0]).toBe(`push ${Kind.SubscribeData | RESPONSE} 1`);
    expect(seen).toContain(`push ${Kind.SubscribeData | RESPONSE} 2`);
  });

  it('a push handler that throws resets the connection, which reconnects', async () => {
    const peers = new MemoryPeers();
    const clock = new ManualClock();
    const engine = engineFor(peers, clock, {
      onPush: () => {
        throw new Error('bug above');
      },
    });
    await engine.connect();
    peers.connections[0].transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, {}));
    await settle();
    expect(engine.isReady).toBe(false);
    await clock.advanceAsync(50);
    expect(engine.connectionCount).toBe(2);
  });
});

describe('RequestEngine: reconnect and bootstrap', () => {
  it('reconnects after the backoff on its clock, doubling it while the peer stays down', async () => {
    const peers = new MemoryPeers();
    const clock = new ManualClock();
    const engine = engineFor(peers, clock);
    await engine.connect();
    peers.down.add('mem://a');
    peers.cut('mem://a');
    await settle();
    expect(peers.attempts).toEqual(['mem://a']);
    await clock.advanceAsync(49);
    expect(peers.attempts).toHaveLength(1);
    await clock.advanceAsync(1);
    expect(peers.attempts).toHaveLength(2);
    // Then 100 ms, then 200 ms.
    await clock.advanceAsync(99);
    expect(peers.attempts).toHaveLength(2);
    await clock.advanceAsync(1);
    expect(peers.attempts).toHaveLength(3);
    peers.down.delete('mem://a');
    await clock.advanceAsync(199);
    expect(engine.isReady).toBe(false);
    await clock.advanceAsync(1);
    expect(engine.isReady).toBe(true);
    expect(engine.connectionCount).toBe(2);
  });

  it('goes on to the next URL when the one it was on is gone, and waits the backoff only between full rounds', async () => {
    const peers = new MemoryPeers();
    peers.autoAnswer = true;
    const clock = new ManualClock();
    const engine = engineFor(peers, clock, { urls: ['mem://a', 'mem://b'] });
    await engine.connect();
    expect(engine.url).toBe('mem://a');
    peers.down.add('mem://a');
    peers.cut('mem://a');
    await settle();
    await clock.advanceAsync(50);
    // a refused, then b at once: no backoff inside a round.
    expect(peers.attempts).toEqual(['mem://a', 'mem://a', 'mem://b']);
    expect(engine.url).toBe('mem://b');
    expect(await engine.request(Kind.Metadata, {})).toEqual({ from: 'mem://b' });

    peers.down.add('mem://b');
    peers.cut('mem://b');
    await settle();
    await clock.advanceAsync(50);
    expect(peers.attempts.slice(3)).toEqual(['mem://b', 'mem://a']);
    // The round failed: the next one waits the doubled backoff (100 ms).
    await clock.advanceAsync(99);
    expect(peers.attempts).toHaveLength(5);
    peers.down.delete('mem://a');
    await clock.advanceAsync(1);
    expect(peers.attempts.slice(5)).toEqual(['mem://b', 'mem://a']);
    expect(engine.url).toBe('mem://a');
    expect(engine.connectionCount).toBe(3);
  });

  it('the first connect goes on to the next URL at once when the first refuses', async () => {
    const peers = new MemoryPeers();
    peers.down.add('mem://a');
    const clock = new ManualClock();
    const engine = engineFor(peers, clock, { urls: ['mem://a', 'mem://b'] });
    await engine.connect();
    expect(peers.attempts).toEqual(['mem://a', 'mem://b']);
    expect(engine.url).toBe('mem://b');
    expect(clock.monotonic()).toBe(0);
  });

  it('the first connect rounds over the URLs until connectTimeoutMs, then fails what waits with the unreachable error', async () => {
    const peers = new MemoryPeers();
    peers.down.add('mem://a');
    peers.down.add('mem://b');
    const clock = new ManualClock();
    const engine = engineFor(peers, clock, {
      urls: ['mem://a', 'mem://b'],
      connectTimeoutMs: 1000,
      unreachable: (err) => new TributaryError(Errors.NETWORK, `nobody home: ${(err as Error).message}`),
    });
    const queued = watch(engine.request(Kind.Metadata, {}, { timeoutMs: 60_000 }));
    const connected = watch(engine.connect());
    await settle();
    // Rounds at 0, 50, 150, 350 and 750 ms; the next backoff (800 ms) would pass the deadline.
    await clock.advanceAsync(749);
    expect(peers.attempts).toHaveLength(8);
    expect(connected.state).toBe('pending');
    await clock.advanceAsync(1);
    await settle();
    expect(peers.attempts).toHaveLength(10);
    expect(connected.error).toMatchObject({ message: 'NETWORK: nobody home: connect ECONNREFUSED' });
    expect(queued.error).toBe(connected.error);
    expect(engine.isClosed).toBe(true);
    expect(clock.pending).toBe(0);
  });

  it('does not retry a refusal, nor try the other URLs after it', async () => {
    const peers = new MemoryPeers();
    const engine = engineFor(peers, new ManualClock(), {
      urls: ['mem://a', 'mem://b'],
      transportFactory: async (url) => {
        peers.attempts.push(url);
        throw new TributaryError(Errors.UNAUTHORIZED, 'not the pinned node');
      },
    });
    await expect(engine.connect()).rejects.toMatchObject({ code: Errors.UNAUTHORIZED.code });
    expect(peers.attempts).toEqual(['mem://a']);
    expect(engine.isClosed).toBe(true);
  });

  it('close() rejects what is pending with CLIENT_CLOSED and leaves no timer on its clock', async () => {
    const peers = new MemoryPeers();
    const clock = new ManualClock();
    const engine = engineFor(peers, clock);
    await engine.connect();
    const onWire = engine.request(Kind.Metadata, {});
    await settle();
    peers.down.add('mem://a');
    const waiting = engine.request(Kind.Metadata, {});
    expect(clock.pending).toBe(2);
    await engine.close();
    await expect(onWire).rejects.toMatchObject({ code: Errors.CLIENT_CLOSED.code });
    await expect(waiting).rejects.toMatchObject({ code: Errors.CLIENT_CLOSED.code });
    await expect(engine.request(Kind.Metadata, {})).rejects.toMatchObject({ code: Errors.CLIENT_CLOSED.code });
    expect(clock.pending).toBe(0);
  });
});

describe('RequestEngine over real WebSockets', () => {
  it('answers, and when its node goes away for good moves to the next URL', async () => {
    const servers = await Promise.all([startPeer('a'), startPeer('b')]);
    try {
      let lost!: () => void;
      const gone = new Promise<void>((resolve) => (lost = resolve));
      const engine = new RequestEngine({ urls: servers.map((s) => s.url), transportFactory: openWebSocket, greet, reconnectInitialMs: 5, reconnectMaxMs: 20, onLost: () => lost() });
      engines.push(engine);
      expect(await engine.request(Kind.Metadata, {})).toEqual({ from: 'a' });
      await servers[0].close();
      await gone;
      expect(await engine.request(Kind.Metadata, {})).toEqual({ from: 'b' });
      expect(engine.url).toBe(servers[1].url);
      expect(engine.connectionCount).toBe(2);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  });
});

const openWebSocket: TransportFactory = (url) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(socketTransport(ws)));
    ws.once('error', reject);
  });

/** A WebSocket peer that greets and answers every request with its name. */
async function startPeer(name: string): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  wss.on('connection', (ws) => {
    const transport = socketTransport(ws);
    readFrames(transport, {
      frame: (bytes) => {
        const { kind, correlationId } = decodeFrame(bytes);
        const body = kind === Kind.Hello ? { nodeId: name, frameBytesMax: 1 << 20, inflightMax: 4 } : { from: name };
        transport.send(encodeFrame(kind | RESPONSE, correlationId, body));
      },
      end: () => {},
    });
  });
  let closing: Promise<void> | null = null;
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close(() => resolve());
      })),
  };
}
