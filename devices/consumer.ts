// The consumer: an assignment of partitions, a position in each, and records in order.
//
//   PartitionBuffer (consumer-buffer.ts): the assignment, positions with their leader
//     epochs, seeks, resets, KIP-320 validation, the queue of fetched chunks, and the
//     records()/batches() the app reads
//   Delivery, which fills it:
//     subscribe (default, delivery-subscribe.ts): one subscription, the node pushes within
//       a credit of the buffer's free bytes; Fetch while a node refuses Subscribe
//     fetch (delivery-fetch.ts): long-poll Fetch, one prefetched, in a rotating order
//
// Both deliveries hand what the node sends to the same buffer, so positions, resets,
// corrupt batches and partition errors behave alike whichever way records arrive.

import { Errors, TributaryError } from '../protocol/errors.js';
import { EARLIEST_TIMESTAMP, Kind, LATEST_TIMESTAMP } from '../protocol/frames.js';
import type { Client } from './client.js';
import { PartitionBuffer, resultAt } from './consumer-buffer.js';
import type {
  AutoOffsetReset,
  ConsumerOptions,
  ConsumerRecord,
  DecodedValue,
  DeliveryMode,
  OffsetForTime,
  PartitionAssignment,
  TopicPartition,
  ValueDecoding,
} from './consumer-types.js';
import { FetchDelivery, type FetchSettings } from './delivery-fetch.js';
import { SubscribeDelivery } from './delivery-subscribe.js';
import { wireError } from './errors.js';

// The public types live beside the buffer that uses them; the Consumer's module shows them all.
export type * from './consumer-types.js';

