// A Tributary node: storage, the request handlers and the listener wired together.
// `startBroker` is what `tributary start` runs and what tests start in-process.

import { resolve } from 'node:path';
import { systemClock, type Clock, type ClockTimer } from '../protocol/clock.js';
import { verifyCredential } from '../protocol/credential.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import type { IdentityKeyPair } from '../protocol/key-file.js';
import { noiseKeyPairFromIdentity, SEALED_MESSAGE_BYTES_MAX } from '../protocol/secure-channel.js';
import { CloseCode } from '../protocol/transport.js';
import { Authenticator, revocationLapse, type AnonymousPolicy } from './auth/authenticator.js';
import { RevocationStore } from './auth/revocation-store.js';
import { GroupCoordinator } from './groups/coordinator.js';
import { ConsumerOffsets } from './groups/offsets-store.js';
import { DEFAULT_LIMITS, DEFAULT_STORAGE, type Limits, type StorageConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { Components } from './components.js';
import { createMetrics, type NodeMetrics } from './metrics.js';
import { loadOrCreateNodeIdentity, loadOrCreateNodeMeta, lockDataDir, type NodeMeta } from './node-meta.js';
import { PartitionRoles, type PartitionRoleControl } from './partition-roles.js';
import { ProducerIdAllocator } from './producer-ids.js';
import { ReplicaProgress, type ReplicaProgressView } from './replica-progress.js';
import { acceptConnection, PRE_AUTH_FRAME_BYTES_MAX, type NodeIdentity } from './server/accept.js';
import type { Connection } from './server/connection.js';
import type { BrokerContext, Faults } from './server/context.js';
import { FetchWaiter } from './server/fetch-waiter.js';
import { listen, WS_PATH, type Listener, type ListenerOptions } from './server/listener.js';
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
  /**
   * The node's one clock: wall time for timestamps and expiry (segment.ms, retention,
   * credentials, group sessions, committed offsets), monotonic time for rates and
   * deadlines, and the timers of the logs, the listener, connections and shutdown (not
   * node-cron's: the jobs' schedules stay on the system's). Default the system's; tests
   * inject one.
   */
  clock?: Clock;
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
}

export interface Broker {
  readonly nodeId: string;
  /** Where a client on this machine connects: loopback when the node listens on every interface. */
  readonly url: string;
  /** The address the node listens on, as bound: 0.0.0.0 or :: for every interface. */
  readonly address: string;
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
  /** Which partitions this node leads (all it has, until sync/ makes it follow some). */
  readonly partitionRoles: PartitionRoleControl;
  /** How far each follower's log reaches, per partition this node leads (ReplicaFetch). */
  readonly replicaProgress: ReplicaProgressView;
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
  const clock = options.clock ?? systemClock;
  const dataDir = resolve(options.dataDir);
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  // The port first: a node that cannot listen (the port is taken) stops before it makes a
  // data folder, a node id or a key, so a mistyped port leaves nothing behind to clean up.
  const port = await bindPort(options, limits, logger, clock);
  try {
    const unlock = lockDataDir(dataDir);
    try {
      const meta = loadOrCreateNodeMeta(dataDir, options.nodeId);
      const identity = options.auth?.identity ?? loadOrCreateNodeIdentity(dataDir).identity;
      return await startLocked(options, dataDir, meta, identity, logger, unlock, limits, port, clock);
    } catch (err) {
      unlock();
      throw err;
    }
  } catch (err) {
    const stopped = port.listener.stopAccepting();
    port.listener.terminateAll();
    await within(clock, 1000, stopped);
    throw err;
  }
}

/**
 * Waits for `work`, but no longer than `ms` on the node's clock: a peer that never finishes
 * cannot hold shutdown. The timer keeps no process alive.
 */
async function within(clock: Clock, ms: number, work: Promise<unknown>): Promise<void> {
  let timer: ClockTimer | undefined;
  const bound = new Promise<void>((resolve) => (timer = clock.setTimeout(resolve, ms).unref()));
  try {
    await Promise.race([work, bound]);
  } finally {
    timer?.cancel();
  }
}

/** What the listener hands on once the node serves. */
type Serving = Pick<ListenerOptions, 'health' | 'metrics' | 'onRefused' | 'onLimitReached' | 'onPreAuthClosed' | 'onConnection'>;

interface BoundPort {
  listener: Listener;
  /** From now on the listener's sockets go to the node; before, a client is told to try again. */
  serve(serving: Serving): void;
}

