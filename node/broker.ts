// A Tributary node: storage, the request handlers and the listener wired together.
// `startBroker` is what `tributary start` runs and what tests start in-process.

import { resolve } from 'node:path';
import { verifyCredential } from '../protocol/credential.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import type { IdentityKeyPair } from '../protocol/key-file.js';
import { noiseKeyPairFromIdentity, SEALED_MESSAGE_BYTES_MAX } from '../protocol/secure-channel.js';
import { Authenticator, revocationLapse, type AnonymousPolicy } from './auth/authenticator.js';
import { RevocationStore } from './auth/revocation-store.js';
import { GroupCoordinator } from './groups/coordinator.js';
import { ConsumerOffsets } from './groups/offsets-store.js';
import { DEFAULT_LIMITS, DEFAULT_STORAGE, type Limits, type StorageConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { loadOrCreateNodeIdentity, loadOrCreateNodeMeta, lockDataDir, type NodeMeta } from './node-meta.js';
import { ProducerIdAllocator } from './producer-ids.js';
import { acceptConnection, PRE_AUTH_FRAME_BYTES_MAX, type NodeIdentity } from './server/accept.js';
import type { Connection } from './server/connection.js';
import type { BrokerContext, Faults } from './server/context.js';
import { FetchWaiter } from './server/fetch-waiter.js';
import { listen, WS_PATH, type Listener } from './server/listener.js';
import { RequestMemory } from './server/request-memory.js';
import { PrincipalRates } from './server/principal-rates.js';
import { SendBudget } from './server/send-budget.js';
import { Sessions } from './server/sessions.js';
import { parseTopicConfig, type TopicConfig } from './storage/config.js';
import { LogManager } from './storage/log-manager.js';
import { DiskGuard } from './storage/disk-guard.js';
import { DEFAULT_SCHEDULES, startMaintenance, type Schedules } from './maintenance.js';
import type { Scheduler } from './scheduler.js';

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
  auth?: BrokerAuthOptions;
  /** Consumer groups: a member silent this long is removed (default 45 s, KIP-848's). */
  groupSessionTimeoutMs?: number;
  /** How often members are told to heartbeat (default 5 s). */
  groupHeartbeatIntervalMs?: number;
  /** Failures to inject, for tests only (see server/context.ts). */
  faults?: Faults;
  /** The disk guard's limits (storage.* in the config). */
  storage?: Partial<StorageConfig>;
  /** Schedules of the background jobs (schedule.* in the config). */
  schedule?: Partial<Schedules>;
  /** Clock of the logs, their background jobs (segment.ms, retention) and the per-principal rates; tests inject one. */
  now?: () => number;
  /**
   * The first offset of a partition that an uplink has not forwarded yet. The disk guard
   * never drops a segment at or past it (unless storage.dropUnsent). Uplinks arrive with
   * the sync issue; until then no partition has unsent data and this is for tests.
   */
  unsentFrom?: (topic: string, partition: number) => number | undefined;
}

export interface BrokerAuthOptions {
  /** The fleet authority's public key: clients holding its credentials are admitted. */
  fleetPublicKey?: Buffer;
  /** The node's identity; default `<data>/node.key`, made on the first start. */
  identity?: IdentityKeyPair;
  /** The node's own credential (role node), shown to clients that pin the fleet key. */
  credential?: Buffer;
  /**
   * Whether clients without a credential are admitted: 'loopback' admits them from
   * loopback addresses only (dev mode), 'none' never. Default: 'loopback' without a fleet
   * key, 'none' with one.
   */
  anonymous?: AnonymousPolicy;
  now?: () => number;
}

export interface Broker {
  readonly nodeId: string;
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly logs: LogManager;
  /** The node's identity public key (Ed25519): what a client pins with --node-key. */
  readonly publicKey: Buffer;
  readonly fleetPublicKey: Buffer | undefined;
  readonly anonymous: AnonymousPolicy;
  /** The background jobs: retention, compaction, checkpoints, the disk guard. */
  readonly maintenance: Scheduler;
  readonly diskGuard: DiskGuard;
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
  /** Sockets before admission: from TCP accept until Hello succeeded. */
  handshakesInProgress: number;
  revocations: number;
}

