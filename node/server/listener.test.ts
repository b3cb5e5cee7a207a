// The listener over real sockets: its keepalive (every socket is pinged each round, in
// slices across turns of the event loop, and a socket that did not answer the previous
// round's ping is cut), and its deadline for sockets that never make their WebSocket
// upgrade.

import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { rawSocket as openRawSocket, type RawSocket } from '../../test/helpers/tcp.js';
import { DEFAULT_LIMITS, type Limits } from '../config.js';
import { silentLogger } from '../logger.js';
import { listen, WS_PATH, type Listener, type PreAuthCloseReason } from './listener.js';
import { until } from '../../test/helpers/until.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(pingIntervalMs: number, limits: Partial<Limits> = {}): Promise<{ listener: Listener; accepted: () => number; closed: PreAuthCloseReason[] }> {
  let accepted = 0;
  const closed: PreAuthCloseReason[] = [];
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
    onConnection: () => void accepted++,
    pingIntervalMs,
  });
  cleanups.push(async () => {
    listener.terminateAll();
    await listener.stopAccepting();
  });
  return { listener, accepted: () => accepted, closed };
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
    const { listener, accepted } = await start(100);
    const count = 600;
    const answering: WebSocket[] = [];
    for (let i = 0; i < count; i += 50) answering.push(...(await Promise.all(Array.from({ length: 50 }, () => open(listener.port, true)))));
    const pings = new Map<WebSocket, number>();
    for (const ws of answering) ws.on('ping', () => pings.set(ws, (pings.get(ws) ?? 0) + 1));
    const silent = await open(listener.port, false);
    const silentClosed = new Promise<number>((resolve) => silent.once('close', (code) => resolve(code)));
    expect(accepted()).toBe(count + 1);

    // The silent socket is cut at the round after its first unanswered ping.
    expect(await silentClosed).toBe(1006);
    // Every answering socket is pinged round after round (the last ones are beyond the
    // first slices), and none is cut: two rounds pass, counted by the pings themselves (or
    // a socket is cut, which the next lines name).
    const closedAny = () => answering.some((ws) => ws.readyState !== WebSocket.OPEN);
    await until(() => closedAny() || answering.every((ws) => (pings.get(ws) ?? 0) >= 2), 'two ping rounds over every answering socket');
    expect(answering.filter((ws) => ws.readyState !== WebSocket.OPEN)).toHaveLength(0);
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
    const { listener, closed } = await start(60_000, { handshakeTimeoutMs: 300 });
    const silent = await rawSocket(listener.port);
    const partial = await rawSocket(listener.port, `GET ${WS_PATH} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n`);
    const slowHeaders = await rawSocket(listener.port, 'GET /healthz HTTP/1.1\r\nHo');
    // Each holds a slot from its TCP accept, before it has sent a whole request.
    await expect.poll(() => listener.preAuthCount).toBe(3);

    // While they wait, plain HTTP is served, each request on a socket of its own.
    const during = await fetch(`http://127.0.0.1:${listener.port}/healthz`);
    expect(during.status).toBe(200);
    expect(during.headers.get('connection')).toBe('close');
    expect(await during.json()).toEqual({ status: 'ok' });

    await Promise.all([silent.closed, partial.closed, slowHeaders.closed]);
    for (const s of [silent, partial, slowHeaders]) expect(s.received()).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(closed).toEqual(['http_timeout', 'http_timeout', 'http_timeout']);

    const after = await fetch(`http://127.0.0.1:${listener.port}/healthz`);
    expect(after.status).toBe(200);
    // Every slot given back: the three timed out, the two requests answered and closed.
    await expect.poll(() => listener.preAuthCount).toBe(0);
  });

  it('a WebSocket that upgraded in time is left to the handshake deadline of its owner', async () => {
    const { listener, accepted, closed } = await start(60_000, { handshakeTimeoutMs: 300 });
    const ws = await open(listener.port, true);
    const late = await rawSocket(listener.port);
    expect(accepted()).toBe(1);
    // The raw socket's deadline passes; the upgraded one, which has no owner here to close
    // it, stays open and keeps its slot until its owner ends it.
    await late.closed;
    expect(closed).toEqual(['http_timeout']);
    expect(ws.readyState).toBe(WebSocket.OPEN);
    expect(listener.preAuthCount).toBe(1);
  });
});
