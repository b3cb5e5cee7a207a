// Application frames, carried one per WebSocket message (inside the secure channel once it
// exists). Each frame is one CBOR array:
//
//   [kind: uint, correlationId: uint, body: map]
//
// A request's kind is one of `Kind`; its response carries `kind | RESPONSE` and the same
// correlation id. Record batches travel inside bodies as CBOR byte strings holding Kafka
// RecordBatch v2 bytes, untouched. A response body whose whole request failed carries
// `error` (a code from errors.ts) and `message`; per-partition results carry their own
// `error`. Requests with acks = 0 get no response. Frames with correlation id 0 are
// server pushes (a later step).

import { Decoder, Encoder } from 'cbor-x';
import { checkCborStructure } from './cbor-walk.js';
import type { CborLimits } from './cbor-walk.js';
import { DecodeError, Errors } from './errors.js';

export const PROTOCOL_VERSION = 1;
export const RESPONSE = 0x80;

export enum Kind {
  Hello = 1,
  Metadata = 2,
  CreateTopics = 3,
  DeleteTopics = 4,
  Produce = 5,
  Fetch = 6,
  ListOffsets = 7,
  InitProducerId = 8,
  Subscribe = 9,
  /** Node to client only, unsolicited: sent as [SubscribeData | RESPONSE, 0, body]. */
  SubscribeData = 10,
  Credit = 11,
  Unsubscribe = 12,
  OffsetCommit = 13,
  OffsetFetch = 14,
  ConsumerGroupHeartbeat = 15,
  ListGroups = 16,
  DescribeGroup = 17,
  AlterConfigs = 18,
  DescribeConfigs = 19,
  OffsetsForLeaderEpoch = 20,
  /** Internal (node to node): a follower reads a leader's log. Admitted only to `node` credentials. */
  ReplicaFetch = 21,
}

/** ListOffsets sentinels, as Kafka: the next offset to be written, and the first kept. */
export const LATEST_TIMESTAMP = -1;
export const EARLIEST_TIMESTAMP = -2;

export interface ErrorBody {
  error?: number;
  message?: string;
}

export interface HelloRequest {
  version: number;
  clientId: string;
}
export interface HelloResponse extends ErrorBody {
  version: number;
  nodeId: string;
  /** Limits the client must respect; exceeding them closes the connection. */
  frameBytesMax: number;
  inflightMax: number;
}

export interface MetadataRequest {
  /** Omitted: every topic the client may see, internal ones only with includeInternal. */
  topics?: string[];
  /** List internal topics ('__revocations', ...) too when no topics are named. */
  includeInternal?: boolean;
}
export interface PartitionMetadata {
  partition: number;
  leader: string;
  leaderEpoch: number;
}
export interface TopicMetadata {
  name: string;
  error: number;
  message?: string;
  partitions: PartitionMetadata[];
  config: Record<string, string | number>;
  /** Set on internal topics: the node's own state, written by the node or its operators. */
  internal?: boolean;
}
export interface MetadataResponse extends ErrorBody {
  nodeId: string;
  topics: TopicMetadata[];
}

export interface CreateTopicsRequest {
  topics: { name: string; partitions: number; config?: Record<string, string | number> }[];
}
export interface TopicResult {
  name: string;
  error: number;
  message?: string;
}
export interface CreateTopicsResponse extends ErrorBody {
  topics: TopicResult[];
}

export interface DeleteTopicsRequest {
  topics: string[];
}
export interface DeleteTopicsResponse extends ErrorBody {
  topics: TopicResult[];
}

export type Acks = 0 | 1 | -1;

export interface ProducePartition {
  topic: string;
  partition: number;
  /** One RecordBatch v2. */
  records: Uint8Array;
}
export interface ProduceRequest {
  acks: Acks;
  timeoutMs: number;
  partitions: ProducePartition[];
}
export interface ProducePartitionResult {
  topic: string;
  partition: number;
  /**
   * For an idempotent batch the node already has (a resend): DUPLICATE_SEQUENCE, with the
   * baseOffset it was written at. Not a failure: the batch is in the log exactly once.
   */
  error: number;
  message?: string;
  baseOffset: number;
  logStartOffset: number;
}
export interface ProduceResponse extends ErrorBody {
  partitions: ProducePartitionResult[];
}

