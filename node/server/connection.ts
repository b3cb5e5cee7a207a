// One client connection above the secure channel: decode frames, enforce the
// per-connection limits, check who is asking, dispatch to handlers, write responses. It
// never sees a socket.
//
// Limits: the first frame must be a Hello of at most 4 KiB, within helloTimeoutMs, and
// nothing else is read until it has succeeded; at most inflightMax (and inflightBytesMax)
// requests are in progress (past that the connection stops reading, so TCP slows the
// client); each request is answered within requestTimeoutMs or gets REQUEST_TIMED_OUT. No
// request is taken while the connection's send queue is over what the send budget allows
// it (send-budget.ts: sendBufferBytesMax, or a small share while its principal is over
// sendBufferBytesPerPrincipalMax or the node over sendBufferBytesTotalMax), and requests
// whose answer may be large (Metadata, ListOffsets, the group and config requests; Fetch
// after its wait) are answered one at a time, each once the queue is within it: a client
// that does not read its answers stops being read. A request's frame counts against its
// principal's and the node's request bytes (request-memory.ts) until it is answered; past
// either it is answered THROTTLED at once.
// A frame that cannot be decoded closes the connection with the reason, since its
// correlation id is unknown and so it cannot be answered.
//
// Who: the handshake decided the admission before this was made. A refused peer is told
// why in the answer to its Hello and then closed. An admitted one is registered with the
// node's sessions (node/server/sessions.ts) at Hello, which bound its principal's
// connections and close it the moment its credential is revoked or expires, subscriptions
// included; it is also checked again before each request.

import type { ClockTimer } from '../../protocol/clock.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { decodeFrame, encodeFrame, Kind, kindName, RESPONSE, type Frame } from '../../protocol/frames.js';
import { CloseCode, readFrames, type FrameFlow, type FrameTransport } from '../../protocol/transport.js';
import { ANONYMOUS, type Principal } from '../auth/acl.js';
import type { Admission, Lapse } from '../auth/authenticator.js';
import type { CloseReason } from '../metrics.js';
import type { BrokerContext, RequestContext } from './context.js';
import { handlers, type Handler } from './dispatch.js';
import { ConnectionSubscriptions } from './subscriptions.js';
import type { RequestAccount } from './request-memory.js';

const HELLO_FRAME_BYTES_MAX = 4096;

/**
 * Requests whose answer grows with what the node holds, not with the request: each waits
 * for the connection's outbound turn, so that a client pipelining them without reading
 * makes the node hold one such answer, not inflightMax of them.
 */
const LARGE_ANSWER_KINDS: ReadonlySet<number> = new Set([
  Kind.Metadata,
  Kind.ListOffsets,
  Kind.OffsetFetch,
  Kind.ListGroups,
  Kind.DescribeGroup,
  Kind.DescribeConfigs,
  Kind.CreateTopics,
  Kind.DeleteTopics,
  Kind.AlterConfigs,
]);

/** Shared by every connection as the start of its outbound chain. */
const RESOLVED: Promise<void> = Promise.resolve();

/**
 * A request being handled, and the handler's RequestContext: answered once, by its handler
 * or by its deadline. One object per request (with the two callbacks of its handler's
 * promise): this runs for every request of every device.
 */
class PendingRequest implements RequestContext {
  /** Monotonic ms (the broker's clock) by which it is answered, REQUEST_TIMED_OUT if need be. */
  readonly deadline: number;
  /** Made when the handler first reads `signal`; most never do. */
  abort: AbortController | null = null;
  /** The answer has been decided (sent, or none for acks=0). */
  answered = false;
  /** The answer is written: an outbound slot that comes later is given straight back. */
  finished = false;
  releaseOutbound: (() => void) | null = null;

  constructor(
    readonly connection: Connection,
    readonly frame: Frame,
    /** Bytes of the request frame, counted against inflightBytesMax until answered. */
    readonly frameBytes: number,
    readonly startedAt: number,
    timeoutMs: number,
  ) {
    this.deadline = startedAt + timeoutMs;
  }

  get broker(): BrokerContext {
    return this.connection.broker;
  }

  get clientId(): string {
    return this.connection.clientId;
  }

  get remoteAddress(): string {
    return this.connection.remoteAddress;
  }

  get principal(): Principal {
    return this.connection.principal as Principal;
  }

