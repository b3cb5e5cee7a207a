import type { Clock } from '../../protocol/clock.js';
import type { CreditRequest, Kind, SubscribeResponse, UnsubscribeRequest } from '../../protocol/frames.js';
import type { DecodedRequests } from '../../protocol/requests.js';
import type { Principal } from '../auth/acl.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { GroupCoordinator } from '../groups/coordinator.js';
import type { ConsumerOffsets } from '../groups/offsets-store.js';
import type { RevocationStore } from '../auth/revocation-store.js';
import type { Limits } from '../config.js';
import type { NodeMetrics } from '../metrics.js';
import type { ProducerIdAllocator } from '../producer-ids.js';
import type { Logger } from '../logger.js';
import type { PartitionRoles } from '../partition-roles.js';
import type { ReplicaProgress } from '../replica-progress.js';
import type { DiskGuard } from '../storage/disk-guard.js';
import type { LogManager } from '../storage/log-manager.js';
import type { FetchWaiter } from './fetch-waiter.js';
import type { RequestMemory } from './request-memory.js';
import type { PrincipalRates } from './principal-rates.js';
import type { SendBudget } from './send-budget.js';
import type { Sessions } from './sessions.js';

/** What every handler may use: the node's shared state. Handlers never see a socket. */
export interface BrokerContext {
  readonly nodeId: string;
  /**
   * The node's one clock (BrokerOptions.clock): every deadline, timer, timestamp and rate
   * of the server side reads it, so that a test drives time instead of sleeping.
   */
  readonly clock: Clock;
  readonly logs: LogManager;
  /**
   * What this node is for each partition (leader, follower, none): every handler that
   * touches a partition goes through `leaderLog`, which answers NOT_LEADER for the others.
   */
  readonly partitionRoles: PartitionRoles;
  /** Each follower's log end per partition this node leads, from its ReplicaFetch requests. */
  readonly replicaProgress: ReplicaProgress;
  readonly limits: Limits;
  readonly logger: Logger;
  readonly fetchWaiter: FetchWaiter;
  readonly shuttingDown: boolean;
  readonly authenticator: Authenticator;
  readonly revocations: RevocationStore;
  readonly metrics: NodeMetrics;
  readonly producerIds: ProducerIdAllocator;
  readonly offsets: ConsumerOffsets;
  readonly groups: GroupCoordinator;
  readonly diskGuard: DiskGuard;
  /** Admitted connections by principal and credential: their bounds, revocation, expiry. */
  readonly sessions: Sessions;
  /** Bytes queued towards clients, per connection, per principal and node-wide. */
  readonly sendBudget: SendBudget;
  /** Bytes of request frames held, per principal and node-wide. */
  readonly requestMemory: RequestMemory;
  /** What each principal may inflate per second (limits.decompressBytesPerPrincipalPerSecond). */
  readonly principalRates: PrincipalRates;
  /** Failures injected by tests; never set from a config or the command line. */
  readonly faults?: Faults;
}

export interface Faults {
  /**
   * Asked after a Produce request's batches are appended and before it is answered: true
   * drops the connection there, so the client sees a lost answer for an appended batch.
   */
  dropAfterAppend?(): boolean;
  /** Awaited at start once the port is bound and before storage opens: a test holds the node "starting". */
  beforeStorageOpens?(port: number): Promise<void>;
}

/** Per request: the broker, who asked, and the request's deadline. */
export interface RequestContext {
  readonly broker: BrokerContext;
  readonly clientId: string;
  readonly remoteAddress: string;
  /** Who is asking: every handler checks its actions against it (node/auth/acl.ts). */
  readonly principal: Principal;
  /** Aborted when the request times out, the connection closes or the node shuts down. */
  readonly signal: AbortSignal;
  /**
   * When the request must be answered by, on the monotonic clock (broker.clock.monotonic):
   * a wall clock that steps would cut a long poll short or stretch it.
   */
  readonly deadline: number;
  /**
   * Waits until the connection's send buffer has room and holds it until this request's
   * response is written. Handlers that produce large responses (Fetch) call it before
   * reading, so a slow reader cannot make the node buffer without bound.
   */
  outboundSlot(): Promise<void>;
  /** This connection's push subscriptions (node/server/subscriptions.ts). */
  readonly subscriptions: RequestSubscriptions;
  /** Closes the connection at once, without answering (fault injection only). */
  dropConnection(reason: string): void;
}

/**
 * What a request may do with its connection's push subscriptions: Subscribe, Credit and
 * Unsubscribe. ConnectionSubscriptions implements it; declared here so that this file of
 * types imports nothing of the server's code.
 */
export interface RequestSubscriptions {
  subscribe(request: DecodedRequests[Kind.Subscribe], principal: Principal): SubscribeResponse;
  credit(request: CreditRequest): void;
  unsubscribe(request: UnsubscribeRequest): void;
}
