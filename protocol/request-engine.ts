// The request engine: requests and their answers over one connection at a time to a peer,
// with the peer's limits respected on our side so the peer never has to refuse us. The
// SDK's Client is built on it, and so will be the links between nodes.
//
//   caller -> enqueue -> local queue (bounded) -> wire (at most inflightMax) -> peer
//
// Every request gets a correlation id, unique among those on the wire; answers are matched
// by it in whatever order they come. Frames with correlation id 0 are pushes the peer sends
// unasked: they go to `onPush` by kind, in the order read, before any later frame.
//
// A connection is opened through the injected TransportFactory, which hands back a
// transport ready for frames (the SDK's runs the secure channel inside it); `greet` then
// makes the first request (the SDK's Hello), whose answer gives the peer's limits. Only
// then are queued requests sent.
//
// When the connection drops, requests on the wire are rejected with NETWORK: the peer may
// or may not have acted on them, so only the caller can decide whether a resend is safe.
// Requests still queued were never sent; they wait for the reconnect, bounded by their own
// timeout. The engine is given a list of peer URLs: after a backoff it tries the URL it was
// connected to, and when that fails the next ones in turn, round robin, at once; a round in
// which every URL failed waits the next backoff. A refusal (a non-retriable error while
// connecting: a key that does not match, a version the peer does not speak) is not
// retried: no number of attempts changes a key.
//
// Time is read and scheduled only through the injected Clock, so tests drive timeouts and
// backoff by advancing a ManualClock, and a simulation runs the same code.

import { sleep, systemClock, type Clock, type ClockTimer } from './clock.js';
import { Errors, TributaryError, wireError } from './errors.js';
import { decodeFrame, encodeFrame, kindName, RESPONSE, type FrameLimits } from './frames.js';
import { CloseCode, readFrames, type CloseInfo, type FrameTransport } from './transport.js';

/**
 * Opens one transport to `url`, ready for frames. Should give up when `signal` aborts; a
 * transport it hands back after that is closed by the engine.
 */
export type TransportFactory = (url: string, options?: { signal?: AbortSignal }) => Promise<FrameTransport>;

/** What a peer told us of itself in its greeting. */
export interface PeerLimits {
  /** The largest request frame it takes. */
  frameBytesMax: number;
  /** Requests it takes on the wire at once from one connection. */
  inflightMax: number;
}

export interface Greeting {
  peerId: string;
  limits: PeerLimits;
}

/** A connection during its greeting: requests go straight to the wire, outside the limits. */
export interface GreetingLink {
  readonly url: string;
  /** Resolves with the answer's body; a top-level `error` rejects, as for any request. */
  request(kind: number, body: object): Promise<Record<string, unknown>>;
}

/** A connection that has been greeted. */
export interface ConnectionInfo {
  /** 1 for the first, +1 per reconnect: the engine's `connectionCount` from now on. */
  connection: number;
  url: string;
  peerId: string;
  limits: PeerLimits;
}

export interface RequestEngineOptions {
  /** The peer's URLs, tried in order; at least one. */
  urls: readonly string[];
  transportFactory: TransportFactory;
  /** The first request on every connection; its answer gives the peer's limits. */
  greet(link: GreetingLink): Promise<Greeting>;
  clock?: Clock;
  /** In [0, 1): the jitter of the backoff. Default Math.random; a simulation passes a seeded one. */
  random?: () => number;
  /** How long the first connect keeps trying; each reconnect attempt too. */
  connectTimeoutMs?: number;
  /** Default per-request timeout, from the call until the answer (queue time included). */
  requestTimeoutMs?: number;
  /** First delay after a lost connection (and between rounds of the first connect). */
  reconnectInitialMs?: number;
  /** Longest delay between rounds; the delay doubles up to it, with jitter. */
  reconnectMaxMs?: number;
  /** Requests waiting locally beyond the peer's inflightMax; past it, TOO_MANY_REQUESTS. */
  requestQueueMax?: number;
  /** Bytes queued in the transport before the engine stops writing until it drains. */
  sendBufferBytesMax?: number;
  /** Bounds on the answers read (they are checked for shape like everything else). */
  responseFrameLimits?: FrameLimits;
  /** After each greeting, before the requests that waited are sent. */
  onReady?(info: ConnectionInfo): void;
  /** An established connection was lost (not on close()); the engine reconnects. */
  onLost?(info: CloseInfo): void;
  /** The current connection's transport is gone, for whatever reason (close() included). */
  onEnded?(): void;
  /** A frame the peer sent unasked. It may throw: the connection is then reset. */
  onPush?(kind: number, body: Record<string, unknown>): void;
  /** The error the first connect fails with once its time is up (default: NETWORK, naming the URLs). */
  unreachable?(lastError: unknown): Error;
}

