// The SDK's connection to one node: request/response over a FrameTransport, with the
// node's limits respected on our side so the node never has to refuse us.
//
//   app -> Client.request -> local queue (bounded) -> wire (at most inflightMax) -> node
//
// Every (re)connect opens a raw transport through `transportFactory`, runs the Noise XX
// handshake on it (protocol/secure-channel.ts) and speaks sealed frames from then on:
//
//   transportFactory -> raw transport -> secureInitiator -> sealed transport -> frames
//
// Hello is the first sealed frame; frameBytesMax and inflightMax come from its answer.
// The handshake shows the node our identity and, in message 3, our credential; before
// sending message 3 we check the node against the pins (protocol/peer-auth.ts), so an
// impostor learns nothing of us. A refusal on either side (a pin that does not match, a
// Hello answered UNAUTHORIZED) is not retried: no number of attempts changes a key.
//
// When the connection drops, requests on the wire are rejected with NETWORK: the node may
// or may not have acted on them, so only the caller can decide whether a resend is safe.
// Requests still queued locally were never sent; they wait for the reconnect, bounded by
// their own timeout.
//
// Push delivery (`subscribe`): the node sends SubscribeData frames unasked, correlation id
// 0, naming a subscription. The client routes them by subscription id from the moment the
// Subscribe answer is read, before any later frame. A push for an id not known yet, while
// a Subscribe is on the wire, is held and handed over when the answer names that id: a node
// may send the first push ahead of its answer. A subscription lives on one connection: it
// ends with it, and its Credit and Unsubscribe are never sent on a later one, where the
// same id may name another subscription.

import WebSocket from 'ws';
import { CREDENTIAL_BYTES_MAX } from '../protocol/credential.js';
import { errorSpecForCode, Errors, TributaryError } from '../protocol/errors.js';
import {
  decodeFrame,
  encodeFrame,
  Kind,
  kindName,
  PROTOCOL_VERSION,
  RESPONSE,
  type FetchPartitionResult,
  type HelloResponse,
  type RequestBodies,
  type ResponseBodies,
  type SubscribeData,
  type SubscribeRequest,
  type SubscribeResponse,
} from '../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { verifyNode, type NodePins } from '../protocol/peer-auth.js';
import {
  HANDSHAKE_MESSAGE2_BYTES_MIN,
  noiseKeyPairFromIdentity,
  noisePublicKeyFromIdentity,
  SEALED_MESSAGE_BYTES_MAX,
  secureInitiator,
  type SecureChannelOptions,
} from '../protocol/secure-channel.js';
import { CloseCode, forwardingTransport, readFrames, socketTransport, type CloseInfo, type FrameTransport } from '../protocol/transport.js';
import { clientClosed, ConnectionError, reasonOf, wireError } from './errors.js';
import { peekCredential } from './identity.js';

// Answers come from the node this client chose to connect to; they are checked for shape
// like everything else, with room for the Metadata of a large node (about 7 items per
// partition).
const RESPONSE_FRAME_LIMITS = { itemsMax: 2_000_000, depthMax: 32 };

/**
 * Opens one raw transport to `url` (the client runs the secure channel over it). Should give
 * up when `signal` aborts.
 */
export type TransportFactory = (url: string, options?: { signal?: AbortSignal }) => Promise<FrameTransport>;

export interface ReconnectOptions {
  /** First delay after a lost connection. */
  initialMs?: number;
  /** Longest delay between attempts; the delay doubles up to it, with jitter. */
  maxMs?: number;
}

export interface ClientOptions {
  /** Sent in Hello; shows in the node's logs. */
  clientId?: string;
  /** How long the first connect keeps trying before it fails with ConnectionError. */
  connectTimeoutMs?: number;
  /** Default per-request timeout, from the call until the answer (queue time included). */
  requestTimeoutMs?: number;
  reconnect?: ReconnectOptions;
  /** Requests waiting locally beyond the node's inflightMax; past it, TOO_MANY_REQUESTS. */
  requestQueueMax?: number;
  /** Bytes queued in the transport before the client stops writing until it drains. */
  sendBufferBytesMax?: number;
  /** Opens the raw transport; defaults to a `ws` WebSocket with binary frames. */
  transportFactory?: TransportFactory;
  /**
   * Who this client is in the handshake (an Ed25519 key pair, as `readIdentityFile` gives).
   * Without one the client makes a fresh key pair and is anonymous, which a node admits
   * only in dev mode on loopback.
   */
  identity?: IdentityKeyPair;
  /**
   * This identity's fleet credential, the bytes `tributary credentials issue` wrote; sent to
   * the node in handshake message 3. Needs `identity`. Without it the client is anonymous.
   */
  credential?: Uint8Array;
  /** Accept only the node with this identity public key (32 bytes, Ed25519). Checked first. */
  nodePublicKey?: Buffer;
  /** Accept any node holding a valid `node` credential of this fleet (32 bytes, Ed25519). */
  fleetPublicKey?: Buffer;
  /**
   * The largest frame taken from the node (it arrives in sealed chunks, reassembled up to
   * this); a larger one closes the connection. Default 256 MiB.
   */
  inboundFrameBytesMax?: number;
  /** Called after each successful Hello (first connect and every reconnect). */
  onConnect?: (info: { nodeId: string; frameBytesMax: number; inflightMax: number }) => void;
  /** Called when an established connection is lost (not on close()). */
  onDisconnect?: (info: CloseInfo) => void;
}

