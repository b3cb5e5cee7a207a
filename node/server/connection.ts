// One client connection above the transport: decode frames, enforce the per-connection
// limits, dispatch to handlers, write responses. It never sees a socket.
//
// Limits: the first frame must be Hello, within helloTimeoutMs; at most inflightMax
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

export class Connection {
  private inflight = 0;
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
          this.helloDone = true;
          this.clientId = typeof frame.body.clientId === 'string' ? frame.body.clientId.slice(0, 256) : '';
        }
        while (this.inflight >= limits.inflightMax) {
          await new Promise<void>((resolve) => (this.slotWaiter = resolve));
        }
        if (this.transport.isClosed) break;
        this.inflight++;
        void this.handle(frame).finally(() => this.requestDone());
      }
    } finally {
      clearTimeout(helloTimer);
      this.abort.abort();
    }
  }

  close(code: number, reason: string): void {
    if (!this.transport.isClosed) this.broker.logger.debug({ remote: this.remoteAddress, clientId: this.clientId, code, reason }, 'closing connection');
    this.transport.close(code, reason);
    this.abort.abort();
  }

  /** Resolves when no request of this connection is in progress. */
  whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private requestDone(): void {
    this.inflight--;
    const w = this.slotWaiter;
    this.slotWaiter = null;
    w?.();
    if (this.inflight === 0) {
      for (const resolve of this.idle) resolve();
      this.idle.clear();
    }
  }

  private async handle(frame: Frame): Promise<void> {
    const { limits, logger } = this.broker;
    const handler = handlers.get(frame.kind);
    const started = Date.now();
    const requestAbort = new AbortController();
    const onConnectionAbort = () => requestAbort.abort();
    this.abort.signal.addEventListener('abort', onConnectionAbort, { once: true });
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
        return;
      }
    } finally {
      clearTimeout(timer);
      this.abort.signal.removeEventListener('abort', onConnectionAbort);
    }
    try {
      if (response !== undefined) this.send(frame, response);
    } finally {
      finished = true;
      (releaseOutbound as (() => void) | null)?.();
    }
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