export async function startBroker(options: BrokerOptions): Promise<Broker> {
  const logger = options.logger ?? createLogger();
  const dataDir = resolve(options.dataDir);
  const unlock = lockDataDir(dataDir);
  try {
    const meta = loadOrCreateNodeMeta(dataDir, options.nodeId);
    const identity = options.auth?.identity ?? loadOrCreateNodeIdentity(dataDir).identity;
    return await startLocked(options, dataDir, meta, identity, logger, unlock);
  } catch (err) {
    unlock();
    throw err;
  }
}

async function startLocked(options: BrokerOptions, dataDir: string, meta: NodeMeta, identity: IdentityKeyPair, logger: Logger, unlock: () => void): Promise<Broker> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  // Node-wide topic defaults are checked now, so a typo stops the start with one clear line.
  parseTopicConfig(options.topicDefaults);
  const auth = options.auth ?? {};
  const fleetPublicKey = auth.fleetPublicKey;
  const anonymous: AnonymousPolicy = auth.anonymous ?? (fleetPublicKey ? 'none' : 'loopback');
  if (anonymous === 'none' && !fleetPublicKey) {
    throw new TributaryError(Errors.INVALID_CONFIG, 'anonymous clients are refused but no fleet key is set, so no client could connect: set auth.fleetPublicKey');
  }
  if (auth.credential) checkNodeCredential(auth.credential, identity, fleetPublicKey);
  // Only the keys the operator set are the node's: DescribeConfigs shows the rest as built-in defaults.
  const now = options.now ?? Date.now;
  const logs = await LogManager.open(dataDir, { defaults: (options.topicDefaults ?? {}) as Partial<TopicConfig>, now });
  let revocations: RevocationStore;
  let offsets: ConsumerOffsets;
  try {
    logRecovery(logs, logger);
    revocations = await RevocationStore.open(logs, fleetPublicKey, logger);
    offsets = await ConsumerOffsets.open(logs, logger, {
      limits,
      // Commits come once the node serves, after the metrics exist.
      onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
    });
  } catch (err) {
    await logs.close();
    throw err;
  }
  const nodeIdentity: NodeIdentity = { staticKeyPair: noiseKeyPairFromIdentity(identity), credential: auth.credential };
  const authenticator = new Authenticator({ fleetPublicKey, anonymous, revocations: revocations.list, now: auth.now });
  const sendBudget = new SendBudget({
    perConnectionMax: limits.sendBufferBytesMax,
    perPrincipalMax: limits.sendBufferBytesPerPrincipalMax,
    totalMax: limits.sendBufferBytesTotalMax,
    onOver: () => logger.warn({ sendBufferBytesTotalMax: limits.sendBufferBytesTotalMax }, 'bytes queued towards clients passed limits.sendBufferBytesTotalMax: connections with a backlog wait'),
  });
  const requestMemory = new RequestMemory({
    perPrincipalMax: limits.inflightBytesPerPrincipalMax,
    totalMax: limits.inflightBytesTotalMax,
    onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
  });
  const sessions = new Sessions({
    connectionsPerPrincipalMax: limits.connectionsPerPrincipalMax,
    now: auth.now,
    onLimitReached: () => metrics.limitReached.inc({ limit: 'connectionsPerPrincipalMax' }),
  });
  // A revocation closes what it names at once, not at its next request.
  revocations.onApplied = (revocation) => {
    const closed = sessions.revoke(revocation, revocationLapse(revocation));
    if (closed > 0) logger.info({ connections: closed }, 'closed the connections of a revoked credential');
  };

  const fetchWaiter = new FetchWaiter();
  let shuttingDown = false;
  const connections = new Set<Connection>();
  const metrics = createMetrics({
    connections: () => listener?.connectionCount ?? 0,
    handshakesInProgress: () => listener?.preAuthCount ?? 0,
    sendBufferBytes: () => sendBudget.totalBytes,
    requestBytes: () => requestMemory.totalBytes,
    logs,
    offsets,
    groups: () => context.groups,
    storage: () => (diskGuard.enabled ? diskGuard.status() : undefined),
  });
  const storage: StorageConfig = { ...DEFAULT_STORAGE, ...options.storage };
  const diskGuard = new DiskGuard(logs, {
    ...storage,
    action: storage.guard,
    logger,
    unsentFrom: options.unsentFrom,
    onDropped: (topic, _partition, bytes) => {
      metrics.diskGuardDroppedSegments.inc({ topic });
      metrics.diskGuardDroppedBytes.inc({ topic }, bytes);
    },
  });
  warnIfGuardCannotDrop(storage, logs, options.topicDefaults, logger);
  const context: BrokerContext = {
    nodeId: meta.nodeId,
    diskGuard,
    sessions,
    sendBudget,
    requestMemory,
    // Monotonic unless a test injects a clock: a wall clock that steps refills too much or too little.
    principalRates: new PrincipalRates({ decompressBytesPerSecond: limits.decompressBytesPerPrincipalPerSecond, now: options.now ?? (() => performance.now()) }),
    logs,
    limits,
    logger,
    fetchWaiter,
    authenticator,
    revocations,
    metrics,
    producerIds: ProducerIdAllocator.open(dataDir),
    offsets,
    groups: new GroupCoordinator({
      partitionsOf: (topic) => logs.topic(topic)?.partitions,
      topicNames: () => logs.topics().map((t) => t.name),
      sessionTimeoutMs: options.groupSessionTimeoutMs,
      heartbeatIntervalMs: options.groupHeartbeatIntervalMs,
      membersPerPrincipalMax: limits.groupMembersPerPrincipalMax,
      membersMax: limits.groupMembersMax,
      onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
    }),
    faults: options.faults,
    get shuttingDown() {
      return shuttingDown;
    },
  };
  let listener: Listener | undefined;
  try {
    // Before the listener: a node restarted on a full disk refuses from its first request.
    if (diskGuard.enabled) await diskGuard.check();
    listener = await listen({
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 7400,
      limits,
      logger,
      preAuthFrameBytesMax: PRE_AUTH_FRAME_BYTES_MAX,
      messageBytesMax: SEALED_MESSAGE_BYTES_MAX,
      health: () => ({ status: shuttingDown ? 'stopping' : 'ok', nodeId: meta.nodeId, topics: logs.topics().filter((t) => !t.name.startsWith('__')).length, connections: connections.size }),
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
      onRefused: (reason) => {
        metrics.connectionsRefused.inc({ reason });
        if (reason === 'connections_max') metrics.limitReached.inc({ limit: 'connectionsMax' });
      },
      onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
      onPreAuthClosed: (reason) => metrics.connectionsClosed.inc({ reason }),
      onConnection(transport, remote, controls) {
        const hooks = {
          onServing: (connection: Connection) => connections.add(connection),
          onClosed: (connection: Connection | null) => {
            if (connection) connections.delete(connection);
          },
        };
        void acceptConnection({ raw: transport, remote, controls, broker: context, identity: nodeIdentity, hooks }).catch((err: unknown) => logger.error({ remote, err: (err as Error)?.stack ?? String(err) }, 'connection failed'));
      },
    });
  } catch (err) {
    metrics.close();
    await logs.close();
    throw err;
  }
  const openListener: Listener = listener;
  const maintenance = startMaintenance({
    logs,
    logger,
    metrics,
    guard: diskGuard,
    schedules: { ...DEFAULT_SCHEDULES, ...options.schedule },
    now,
    expireOffsets: () => offsets.expire(now(), limits.offsetsRetentionMs, (group) => context.groups.memberCount(group) > 0),
  });

  const host = options.host ?? '127.0.0.1';
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  let closing: Promise<void> | null = null;
  return {
    nodeId: meta.nodeId,
    url: `ws://${urlHost}:${openListener.port}${WS_PATH}`,
    port: openListener.port,
    dataDir,
    logs,
    publicKey: identity.publicKey,
    fleetPublicKey,
    anonymous,
    maintenance,
    diskGuard,
    stats() {
      let requestsInFlight = 0;
      let sendBufferedBytes = 0;
      for (const c of connections) {
        requestsInFlight += c.requestsInFlight;
        sendBufferedBytes += c.sendBufferedBytes;
      }
      return {
        connections: connections.size,
        requestsInFlight,
        sendBufferedBytes,
        fetchesWaiting: fetchWaiter.waitingCount,
        handshakesInProgress: openListener.preAuthCount,
        revocations: revocations.list.size,
      };
    },
    close() {
      closing ??= (async () => {
        shuttingDown = true;
        const stopped = openListener.stopAccepting();
        // Long polls answer now with what they have; produce requests finish their fsync.
        fetchWaiter.close();
        const grace = new Promise<void>((r) => setTimeout(r, options.shutdownGraceMs ?? 5000).unref());
        await Promise.race([Promise.all([...connections].map((c) => c.whenIdle())), grace]);
        openListener.terminateAll();
        // No job may hold a partition while it closes; a long compaction stops early.
        sessions.close();
        sendBudget.close();
        await maintenance.stop();
        await diskGuard.stop();
        await logs.close();
        metrics.close();
        unlock();
        await Promise.race([stopped, new Promise<void>((r) => setTimeout(r, 1000).unref())]);
        logger.info({ nodeId: meta.nodeId }, 'node stopped cleanly');
      })();
      return closing;
    },
  };
}

