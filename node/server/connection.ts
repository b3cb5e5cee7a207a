// One client connection above the transport: decode frames, enforce the per-connection
// limits, dispatch to handlers, write responses. It never sees a socket.
//
// Limits: the first frame must be a Hello of at most 4 KiB, within helloTimeoutMs, and
// nothing else is read until it has succeeded; at most inflightMax (and inflightBytesMax)
// requests are in progress (past that the connection stops reading, so TCP slows the
// client); each request is answered within requestTimeoutMs or gets REQUEST_TIMED_OUT;
// large responses wait for the send buffer to drain below sendBufferBytesMax. A frame that
// cannot be decoded closes the connection with the reason, since its correlation id is
// unknown and so it cannot be answered.

import { Errors, TributaryError } from '../../protocol/errors.js';
import { decodeFrame, encodeFrame, Kind, kindName, RESPONSE, type Frame } from '../../protocol/frames.js';
import { CloseCode, type FrameTransport } from '../../protocol/transport.js';
import type { BrokerContext, RequestContext } from './context.js';
import { handlers } from './dispatch.js';

const HELLO_FRAME_BYTES_MAX = 4096;

export class Connection {
  private inflight = 0;
  /** Bytes of the request frames in progress: their bodies stay referenced until answered. */
  private inflightBytes = 0;
  /** Per-request abort controllers, aborted together when the connection ends. */
  private readonly requestAborts = new Set<AbortController>();
  private slotWaiter: (() => void) | null = null;
  private helloDone = false;
  private clientId = '';
  private readonly abort = new AbortController();
  /** Serializes large responses: one holder at a time may read and send. */
  private outboundChain: Promise<void> = Promise.resolve();
  private readonly idle: Set<() => void> = new Set();

  constructor(
    private readonly transport: FrameTransport,
    private readonly broker: BrokerContext,
    private readonly remoteAddress: string,
  ) {}

  get requestsInFlight(): number {
    return this.inflight;
  }

  get sendBufferedBytes(): number {
    return this.transport.bufferedBytes;
  }

  async serve(): Promise<void> {
    const { limits } = this.broker;
    const helloTimer = setTimeout(() => this.close(CloseCode.POLICY_VIOLATION, `no Hello within ${limits.helloTimeoutMs} ms`), limits.helloTimeoutMs);
    try {
      for await (const bytes of this.transport) {
        // Before Hello a peer is a stranger: its first frame must be small, so that decoding
        // it costs next to nothing.
        if (!this.helloDone && bytes.length > HELLO_FRAME_BYTES_MAX) {
          this.close(CloseCode.POLICY_VIOLATION, `first frame is ${bytes.length} bytes; Hello must fit in ${HELLO_FRAME_BYTES_MAX}`);
          break;
        }
        let frame: Frame;
        try {
          frame = decodeFrame(bytes);
        } catch (err) {
          this.close(CloseCode.PROTOCOL_ERROR, `malformed frame: ${(err as Error).message}`);
          break;
        }
        if (frame.kind & RESPONSE) {
          this.close(CloseCode.PROTOCOL_ERROR, `unexpected ${kindName(frame.kind)} from a client`);
          break;
        }
        if (!this.helloDone) {
          if (frame.kind !== Kind.Hello) {
            this.close(CloseCode.POLICY_VIOLATION, `first request must be Hello, got ${kindName(frame.kind)}`);
            break;
          }
          clearTimeout(helloTimer);
          this.clientId = typeof frame.body.clientId === 'string' ? frame.body.clientId.slice(0, 256) : '';
          // Nothing after Hello is read until Hello has succeeded: credentials will travel in
          // it, so a request pipelined behind a failed Hello must never run.
          this.inflight++;
          const ok = await this.handle(frame).finally(() => this.requestDone(0));
          if (!ok) break;
          this.helloDone = true;
          continue;
        }
        while (this.inflight >= limits.inflightMax || (this.inflight > 0 && this.inflightBytes >= limits.inflightBytesMax)) {
          await new Promise<void>((resolve) => (this.slotWaiter = resolve));
        }
        if (this.transport.isClosed) break;
        this.inflight++;
        this.inflightBytes += bytes.length;
        void this.handle(frame).finally(() => this.requestDone(bytes.length));
      }
    } finally {
      clearTimeout(helloTimer);
      this.abortAll();
    }
  }

