// Push delivery (Subscribe): a connection's subscriptions, each a set of partitions with a
// position and a credit in bytes. The node sends SubscribeData frames as batches reach the
// high watermark, while credit lasts, without being asked: one round trip less per batch
// than Fetch, so a consumer sees a record as soon as it is appended.
//
// Bounds: the node never pushes more than the client granted (at least one whole batch
// once any credit is left, as KIP-74 for Fetch), and waits for the connection's send
// buffer to be within what the send budget allows it (send-budget.ts) before each push,
// pushing no more than the budget's share at a time while its principal or the node is
// over its bound, so neither a slow consumer nor a slow network makes it buffer. A
// connection has at most SUBSCRIPTIONS_MAX subscriptions, and a subscription's credit is
// capped.
//
// One push runs at a time per subscription; appends (log.onAppend, which also fires when a
// flush=batch sync moves the high watermark) and credit grants wake it.
//
// A follower's log may be truncated (its leader's log diverged from it, KIP-101): a
// partition whose position is above the new log end gets OFFSET_OUT_OF_RANGE pushed and
// leaves the subscription, as a Kafka consumer fetching from that follower would be
// answered; its client resets by its autoOffsetReset. It is never served from a position
// that later appends fill with other records.

import { Errors, LimitReachedError, TributaryError } from '../../protocol/errors.js';
import { isFetchOffsetInLog } from '../../protocol/fetch-rules.js';
import { encodeFrame, Kind, RESPONSE, type CreditRequest, type FetchPartitionResult, type SubscribeResponse, type UnsubscribeRequest } from '../../protocol/frames.js';
import { isInvalid, type DecodedRequests } from '../../protocol/requests.js';
import type { FrameTransport } from '../../protocol/transport.js';
import type { Principal } from '../auth/acl.js';
import { ANONYMOUS, isAllowed } from '../auth/acl.js';
import { isRefusal } from '../partition-roles.js';
import type { PartitionLog } from '../storage/partition-log.js';
import { requestBudget } from '../storage/request-budget.js';
import type { RequestBudget } from '../storage/request-budget.js';
import type { BrokerContext, RequestSubscriptions } from './context.js';
import { errorResult } from './handlers/errors.js';

import { SUBSCRIBE_CREDIT_BYTES_MAX as CREDIT_BYTES_MAX, SUBSCRIPTIONS_MAX } from '../../protocol/frames.js';

export { CREDIT_BYTES_MAX, SUBSCRIPTIONS_MAX };
const EMPTY = Buffer.alloc(0);
/** The longest a scheduled push waits for the next turn of the event loop while appends go on. */
const PUSH_COALESCE_MS = 20;

interface SubscribedPartition {
  topic: string;
  partition: number;
  log: PartitionLog;
  position: number;
  /** The log end of a truncation that left `position` above it; null when none did. */
  truncatedTo: number | null;
  unlisten: () => void;
}

class Subscription {
  readonly partitions: SubscribedPartition[] = [];
  credit: number;
  private pumping = false;
  private again = false;
  /**
   * What one push may load of cold segments' index files (limits.requestScanBytesMax),
   * refilled at each push: one object per subscription, so that a push costs nothing new.
   */
  private readonly budget: RequestBudget;
  /** When a push was scheduled and has not run yet (the broker's monotonic clock); null when none waits. */
  private scheduledAt: number | null = null;
  private immediate: NodeJS.Immediate | null = null;
  closed = false;
  /** Where the next push starts, so that no partition starves behind another's backlog. */
  private next = 0;

  constructor(
    readonly id: number,
    credit: number,
    private readonly maxBytes: number,
    private readonly owner: ConnectionSubscriptions,
  ) {
    this.credit = credit;
    this.budget = requestBudget(owner.broker.limits);
  }

