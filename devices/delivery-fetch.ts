// Fetch delivery: long-poll Fetch for every fetchable partition of the buffer, in an order
// that rotates so none starves behind the others' backlog; the answers go to the buffer.
//
// One Fetch is in flight at a time and the next one starts while the app is still busy
// with the last, as long as the buffered bytes stay under bufferedBytesMax: the prefetch
// of Kafka's consumer.

import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind, type FetchPartition } from '../protocol/frames.js';
import type { Client } from './client.js';
import { resultAt, type Delivery, type PartitionBuffer, type PartitionState } from './consumer-buffer.js';
import type { ValueDecoding } from './consumer-types.js';

export interface FetchSettings {
  /** Longest a Fetch waits on the node for data. */
  maxWaitMs: number;
  minBytes: number;
  /** Per Fetch response. */
  maxBytes: number;
  /** Per partition in a Fetch response (at least one whole batch is always returned). */
  partitionMaxBytes: number;
}

export class FetchDelivery implements Delivery {
  /** Where in the assignment the next Fetch starts; see fetchOrder(). */
  private fetchStart = 0;

  /**
   * `active`: while it holds, run() goes on; subscribe delivery falls back to Fetch through
   * it for as long as its node refuses Subscribe.
   */
  constructor(
    private readonly client: Client,
    private readonly buffer: PartitionBuffer<ValueDecoding>,
    private readonly settings: FetchSettings,
    private readonly active: () => boolean = () => true,
  ) {}

  async run(): Promise<void> {
    const buffer = this.buffer;
    while (!buffer.closed && this.active()) {
      const seen = buffer.changes;
      if (buffer.bufferedBytes >= buffer.bufferedBytesMax || buffer.failed) {
        await buffer.waitForChange(seen);
        continue;
      }
      const states = this.fetchOrder();
      await buffer.prepare(states);
      if (buffer.closed) return;
      const now = buffer.clock.monotonic();
      const wanted = states.filter((s) => buffer.fetchable(s, now) && buffer.isAssigned(s));
      if (wanted.length === 0) {
        await buffer.waitForChange(seen, buffer.retryDelayMs(states, now));
        continue;
      }
      const lastServed = await this.fetchOnce(wanted);
      this.rotateFetchOrder(states, lastServed);
    }
  }

  onTaken(): void {}

  onReconnect(): void {}

  close(): void {}

  /**
   * The assignment, starting at `fetchStart`. The node fills a Fetch's maxBytes in request
   * order (KIP-74), so a fixed order would let the first partitions of a large backlog take
   * every response while the later ones get nothing until the first catch up.
   */
  private fetchOrder(): PartitionState[] {
    const states = this.buffer.partitions();
    const start = states.length === 0 ? 0 : this.fetchStart % states.length;
    return start === 0 ? states : states.slice(start).concat(states.slice(0, start));
  }

  /**
   * The next Fetch starts just after the last partition that got records, so those that
   * were cut off by maxBytes come first: Kafka's consumer moves the partitions it got data
   * for to the end of its fetch order in the same way. When none or all got records, the
   * start still moves on by one.
   */
  private rotateFetchOrder(order: PartitionState[], lastServed: PartitionState | null): void {
    const i = lastServed === null ? -1 : order.indexOf(lastServed);
    const step = i >= 0 && i < order.length - 1 ? i + 1 : 1;
    this.fetchStart = (this.fetchStart + step) % order.length;
  }

  /** One Fetch; gives the last partition, in request order, that the node sent records for. */
  private async fetchOnce(wanted: PartitionState[]): Promise<PartitionState | null> {
    const buffer = this.buffer;
    const { maxWaitMs, minBytes, maxBytes, partitionMaxBytes } = this.settings;
    const epochs = wanted.map((s) => s.epoch);
    const partitions: FetchPartition[] = wanted.map((s) => ({
      topic: s.topic,
      partition: s.partition,
      fetchOffset: s.fetchOffset as number,
      maxBytes: partitionMaxBytes,
    }));
    let response;
    try {
      response = await this.client.request(Kind.Fetch, { maxWaitMs, minBytes, maxBytes, partitions }, { timeoutMs: maxWaitMs + buffer.requestTimeoutMs });
    } catch (err) {
      if (buffer.closed) return null;
      if (err instanceof TributaryError && err.retriable) {
        // A Fetch reads and changes nothing, so it is always safe to ask again.
        await buffer.backOff(buffer.backoffMs(1));
        return null;
      }
      buffer.fail(err as Error);
      return null;
    }
    const results = response.partitions ?? [];
    let lastServed: PartitionState | null = null;
    for (let i = 0; i < wanted.length; i++) {
      const s = wanted[i];
      const r = resultAt(results, i, s);
      if (r === undefined) continue;
      if (r.error === Errors.NONE.code && r.records.byteLength > 0) lastServed = s;
      if (s.epoch !== epochs[i] || buffer.closed) continue;
      buffer.onPartitionFetched(s, r);
    }
    return lastServed;
  }
}
