import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { Kind, OffsetCommitResponse, OffsetFetchResponse } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import { OFFSET_METADATA_CHARS_MAX, type OffsetCommitEntry } from '../../groups/offsets-store.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';

// Kafka's OffsetCommit and OffsetFetch for a consumer group: its position per partition,
// stored in __consumer_offsets (node/groups/offsets-store.ts). The principal must be
// allowed the group (node/auth/acl.ts) and, per partition, to consume the topic. A commit
// is fenced by the group's membership (GroupCoordinator.validateCommit): a member commits
// at its epoch, anyone else only while the group has no live members. Commits are bounded
// per principal and node-wide (limits.offset*) and, like produce, refused while the disk
// guard says storage is full: each one appends to __consumer_offsets.
export async function handleOffsetCommit(request: DecodedRequests[Kind.OffsetCommit], ctx: RequestContext): Promise<OffsetCommitResponse> {
  const { groupId, memberId, memberEpoch } = request;
  const { broker } = ctx;
  if (broker.shuttingDown) throw new TributaryError(Errors.SHUTTING_DOWN);
  groupAllowed(ctx, groupId);
  broker.groups.validateCommit(groupId, memberId, memberEpoch, ctx.principal.key);
  if (broker.diskGuard.refusesOffsetCommits()) {
    throw new TributaryError(Errors.STORAGE_FULL, "the node's storage is full (storage.maxBytes or storage.minFreeBytes); commit again later");
  }
  const partitions: OffsetCommitResponse['partitions'] = [];
  const accepted: OffsetCommitEntry[] = [];
  const results: OffsetCommitResponse['partitions'][number][] = [];
  for (const part of request.offsets) {
    const { topic, partition } = part;
    const result = { topic, partition, error: Errors.NONE.code } as OffsetCommitResponse['partitions'][number];
    partitions.push(result);
    // A bad name refuses its own part, as Kafka answers per partition.
    if (isInvalid(part)) {
      Object.assign(result, part.invalid);
      continue;
    }
    const refused = refusal(ctx, 'consume', topic);
    if (refused) {
      Object.assign(result, refused);
      continue;
    }
    if (!broker.logs.partition(topic, partition)) {
      Object.assign(result, { error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic or partition ${topic}/${partition}` });
      continue;
    }
    const { offset, leaderEpoch, metadata } = part;
    if (metadata.length > OFFSET_METADATA_CHARS_MAX) {
      Object.assign(result, { error: Errors.INVALID_REQUEST.code, message: `metadata longer than ${OFFSET_METADATA_CHARS_MAX} characters` });
      continue;
    }
    accepted.push({ topic, partition, offset, leaderEpoch, metadata });
    results.push(result);
  }
  try {
    broker.diskGuard.noteAppended(await broker.offsets.commit(groupId, accepted, broker.clock.now(), ctx.principal.key));
  } catch (err) {
    const e = err instanceof TributaryError ? err : new TributaryError(Errors.STORAGE_ERROR, (err as Error).message);
    for (const r of results) Object.assign(r, { error: e.code, message: e.detail });
  }
  return { error: Errors.NONE.code, partitions };
}

export async function handleOffsetFetch(request: DecodedRequests[Kind.OffsetFetch], ctx: RequestContext): Promise<OffsetFetchResponse> {
  const { groupId } = request;
  groupAllowed(ctx, groupId);
  const { offsets } = ctx.broker;
  const named = request.partitions ?? offsets.all(groupId).map(({ topic, partition }) => ({ topic, partition }));
  const partitions: OffsetFetchResponse['partitions'] = [];
  for (const { topic, partition } of named) {
    const refused = refusal(ctx, 'consume', topic);
    if (refused) {
      // Listing all of a group's offsets leaves out topics the principal may not see.
      if (request.partitions !== undefined) partitions.push({ topic, partition, offset: -1, leaderEpoch: -1, metadata: '', ...refused });
      continue;
    }
    const committed = offsets.committed(groupId, topic, partition);
    partitions.push({
      topic,
      partition,
      offset: committed?.offset ?? -1,
      leaderEpoch: committed?.leaderEpoch ?? -1,
      metadata: committed?.metadata ?? '',
      error: Errors.NONE.code,
    });
  }
  return { error: Errors.NONE.code, partitions };
}

/** The whole request is refused when the principal may not use the group. */
export function groupAllowed(ctx: RequestContext, groupId: string): void {
  const refused = refusal(ctx, 'group', groupId);
  if (refused) throw new TributaryError(Errors.UNAUTHORIZED, refused.message);
}
