// One table from request kind to handler; one file per handler (as aedes lib/handlers).
// Each body is decoded here into the typed request of its kind (protocol/requests.ts)
// before its handler runs, so a handler reads typed fields and never a body.
// An internal kind (node to node: ReplicaFetch now, uplink and cluster control later) is
// registered here like any other, wrapped in `internal`, which admits it only to `node`
// credentials: the rule is in one place, before the body is decoded.

import { Errors, LimitReachedError, TributaryError } from '../../protocol/errors.js';
import { Kind, kindName } from '../../protocol/frames.js';
import { decodeRequest, type Body, type DecodedRequests, type RequestKind } from '../../protocol/requests.js';
import { isAllowed, refusalMessage } from '../auth/acl.js';
import type { RequestContext } from './context.js';
import { handleAlterConfigs } from './handlers/alter-configs.js';
import { handleCreateTopics } from './handlers/create-topics.js';
import { handleDeleteTopics } from './handlers/delete-topics.js';
import { handleDescribeConfigs } from './handlers/describe-configs.js';
import { handleFetch } from './handlers/fetch.js';
import { handleHello } from './handlers/hello.js';
import { handleInitProducerId } from './handlers/init-producer-id.js';
import { handleListOffsets } from './handlers/list-offsets.js';
import { handleMetadata } from './handlers/metadata.js';
import { handleConsumerGroupHeartbeat } from './handlers/group-heartbeat.js';
import { handleDescribeGroup, handleListGroups } from './handlers/groups.js';
import { handleOffsetCommit, handleOffsetFetch } from './handlers/offsets.js';
import { handleOffsetsForLeaderEpoch } from './handlers/offsets-for-leader-epoch.js';
import { handleProduce } from './handlers/produce.js';
import { handleReplicaFetch } from './handlers/replica-fetch.js';
import { handleCredit, handleSubscribe, handleUnsubscribe } from './handlers/subscribe.js';

/** Returns the response body, or undefined when the request wants no answer (acks=0). */
export type Handler = (body: Body, ctx: RequestContext) => Promise<object | undefined>;
/** A handler of one kind: it takes the request decodeRequest made of the body. */
export type TypedHandler<K extends RequestKind> = (request: DecodedRequests[K], ctx: RequestContext) => Promise<object | undefined>;

/**
 * The handler of `kind`, behind the decoding of its body: a body that fails as a whole is
 * answered with why, and past limits.requestEntriesMax counted in
 * tributary_limits_reached_total, before the handler sees anything.
 */
function typed<K extends RequestKind>(kind: K, handler: TypedHandler<K>): [Kind, Handler] {
  // Not async: a request the body refuses throws here, which the connection answers as it
  // answers a rejection, and the handler's own promise is the request's only one.
  const decoding: Handler = (body, ctx) => {
    let request: DecodedRequests[K];
    try {
      request = decodeRequest(kind, body, ctx.broker.limits);
    } catch (err) {
      if (err instanceof LimitReachedError) ctx.broker.metrics.limitReached.inc({ limit: err.limit });
      throw err;
    }
    return handler(request, ctx);
  };
  return [kind, decoding];
}

const internalKinds = new Set<number>();

/** The kinds admitted only to `node` credentials. */
export const INTERNAL_KINDS: ReadonlySet<number> = internalKinds;

/**
 * Registers `kind` as internal. Anyone but a `node` credential (admin and dev mode's
 * anonymous included: only a node keeps a replica) is answered CLUSTER_AUTHORIZATION_FAILED,
 * as Kafka answers a replica fetch from a non-replica, counted in
 * tributary_requests_unauthorized_total{action="clusterAction"}; the connection stays usable.
 */
function internal([kind, handler]: [Kind, Handler]): [Kind, Handler] {
  internalKinds.add(kind);
  const admitted: Handler = async (body, ctx) => {
    if (!isAllowed(ctx.principal, 'clusterAction')) {
      ctx.broker.metrics.requestsUnauthorized.inc({ action: 'clusterAction' });
      throw new TributaryError(Errors.CLUSTER_AUTHORIZATION_FAILED, refusalMessage(ctx.principal, 'clusterAction', kindName(kind)));
    }
    return handler(body, ctx);
  };
  return [kind, admitted];
}

export const handlers: ReadonlyMap<number, Handler> = new Map<number, Handler>([
  typed(Kind.Hello, handleHello),
  typed(Kind.Metadata, handleMetadata),
  typed(Kind.CreateTopics, handleCreateTopics),
  typed(Kind.DeleteTopics, handleDeleteTopics),
  typed(Kind.Produce, handleProduce),
  typed(Kind.Fetch, handleFetch),
  typed(Kind.ListOffsets, handleListOffsets),
  typed(Kind.InitProducerId, handleInitProducerId),
  typed(Kind.Subscribe, handleSubscribe),
  typed(Kind.Credit, handleCredit),
  typed(Kind.Unsubscribe, handleUnsubscribe),
  typed(Kind.OffsetCommit, handleOffsetCommit),
  typed(Kind.OffsetFetch, handleOffsetFetch),
  typed(Kind.ConsumerGroupHeartbeat, handleConsumerGroupHeartbeat),
  typed(Kind.ListGroups, handleListGroups),
  typed(Kind.DescribeGroup, handleDescribeGroup),
  typed(Kind.AlterConfigs, handleAlterConfigs),
  typed(Kind.DescribeConfigs, handleDescribeConfigs),
  typed(Kind.OffsetsForLeaderEpoch, handleOffsetsForLeaderEpoch),
  internal(typed(Kind.ReplicaFetch, handleReplicaFetch)),
]);
