// The listener's keepalive: every socket is pinged each round, in slices across turns of
// the event loop, and a socket that did not answer the previous round's ping is cut.

import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Limits } from '../config.js';
import { silentLogger } from '../logger.js';
import { listen, WS_PATH, type Listener } from './listener.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(pingIntervalMs: number): Promise<{ listener: Listener; accepted: () => number }> {
  let accepted = 0;
  const listener = await listen({
    host: '127.0.0.1',
    port: 0,
    limits: { connectionsMax: 10_000 } as Limits,
    logger: silentLogger,
    preAuthFrameBytesMax: 4096,
    messageBytesMax: 65_536,
    health: () => ({}),
    metrics: async () => ({ contentType: 'text/plain', body: '' }),
    admit: () => null,
    onRefused: () => {},
    onConnection: () => void accepted++,
    pingIntervalMs,
  });
  cleanups.push(async () => {
    listener.terminateAll();
    await listener.stopAccepting();
  });
  return { listener, accepted: () => accepted };
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
    // Every answering socket was pinged (the last ones are beyond the first slices), and
    // none was cut, through a few more rounds.
    await new Promise((r) => setTimeout(r, 350));
    expect(answering.filter((ws) => (pings.get(ws) ?? 0) >= 2)).toHaveLength(count);
    expect(answering.filter((ws) => ws.readyState !== WebSocket.OPEN)).toHaveLength(0);
    expect(listener.connectionCount).toBe(count);
  });
});
