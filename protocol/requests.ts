// The one place a request's body becomes the typed request of its kind: decodeRequest
// checks every field once, by the wire layout frames.ts documents, and hands the node's
// handlers values of the right types. What is wrong with the request as a whole throws a
// TributaryError (INVALID_REQUEST naming the field, INVALID_TOPIC where a name breaks the
// rule); what is wrong with one part of it (a topic, a partition), in the kinds that answer
// parts on their own, comes back as that part, `Invalid`, with its answer, so that the rest
// of the request is served. Which fields fail a part and which the whole request is each
// kind's, as the node has always answered them; the decoders below keep it field by field.
//
// Defaults that are the protocol's (Fetch's minBytes of 1) are filled in here; those that
// are a node's (maxBytes up to its fetchBytesMax, a produce timeout of its
// requestTimeoutMs) are left out and filled in by the node. Rules that are the node's
// state (ACLs, what exists, the offset metadata it keeps) are the handlers'.

import { Errors, TributaryError } from './errors.js';
import {
  CONFIG_CHANGES_PER_TOPIC_MAX,
  CONFIG_TOPICS_PER_REQUEST_MAX,
  EARLIEST_TIMESTAMP,
  Kind,
  SUBSCRIBE_CREDIT_BYTES_MAX,
  type Acks,
  type ConsumerGroupHeartbeatRequest,
  type CreditRequest,
  type UnsubscribeRequest,
} from './frames.js';
import {
  answeredTopic,
  bytes,
  entries,
  entryMap,
  int,
  invalidTopic,
  list,
  map,
  optionalEntries,
  optionalInt,
  partError,
  str,
  strings,
  topicName,
  type Body,
  type PartError,
} from './requests-fields.js';
import { isTopicPattern } from './topic-names.js';

export type { Body, PartError } from './requests-fields.js';

/** What decoding needs of the node's limits. */
export interface RequestLimits {
  /** Entries (partitions, topics) one request may name. */
  readonly requestEntriesMax: number;
}

/** A part answered on its own: what its answer echoes, and why. */
export type Invalid<A> = A & { invalid: PartError };
/** One part of a request: decoded, or answered on its own. */
export type Part<T, A = T> = T | Invalid<A>;

export function isInvalid<T, A>(part: Part<T, A>): part is Invalid<A> {
  return typeof part === 'object' && part !== null && 'invalid' in part;
}

/** What a partition's answer echoes: the topic as answeredTopic cuts it, -1 for a partition not read. */
export interface PartitionAddress {
  topic: string;
  partition: number;
}
/** What a topic's answer echoes. */
export interface TopicAddress {
  name: string;
}

export interface ProducePart {
  topic: string;
  partition: number;
  /** One RecordBatch v2, as sent. */
  records: Buffer;
}
export interface FetchPart {
  topic: string;
  partition: number;
  fetchOffset: number;
  /** Left out: the request's maxBytes. */
  maxBytes?: number;
}
export interface ListOffsetsPart {
  topic: string;
  partition: number;
  timestamp: number;
}
export interface SubscribePart {
  topic: string;
  partition: number;
  fetchOffset: number;
}
export interface OffsetCommitPart {
  topic: string;
  partition: number;
  offset: number;
  /** KIP-320's committedLeaderEpoch: -1 when unknown (or left out, by clients older than it). */
  leaderEpoch: number;
  metadata: string;
}
export interface OffsetsForLeaderEpochPart {
  topic: string;
  partition: number;
  leaderEpoch: number;
}
export interface ReplicaFetchPart {
  topic: string;
  partition: number;
  fetchOffset: number;
  /** KIP-320: -1 when the follower names none. */
  currentLeaderEpoch: number;
  /** Left out: the request's maxBytes. */
  maxBytes?: number;
}
export interface CreateTopicPart {
  name: string;
  /** As sent: the count's own rule (1..PARTITIONS_MAX) is the node's, INVALID_PARTITIONS. */
  partitions: number;
  /** As sent: each value's rules are the config's, INVALID_CONFIG naming key and value. */
  config?: Record<string, string | number>;
}
export interface ConfigChange {
  name: string;
  op: 'set' | 'delete';
  value?: string | number;
}
export interface AlterConfigsPart {
  name: string;
  configs: ConfigChange[];
}

