// The transport seam. Every network component takes a FrameTransport: an ordered, reliable
// stream of whole byte frames that can be read as an async iterable, written with `send`,
// and closed with a reason. Layers stack on it: WebSocket -> secure channel (next step) ->
// frame codec -> dispatch. Nothing above this seam sees a socket.
//
// This module opens no sockets: `socketTransport` adapts an already-open WebSocket-like
// object handed in by the caller, and `memoryPipe` joins two transports in memory for
// deterministic tests and simulation of the same code.

export interface CloseInfo {
  code: number;
  reason: string;
}

export interface FrameTransport extends AsyncIterable<Buffer> {
  send(frame: Uint8Array): void;
  /** Bytes handed to `send` and not yet written out: the sender's backpressure signal. */
  readonly bufferedBytes: number;
  /** Resolves when `bufferedBytes` falls to `lowBytes` or the transport closes. */
  drained(lowBytes: number): Promise<void>;
  close(code?: number, reason?: string): void;
  readonly closed: Promise<CloseInfo>;
  readonly isClosed: boolean;
  /**
   * Reads by callback instead of the async iterator (use one or the other): see
   * FrameListener. Transports that cannot are read through their iterator by `readFrames`.
   */
  listen?(listener: FrameListener): FrameFlow;
}

/**
 * Where `listen` hands frames: each one as it arrives, in order, then `end` once. Between
 * frames nothing of the reader waits anywhere. An async iterator keeps a chain of promises
 * per frame awaited; a device that sends once a second keeps that chain a second, long
 * enough for the garbage collector to move it to the old generation, and a node with
 * 10,000 such devices then spent a quarter of a second in every major collection.
 */
export interface FrameListener {
  frame(frame: Buffer): void;
  end(): void;
}

/** The reader's flow control: no frame is handed over while paused (unread ones wait). */
export interface FrameFlow {
  pause(): void;
  resume(): void;
}

/**
 * Hands `transport`'s frames to `listener`: through `listen` when the transport has it, else
 * from its async iterator (test doubles, wrappers), honouring pause and resume all the same.
 */
export function readFrames(transport: FrameTransport, listener: FrameListener): FrameFlow {
  if (transport.listen) return transport.listen(listener);
  let paused = null as { promise: Promise<void>; resolve: () => void } | null;
  const flow: FrameFlow = {
    pause() {
      if (paused) return;
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      paused = { promise, resolve };
    },
    resume() {
      const p = paused;
      paused = null;
      p?.resolve();
    },
  };
  void (async () => {
    try {
      for await (const frame of transport) {
        listener.frame(frame);
        while (paused) await paused.promise;
      }
    } catch {
      // Transports end their iterators rather than throw; an error still ends the reading.
    }
    listener.end();
  })();
  return flow;
}

/** WebSocket close codes we use (RFC 6455 section 7.4). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  POLICY_VIOLATION: 1008,
  TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  /** IANA-registered: a condition that may pass (a handshake that ran out of time). */
  TRY_AGAIN_LATER: 1013,
} as const;

/** The subset of the `ws` WebSocket that the adapter needs. */
export interface WebSocketLike {
  readonly bufferedAmount: number;
  readonly readyState: number;
  send(data: Uint8Array, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  terminate?(): void;
  pause?(): void;
  resume?(): void;
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): unknown;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  /**
   * The stream `ws` writes to (its own, undocumented field): when present, the frames sent
   * in one go of the event loop leave in one write. `ws` has no public way to send several
   * messages in one write.
   */
  readonly _socket?: Corkable | null;
}

/** What `socketTransport` needs of a stream to hold writes back and release them together. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/**
 * A bounded inbox of frames with async-iterator reads. When `highWaterFrames` frames or
 * `highWaterBytes` bytes wait unread, `onFull` is called (pause the source); when the reader
 * has brought both down to half their mark, `onSpace` (resume it). So a peer that sends
 * faster than we handle is slowed by TCP, not buffered without bound: counting frames alone
 * would let 64 frames of 16 MiB each wait, hence the byte bound.
 *
 * Concurrent `next()` calls are served in call order, each with its own frame.
 */