export interface EngineRequestOptions {
  timeoutMs?: number;
  /** False for a request the peer does not answer: it settles once handed to the transport. */
  expectsResponse?: boolean;
  /** Non-zero: send only on this connection (a connectionCount), else fail unsent. */
  connection?: number;
  /**
   * Called with the answer as it is read, before later frames and even after a timeout
   * (`late`): what a request opens on the peer must be known, or ended, at once.
   */
  onAnswer?(body: Record<string, unknown>, answered: { late: boolean }): void;
  /** Kept with the request while it is on the wire; see `tagsOnWire`. */
  tag?: object;
}

const DEFAULTS = {
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  reconnectInitialMs: 100,
  reconnectMaxMs: 10_000,
  requestQueueMax: 4096,
  sendBufferBytesMax: 8 * 1024 * 1024,
};

/** Until a peer tells us its limits, assume the most conservative useful ones. */
export const BEFORE_GREETING_LIMITS: PeerLimits = Object.freeze({ frameBytesMax: 1024 * 1024, inflightMax: 1 });

type State = 'idle' | 'connecting' | 'ready' | 'closed';

interface Pending {
  readonly kind: number;
  readonly correlationId: number;
  readonly frame: Buffer;
  readonly expectsResponse: boolean;
  readonly connection: number;
  readonly tag: object | undefined;
  readonly onAnswer: EngineRequestOptions['onAnswer'] | undefined;
  resolve(body: Record<string, unknown> | undefined): void;
  reject(err: Error): void;
  timer: ClockTimer | null;
  /** Answered, failed or timed out: a late answer is dropped. */
  done: boolean;
}

/** Requests on the wire an engine keeps in its array before it uses a Map. */
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

export class RequestEngine {
  readonly urls: readonly string[];
  private readonly options: Required<
    Omit<RequestEngineOptions, 'urls' | 'greet' | 'transportFactory' | 'clock' | 'random' | 'responseFrameLimits' | 'onReady' | 'onLost' | 'onEnded' | 'onPush' | 'unreachable'>
  >;
  private readonly clock: Clock;
  private readonly random: () => number;
  private state: State = 'idle';
  private transport: FrameTransport | null = null;
  /** The URL the current transport goes to. */
  private urlIndex = 0;
  private limitsNow: PeerLimits = BEFORE_GREETING_LIMITS;
  private peerIdNow = '';
  private nextCorrelationId = 1;
  private readonly inflight = new InflightTable();
  private readonly queue: Pending[] = [];
  private queueHead = 0;
  private queuedLive = 0;
  private waitingForDrain = false;
  private firstConnect: Promise<void> | null = null;
  private reconnectTimer: ClockTimer | null = null;
  private reconnectAttempt = 0;
  private attemptAbort: AbortController | null = null;
  /** Aborted by close(): wakes the first connect from its backoff. */
  private readonly life = new AbortController();
  private closing: Promise<void> | null = null;
  private connects = 0;

  constructor(private readonly config: RequestEngineOptions) {
    if (config.urls.length === 0) throw new TributaryError(Errors.INVALID_CONFIG, 'no peer URL given');
    this.urls = [...config.urls];
    this.clock = config.clock ?? systemClock;
    this.random = config.random ?? Math.random;
    this.options = {
      connectTimeoutMs: config.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      reconnectInitialMs: config.reconnectInitialMs ?? DEFAULTS.reconnectInitialMs,
      reconnectMaxMs: config.reconnectMaxMs ?? DEFAULTS.reconnectMaxMs,
      requestQueueMax: config.requestQueueMax ?? DEFAULTS.requestQueueMax,
      sendBufferBytesMax: config.sendBufferBytesMax ?? DEFAULTS.sendBufferBytesMax,
    };
  }

  /** The URL of the current connection, or of the one being tried. */
  get url(): string {
    return this.urls[this.urlIndex];
  }

  /** The peer's limits from the last greeting (conservative defaults before the first). */
  get limits(): PeerLimits {
    return this.limitsNow;
  }