export interface FetchPartition {
  topic: string;
  partition: number;
  fetchOffset: number;
  /** Per-partition byte limit; at least one whole batch is returned even if larger. */
  maxBytes: number;
}
export interface FetchRequest {
  maxWaitMs: number;
  minBytes: number;
  maxBytes: number;
  partitions: FetchPartition[];
}
export interface FetchPartitionResult {
  topic: string;
  partition: number;
  error: number;
  message?: string;
  highWatermark: number;
  logStartOffset: number;
  /** Whole stored batches, concatenated; the first may start before fetchOffset. */
  records: Uint8Array;
}
export interface FetchResponse extends ErrorBody {
  partitions: FetchPartitionResult[];
}

export interface ListOffsetsPartition {
  topic: string;
  partition: number;
  /** LATEST_TIMESTAMP, EARLIEST_TIMESTAMP, or ms: the first offset whose timestamp is >= it. */
  timestamp: number;
}
export interface ListOffsetsRequest {
  partitions: ListOffsetsPartition[];
}
export interface ListOffsetsPartitionResult {
  topic: string;
  partition: number;
  error: number;
  message?: string;
  /** -1 when no record has a timestamp at or after the one asked for. */
  offset: number;
  timestamp: number;
}
export interface ListOffsetsResponse extends ErrorBody {
  partitions: ListOffsetsPartitionResult[];
}

/**
 * Kafka's InitProducerId for an idempotent producer: a producer id unique on this node and
 * its epoch. The producer stamps them and a per-partition sequence on every batch.
 */
export interface InitProducerIdRequest {
  /** Reserved for fencing a previous incarnation (transactions); not used yet. */
  producerId?: number;
  producerEpoch?: number;
}
export interface InitProducerIdResponse extends ErrorBody {
  producerId: number;
  producerEpoch: number;
}

/**
 * Subscribe: the node pushes new batches of these partitions as they are appended (up to
 * the high watermark), instead of the client asking with Fetch. Flow control is by
 * credit, in bytes: the node never pushes more than the client has granted (at least one
 * whole batch once any credit is left, as KIP-74 for Fetch), so a slow consumer costs the
 * node nothing but a position. The answer says which partitions were taken; data follows
 * as SubscribeData frames.
 */
/** Subscriptions one connection may hold. */
export const SUBSCRIPTIONS_MAX = 16;
/**
 * Credit a subscription may hold. Credit is granted minus pushed, on both ends: it goes
 * below zero by at most one batch (the whole batch pushed when some credit was left), and
 * a grant adds to it as it is; the node caps the sum here.
 */
export const SUBSCRIBE_CREDIT_BYTES_MAX = 256 * 1024 * 1024;

export interface SubscribeRequest {
  partitions: FetchPartition[];
  /** Bytes the node may push before the client grants more with Credit. */
  creditBytes: number;
  /** Largest SubscribeData body; default and ceiling the node's fetchBytesMax. */
  maxBytes?: number;
}
export interface SubscribeResponse extends ErrorBody {
  /** Names this subscription in SubscribeData, Credit and Unsubscribe; unique per connection. */
  subscriptionId: number;
  /** Per partition: NONE (subscribed) or why not (UNAUTHORIZED, UNKNOWN_TOPIC, ...). */
  partitions: { topic: string; partition: number; error: number; message?: string }[];
}
/**
 * Pushed data, shaped as a Fetch answer. A partition with an error (OFFSET_OUT_OF_RANGE,
 * CORRUPT_BATCH, UNKNOWN_TOPIC after a delete, ...) is pushed once with it and then leaves
 * the subscription; the client resubscribes it when it has decided what to do.
 */
export interface SubscribeData {
  subscriptionId: number;
  partitions: FetchPartitionResult[];
}
/** More credit for a subscription. Not answered (an unknown subscription is ignored). */
export interface CreditRequest {
  subscriptionId: number;
  bytes: number;
}
export interface UnsubscribeRequest {
  subscriptionId: number;
}
export type UnsubscribeResponse = ErrorBody;