export interface RequestOptions {
  timeoutMs?: number;
}

/**
 * Request kinds an application may send. Hello belongs to the client itself, and so do
 * Subscribe, Credit and Unsubscribe: they name a subscription of one connection, which
 * only `subscribe()` can keep track of.
 */
export type RequestKind = Exclude<keyof RequestBodies, Kind.Hello | Kind.Subscribe | Kind.Credit | Kind.Unsubscribe>;

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

export interface NodeLimits {
  frameBytesMax: number;
  inflightMax: number;
}

type State = 'idle' | 'connecting' | 'ready' | 'closed';

interface Pending {
  readonly kind: number;
  readonly correlationId: number;
  readonly frame: Buffer;
  readonly expectsResponse: boolean;
  /** Non-zero: send only on this connection (a connectionCount), else fail unsent. */
  readonly connection: number;
  /** A Subscribe's creditBytes: what the node may push for it before its answer is read. */
  readonly subscribeCreditBytes: number;
  /** A Subscribe some of whose early pushes may have been dropped from the hold. */
  pushesLost: boolean;
  /**
   * Called with the answer as it is read, before later frames and even after a timeout
   * (`late`): what it opens on the node must be known, or ended, at once.
   */
  readonly onAnswer: ((body: Record<string, unknown>, answered: { late: boolean; pushesLost: boolean }) => void) | null;
  resolve(body: Record<string, unknown> | undefined): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | null;
  /** Answered, failed or timed out: a late answer is dropped. */
  done: boolean;
}

/**
 * Pushes for ids not known yet, held while Subscribes are on the wire: at most this many
 * frames, and records bytes up to the credit those Subscribes granted (a node pushes no more
 * before it can be granted more, but for one batch).
 */
const HELD_PUSHES_MAX = 1024;

const DEFAULTS = {
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  reconnectInitialMs: 100,
  reconnectMaxMs: 10_000,
  requestQueueMax: 4096,
  sendBufferBytesMax: 8 * 1024 * 1024,
};

/** Until a node tells us its limits, assume the most conservative useful ones. */
const BEFORE_HELLO_LIMITS: NodeLimits = { frameBytesMax: 1024 * 1024, inflightMax: 1 };

/** The largest frame we accept from a node; a Fetch answer is bounded by its fetchBytesMax. */
const INBOUND_FRAME_BYTES_MAX = 256 * 1024 * 1024;

let clientCount = 0;

/** Requests on the wire a client keeps in its array before it uses a Map. */
const INFLIGHT_FEW = 8;

/**
 * The requests on the wire, by correlation id. A device has one or two at a time: they stay
 * in a small array, searched in order, and only past INFLIGHT_FEW in a Map. V8 reallocates
 * a Map's table as entries come and go, one per request here, and that table then lived
 * until the next request a second later: long enough to be promoted, and left for a full GC.
 */
class InflightTable {
  private readonly few: Pending[] = [];
  private many: Map<number, Pending> | null = null;

  get size(): number {
    return this.few.length + (this.many?.size ?? 0);
  }

  get(correlationId: number): Pending | undefined {
    const few = this.few;
    for (let i = 0; i < few.length; i++) if (few[i].correlationId === correlationId) return few[i];
    return this.many?.get(correlationId);
  }

  has(correlationId: number): boolean {
    return this.get(correlationId) !== undefined;
  }

  /** Adds a request on the wire (correlation ids are unique among them). */
  set(correlationId: number, p: Pending): void {
    if (this.few.length < INFLIGHT_FEW) this.few.push(p);
    else (this.many ??= new Map()).set(correlationId, p);
  }

  delete(correlationId: number): boolean {
    const few = this.few;
    for (let i = 0; i < few.length; i++) {
      if (few[i].correlationId !== correlationId) continue;
      // In place, keeping the order: the array is short.
      for (let j = i + 1; j < few.length; j++) few[j - 1] = few[j];
      few.pop();
      return true;
    }
    return this.many?.delete(correlationId) ?? false;
  }

  /** A copy, oldest first (as a Map gives them): settling them may change the table. */
  values(): Pending[] {
    if (this.many === null) return [...this.few];
    return [...this.few, ...this.many.values()].sort((a, b) => a.correlationId - b.correlationId);
  }

  clear(): void {
    this.few.length = 0;
    this.many = null;
  }
}