  get peerId(): string {
    return this.peerIdNow;
  }

  get requestTimeoutMs(): number {
    return this.options.requestTimeoutMs;
  }

  get isReady(): boolean {
    return this.state === 'ready';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Greetings so far: 1 after the first connect, +1 per reconnect. */
  get connectionCount(): number {
    return this.connects;
  }

  /** Requests sent and not yet answered, plus those waiting locally. */
  get pendingRequests(): number {
    return this.inflight.size + this.queuedLive;
  }

  /**
   * Makes the first connection, trying the URLs in turn with backoff between rounds for up
   * to connectTimeoutMs. On failure the engine is closed.
   */
  connect(): Promise<void> {
    if (this.isClosed) return Promise.reject(closedError());
    this.firstConnect ??= this.connectFirst();
    return this.firstConnect;
  }

  /** Sends a request; resolves with the answer's body (undefined when none is expected). */
  request(kind: number, body: object, options: EngineRequestOptions = {}): Promise<Record<string, unknown> | undefined> {
    return new Promise((resolve, reject) => this.enqueue(kind, body, options, resolve, reject));
  }

  /**
   * The request of `request()` with callbacks instead of a promise: `resolve` gets the
   * answer's body (undefined when none is expected), `reject` the failure.
   */
  enqueue(
    kind: number,
    body: object,
    options: EngineRequestOptions,
    resolve: (body: Record<string, unknown> | undefined) => void,
    reject: (err: Error) => void,
  ): void {
    if (this.isClosed) return reject(closedError());
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
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    const p: Pending = {
      kind,
      correlationId,
      frame,
      expectsResponse: options.expectsResponse ?? true,
      connection: options.connection ?? 0,
      tag: options.tag,
      onAnswer: options.onAnswer,
      resolve,
      reject,
      timer: null,
      done: false,
    };
    p.timer = this.clock.setTimeout(() => this.timeOut(p, timeoutMs), timeoutMs);
    this.queue.push(p);
    this.queuedLive++;
    if (this.state === 'idle') void this.connect().catch(() => {});
    this.pump();
  }

  /** The tags of the requests on the wire, oldest first. */
  tagsOnWire(): object[] {
    const tags: object[] = [];
    for (const p of this.inflight.values()) if (p.tag !== undefined) tags.push(p.tag);
    return tags;
  }

  /** Closes the current connection (a push that cannot be served); the engine reconnects. */
  resetConnection(code: number, reason: string): void {
    this.transport?.close(code, reason);
  }

  /** Rejects everything pending with CLIENT_CLOSED, closes the transport, leaves no timer. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------
  // Requests.

  private takeCorrelationId(): number {
    const id = this.nextCorrelationId;
    // Ids are uint32 on the wire; 0 is reserved for pushes.
    this.nextCorrelationId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  private timeOut(p: Pending, timeoutMs: number): void {
    if (p.done) return;
    p.done = true;
    p.timer = null;
    // A sent request keeps its place in `inflight` until answered: the peer still counts it
    // against inflightMax, so sending another in its place would exceed the peer's limit.
    if (!this.inflight.has(p.correlationId)) this.queuedLive--;
    p.reject(new TributaryError(Errors.REQUEST_TIMED_OUT, `${kindName(p.kind)} to ${this.url} got no answer within ${timeoutMs} ms`));
  }

  private settle(p: Pending): boolean {
    if (p.done) return false;
    p.done = true;
    p.timer?.cancel();
    p.timer = null;
    return true;
  }

  /** Moves queued requests to the wire while the peer's limits and the socket allow. */
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

  private failQueued(err: Error): void {
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const p = this.queue[i];
      if (p && this.settle(p)) p.reject(err);
    }
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedLive = 0;
  }

  // -------------------------------------------------------------------------------------
  // Reading: answers by correlation id, pushes by kind.

  /**
   * Reads the connection's frames as they arrive (by callback: between two answers nothing
   * of this reader waits on a promise) until it ends.
   */
  private readLoop(transport: FrameTransport, url: string): void {
    readFrames(transport, {
      frame: (bytes) => {
        try {
          this.onFrame(bytes, transport);
        } catch (err) {
          // A bug above or in us; the connection cannot be trusted to be in step any more.
          transport.close(CloseCode.INTERNAL_ERROR, `client failed on a frame: ${(err as Error)?.message ?? String(err)}`);
        }
      },
      end: () => {
        void (async () => {
          const info = transport.isClosed ? await transport.closed : { code: CloseCode.GOING_AWAY, reason: 'stream ended' };
          this.onTransportClosed(transport, url, info);
        })();
      },
    });
  }