  get subscriptions(): ConnectionSubscriptions {
    return this.connection.subscriptions;
  }

  get signal(): AbortSignal {
    return this.connection.signalOf(this);
  }

  dropConnection(reason: string): void {
    this.connection.close(CloseCode.GOING_AWAY, reason, 'fault_injected');
  }

  outboundSlot(): Promise<void> {
    // A request that timed out may still be waiting for its turn; its slot is given back
    // at once when the turn comes.
    return this.connection.acquireOutbound().then((release) => {
      if (this.finished) release();
      else this.releaseOutbound = release;
    });
  }
}

/**
 * The requests of a connection not yet answered, in arrival order (which is deadline order).
 * Not a Set: V8 reallocates a Set's table as entries come and go, and a device's connection
 * adds and removes one at every request, so each request left a new table behind, alive
 * until the next request a second later: promoted, then collected by a major GC. An array
 * reused in place instead (emptying it with `length = 0` would reallocate it too), with
 * answered requests dropped lazily from the front.
 */
class PendingQueue {
  private readonly items: (PendingRequest | undefined)[] = [];
  private head = 0;
  /** Slots in use: items[head, end) hold requests, some answered. */
  private end = 0;
  private live = 0;

  get size(): number {
    return this.live;
  }

  add(request: PendingRequest): void {
    if (this.end === this.items.length) this.items.push(request);
    else this.items[this.end] = request;
    this.end++;
    this.live++;
  }

  /** One of the requests has just been answered (its `answered` is set): it leaves. */
  dropAnswered(): void {
    this.live--;
    const items = this.items;
    while (this.head < this.end && (items[this.head] as PendingRequest).answered) items[this.head++] = undefined;
    if (this.head === this.end) {
      this.head = 0;
      this.end = 0;
    } else if (this.end - this.head > 2 * this.live + 64) {
      // Answered ones wait behind a slow one at the front (a long-poll Fetch): close up.
      let to = 0;
      for (let i = this.head; i < this.end; i++) {
        const r = items[i] as PendingRequest;
        if (!r.answered) items[to++] = r;
      }
      for (let i = to; i < this.end; i++) items[i] = undefined;
      this.head = 0;
      this.end = to;
    }
  }

  /** The unanswered requests, oldest first, as a copy (answering them changes the queue). */
  unanswered(): PendingRequest[] {
    const out: PendingRequest[] = [];
    for (let i = this.head; i < this.end; i++) {
      const r = this.items[i] as PendingRequest;
      if (!r.answered) out.push(r);
    }
    return out;
  }
}

export class Connection {
  private inflight = 0;
  /** Bytes of the request frames in progress: their bodies stay referenced until answered. */
  private inflightBytes = 0;
  /** Requests not yet answered, in arrival order, which is also deadline order. */
  private readonly pending = new PendingQueue();
  /** Due at the oldest pending request's deadline (or a little before, then re-armed). */
  private deadlineTimer: ClockTimer | null = null;
  private helloDone = false;
  private helloTimer: ClockTimer | null = null;
  /** The reader's flow control: paused for Hello and at the in-flight limits. */
  private flow: FrameFlow | null = null;
  private pausedForRoom = false;
  /** A request is held, unread, until the send queue is within the send budget. */
  private waitingForSendRoom = false;
  private readingStopped = false;
  private servingFinished = false;
  private served: (() => void) | null = null;
  /** From Hello; read by the request context. */
  clientId = '';
  /** Set once the connection has ended: every request's signal is aborted from then on. */
  private ended = false;
  /** Serializes large responses: one holder at a time may read and send. */
  private outboundChain: Promise<void> = RESOLVED;
  /** Waiters of whenIdle(), made on first use: a connection of 10,000 keeps no empty Set. */
  private idle: (() => void)[] | null = null;
  /** Why we closed the connection, when we did; see `closeReasonLabel`. */
  private ourCloseReason: CloseReason | null = null;
  readonly principal: Principal | undefined;
  /** What this connection's bytes in flight and queued count against (Principal.key). */
  readonly principalKey: string;
  /** Its principal's bytes of requests held (request-memory.ts), given back when serving ends. */
  readonly requestAccount: RequestAccount;
  private accountLeft = false;
  readonly subscriptions: ConnectionSubscriptions;
  /** Registered with the node's sessions (from Hello until the end). */
  private inSessions = false;

