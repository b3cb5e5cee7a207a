// The request handlers' own work on the hot paths, in this process and without a
// connection (no CBOR, no encryption, no socket): a Produce of one uncompressed batch of 10
// readings (1,171 B, a device's typical send) appended with flush=os, and a Fetch of one
// partition answered from a warm sealed segment, each body decoded as dispatch decodes it
// (protocol/requests.ts). What the connection adds is in
// `npm run bench:e2e`. Benches register at import and run only when this file is executed
// directly:
//
//   node dist/bench/handlers.bench.js

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { bench, do_not_optimize, group, run } from 'mitata';
import { systemClock } from '../protocol/clock.js';
import { Kind } from '../protocol/frames.js';
import { decodeRequest } from '../protocol/requests.js';
import { ANONYMOUS } from '../node/auth/acl.js';
import { DEFAULT_LIMITS } from '../node/config.js';
import { silentLogger } from '../node/logger.js';
import { PartitionRoles } from '../node/partition-roles.js';
import type { BrokerContext, RequestContext } from '../node/server/context.js';
import { FetchWaiter } from '../node/server/fetch-waiter.js';
import { handleFetch } from '../node/server/handlers/fetch.js';
import { handleProduce } from '../node/server/handlers/produce.js';
import { PrincipalRates } from '../node/server/principal-rates.js';
import { SendBudget } from '../node/server/send-budget.js';
import { parseTopicConfig } from '../node/storage/config.js';
import { PartitionLog } from '../node/storage/partition-log.js';
import { makeBatch, makeTempDir, removeDir } from '../node/storage/testing.js';

const MIB = 1024 * 1024;
const T0 = 1_700_000_000_000;
/** A fresh log after this many bytes appended, so the bench's disk use stays bounded. */
const PRODUCE_LOG_BYTES_MAX = 256 * MIB;
const NOOP = (): void => {};

interface Target {
  log: PartitionLog;
  cleanUp(): Promise<void>;
}

async function openLog(config: Record<string, string | number> = {}): Promise<Target> {
  const dir = makeTempDir();
  const log = await PartitionLog.open(path.join(dir, 'readings-0'), 'readings', 0, parseTopicConfig({ flush: 'os', ...config }));
  return {
    log,
    cleanUp: async () => {
      await log.close().catch(() => undefined);
      removeDir(dir);
    },
  };
}

/** Just what the Produce and Fetch handlers use of a node, around one partition. */
function requestContext(current: () => PartitionLog): RequestContext {
  const broker = {
    nodeId: 'bench',
    clock: systemClock,
    limits: DEFAULT_LIMITS,
    logger: silentLogger,
    shuttingDown: false,
    logs: { partition: (topic: string, partition: number) => (topic === 'readings' && partition === 0 ? current() : undefined) },
    partitionRoles: new PartitionRoles('bench', { partition: (topic: string, partition: number) => (topic === 'readings' && partition === 0 ? current() : undefined) }),
    metrics: { countAppended: NOOP, countServed: NOOP, duplicateBatches: { inc: NOOP }, limitReached: { inc: NOOP }, requestsUnauthorized: { inc: NOOP } },
    diskGuard: { refuses: () => false, noteAppended: NOOP },
    fetchWaiter: new FetchWaiter(systemClock),
    sendBudget: new SendBudget({ perConnectionMax: DEFAULT_LIMITS.sendBufferBytesMax, perPrincipalMax: DEFAULT_LIMITS.sendBufferBytesPerPrincipalMax, totalMax: DEFAULT_LIMITS.sendBufferBytesTotalMax }),
    principalRates: new PrincipalRates({ decompressBytesPerSecond: DEFAULT_LIMITS.decompressBytesPerPrincipalPerSecond, now: () => performance.now() }),
  } as unknown as BrokerContext;
  return {
    broker,
    clientId: 'bench',
    remoteAddress: '127.0.0.1',
    principal: ANONYMOUS,
    signal: new AbortController().signal,
    deadline: Number.MAX_SAFE_INTEGER,
    outboundSlot: () => Promise.resolve(),
    subscriptions: undefined as never,
    dropConnection: NOOP,
  };
}

const READINGS = makeBatch({ records: 10, valueBytes: 100, timestamp: T0, stepMs: 1 });

group(`Produce: one uncompressed ${READINGS.length}-byte batch, flush=os`, () => {
  bench('handleProduce', async function* () {
    let target = await openLog();
    const retired: Target[] = [];
    const ctx = requestContext(() => target.log);
    yield async () => {
      if (target.log.sizeBytes > PRODUCE_LOG_BYTES_MAX && retired.length === 0) {
        retired.push(target);
        void openLog().then((next) => (target = next));
      }
      do_not_optimize(await handleProduce(decodeRequest(Kind.Produce, { acks: 1, partitions: [{ topic: 'readings', partition: 0, records: READINGS }] }, DEFAULT_LIMITS), ctx));
    };
    for (const t of retired) await t.cleanUp();
    await target.cleanUp();
  });
});

group('Fetch: one partition, a warm sealed segment, up to 64 KiB', () => {
  bench('handleFetch', async function* () {
    // 1 MiB segments: the offsets fetched are in sealed ones, their indexes in the LRU
    // after the first fetch of each.
    const target = await openLog({ 'segment.bytes': MIB });
    for (let i = 0; i < 4000; i++) target.log.append(makeBatch({ records: 10, valueBytes: 100, timestamp: T0 + i * 10, stepMs: 1, fill: i }));
    const ctx = requestContext(() => target.log);
    const offsets = Array.from({ length: 64 }, (_, i) => Math.floor((target.log.logEndOffset * (i + 16)) / 96));
    let cursor = 0;
    yield async () => {
      cursor = (cursor + 1) & 63;
      do_not_optimize(await handleFetch(decodeRequest(Kind.Fetch, { maxWaitMs: 0, maxBytes: 64 * 1024, partitions: [{ topic: 'readings', partition: 0, fetchOffset: offsets[cursor] }] }, DEFAULT_LIMITS), ctx));
    };
    await target.cleanUp();
  });
});

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