  private abortAll(): void {
    this.abort.abort();
    for (const c of this.requestAborts) c.abort();
    this.requestAborts.clear();
  }

  close(code: number, reason: string): void {
    if (!this.transport.isClosed) this.broker.logger.debug({ remote: this.remoteAddress, clientId: this.clientId, code, reason }, 'closing connection');
    this.transport.close(code, reason);
    this.abortAll();
  }

  /** Resolves when no request of this connection is in progress. */
  whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private requestDone(frameBytes: number): void {
    this.inflight--;
    this.inflightBytes -= frameBytes;
    const w = this.slotWaiter;
    this.slotWaiter = null;
    w?.();
    if (this.inflight === 0) {
      for (const resolve of this.idle) resolve();
      this.idle.clear();
    }
  }

  /** Answers one request. Resolves true when the answer carried no request-level error. */
  private async handle(frame: Frame): Promise<boolean> {
    const { limits, logger } = this.broker;
    const handler = handlers.get(frame.kind);
    const started = Date.now();
    const requestAbort = new AbortController();
    if (this.abort.signal.aborted) requestAbort.abort();
    else this.requestAborts.add(requestAbort);
    let releaseOutbound: (() => void) | null = null;
    let finished = false;
    const ctx: RequestContext = {
      broker: this.broker,
      clientId: this.clientId,
      remoteAddress: this.remoteAddress,
      signal: requestAbort.signal,
      deadline: started + limits.requestTimeoutMs,
      // A request that timed out may still be waiting for its turn; its slot is given back
      // at once when the turn comes.
      outboundSlot: () =>
        this.acquireOutbound().then((release) => {
          if (finished) release();
          else releaseOutbound = release;
        }),
    };
    let timer: NodeJS.Timeout | undefined;
    let response: object | undefined;
    try {
      if (!handler) throw new TributaryError(Errors.INVALID_REQUEST, `unknown request kind ${frame.kind}`);
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          requestAbort.abort();
          reject(new TributaryError(Errors.REQUEST_TIMED_OUT, `${kindName(frame.kind)} took longer than ${limits.requestTimeoutMs} ms`));
        }, limits.requestTimeoutMs);
      });
      response = await Promise.race([handler(frame.body, ctx), timedOut]);
    } catch (err) {
      if (err instanceof TributaryError) {
        response = { error: err.code, message: err.detail };
      } else {
        logger.error({ request: kindName(frame.kind), clientId: this.clientId, err: (err as Error)?.stack ?? String(err) }, 'request failed unexpectedly');
        response = { error: Errors.UNKNOWN.code, message: `unexpected server error: ${(err as Error)?.message ?? String(err)}` };
      }
      if (frame.kind === Kind.Hello && (response as { error: number }).error !== Errors.NONE.code) {
        this.send(frame, response);
        this.close(CloseCode.POLICY_VIOLATION, (response as { message: string }).message);
        finished = true;
        return false;
      }
    } finally {
      clearTimeout(timer);
      this.requestAborts.delete(requestAbort);
    }
    try {
      if (response !== undefined) this.send(frame, response);
    } finally {
      finished = true;
      (releaseOutbound as (() => void) | null)?.();
    }
    return response === undefined || (response as { error?: number }).error === undefined || (response as { error?: number }).error === Errors.NONE.code;
  }

  private send(frame: Frame, body: object): void {
    if (this.transport.isClosed) return;
    this.transport.send(encodeFrame(frame.kind | RESPONSE, frame.correlationId, body));
  }

  /**
   * Waits its turn, then until the transport's queue is below sendBufferBytesMax. Returns
   * the release, called once the holder's response is written. One holder at a time, so
   * queued bytes stay under the limit plus one response.
   */
  private acquireOutbound(): Promise<() => void> {
    const max = this.broker.limits.sendBufferBytesMax;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const turn = this.outboundChain.then(async () => {
      while (!this.transport.isClosed && this.transport.bufferedBytes > max) {
        await this.transport.drained(max / 2);
      }
    });
    this.outboundChain = turn.then(() => held);
    return turn.then(() => release);
  }
}