export class Client {
  readonly url: string;
  readonly clientId: string;
  private readonly options: Required<
    Omit<ClientOptions, 'onConnect' | 'onDisconnect' | 'reconnect' | 'clientId' | 'identity' | 'credential' | 'nodePublicKey' | 'fleetPublicKey' | 'inboundFrameBytesMax'>
  > & {
    reconnectInitialMs: number;
    reconnectMaxMs: number;
  };
  /** The handshake's settings, fixed for the client's life: every reconnect shows the same. */
  private readonly secureChannel: SecureChannelOptions;
  private state: State = 'idle';
  private transport: FrameTransport | null = null;
  private limitsNow: NodeLimits = BEFORE_HELLO_LIMITS;
  private nodeIdNow = '';
  private nextCorrelationId = 1;
  private readonly inflight = new InflightTable();
  private readonly queue: Pending[] = [];
  private queueHead = 0;
  private queuedLive = 0;
  private waitingForDrain = false;
  private firstConnect: Promise<void> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;
  private attemptAbort: AbortController | null = null;
  private closing: Promise<void> | null = null;
  private connects = 0;
  /** The current connection's subscriptions by id; emptied when it is lost. */
  private readonly subscriptions = new Map<number, ClientPushSubscription>();
  /** Pushes for ids not known yet, in arrival order, while a Subscribe is on the wire. */
  private heldPushes: SubscribeData[] = [];
  private heldPushBytes = 0;

  constructor(url: string, options: ClientOptions = {}) {
    this.url = url;
    this.clientId = options.clientId ?? `tributary-js-${process.pid}-${++clientCount}`;
    this.options = {
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      reconnectInitialMs: options.reconnect?.initialMs ?? DEFAULTS.reconnectInitialMs,
      reconnectMaxMs: options.reconnect?.maxMs ?? DEFAULTS.reconnectMaxMs,
      requestQueueMax: options.requestQueueMax ?? DEFAULTS.requestQueueMax,
      sendBufferBytesMax: options.sendBufferBytesMax ?? DEFAULTS.sendBufferBytesMax,
      transportFactory: options.transportFactory ?? webSocketTransportFactory(),
    };
    this.secureChannel = secureChannelOptions(options);
    this.onConnect = options.onConnect;
    this.onDisconnect = options.onDisconnect;
  }

  private readonly onConnect: ClientOptions['onConnect'];
  private readonly onDisconnect: ClientOptions['onDisconnect'];
  private readonly reconnectListeners = new Set<() => void>();

  /**
   * Calls `listener` after each reconnect (every successful Hello but the first), before the
   * requests queued while the client was away are sent: the node may have restarted, and a
   * consumer checks its positions (KIP-320) before it reads on. Returns the remover.
   */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** Connects (first time) and resolves once Hello is answered. */
  static async connect(url: string, options: ClientOptions = {}): Promise<Client> {
    const client = new Client(url, options);
    await client.connect();
    return client;
  }

  /** The node's limits from the last Hello (conservative defaults before the first). */
  get limits(): NodeLimits {
    return this.limitsNow;
  }

  get nodeId(): string {
    return this.nodeIdNow;
  }