/** Each request kind's body as decodeRequest gives it. */
export interface DecodedRequests {
  [Kind.Hello]: { version: number };
  [Kind.Metadata]: { topics?: Part<string, TopicAddress>[]; includeInternal: boolean };
  [Kind.CreateTopics]: { topics: Part<CreateTopicPart, TopicAddress>[] };
  [Kind.DeleteTopics]: { topics: Part<string, TopicAddress>[] };
  /** `timeoutMs` left out: the node's request timeout. */
  [Kind.Produce]: { acks: Acks; timeoutMs?: number; partitions: Part<ProducePart, PartitionAddress>[] };
  /** `maxBytes` left out: the node's fetchBytesMax. */
  [Kind.Fetch]: { maxWaitMs: number; minBytes: number; maxBytes?: number; partitions: Part<FetchPart>[] };
  [Kind.ListOffsets]: { partitions: Part<ListOffsetsPart, PartitionAddress>[] };
  /** Its fields are reserved (transactions) and not read. */
  [Kind.InitProducerId]: Record<string, never>;
  /** `maxBytes` left out: the node's fetchBytesMax. */
  [Kind.Subscribe]: { creditBytes: number; maxBytes?: number; partitions: Part<SubscribePart>[] };
  [Kind.Credit]: CreditRequest;
  [Kind.Unsubscribe]: UnsubscribeRequest;
  [Kind.OffsetCommit]: { groupId: string; memberId?: string; memberEpoch?: number; offsets: Part<OffsetCommitPart, PartitionAddress>[] };
  /** `partitions` left out: every partition the group committed. */
  [Kind.OffsetFetch]: { groupId: string; partitions?: PartitionAddress[] };
  [Kind.ConsumerGroupHeartbeat]: ConsumerGroupHeartbeatRequest;
  [Kind.ListGroups]: Record<string, never>;
  [Kind.DescribeGroup]: { groupId: string };
  [Kind.AlterConfigs]: { topics: Part<AlterConfigsPart, TopicAddress>[] };
  [Kind.DescribeConfigs]: { topics: Part<string, TopicAddress>[] };
  [Kind.OffsetsForLeaderEpoch]: { partitions: Part<OffsetsForLeaderEpochPart, PartitionAddress>[] };
  /** `maxBytes` left out: the node's fetchBytesMax. */
  [Kind.ReplicaFetch]: { replicaId: string; maxWaitMs: number; maxBytes?: number; partitions: Part<ReplicaFetchPart>[] };
}

export type RequestKind = keyof DecodedRequests;
export type DecodedRequest<K extends RequestKind> = DecodedRequests[K];

type Decoder<K extends RequestKind> = (body: Body, limits: RequestLimits) => DecodedRequests[K];

/**
 * The typed request of `kind` from its decoded CBOR body. Throws a TributaryError for a
 * request that fails as a whole (a LimitReachedError past limits.requestEntriesMax);
 * parts answered on their own come back `Invalid`.
 */
export function decodeRequest<K extends RequestKind>(kind: K, body: Body, limits: RequestLimits): DecodedRequests[K] {
  const decoder = decoders[kind] as Decoder<K> | undefined;
  if (decoder === undefined) throw new TributaryError(Errors.INVALID_REQUEST, `unknown request kind ${kind}`);
  return decoder(body, limits);
}

const UINT31_MAX = 0x7fffffff;
const INT32_MIN = -0x80000000;

