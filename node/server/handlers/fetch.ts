import type { FetchResponse } from '../../../protocol/frames.js';
import { isRefusal } from '../../partition-roles.js';
import type { PartitionLog } from '../../storage/partition-log.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { readPartitions, type ReadPlan, type WantedPartition } from './partition-reads.js';
import { answeredTopic, int, invalidTopic, map, requestEntries, type Body } from '../validate.js';

/** A consumer reads what is acknowledged: up to the high watermark. */
const CONSUMER_READS: ReadPlan = { request: 'Fetch', readsTo: (log: PartitionLog) => log.highWatermark, countsServed: true };

// Fetch returns stored batches as they are, up to the high watermark, from partitions this
// node leads (NOT_LEADER for the others). When fewer than minBytes are ready it long-polls
// (Kafka's fetch purgatory) until data arrives or maxWaitMs passes. The read happens only
// once the connection's send buffer has room, so a consumer that does not read its socket
// stalls its own fetches instead of filling memory. The index files of the cold segments it
// opens are paid from limits.requestScanBytesMax: past it, the partitions left that need one
// are answered THROTTLED (retriable). The path is partition-reads.ts, shared with ReplicaFetch.
export async function handleFetch(body: Body, ctx: RequestContext): Promise<FetchResponse> {
  const { limits, partitionRoles } = ctx.broker;
  const maxWaitMs = int(body, 'maxWaitMs', 0, 0x7fffffff, 0);
  const minBytes = int(body, 'minBytes', 0, 0x7fffffff, 1);
  const maxBytes = Math.min(int(body, 'maxBytes', 1, 0x7fffffff, limits.fetchBytesMax), limits.fetchBytesMax);
  const wanted: WantedPartition[] = requestEntries(body, 'partitions', ctx.broker).map((e, i) => {
    const entry = map(e, `partitions[${i}]`);
    const topic = answeredTopic(entry.topic);
    const partition = int(entry, 'partition', 0, 0x7fffffff);
    const fetchOffset = int(entry, 'fetchOffset', 0);
    const partMaxBytes = int(entry, 'maxBytes', 1, 0x7fffffff, maxBytes);
    // Checked before the partition is looked up, so a refusal says nothing of what exists.
    const refused = invalidTopic(entry.topic) ?? refusal(ctx, 'consume', topic);
    const found = refused ?? partitionRoles.leaderLog(topic, partition);
    return isRefusal(found)
      ? { topic, partition, fetchOffset, maxBytes: partMaxBytes, log: undefined, refused: found }
      : { topic, partition, fetchOffset, maxBytes: partMaxBytes, log: found, refused: null };
  });
  return { partitions: await readPartitions(wanted, CONSUMER_READS, { maxWaitMs, minBytes, maxBytes }, ctx) };
}
