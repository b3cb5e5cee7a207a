import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { ConsumerGroupHeartbeatResponse } from '../../../protocol/frames.js';
import { validateGroupId } from '../../groups/offsets-store.js';
import type { RequestContext } from '../context.js';
import { isAllowed } from '../../auth/acl.js';
import { refusal } from './authorize.js';
import { int, legalTopicName, list, map, str, topicName, type Body } from '../validate.js';
import { groupAllowed } from './offsets.js';

const TOPICS_MAX = 1000;
const PARTITIONS_MAX = 10_000;

// KIP-848's ConsumerGroupHeartbeat (node/groups/coordinator.ts). The principal must be
// allowed the group, and a member may subscribe only to topics its principal may consume:
// naming another refuses the heartbeat. A member id is the principal's that joined with it.
export async function handleConsumerGroupHeartbeat(body: Body, ctx: RequestContext): Promise<ConsumerGroupHeartbeatResponse> {
  const groupId = body.groupId;
  validateGroupId(groupId);
  groupAllowed(ctx, groupId);
  const memberId = body.memberId;
  // '' to join, else the id the node gave (a UUID): anything longer is no member of ours.
  if (typeof memberId !== 'string' || memberId.length > 64) throw new TributaryError(Errors.INVALID_REQUEST, 'memberId must be a string of at most 64 characters');
  const memberEpoch = int(body, 'memberEpoch', -1, 0x7fffffff);
  let subscribedTopics: string[] | undefined;
  if (body.subscribedTopics !== undefined) {
    subscribedTopics = list(body, 'subscribedTopics', TOPICS_MAX).map((name) => {
      const t = legalTopicName(name, 'subscribedTopics[]');
      const refused = refusal(ctx, 'consume', t);
      if (refused) throw new TributaryError(Errors.UNAUTHORIZED, refused.message);
      return t;
    });
  }
  let subscribedTopicPattern: string | undefined;
  if (body.subscribedTopicPattern !== undefined) {
    subscribedTopicPattern = str(body, 'subscribedTopicPattern');
    if (subscribedTopicPattern.length > 249 || !/^[A-Za-z0-9._*-]+$/.test(subscribedTopicPattern)) {
      throw new TributaryError(Errors.INVALID_REQUEST, `subscribedTopicPattern ${JSON.stringify(subscribedTopicPattern)} must be 1-249 of [A-Za-z0-9._-] and *`);
    }
  }
  let partitionsSeen = 0;
  const ownedPartitions = list(body, 'ownedPartitions', TOPICS_MAX).map((e, i) => {
    const entry = map(e, `ownedPartitions[${i}]`);
    const partitions = list(entry, 'partitions', PARTITIONS_MAX).map((p) => {
      if (!Number.isInteger(p) || (p as number) < 0) throw new TributaryError(Errors.INVALID_REQUEST, `ownedPartitions[${i}] holds a bad partition`);
      return p as number;
    });
    partitionsSeen += partitions.length;
    if (partitionsSeen > PARTITIONS_MAX) throw new TributaryError(Errors.INVALID_REQUEST, `more than ${PARTITIONS_MAX} owned partitions`);
    return { topic: topicName(entry, 'topic'), partitions };
  });
  const principal = ctx.principal;
  const mayConsume = (topic: string) => isAllowed(principal, 'consume', topic);
  return ctx.broker.groups.heartbeat({ groupId, principal: principal.key, memberId, memberEpoch, subscribedTopics, subscribedTopicPattern, mayConsume, ownedPartitions });
}
