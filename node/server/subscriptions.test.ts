// Push delivery over an in-memory pipe against a real partition log: the appends of one
// turn of the event loop leave in one SubscribeData push, in order; appends in later turns
// in later pushes; and credit still bounds what is pushed.

import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../protocol/clock.js';
import { decodeFrame, Kind, RESPONSE } from '../../protocol/frames.js';
import { batchSizeAt, LOG_OVERHEAD, readInt64 } from '../../protocol/record-batch.js';
import { forwardingTransport, memoryPipe, type FrameTransport } from '../../protocol/transport.js';
import type { Principal } from '../auth/acl.js';
import { silentLogger } from '../logger.js';
import { PartitionRoles } from '../partition-roles.js';
import { parseTopicConfig } from '../storage/config.js';
import { PartitionLog } from '../storage/partition-log.js';
import { makeBatch, makeTempDir, removeDir } from '../storage/testing.js';
import type { BrokerContext } from './context.js';
import { SendBudget } from './send-budget.js';
import { ConnectionSubscriptions } from './subscriptions.js';

const admin = { name: 'tester', role: 'node' } as unknown as Principal;
let dir: string;
let log: PartitionLog;
let client: FrameTransport;
let server: FrameTransport;
let broker: BrokerContext;
let clock: ManualClock;
let subscriptions: ConnectionSubscriptions;

beforeEach(async () => {
  dir = makeTempDir();
  log = await PartitionLog.open(path.join(dir, 't-0'), 't', 0, parseTopicConfig({ flush: 'os' }), {});
  [client, server] = memoryPipe();
  clock = new ManualClock();
  broker = {
    clock,
    limits: { fetchBytesMax: 1 << 20, sendBufferBytesMax: 1 << 20, requestScanBytesMax: 16 << 20, requestDecompressBytesMax: 64 << 20 },
    logger: silentLogger,
    shuttingDown: false,
    logs: { partition: (topic: string, partition: number) => (topic === 't' && partition === 0 ? log : undefined) },
    partitionRoles: new PartitionRoles('n', { partition: (topic: string, partition: number) => (topic === 't' && partition === 0 ? log : undefined) }),
    metrics: { countServed: () => {}, requestsUnauthorized: { inc: () => {} }, limitReached: { inc: () => {} } },
    sendBudget: new SendBudget({ perConnectionMax: 1 << 20, perPrincipalMax: 1 << 30, totalMax: 1 << 30 }),
  } as unknown as BrokerContext;
  subscriptions = new ConnectionSubscriptions(server, broker);
});

afterEach(async () => {
  subscriptions.closeAll();
  client.close();
  await log.close();
  removeDir(dir);
});

/** The base offsets of the batches in each SubscribeData push received so far. */
async function pushes(iterator: AsyncIterator<Buffer>, count: number): Promise<number[][]> {
  const out: number[][] = [];
  while (out.length < count) {
    const { value, done } = await iterator.next();
    if (done) throw new Error('the pipe ended');
    const frame = decodeFrame(value);
    expect(frame.kind).toBe(Kind.SubscribeData | RESPONSE);
    const partitions = frame.body.partitions as { records: Uint8Array }[];
    const bases: number[] = [];
    for (const p of partitions) {
      const records = Buffer.from(p.records);
      for (let at = 0; records.length - at >= LOG_OVERHEAD; at += batchSizeAt(records, at)) bases.push(readInt64(records, at));
    }
    out.push(bases);
  }
  return out;
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('push delivery', () => {
  it('sends the appends of one turn of the event loop in one push, and later turns in later pushes', async () => {
    const iterator = client[Symbol.asyncIterator]();
    subscriptions.subscribe({ creditBytes: 1 << 20, partitions: [{ topic: 't', partition: 0, fetchOffset: 0 }] }, admin);
    // Twenty callbacks of one turn, as the produce requests read from twenty sockets that
    // were ready together: microtasks run between them, so a push per append would show.
    for (let i = 0; i < 20; i++) setImmediate(() => log.append(makeBatch({ valueBytes: 30, fill: i })));
    await turn();
    await turn();
    log.append(makeBatch({ fill: 100 }));
    await turn();
    await turn();
    log.append(makeBatch({ fill: 101 }));
    log.append(makeBatch({ fill: 102 }));
    const got = await pushes(iterator, 3);
    expect(got).toEqual([Array.from({ length: 20 }, (_, i) => i), [20], [21, 22]]);
  });

  it('runs a push that waited more than 20 ms for the next turn at the next append, as on a saturated loop', async () => {
    // Which callback the push left in: the immediates X, Y and Z run in one turn; the push
    // scheduled by X's append would run in the next, after Z, unless Y's append runs it.
    let phase = 'start';
    const sentIn: string[] = [];
    subscriptions.closeAll();
    subscriptions = new ConnectionSubscriptions(forwardingTransport(server, { send: (frame) => (sentIn.push(phase), server.send(frame)) }), broker);
    const iterator = client[Symbol.asyncIterator]();
    subscriptions.subscribe({ creditBytes: 1 << 20, partitions: [{ topic: 't', partition: 0, fetchOffset: 0 }] }, admin);
    await turn();
    await turn();
    setImmediate(() => log.append(makeBatch({ fill: 1 })));
    setImmediate(() => {
      clock.advance(25);
      phase = 'Y';
      log.append(makeBatch({ fill: 2 }));
    });
    setImmediate(() => (phase = 'after'));
    const [pushed] = await pushes(iterator, 1);
    expect(pushed).toEqual([0, 1]);
    expect(sentIn).toEqual(['Y']);
  });

  it('pushes no more than the credit granted, then the rest after a grant', async () => {
    const iterator = client[Symbol.asyncIterator]();
    const batch = makeBatch({ valueBytes: 100 });
    const { subscriptionId } = subscriptions.subscribe({ creditBytes: batch.length * 3, partitions: [{ topic: 't', partition: 0, fetchOffset: 0 }] }, admin);
    for (let i = 0; i < 10; i++) log.append(makeBatch({ valueBytes: 100, fill: i }));
    const [first] = await pushes(iterator, 1);
    expect(first).toEqual([0, 1, 2]);
    await turn();
    await turn();
    subscriptions.credit({ subscriptionId, bytes: batch.length * 100 });
    const [rest] = await pushes(iterator, 1);
    expect(rest).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });
});