  constructor(
    private readonly transport: FrameTransport,
    readonly broker: BrokerContext,
    readonly remoteAddress: string,
    private readonly admission: Admission,
    /** Called once Hello has succeeded: the peer is authenticated and admitted. */
    private readonly onAdmitted: () => void = () => {},
    /** The request handlers; tests pass their own to make a request hang or fail. */
    private readonly handlerTable: ReadonlyMap<number, Handler> = handlers,
  ) {
    this.principal = admission.principal;
    this.principalKey = admission.principal?.key ?? ANONYMOUS.key;
    this.requestAccount = broker.requestMemory.account(this.principalKey);
    this.subscriptions = new ConnectionSubscriptions(transport, broker, this.principalKey);
  }

  /** Why this connection was closed by the node, or null if it was not (yet). */
  get closeReason(): CloseReason | null {
    return this.ourCloseReason;
  }

  get requestsInFlight(): number {
    return this.inflight;
  }

  get sendBufferedBytes(): number {
    return this.transport.bufferedBytes;
  }

  /**
   * Reads and handles requests until the connection ends. Frames are handed over by
   * callback (`readFrames`), so between two requests of a device nothing of this loop waits
   * on a promise; reading pauses for Hello and while the in-flight limits are reached.
   */
  serve(): Promise<void> {
    const { limits, clock } = this.broker;
    this.helloTimer = clock.setTimeout(() => this.close(CloseCode.POLICY_VIOLATION, `no Hello within ${limits.helloTimeoutMs} ms`, 'hello_timeout'), limits.helloTimeoutMs);
    return new Promise<void>((resolve) => {
      this.served = resolve;
      this.flow = readFrames(this.transport, {
        frame: (bytes) => {
          try {
            this.onFrame(bytes);
          } catch (err) {
            // A bug of ours, not the peer's: end the connection rather than the process.
            this.failedUnexpectedly(err);
          }
        },
        end: () => this.finishServing(),
      });
    });
  }