/** Kafka's OffsetCommit: a consumer group's positions, kept in `__consumer_offsets`. */
export interface OffsetCommitRequest {
  groupId: string;
  /**
   * The committing member and its epoch (KIP-848: OffsetCommit carries the member epoch).
   * Omitted by a commit from outside the group (reset-offsets, a consumer with manual
   * assignment), which is accepted only while the group has no live members.
   */
  memberId?: string;
  memberEpoch?: number;
  /**
   * `leaderEpoch`: the leader epoch of the last record consumed before `offset` (Kafka's
   * committedLeaderEpoch, KIP-320), so a member that starts from the commit can check with
   * OffsetsForLeaderEpoch that the log it read is still the node's; -1 or absent: unknown.
   */
  offsets: { topic: string; partition: number; offset: number; metadata?: string; leaderEpoch?: number }[];
}
export interface OffsetCommitResponse extends ErrorBody {
  partitions: { topic: string; partition: number; error: number; message?: string }[];
}
/** Kafka's OffsetFetch: the group's committed offsets (-1 where none), all when no partitions are named. */
export interface OffsetFetchRequest {
  groupId: string;
  partitions?: { topic: string; partition: number }[];
}
export interface OffsetFetchResponse extends ErrorBody {
  /** `leaderEpoch`: as committed, -1 when unknown (no commit, or committed without one). */
  partitions: { topic: string; partition: number; offset: number; leaderEpoch: number; metadata: string; error: number; message?: string }[];
}

/**
 * Kafka's OffsetsForLeaderEpoch (KIP-279), as a consumer asks it (KIP-320): for each
 * partition, the largest leader epoch the node's log has at or below `leaderEpoch` and the
 * offset where the next higher epoch starts (the log end offset for the current epoch). A
 * consumer whose position, read in `leaderEpoch`, lies past that end offset has read
 * records the node's log no longer holds (a power loss cut it, and a new epoch wrote over
 * those offsets): its position diverged at `endOffset`. Both are -1 when the log knows no
 * epoch at or below the one asked (or `leaderEpoch` is -1).
 */
export interface OffsetsForLeaderEpochRequest {
  partitions: { topic: string; partition: number; leaderEpoch: number }[];
}
export interface OffsetsForLeaderEpochResponse extends ErrorBody {
  partitions: { topic: string; partition: number; error: number; message?: string; leaderEpoch: number; endOffset: number }[];
}

/**
 * KIP-848's ConsumerGroupHeartbeat: a member says what it subscribes to and which
 * partitions it owns; the coordinator answers with what the member may own now. The
 * assignment is computed by the node (sticky, balanced per topic) and handed out
 * cooperatively: a partition is given to a member only once no other member owns it, so a
 * member first gives up (stops processing, commits, stops reporting) what it loses.
 *   join:  memberId '' and memberEpoch 0;  leave: memberEpoch -1;  else the epoch last answered.
 */
export interface ConsumerGroupHeartbeatRequest {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  /** Topic names; given at join and whenever they change (omitted: unchanged). */
  subscribedTopics?: string[];
  /**
   * And/or a topic pattern (`*` matches any run of characters, as in credentials): every
   * topic matching it, including topics created later. Given at join (omitted: unchanged).
   */
  subscribedTopicPattern?: string;
  /** What the member owns (processes) now. */
  ownedPartitions: { topic: string; partitions: number[] }[];
}
export interface ConsumerGroupHeartbeatResponse extends ErrorBody {
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** What the member may own now: keep these, drop anything else it owns. */
  assignment: { topic: string; partitions: number[] }[];
}

/** Groups this node knows: with live members, or with committed offsets. */
export type ListGroupsRequest = Record<string, never>;
export interface ListGroupsResponse extends ErrorBody {
  groups: { groupId: string; members: number }[];
}
export interface DescribeGroupRequest {
  groupId: string;
}
export interface DescribeGroupResponse extends ErrorBody {
  groupId: string;
  /** The group epoch: moves whenever membership or subscriptions change. */
  epoch: number;
  members: { memberId: string; memberEpoch: number; topics: string[]; assignment: string[]; owned: string[] }[];
  /**
   * Each partition committed or assigned to a member: its committed offset, the log end (high
   * watermark) and the lag between them; -1 for no commit yet (and then no lag) or no partition.
   */
  offsets: { topic: string; partition: number; committed: number; highWatermark: number; lag: number }[];
}

/**
 * Kafka's IncrementalAlterConfigs for topics: per topic, keys to set and keys to delete
 * (back to the node's default). All or nothing per topic: one bad key or value fails that
 * topic with INVALID_CONFIG and changes none of its keys.
 */
