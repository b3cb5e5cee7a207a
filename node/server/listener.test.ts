// The listener over real sockets: its keepalive (every socket is pinged each round, in
// slices across turns of the event loop, and a socket that did not answer the previous
// round's ping is cut), and its deadline for sockets that never make their WebSocket
// upgrade. Rounds and deadlines come when the test moves the listener's ManualClock.

import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ManualClock } from '../../protocol/clock.js';
import { readFrames, type FrameTransport } from '../../protocol/transport.js';
import { rawSocket as openRawSocket, type RawSocket } from '../../test/helpers/tcp.js';
import { DEFAULT_LIMITS, type Limits } from '../config.js';
import { silentLogger } from '../logger.js';
import { listen, WS_PATH, type Listener, type PreAuthCloseReason } from './listener.js';
import { until } from '../../test/helpers/until.js';

// Far beyond how long a test runs: only the ManualClock brings them.
const PING_INTERVAL_MS = 60_000;
const HANDSHAKE_TIMEOUT_MS = 60_000;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Started {
  listener: Listener;
  clock: ManualClock;
  accepted: () => number;
  closed: PreAuthCloseReason[];
  /** Messages the listener's owner has read, per accepted socket in order of acceptance. */
  messagesRead: number[];
}

async function start(pingIntervalMs: number, limits: Partial<Limits> = {}): Promise<Started> {
  let accepted = 0;
  const closed: PreAuthCloseReason[] = [];
  const messagesRead: number[] = [];
  const clock = new ManualClock();
  const listener = await listen({
    host: '127.0.0.1',
    port: 0,
    limits: { ...DEFAULT_LIMITS, connectionsMax: 10_000, handshakesMax: 10_000, ...limits },
    logger: silentLogger,
    preAuthFrameBytesMax: 4096,
    messageBytesMax: 65_536,
    health: () => ({ status: 'ok' }),
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    onRefused: () => {},
    onLimitReached: () => {},
    onPreAuthClosed: (reason) => void closed.push(reason),
    onConnection: (transport: FrameTransport) => {
      const at = accepted++;
      messagesRead[at] = 0;
      readFrames(transport, { frame: () => void messagesRead[at]++, end: () => {} });
    },
    pingIntervalMs,
    clock,
  });
  cleanups.push(async () => {
    listener.terminateAll();
    await listener.stopAccepting();
  });
  return { listener, clock, accepted: () => accepted, closed, messagesRead };
}

function open(port: number, autoPong: boolean): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${WS_PATH}`, { autoPong });
  cleanups.push(() => ws.terminate());
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

describe('listener keepalive', () => {
  it('pings every socket each round, more than one slice of them, and cuts only the silent one', async () => {
    const { listener, clock, accepted, messagesRead } = await start(PING_INTERVAL_MS);
    const count = 600;
    const answering: WebSocket[] = [];
    for (let i = 0; i < count; i += 50) answering.push(...(await Promise.all(Array.from({ length: 50 }, () => open(listener.port, true)))));
    const pings = new Map<WebSocket, number>();
    // Each answers a ping with a pong, then a message: once the listener's owner has read
    // that message, the listener has seen the pong before it.
    for (const ws of answering) ws.on('ping', () => (pings.set(ws, (pings.get(ws) ?? 0) + 1), ws.send(Buffer.from([1]))));
    const silent = await open(listener.port, false);
    const silentClosed = new Promise<number>((resolve) => silent.once('close', (code) => resolve(code)));
    expect(accepted()).toBe(count + 1);
    const closedAny = () => answering.some((ws) => ws.readyState !== WebSocket.OPEN);
    const answeredRound = (round: number) => until(() => closedAny() || messagesRead.slice(0, count).every((n) => n >= round), `every answering socket's pong of round ${round}`);

    // Round 1 pings all (the last ones beyond the first slices); nobody is cut yet.
    clock.advance(PING_INTERVAL_MS);
    await answeredRound(1);
    expect(silent.readyState).toBe(WebSocket.OPEN);
    // Round 2 cuts the silent socket, which did not answer round 1, and only it.
    clock.advance(PING_INTERVAL_MS);
    expect(await silentClosed).toBe(1006);
    await answeredRound(2);
    expect(answering.filter((ws) => ws.readyState !== WebSocket.OPEN)).toHaveLength(0);
    expect(answering.every((ws) => pings.get(ws) === 2)).toBe(true);
    expect(listener.connectionCount).toBe(count);
  });
});

/** A raw TCP client, closed when the test ends. */
async function rawSocket(port: number, send?: string): Promise<RawSocket> {
  const raw = await openRawSocket(port, send);
  cleanups.push(() => void raw.socket.destroy());
  return raw;
}

describe('listener deadline before the upgrade', () => {
  it('closes sockets that send nothing or half a request at handshakeTimeoutMs, and keeps serving /healthz', async () => {
    const { listener, clock, closed } = await start(60_000, { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS });
    const silent = await rawSocket(listener.port);
    const partial = await rawSocket(listener.port, `GET ${WS_PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`);
    const slowHeaders = await rawSocket(listener.port, 'GET /healthz HTTP/1.1\r\nHo');
    // Each holds a slot from its TCP accept, before it has sent a whole request.
    await expect.poll(() => listener.preAuthCount).toBe(3);
    // A moment before their deadline they still hold it.
    clock.advance(HANDSHAKE_TIMEOUT_MS - 1);
    expect([listener.preAuthCount, closed]).toEqual([3, []]);

    // While they wait, plain HTTP is served, each request on a socket of its own.
    const during = await fetch(`http://127.0.0.1:${listener.port}/healthz`);
    expect(during.status).toBe(200);
    expect(during.headers.get('connection')).toBe('close');
    expect(await during.json()).toEqual({ status: 'ok' });

    clock.advance(1);
    await Promise.all([silent.closed, partial.closed, slowHeaders.closed]);
    for (const s of [silent, partial, slowHeaders]) expect(s.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(closed).toEqual(['http_timeout', 'http_timeout', 'http_timeout']);

    const after = await fetch(`http://127.0.0.1:${listener.port}/healthz`);
    expect(after.status).toBe(200);
    // Every slot given back: the three timed out, the two requests answered and closed.
    await expect.poll(() => listener.preAuthCount).toBe(0);
  });

  it('a WebSocket that upgraded in time is left to the handshake deadline of its owner', async () => {
    const { listener, clock, accepted, closed } = await start(60_000, { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS });
    const ws = await open(listener.port, true);
    const late = await rawSocket(listener.port);
    expect(accepted()).toBe(1);
    await expect.poll(() => listener.preAuthCount).toBe(2);
    clock.advance(HANDSHAKE_TIMEOUT_MS);
    // The raw socket's deadline passes; the upgraded one, which has no owner here to close
    // it, stays open and keeps its slot until its owner ends it.
    await late.closed;
    expect(closed).toEqual(['http_timeout']);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(listener.preAuthCount).toBe(1);
  });
});