/** Topics one CreateTopics or DeleteTopics may name, however many limits.requestEntriesMax allows: each writes and fsyncs files. */
export const TOPIC_CHANGES_PER_REQUEST_MAX = 1000;
/** A member id: '' to join, else the id the node gave (a UUID); anything longer is no member of ours. */
export const MEMBER_ID_CHARS_MAX = 64;
/** The longest ReplicaFetch replicaId kept: it is only a label. */
export const REPLICA_ID_CHARS_MAX = 256;
/** Topics a ConsumerGroupHeartbeat may name, subscribed or owned. */
export const HEARTBEAT_TOPICS_MAX = 1000;
/** Partitions a ConsumerGroupHeartbeat may report owning, over all its topics. */
export const HEARTBEAT_PARTITIONS_MAX = 10_000;
/** A consumer group id: 1-249 of [A-Za-z0-9._-], as Kafka's topic names. */
const GROUP_ID = /^[A-Za-z0-9._-]{1,249}$/;

/** A group id, or INVALID_REQUEST: the whole request is refused. */
function groupId(body: Body): string {
  const value = body.groupId;
  if (typeof value !== 'string' || !GROUP_ID.test(value)) {
    throw new TributaryError(Errors.INVALID_REQUEST, `group id ${JSON.stringify(value)} must be 1-249 of [A-Za-z0-9._-]`);
  }
  return value;
}

function memberId(value: unknown): string {
  if (typeof value !== 'string' || value.length > MEMBER_ID_CHARS_MAX) {
    throw new TributaryError(Errors.INVALID_REQUEST, `memberId must be a string of at most ${MEMBER_ID_CHARS_MAX} characters`);
  }
  return value;
}

/** A list of topic names, each part refused on its own for a bad name. */
function namedTopics(names: string[], field: string): Part<string, TopicAddress>[] {
  return names.map((name) => {
    const invalid = invalidTopic(name, field);
    return invalid === null ? name : { name: answeredTopic(name), invalid };
  });
}

/**
 * A part whose every field is read inside `read`: any that fails answers the part alone,
 * echoing what `address` had read by then (the topic first, partition -1 until read).
 */
function partOf<T>(read: (address: PartitionAddress) => Part<T, PartitionAddress>): Part<T, PartitionAddress> {
  const address: PartitionAddress = { topic: '', partition: -1 };
  try {
    return read(address);
  } catch (err) {
    return { ...address, invalid: partError(err) };
  }
}

/** One part of a Produce, or why it is refused, with the topic and partition read so far. */
function producePart(e: unknown, i: number): Part<ProducePart, PartitionAddress> {
  let topic = '';
  let partition = -1;
  try {
    const entry = entryMap(e, 'partitions', i);
    topic = answeredTopic(entry.topic);
    const name = topicName(entry.topic, 'topic');
    partition = int(entry, 'partition', 0, UINT31_MAX);
    return { topic: name, partition, records: bytes(entry, 'records') };
  } catch (err) {
    return { topic, partition, invalid: partError(err) };
  }
}