/**
 * Listens before the node is ready: a socket that arrives while storage opens (an unclean
 * start checks every partition's tail) is closed with "try again later", which clients
 * retry, and /healthz says "starting".
 */
async function bindPort(options: BrokerOptions, limits: Limits, logger: Logger, clock: Clock): Promise<BoundPort> {
  let serving: Serving | null = null;
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 7400;
  let listener: Listener;
  try {
    listener = await listen({
      host,
      port,
      limits,
      logger,
      clock,
      preAuthFrameBytesMax: PRE_AUTH_FRAME_BYTES_MAX,
      messageBytesMax: SEALED_MESSAGE_BYTES_MAX,
      health: () => (serving === null ? { status: 'starting' } : serving.health()),
      metrics: () => (serving === null ? Promise.reject(new Error('the node is starting')) : serving.metrics()),
      onRefused: (reason) => serving?.onRefused(reason),
      onLimitReached: (limit) => serving?.onLimitReached(limit),
      onPreAuthClosed: (reason) => serving?.onPreAuthClosed(reason),
      onConnection(transport, remote, controls) {
        if (serving !== null) return serving.onConnection(transport, remote, controls);
        transport.close(CloseCode.TRY_AGAIN_LATER, 'node starting');
        controls.endPreAuth();
      },
    });
  } catch (err) {
    throw listenError(err, host, port);
  }
  return {
    listener,
    serve: (s) => {
      serving = s;
    },
  };
}

