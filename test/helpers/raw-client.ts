// A bare protocol client: a WebSocket speaking frames directly, with no SDK logic, so
// server tests can send exactly the bytes they mean (bad ones included). It makes the Noise
// handshake as every client must (anonymous unless given an identity and credential), and
// can also send bytes around the secure channel, to test what the node does with them.

import WebSocket from 'ws';
import { decodeFrame, encodeFrame, Kind, PROTOCOL_VERSION, RESPONSE, type Frame } from '../../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../../protocol/key-file.js';
import { noiseKeyPairFromIdentity, noisePublicKeyFromIdentity, secureInitiator, type SecureSession } from '../../protocol/secure-channel.js';
import { forwardingTransport, socketTransport, type FrameTransport } from '../../protocol/transport.js';

export interface RawClientOptions {
  /** Send Hello after the handshake (default true). */
  hello?: boolean;
  identity?: IdentityKeyPair;
  credential?: Buffer;
  /** The node's identity key: pins it, and makes the handshake Noise IK. */
  nodePublicKey?: Buffer;
  /** Rewrites each message on its way to the socket (handshake and sealed alike), by index. */
  tamper?: (message: Buffer, index: number) => Buffer;
}

export class RawClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (f: Frame) => void; reject: (e: Error) => void }>();
  /** The close the node sent (code and reason), once the socket has closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private session: SecureSession | null = null;
  /** Frames the node sent unasked (correlation id 0: SubscribeData), not yet taken. */
  private readonly pushes: Frame[] = [];
  private pushWaiter: ((f: Frame) => void) | null = null;
  /** Every frame received, in arrival order (kind and correlation id), for ordering checks. */
  readonly received: { kind: number; correlationId: number }[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('error', () => {});
    this.closed = new Promise((r) =>
      ws.on('close', (code, reason) => {
        for (const w of this.waiting.values()) w.reject(new Error(`connection closed (${code})`));
        this.waiting.clear();
        r({ code, reason: reason.toString() });
      }),
    );
  }

  /** Opens the WebSocket only: no handshake. For tests of what strangers may send. */
  static async open(url: string): Promise<RawClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.binaryType = 'nodebuffer';
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new RawClient(ws);
  }

  static async connect(url: string, options: RawClientOptions = {}): Promise<RawClient> {
    const client = await RawClient.open(url);
    await client.handshake(options);
    if (options.hello !== false) await client.request(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'raw-test' });
    return client;
  }

  /** Makes the Noise handshake; afterwards `send`/`sendRaw` seal what they send. */
  async handshake(options: RawClientOptions = {}): Promise<SecureSession> {
    const inner = socketTransport(this.ws);
    const tamper = options.tamper;
    let index = 0;
    const wire = tamper ? forwardingTransport(inner, { send: (frame) => inner.send(tamper(Buffer.from(frame), index++)) }) : inner;
    const session = await secureInitiator(wire, {
      staticKeyPair: noiseKeyPairFromIdentity(options.identity ?? generateIdentity()),
      payload: options.credential,
      remoteStaticKey: options.nodePublicKey ? noisePublicKeyFromIdentity(options.nodePublicKey) : undefined,
      handshakeFrameBytesMax: 8192,
    });
    this.session = session;
    void this.readLoop(session.transport);
    return session;
  }

  private async readLoop(transport: FrameTransport): Promise<void> {
    for await (const bytes of transport) {
      const frame = decodeFrame(bytes, { itemsMax: 2_000_000, depthMax: 32 });
      if (this.received.length < 10_000) this.received.push({ kind: frame.kind, correlationId: frame.correlationId });
      if (frame.correlationId === 0) {
        const w = this.pushWaiter;
        this.pushWaiter = null;
        if (w) w(frame);
        else this.pushes.push(frame);
        continue;
      }
      this.waiting.get(frame.correlationId)?.resolve(frame);
      this.waiting.delete(frame.correlationId);
    }
  }

  private get sealed(): FrameTransport {
    if (!this.session) throw new Error('no handshake yet');
    return this.session.transport;
  }

  /** Sends bytes as one sealed frame (they need not be a valid frame). */
  /** The next frame the node sent unasked, or null if none comes within `waitMs`. */
  nextPush(waitMs = 2000): Promise<Frame | null> {
    const queued = this.pushes.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pushWaiter = null;
        resolve(null);
      }, waitMs);
      this.pushWaiter = (f) => {
        clearTimeout(timer);
        resolve(f);
      };
    });
  }

  /** Frames pushed and not yet taken. */
  get pendingPushes(): number {
    return this.pushes.length;
  }

  sendRaw(bytes: Uint8Array): void {
    this.sealed.send(bytes);
  }

  /** Sends bytes straight to the socket, around the secure channel. */
  /**
   * The next raw WebSocket message, as it came: for tests that play the handshake by hand.
   * Ask before sending what it answers.
   */
  nextWireMessage(): Promise<Buffer> {
    return new Promise((resolve) => this.ws.once('message', (data) => resolve(data as Buffer)));
  }

  sendWire(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  send(kind: number, body: object): number {
    const id = this.nextId++;
    this.sealed.send(encodeFrame(kind, id, body));
    return id;
  }

  response(id: number): Promise<Frame> {
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  async request<T = Record<string, unknown>>(kind: number, body: object): Promise<T> {
    const id = this.nextId++;
    const answer = this.response(id);
    this.sealed.send(encodeFrame(kind, id, body));
    const frame = await answer;
    if (frame.kind !== (kind | RESPONSE)) throw new Error(`expected response kind ${kind | RESPONSE}, got ${frame.kind}`);
    return frame.body as T;
  }

  close(): void {
    this.ws.close();
  }
}