  /**
   * Pushes run at the next turn of the event loop, not at each append: the appends of one
   * turn (every produce read from the sockets that were ready) then leave in one read and
   * one push instead of one each. With thousands of devices producing a record each, that
   * is the difference between a push per record and a push per turn.
   *
   * But a saturated node may not reach the next turn for seconds: libuv keeps polling while
   * a poll returns its full 1,024 sockets, up to 48 times, before it runs timers and
   * immediates. So an append that finds a push waiting longer than PUSH_COALESCE_MS runs
   * it there and then.
   */
  wake(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.again = true;
      if (this.scheduledAt !== null && this.owner.broker.clock.monotonic() - this.scheduledAt > PUSH_COALESCE_MS) this.runScheduled();
      return;
    }
    this.pumping = true;
    this.scheduledAt = this.owner.broker.clock.monotonic();
    this.immediate = setImmediate(() => this.runScheduled());
  }

  private runScheduled(): void {
    if (this.scheduledAt === null) return;
    this.scheduledAt = null;
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
    void this.pump().finally(() => {
      this.pumping = false;
      if (this.again && !this.closed) {
        this.again = false;
        this.wake();
      }
    });
  }

  private async pump(): Promise<void> {
    const { transport, broker } = this.owner;
    const { sendBudget } = broker;
    for (;;) {
      this.again = false;
      if (this.closed || transport.isClosed || this.credit <= 0 || this.partitions.length === 0) return;
      const principal = this.owner.principalKey;
      if (transport.bufferedBytes > sendBudget.allowance(principal)) await sendBudget.waitForRoom(transport, principal);
      if (this.closed || transport.isClosed) return;
      const { results, throttled } = this.collect(sendBudget.answerBytesMax(this.maxBytes, principal));
      if (results.length > 0) {
        transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { subscriptionId: this.id, partitions: results }));
        sendBudget.note(transport, principal);
      }
      // Partitions left for a spent budget wait for the next turn of the event loop and a
      // fresh budget (which opens at least one cold segment): pushing on at once would load
      // every cold segment's indexes in this one turn after all.
      if (throttled) {
        broker.metrics.limitReached.inc({ limit: 'requestScanBytesMax' });
        this.again = true;
        return;
      }
      if (results.length === 0) return;
    }
  }

  /**
   * Reads what is ready, within credit and `maxBytes`, advancing positions. `throttled`: a
   * partition with data was left for the push's budget, to be read at a later push.
   */
  private collect(maxBytes: number): { results: FetchPartitionResult[]; throttled: boolean } {
    const { broker } = this.owner;
    const results: FetchPartitionResult[] = [];
    let throttled = false;
    this.budget.scanBytesLeft = broker.limits.requestScanBytesMax;
    let bytes = 0;
    const n = this.partitions.length;
    const start = this.next % n;
    const gone: SubscribedPartition[] = [];
    for (let i = 0; i < n; i++) {
      const p = this.partitions[(start + i) % n];
      const budget = Math.min(maxBytes - bytes, this.credit - bytes);
      if (budget <= 0 && bytes > 0) break;
      const log = p.log;
      const result: FetchPartitionResult = { topic: p.topic, partition: p.partition, error: Errors.NONE.code, highWatermark: -1, logStartOffset: -1, records: EMPTY };
      // Deleted (and perhaps created again: another log), or now led by another node.
      const current = broker.partitionRoles.leaderLog(p.topic, p.partition);
      if (current !== log) {
        results.push({ ...result, ...(isRefusal(current) ? current : { error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic or partition ${p.topic}/${p.partition}` }) });
        gone.push(p);
        continue;
      }
      if (p.truncatedTo !== null) {
        const message = `offset ${p.position} is above the log end ${p.truncatedTo}: the log was truncated`;
        results.push({ ...result, error: Errors.OFFSET_OUT_OF_RANGE.code, message });
        gone.push(p);
        continue;
      }
      if (p.position >= log.highWatermark && p.position <= log.logEndOffset && p.position >= log.logStartOffset) continue;
      try {
        const read = log.readBatches(p.position, Math.max(budget, 1), log.highWatermark, this.budget);
        if (read.batches.length === 0) continue;
        result.records = read.bytes;
        result.highWatermark = log.highWatermark;
        result.logStartOffset = log.logStartOffset;
        p.position = read.batches[read.batches.length - 1].lastOffset + 1;
        bytes += read.bytes.length;
        broker.metrics.countServed(p.topic, read);
        results.push(result);
        this.next = (start + i + 1) % n;
      } catch (err) {
        if (err instanceof LimitReachedError) {
          throttled = true;
          continue;
        }
        results.push({ ...result, ...errorResult(err, broker.logger, { request: 'Subscribe', topic: p.topic, partition: p.partition, offset: p.position }) });
        gone.push(p);
      }
    }
    for (const p of gone) this.remove(p);
    this.credit -= bytes;
    return { results, throttled };
  }

  add(p: SubscribedPartition): void {
    this.partitions.push(p);
  }

  private remove(p: SubscribedPartition): void {
    p.unlisten();
    const i = this.partitions.indexOf(p);
    if (i >= 0) this.partitions.splice(i, 1);
  }

  close(): void {
    this.closed = true;
    for (const p of this.partitions) p.unlisten();
    this.partitions.length = 0;
  }
}

function subscribedPartition(topic: string, partition: number, log: PartitionLog, position: number, subscription: Subscription): SubscribedPartition {
  const p: SubscribedPartition = { topic, partition, log, position, truncatedTo: null, unlisten: () => {} };
  const unlistenAppends = log.onAppend(() => subscription.wake());
  // Heard before any later append: the position is judged against the log it was read from.
  const unlistenTruncations = log.onTruncate((logEndOffset) => {
    if (p.position <= logEndOffset) return;
    p.truncatedTo = logEndOffset;
    subscription.wake();
  });
  p.unlisten = () => {
    unlistenAppends();
    unlistenTruncations();
  };
  return p;
}

const NO_SUBSCRIPTIONS: ReadonlyMap<number, Subscription> = new Map();

export class ConnectionSubscriptions implements RequestSubscriptions {
  /** Made with the first subscription: most connections (devices) never subscribe. */
  private byIdMap: Map<number, Subscription> | null = null;

  private byId(): ReadonlyMap<number, Subscription> {
    return this.byIdMap ?? NO_SUBSCRIPTIONS;
  }
  private nextId = 1;

  constructor(
    readonly transport: FrameTransport,
    readonly broker: BrokerContext,
    /** Whose send budget the pushes count against (Principal.key). */
    readonly principalKey: string = ANONYMOUS.key,
  ) {}

  subscribe(request: DecodedRequests[Kind.Subscribe], principal: Principal): SubscribeResponse {
    const { limits } = this.broker;
    if (this.byId().size >= SUBSCRIPTIONS_MAX) {
      throw new TributaryError(Errors.INVALID_REQUEST, `a connection may hold at most ${SUBSCRIPTIONS_MAX} subscriptions; unsubscribe one first`);
    }
    if (this.broker.shuttingDown) throw new TributaryError(Errors.SHUTTING_DOWN);
    const maxBytes = Math.min(request.maxBytes ?? limits.fetchBytesMax, limits.fetchBytesMax);
    const subscription = new Subscription(this.nextId++, request.creditBytes, maxBytes, this);
    const answers: SubscribeResponse['partitions'] = [];
    const seen = new Set<string>();
    for (const part of request.partitions) {
      const { topic, partition, fetchOffset } = part;
      if (isInvalid(part)) {
        answers.push({ topic, partition, ...part.invalid });
        continue;
      }
      const key = `${topic}\u0000${partition}`;
      if (seen.has(key)) {
        answers.push({ topic, partition, error: Errors.INVALID_REQUEST.code, message: 'partition named twice' });
        continue;
      }
      seen.add(key);
      if (!isAllowed(principal, 'consume', topic)) {
        this.broker.metrics.requestsUnauthorized.inc({ action: 'consume' });
        answers.push({ topic, partition, error: Errors.UNAUTHORIZED.code, message: `${principal.name} may not consume from '${topic}'` });
        continue;
      }
      const log = this.broker.partitionRoles.leaderLog(topic, partition);
      if (isRefusal(log)) {
        answers.push({ topic, partition, ...log });
        continue;
      }
      // The same bounds as Fetch (protocol/fetch-rules.ts), so a subscription and a fetch at one offset agree.
      if (!isFetchOffsetInLog(fetchOffset, log.logStartOffset, log.logEndOffset)) {
        answers.push({ topic, partition, error: Errors.OFFSET_OUT_OF_RANGE.code, message: `offset ${fetchOffset} is outside the log [${log.logStartOffset}, ${log.logEndOffset}]` });
        continue;
      }
      subscription.add(subscribedPartition(topic, partition, log, fetchOffset, subscription));
      answers.push({ topic, partition, error: Errors.NONE.code });
    }
    (this.byIdMap ??= new Map()).set(subscription.id, subscription);
    // The first push waits for the next turn (see `wake`), after this answer, which is
    // sent when this handler's promise settles, in a microtask: so it follows the answer on
    // the wire and the client knows the id.
    subscription.wake();
    return { error: Errors.NONE.code, subscriptionId: subscription.id, partitions: answers };
  }

  credit(request: CreditRequest): void {
    const subscription = this.byId().get(request.subscriptionId);
    if (!subscription) return; // it may have just ended; a late grant is no error
    subscription.credit = Math.min(CREDIT_BYTES_MAX, subscription.credit + request.bytes);
    subscription.wake();
  }

  unsubscribe(request: UnsubscribeRequest): void {
    const id = request.subscriptionId;
    const subscription = this.byId().get(id);
    if (!subscription) throw new TributaryError(Errors.INVALID_REQUEST, `no subscription ${id} on this connection`);
    subscription.close();
    this.byIdMap?.delete(id);
  }

  get count(): number {
    return this.byId().size;
  }

  closeAll(): void {
    for (const s of this.byId().values()) s.close();
    this.byIdMap?.clear();
  }
}
