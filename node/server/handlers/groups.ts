import { Errors } from '../../../protocol/errors.js';
import type { DescribeGroupResponse, ListGroupsResponse } from '../../../protocol/frames.js';
import { isAllowed } from '../../auth/acl.js';
import { validateGroupId } from '../../groups/offsets-store.js';
import type { RequestContext } from '../context.js';
import type { Body } from '../validate.js';
import { groupAllowed } from './offsets.js';

// ListGroups and DescribeGroup, for `tributary groups list|describe`: live members from the
// coordinator, committed offsets from __consumer_offsets, and the lag between each committed
// offset and the partition's high watermark. A principal sees only the groups it may use
// (node/auth/acl.ts), and in them only what concerns topics it may describe; describing a
// group it may not use answers UNAUTHORIZED whether or not the group exists.
export async function handleListGroups(_body: Body, ctx: RequestContext): Promise<ListGroupsResponse> {
  const { groups, offsets } = ctx.broker;
  const ids = new Set<string>();
  for (const id of groups.groupIds()) if (isAllowed(ctx.principal, 'group', id)) ids.add(id);
  for (const id of offsets.groupIds()) if (isAllowed(ctx.principal, 'group', id)) ids.add(id);
  return {
    error: Errors.NONE.code,
    groups: [...ids].sort().map((groupId) => ({ groupId, members: groups.describe(groupId)?.members.length ?? 0 })),
  };
}

export async function handleDescribeGroup(body: Body, ctx: RequestContext): Promise<DescribeGroupResponse> {
  const groupId = body.groupId;
  validateGroupId(groupId);
  groupAllowed(ctx, groupId);
  const { groups, offsets, logs } = ctx.broker;
  const visible = (tp: string) => isAllowed(ctx.principal, 'describe', tp.slice(0, tp.lastIndexOf('/')));
  const described = groups.describe(groupId);
  const members = (described?.members ?? []).map((m) => ({
    memberId: m.memberId,
    memberEpoch: m.memberEpoch,
    topics: m.topics.filter((t) => isAllowed(ctx.principal, 'describe', t)),
    assignment: m.target.filter(visible),
    owned: m.owned.filter(visible),
  }));
  const committed = offsets
    .all(groupId)
    .filter(({ topic }) => isAllowed(ctx.principal, 'describe', topic))
    .map(({ topic, partition, committed: c }) => {
      const highWatermark = logs.partition(topic, partition)?.highWatermark ?? -1;
      return { topic, partition, committed: c.offset, highWatermark, lag: highWatermark < 0 ? -1 : Math.max(0, highWatermark - c.offset) };
    })
    .sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1));
  return { error: Errors.NONE.code, groupId, epoch: described?.epoch ?? 0, members, offsets: committed };
}
