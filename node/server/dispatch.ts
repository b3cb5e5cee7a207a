// One table from request kind to handler; one file per handler (as aedes lib/handlers).

import { Kind } from '../../protocol/frames.js';
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
import { handleCredit, handleSubscribe, handleUnsubscribe } from './handlers/subscribe.js';
import type { Body } from './validate.js';

/** Returns the response body, or undefined when the request wants no answer (acks=0). */
export type Handler = (body: Body, ctx: RequestContext) => Promise<object | undefined>;

export const handlers: ReadonlyMap<number, Handler> = new Map<number, Handler>([
  [Kind.Hello, handleHello],
  [Kind.Metadata, handleMetadata],
  [Kind.CreateTopics, handleCreateTopics],
  [Kind.DeleteTopics, handleDeleteTopics],
  [Kind.Produce, handleProduce],
  [Kind.Fetch, handleFetch],
  [Kind.ListOffsets, handleListOffsets],
  [Kind.InitProducerId, handleInitProducerId],
  [Kind.Subscribe, handleSubscribe],
  [Kind.Credit, handleCredit],
  [Kind.Unsubscribe, handleUnsubscribe],
  [Kind.OffsetCommit, handleOffsetCommit],
  [Kind.OffsetFetch, handleOffsetFetch],
  [Kind.ConsumerGroupHeartbeat, handleConsumerGroupHeartbeat],
  [Kind.ListGroups, handleListGroups],
  [Kind.DescribeGroup, handleDescribeGroup],
  [Kind.AlterConfigs, handleAlterConfigs],
  [Kind.DescribeConfigs, handleDescribeConfigs],
  [Kind.OffsetsForLeaderEpoch, handleOffsetsForLeaderEpoch],
]);
