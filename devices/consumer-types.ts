// The Consumer's public types: its options, what it hands out, and what it is told. Apart
// from consumer.ts (which re-exports them) so that the buffer and the delivery strategies
// share them without importing the Consumer itself.

import type { Clock } from '../protocol/clock.js';
import type { Header } from '../protocol/record-batch.js';

export type ValueDecoding = 'buffer' | 'string' | 'auto';

/** The value type a decoding gives: bytes, text, or (auto) CBOR-decoded data or bytes. */
export type DecodedValue<D extends ValueDecoding> = D extends 'string' ? string : D extends 'auto' ? unknown : Buffer;

export interface ConsumerRecord<V = Buffer> {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: V | null;
  headers: Header[];
  /** The leader epoch its batch was written in (Kafka's ConsumerRecord.leaderEpoch); -1 if the node stamped none. */
  leaderEpoch: number;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface PartitionAssignment extends TopicPartition {
  /** Where to start; omitted: by autoOffsetReset. */
  offset?: number;
  /**
   * The leader epoch of the record before `offset` (a committed offset's): the position is
   * then checked against the node's log before it is read (KIP-320). Omitted or -1: unknown, not checked.
   */
  leaderEpoch?: number;
}

/**
 * A position found past the end of the node's log for the epoch it was read in (KIP-320):
 * the node lost records this consumer had read (a power loss cut its log), and new records
 * now hold their offsets. The consumer continues at `divergedAt`, or, when the node's log
 * holds no epoch at or below the one read (`divergedAt` -1), where autoOffsetReset puts it;
 * with autoOffsetReset 'none' it fails the partition (OFFSET_OUT_OF_RANGE) instead.
 */
export interface LogDivergence extends TopicPartition {
  /** The offset of the next record this consumer would have read. */
  position: number;
  /** The leader epoch of the record before `position`, as this consumer read it. */
  positionLeaderEpoch: number;
  /** The node's largest leader epoch at or below `positionLeaderEpoch`; -1 when it has none. */
  leaderEpoch: number;
  /** Where the node's log for `leaderEpoch` ends: the first offset whose record differs; -1 when none. */
  divergedAt: number;
}

export type AutoOffsetReset = 'earliest' | 'latest' | 'none';

/**
 * How records reach the consumer: 'subscribe' has the node push batches as they are
 * appended, within a credit of bufferedBytesMax; 'fetch' asks with long-poll Fetch.
 */
export type DeliveryMode = 'subscribe' | 'fetch';

export interface ConsumerOptions<D extends ValueDecoding = 'buffer'> {
  /**
   * 'subscribe' (default): the node pushes new batches; a node that does not know Subscribe
   * is read with Fetch until the next reconnect. 'fetch': long-poll Fetch only.
   */
  delivery?: DeliveryMode;
  /** Longest a Fetch waits on the node for data (Fetch only). */
  maxWaitMs?: number;
  /** Fetch only. */
  minBytes?: number;
  /** Per Fetch response, and per pushed SubscribeData frame. */
  maxBytes?: number;
  /** Per partition in a Fetch response (at least one whole batch is always returned). */
  partitionMaxBytes?: number;
  /** Where to start without a position, and after OFFSET_OUT_OF_RANGE. Default 'latest', as Kafka. */
  autoOffsetReset?: AutoOffsetReset;
  /** 'auto' decodes CBOR values (marked `content-type: application/cbor`), else gives bytes. */
  valueDecoding?: D;
  /**
   * Fetched bytes held before the app takes them; no Fetch starts past it, and a
   * subscription's credit never takes the queue past it (by more than one batch).
   */
  bufferedBytesMax?: number;
  /** Answer time allowed on top of maxWaitMs; for Subscribe and Unsubscribe, all of it. */
  requestTimeoutMs?: number;
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** UNKNOWN_TOPIC answers tolerated (with backoff) before the error reaches the app. */
  unknownTopicRetries?: number;
  /**
   * Told of each position found diverged from the node's log (KIP-320), before anything more
   * of the partition is read; a promise it returns is awaited first. Without it the
   * consumer still continues where the logs part, silently.
   */
  onDivergence?: (divergence: LogDivergence) => void | Promise<void>;
  /** Where retry backoffs and waits read time and schedule; default the client's clock. */
  clock?: Clock;
}

export interface OffsetForTime extends TopicPartition {
  /** The first offset whose timestamp is at or after the one asked for; null when none. */
  offset: number | null;
  timestamp: number;
}

