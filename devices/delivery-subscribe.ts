// Subscribe delivery: one subscription holds every fetchable partition of the buffer at its
// fetch offset; the node pushes batches as they are appended, within a byte credit that is
// granted back as the app takes records; each push goes to the buffer as a Fetch answer does.
//
// The credit is the buffer's bound: the bytes queued plus the credit the node holds never
// exceed bufferedBytesMax, so the node stops pushing when the app stops taking. The
// subscription remembers the epoch it took each partition at; when the set of fetchable
// partitions or an epoch changes, it is replaced whole (Unsubscribe, then Subscribe at the
// fetch offsets), and its late pushes are dropped. A node that does not know Subscribe is
// read with Fetch until the next reconnect.

import { Errors, TributaryError } from '../protocol/errors.js';
import { SUBSCRIBE_CREDIT_BYTES_MAX, type FetchPartition, type SubscribeData } from '../protocol/frames.js';
import type { Client, PushSubscription } from './client.js';
import { resultAt, tpKey, type Delivery, type PartitionBuffer, type PartitionState } from './consumer-buffer.js';
import type { ValueDecoding } from './consumer-types.js';
import { FetchDelivery, type FetchSettings } from './delivery-fetch.js';
import { wireError } from './errors.js';

/** The subscription delivering to this consumer, as the consumer counts it. */
interface Subscribed {
  /** Set once the Subscribe answer is read (pushes may be handled just before). */
  handle: PushSubscription | null;
  /** Partitions taken, each with the epoch it was subscribed at: data under another is stale. */
  readonly members: Map<string, { readonly state: PartitionState; readonly epoch: number }>;
  /**
   * What the node may still push, counted as the node counts it: granted minus pushed,
   * below 0 after the one batch it may push past the credit.
   */
  creditBytes: number;
  /** Its connection is gone, or a grant went unsent: it must be replaced. */
  broken: boolean;
}

export class SubscribeDelivery implements Delivery {
  /** The credit window: bufferedBytesMax, as far as the node takes it. */
  private readonly creditWindowBytes: number;
  /** Credit is granted back in steps of at least this, not a frame per batch taken. */
  private readonly creditGrantBytesMin: number;
  /** The one subscription, from its Subscribe until it is replaced. */
  private subscription: Subscribed | null = null;
  private subscribeFailures = 0;
  /** The node refused Subscribe on this connection: Fetch is used until a reconnect. */
  private refused = false;
  private readonly fallback: FetchDelivery;

  /** `settings`: maxBytes and partitionMaxBytes bound pushes; all of them bound the fallback's Fetch. */
  constructor(
    private readonly client: Client,
    private readonly buffer: PartitionBuffer<ValueDecoding>,
    private readonly settings: FetchSettings,
  ) {
    // The node holds no more credit than this and refuses a Subscribe asking for more, so
    // a larger grant would be lost and our count would drift from the node's.
    this.creditWindowBytes = Math.min(buffer.bufferedBytesMax, SUBSCRIBE_CREDIT_BYTES_MAX);
    this.creditGrantBytesMin = Math.max(1, Math.floor(this.creditWindowBytes / 4));
    this.fallback = new FetchDelivery(client, buffer, settings, () => this.refused);
  }

  async run(): Promise<void> {
    while (!this.buffer.closed) {
      if (this.refused) await this.fallback.run();
      else await this.subscribeLoop();
    }
  }

  onTaken(): void {
    if (this.subscription !== null) this.grantCredit(this.subscription);
  }

  onReconnect(): void {
    // Perhaps to a newer node, or one with room for a subscription again: try it.
    this.refused = false;
  }

  close(): void {
    // Not waited for: a shared client sends the Unsubscribe; its own client closes anyway.
    const subscription = this.subscription;
    this.subscription = null;
    void subscription?.handle?.unsubscribe();
  }

  /**
   * Keeps one subscription that holds exactly the fetchable partitions, each at the epoch
   * it has now. Any change (assign, seek, reset, an error that pauses a partition, a retry
   * after backoff, a lost connection) replaces it whole: a partition cannot be moved within
   * a subscription, and one replacement per change costs one round trip more than a
   * subscription per partition but keeps a single credit window, counted exactly.
   */
  private async subscribeLoop(): Promise<void> {
    const buffer = this.buffer;
    while (!buffer.closed && !this.refused) {
      const seen = buffer.changes;
      if (buffer.failed) {
        await buffer.waitForChange(seen);
        continue;
      }
      const states = buffer.partitions();
      await buffer.prepare(states);
      if (buffer.closed) return;
      const now = buffer.clock.monotonic();
      const wanted = states.filter((s) => buffer.fetchable(s, now));
      const current = this.subscription;
      if (current !== null && (current.broken || !holdsExactly(current, wanted))) {
        await this.unsubscribe(current);
        continue;
      }
      if (current === null && wanted.length > 0 && buffer.bufferedBytes < buffer.bufferedBytesMax) {
        await this.subscribeOnce(wanted);
        continue;
      }
      await buffer.waitForChange(seen, buffer.retryDelayMs(states, now));
    }
  }