  /** One frame from the client. Reading is paused (or stopped) before this returns when it must be. */
  private onFrame(bytes: Buffer): void {
    if (this.readingStopped) return;
    const { limits } = this.broker;
    // Before Hello a peer is a stranger: its first frame must be small, so that decoding
    // it costs next to nothing.
    if (!this.helloDone && bytes.length > HELLO_FRAME_BYTES_MAX) {
      this.close(CloseCode.POLICY_VIOLATION, `first frame is ${bytes.length} bytes; Hello must fit in ${HELLO_FRAME_BYTES_MAX}`, 'hello_invalid');
      this.stopReading();
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (err) {
      this.close(CloseCode.PROTOCOL_ERROR, `malformed frame: ${(err as Error).message}`, 'frame_malformed');
      this.stopReading();
      return;
    }
    if (frame.kind & RESPONSE) {
      this.close(CloseCode.PROTOCOL_ERROR, `unexpected ${kindName(frame.kind)} from a client`, 'protocol_error');
      this.stopReading();
      return;
    }
    if (!this.helloDone) {
      if (frame.kind !== Kind.Hello) {
        this.close(CloseCode.POLICY_VIOLATION, `first request must be Hello, got ${kindName(frame.kind)}`, 'hello_invalid');
        this.stopReading();
        return;
      }
      this.clearHelloTimer();
      this.clientId = typeof frame.body.clientId === 'string' ? frame.body.clientId.slice(0, 256) : '';
      if (this.admission.refusal) {
        this.refuseHello(frame, this.admission.refusal, 'unauthorized');
        return;
      }
      // Revoked or expired between the handshake and this Hello.
      const lapse = this.principal ? this.broker.authenticator.recheck(this.principal) : null;
      if (lapse) {
        this.refuseHello(frame, lapse.error, lapse.why === 'revoked' ? 'credential_revoked' : 'credential_expired');
        return;
      }
      const limited = this.broker.sessions.admit(this);
      if (limited) {
        this.refuseHello(frame, limited, 'connections_per_principal');
        return;
      }
      this.inSessions = true;
      // Nothing after Hello is read until Hello has succeeded, so a request pipelined
      // behind a failed Hello never runs.
      this.flow?.pause();
      this.inflight++;
      this.handle(frame, 0);
      return;
    }
    // A credential revoked or expired since the last request ends the connection here:
    // this request is answered with why, and nothing after it is read.
    const lapse = this.principal ? this.broker.authenticator.recheck(this.principal) : null;
    if (lapse) {
      const { error } = lapse;
      this.broker.logger.info({ remote: this.remoteAddress, clientId: this.clientId, principal: this.principal?.name, reason: error.detail }, 'closing a connection whose credential no longer admits it');
      this.send(frame, { error: error.code, message: error.detail });
      this.close(CloseCode.POLICY_VIOLATION, error.detail, lapse.why === 'revoked' ? 'credential_revoked' : 'credential_expired');
      this.stopReading();
      return;
    }
    if (this.transport.isClosed) {
      this.stopReading();
      return;
    }
    if (this.transport.bufferedBytes > this.broker.sendBudget.allowance(this.principalKey)) {
      this.holdForSendRoom(frame, bytes.length);
      return;
    }
    this.take(frame, bytes.length);
  }

  private take(frame: Frame, frameBytes: number): void {
    this.inflight++;
    const refused = this.requestAccount.reserve(frameBytes);
    if (refused !== null) {
      // Answered at once, so its bytes are let go now rather than held while waiting.
      this.refuse(frame, new TributaryError(Errors.THROTTLED, `the node holds as many bytes of requests as limits.${refused} allows; send again later`));
      return;
    }
    this.inflightBytes += frameBytes;
    this.handle(frame, frameBytes);
    // At the in-flight limits, the next frame waits unread (and TCP slows the client) until
    // a request is answered.
    if (this.atInflightLimit()) {
      this.pausedForRoom = true;
      this.flow?.pause();
    }
  }

  /**
   * The client has not read what it was sent: this request waits, and nothing more is read
   * (TCP slows the client), until its queue is within what the send budget allows it.
   */
  private holdForSendRoom(frame: Frame, frameBytes: number): void {
    const { sendBudget, metrics } = this.broker;
    const limit = sendBudget.isOver ? 'sendBufferBytesTotalMax' : sendBudget.isThrottled(this.principalKey) ? 'sendBufferBytesPerPrincipalMax' : 'sendBufferBytesMax';
    metrics.limitReached.inc({ limit });
    this.waitingForSendRoom = true;
    this.flow?.pause();
    void sendBudget
      .waitForRoom(this.transport, this.principalKey)
      .then(() => {
        this.waitingForSendRoom = false;
        if (this.readingStopped || this.transport.isClosed) return;
        this.take(frame, frameBytes);
        this.resumeIfRoom();
      })
      .catch((err: unknown) => this.failedUnexpectedly(err));
  }

  /** A bug of ours, not the peer's, on a path no request's promise carries: end the connection, not the process. */
  private failedUnexpectedly(err: unknown): void {
    this.broker.logger.error({ remote: this.remoteAddress, clientId: this.clientId, err: (err as Error)?.stack ?? String(err) }, 'reading a request failed unexpectedly');
    this.close(CloseCode.INTERNAL_ERROR, 'unexpected server error', 'protocol_error');
    this.stopReading();
  }

  /** Answers Hello with why the peer is not served, then closes. */
  private refuseHello(frame: Frame, refusal: TributaryError, label: CloseReason): void {
    this.broker.logger.info({ remote: this.remoteAddress, clientId: this.clientId, reason: refusal.detail }, 'connection refused');
    this.send(frame, { error: refusal.code, message: refusal.detail });
    this.close(CloseCode.POLICY_VIOLATION, refusal.detail, label);
    this.stopReading();
  }

  /**
   * The credential was revoked or has expired (Sessions): the connection ends now, whether
   * or not it is sending anything, and nothing more is pushed to it.
   */
  endForLapse(lapse: Lapse): void {
    this.broker.logger.info({ remote: this.remoteAddress, clientId: this.clientId, principal: this.principal?.name, reason: lapse.error.detail }, 'closing a connection whose credential no longer admits it');
    this.close(CloseCode.POLICY_VIOLATION, lapse.error.detail, lapse.why === 'revoked' ? 'credential_revoked' : 'credential_expired');
    this.stopReading();
  }

  private atInflightLimit(): boolean {
    const { limits } = this.broker;
    return this.inflight >= limits.inflightMax || (this.inflight > 0 && this.inflightBytes >= limits.inflightBytesMax);
  }

  /** Reading goes on once Hello has succeeded and there is room for another request. */
  private resumeIfRoom(): void {
    if (this.readingStopped || !this.helloDone || this.waitingForSendRoom) return;
    if (this.atInflightLimit()) {
      this.pausedForRoom = true;
      return;
    }
    this.pausedForRoom = false;
    this.flow?.resume();
  }

  /** Nothing more is read or handled: the connection is closing. */
  private stopReading(): void {
    this.flow?.pause();
    this.finishServing();
  }

  private finishServing(): void {
    if (this.servingFinished) return;
    this.servingFinished = true;
    this.readingStopped = true;
    this.clearHelloTimer();
    this.abortAll();
    this.subscriptions.closeAll();
    this.leaveSessions();
    if (!this.accountLeft) {
      this.accountLeft = true;
      this.broker.requestMemory.leave(this.requestAccount);
    }
    this.served?.();
  }

  private leaveSessions(): void {
    if (!this.inSessions) return;
    this.inSessions = false;
    this.broker.sessions.remove(this);
  }

  private clearHelloTimer(): void {
    this.helloTimer?.cancel();
    this.helloTimer = null;
  }

  private abortAll(): void {
    this.ended = true;
    for (const request of this.pending.unanswered()) request.abort?.abort();
    if (this.pending.size === 0) this.clearDeadlineTimer();
  }

  close(code: number, reason: string, label: CloseReason = 'node_shutdown'): void {
    if (!this.transport.isClosed) {
      this.ourCloseReason ??= label;
      this.broker.logger.debug({ remote: this.remoteAddress, clientId: this.clientId, code, reason }, 'closing connection');
    }
    this.transport.close(code, reason);
    this.abortAll();
    // Nothing more is pushed from the moment we close, even before reading has ended.
    this.subscriptions.closeAll();
    this.leaveSessions();
  }

  /** Resolves when no request of this connection is in progress. */
  whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idle ??= []).push(resolve));
  }

  private requestDone(frameBytes: number): void {
    this.inflight--;
    this.inflightBytes -= frameBytes;
    if (frameBytes > 0) this.requestAccount.release(frameBytes);
    if (this.pausedForRoom) this.resumeIfRoom();
    if (this.inflight === 0 && this.idle !== null) {
      const waiters = this.idle;
      this.idle = null;
      for (const resolve of waiters) resolve();
    }
  }

  /**
   * Answers one request; `requestFinished` follows with whether the answer carried no
   * request-level error. The request is answered exactly once: by its handler, or with
   * REQUEST_TIMED_OUT at its deadline (its signal aborted), whichever comes first.
   *
   * This runs for every request of every device, so it allocates little: one PendingRequest
   * (which is also the handler's context) and the two callbacks of its promise; no timer,
   * promise race or AbortController of its own (the deadline timer is the connection's, and
   * a handler that reads `ctx.signal` gets a controller made then).
   */
  private handle(frame: Frame, frameBytes: number): void {
    const handler = this.handlerTable.get(frame.kind);
    const request = new PendingRequest(this, frame, frameBytes, this.broker.clock.monotonic(), this.broker.limits.requestTimeoutMs);
    if (!handler) {
      this.fail(request, new TributaryError(Errors.INVALID_REQUEST, `unknown request kind ${frame.kind}`));
      return;
    }
    if (this.ended) this.signalOf(request);
    this.track(request);
    let result: Promise<object | undefined>;
    if (LARGE_ANSWER_KINDS.has(frame.kind)) {
      result = request.outboundSlot().then(() => handler(frame.body, request));
    } else {
      try {
        result = handler(frame.body, request);
      } catch (err) {
        this.fail(request, err);
        return;
      }
    }
    result.then(
      (response) => this.answer(request, response),
      (err: unknown) => this.fail(request, err),
    );
  }

  /** Answers a request with `err` without running its handler (it holds no bytes). */
  private refuse(frame: Frame, err: TributaryError): void {
    const request = new PendingRequest(this, frame, 0, this.broker.clock.monotonic(), this.broker.limits.requestTimeoutMs);
    this.track(request);
    this.fail(request, err);
  }

  /** Sends the answer, unless the request was answered already (timed out). */
  private answer(request: PendingRequest, response: object | undefined): void {
    if (request.answered) return;
    request.answered = true;
    this.untrack();
    const { frame } = request;
    this.broker.metrics.observeRequest(frame.kind, (this.broker.clock.monotonic() - request.startedAt) / 1000, response);
    try {
      if (response !== undefined) this.send(frame, response);
    } finally {
      request.finished = true;
      request.releaseOutbound?.();
    }
    const error = (response as { error?: number } | undefined)?.error;
    this.requestFinished(request, error === undefined || error === Errors.NONE.code);
  }

  private fail(request: PendingRequest, err: unknown): void {
    if (request.answered) return;
    const { frame } = request;
    let response: { error: number; message: string };
    if (err instanceof TributaryError) {
      response = { error: err.code, message: err.detail };
    } else {
      this.broker.logger.error({ request: kindName(frame.kind), clientId: this.clientId, err: (err as Error)?.stack ?? String(err) }, 'request failed unexpectedly');
      response = { error: Errors.UNKNOWN.code, message: `unexpected server error: ${(err as Error)?.message ?? String(err)}` };
    }
    this.answer(request, response);
    // A failed Hello is answered with why, then the connection ends.
    if (frame.kind === Kind.Hello && response.error !== Errors.NONE.code) this.close(CloseCode.POLICY_VIOLATION, response.message, 'hello_invalid');
  }

  /** Past its deadline: its signal is aborted and it is answered REQUEST_TIMED_OUT. */
  private timeOut(request: PendingRequest): void {
    request.abort?.abort();
    this.fail(request, new TributaryError(Errors.REQUEST_TIMED_OUT, `${kindName(request.frame.kind)} took longer than ${this.broker.limits.requestTimeoutMs} ms`));
  }

  /** A request is answered: its in-flight slot is free; Hello's outcome decides the rest. */
  private requestFinished(request: PendingRequest, ok: boolean): void {
    this.requestDone(request.frameBytes);
    if (request.frame.kind !== Kind.Hello || this.helloDone) return;
    if (!ok) {
      this.stopReading();
      return;
    }
    this.helloDone = true;
    this.onAdmitted();
    this.resumeIfRoom();
  }

  /** The request's signal, made on first use; aborted already if the connection has ended. */
  signalOf(request: PendingRequest): AbortSignal {
    if (request.abort === null) {
      request.abort = new AbortController();
      if (this.ended) request.abort.abort();
    }
    return request.abort.signal;
  }

  private track(request: PendingRequest): void {
    this.pending.add(request);
    if (this.deadlineTimer === null) this.armDeadlineTimer(request.deadline);
  }

  /** A request was answered: it is no longer pending. */
  private untrack(): void {
    this.pending.dropAnswered();
    // Left armed while the connection lives (the next request would only arm it again); a
    // closed connection's timer goes with its last request, so it holds nothing.
    if (this.pending.size === 0 && this.transport.isClosed) this.clearDeadlineTimer();
  }

  private armDeadlineTimer(deadline: number): void {
    this.deadlineTimer = this.broker.clock.setTimeout(() => this.expireRequests(), Math.max(1, Math.ceil(deadline - this.broker.clock.monotonic())));
  }

  private clearDeadlineTimer(): void {
    this.deadlineTimer?.cancel();
    this.deadlineTimer = null;
  }

  /**
   * Times out every request past its deadline. Every request gets the same timeout, so the
   * pending set (in arrival order) is in deadline order: the first one not yet due is when
   * to look again.
   */
  private expireRequests(): void {
    this.deadlineTimer = null;
    const now = this.broker.clock.monotonic();
    for (const request of this.pending.unanswered()) {
      if (request.deadline > now) {
        this.armDeadlineTimer(request.deadline);
        return;
      }
      this.timeOut(request);
    }
  }

  private send(frame: Frame, body: object): void {
    if (this.transport.isClosed) return;
    this.transport.send(encodeFrame(frame.kind | RESPONSE, frame.correlationId, body));
    this.broker.sendBudget.note(this.transport, this.principalKey);
  }

  /**
   * Waits its turn, then until the transport's queue is within what the send budget allows
   * it. Returns the release, called once the holder's response is written. One holder at a
   * time, so queued bytes stay under the allowance plus one response.
   */
  acquireOutbound(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const turn = this.outboundChain.then(() => this.broker.sendBudget.waitForRoom(this.transport, this.principalKey));
    this.outboundChain = turn.then(() => held);
    return turn.then(() => release);
  }
}

