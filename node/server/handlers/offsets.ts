import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { OffsetCommitResponse, OffsetFetchResponse } from '../../../protocol/frames.js';
import { OFFSET_METADATA_CHARS_MAX, validateGroupId } from '../../groups/offsets-store.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { int, list, map, PARTITIONS_PER_REQUEST_MAX, str, type Body } from '../validate.js';

// Kafka's OffsetCommit and OffsetFetch for a consumer group: its position per partition,
// stored in __consumer_offsets (node/groups/offsets-store.ts). A principal commits and reads
// positions only of topics it may consume. (Membership and generations come with the group
// coordinator; until then any client may commit for a group name.)
export async function handleOffsetCommit(body: Body, ctx: RequestContext): Promise<OffsetCommitResponse> {
  const groupId = body.groupId;
  validateGroupId(groupId);
  if (ctx.broker.shuttingDown) throw new TributaryError(Errors.SHUTTING_DOWN);
  const partitions: OffsetCommitResponse['partitions'] = [];
  const accepted: { topic: string; partition: number; offset: number; metadata: string }[] = [];
  const results: OffsetCommitResponse['partitions'][number][] = [];
  for (const [i, e] of list(body, 'offsets', PARTITIONS_PER_REQUEST_MAX).entries()) {
    const entry = map(e, `offsets[${i}]`);
    const topic = str(entry, 'topic');
    const partition = int(entry, 'partition', 0, 0x7fffffff);
    const result = { topic, partition, error: Errors.NONE.code } as OffsetCommitResponse['partitions'][number];
    partitions.push(result);
    const refused = refusal(ctx, 'consume', topic);
    if (refused) {
      Object.assign(result, refused);
      continue;
    }
    if (!ctx.broker.logs.partition(topic, partition)) {
      Object.assign(result, { error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic or partition ${topic}/${partition}` });
      continue;
    }
    const offset = int(entry, 'offset', 0);
    const metadata = entry.metadata === undefined ? '' : str(entry, 'metadata');
    if (metadata.length > OFFSET_METADATA_CHARS_MAX) {
      Object.assign(result, { error: Errors.INVALID_REQUEST.code, message: `metadata longer than ${OFFSET_METADATA_CHARS_MAX} characters` });
      continue;
    }
    accepted.push({ topic, partition, offset, metadata });
    results.push(result);
  }
  try {
    await ctx.broker.offsets.commit(groupId, accepted, Date.now());
  } catch (err) {
    const e = err instanceof TributaryError ? err : new TributaryError(Errors.STORAGE_ERROR, (err as Error).message);
    for (const r of results) Object.assign(r, { error: e.code, message: e.detail });
  }
  return { error: Errors.NONE.code, partitions };
}

export async function handleOffsetFetch(body: Body, ctx: RequestContext): Promise<OffsetFetchResponse> {
  const groupId = body.groupId;
  validateGroupId(groupId);
  const { offsets } = ctx.broker;
  const named =
    body.partitions === undefined
      ? offsets.all(groupId).map(({ topic, partition }) => ({ topic, partition }))
      : list(body, 'partitions', PARTITIONS_PER_REQUEST_MAX).map((e, i) => {
          const entry = map(e, `partitions[${i}]`);
          return { topic: str(entry, 'topic'), partition: int(entry, 'partition', 0, 0x7fffffff) };
        });
  const partitions: OffsetFetchResponse['partitions'] = [];
  for (const { topic, partition } of named) {
    const refused = refusal(ctx, 'consume', topic);
    if (refused) {
      // Listing all of a group's offsets leaves out topics the principal may not see.
      if (body.partitions !== undefined) partitions.push({ topic, partition, offset: -1, metadata: '', ...refused });
      continue;
    }
    const committed = offsets.committed(groupId, topic, partition);
    partitions.push({ topic, partition, offset: committed?.offset ?? -1, metadata: committed?.metadata ?? '', error: Errors.NONE.code });
  }
  return { error: Errors.NONE.code, partitions };
}