export class FrameInbox implements AsyncIterable<Buffer> {
  /** Unread frames from `head`; slots before it are cleared, so read frames can be freed. */
  private readonly frames: (Buffer | undefined)[] = [];
  private head = 0;
  private bytes = 0;
  /** Readers waiting for a frame, oldest first; only ever non-empty while `frames` is. */
  private readonly waiters: ((r: IteratorResult<Buffer>) => void)[] = [];
  private ended = false;
  private paused = false;
  /** Set by `listen`: frames go to it instead of to iterator reads. */
  private listener: FrameListener | null = null;
  /** The listener's own pause (FrameFlow), not the source's (`paused`). */
  private held = false;
  private delivering = false;
  private endDelivered = false;

  constructor(
    private readonly highWaterFrames: number,
    private readonly onFull: () => void,
    private readonly onSpace: () => void,
    private readonly highWaterBytes: number = Number.POSITIVE_INFINITY,
  ) {}

  /** Frames waiting unread. */
  get queuedFrames(): number {
    return this.frames.length - this.head;
  }

  /** Bytes of the frames waiting unread. */
  get queuedBytes(): number {
    return this.bytes;
  }

  push(frame: Buffer): void {
    if (this.ended) return;
    if (this.listener !== null) {
      if (!this.held && !this.delivering && this.head === this.frames.length) {
        this.listener.frame(frame);
        return;
      }
      this.queue(frame);
      this.deliver();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter({ value: frame, done: false });
      return;
    }
    this.queue(frame);
  }

  private queue(frame: Buffer): void {
    this.frames.push(frame);
    this.bytes += frame.length;
    if (!this.paused && (this.queuedFrames >= this.highWaterFrames || this.bytes >= this.highWaterBytes)) {
      this.paused = true;
      this.onFull();
    }
  }

  /** The oldest unread frame, taken out (the source resumed once reading has caught up). */
  private shift(): Buffer {
    const value = this.frames[this.head] as Buffer;
    this.frames[this.head++] = undefined;
    this.bytes -= value.length;
    if (this.head > 1024 && this.head * 2 > this.frames.length) {
      this.frames.splice(0, this.head);
      this.head = 0;
    }
    if (this.paused && this.queuedFrames <= this.highWaterFrames / 2 && this.bytes <= this.highWaterBytes / 2) {
      this.paused = false;
      this.onSpace();
    }
    return value;
  }

  end(): void {
    this.ended = true;
    const waiters = this.waiters.splice(0);
    for (const w of waiters) w({ value: undefined, done: true });
    this.deliver();
  }

  /**
   * Reads by callback from now on: the frames waiting unread first, then each as it is
   * pushed. Call at most once, with no iterator read pending. Nothing is handed over before
   * this returns: frames already waiting follow on a microtask.
   */
  listen(listener: FrameListener): FrameFlow {
    this.listener = listener;
    if (this.head < this.frames.length || this.ended) queueMicrotask(() => this.deliver());
    return {
      pause: () => void (this.held = true),
      resume: () => {
        this.held = false;
        this.deliver();
      },
    };
  }

  /** Hands waiting frames to the listener until it pauses; then `end` when all are read. */
  private deliver(): void {
    const listener = this.listener;
    if (listener === null || this.delivering) return;
    this.delivering = true;
    try {
      while (!this.held && this.head < this.frames.length) listener.frame(this.shift());
    } finally {
      this.delivering = false;
    }
    if (this.ended && !this.endDelivered && this.head === this.frames.length) {
      this.endDelivered = true;
      listener.end();
    }
  }