  private onFrame(bytes: Buffer, transport: FrameTransport): void {
    let frame;
    try {
      frame = decodeFrame(bytes, this.config.responseFrameLimits);
    } catch (err) {
      // Without a readable correlation id nothing can be matched; start over cleanly.
      transport.close(CloseCode.PROTOCOL_ERROR, `malformed frame from node: ${(err as Error).message}`);
      return;
    }
    if (frame.correlationId === 0) {
      if (transport === this.transport && this.state === 'ready') this.config.onPush?.(frame.kind, frame.body);
      return;
    }
    const p = this.inflight.get(frame.correlationId);
    if (p === undefined) return; // a stray answer
    this.inflight.delete(frame.correlationId);
    const answered = frame.kind === (p.kind | RESPONSE);
    if (p.onAnswer !== undefined && answered) p.onAnswer(frame.body, { late: p.done });
    if (this.settle(p)) {
      const body = frame.body;
      if (!answered) {
        p.reject(new TributaryError(Errors.UNKNOWN, `expected ${kindName(p.kind | RESPONSE)}, node answered ${kindName(frame.kind)}`));
      } else if (typeof body.error === 'number' && body.error !== Errors.NONE.code) {
        p.reject(wireError(body.error, body.message));
      } else {
        p.resolve(body);
      }
    }
    this.pump();
  }

  private onTransportClosed(transport: FrameTransport, url: string, info: CloseInfo): void {
    if (this.transport !== transport) return;
    this.transport = null;
    const wasReady = this.state === 'ready';
    const reason = info.reason ? `${info.code}: ${info.reason}` : `${info.code}`;
    for (const p of this.inflight.values()) {
      if (!this.settle(p)) continue;
      p.reject(new TributaryError(Errors.NETWORK, `connection to ${url} closed (${reason}) before ${kindName(p.kind)} was answered; the outcome is unknown`));
    }
    this.inflight.clear();
    this.config.onEnded?.();
    if (this.isClosed) return;
    this.state = 'connecting';
    if (wasReady) {
      this.config.onLost?.(info);
      this.scheduleReconnect();
    }
  }

  // -------------------------------------------------------------------------------------
  // Connections.

  /**
   * Rounds over the URLs, each attempt given its share of the time left, with backoff
   * between rounds, until one answers or connectTimeoutMs has passed.
   */
  private async connectFirst(): Promise<void> {
    const deadline = this.clock.monotonic() + this.options.connectTimeoutMs;
    let round = 0;
    for (;;) {
      let lastError: unknown;
      for (let tried = 0; tried < this.urls.length; tried++) {
        const left = deadline - this.clock.monotonic();
        try {
          await this.openOnce(Math.max(1, left / (this.urls.length - tried)));
          return;
        } catch (err) {
          if (this.isClosed) throw closedErrorFor(err);
          if (err instanceof TributaryError && !err.retriable) {
            // Refused (version, credentials): retrying cannot help.
            this.failQueued(err);
            void this.close();
            throw err;
          }
          lastError = err;
          this.nextUrl();
        }
      }
      const delay = this.backoffMs(round++);
      if (this.clock.monotonic() + delay >= deadline) {
        const error = this.config.unreachable?.(lastError) ?? new TributaryError(Errors.NETWORK, `cannot reach ${this.urls.join(', ')}: ${String(lastError)}`);
        this.failQueued(error);
        void this.close();
        throw error;
      }
      await sleep(this.clock, delay, this.life.signal);
    }
  }

  private nextUrl(): void {
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
  }

  private scheduleReconnect(): void {
    if (this.isClosed || this.reconnectTimer) return;
    const delay = this.backoffMs(this.reconnectAttempt++);
    this.reconnectTimer = this.clock.setTimeout(() => {
      this.reconnectTimer = null;
      void this.reconnectRound();
    }, delay);
  }