export interface AlterConfigsRequest {
  topics: { name: string; configs: { name: string; op: 'set' | 'delete'; value?: string | number }[] }[];
}
export interface AlterConfigsResponse extends ErrorBody {
  topics: TopicResult[];
}
/** Topics and config keys per AlterConfigs or DescribeConfigs request. */
export const CONFIG_TOPICS_PER_REQUEST_MAX = 1000;
export const CONFIG_CHANGES_PER_TOPIC_MAX = 100;

/** Kafka's DescribeConfigs for topics: every key, its value, and where the value comes from. */
export interface DescribeConfigsRequest {
  topics: string[];
}
export type ConfigSource = 'topic' | 'node' | 'default';
export interface DescribeConfigsResponse extends ErrorBody {
  topics: (TopicResult & { configs: { name: string; value: string | number; source: ConfigSource }[] })[];
}

/**
 * Kafka's Fetch from a follower (replicaId set), our own kind: internal, admitted only to
 * principals whose credential role is `node`. A follower reads whole stored batches from
 * `fetchOffset` up to the leader's log end (past the high watermark, which it needs in
 * order to move it), and its `fetchOffset` tells the leader how far its own log reaches.
 * `currentLeaderEpoch` (KIP-320), when given, must be the leader's: older answers
 * FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
 */
export interface ReplicaFetchPartition {
  topic: string;
  partition: number;
  fetchOffset: number;
  currentLeaderEpoch?: number;
  /** Per-partition byte limit; at least one whole batch is returned even if larger. */
  maxBytes: number;
}
export interface ReplicaFetchRequest {
  /** The follower's node id, a label in logs; the leader knows it by its credential's key. */
  replicaId?: string;
  maxWaitMs: number;
  maxBytes: number;
  partitions: ReplicaFetchPartition[];
}
export interface ReplicaFetchPartitionResult {
  topic: string;
  partition: number;
  error: number;
  message?: string;
  /** The leader's current leader epoch; -1 with an error that names no partition of its. */
  leaderEpoch: number;
  highWatermark: number;
  logStartOffset: number;
  logEndOffset: number;
  /** Whole stored batches, concatenated, as they are on the leader's disk. */
  records: Uint8Array;
}
export interface ReplicaFetchResponse extends ErrorBody {
  partitions: ReplicaFetchPartitionResult[];
}

export interface RequestBodies {
  [Kind.Hello]: HelloRequest;
  [Kind.Metadata]: MetadataRequest;
  [Kind.CreateTopics]: CreateTopicsRequest;
  [Kind.DeleteTopics]: DeleteTopicsRequest;
  [Kind.Produce]: ProduceRequest;
  [Kind.Fetch]: FetchRequest;
  [Kind.ListOffsets]: ListOffsetsRequest;
  [Kind.InitProducerId]: InitProducerIdRequest;
  [Kind.Subscribe]: SubscribeRequest;
  [Kind.Credit]: CreditRequest;
  [Kind.Unsubscribe]: UnsubscribeRequest;
  [Kind.OffsetCommit]: OffsetCommitRequest;
  [Kind.OffsetFetch]: OffsetFetchRequest;
  [Kind.ConsumerGroupHeartbeat]: ConsumerGroupHeartbeatRequest;
  [Kind.ListGroups]: ListGroupsRequest;
  [Kind.DescribeGroup]: DescribeGroupRequest;
  [Kind.AlterConfigs]: AlterConfigsRequest;
  [Kind.DescribeConfigs]: DescribeConfigsRequest;
  [Kind.OffsetsForLeaderEpoch]: OffsetsForLeaderEpochRequest;
  [Kind.ReplicaFetch]: ReplicaFetchRequest;
}
export interface ResponseBodies {
  [Kind.Hello]: HelloResponse;
  [Kind.Metadata]: MetadataResponse;
  [Kind.CreateTopics]: CreateTopicsResponse;
  [Kind.DeleteTopics]: DeleteTopicsResponse;
  [Kind.Produce]: ProduceResponse;
  [Kind.Fetch]: FetchResponse;
  [Kind.ListOffsets]: ListOffsetsResponse;
  [Kind.InitProducerId]: InitProducerIdResponse;
  [Kind.Subscribe]: SubscribeResponse;
  [Kind.Credit]: never;
  [Kind.Unsubscribe]: UnsubscribeResponse;
  [Kind.OffsetCommit]: OffsetCommitResponse;
  [Kind.OffsetFetch]: OffsetFetchResponse;
  [Kind.ConsumerGroupHeartbeat]: ConsumerGroupHeartbeatResponse;
  [Kind.ListGroups]: ListGroupsResponse;
  [Kind.DescribeGroup]: DescribeGroupResponse;
  [Kind.AlterConfigs]: AlterConfigsResponse;
  [Kind.DescribeConfigs]: DescribeConfigsResponse;
  [Kind.OffsetsForLeaderEpoch]: OffsetsForLeaderEpochResponse;
  [Kind.ReplicaFetch]: ReplicaFetchResponse;
}