  get isConnected(): boolean {
    return this.state === 'ready';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Successful Hellos so far: 1 after the first connect, +1 per reconnect. */
  get connectionCount(): number {
    return this.connects;
  }

  /** Requests sent and not yet answered, plus those waiting locally. */
  get pendingRequests(): number {
    return this.inflight.size + this.queuedLive;
  }

  /**
   * Makes the first connection, retrying with backoff for up to connectTimeoutMs. On
   * failure the client is closed and the error is a ConnectionError naming the URL.
   */
  connect(): Promise<void> {
    if (this.isClosed) return Promise.reject(clientClosed());
    this.firstConnect ??= this.connectFirst();
    return this.firstConnect;
  }

  /** Sends a request and resolves with the answer's body; a top-level `error` rejects. */
  request<K extends RequestKind>(kind: K, body: RequestBodies[K], options: RequestOptions = {}): Promise<ResponseBodies[K]> {
    return new Promise<ResponseBodies[K]>((resolve, reject) => {
      this.enqueue(kind, body, true, options.timeoutMs ?? this.options.requestTimeoutMs, resolve as (b: unknown) => void, reject);
    });
  }

  /**
   * Sends a request that gets no answer (Produce with acks = 0). Resolves once the frame is
   * handed to the transport; nothing tells whether the node acted on it.
   */
  fireAndForget<K extends RequestKind>(kind: K, body: RequestBodies[K], options: RequestOptions = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.enqueue(kind, body, false, options.timeoutMs ?? this.options.requestTimeoutMs, () => resolve(), reject);
    });
  }

  /**
   * Sends Subscribe; from the moment its answer is read, the subscription's SubscribeData
   * pushes go to `handler`. Resolves with the subscription (partitions the node refused are
   * in its `partitions`); a top-level error rejects, as for `request`, and a node that does
   * not know Subscribe answers INVALID_REQUEST. An answer that comes after the timeout
   * opened a subscription nobody waits for: it is unsubscribed at once.
   */
  subscribe(body: SubscribeRequest, handler: PushHandler, options: RequestOptions = {}): Promise<PushSubscription> {
    return new Promise<PushSubscription>((resolve, reject) => {
      let opened: ClientPushSubscription | null = null;
      const onAnswer: Pending['onAnswer'] = (answer, answered) => {
        opened = this.openSubscription(answer, handler, answered);
        if (this.subscribeCreditOnWire() === null) this.dropHeldPushes();
      };
      const onResolved = () => {
        if (opened !== null) resolve(opened);
        else reject(new TributaryError(Errors.UNKNOWN, `node at ${this.url} answered Subscribe without a subscription id or partitions`));
      };
      this.enqueue(Kind.Subscribe, body, true, options.timeoutMs ?? this.options.requestTimeoutMs, onResolved, reject, {
        onAnswer,
        subscribeCreditBytes: body.creditBytes,
      });
    });
  }

  /** Rejects everything pending with CLIENT_CLOSED, closes the transport, leaves no timer. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------
  // Requests.

  private enqueue(
    kind: number,
    body: object,
    expectsResponse: boolean,
    timeoutMs: number,
    resolve: (body: Record<string, unknown> | undefined) => void,
    reject: (err: Error) => void,
    extra: { connection?: number; onAnswer?: Pending['onAnswer']; subscribeCreditBytes?: number } = {},
  ): void {
    if (this.isClosed) return reject(clientClosed());
    if (this.queuedLive >= this.options.requestQueueMax) {
      return reject(new TributaryError(Errors.TOO_MANY_REQUESTS, `client request queue is full (${this.options.requestQueueMax} waiting)`));
    }
    const correlationId = this.takeCorrelationId();
    let frame: Buffer;
    try {
      frame = encodeFrame(kind, correlationId, body);
    } catch (err) {
      return reject(new TributaryError(Errors.INVALID_REQUEST, `cannot encode ${kindName(kind)}: ${(err as Error).message}`, { cause: err }));
    }
    const p: Pending = {
      kind,
      correlationId,
      frame,
      expectsResponse,
      connection: extra.connection ?? 0,
      subscribeCreditBytes: extra.subscribeCreditBytes ?? 0,
      pushesLost: false,
      onAnswer: extra.onAnswer ?? null,
      resolve,
      reject,
      timer: null,
      done: false,
    };
    p.timer = setTimeout(() => this.timeOut(p, timeoutMs), timeoutMs);
    this.queue.push(p);
    this.queuedLive++;
    if (this.state === 'idle') void this.connect().catch(() => {});
    this.pump();
  }

  private takeCorrelationId(): number {
    const id = this.nextCorrelationId;
    // Ids are uint32 on the wire; 0 is reserved for server pushes.
    this.nextCorrelationId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  private timeOut(p: Pending, timeoutMs: number): void {
    if (p.done) return;
    p.done = true;
    p.timer = null;
    // A sent request keeps its place in `inflight` until answered: the node still counts it
    // against inflightMax, so sending another in its place would exceed the node's limit.
    if (!this.inflight.has(p.correlationId)) this.queuedLive--;
    p.reject(new TributaryError(Errors.REQUEST_TIMED_OUT, `${kindName(p.kind)} to ${this.url} got no answer within ${timeoutMs} ms`));
  }

  private settle(p: Pending): boolean {
    if (p.done) return false;
    p.done = true;
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    return true;
  }

  /** Moves queued requests to the wire while the node's limits and the socket allow. */
  private pump(): void {
    const transport = this.transport;
    if (this.state !== 'ready' || transport === null) return;
    const { inflightMax, frameBytesMax } = this.limitsNow;
    while (this.queueHead < this.queue.length && this.inflight.size < inflightMax) {
      if (transport.bufferedBytes > this.options.sendBufferBytesMax) {
        this.waitForDrain(transport);
        break;
      }
      const p = this.queue[this.queueHead];
      this.queue[this.queueHead++] = undefined as unknown as Pending;
      if (p.done) continue;
      this.queuedLive--;
      if (p.connection !== 0 && p.connection !== this.connects) {
        this.settle(p);
        p.reject(new TributaryError(Errors.NETWORK, `${kindName(p.kind)} was for a connection to ${this.url} that is gone; not sent`));
        continue;
      }
      if (p.frame.length > frameBytesMax) {
        this.settle(p);
        p.reject(new TributaryError(Errors.FRAME_TOO_LARGE, `${kindName(p.kind)} of ${p.frame.length} bytes exceeds the node's frameBytesMax ${frameBytesMax}`));
        continue;
      }
      if (p.expectsResponse) this.inflight.set(p.correlationId, p);
      transport.send(p.frame);
      if (!p.expectsResponse && this.settle(p)) p.resolve(undefined);
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
  }

  private waitForDrain(transport: FrameTransport): void {
    if (this.waitingForDrain) return;
    this.waitingForDrain = true;
    void transport.drained(this.options.sendBufferBytesMax / 2).then(() => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  private onFrame(bytes: Buffer, transport: FrameTransport): void {
    let frame;
    try {
      frame = decodeFrame(bytes, RESPONSE_FRAME_LIMITS);
    } catch (err) {
      // Without a readable correlation id nothing can be matched; start over cleanly.
      transport.close(CloseCode.PROTOCOL_ERROR, `malformed frame from node: ${(err as Error).message}`);
      return;
    }
    if (frame.correlationId === 0) return this.onPush(frame.kind, frame.body, transport);
    const p = this.inflight.get(frame.correlationId);
    if (p === undefined) return; // a stray answer
    this.inflight.delete(frame.correlationId);
    if (p.onAnswer !== null && frame.kind === (p.kind | RESPONSE)) p.onAnswer(frame.body, { late: p.done, pushesLost: p.pushesLost });
    if (this.settle(p)) {
      const body = frame.body;
      if (frame.kind !== (p.kind | RESPONSE)) {
        p.reject(new TributaryError(Errors.UNKNOWN, `expected ${kindName(p.kind | RESPONSE)}, node answered ${kindName(frame.kind)}`));
      } else if (typeof body.error === 'number' && body.error !== Errors.NONE.code) {
        p.reject(wireError(body.error, body.message));
      } else {
        p.resolve(body);
      }
    }
    this.pump();
  }

  // -------------------------------------------------------------------------------------
  // Pushes and subscriptions.

  /** A frame the node sent unasked. Only SubscribeData is known; any other push is dropped. */
  private onPush(kind: number, body: Record<string, unknown>, transport: FrameTransport): void {
    if (transport !== this.transport || this.state !== 'ready' || kind !== (Kind.SubscribeData | RESPONSE)) return;
    const data = subscribeDataOf(body);
    if (data === null) {
      transport.close(CloseCode.PROTOCOL_ERROR, 'malformed SubscribeData from node');
      return;
    }
    const subscription = this.subscriptions.get(data.subscriptionId);
    if (subscription === undefined) this.holdPush(data);
    else this.deliverPush(subscription, data);
  }

  private deliverPush(subscription: ClientPushSubscription, data: SubscribeData): void {
    try {
      subscription.handler.onData(data);
    } catch (err) {
      // A handler that throws is a bug above us; the connection is reset rather than left
      // half-served, and every subscription on it ends.
      this.transport?.close(CloseCode.INTERNAL_ERROR, `SubscribeData handler failed: ${(err as Error)?.message ?? String(err)}`);
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
      for (const p of this.inflight.values()) if (p.kind === Kind.Subscribe) p.pushesLost = true;
      return this.dropHeldPushes();
    }
    this.heldPushes.push(data);
    this.heldPushBytes += recordsBytesOf(data);
  }

  /** The credit of the Subscribes sent on this connection and not yet answered; null when none. */
  private subscribeCreditOnWire(): number | null {
    let bytes: number | null = null;
    for (const p of this.inflight.values()) if (p.kind === Kind.Subscribe) bytes = (bytes ?? 0) + p.subscribeCreditBytes;
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
    const subscription = new ClientPushSubscription(id, this.connects, answer.partitions as SubscribeResponse['partitions'], handler, this.subscriptionLink);
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

  private readonly subscriptionLink: SubscriptionLink = {
    credit: (s, bytes) =>
      new Promise<void>((resolve, reject) => {
        this.enqueue(Kind.Credit, { subscriptionId: s.subscriptionId, bytes }, false, this.options.requestTimeoutMs, () => resolve(), reject, {
          connection: s.connection,
        });
      }),
    unsubscribe: (s) => {
      if (this.subscriptions.get(s.subscriptionId) === s) this.subscriptions.delete(s.subscriptionId);
      if (this.isClosed || s.connection !== this.connects) return Promise.resolve();
      return new Promise<void>((resolve) => {
        // Any failure leaves it ended all the same: a NETWORK one took the connection (and
        // the subscription) with it; an error answer means the node no longer had it.
        this.enqueue(Kind.Unsubscribe, { subscriptionId: s.subscriptionId }, true, this.options.requestTimeoutMs, () => resolve(), () => resolve(), {
          connection: s.connection,
        });
      });
    },
  };

  private endSubscription(subscription: ClientPushSubscription | undefined): void {
    if (subscription === undefined || !subscription.active) return;
    subscription.active = false;
    if (this.subscriptions.get(subscription.subscriptionId) === subscription) this.subscriptions.delete(subscription.subscriptionId);
    subscription.handler.onEnd();
  }

  /** The connection is gone, and every subscription with it. */
  private endSubscriptions(): void {
    this.dropHeldPushes();
    const ended = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const s of ended) this.endSubscription(s);
  }

  // -------------------------------------------------------------------------------------
  // Connections.

  private async connectFirst(): Promise<void> {
    const deadline = Date.now() + this.options.connectTimeoutMs;
    let attempt = 0;
    for (;;) {
      try {
        await this.openOnce(Math.max(1, deadline - Date.now()));
        return;
      } catch (err) {
        if (this.isClosed) throw this.closedErrorFor(err);
        if (err instanceof TributaryError && !err.retriable) {
          // The node refused us (version, credentials): retrying cannot help.
          this.failQueued(err);
          void this.close();
          throw err;
        }
        const delay = this.backoffMs(attempt++);
        if (Date.now() + delay >= deadline) {
          const error = new ConnectionError(this.url, reasonOf(err), { cause: err });
          this.failQueued(error);
          void this.close();
          throw error;
        }
        await this.sleep(delay);
        if (this.isClosed) throw clientClosed();
      }
    }
  }

  private closedErrorFor(err: unknown): Error {
    return err instanceof TributaryError && err.is(Errors.CLIENT_CLOSED) ? err : clientClosed();
  }

  /** One attempt: open a transport, run the handshake, say Hello, become ready. */
  private async openOnce(timeoutMs: number): Promise<void> {
    this.state = 'connecting';
    const abort = new AbortController();
    this.attemptAbort = abort;
    const timer = setTimeout(() => abort.abort(new Error('ETIMEDOUT')), timeoutMs);
    try {
      const raw = await abortable(this.options.transportFactory(this.url, { signal: abort.signal }), abort.signal, (t) => t.close());
      if (this.isClosed) {
        raw.close(CloseCode.NORMAL, 'client closed');
        throw clientClosed();
      }
      // Held during the handshake so that close() or a failed attempt closes it.
      this.transport = raw;
      const session = await abortable(secureInitiator(raw, this.secureChannel), abort.signal).catch((err: unknown) => {
        throw withUrl(err, (detail) => `refusing node at ${this.url}: ${detail}`);
      });
      const transport = session.transport;
      this.transport = transport;
      void this.readLoop(transport);
      const hello = await abortable(this.hello(transport), abort.signal).catch((err: unknown) => {
        throw err instanceof TributaryError && err.is(Errors.UNAUTHORIZED) ? withUrl(err, (detail) => `node at ${this.url} refused this client: ${detail}`) : err;
      });
      this.limitsNow = {
        frameBytesMax: positiveInt(hello.frameBytesMax, BEFORE_HELLO_LIMITS.frameBytesMax),
        inflightMax: positiveInt(hello.inflightMax, BEFORE_HELLO_LIMITS.inflightMax),
      };
      this.nodeIdNow = String(hello.nodeId ?? '');
      this.state = 'ready';
      this.connects++;
      this.reconnectAttempt = 0;
      this.onConnect?.({ nodeId: this.nodeIdNow, ...this.limitsNow });
      if (this.connects > 1) for (const listener of this.reconnectListeners) listener();
      this.pump();
    } catch (err) {
      // Only Hello can be on the wire before the connection is ready: drop it with the
      // transport, so a late answer or close cannot touch the next attempt.
      for (const p of this.inflight.values()) this.settle(p);
      this.inflight.clear();
      const t = this.transport;
      this.transport = null;
      if (!this.isClosed) this.state = 'connecting';
      t?.close(CloseCode.NORMAL, 'connect attempt failed');
      throw err;
    } finally {
      clearTimeout(timer);
      if (this.attemptAbort === abort) this.attemptAbort = null;
    }
  }

  private hello(transport: FrameTransport): Promise<HelloResponse> {
    return new Promise<HelloResponse>((resolve, reject) => {
      const correlationId = this.takeCorrelationId();
      const frame = encodeFrame(Kind.Hello, correlationId, { version: PROTOCOL_VERSION, clientId: this.clientId });
      const p: Pending = {
        kind: Kind.Hello,
        correlationId,
        frame,
        expectsResponse: true,
        connection: 0,
        subscribeCreditBytes: 0,
        pushesLost: false,
        onAnswer: null,
        resolve: (body) => resolve(body as unknown as HelloResponse),
        reject,
        timer: null,
        done: false,
      };
      this.inflight.set(correlationId, p);
      transport.send(frame);
    });
  }

  /**
   * Reads the connection's frames as they arrive (by callback: between two answers nothing
   * of this reader waits on a promise) until it ends. Resolves then.
   */
  private readLoop(transport: FrameTransport): Promise<void> {
    return new Promise<void>((resolve) => {
      readFrames(transport, {
        frame: (bytes) => {
          try {
            this.onFrame(bytes, transport);
          } catch (err) {
            // A bug of ours; the connection cannot be trusted to be in step any more.
            transport.close(CloseCode.INTERNAL_ERROR, `client failed on a frame: ${(err as Error)?.message ?? String(err)}`);
          }
        },
        end: () => {
          void (async () => {
            const info = transport.isClosed ? await transport.closed : { code: CloseCode.GOING_AWAY, reason: 'stream ended' };
            this.onTransportClosed(transport, info);
            resolve();
          })();
        },
      });
    });
  }

  private onTransportClosed(transport: FrameTransport, info: CloseInfo): void {
    if (this.transport !== transport) return;
    this.transport = null;
    const wasReady = this.state === 'ready';
    const reason = info.reason ? `${info.code}: ${info.reason}` : `${info.code}`;
    for (const p of this.inflight.values()) {
      if (!this.settle(p)) continue;
      p.reject(
        new TributaryError(
          Errors.NETWORK,
          `connection to ${this.url} closed (${reason}) before ${kindName(p.kind)} was answered; the outcome is unknown`,
        ),
      );
    }
    this.inflight.clear();
    this.endSubscriptions();
    if (this.isClosed) return;
    this.state = 'connecting';
    if (wasReady) {
      this.onDisconnect?.(info);
      this.scheduleReconnect();
    }
  }

  private scheduleReconnect(): void {
    if (this.isClosed || this.reconnectTimer) return;
    const delay = this.backoffMs(this.reconnectAttempt++);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.openOnce(this.options.connectTimeoutMs).catch((err: unknown) => {
        if (this.isClosed) return;
        if (err instanceof TributaryError && !err.retriable) {
          // Refused by the node after a reconnect: fail what waits rather than loop.
          this.failQueued(err);
          void this.close();
          return;
        }
        this.scheduleReconnect();
      });
    }, delay);
  }

  /** Exponential backoff with jitter: half the delay is fixed, half random. */
  private backoffMs(attempt: number): number {
    const { reconnectInitialMs: initial, reconnectMaxMs: max } = this.options;
    const delay = Math.min(max, initial * 2 ** Math.min(attempt, 30));
    return Math.round(delay / 2 + (Math.random() * delay) / 2);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        resolve();
      }, ms);
      this.wakeSleeper = () => {
        if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
        resolve();
      };
    });
  }

  private wakeSleeper: (() => void) | null = null;

  private failQueued(err: Error): void {
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const p = this.queue[i];
      if (p && this.settle(p)) p.reject(err);
    }
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedLive = 0;
  }

  private async shutdown(): Promise<void> {
    this.state = 'closed';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.wakeSleeper?.();
    this.wakeSleeper = null;
    this.attemptAbort?.abort(clientClosed());
    const err = clientClosed();
    this.failQueued(err);
    for (const p of this.inflight.values()) if (this.settle(p)) p.reject(err);
    this.inflight.clear();
    this.endSubscriptions();
    const t = this.transport;
    this.transport = null;
    if (t) {
      t.close(CloseCode.NORMAL, 'client closed');
      await t.closed;
    }
  }
}