export class Consumer<D extends ValueDecoding = 'buffer'> {
  private readonly buffer: PartitionBuffer<D>;
  private readonly stopHearingReconnects: () => void;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly client: Client,
    options: ConsumerOptions<D> = {},
    private readonly ownsClient = false,
  ) {
    const maxWaitMs = intOption('maxWaitMs', options.maxWaitMs, 500, 0);
    const minBytes = intOption('minBytes', options.minBytes, 1, 0);
    const maxBytes = intOption('maxBytes', options.maxBytes, 8 * 1024 * 1024, 1);
    const partitionMaxBytes = intOption('partitionMaxBytes', options.partitionMaxBytes, 1024 * 1024, 1);
    const bufferedBytesMax = intOption('bufferedBytesMax', options.bufferedBytesMax, maxBytes, 1);
    const requestTimeoutMs = intOption('requestTimeoutMs', options.requestTimeoutMs, 30_000, 1);
    const retryBackoffMs = intOption('retryBackoffMs', options.retryBackoffMs, 100, 0);
    const retryBackoffMaxMs = intOption('retryBackoffMaxMs', options.retryBackoffMaxMs, 2000, 0);
    const unknownTopicRetries = intOption('unknownTopicRetries', options.unknownTopicRetries, 3, 0);
    const delivery: DeliveryMode = options.delivery ?? 'subscribe';
    if (!['subscribe', 'fetch'].includes(delivery)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `delivery must be 'subscribe' or 'fetch', got ${String(delivery)}`);
    }
    const autoOffsetReset: AutoOffsetReset = options.autoOffsetReset ?? 'latest';
    if (!['earliest', 'latest', 'none'].includes(autoOffsetReset)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `autoOffsetReset must be 'earliest', 'latest' or 'none', got ${String(autoOffsetReset)}`);
    }
    const valueDecoding: ValueDecoding = options.valueDecoding ?? 'buffer';
    if (!['buffer', 'string', 'auto'].includes(valueDecoding)) {
      throw new TributaryError(Errors.INVALID_CONFIG, `valueDecoding must be 'buffer', 'string' or 'auto', got ${String(valueDecoding)}`);
    }
    const fetch: FetchSettings = { maxWaitMs, minBytes, maxBytes, partitionMaxBytes };
    this.buffer = new PartitionBuffer<D>(
      client,
      {
        autoOffsetReset,
        valueDecoding,
        bufferedBytesMax,
        requestTimeoutMs,
        retryBackoffMs,
        retryBackoffMaxMs,
        unknownTopicRetries,
        onDivergence: options.onDivergence,
        clock: options.clock ?? client.clock,
      },
      (buffer) => (delivery === 'subscribe' ? new SubscribeDelivery(client, buffer, fetch) : new FetchDelivery(client, buffer, fetch)),
    );
    this.stopHearingReconnects = client.onReconnect(() => this.buffer.onReconnected());
  }

  /** Fetched bytes waiting for the app. */
  get bufferedBytes(): number {
    return this.buffer.bufferedBytes;
  }

  /** The partitions assigned now. */
  assignment(): TopicPartition[] {
    return this.buffer.assignment();
  }

  /**
   * Replaces the assignment. A partition kept from before keeps its position unless an
   * offset is given; a new one starts at its offset or by autoOffsetReset.
   */
  assign(partitions: readonly PartitionAssignment[]): void {
    this.buffer.assign(partitions);
  }

  /** Sets the next offset to read; data already fetched for the partition is dropped. */
  seek(topic: string, partition: number, offset: number): void {
    this.buffer.seek(topic, partition, offset);
  }

  /** Moves to the first kept offset of each partition (all assigned when none given). */
  async seekToBeginning(partitions?: readonly TopicPartition[]): Promise<void> {
    await this.buffer.seekTo(partitions, EARLIEST_TIMESTAMP);
  }

  /** Moves to the log end of each partition: only records written from now on are read. */
  async seekToEnd(partitions?: readonly TopicPartition[]): Promise<void> {
    await this.buffer.seekTo(partitions, LATEST_TIMESTAMP);
  }

  /** For each partition, the first offset with a timestamp at or after the one given. */
  async offsetsForTimes(query: readonly (TopicPartition & { timestamp: number })[]): Promise<OffsetForTime[]> {
    if (query.length === 0) return [];
    const response = await this.client.request(Kind.ListOffsets, {
      partitions: query.map((q) => ({ topic: q.topic, partition: q.partition, timestamp: q.timestamp })),
    });
    return query.map((q, i) => {
      const r = resultAt(response.partitions, i, q);
      if (r === undefined) throw new TributaryError(Errors.UNKNOWN, `node did not answer for ${q.topic}/${q.partition}`);
      if (r.error !== Errors.NONE.code) throw wireError(r.error, r.message);
      return { topic: q.topic, partition: q.partition, offset: r.offset < 0 ? null : r.offset, timestamp: r.timestamp };
    });
  }

  /** The offset of the next record the app will get; resolves a pending reset first. */
  position(topic: string, partition: number): Promise<number> {
    return this.buffer.position(topic, partition);
  }

  /**
   * The offset of the next record the app will get, if the partition has one now: set by
   * a seek or a start offset, by a reset already resolved, or by the records taken. Null
   * while a reset is still to be asked of the node; unlike position(), it never asks
   * (Kafka's hasValidPosition).
   */
  validPosition(topic: string, partition: number): number | null {
    return this.buffer.validPosition(topic, partition);
  }

  /** The leader epoch of the record before validPosition (what a commit carries); -1 when unknown. */
  positionLeaderEpoch(topic: string, partition: number): number {
    return this.buffer.positionLeaderEpoch(topic, partition);
  }

  /** The high watermark from the last Fetch answer or push for the partition, or -1. */
  highWatermark(topic: string, partition: number): number {
    return this.buffer.highWatermark(topic, partition);
  }

  /** Records one at a time. Breaking out of the loop does not close the consumer. */
  [Symbol.asyncIterator](): AsyncIterator<ConsumerRecord<DecodedValue<D>>> {
    return this.buffer.records();
  }

  /** Records in arrays, as fetched and decoded (the fast path). The position moves past each array as it is given. */
  batches(): AsyncIterable<ConsumerRecord<DecodedValue<D>>[]> {
    return this.buffer.batches();
  }

  /** Stops fetching and ends every iteration; closes the client if this consumer made it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.buffer.close();
      this.stopHearingReconnects();
      // With its own client, closing it ends the fetch in flight at once. A shared client
      // stays open: the long poll in flight ends within maxWaitMs and its answer is dropped.
      if (this.ownsClient) {
        await this.client.close();
        await this.buffer.running;
      }
    })();
    return this.closing;
  }
}

function intOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new TributaryError(Errors.INVALID_CONFIG, `${name} must be an integer of at least ${min}, got ${String(value)}`);
  return value;
}