  /** Subscribes `wanted` at their fetch offsets with the free part of the window as credit. */
  private async subscribeOnce(wanted: PartitionState[]): Promise<void> {
    const buffer = this.buffer;
    const creditBytes = Math.min(buffer.bufferedBytesMax - buffer.bufferedBytes, this.creditWindowBytes);
    const epochs = wanted.map((s) => s.epoch);
    const sub: Subscribed = {
      handle: null,
      members: new Map(wanted.map((s) => [tpKey(s.topic, s.partition), { state: s, epoch: s.epoch }])),
      creditBytes,
      broken: false,
    };
    this.subscription = sub;
    const partitions: FetchPartition[] = wanted.map((s) => ({
      topic: s.topic,
      partition: s.partition,
      fetchOffset: s.fetchOffset as number,
      maxBytes: this.settings.partitionMaxBytes,
    }));
    let handle: PushSubscription;
    try {
      handle = await this.client.subscribe(
        // Pushes of at most partitionMaxBytes (1 MiB), not maxBytes: smaller pushes keep the
        // node sealing the next while we open this one, and the node holds less at a time
        // (measured: consume 2.4-2.8 M records/s against 1.8 M with 8 MiB pushes).
        { partitions, creditBytes, maxBytes: Math.min(this.settings.maxBytes, this.settings.partitionMaxBytes) },
        {
          onData: (data) => this.onSubscribeData(sub, data),
          onEnd: () => {
            sub.broken = true;
            buffer.wakeDelivery();
          },
        },
        { timeoutMs: buffer.requestTimeoutMs },
      );
    } catch (err) {
      if (this.subscription === sub) this.subscription = null;
      if (!buffer.closed) await this.onSubscribeFailed(err);
      return;
    }
    sub.handle = handle;
    this.subscribeFailures = 0;
    if (buffer.closed || this.subscription !== sub) {
      void handle.unsubscribe();
      return;
    }
    wanted.forEach((s, i) => {
      const r = resultAt(handle.partitions, i, s);
      if (r !== undefined && r.error === Errors.NONE.code) return;
      sub.members.delete(tpKey(s.topic, s.partition));
      if (s.epoch !== epochs[i]) return; // a seek or reset since the request: it wins
      const err = r === undefined ? new TributaryError(Errors.UNKNOWN, 'node did not answer for the partition') : wireError(r.error, r.message);
      buffer.onPartitionError(s, err);
    });
    this.grantCredit(sub);
  }

  private async onSubscribeFailed(err: unknown): Promise<void> {
    if (err instanceof TributaryError && err.is(Errors.INVALID_REQUEST)) {
      // A node older than push delivery answers "unknown request kind 9" (and one at its
      // limit of subscriptions per connection refuses too): Fetch reads the same records,
      // so this connection uses it. A reconnect, perhaps to a newer node, tries again.
      this.refused = true;
      return;
    }
    if (err instanceof TributaryError && err.retriable) {
      // Subscribe changes nothing until answered, and an answer we missed opened a
      // subscription the client ends: asking again is safe.
      await this.buffer.backOff(this.buffer.backoffMs(++this.subscribeFailures));
      return;
    }
    this.buffer.fail(err as Error);
  }

  private async unsubscribe(sub: Subscribed): Promise<void> {
    if (this.subscription === sub) this.subscription = null;
    // Waited for, so the node has let go of the partitions before a Subscribe names them
    // again: it serves a connection's requests concurrently.
    await sub.handle?.unsubscribe();
  }

  /**
   * Gives the node back what is free of the window: bytes queued plus credit stay within
   * bufferedBytesMax. Grants wait until a quarter of the window is free, so a slow trickle
   * of taken batches is not a Credit frame each.
   */
  private grantCredit(sub: Subscribed): void {
    const handle = sub.handle;
    const buffer = this.buffer;
    if (handle === null || sub.broken || buffer.closed || this.subscription !== sub) return;
    const free = Math.min(buffer.bufferedBytesMax - buffer.bufferedBytes, this.creditWindowBytes) - sub.creditBytes;
    if (free < this.creditGrantBytesMin) return;
    sub.creditBytes += free;
    handle.credit(free).catch(() => {
      // Unsent: our count and the node's differ now; a new subscription starts both afresh.
      if (sub.broken) return;
      sub.broken = true;
      buffer.wakeDelivery();
    });
  }

  /** A push: the same path as a Fetch answer, for the partitions still subscribed at their epoch. */
  private onSubscribeData(sub: Subscribed, data: SubscribeData): void {
    const buffer = this.buffer;
    try {
      let pushedBytes = 0;
      for (const r of data.partitions) pushedBytes += r.records.byteLength;
      // The node counts every byte it pushed against the credit, stale ones too.
      sub.creditBytes -= pushedBytes;
      if (buffer.closed || this.subscription !== sub) return;
      let changed = false;
      for (const r of data.partitions) {
        const key = tpKey(r.topic, r.partition);
        const member = sub.members.get(key);
        if (member === undefined) continue;
        const s = member.state;
        // Stale: a seek, reset, unassign or error moved on; the subscription is replaced.
        if (s.epoch !== member.epoch || s.paused || !buffer.isAssigned(s)) continue;
        // A partition pushed with an error has left the subscription on the node.
        if (r.error !== Errors.NONE.code) sub.members.delete(key);
        buffer.onPartitionFetched(s, r);
        if (r.error !== Errors.NONE.code || s.paused) changed = true;
      }
      this.grantCredit(sub);
      if (changed) buffer.wakeDelivery();
    } catch (err) {
      // A bug here must not vanish into the client's read loop: hand it to the app.
      buffer.fail(err as Error);
    }
  }
}

/** Whether the subscription holds exactly these partitions, each at the epoch it has now. */
function holdsExactly(sub: Subscribed, wanted: readonly PartitionState[]): boolean {
  if (sub.members.size !== wanted.length) return false;
  for (const s of wanted) {
    const member = sub.members.get(tpKey(s.topic, s.partition));
    if (member === undefined || member.state !== s || member.epoch !== s.epoch) return false;
  }
  return true;
}