const decoders: { [K in RequestKind]: Decoder<K> } = {
  [Kind.Hello]: (body) => ({ version: int(body, 'version', 0, 0xffff) }),

  [Kind.Metadata]: (body, limits) => {
    const topics = optionalEntries(body, 'topics', limits.requestEntriesMax);
    return {
      topics: topics?.map((name) => {
        const invalid = invalidTopic(name, 'topics[]');
        return invalid === null ? (name as string) : { name: answeredTopic(name), invalid };
      }),
      includeInternal: body.includeInternal === true,
    };
  },

  [Kind.CreateTopics]: (body, limits) => {
    // limits.requestEntriesMax first, then CreateTopics' own tighter cap.
    entries(body, 'topics', limits.requestEntriesMax);
    const topics = list(body, 'topics', TOPIC_CHANGES_PER_REQUEST_MAX).map((e, i) => map(e, `topics[${i}]`));
    return { topics: topics.map(createTopicPart) };
  },

  [Kind.DeleteTopics]: (body, limits) => {
    entries(body, 'topics', limits.requestEntriesMax);
    return { topics: namedTopics(strings(body, 'topics', TOPIC_CHANGES_PER_REQUEST_MAX), 'topic') };
  },

  [Kind.Produce]: (body, limits) => {
    const acks = int(body, 'acks', -1, 1) as Acks;
    const timeoutMs = optionalInt(body, 'timeoutMs', 0, UINT31_MAX);
    // The hottest decoder: one part per partition written, no closure or address object
    // made for a part that is well formed.
    const list = entries(body, 'partitions', limits.requestEntriesMax);
    const partitions: Part<ProducePart, PartitionAddress>[] = new Array(list.length);
    for (let i = 0; i < list.length; i++) partitions[i] = producePart(list[i], i);
    return { acks, timeoutMs, partitions };
  },

  [Kind.Fetch]: (body, limits) => {
    const maxWaitMs = int(body, 'maxWaitMs', 0, UINT31_MAX, 0);
    const minBytes = int(body, 'minBytes', 0, UINT31_MAX, 1);
    const maxBytes = optionalInt(body, 'maxBytes', 1, UINT31_MAX);
    const partitions = entries(body, 'partitions', limits.requestEntriesMax).map((e, i): Part<FetchPart> => {
      const entry = entryMap(e, 'partitions', i);
      const part: FetchPart = {
        topic: answeredTopic(entry.topic),
        partition: int(entry, 'partition', 0, UINT31_MAX),
        fetchOffset: int(entry, 'fetchOffset', 0),
        maxBytes: optionalInt(entry, 'maxBytes', 1, UINT31_MAX),
      };
      const invalid = invalidTopic(entry.topic, 'topic');
      return invalid === null ? part : { ...part, invalid };
    });
    return { maxWaitMs, minBytes, maxBytes, partitions };
  },

  [Kind.ListOffsets]: (body, limits) => ({
    partitions: entries(body, 'partitions', limits.requestEntriesMax).map((e, i) =>
      partOf((address): ListOffsetsPart => {
        const entry = map(e, `partitions[${i}]`);
        address.topic = answeredTopic(entry.topic);
        const topic = topicName(entry.topic, 'topic');
        address.partition = int(entry, 'partition', 0, UINT31_MAX);
        return { topic, partition: address.partition, timestamp: int(entry, 'timestamp', EARLIEST_TIMESTAMP) };
      }),
    ),
  }),

  [Kind.InitProducerId]: () => ({}),

  [Kind.Subscribe]: (body, limits) => {
    const creditBytes = int(body, 'creditBytes', 0, SUBSCRIBE_CREDIT_BYTES_MAX);
    const maxBytes = optionalInt(body, 'maxBytes', 1, UINT31_MAX);
    const partitions = entries(body, 'partitions', limits.requestEntriesMax).map((e, i): Part<SubscribePart> => {
      const entry = map(e, `partitions[${i}]`);
      const part: SubscribePart = { topic: answeredTopic(entry.topic), partition: int(entry, 'partition', 0, UINT31_MAX), fetchOffset: int(entry, 'fetchOffset', 0) };
      const invalid = invalidTopic(entry.topic, 'topic');
      return invalid === null ? part : { ...part, invalid };
    });
    return { creditBytes, maxBytes, partitions };
  },

  [Kind.Credit]: (body) => ({ subscriptionId: int(body, 'subscriptionId', 0), bytes: int(body, 'bytes', 0, SUBSCRIBE_CREDIT_BYTES_MAX) }),

  [Kind.Unsubscribe]: (body) => ({ subscriptionId: int(body, 'subscriptionId', 0) }),

  [Kind.OffsetCommit]: (body, limits) => {
    const request: DecodedRequests[Kind.OffsetCommit] = { groupId: groupId(body), offsets: [] };
    if (body.memberId !== undefined) request.memberId = memberId(body.memberId);
    if (body.memberEpoch !== undefined) request.memberEpoch = int(body, 'memberEpoch', -1, UINT31_MAX);
    request.offsets = entries(body, 'offsets', limits.requestEntriesMax).map((e, i) => offsetCommitPart(map(e, `offsets[${i}]`)));
    return request;
  },

  [Kind.OffsetFetch]: (body, limits) => {
    const id = groupId(body);
    if (body.partitions === undefined) return { groupId: id };
    const partitions = entries(body, 'partitions', limits.requestEntriesMax).map((e, i) => {
      const entry = map(e, `partitions[${i}]`);
      return { topic: topicName(entry.topic, 'topic'), partition: int(entry, 'partition', 0, UINT31_MAX) };
    });
    return { groupId: id, partitions };
  },

  [Kind.ConsumerGroupHeartbeat]: (body) => heartbeat(body),

  [Kind.ListGroups]: () => ({}),

  [Kind.DescribeGroup]: (body) => ({ groupId: groupId(body) }),

  [Kind.AlterConfigs]: (body, limits) => {
    // limits.requestEntriesMax first, then the protocol's own cap for config requests.
    entries(body, 'topics', limits.requestEntriesMax);
    const topics = list(body, 'topics', CONFIG_TOPICS_PER_REQUEST_MAX).map((e, i) => map(e, `topics[${i}]`));
    return { topics: topics.map(alterConfigsPart) };
  },

  [Kind.DescribeConfigs]: (body, limits) => {
    entries(body, 'topics', limits.requestEntriesMax);
    return { topics: namedTopics(strings(body, 'topics', CONFIG_TOPICS_PER_REQUEST_MAX), 'topic') };
  },

  [Kind.OffsetsForLeaderEpoch]: (body, limits) => ({
    partitions: entries(body, 'partitions', limits.requestEntriesMax).map((e, i) =>
      partOf((address): Part<OffsetsForLeaderEpochPart, PartitionAddress> => {
        const entry = map(e, `partitions[${i}]`);
        address.topic = answeredTopic(entry.topic);
        address.partition = int(entry, 'partition', 0, UINT31_MAX);
        const leaderEpoch = int(entry, 'leaderEpoch', -1, UINT31_MAX);
        // Read after the partition and epoch: a bad name and a bad partition answer the partition's error.
        const invalid = invalidTopic(entry.topic, 'topic');
        return invalid === null ? { topic: address.topic, partition: address.partition, leaderEpoch } : { ...address, invalid };
      }),
    ),
  }),

  [Kind.ReplicaFetch]: (body, limits) => {
    const replicaId = body.replicaId === undefined ? '' : replicaIdOf(body.replicaId);
    const maxWaitMs = int(body, 'maxWaitMs', 0, UINT31_MAX, 0);
    const maxBytes = optionalInt(body, 'maxBytes', 1, UINT31_MAX);
    const partitions = entries(body, 'partitions', limits.requestEntriesMax).map((e, i): Part<ReplicaFetchPart> => {
      const entry = map(e, `partitions[${i}]`);
      const part: ReplicaFetchPart = {
        topic: answeredTopic(entry.topic),
        partition: int(entry, 'partition', 0, UINT31_MAX),
        fetchOffset: int(entry, 'fetchOffset', 0),
        currentLeaderEpoch: int(entry, 'currentLeaderEpoch', -1, UINT31_MAX, -1),
        maxBytes: optionalInt(entry, 'maxBytes', 1, UINT31_MAX),
      };
      const invalid = invalidTopic(entry.topic, 'topic');
      return invalid === null ? part : { ...part, invalid };
    });
    return { replicaId, maxWaitMs, maxBytes, partitions };
  },
};

