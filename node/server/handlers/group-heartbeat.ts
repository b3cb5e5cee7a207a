import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { ConsumerGroupHeartbeatResponse, Kind } from '../../../protocol/frames.js';
import type { DecodedRequests } from '../../../protocol/requests.js';
import type { RequestContext } from '../context.js';
import { isAllowed } from '../../auth/acl.js';
import { refusal } from './authorize.js';
import { groupAllowed } from './offsets.js';

// KIP-848's ConsumerGroupHeartbeat (node/groups/coordinator.ts). The principal must be
// allowed the group, and a member may subscribe only to topics its principal may consume:
// naming another refuses the heartbeat. A member id is the principal's that joined with it.
export async function handleConsumerGroupHeartbeat(request: DecodedRequests[Kind.ConsumerGroupHeartbeat], ctx: RequestContext): Promise<ConsumerGroupHeartbeatResponse> {
  const { groupId, memberId, memberEpoch, subscribedTopics, subscribedTopicPattern, ownedPartitions } = request;
  groupAllowed(ctx, groupId);
  for (const topic of subscribedTopics ?? []) {
    const refused = refusal(ctx, 'consume', topic);
    if (refused) throw new TributaryError(Errors.UNAUTHORIZED, refused.message);
  }
  const principal = ctx.principal;
  const mayConsume = (topic: string) => isAllowed(principal, 'consume', topic);
  return ctx.broker.groups.heartbeat({ groupId, principal: principal.key, memberId, memberEpoch, subscribedTopics, subscribedTopicPattern, mayConsume, ownedPartitions });
}
