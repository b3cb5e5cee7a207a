// The SDK's connection to a node: what producers, consumers and admin send their requests
// through. It is a composition of three ideas, each in its own file:
//
//   requests     protocol/request-engine.ts: correlation ids, in-flight bound, local queue,
//                timeouts, reconnect with backoff over the list of node URLs
//   pushes       client-pushes.ts: subscriptions, their credit, pushes held ahead of an answer
//   connections  client-connection.ts: the secure channel, Hello, connect and reconnect
//                listeners; client-websocket.ts the default transport
//
// The Client keeps the node's limits on our side so the node never has to refuse us:
//
//   app -> Client.request -> local queue (bounded) -> wire (at most inflightMax) -> node
//
// When the connection drops, requests on the wire are rejected with NETWORK: the node may
// or may not have acted on them, so only the caller can decide whether a resend is safe.
// Requests still queued locally were never sent; they wait for the reconnect, bounded by
// their own timeout. Given several node URLs, a reconnect that fails on the node it was on
// goes on to the next one in the list.

import { systemClock, type Clock } from '../protocol/clock.js';
import { Kind, type RequestBodies, type ResponseBodies, type SubscribeRequest } from '../protocol/frames.js';
import { RequestEngine, type PeerLimits, type TransportFactory as EngineTransportFactory } from '../protocol/request-engine.js';
import { ClientConnections, type ConnectionOptions } from './client-connection.js';
import { ClientPushes, type PushHandler, type PushSubscription } from './client-pushes.js';
import { webSocketTransportFactory } from './client-websocket.js';

export type { PushHandler, PushSubscription } from './client-pushes.js';
export { webSocketTransportFactory } from './client-websocket.js';
export type { WebSocketTransportOptions } from './client-websocket.js';

// Answers come from the node this client chose to connect to; they are checked for shape
// like everything else, with room for the Metadata of a large node (about 7 items per
// partition).
const RESPONSE_FRAME_LIMITS = { itemsMax: 2_000_000, depthMax: 32 };

/**
 * Opens one raw transport to `url` (the client runs the secure channel over it). Should give
 * up when `signal` aborts.
 */
export type TransportFactory = EngineTransportFactory;

export interface ReconnectOptions {
  /** First delay after a lost connection. */
  initialMs?: number;
  /** Longest delay between attempts; the delay doubles up to it, with jitter. */
  maxMs?: number;
}

/** The Client's options; those about each connection (identity, pins, listeners) are ConnectionOptions'. */
export interface ClientOptions extends ConnectionOptions {
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
   * Where the client reads time and sets its timers (request timeouts, backoff, the connect
   * deadline, the handshake's timeout), and so do the producers, consumers and group members
   * made on it unless given their own; default the system clock. Tests pass a ManualClock.
   */
  clock?: Clock;
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

export type NodeLimits = PeerLimits;

let clientCount = 0;

export class Client {
  readonly clientId: string;
  /** The node URLs this client connects to, in the order it tries them. */
  readonly urls: readonly string[];
  /** Where this client, and what is made on it, reads time and schedules. */
  readonly clock: Clock;
  private readonly engine: RequestEngine;
  private readonly pushes: ClientPushes;
  private readonly connections: ClientConnections;

  /**
   * `urls`: one node, or several of which any will do: when the node it is on is gone, the
   * client goes on to the next (see protocol/request-engine.ts).
   */
  constructor(urls: string | readonly string[], options: ClientOptions = {}) {
    this.urls = typeof urls === 'string' ? [urls] : [...urls];
    this.clientId = options.clientId ?? `tributary-js-${process.pid}-${++clientCount}`;
    this.clock = options.clock ?? systemClock;
    this.connections = new ClientConnections({ ...options, clientId: this.clientId, clock: this.clock });
    this.engine = new RequestEngine({
      urls: this.urls,
      transportFactory: this.connections.secureTransportFactory(options.transportFactory ?? webSocketTransportFactory()),
      greet: this.connections.greet,
      clock: this.clock,
      connectTimeoutMs: options.connectTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs,
      reconnectInitialMs: options.reconnect?.initialMs,
      reconnectMaxMs: options.reconnect?.maxMs,
      requestQueueMax: options.requestQueueMax,
      sendBufferBytesMax: options.sendBufferBytesMax,
      responseFrameLimits: RESPONSE_FRAME_LIMITS,
      onReady: this.connections.onReady,
      onLost: this.connections.onLost,
      onEnded: () => this.pushes.endAll(),
      onPush: (kind, body) => this.pushes.onPush(kind, body),
      unreachable: (lastError) => this.connections.unreachable(this.urls, lastError),
    });
    this.pushes = new ClientPushes(this.engine);
  }

  /** Connects (first time) and resolves once Hello is answered. */
  static async connect(urls: string | readonly string[], options: ClientOptions = {}): Promise<Client> {
    const client = new Client(urls, options);
    await client.connect();
    return client;
  }

  /** The URL of the node it is connected to (or trying). */
  get url(): string {
    return this.engine.url;
  }

  /**
   * Calls `listener` after each reconnect (every successful Hello but the first), before the
   * requests queued while the client was away are sent: the node may have restarted, and a
   * consumer checks its positions (KIP-320) before it reads on. Returns the remover.
   */
  onReconnect(listener: () => void): () => void {
    return this.connections.onReconnect(listener);
  }

  /** The node's limits from the last Hello (conservative defaults before the first). */
  get limits(): NodeLimits {
    return this.engine.limits;
  }

  get nodeId(): string {
    return this.engine.peerId;
  }

  get isConnected(): boolean {
    return this.engine.isReady;
  }

  get isClosed(): boolean {
    return this.engine.isClosed;
  }

  /** Successful Hellos so far: 1 after the first connect, +1 per reconnect. */
  get connectionCount(): number {
    return this.engine.connectionCount;
  }

  /** Requests sent and not yet answered, plus those waiting locally. */
  get pendingRequests(): number {
    return this.engine.pendingRequests;
  }

  /**
   * Makes the first connection, trying the URLs in turn with backoff between rounds for up
   * to connectTimeoutMs. On failure the client is closed and the error is a ConnectionError
   * naming the URLs.
   */
  connect(): Promise<void> {
    return this.engine.connect();
  }

  /** Sends a request and resolves with the answer's body; a top-level `error` rejects. */
  request<K extends RequestKind>(kind: K, body: RequestBodies[K], options: RequestOptions = {}): Promise<ResponseBodies[K]> {
    return new Promise<ResponseBodies[K]>((resolve, reject) => {
      this.engine.enqueue(kind, body, { timeoutMs: options.timeoutMs }, resolve as (b: unknown) => void, reject);
    });
  }

  /**
   * Sends a request that gets no answer (Produce with acks = 0). Resolves once the frame is
   * handed to the transport; nothing tells whether the node acted on it.
   */
  fireAndForget<K extends RequestKind>(kind: K, body: RequestBodies[K], options: RequestOptions = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.engine.enqueue(kind, body, { timeoutMs: options.timeoutMs, expectsResponse: false }, () => resolve(), reject);
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
    return this.pushes.subscribe(body, handler, options.timeoutMs);
  }

  /** Rejects everything pending with CLIENT_CLOSED, closes the transport, leaves no timer. */
  close(): Promise<void> {
    return this.engine.close();
  }
}