/**
 * A bad name, partition count or config map answers its topic alone; the count's range and
 * each config value are checked where the topic is created.
 */
function createTopicPart(entry: Body): Part<CreateTopicPart, TopicAddress> {
  const name = answeredTopic(entry.name);
  const invalid = invalidTopic(entry.name, 'name');
  if (invalid !== null) return { name, invalid };
  try {
    const partitions = int(entry, 'partitions', INT32_MIN, UINT31_MAX);
    const part: CreateTopicPart = { name, partitions };
    if (entry.config !== undefined) part.config = map(entry.config, 'config') as Record<string, string | number>;
    return part;
  } catch (err) {
    return { name, invalid: partError(err) };
  }
}

/** All or nothing per topic: one bad change answers its topic alone and changes none of its keys. */
function alterConfigsPart(entry: Body): Part<AlterConfigsPart, TopicAddress> {
  const name = answeredTopic(entry.name);
  const invalid = invalidTopic(entry.name, 'name');
  if (invalid !== null) return { name, invalid };
  try {
    const configs = list(entry, 'configs', CONFIG_CHANGES_PER_TOPIC_MAX).map((c, i) => configChange(map(c, `configs[${i}]`), i));
    return { name, configs };
  } catch (err) {
    return { name, invalid: partError(err) };
  }
}