/** A port that cannot be had is one line saying which and why, not Node's errno text. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `port ${port} on ${host}`;
  if (code === 'EADDRINUSE') return new Error(`${where} is in use (EADDRINUSE): another node or program listens there; stop it, or choose another --port`);
  if (code === 'EACCES') return new Error(`${where} needs privileges this process does not have (EACCES): choose a port from 1024 up`);
  if (code === 'EADDRNOTAVAIL') return new Error(`cannot listen on ${host} (EADDRNOTAVAIL): no interface of this machine has that address; --host 0.0.0.0 listens on every one`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new Error(`cannot listen on ${host} (${code}): no such host name`);
  return err;
}

async function startLocked(options: BrokerOptions, dataDir: string, meta: NodeMeta, identity: IdentityKeyPair, logger: Logger, unlock: () => void, limits: Limits, bound: BoundPort, clock: Clock): Promise<Broker> {
  // Node-wide topic defaults are checked now, so a typo stops the start with one clear line.
  parseTopicConfig(options.topicDefaults);
  const auth = options.auth ?? {};
  const fleetPublicKey = auth.fleetPublicKey;
  const anonymous: AnonymousPolicy = auth.anonymous ?? (fleetPublicKey ? 'none' : 'loopback');
  if (anonymous === 'none' && !fleetPublicKey) {
    throw new TributaryError(Errors.INVALID_CONFIG, 'anonymous clients are refused but no fleet key is set, so no client could connect: set auth.fleetPublicKey');
  }
  if (auth.credential) checkNodeCredential(auth.credential, identity.publicKey, fleetPublicKey);
  // Only the keys the operator set are the node's: DescribeConfigs shows the rest as built-in defaults.
  const now = (): number => clock.now();
  await options.faults?.beforeStorageOpens?.(bound.listener.port);
  const storage: StorageConfig = { ...DEFAULT_STORAGE, ...options.storage };
  const nodeIdentity: NodeIdentity = { staticKeyPair: noiseKeyPairFromIdentity(identity), credential: auth.credential };
  const fetchWaiter = new FetchWaiter(clock);
  const connections = new Set<Connection>();
  let shuttingDown = false;
  // Made by the components below, in order; each uses only those made before it (the
  // metrics' callbacks read later ones lazily, once the node serves).
  let logs!: LogManager;
  let revocations!: RevocationStore;
  let offsets!: ConsumerOffsets;
  let metrics!: NodeMetrics;
  let diskGuard!: DiskGuard;
  let sessions!: Sessions;
  let sendBudget!: SendBudget;
  let requestMemory!: RequestMemory;
  let groups!: GroupCoordinator;
  let context!: BrokerContext;
  let maintenance!: Scheduler;
  let stopped: Promise<void> = Promise.resolve();

  const parts = new Components(logger);
  await parts.start([
    {
      name: 'storage',
      start: async () => {
        logs = await LogManager.open(dataDir, { defaults: (options.topicDefaults ?? {}) as Partial<TopicConfig>, clock });
        logRecovery(logs, logger);
      },
      // No job may hold a partition while it closes: the scheduler and the guard stop first.
      stop: () => logs.close(),
    },
    {
      name: 'revocations',
      start: async () => {
        revocations = await RevocationStore.open(logs, fleetPublicKey, logger);
      },
    },
    {
      name: 'consumer offsets',
      start: async () => {
        offsets = await ConsumerOffsets.open(logs, logger, {
          limits,
          // Commits come once the node serves, after the metrics exist.
          onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
        });
      },
    },
    {
      name: 'metrics',
      start: () => {
        metrics = createMetrics({
          connections: () => bound.listener.connectionCount,
          handshakesInProgress: () => bound.listener.preAuthCount,
          sendBufferBytes: () => sendBudget.totalBytes,
          requestBytes: () => requestMemory.totalBytes,
          logs,
          offsets,
          groups: () => groups,
          storage: () => (diskGuard.enabled ? diskGuard.status() : undefined),
        });
      },
      stop: () => metrics.close(),
    },
    {
      name: 'disk guard',
      start: async () => {
        diskGuard = new DiskGuard(logs, {
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
        // Before the node serves: a node restarted on a full disk refuses from its first request.
        if (diskGuard.enabled) await diskGuard.check();
      },
      stop: () => diskGuard.stop(),
    },
    {
      name: 'sessions',
      start: () => {
        sendBudget = new SendBudget({
          perConnectionMax: limits.sendBufferBytesMax,
          perPrincipalMax: limits.sendBufferBytesPerPrincipalMax,
          totalMax: limits.sendBufferBytesTotalMax,
          clock,
          onOver: () => logger.warn({ sendBufferBytesTotalMax: limits.sendBufferBytesTotalMax }, 'bytes queued towards clients passed limits.sendBufferBytesTotalMax: connections with a backlog wait'),
        });
        requestMemory = new RequestMemory({
          perPrincipalMax: limits.inflightBytesPerPrincipalMax,
          totalMax: limits.inflightBytesTotalMax,
          onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
        });
        sessions = new Sessions({
          connectionsPerPrincipalMax: limits.connectionsPerPrincipalMax,
          clock,
          onLimitReached: () => metrics.limitReached.inc({ limit: 'connectionsPerPrincipalMax' }),
        });
        // A revocation closes what it names at once, not at its next request.
        revocations.onApplied = (revocation) => {
          const closed = sessions.revoke(revocation, revocationLapse(revocation));
          if (closed > 0) logger.info({ connections: closed }, 'closed the connections of a revoked credential');
        };
      },
      stop: () => {
        sessions.close();
        sendBudget.close();
      },
    },
    {
      name: 'groups',
      start: () => {
        groups = new GroupCoordinator({
          partitionsOf: (topic) => logs.topic(topic)?.partitions,
          topicNames: () => logs.topics().map((t) => t.name),
          sessionTimeoutMs: options.groupSessionTimeoutMs,
          heartbeatIntervalMs: options.groupHeartbeatIntervalMs,
          membersPerPrincipalMax: limits.groupMembersPerPrincipalMax,
          membersMax: limits.groupMembersMax,
          onLimitReached: (limit) => metrics.limitReached.inc({ limit }),
          now,
        });
      },
    },
    {
      name: 'handlers',
      start: () => {
        context = {
          nodeId: meta.nodeId,
          clock,
          partitionRoles: new PartitionRoles(meta.nodeId, logs),
          replicaProgress: new ReplicaProgress(now),
          diskGuard,
          sessions,
          sendBudget,
          requestMemory,
          // Monotonic: a wall clock that steps refills too much or too little.
          principalRates: new PrincipalRates({ decompressBytesPerSecond: limits.decompressBytesPerPrincipalPerSecond, now: () => clock.monotonic() }),
          logs,
          limits,
          logger,
          fetchWaiter,
          authenticator: new Authenticator({ fleetPublicKey, anonymous, revocations: revocations.list, now }),
          revocations,
          metrics,
          producerIds: ProducerIdAllocator.open(dataDir),
          offsets,
          groups,
          faults: options.faults,
          get shuttingDown() {
            return shuttingDown;
          },
        };
      },
    },
    {
      name: 'listener',
      start: () => serve(bound, context, metrics, connections, nodeIdentity, () => shuttingDown),
      stop: async () => {
        stopped = bound.listener.stopAccepting();
        // Long polls answer now with what they have; produce requests finish their fsync.
        fetchWaiter.close();
        await within(clock, options.shutdownGraceMs ?? 5000, Promise.all([...connections].map((c) => c.whenIdle())));
        bound.listener.terminateAll();
      },
    },
    {
      name: 'scheduler',
      start: () => {
        maintenance = startMaintenance({
          logs,
          logger,
          metrics,
          guard: diskGuard,
          schedules: { ...DEFAULT_SCHEDULES, ...options.schedule },
          now,
          expireOffsets: () => offsets.expire(now(), limits.offsetsRetentionMs, (group) => groups.memberCount(group) > 0),
        });
      },
      // A long compaction stops early.
      stop: () => maintenance.stop(),
    },
  ]);
  const openListener = bound.listener;
  // A client on this machine reaches a node listening on every interface through loopback.
  const address = openListener.address;
  const reachable = address === '0.0.0.0' ? '127.0.0.1' : address === '::' ? '::1' : address;
  let closing: Promise<void> | null = null;
  return {
    nodeId: meta.nodeId,
    url: `ws://${reachable.includes(':') ? `[${reachable}]` : reachable}:${openListener.port}${WS_PATH}`,
    address,
    port: openListener.port,
    dataDir,
    logs,
    publicKey: identity.publicKey,
    fleetPublicKey,
    anonymous,
    maintenance,
    diskGuard,
    partitionRoles: context.partitionRoles,
    replicaProgress: context.replicaProgress,
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
        // The reverse of the start: scheduler, listener (draining), handlers, groups,
        // sessions, disk guard, metrics, stores, storage; the data folder's lock last (a
        // failed start leaves it to startBroker, which took it).
        try {
          await parts.stop();
        } finally {
          unlock();
        }
        await within(clock, 1000, stopped);
        logger.info({ nodeId: meta.nodeId }, 'node stopped cleanly');
      })();
      return closing;
    },
  };
}

/** The listener hands its sockets to the node from now on: health, metrics, connections. */
function serve(bound: BoundPort, context: BrokerContext, metrics: NodeMetrics, connections: Set<Connection>, identity: NodeIdentity, shuttingDown: () => boolean): void {
  const { logs, logger, nodeId } = context;
  bound.serve({
    health: () => ({ status: shuttingDown() ? 'stopping' : 'ok', nodeId, topics: logs.topics().filter((t) => !t.name.startsWith('__')).length, connections: connections.size }),
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
      void acceptConnection({ raw: transport, remote, controls, broker: context, identity, hooks }).catch((err: unknown) => logger.error({ remote, err: (err as Error)?.stack ?? String(err) }, 'connection failed'));
    },
  });
}

