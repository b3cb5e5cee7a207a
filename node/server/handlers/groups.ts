import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { DescribeGroupResponse, Kind, ListGroupsResponse } from '../../../protocol/frames.js';
import type { DecodedRequests } from '../../../protocol/requests.js';
import { isAllowed } from '../../auth/acl.js';
import type { RequestContext } from '../context.js';
import { groupAllowed } from './offsets.js';

// ListGroups and DescribeGroup, for `tributary groups list|describe`: live members from the
// coordinator, committed offsets from __consumer_offsets, and the lag between each committed
// offset and the partition's high watermark (-1 where there is no commit or no partition). A principal sees only the groups it may use
// (node/auth/acl.ts), and in them only what concerns topics it may describe; describing a
// group it may not use answers UNAUTHORIZED whether or not the group exists.
/** Kafka's -1: no committed offset, or no such partition. */
const NO_OFFSET = -1;

export async function handleListGroups(_request: DecodedRequests[Kind.ListGroups], ctx: RequestContext): Promise<ListGroupsResponse> {
  const { groups, offsets } = ctx.broker;
  const ids = new Set<string>();
  for (const id of groups.groupIds()) if (isAllowed(ctx.principal, 'group', id)) ids.add(id);
  for (const id of offsets.groupIds()) if (isAllowed(ctx.principal, 'group', id)) ids.add(id);
  return {
    error: Errors.NONE.code,
    groups: [...ids].sort().map((groupId) => ({ groupId, members: groups.describe(groupId)?.members.length ?? 0 })),
  };
}

export async function handleDescribeGroup(request: DecodedRequests[Kind.DescribeGroup], ctx: RequestContext): Promise<DescribeGroupResponse> {
  const { groupId } = request;
  groupAllowed(ctx, groupId);
  const { groups, offsets, logs } = ctx.broker;
  const described = groups.describe(groupId);
  const stored = offsets.all(groupId);
  // As Kafka's kafka-consumer-groups: a group with neither members nor commits is none.
  if (described === undefined && stored.length === 0) throw new TributaryError(Errors.GROUP_ID_NOT_FOUND, `consumer group '${groupId}' does not exist`);
  const visible = (tp: string) => isAllowed(ctx.principal, 'describe', tp.slice(0, tp.lastIndexOf('/')));
  const members = (described?.members ?? []).map((m) => ({
    memberId: m.memberId,
    memberEpoch: m.memberEpoch,
    topics: m.topics.filter((t) => isAllowed(ctx.principal, 'describe', t)),
    assignment: m.target.filter(visible),
    owned: m.owned.filter(visible),
  }));
  // Every partition committed or assigned, each with its log end: a live member's partition
  // shows how far behind it is even before its first commit.
  const committed = new Map<string, number>();
  for (const { topic, partition, committed: c } of stored) committed.set(`${topic}/${partition}`, c.offset);
  for (const m of members) for (const tp of m.assignment) if (!committed.has(tp)) committed.set(tp, NO_OFFSET);
  const rows = [...committed]
    .filter(([tp]) => visible(tp))
    .map(([tp, offset]) => {
      const topic = tp.slice(0, tp.lastIndexOf('/'));
      const partition = Number(tp.slice(tp.lastIndexOf('/') + 1));
      const highWatermark = logs.partition(topic, partition)?.highWatermark ?? NO_OFFSET;
      const lag = highWatermark < 0 || offset < 0 ? NO_OFFSET : Math.max(0, highWatermark - offset);
      return { topic, partition, committed: offset, highWatermark, lag };
    })
    .sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  return { error: Errors.NONE.code, groupId, epoch: described?.epoch ?? 0, members, offsets: rows };
}