/**
 * A non-retriable failure of the handshake or Hello, reworded to name the node, so the one
 * line a command prints says which node and which side refused. Retriable failures go on to
 * the retry loop unchanged; CLIENT_CLOSED and INVALID_CONFIG are about us, not the node.
 */
function withUrl(err: unknown, describe: (detail: string) => string): unknown {
  if (!(err instanceof TributaryError) || err.retriable || err.is(Errors.CLIENT_CLOSED) || err.is(Errors.INVALID_CONFIG)) return err;
  return new TributaryError(errorSpecForCode(err.code), describe(err.detail), { cause: err });
}

/**
 * The handshake's settings from the client's options, checked here so a mistake shows at
 * construction as INVALID_CONFIG rather than as a node refusing us later.
 */
function secureChannelOptions(options: ClientOptions): SecureChannelOptions {
  const bad = (detail: string) => new TributaryError(Errors.INVALID_CONFIG, detail);
  const { identity, credential, nodePublicKey, fleetPublicKey } = options;
  if (credential !== undefined) {
    if (credential.length === 0 || credential.length > CREDENTIAL_BYTES_MAX) {
      throw bad(`credential is ${credential.length} bytes; a credential is 1 to ${CREDENTIAL_BYTES_MAX}`);
    }
    // A credential admits only the key it names, and the node checks that against the key
    // of the handshake: without the matching identity it could only be refused.
    if (identity === undefined) throw bad('a credential needs the identity it was issued to (option identity)');
    const claims = peekCredential(credential);
    if (claims === null) throw bad('credential is not a Tributary credential');
    if (!claims.subject.equals(identity.publicKey)) {
      throw bad(`credential was issued to key ${claims.subject.toString('hex')}, not to this identity ${identity.publicKey.toString('hex')}`);
    }
    // A credential grants rights, so it goes only to a node we can check: unpinned, a man
    // in the middle would be admitted in our name and read everything we send.
    if (nodePublicKey === undefined && fleetPublicKey === undefined) {
      throw bad('a credential is shown only to a pinned node: give the node key or the fleet key (nodePublicKey or fleetPublicKey; --node-key or --fleet-key)');
    }
  }
  const pins: NodePins = {};
  if (nodePublicKey !== undefined) pins.nodePublicKey = checkedPin('nodePublicKey', nodePublicKey);
  if (fleetPublicKey !== undefined) pins.fleetPublicKey = checkedPin('fleetPublicKey', fleetPublicKey);
  return {
    staticKeyPair: noiseKeyPairFromIdentity(identity ?? generateIdentity()),
    payload: credential === undefined ? undefined : Buffer.from(credential),
    // Knowing the node's key beforehand, the handshake is Noise IK: one round trip fewer,
    // and our key and credential are encrypted to that node alone.
    remoteStaticKey: pins.nodePublicKey ? noisePublicKeyFromIdentity(pins.nodePublicKey) : undefined,
    verifyRemote: (remote) => verifyNode(remote, pins),
    // Message 2 may carry the node's credential, up to the largest a credential may be.
    handshakeFrameBytesMax: HANDSHAKE_MESSAGE2_BYTES_MIN + CREDENTIAL_BYTES_MAX,
    sealedFrameBytesMax: options.inboundFrameBytesMax ?? INBOUND_FRAME_BYTES_MAX,
  };
}