  private next(): Promise<IteratorResult<Buffer>> {
    if (this.head < this.frames.length) return Promise.resolve({ value: this.shift(), done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiters.push(resolve);
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return { next: () => this.next(), return: async () => { this.end(); return { value: undefined, done: true }; } };
  }
}

/** Frames a socket transport holds unread before it pauses the socket. */
export const INBOX_FRAMES_MAX_DEFAULT = 64;
/** Bytes a socket transport holds unread before it pauses the socket. */
export const INBOX_BYTES_MAX_DEFAULT = 32 * 1024 * 1024;

export interface SocketTransportOptions {
  /** Unread frames at which the socket is paused. Default INBOX_FRAMES_MAX_DEFAULT (64). */
  inboxFramesMax?: number;
  /** Unread bytes at which the socket is paused. Default INBOX_BYTES_MAX_DEFAULT (32 MiB). */
  inboxBytesMax?: number;
}

const WS_OPEN = 1;

/** Adapts an open WebSocket (the `ws` package's, on either side) to a FrameTransport. */
export function socketTransport(socket: WebSocketLike, options: SocketTransportOptions = {}): FrameTransport {
  return new SocketTransport(socket, options);
}

function uncorkTransport(transport: SocketTransport): void {
  transport.uncork();
}

/**
 * A class rather than an object of closures: a node holds one per device, and the heap its
 * full GCs mark grows with every closure a connection keeps.
 */
class SocketTransport implements FrameTransport {
  private readonly inbox: FrameInbox;
  private closeInfo: CloseInfo | null = null;
  private resolveClosed!: (c: CloseInfo) => void;
  readonly closed: Promise<CloseInfo>;
  private drainWaiters: { low: number; resolve: () => void }[] | null = null;
  /**
   * Frames sent in one go of the event loop (a callback and the ticks and microtasks after
   * it) are held in the socket `ws` writes to and written together once it has run: one
   * system call, and one wake-up of the peer, instead of one per frame. A handshake sends
   * several frames in a row (message 3, the stream header, Hello); each write costs tens of
   * microseconds of kernel time on loopback, more than the JS around it.
   */
  private readonly stream: Corkable | null;
  private corked = false;

  constructor(
    private readonly socket: WebSocketLike,
    options: SocketTransportOptions,
  ) {
    // The socket may deliver what it had already read after pause(): the bounds are where
    // reading stops, exceeded by at most what was in flight.
    this.inbox = new FrameInbox(
      options.inboxFramesMax ?? INBOX_FRAMES_MAX_DEFAULT,
      () => socket.pause?.(),
      () => socket.resume?.(),
      options.inboxBytesMax ?? INBOX_BYTES_MAX_DEFAULT,
    );
    this.closed = new Promise<CloseInfo>((r) => (this.resolveClosed = r));
    this.stream = socket._socket ?? null;
    socket.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    socket.on('close', (code, reason) => this.onClose(code, reason));
    socket.on('error', (err: Error & { code?: string }) => this.onError(err));
  }

  onMessage(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (!isBinary) {
      this.close(CloseCode.PROTOCOL_ERROR, 'text frames are not accepted');
      return;
    }
    this.inbox.push(Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data));
  }

  onClose(code: number, reason: Buffer): void {
    this.closeInfo ??= { code, reason: reason.toString() };
    this.inbox.end();
    this.checkDrain();
    this.resolveClosed(this.closeInfo);
  }

  onError(err: Error & { code?: string }): void {
    // 'close' follows every 'error' in ws. When ws itself refused what the peer sent, it
    // closes with a status the 'close' event does not carry (it reports the peer's, or
    // 1006), so keep ws's reason here: an oversized message is 1009, anything else 1002.
    if (typeof err.code === 'string' && err.code.startsWith('WS_ERR_')) {
      this.closeInfo ??= { code: err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? CloseCode.TOO_BIG : CloseCode.PROTOCOL_ERROR, reason: err.message };
      this.inbox.end();
    }
  }

  /** Wakes the `drained()` waiters whose mark the socket's buffer has fallen to. */
  private readonly checkDrain = (): void => {
    const waiters = this.drainWaiters;
    if (waiters === null) return;
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (this.closeInfo || this.socket.bufferedAmount <= waiters[i].low) {
        waiters[i].resolve();
        waiters.splice(i, 1);
      }
    }
  };

  uncork(): void {
    this.corked = false;
    this.stream?.uncork();
  }

  send(frame: Uint8Array): void {
    if (this.closeInfo || this.socket.readyState !== WS_OPEN) return;
    if (this.stream !== null && !this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(uncorkTransport, this);
    }
    // The write callback is what wakes `drained()` waiters as bytes leave; always pass it,
    // since a waiter may arrive after this send and before the socket drains.
    this.socket.send(frame, this.checkDrain);
  }

