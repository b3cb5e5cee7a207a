import { Errors } from '../../../protocol/errors.js';
import type { FetchPartitionResult, Kind, ReplicaFetchPartitionResult, ReplicaFetchResponse } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests, type Part, type ReplicaFetchPart } from '../../../protocol/requests.js';
import { isRefusal, type PartitionRefusal } from '../../partition-roles.js';
import type { PartitionLog } from '../../storage/partition-log.js';
import type { RequestContext } from '../context.js';
import { errorResult } from './errors.js';
import { readPartitions, type ReadPlan, type WantedPartition } from './partition-reads.js';

interface WantedReplica extends WantedPartition {
  /** KIP-320: the leader epoch the follower believes current; -1 when it names none. */
  currentLeaderEpoch: number;
  /** The log this node led for it when the request came, read or not (an epoch refused): whose state the answer carries. */
  leader: PartitionLog | undefined;
}

/** A follower reads everything the leader has, past the high watermark (as Kafka's replica fetch). */
const FOLLOWER_READS: ReadPlan<WantedReplica> = {
  request: 'ReplicaFetch',
  readsTo: (log: PartitionLog) => log.logEndOffset,
  // The leader's epoch may have moved during the long poll.
  recheck: (w, log) => epochRefusal(w, log),
  // Replication is not consumer traffic: the per-topic served bytes stay the consumers'.
  countsServed: false,
};

// ReplicaFetch, the leader's side (an internal kind: dispatch.ts admits it only to `node`
// credentials). A follower names partitions with its log end as `fetchOffset`; the leader
// records that per follower (node/replica-progress.ts: its log end and when it was last
// caught up), then answers whole stored batches from that offset up to its own log end,
// with its leader epoch, high watermark, log start and log end offsets, through the read
// path Fetch uses (long poll, outbound slot, send budget, request budget). minBytes is 1, as
// Kafka's replica.fetch.min.bytes: a follower wants what there is as soon as there is any.
export async function handleReplicaFetch(request: DecodedRequests[Kind.ReplicaFetch], ctx: RequestContext): Promise<ReplicaFetchResponse> {
  const { limits } = ctx.broker;
  const { replicaId, maxWaitMs } = request;
  const maxBytes = Math.min(request.maxBytes ?? limits.fetchBytesMax, limits.fetchBytesMax);
  const wanted = request.partitions.map((part) => wantedReplica(part, maxBytes, ctx));
  for (const w of wanted) recordFollower(w, replicaId, ctx);
  const partitions = await readPartitions(wanted, FOLLOWER_READS, { maxWaitMs, minBytes: 1, maxBytes }, ctx);
  // In the same turn as the reads: the offsets answered are those the batches were read at.
  return { partitions: partitions.map((result, i) => withLeaderState(result, wanted[i], ctx)) };
}

function wantedReplica(part: Part<ReplicaFetchPart>, maxBytes: number, ctx: RequestContext): WantedReplica {
  const { topic, partition, fetchOffset, currentLeaderEpoch } = part;
  const w: WantedReplica = { topic, partition, fetchOffset, maxBytes: part.maxBytes ?? maxBytes, currentLeaderEpoch, leader: undefined, log: undefined, refused: null };
  const found = isInvalid(part) ? part.invalid : ctx.broker.partitionRoles.leaderLog(topic, partition);
  if (isRefusal(found)) {
    w.refused = found;
    return w;
  }
  w.leader = found;
  w.refused = epochRefusal(w, found);
  if (w.refused === null) w.log = found;
  return w;
}

/**
 * KIP-320, as Kafka's leader checks a fetch: a follower that names an epoch older than the
 * leader's missed a leader change (FENCED_LEADER_EPOCH); a newer one means this node has not
 * learnt of it yet (UNKNOWN_LEADER_EPOCH). Either way it must not read here now.
 */
function epochRefusal(w: WantedReplica, log: PartitionLog): PartitionRefusal | null {
  if (w.currentLeaderEpoch < 0 || w.currentLeaderEpoch === log.leaderEpoch) return null;
  const older = w.currentLeaderEpoch < log.leaderEpoch;
  const which = older ? Errors.FENCED_LEADER_EPOCH : Errors.UNKNOWN_LEADER_EPOCH;
  return { error: which.code, message: `leader epoch ${w.currentLeaderEpoch} is ${older ? 'older' : 'newer'} than ${w.topic}/${w.partition}'s current ${log.leaderEpoch}` };
}

/**
 * The follower's fetch offset is its log end (Kafka's rule): recorded before the read, with
 * the leader's log end at that moment, when the offset is one the leader can serve. A new
 * follower past the bounds of replica-progress.ts gets that partition refused.
 */
function recordFollower(w: WantedReplica, replicaId: string, ctx: RequestContext): void {
  const log = w.log;
  if (log === undefined || w.fetchOffset < log.logStartOffset || w.fetchOffset > log.logEndOffset) return;
  try {
    ctx.broker.replicaProgress.record(log, ctx.principal.key, replicaId, w.fetchOffset, log.logEndOffset);
  } catch (err) {
    w.refused = errorResult(err, ctx.broker.logger, { request: 'ReplicaFetch', topic: w.topic, partition: w.partition });
    w.log = undefined;
  }
}

/**
 * The leader's offsets and epoch for every partition it still leads, with an error too
 * (OFFSET_OUT_OF_RANGE, FENCED_LEADER_EPOCH, ...): what the follower needs to decide how to
 * go on. -1 for a partition it does not lead.
 */
function withLeaderState(result: FetchPartitionResult, w: WantedReplica, ctx: RequestContext): ReplicaFetchPartitionResult {
  const log = ctx.broker.partitionRoles.leaderLog(w.topic, w.partition);
  if (isRefusal(log) || log !== w.leader) return Object.assign(result, { leaderEpoch: -1, logEndOffset: -1 });
  return Object.assign(result, { leaderEpoch: log.leaderEpoch, highWatermark: log.highWatermark, logStartOffset: log.logStartOffset, logEndOffset: log.logEndOffset });
}