/**
 * A node credential that would not convince a client pinning the fleet key stops the start:
 * signed by the fleet key, not expired, role node, and issued for the node's identity key.
 * `nodeKey` is that key, or where the node will make it (it has none yet), or undefined when
 * it is unknown (its file is unreadable: that is reported already). `tributary config check`
 * runs this too.
 */
export function checkNodeCredential(credential: Buffer, nodeKey: Buffer | { madeAt: string } | undefined, fleetPublicKey: Buffer | undefined): void {
  const refuse = (why: string) => new TributaryError(Errors.INVALID_CONFIG, `auth.credential: ${why}`);
  if (!fleetPublicKey) throw refuse('a node credential needs the fleet key (auth.fleetPublicKey) it was issued by');
  let checked;
  try {
    checked = verifyCredential(credential, fleetPublicKey);
  } catch (err) {
    // "issued by another fleet", "expired at ...": what a client pinning the fleet key would say.
    throw refuse((err as TributaryError).detail.replace(/^credential refused: /, ''));
  }
  if (checked.role !== 'node') throw refuse(`role is ${checked.role}, a node needs a node credential`);
  const subject = checked.subject.toString('hex');
  if (nodeKey === undefined) return;
  if (!Buffer.isBuffer(nodeKey)) {
    throw refuse(`issued for key ${subject}, but the node has no identity key yet (${nodeKey.madeAt} is made on the first start): start it once without auth.credential, then issue its credential for the node key it prints`);
  }
  if (!checked.subject.equals(nodeKey)) throw refuse(`issued for key ${subject}, not for the node's identity key ${nodeKey.toString('hex')}`);
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
    // Routine when nothing was lost; a warning, with the partitions' own lines after it, when something was.
    logger[damaged.length === 0 ? 'info' : 'warn'](
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