export interface Frame {
  kind: number;
  correlationId: number;
  body: Record<string, unknown>;
}

// One encoder and decoder per process. `useRecords: false` keeps plain CBOR maps that any
// CBOR library reads; `mapsAsObjects` gives plain objects back.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

export function encodeFrame(kind: number, correlationId: number, body: object): Buffer {
  return encoder.encode([kind, correlationId, body]);
}

/**
 * Structural limits on a frame, checked before it is decoded, in CBOR items and nesting
 * levels rather than bytes: a batch is one item whatever its size. A Produce request or
 * Fetch response takes 7 to 13 items per partition, a Metadata response 7 per partition and
 * 9 per topic plus 2 per config entry, so the default item limit holds a Metadata answer of
 * roughly 10,000 partitions; a client of a larger node passes a larger `itemsMax`. Frames nest at most 6
 * levels (frame, body, topics, topic, partitions, partition).
 */
export interface FrameLimits {
  /** CBOR data items in the whole frame. */
  itemsMax?: number;
  /** Arrays, maps and tags one inside another; the frame's own array is level 1. */
  depthMax?: number;
}

export const FRAME_ITEMS_MAX = 100_000;
export const FRAME_DEPTH_MAX = 32;
const DEFAULT_LIMITS: CborLimits = { itemsMax: FRAME_ITEMS_MAX, depthMax: FRAME_DEPTH_MAX };

/**
 * Decodes one whole frame. Bad bytes or a bad shape give a DecodeError(INVALID_REQUEST),
 * never a crash. The body's fields are checked by the handler that owns the kind.
 *
 * The heads are walked first (checkCborStructure), so a frame that would make the decoder
 * build millions of objects, or recurse past `depthMax`, is refused before it allocates.
 */
export function decodeFrame(bytes: Uint8Array, limits?: FrameLimits): Frame {
  if (bytes.length === 0) throw new DecodeError(Errors.INVALID_REQUEST, 'empty frame', 0);
  checkCborStructure(
    bytes,
    limits === undefined ? DEFAULT_LIMITS : { itemsMax: limits.itemsMax ?? FRAME_ITEMS_MAX, depthMax: limits.depthMax ?? FRAME_DEPTH_MAX },
  );
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (err) {
    throw new DecodeError(Errors.INVALID_REQUEST, `frame is not valid CBOR: ${(err as Error).message}`, -1, { cause: err });
  }
  if (!Array.isArray(value) || value.length !== 3) {
    throw new DecodeError(Errors.INVALID_REQUEST, 'frame must be a CBOR array [kind, correlationId, body]');
  }
  const [kind, correlationId, body] = value as unknown[];
  if (!Number.isInteger(kind) || (kind as number) < 0 || (kind as number) > 0xff) {
    throw new DecodeError(Errors.INVALID_REQUEST, `frame kind must be an integer 0..255, got ${String(kind)}`);
  }
  if (!Number.isInteger(correlationId) || (correlationId as number) < 0 || (correlationId as number) > 0xffffffff) {
    throw new DecodeError(Errors.INVALID_REQUEST, 'correlation id must be an integer 0..2^32-1');
  }
  // cbor-x turns tagged values into Dates, Sets and Tag objects; only a plain map is a body.
  const proto = body === null || typeof body !== 'object' ? undefined : Object.getPrototypeOf(body);
  if (proto !== Object.prototype && proto !== null) {
    throw new DecodeError(Errors.INVALID_REQUEST, 'frame body must be a map');
  }
  return { kind: kind as number, correlationId: correlationId as number, body: body as Record<string, unknown> };
}

export function kindName(kind: number): string {
  const base = kind & ~RESPONSE;
  const name = Kind[base] ?? `Kind${base}`;
  return kind & RESPONSE ? `${name}Response` : name;
}