/** A node credential that would not convince a client pinning the fleet key stops the start. */
function checkNodeCredential(credential: Buffer, identity: IdentityKeyPair, fleetPublicKey: Buffer | undefined): void {
  if (!fleetPublicKey) throw new TributaryError(Errors.INVALID_CONFIG, 'a node credential needs the fleet key (auth.fleetPublicKey) it was issued by');
  let checked;
  try {
    checked = verifyCredential(credential, fleetPublicKey);
  } catch (err) {
    throw new TributaryError(Errors.INVALID_CONFIG, `the node's credential is not valid: ${(err as TributaryError).detail}`);
  }
  if (checked.role !== 'node') throw new TributaryError(Errors.INVALID_CONFIG, `the node's credential has role ${checked.role}, not node`);
  if (!checked.subject.equals(identity.publicKey)) throw new TributaryError(Errors.INVALID_CONFIG, "the node's credential was issued for another key than the node's identity");
}

/**
 * The drop guard deletes only closed segments: if the active segments alone can exceed
 * storage.maxBytes, dropping cannot keep the node under it, and it will refuse instead.
 */
function warnIfGuardCannotDrop(storage: StorageConfig, logs: LogManager, topicDefaults: Record<string, string | number> | undefined, logger: Logger): void {
  if (storage.maxBytes <= 0) return;
  const segmentBytes = parseTopicConfig(topicDefaults)['segment.bytes'];
  let activeBytesMax = 0;
  for (const topic of logs.topics()) activeBytesMax += topic.partitions * topic.config['segment.bytes'];
  if (activeBytesMax > storage.maxBytes) {
    logger.warn(
      { maxBytes: storage.maxBytes, activeSegmentsBytesMax: activeBytesMax, defaultSegmentBytes: segmentBytes },
      'storage.maxBytes is smaller than the active segments of all partitions may grow: lower segment.bytes, or the guard will refuse produce rather than drop',
    );
  }
}

