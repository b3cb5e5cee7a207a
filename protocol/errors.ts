// The one errors module. Every error that crosses the wire has a stable numeric code, a
// name and a retriable flag. The numbers are Kafka's own error codes where Kafka has the
// same error, so a Kafka-protocol listener can pass them through unchanged; our names are
// shorter where Kafka's carry history (UNKNOWN_TOPIC_OR_PARTITION -> UNKNOWN_TOPIC).

export interface ErrorSpec {
  readonly code: number;
  readonly name: string;
  readonly retriable: boolean;
  readonly message: string;
}

function spec(code: number, name: string, retriable: boolean, message: string): ErrorSpec {
  return { code, name, retriable, message };
}

export const Errors = {
  NONE: spec(0, 'NONE', false, 'no error'),
  UNKNOWN: spec(-1, 'UNKNOWN', false, 'unexpected server error'),
  OFFSET_OUT_OF_RANGE: spec(1, 'OFFSET_OUT_OF_RANGE', false, 'offset is outside the log'),
  CORRUPT_BATCH: spec(2, 'CORRUPT_BATCH', true, 'record batch failed validation'),
  UNKNOWN_TOPIC: spec(3, 'UNKNOWN_TOPIC', true, 'topic or partition does not exist'),
  /** Kafka's NOT_LEADER_OR_FOLLOWER: another node leads the partition (node/partition-roles.ts). */
  NOT_LEADER: spec(6, 'NOT_LEADER', true, 'this node does not lead the partition'),
  REQUEST_TIMED_OUT: spec(7, 'REQUEST_TIMED_OUT', true, 'request timed out'),
  BATCH_TOO_LARGE: spec(10, 'BATCH_TOO_LARGE', false, 'batch is larger than the topic allows'),
  NETWORK: spec(13, 'NETWORK', true, 'connection lost before the answer arrived'),
  INVALID_TOPIC: spec(17, 'INVALID_TOPIC', false, 'invalid topic name'),
  NOT_ENOUGH_REPLICAS: spec(19, 'NOT_ENOUGH_REPLICAS', true, 'not enough in-sync replicas'),
  INVALID_REQUIRED_ACKS: spec(21, 'INVALID_REQUIRED_ACKS', false, 'acks must be 0, 1 or -1'),
  UNAUTHORIZED: spec(29, 'UNAUTHORIZED', false, 'not authorized'),
  /** An internal request kind (node to node: ReplicaFetch) from a principal that is no node. */
  CLUSTER_AUTHORIZATION_FAILED: spec(31, 'CLUSTER_AUTHORIZATION_FAILED', false, 'only a node may make this request'),
  UNSUPPORTED_VERSION: spec(35, 'UNSUPPORTED_VERSION', false, 'protocol version not supported'),
  TOPIC_ALREADY_EXISTS: spec(36, 'TOPIC_ALREADY_EXISTS', false, 'topic already exists'),
  INVALID_PARTITIONS: spec(37, 'INVALID_PARTITIONS', false, 'invalid partition count'),
  INVALID_CONFIG: spec(40, 'INVALID_CONFIG', false, 'invalid configuration'),
  INVALID_REQUEST: spec(42, 'INVALID_REQUEST', false, 'malformed or invalid request'),
  OUT_OF_ORDER_SEQUENCE: spec(45, 'OUT_OF_ORDER_SEQUENCE', false, 'producer sequence has a gap'),
  DUPLICATE_SEQUENCE: spec(46, 'DUPLICATE_SEQUENCE', false, 'batch was already written'),
  INVALID_PRODUCER_EPOCH: spec(47, 'INVALID_PRODUCER_EPOCH', false, 'producer epoch is older than the current one'),
  STORAGE_ERROR: spec(56, 'STORAGE_ERROR', true, 'storage failed on the node'),
  UNKNOWN_MEMBER_ID: spec(25, 'UNKNOWN_MEMBER_ID', false, 'the group does not know this member; join again'),
  FENCED_MEMBER_EPOCH: spec(110, 'FENCED_MEMBER_EPOCH', false, 'the member epoch is stale; join again'),
  STALE_MEMBER_EPOCH: spec(113, 'STALE_MEMBER_EPOCH', true, 'the member epoch is behind; heartbeat, then commit again'),
  NON_EMPTY_GROUP: spec(68, 'NON_EMPTY_GROUP', false, 'the group has live members'),
  GROUP_ID_NOT_FOUND: spec(69, 'GROUP_ID_NOT_FOUND', false, 'the group has neither members nor committed offsets'),
  /** KIP-320: the request's leader epoch is older than the leader's: its sender missed a leader change. */
  FENCED_LEADER_EPOCH: spec(74, 'FENCED_LEADER_EPOCH', true, 'the leader epoch is older than the leader\'s; refresh metadata'),
  /** KIP-320: the request's leader epoch is newer than the leader's: this node has not learnt of it yet. */
  UNKNOWN_LEADER_EPOCH: spec(75, 'UNKNOWN_LEADER_EPOCH', true, 'the leader epoch is newer than the leader\'s; retry'),
  /** A codec the node cannot inflate (snappy, lz4, zstd), so it cannot check the records. */
  UNSUPPORTED_COMPRESSION_TYPE: spec(76, 'UNSUPPORTED_COMPRESSION_TYPE', false, 'the node does not accept this compression codec'),
  INVALID_RECORD: spec(87, 'INVALID_RECORD', false, 'a record failed the node\'s validation'),
  THROTTLED: spec(89, 'THROTTLED', true, 'request throttled'),
  STORAGE_FULL: spec(1001, 'STORAGE_FULL', true, 'node storage is full'),
  TOO_MANY_REQUESTS: spec(1002, 'TOO_MANY_REQUESTS', true, 'too many requests in flight'),
  FRAME_TOO_LARGE: spec(1003, 'FRAME_TOO_LARGE', false, 'frame exceeds the size limit'),
  SHUTTING_DOWN: spec(1004, 'SHUTTING_DOWN', true, 'node is shutting down'),
  CLIENT_CLOSED: spec(1005, 'CLIENT_CLOSED', false, 'client was closed'),
  BUFFER_FULL: spec(1006, 'BUFFER_FULL', true, 'producer buffer is full'),
  /** A bound on what a principal or the node may hold (committed offsets, group members). */
  RESOURCE_LIMIT: spec(1007, 'RESOURCE_LIMIT', false, 'a resource limit of the node was reached'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorName = keyof typeof Errors;

const byCode = new Map<number, ErrorSpec>(Object.values(Errors).map((e) => [e.code, e]));

export function errorSpecForCode(code: number): ErrorSpec {
  return byCode.get(code) ?? { code, name: `ERROR_${code}`, retriable: false, message: `error code ${code}` };
}

/**
 * An operating failure with a wire code: bad input, a peer gone, a full disk. Broken
 * invariants are not TributaryErrors; they are assertion failures (see `assert`).
 */
export class TributaryError extends Error {
  readonly code: number;
  readonly errorName: string;
  readonly retriable: boolean;
  /** The message without the code's name: what goes on the wire as `message`. */
  readonly detail: string;

  constructor(which: ErrorSpec, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${which.name}: ${detail}` : `${which.name}: ${which.message}`, options);
    this.name = 'TributaryError';
    this.detail = detail || which.message;
    this.code = which.code;
    this.errorName = which.name;
    this.retriable = which.retriable;
  }

  static fromCode(code: number, detail?: string): TributaryError {
    return new TributaryError(errorSpecForCode(code), detail);
  }

  is(which: ErrorSpec): boolean {
    return this.code === which.code;
  }
}

/**
 * Rebuilds the error a peer answered with. A peer sends `message` as its own
 * TributaryError's message, which already starts with the code's name; it is stripped so
 * the name is not printed twice.
 */
export function wireError(code: number, message: unknown): TributaryError {
  const spec = errorSpecForCode(code);
  let detail = typeof message === 'string' && message !== '' ? message : undefined;
  if (detail !== undefined && detail.startsWith(`${spec.name}: `)) detail = detail.slice(spec.name.length + 2);
  return new TributaryError(spec, detail);
}

/** A codec was handed bytes it cannot decode. Carries the offset where decoding failed. */
export class DecodeError extends TributaryError {
  readonly at: number;
  constructor(which: ErrorSpec, detail: string, at = -1, options?: { cause?: unknown }) {
    super(which, at >= 0 ? `${detail} (at byte ${at})` : detail, options);
    this.name = 'DecodeError';
    this.at = at;
  }
}

/**
 * A compressed batch inflates past the bound it was given: CORRUPT_BATCH. `boundBytes` is
 * that bound, all of which was inflated before zlib stopped, so a caller that lowered the
 * bound to a budget of its own can tell a budget spent from a batch too large.
 */
export class InflateBoundError extends DecodeError {
  readonly boundBytes: number;
  constructor(detail: string, boundBytes: number, at = -1, options?: { cause?: unknown }) {
    super(Errors.CORRUPT_BATCH, detail, at, options);
    this.name = 'InflateBoundError';
    this.boundBytes = boundBytes;
  }
}

/**
 * A configured limit of the node stopped a request or part of it. `limit` is its key under
 * `limits` in the node's configuration (requestEntriesMax, requestDecompressBytesMax, ...):
 * the label it is counted under in tributary_limits_reached_total.
 */
export class LimitReachedError extends TributaryError {
  readonly limit: string;
  constructor(which: ErrorSpec, limit: string, detail: string) {
    super(which, detail);
    this.name = 'LimitReachedError';
    this.limit = limit;
  }
}

/** A broken invariant: a bug, never bad input. Crash loudly. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

/**
 * Throws an AssertionError when `condition` is false. Its message is built before the call:
 * on a path run per record or per request, test and throw AssertionError instead, so that
 * no message string is made when all is well.
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