/** A pinned key must be an Ed25519 public key, or no node could ever match it. */
function checkedPin(name: string, key: Buffer): Buffer {
  try {
    noisePublicKeyFromIdentity(key);
  } catch {
    throw new TributaryError(Errors.INVALID_CONFIG, `${name} is not an Ed25519 public key (32 bytes)`);
  }
  return Buffer.from(key);
}

function positiveInt(n: unknown, fallback: number): number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : fallback;
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

/** What a subscription needs from its client, which keeps the rest private. */
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

/** Races `promise` against `signal`; a value that arrives after the abort is disposed of. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal, dispose?: (late: T) => void): Promise<T> {
  if (signal.aborted) {
    void promise.then((v) => dispose?.(v), () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      void promise.then((v) => dispose?.(v), () => {});
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) dispose?.(v);
        else resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

// ---------------------------------------------------------------------------------------
// The default transport: a `ws` WebSocket with binary frames.

const WS_CLOSED = 3;
/** After close(), how long the closing handshake may take before the socket is cut. */
const CLOSE_HANDSHAKE_MS = 1000;

/** How the default transport closes. */
export interface WebSocketTransportOptions {
  /**
   * How long a close waits for the node's close frame before it cuts the socket, asked at
   * each close (undefined: 1 s; 0 cuts at once): a command past its deadline does not wait
   * on a node that does not answer.
   */
  closeHandshakeMs?: () => number | undefined;
}

