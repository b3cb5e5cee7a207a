// The Client's pushes: subscriptions, their credit, and pushes held ahead of an answer.
//
// The node sends SubscribeData frames unasked, correlation id 0, naming a subscription. They
// are routed by subscription id from the moment the Subscribe answer is read, before any
// later frame. A push for an id not known yet, while a Subscribe is on the wire, is held and
// handed over when the answer names that id: a node may send the first push ahead of its
// answer. A subscription lives on one connection: it ends with it, and its Credit and
// Unsubscribe are never sent on a later one, where the same id may name another
// subscription.

import { Errors, TributaryError } from '../protocol/errors.js';
import { Kind, RESPONSE, type FetchPartitionResult, type SubscribeData, type SubscribeRequest, type SubscribeResponse } from '../protocol/frames.js';
import type { RequestEngine } from '../protocol/request-engine.js';
import { CloseCode } from '../protocol/transport.js';

/** Where a subscription's pushes go; see `Client.subscribe`. */
export interface PushHandler {
  /** One SubscribeData push of the subscription, in the order the node sent them. */
  onData(data: SubscribeData): void;
  /**
   * The subscription ended without `unsubscribe()`: its connection is gone (and the node
   * has forgotten it), or pushes of it may have been lost (more came ahead of the Subscribe
   * answer than the client holds). Subscribe again.
   */
  onEnd(): void;
}

/** A subscription the node accepted: its pushes go to the PushHandler given to `subscribe`. */
export interface PushSubscription {
  readonly subscriptionId: number;
  /** The `connectionCount` of the connection it lives on. */
  readonly connection: number;
  /** The Subscribe answer per partition: NONE (taken) or why not. */
  readonly partitions: SubscribeResponse['partitions'];
  /** False once unsubscribed or once its connection is gone. */
  readonly isActive: boolean;
  /**
   * Grants the node `bytes` more to push (Credit, which is not answered). Resolves once the
   * frame is handed to the transport; rejects, unsent, when the subscription has ended or
   * the request cannot be queued.
   */
  credit(bytes: number): Promise<void>;
  /**
   * Stops routing its pushes at once, then asks the node to end it (when its connection is
   * still up) and resolves with the answer. Never rejects: a lost connection ends it too.
   */
  unsubscribe(): Promise<void>;
}

/**
 * Pushes for ids not known yet, held while Subscribes are on the wire: at most this many
 * frames, and records bytes up to the credit those Subscribes granted (a node pushes no more
 * before it can be granted more, but for one batch).
 */
const HELD_PUSHES_MAX = 1024;

/** A Subscribe on the wire, as the engine keeps it: what it granted, and whether pushes of it may be lost. */
class SubscribeOnWire {
  /** Some of its early pushes may have been dropped from the hold. */
  pushesLost = false;
  constructor(readonly creditBytes: number) {}
}

export class ClientPushes {
  /** The current connection's subscriptions by id; emptied when it is lost. */
  private readonly subscriptions = new Map<number, ClientPushSubscription>();
  /** Pushes for ids not known yet, in arrival order, while a Subscribe is on the wire. */
  private heldPushes: SubscribeData[] = [];
  private heldPushBytes = 0;

  constructor(private readonly engine: RequestEngine) {}

  /** See `Client.subscribe`. */
  subscribe(body: SubscribeRequest, handler: PushHandler, timeoutMs: number | undefined): Promise<PushSubscription> {
    return new Promise<PushSubscription>((resolve, reject) => {
      const onWire = new SubscribeOnWire(body.creditBytes);
      let opened: ClientPushSubscription | null = null;
      const onAnswer = (answer: Record<string, unknown>, { late }: { late: boolean }) => {
        opened = this.openSubscription(answer, handler, { late, pushesLost: onWire.pushesLost });
        if (this.subscribeCreditOnWire() === null) this.dropHeldPushes();
      };
      const onResolved = () => {
        if (opened !== null) resolve(opened);
        else reject(new TributaryError(Errors.UNKNOWN, `node at ${this.engine.url} answered Subscribe without a subscription id or partitions`));
      };
      this.engine.enqueue(Kind.Subscribe, body, { timeoutMs, onAnswer, tag: onWire }, onResolved, reject);
    });
  }

