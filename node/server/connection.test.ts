// The per-request path of a Connection over an in-memory pipe: every request is answered
// exactly once, by its handler or with REQUEST_TIMED_OUT at its deadline, with its signal
// aborted then; a late handler answer is dropped; timeouts come in arrival order and
// leave the connection serving; a peer without Hello is closed at helloTimeoutMs. Time is
// a ManualClock's: deadlines come when the test moves it, never from waiting.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../protocol/clock.js';
import { Errors } from '../../protocol/errors.js';
import { decodeFrame, encodeFrame, Kind, RESPONSE, type Frame } from '../../protocol/frames.js';
import { CloseCode, memoryPipe, type FrameTransport } from '../../protocol/transport.js';
import type { Principal } from '../auth/acl.js';
import { silentLogger } from '../logger.js';
import type { BrokerContext } from './context.js';
import { Connection } from './connection.js';
import { RequestMemory } from './request-memory.js';
import { SendBudget } from './send-budget.js';
import type { Handler } from './dispatch.js';

const principal = { name: 'tester', roles: ['admin'] } as unknown as Principal;

const HELLO_TIMEOUT_MS = 10_000;

function brokerStub(clock: ManualClock, requestTimeoutMs: number, observed: { kind: number; response: object | undefined }[]): BrokerContext {
  return {
    clock,
    limits: { requestTimeoutMs, helloTimeoutMs: HELLO_TIMEOUT_MS, inflightMax: 32, inflightBytesMax: 1 << 20, sendBufferBytesMax: 1 << 20 },
    logger: silentLogger,
    shuttingDown: false,
    authenticator: { recheck: () => null },
    sessions: { admit: () => null, remove: () => {} },
    sendBudget: new SendBudget({ perConnectionMax: 1 << 20, perPrincipalMax: 1 << 30, totalMax: 1 << 30 }),
    requestMemory: new RequestMemory({ perPrincipalMax: 1 << 30, totalMax: 1 << 30 }),
    metrics: { observeRequest: (kind: number, _s: number, response: object | undefined) => observed.push({ kind, response }) },
  } as unknown as BrokerContext;
}

/** Reads answers off the client side of the pipe as they come. */
function answers(client: FrameTransport): { next(): Promise<Frame>; all: Frame[] } {
  const all: Frame[] = [];
  const waiters: ((f: Frame) => void)[] = [];
  void (async () => {
    for await (const bytes of client) {
      const frame = decodeFrame(bytes);
      all.push(frame);
      waiters.shift()?.(frame);
    }
  })();
  let read = 0;
  return {
    all,
    next: () => (read < all.length ? Promise.resolve(all[read++]) : new Promise<Frame>((resolve) => waiters.push((f) => (read++, resolve(f))))),
  };
}

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

function serve(handlers: Map<number, Handler>, requestTimeoutMs = 60) {
  const [client, server] = memoryPipe();
  const clock = new ManualClock();
  const observed: { kind: number; response: object | undefined }[] = [];
  handlers.set(Kind.Hello, async () => ({ error: Errors.NONE.code }));
  const connection = new Connection(server, brokerStub(clock, requestTimeoutMs, observed), 'test', { principal }, () => {}, handlers);
  const served = connection.serve();
  closers.push(() => client.close());
  const read = answers(client);
  let correlationId = 0;
  const ask = (kind: number, body: object = {}) => {
    const id = ++correlationId;
    client.send(encodeFrame(kind, id, body));
    return id;
  };
  return { client, connection, served, read, ask, observed, clock };
}