/**
 * Opens `ws` WebSockets. Closing waits for the node's close frame for at most a second,
 * then terminates: `ws` would otherwise keep a 30 s timer that holds the process open.
 */
export function webSocketTransportFactory(options: WebSocketTransportOptions = {}): TransportFactory {
  return (url, { signal } = {}) =>
    new Promise<FrameTransport>((resolve, reject) => {
      const problem = badNodeUrl(url);
      // Not retriable: no number of attempts makes a malformed URL reachable.
      if (problem !== null) return reject(new TributaryError(Errors.INVALID_CONFIG, `invalid node URL '${url}': ${problem}`));
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        // After the handshake every message is one sealed chunk; frames are reassembled
        // above, bounded by inboundFrameBytesMax. (Handshake messages are smaller still.)
        maxPayload: SEALED_MESSAGE_BYTES_MAX,
        // RFC 6455 masks client frames so that script-chosen bytes cannot pose as requests to
        // a proxy in between. Every message we send is a Noise handshake message or sealed
        // ciphertext, so no one chooses our bytes, and an all-zero mask lets ws skip copying
        // and XORing each frame (about a tenth of a producer's CPU at 100 MB/s).
        generateMask: (mask: Buffer) => void mask.fill(0),
      });
      ws.binaryType = 'nodebuffer';
      // 'error' is always followed by 'close'; without a listener it would throw.
      ws.on('error', () => {});
      const onAbort = () => {
        cleanup();
        ws.terminate();
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const onOpen = () => {
        cleanup();
        resolve(closeWithDeadline(socketTransport(ws), ws, () => options.closeHandshakeMs?.() ?? CLOSE_HANDSHAKE_MS));
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const cleanup = () => {
        signal?.removeEventListener('abort', onAbort);
        ws.off('open', onOpen);
        ws.off('error', onError);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.once('open', onOpen);
      ws.once('error', onError);
    });
}

function badNodeUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL (expected ws://host:port/v1)';
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') return `scheme must be ws: or wss:, got ${parsed.protocol}`;
  return null;
}

function closeWithDeadline(transport: FrameTransport, ws: WebSocket, closeHandshakeMs: () => number): FrameTransport {
  return forwardingTransport(transport, {
    close(code, reason) {
      transport.close(code, reason);
      if (ws.readyState === WS_CLOSED) return;
      const waitMs = closeHandshakeMs();
      if (waitMs <= 0) return void ws.terminate();
      const timer = setTimeout(() => ws.terminate(), waitMs);
      ws.once('close', () => clearTimeout(timer));
    },
  });
}