/**
 * Says what an unclean start found and did: nothing is cut from a log silently. After a
 * crash or a power loss every partition's tail is checked and its indexes rebuilt, which is
 * routine (one info line); a warning is for a partition that lost something, or held what
 * recovery did not expect.
 */
function logRecovery(logs: LogManager, logger: Logger): void {
  const report = logs.recoveryReport;
  const damaged = report.partitions.filter((p) => p.truncatedBytes > 0 || p.deletedSegments.length > 0 || p.notes.length > 0);
  if (!report.clean && report.partitions.length > 0) {
    const scanned = report.partitions.reduce((n, p) => n + p.scannedBytes, 0);
    logger.info(
      { partitions: report.partitions.length, scannedBytes: scanned, partitionsCut: damaged.length },
      damaged.length === 0 ? 'no clean-shutdown marker: checked the tail of every partition; nothing was cut' : 'no clean-shutdown marker: checked the tail of every partition',
    );
  }
  for (const p of report.partitions) {
    const fields = { topic: p.topic, partition: p.partition, truncatedBytes: p.truncatedBytes, deletedSegments: p.deletedSegments, rebuiltIndexes: p.rebuiltIndexes, notes: p.notes };
    if (damaged.includes(p)) logger.warn(fields, p.truncatedBytes > 0 ? `recovered partition: cut ${p.truncatedBytes} bytes of torn or corrupt batches from its tail` : 'recovered partition');
    // On a clean start indexes are trusted: one rebuilt means its file did not match the log.
    else if (p.rebuiltIndexes.length > 0) logger[report.clean ? 'info' : 'debug'](fields, 'rebuilt the indexes of a partition');
  }
  for (const t of report.unreadableTopics) logger.error({ topic: t.topic, file: t.file, detail: t.reason }, 'topic config unreadable; its data is left untouched');
  for (const t of report.finishedDeletes) logger.info({ topic: t }, 'finished a topic deletion that a crash interrupted');
}
