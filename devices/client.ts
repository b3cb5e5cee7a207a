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
  type HelloResponse,
  type RequestBodies,
  type ResponseBodies,
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
import { CloseCode, forwardingTransport, socketTransport, type CloseInfo, type FrameTransport } from '../protocol/transport.js';
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

/** Request kinds an application may send (Hello belongs to the client itself). */
export type RequestKind = Exclude<keyof RequestBodies, Kind.Hello>;

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
  resolve(body: Record<string, unknown> | undefined): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | null;
  /** Answered, failed or timed out: a late answer is dropped. */
  done: boolean;
}

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
  private readonly inflight = new Map<number, Pending>();
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
    const p: Pending = { kind, correlationId, frame, expectsResponse, resolve, reject, timer: null, done: false };
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
    const p = this.inflight.get(frame.correlationId);
    if (p === undefined) return; // a server push (id 0, a later step) or a stray answer
    this.inflight.delete(frame.correlationId);
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
        resolve: (body) => resolve(body as unknown as HelloResponse),
        reject,
        timer: null,
        done: false,
      };
      this.inflight.set(correlationId, p);
      transport.send(frame);
    });
  }

  private async readLoop(transport: FrameTransport): Promise<void> {
    try {
      for await (const bytes of transport) this.onFrame(bytes, transport);
    } catch {
      // The inbox ends rather than throws; anything else still means the connection is gone.
    }
    const info = transport.isClosed ? await transport.closed : { code: CloseCode.GOING_AWAY, reason: 'stream ended' };
    this.onTransportClosed(transport, info);
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

/**
 * Opens `ws` WebSockets. Closing waits for the node's close frame for at most a second,
 * then terminates: `ws` would otherwise keep a 30 s timer that holds the process open.
 */
export function webSocketTransportFactory(): TransportFactory {
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
        resolve(closeWithDeadline(socketTransport(ws), ws));
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

function closeWithDeadline(transport: FrameTransport, ws: WebSocket): FrameTransport {
  return forwardingTransport(transport, {
    close(code, reason) {
      transport.close(code, reason);
      if (ws.readyState === WS_CLOSED) return;
      const timer = setTimeout(() => ws.terminate(), CLOSE_HANDSHAKE_MS);
      ws.once('close', () => clearTimeout(timer));
    },
  });
}
