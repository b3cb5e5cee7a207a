import type { FetchResponse, Kind } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../../protocol/requests.js';
import { isRefusal } from '../../partition-roles.js';
import type { PartitionLog } from '../../storage/partition-log.js';
import type { RequestContext } from '../context.js';
import { refusal } from './authorize.js';
import { readPartitions, type ReadPlan, type WantedPartition } from './partition-reads.js';

/** A consumer reads what is acknowledged: up to the high watermark. */
const CONSUMER_READS: ReadPlan = { request: 'Fetch', readsTo: (log: PartitionLog) => log.highWatermark, countsServed: true };

// Fetch returns stored batches as they are, up to the high watermark, from partitions this
// node leads (NOT_LEADER for the others). When fewer than minBytes are ready it long-polls
// (Kafka's fetch purgatory) until data arrives or maxWaitMs passes. The read happens only
// once the connection's send buffer has room, so a consumer that does not read its socket
// stalls its own fetches instead of filling memory. The index files of the cold segments it
// opens are paid from limits.requestScanBytesMax: past it, the partitions left that need one
// are answered THROTTLED (retriable). The path is partition-reads.ts, shared with ReplicaFetch.
export async function handleFetch(request: DecodedRequests[Kind.Fetch], ctx: RequestContext): Promise<FetchResponse> {
  const { limits, partitionRoles } = ctx.broker;
  const { maxWaitMs, minBytes } = request;
  const maxBytes = Math.min(request.maxBytes ?? limits.fetchBytesMax, limits.fetchBytesMax);
  const wanted: WantedPartition[] = request.partitions.map((part) => {
    const { topic, partition, fetchOffset } = part;
    const partMaxBytes = part.maxBytes ?? maxBytes;
    // Checked before the partition is looked up, so a refusal says nothing of what exists.
    const refused = isInvalid(part) ? part.invalid : refusal(ctx, 'consume', topic);
    const found = refused ?? partitionRoles.leaderLog(topic, partition);
    return isRefusal(found)
      ? { topic, partition, fetchOffset, maxBytes: partMaxBytes, log: undefined, refused: found }
      : { topic, partition, fetchOffset, maxBytes: partMaxBytes, log: found, refused: null };
  });
  return { partitions: await readPartitions(wanted, CONSUMER_READS, { maxWaitMs, minBytes, maxBytes }, ctx) };
}