  /** The URL it was on first, then the others in turn; all failed: the next backoff. */
  private async reconnectRound(): Promise<void> {
    for (let tried = 0; tried < this.urls.length; tried++) {
      try {
        await this.openOnce(this.options.connectTimeoutMs);
        return;
      } catch (err) {
        if (this.isClosed) return;
        if (err instanceof TributaryError && !err.retriable) {
          // Refused by the peer after a reconnect: fail what waits rather than loop.
          this.failQueued(err);
          void this.close();
          return;
        }
        this.nextUrl();
      }
    }
    this.scheduleReconnect();
  }

  /** Exponential backoff with jitter: half the delay is fixed, half random. */
  private backoffMs(attempt: number): number {
    const { reconnectInitialMs: initial, reconnectMaxMs: max } = this.options;
    const delay = Math.min(max, initial * 2 ** Math.min(attempt, 30));
    return Math.round(delay / 2 + (this.random() * delay) / 2);
  }

  /** One attempt on the current URL: open a transport, greet, become ready. */
  private async openOnce(timeoutMs: number): Promise<void> {
    this.state = 'connecting';
    const url = this.url;
    const abort = new AbortController();
    this.attemptAbort = abort;
    const timer = this.clock.setTimeout(() => abort.abort(new Error('ETIMEDOUT')), timeoutMs);
    try {
      const transport = await abortable(this.config.transportFactory(url, { signal: abort.signal }), abort.signal, (t) => t.close());
      if (this.isClosed) {
        transport.close(CloseCode.NORMAL, 'client closed');
        throw closedError();
      }
      this.transport = transport;
      this.readLoop(transport, url);
      const greeting = await abortable(this.config.greet(this.greetingLink(transport, url)), abort.signal);
      this.limitsNow = {
        frameBytesMax: positiveInt(greeting.limits.frameBytesMax, BEFORE_GREETING_LIMITS.frameBytesMax),
        inflightMax: positiveInt(greeting.limits.inflightMax, BEFORE_GREETING_LIMITS.inflightMax),
      };
      this.peerIdNow = greeting.peerId;
      this.state = 'ready';
      this.connects++;
      this.reconnectAttempt = 0;
      this.config.onReady?.({ connection: this.connects, url, peerId: this.peerIdNow, limits: this.limitsNow });
      this.pump();
    } catch (err) {
      // Only the greeting can be on the wire before the connection is ready: drop it with
      // the transport, so a late answer or close cannot touch the next attempt.
      for (const p of this.inflight.values()) this.settle(p);
      this.inflight.clear();
      const t = this.transport;
      this.transport = null;
      if (!this.isClosed) this.state = 'connecting';
      t?.close(CloseCode.NORMAL, 'connect attempt failed');
      throw err;
    } finally {
      timer.cancel();
      if (this.attemptAbort === abort) this.attemptAbort = null;
    }
  }

  private greetingLink(transport: FrameTransport, url: string): GreetingLink {
    return {
      url,
      request: (kind, body) =>
        new Promise((resolve, reject) => {
          const correlationId = this.takeCorrelationId();
          const frame = encodeFrame(kind, correlationId, body);
          const p: Pending = {
            kind,
            correlationId,
            frame,
            expectsResponse: true,
            connection: 0,
            tag: undefined,
            onAnswer: undefined,
            resolve: (answer) => resolve(answer as Record<string, unknown>),
            reject,
            timer: null,
            done: false,
          };
          this.inflight.set(correlationId, p);
          transport.send(frame);
        }),
    };
  }

  private async shutdown(): Promise<void> {
    this.state = 'closed';
    this.reconnectTimer?.cancel();
    this.reconnectTimer = null;
    const err = closedError();
    this.life.abort(err);
    this.attemptAbort?.abort(closedError());
    this.failQueued(err);
    for (const p of this.inflight.values()) if (this.settle(p)) p.reject(err);
    this.inflight.clear();
    this.config.onEnded?.();
    const t = this.transport;
    this.transport = null;
    if (t) {
      t.close(CloseCode.NORMAL, 'client closed');
      await t.closed;
    }
  }
}

function closedError(): TributaryError {
  return new TributaryError(Errors.CLIENT_CLOSED, 'client was closed');
}

function closedErrorFor(err: unknown): Error {
  return err instanceof TributaryError && err.is(Errors.CLIENT_CLOSED) ? err : closedError();
}

function positiveInt(n: unknown, fallback: number): number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : fallback;
}

/** Races `promise` against `signal`; a value that arrives after the abort is disposed of. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal, dispose?: (late: T) => void): Promise<T> {
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
