// A bare protocol client: a WebSocket speaking frames directly, with no SDK logic, so
// server tests can send exactly the bytes they mean (bad ones included).

import WebSocket from 'ws';
import { decodeFrame, encodeFrame, Kind, PROTOCOL_VERSION, RESPONSE, type Frame } from '../../protocol/frames.js';

export class RawClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (f: Frame) => void; reject: (e: Error) => void }>();
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const frame = decodeFrame(data);
      this.waiting.get(frame.correlationId)?.resolve(frame);
      this.waiting.delete(frame.correlationId);
    });
    ws.on('error', () => {});
    this.closed = new Promise((r) =>
      ws.on('close', (code, reason) => {
        for (const w of this.waiting.values()) w.reject(new Error(`connection closed (${code})`));
        this.waiting.clear();
        r({ code, reason: reason.toString() });
      }),
    );
  }

  static async connect(url: string, options: { hello?: boolean } = {}): Promise<RawClient> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const client = new RawClient(ws);
    if (options.hello !== false) await client.request(Kind.Hello, { version: PROTOCOL_VERSION, clientId: 'raw-test' });
    return client;
  }

  sendRaw(bytes: Uint8Array): void {
    this.ws.send(bytes);
  }

  send(kind: number, body: object): number {
    const id = this.nextId++;
    this.ws.send(encodeFrame(kind, id, body));
    return id;
  }

  response(id: number): Promise<Frame> {
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  async request<T = Record<string, unknown>>(kind: number, body: object): Promise<T> {
    const id = this.nextId++;
    const answer = this.response(id);
    this.ws.send(encodeFrame(kind, id, body));
    const frame = await answer;
    if (frame.kind !== (kind | RESPONSE)) throw new Error(`expected response kind ${kind | RESPONSE}, got ${frame.kind}`);
    return frame.body as T;
  }

  close(): void {
    this.ws.close();
  }
}
