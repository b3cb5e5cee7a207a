// A Tributary node: storage, the request handlers and the listener wired together.
// `startBroker` is what `tributary start` runs and what tests start in-process.

import { resolve } from 'node:path';
import { DEFAULT_LIMITS, type Limits } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { loadOrCreateNodeMeta, lockDataDir, type NodeMeta } from './node-meta.js';
import { Connection } from './server/connection.js';
import type { BrokerContext } from './server/context.js';
import { FetchWaiter } from './server/fetch-waiter.js';
import { listen, WS_PATH, type Listener } from './server/listener.js';
import { parseTopicConfig } from './storage/config.js';
import { LogManager } from './storage/log-manager.js';

export interface BrokerOptions {
  dataDir: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 7400; 0 picks a free port. */
  port?: number;
  nodeId?: string;
  limits?: Partial<Limits>;
  /** Defaults for new topics, by Kafka's config names. */
  topicDefaults?: Record<string, string | number>;
  logger?: Logger;
  /** How long shutdown waits for requests in progress before closing connections. */
  shutdownGraceMs?: number;
}

export interface Broker {
  readonly nodeId: string;
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly logs: LogManager;
  /** Live figures for health checks and tests. */
  stats(): BrokerStats;
  /** Answers what is in progress, flushes every log and writes the clean-shutdown marker. */
  close(): Promise<void>;
}

export interface BrokerStats {
  connections: number;
  requestsInFlight: number;
  /** Bytes queued in user space towards clients, summed over connections. */
  sendBufferedBytes: number;
  fetchesWaiting: number;
}

export async function startBroker(options: BrokerOptions): Promise<Broker> {
  const logger = options.logger ?? createLogger();
  const dataDir = resolve(options.dataDir);
  const unlock = lockDataDir(dataDir);
  try {
    const meta = loadOrCreateNodeMeta(dataDir, options.nodeId);
    return await startLocked(options, dataDir, meta, logger, unlock);
  } catch (err) {
    unlock();
    throw err;
  }
}

async function startLocked(options: BrokerOptions, dataDir: string, meta: NodeMeta, logger: Logger, unlock: () => void): Promise<Broker> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  // Node-wide topic defaults are checked now, so a typo stops the start with one clear line.
  const defaults = parseTopicConfig(options.topicDefaults);
  const logs = await LogManager.open(dataDir, { defaults });
  logRecovery(logs, logger);

  const fetchWaiter = new FetchWaiter();
  let shuttingDown = false;
  const context: BrokerContext = {
    nodeId: meta.nodeId,
    logs,
    limits,
    logger,
    fetchWaiter,
    get shuttingDown() {
      return shuttingDown;
    },
  };
  const connections = new Set<Connection>();
  let listener: Listener;
  try {
    listener = await listen({
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 7400,
      limits,
      logger,
      health: () => ({ status: shuttingDown ? 'stopping' : 'ok', nodeId: meta.nodeId, topics: logs.topics().length, connections: connections.size }),
      onConnection(transport, remote) {
        const connection = new Connection(transport, context, remote);
        connections.add(connection);
        connection
          .serve()
          .catch((err: unknown) => logger.error({ remote, err: (err as Error)?.stack ?? String(err) }, 'connection failed'))
          .finally(() => connections.delete(connection));
      },
    });
  } catch (err) {
    await logs.close();
    throw err;
  }

  const host = options.host ?? '127.0.0.1';
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let closing: Promise<void> | null = null;
  return {
    nodeId: meta.nodeId,
    url: `ws://${urlHost}:${listener.port}${WS_PATH}`,
    port: listener.port,
    dataDir,
    logs,
    stats() {
      let requestsInFlight = 0;
      let sendBufferedBytes = 0;
      for (const c of connections) {
        requestsInFlight += c.requestsInFlight;
        sendBufferedBytes += c.sendBufferedBytes;
      }
      return { connections: connections.size, requestsInFlight, sendBufferedBytes, fetchesWaiting: fetchWaiter.waitingCount };
    },
    close() {
      closing ??= (async () => {
        shuttingDown = true;
        const stopped = listener.stopAccepting();
        // Long polls answer now with what they have; produce requests finish their fsync.
        fetchWaiter.close();
        const grace = new Promise<void>((r) => setTimeout(r, options.shutdownGraceMs ?? 5000).unref());
        await Promise.race([Promise.all([...connections].map((c) => c.whenIdle())), grace]);
        listener.terminateAll();
        await logs.close();
        unlock();
        await Promise.race([stopped, new Promise<void>((r) => setTimeout(r, 1000).unref())]);
        logger.info({ nodeId: meta.nodeId }, 'node stopped cleanly');
      })();
      return closing;
    },
  };
}

/** Says what an unclean start found and did: nothing is cut from a log silently. */
function logRecovery(logs: LogManager, logger: Logger): void {
  const report = logs.recoveryReport;
  if (!report.clean && report.partitions.length > 0) {
    const scanned = report.partitions.reduce((n, p) => n + p.scannedBytes, 0);
    logger.warn({ partitions: report.partitions.length, scannedBytes: scanned }, 'no clean-shutdown marker: checked the tail of every partition');
  }
  for (const p of report.partitions) {
    if (p.truncatedBytes > 0 || p.deletedSegments.length > 0 || p.rebuiltIndexes.length > 0 || p.notes.length > 0) {
      logger.warn(
        { topic: p.topic, partition: p.partition, truncatedBytes: p.truncatedBytes, deletedSegments: p.deletedSegments, rebuiltIndexes: p.rebuiltIndexes, notes: p.notes },
        'recovered partition',
      );
    }
  }
  for (const t of report.unreadableTopics) logger.error({ topic: t }, 'topic config unreadable; its data is left untouched');
  for (const t of report.finishedDeletes) logger.info({ topic: t }, 'finished a topic deletion that a crash interrupted');
}