  /** A frame the node sent unasked. Only SubscribeData is known; any other push is dropped. */
  readonly onPush = (kind: number, body: Record<string, unknown>): void => {
    if (kind !== (Kind.SubscribeData | RESPONSE)) return;
    const data = subscribeDataOf(body);
    if (data === null) {
      this.engine.resetConnection(CloseCode.PROTOCOL_ERROR, 'malformed SubscribeData from node');
      return;
    }
    const subscription = this.subscriptions.get(data.subscriptionId);
    if (subscription === undefined) this.holdPush(data);
    else this.deliverPush(subscription, data);
  };

  /** The connection is gone, and every subscription with it. */
  readonly endAll = (): void => {
    this.dropHeldPushes();
    const ended = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const s of ended) this.endSubscription(s);
  };

  private deliverPush(subscription: ClientPushSubscription, data: SubscribeData): void {
    try {
      subscription.handler.onData(data);
    } catch (err) {
      // A handler that throws is a bug above us; the connection is reset rather than left
      // half-served, and every subscription on it ends.
      this.engine.resetConnection(CloseCode.INTERNAL_ERROR, `SubscribeData handler failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  /**
   * A push for an id not known: of a Subscribe whose answer is still to come, or of one
   * unsubscribed here that the node has yet to end. Held while a Subscribe is on the wire,
   * within its credit. Past that bound the held pushes are dropped, and what the Subscribes
   * on the wire open is ended at once rather than delivered with a hole.
   */
  private holdPush(data: SubscribeData): void {
    const creditOnWire = this.subscribeCreditOnWire();
    if (creditOnWire === null) return this.dropHeldPushes();
    if (this.heldPushes.length >= HELD_PUSHES_MAX || this.heldPushBytes > creditOnWire) {
      for (const s of this.subscribesOnWire()) s.pushesLost = true;
      return this.dropHeldPushes();
    }
    this.heldPushes.push(data);
    this.heldPushBytes += recordsBytesOf(data);
  }

  private subscribesOnWire(): SubscribeOnWire[] {
    return this.engine.tagsOnWire().filter((t): t is SubscribeOnWire => t instanceof SubscribeOnWire);
  }

  /** The credit of the Subscribes sent on this connection and not yet answered; null when none. */
  private subscribeCreditOnWire(): number | null {
    let bytes: number | null = null;
    for (const s of this.subscribesOnWire()) bytes = (bytes ?? 0) + s.creditBytes;
    return bytes;
  }

  private dropHeldPushes(): void {
    this.heldPushes = [];
    this.heldPushBytes = 0;
  }

  /** The held pushes of a subscription just opened, taken out of the hold in order. */
  private takeHeldPushes(subscriptionId: number): SubscribeData[] {
    const mine = this.heldPushes.filter((d) => d.subscriptionId === subscriptionId);
    if (mine.length === 0) return mine;
    this.heldPushes = this.heldPushes.filter((d) => d.subscriptionId !== subscriptionId);
    this.heldPushBytes = this.heldPushes.reduce((n, d) => n + recordsBytesOf(d), 0);
    return mine;
  }

  /** Registers the subscription a Subscribe answer opened; null when it opened none. */
  private openSubscription(
    answer: Record<string, unknown>,
    handler: PushHandler,
    { late, pushesLost }: { late: boolean; pushesLost: boolean },
  ): ClientPushSubscription | null {
    const id = answer.subscriptionId;
    const ok = (answer.error === undefined || answer.error === Errors.NONE.code) && isUint32(id) && Array.isArray(answer.partitions);
    if (!ok) return null;
    const subscription = new ClientPushSubscription(id, this.engine.connectionCount, answer.partitions as SubscribeResponse['partitions'], handler, this.link);
    // A node that reuses a live id has forgotten the first subscription: end it visibly.
    this.endSubscription(this.subscriptions.get(id));
    this.subscriptions.set(id, subscription);
    const held = this.takeHeldPushes(id);
    if (late) {
      void subscription.unsubscribe();
    } else if (pushesLost) {
      // Some of its first pushes may be among those dropped: it cannot be delivered whole.
      void subscription.unsubscribe();
      subscription.handler.onEnd();
    } else {
      for (const data of held) if (subscription.active) this.deliverPush(subscription, data);
    }
    return subscription;
  }

  private readonly link: SubscriptionLink = {
    credit: (s, bytes) =>
      new Promise<void>((resolve, reject) => {
        this.engine.enqueue(Kind.Credit, { subscriptionId: s.subscriptionId, bytes }, { expectsResponse: false, connection: s.connection }, () => resolve(), reject);
      }),
    unsubscribe: (s) => {
      if (this.subscriptions.get(s.subscriptionId) === s) this.subscriptions.delete(s.subscriptionId);
      if (this.engine.isClosed || s.connection !== this.engine.connectionCount) return Promise.resolve();
      return new Promise<void>((resolve) => {
        // Any failure leaves it ended all the same: a NETWORK one took the connection (and
        // the subscription) with it; an error answer means the node no longer had it.
        this.engine.enqueue(Kind.Unsubscribe, { subscriptionId: s.subscriptionId }, { connection: s.connection }, () => resolve(), () => resolve());
      });
    },
  };

  private endSubscription(subscription: ClientPushSubscription | undefined): void {
    if (subscription === undefined || !subscription.active) return;
    subscription.active = false;
    if (this.subscriptions.get(subscription.subscriptionId) === subscription) this.subscriptions.delete(subscription.subscriptionId);
    subscription.handler.onEnd();
  }
}

function recordsBytesOf(data: SubscribeData): number {
  let bytes = 0;
  for (const r of data.partitions) bytes += r.records.byteLength;
  return bytes;
}

function isUint32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
}

/**
 * A SubscribeData body checked for the shape its readers rely on, or null. A Fetch answer
 * is trusted as the answer to our own request; a push comes unasked, so it is checked.
 */
function subscribeDataOf(body: Record<string, unknown>): SubscribeData | null {
  if (!isUint32(body.subscriptionId) || !Array.isArray(body.partitions)) return null;
  for (const r of body.partitions as Partial<FetchPartitionResult>[]) {
    if (r === null || typeof r !== 'object') return null;
    if (typeof r.topic !== 'string' || !Number.isInteger(r.partition) || !Number.isInteger(r.error)) return null;
    if (!(r.records instanceof Uint8Array) || typeof r.highWatermark !== 'number') return null;
  }
  return body as unknown as SubscribeData;
}

/** What a subscription needs from the pushes side, which keeps the rest private. */
interface SubscriptionLink {
  credit(subscription: ClientPushSubscription, bytes: number): Promise<void>;
  unsubscribe(subscription: ClientPushSubscription): Promise<void>;
}

class ClientPushSubscription implements PushSubscription {
  active = true;
  constructor(
    readonly subscriptionId: number,
    readonly connection: number,
    readonly partitions: SubscribeResponse['partitions'],
    readonly handler: PushHandler,
    private readonly link: SubscriptionLink,
  ) {}

  get isActive(): boolean {
    return this.active;
  }

  credit(bytes: number): Promise<void> {
    if (!this.active) return Promise.reject(new TributaryError(Errors.NETWORK, `subscription ${this.subscriptionId} has ended; Credit not sent`));
    return this.link.credit(this, bytes);
  }

  unsubscribe(): Promise<void> {
    if (!this.active) return Promise.resolve();
    this.active = false;
    return this.link.unsubscribe(this);
  }
}