describe('Connection requests', () => {
  it('answers a request that outlives its deadline with REQUEST_TIMED_OUT, aborts its signal, and drops the late answer', async () => {
    let signal: AbortSignal | undefined;
    let finishLate!: (body: object) => void;
    const handlers = new Map<number, Handler>([
      [Kind.Metadata, (_body, ctx) => { signal = ctx.signal; return new Promise((resolve) => (finishLate = resolve)); }],
      [Kind.ListOffsets, async () => ({ error: Errors.NONE.code, partitions: [] })],
    ]);
    const { connection, read, ask, observed, clock } = serve(handlers);
    ask(Kind.Hello, { clientId: 't' });
    expect((await read.next()).body.error).toBe(Errors.NONE.code);

    const slow = ask(Kind.Metadata);
    await vi.waitFor(() => expect(signal).toBeDefined());
    // Its deadline is 60 ms on the node's clock: a moment before, it is still in progress.
    clock.advance(59);
    expect([connection.requestsInFlight, signal?.aborted]).toEqual([1, false]);
    clock.advance(1);
    expect(connection.requestsInFlight).toBe(0);
    const timedOut = await read.next();
    expect(timedOut.correlationId).toBe(slow);
    expect(timedOut.kind).toBe(Kind.Metadata | RESPONSE);
    expect(timedOut.body.error).toBe(Errors.REQUEST_TIMED_OUT.code);
    expect(timedOut.body.message).toMatch(/took longer than 60 ms/);
    expect(signal?.aborted).toBe(true);
    expect(connection.requestsInFlight).toBe(0);

    // The handler's answer after the deadline is not sent: the next answer is the next request's.
    finishLate({ error: Errors.NONE.code, topics: [] });
    const next = ask(Kind.ListOffsets);
    const answer = await read.next();
    expect(answer.correlationId).toBe(next);
    expect(answer.body.error).toBe(Errors.NONE.code);
    expect(read.all.filter((f) => f.correlationId === slow)).toHaveLength(1);
    expect(observed.filter((o) => o.kind === Kind.Metadata)).toHaveLength(1);
  });

  it('times out several hanging requests in arrival order while others are answered', async () => {
    const handlers = new Map<number, Handler>([
      [Kind.Produce, () => new Promise(() => {})],
      [Kind.InitProducerId, async () => ({ error: Errors.NONE.code, producerId: 1, producerEpoch: 0 })],
    ]);
    const { connection, read, ask, clock } = serve(handlers);
    ask(Kind.Hello, { clientId: 't' });
    await read.next();
    const hanging = [ask(Kind.Produce)];
    await vi.waitFor(() => expect(connection.requestsInFlight).toBe(1));
    // The later two arrive 10 ms after the first: each times out 60 ms after its own arrival.
    clock.advance(10);
    hanging.push(ask(Kind.Produce), ask(Kind.Produce));
    const quick = ask(Kind.InitProducerId);
    const first = await read.next();
    expect(first.correlationId).toBe(quick);
    expect(connection.requestsInFlight).toBe(3);
    clock.advance(50);
    expect(connection.requestsInFlight).toBe(2);
    clock.advance(9);
    expect(connection.requestsInFlight).toBe(2);
    clock.advance(1);
    const late = [await read.next(), await read.next(), await read.next()];
    expect(late.map((f) => f.correlationId)).toEqual(hanging);
    expect(late.every((f) => f.body.error === Errors.REQUEST_TIMED_OUT.code)).toBe(true);
    expect(connection.requestsInFlight).toBe(0);
    await connection.whenIdle();
  });

  it('answers requests whose answer may be large one at a time: the next starts once the last is written', async () => {
    const started: number[] = [];
    const releases: (() => void)[] = [];
    const handlers = new Map<number, Handler>([
      [Kind.Metadata, (body) => new Promise((resolve) => { started.push(body.n as number); releases.push(() => resolve({ error: Errors.NONE.code })); })],
      [Kind.InitProducerId, async () => ({ error: Errors.NONE.code, producerId: 1, producerEpoch: 0 })],
    ]);
    const { read, ask } = serve(handlers, 10_000);
    ask(Kind.Hello, { clientId: 't' });
    await read.next();
    ask(Kind.Metadata, { n: 1 });
    ask(Kind.Metadata, { n: 2 });
    const quick = ask(Kind.InitProducerId);
    // Other kinds go on meanwhile.
    expect((await read.next()).correlationId).toBe(quick);
    await vi.waitFor(() => expect(started).toEqual([1]));
    // The second waits for the first's answer however long: it has not started.
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([1]);
    releases[0]();
    await read.next();
    await vi.waitFor(() => expect(started).toEqual([1, 2]));
    releases[1]();
    await read.next();
  });

  it('hands a request its signal aborted when the connection ends, and answers nothing twice', async () => {
    let signal: AbortSignal | undefined;
    let release!: () => void;
    const handlers = new Map<number, Handler>([
      [Kind.Metadata, (_body, ctx) => new Promise((resolve) => { signal = ctx.signal; release = () => resolve({ error: Errors.NONE.code }); })],
    ]);
    const { client, connection, read, ask, served } = serve(handlers, 10_000);
    ask(Kind.Hello, { clientId: 't' });
    await read.next();
    ask(Kind.Metadata);
    await new Promise((r) => setImmediate(r));
    expect(signal?.aborted).toBe(false);
    client.close();
    await served;
    expect(signal?.aborted).toBe(true);
    expect(connection.requestsInFlight).toBe(1);
    release();
    await connection.whenIdle();
    expect(connection.requestsInFlight).toBe(0);
  });

  it('closes a peer that sends no Hello within helloTimeoutMs, and only then', async () => {
    const { client, connection, served, clock } = serve(new Map());
    clock.advance(HELLO_TIMEOUT_MS - 1);
    expect(client.isClosed).toBe(false);
    clock.advance(1);
    expect(await client.closed).toEqual({ code: CloseCode.POLICY_VIOLATION, reason: `no Hello within ${HELLO_TIMEOUT_MS} ms` });
    expect(connection.closeReason).toBe('hello_timeout');
    await served;
  });

  it('keeps a peer whose Hello came in time, however long it then stays quiet', async () => {
    const { client, read, ask, clock } = serve(new Map());
    clock.advance(HELLO_TIMEOUT_MS - 1);
    ask(Kind.Hello, { clientId: 't' });
    expect((await read.next()).body.error).toBe(Errors.NONE.code);
    clock.advance(10 * HELLO_TIMEOUT_MS);
    expect(client.isClosed).toBe(false);
  });

  it('answers a handler that throws with the error, and an unexpected one with UNKNOWN', async () => {
    const handlers = new Map<number, Handler>([
      [Kind.Metadata, async () => { throw new Error('boom'); }],
    ]);
    const { read, ask } = serve(handlers);
    ask(Kind.Hello, { clientId: 't' });
    await read.next();
    ask(Kind.Metadata);
    const answer = await read.next();
    expect(answer.body.error).toBe(Errors.UNKNOWN.code);
    expect(answer.body.message).toBe('unexpected server error: boom');
    ask(Kind.DeleteTopics);
    const unknown = await read.next();
    expect(unknown.body.error).toBe(Errors.INVALID_REQUEST.code);
    expect(unknown.body.message).toMatch(/unknown request kind/);
  });
});