  get bufferedBytes(): number {
    return this.socket.bufferedAmount;
  }

  drained(lowBytes: number): Promise<void> {
    if (this.closeInfo || this.socket.bufferedAmount <= lowBytes) return Promise.resolve();
    return new Promise((resolve) => {
      (this.drainWaiters ??= []).push({ low: lowBytes, resolve });
      // ws calls send callbacks as data is written; poll once in case none is pending.
      setImmediate(this.checkDrain);
    });
  }

  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.closeInfo) return;
    this.closeInfo = { code, reason };
    this.inbox.end();
    try {
      this.socket.close(code, reason.slice(0, 120));
    } catch {
      this.socket.terminate?.();
    }
    this.checkDrain();
  }

  get isClosed(): boolean {
    return this.closeInfo !== null;
  }

  listen(listener: FrameListener): FrameFlow {
    return this.inbox.listen(listener);
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.inbox[Symbol.asyncIterator]();
  }
}

/**
 * A transport that passes everything to `inner` except what `overrides` replaces (`send`,
 * `close`): for layers that watch or adjust one direction, such as tests tampering with
 * what is sent or a node remembering why it closed.
 */
export function forwardingTransport(inner: FrameTransport, overrides: Partial<Pick<FrameTransport, 'send' | 'close'>>): FrameTransport {
  return new ForwardingTransport(inner, overrides);
}

class ForwardingTransport implements FrameTransport {
  constructor(
    private readonly inner: FrameTransport,
    private readonly overrides: Partial<Pick<FrameTransport, 'send' | 'close'>>,
  ) {}

  listen(listener: FrameListener): FrameFlow {
    return readFrames(this.inner, listener);
  }

  send(frame: Uint8Array): void {
    if (this.overrides.send) this.overrides.send(frame);
    else this.inner.send(frame);
  }

  get bufferedBytes(): number {
    return this.inner.bufferedBytes;
  }

  drained(lowBytes: number): Promise<void> {
    return this.inner.drained(lowBytes);
  }

  close(code?: number, reason?: string): void {
    if (this.overrides.close) this.overrides.close(code, reason);
    else this.inner.close(code, reason);
  }

  get closed(): Promise<CloseInfo> {
    return this.inner.closed;
  }

  get isClosed(): boolean {
    return this.inner.isClosed;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this.inner[Symbol.asyncIterator]();
  }
}

/** Two transports joined in memory, for tests and deterministic simulation. */
export function memoryPipe(): [FrameTransport, FrameTransport] {
  const make = () => {
    let closeInfo: CloseInfo | null = null;
    let resolveClosed!: (c: CloseInfo) => void;
    const closed = new Promise<CloseInfo>((r) => (resolveClosed = r));
    const inbox = new FrameInbox(Number.MAX_SAFE_INTEGER, () => {}, () => {});
    return { inbox, closed, resolveClosed, get closeInfo() { return closeInfo; }, set closeInfo(c) { closeInfo = c; } };
  };
  const a = make();
  const b = make();
  const side = (self: ReturnType<typeof make>, peer: ReturnType<typeof make>): FrameTransport => ({
    send(frame) {
      if (self.closeInfo) return;
      const copy = Buffer.from(frame);
      queueMicrotask(() => peer.inbox.push(copy));
    },
    bufferedBytes: 0,
    drained: () => Promise.resolve(),
    close(code = CloseCode.NORMAL, reason = '') {
      if (self.closeInfo) return;
      const info = { code, reason };
      self.closeInfo = info;
      peer.closeInfo = info;
      self.inbox.end();
      // Frames sent just before close are delivered on a microtask, as a WebSocket delivers
      // what was sent before its close frame; end the peer's inbox after them.
      queueMicrotask(() => {
        peer.inbox.end();
        peer.resolveClosed(info);
      });
      self.resolveClosed(info);
    },
    get closed() {
      return self.closed;
    },
    get isClosed() {
      return self.closeInfo !== null;
    },
    listen(listener) {
      return self.inbox.listen(listener);
    },
    [Symbol.asyncIterator]() {
      return self.inbox[Symbol.asyncIterator]();
    },
  });
  return [side(a, b), side(b, a)];
}