function configChange(c: Body, i: number): ConfigChange {
  const name = str(c, 'name');
  const op = c.op;
  if (op === 'delete') {
    if (c.value !== undefined) throw new TributaryError(Errors.INVALID_REQUEST, `configs[${i}] deletes '${name}' and must carry no value`);
    return { name, op };
  }
  if (op !== 'set') throw new TributaryError(Errors.INVALID_REQUEST, `configs[${i}].op must be 'set' or 'delete', got ${JSON.stringify(op)?.slice(0, 40)}`);
  const value = c.value;
  // The value's own rules (type, range) are the config's: INVALID_CONFIG naming key and value.
  if (typeof value !== 'string' && typeof value !== 'number') {
    throw new TributaryError(Errors.INVALID_CONFIG, `config '${name}' needs a value (a string or a number)`);
  }
  return { name, op, value };
}

/**
 * A bad name answers its partition alone (as Kafka answers per partition), and its other
 * fields are not read; a bad partition, offset, epoch or metadata fails the request.
 */
function offsetCommitPart(entry: Body): Part<OffsetCommitPart, PartitionAddress> {
  const partition = int(entry, 'partition', 0, UINT31_MAX);
  const topic = answeredTopic(entry.topic);
  const invalid = invalidTopic(entry.topic, 'topic');
  if (invalid !== null) return { topic, partition, invalid };
  const offset = int(entry, 'offset', 0);
  const leaderEpoch = int(entry, 'leaderEpoch', -1, UINT31_MAX, -1);
  const metadata = entry.metadata === undefined ? '' : str(entry, 'metadata');
  return { topic, partition, offset, leaderEpoch, metadata };
}

function heartbeat(body: Body): ConsumerGroupHeartbeatRequest {
  const request: ConsumerGroupHeartbeatRequest = {
    groupId: groupId(body),
    memberId: memberId(body.memberId),
    memberEpoch: int(body, 'memberEpoch', -1, UINT31_MAX),
    ownedPartitions: [],
  };
  if (body.subscribedTopics !== undefined) {
    request.subscribedTopics = list(body, 'subscribedTopics', HEARTBEAT_TOPICS_MAX).map((name) => topicName(name, 'subscribedTopics[]'));
  }
  if (body.subscribedTopicPattern !== undefined) {
    const pattern = str(body, 'subscribedTopicPattern');
    if (!isTopicPattern(pattern)) {
      throw new TributaryError(Errors.INVALID_REQUEST, `subscribedTopicPattern ${JSON.stringify(pattern)} must be 1-249 of [A-Za-z0-9._-] and *`);
    }
    request.subscribedTopicPattern = pattern;
  }
  let partitionsSeen = 0;
  request.ownedPartitions = list(body, 'ownedPartitions', HEARTBEAT_TOPICS_MAX).map((e, i) => {
    const entry = map(e, `ownedPartitions[${i}]`);
    const partitions = list(entry, 'partitions', HEARTBEAT_PARTITIONS_MAX).map((p) => {
      if (!Number.isInteger(p) || (p as number) < 0) throw new TributaryError(Errors.INVALID_REQUEST, `ownedPartitions[${i}] holds a bad partition`);
      return p as number;
    });
    partitionsSeen += partitions.length;
    if (partitionsSeen > HEARTBEAT_PARTITIONS_MAX) throw new TributaryError(Errors.INVALID_REQUEST, `more than ${HEARTBEAT_PARTITIONS_MAX} owned partitions`);
    return { topic: topicName(entry.topic, 'topic'), partitions };
  });
  return request;
}

function replicaIdOf(value: unknown): string {
  if (typeof value !== 'string' || value.length > REPLICA_ID_CHARS_MAX) {
    throw new TributaryError(Errors.INVALID_REQUEST, `replicaId must be a string of at most ${REPLICA_ID_CHARS_MAX} characters`);
  }
  return value;
}
