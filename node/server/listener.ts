// The network edge: one HTTP server carrying the WebSocket endpoint `/v1`, `/healthz` and
// `/metrics`. Each accepted WebSocket becomes a FrameTransport handed to `onConnection`;
// nothing here knows about frames or requests.
//
// A new socket may send only small messages: `ws` checks each message's length from its
// header against the socket's limit and closes with 1009 before buffering it, and until
// the connection is authenticated that limit is preAuthFrameBytesMax, not messageBytesMax
// (one sealed chunk).
// So a stranger cannot make the node buffer megabytes per connection.

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, socketTransport, type FrameTransport } from '../../protocol/transport.js';
import type { Limits } from '../config.js';
import type { Logger } from '../logger.js';

export const WS_PATH = '/v1';
/** Silent peers (half-open TCP after a gateway's network drops) are found by ping. */
const PING_INTERVAL_MS = 30_000;
/** Sockets pinged per turn of the event loop. */
const PING_SLICE = 256;

/** What the connection's owner may change on its socket. */
export interface SocketControls {
  /** The largest message the socket accepts from now on. */
  setMessageBytesMax(bytes: number): void;
}

export interface RemoteEndpoint {
  address: string;
  port: number;
}

export interface ListenerOptions {
  host: string;
  port: number;
  limits: Limits;
  logger: Logger;
  /** The largest message a socket accepts until its owner raises the limit. */
  preAuthFrameBytesMax: number;
  /** The largest message any socket accepts: one sealed chunk (frames are reassembled above). */
  messageBytesMax: number;
  health(): object;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Null to accept a new WebSocket, or the reason it is refused (a limit reached). */
  admit(): string | null;
  onRefused(reason: string): void;
  onConnection(transport: FrameTransport, remote: RemoteEndpoint, controls: SocketControls): void;
  /** How often every socket is pinged; one that has not answered the previous ping is cut. */
  pingIntervalMs?: number;
}

interface ReceiverInternals {
  _receiver?: { _maxPayload?: unknown };
}

/**
 * Sets the largest message `ws` will accept on an open socket. `ws` fixes maxPayload per
 * server; its receiver keeps it in `_maxPayload`, checked against each message's declared
 * length before the payload is buffered (ws 8). A test pins this behaviour, so an upgrade
 * of `ws` that moves it fails loudly instead of silently dropping the bound.
 */
export function setMessageBytesMax(ws: WebSocket, bytes: number): boolean {
  const receiver = (ws as unknown as ReceiverInternals)._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}

export interface Listener {
  readonly port: number;
  readonly connectionCount: number;
  /** Stops accepting; open sockets stay until closed by their owners or `terminateAll`. */
  stopAccepting(): Promise<void>;
  terminateAll(): void;
}

export async function listen(options: ListenerOptions): Promise<Listener> {
  const { limits, logger } = options;
  const sockets = new Set<WebSocket>();
  const alive = new WeakSet<WebSocket>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.messageBytesMax, perMessageDeflate: false });
  let warnedNoMessageLimit = false;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(options.health())}\n`);
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      options.metrics().then(
        (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(err as Error)?.message ?? String(err)}\n`),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
  });
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    // Node's HTTP server drops its own error listener from an upgraded socket; without one,
    // a client's reset during a refusal would be an uncaught error that ends the process.
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '').split('?')[0];
    const refuse = (status: string) => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (path !== WS_PATH) return refuse('404 Not Found');
    if (sockets.size >= limits.connectionsMax) {
      logger.warn({ connectionsMax: limits.connectionsMax }, 'connection refused: limit reached');
      options.onRefused('connections_max');
      return refuse('503 Service Unavailable');
    }
    const refusal = options.admit();
    if (refusal !== null) {
      options.onRefused(refusal);
      return refuse('503 Service Unavailable');
    }
    const remote = { address: req.socket.remoteAddress ?? '?', port: req.socket.remotePort ?? 0 };
    wss.handleUpgrade(req, socket, head, (ws) => adopt(ws, remote));
  });
  // Outside the upgrade handler, so that the closures a socket keeps for its life do not
  // keep the upgrade request (headers and all) with them.
  const adopt = (ws: WebSocket, remote: RemoteEndpoint): void => {
    sockets.add(ws);
    alive.add(ws);
    ws.on('pong', () => alive.add(ws));
    ws.on('close', () => sockets.delete(ws));
    if (!setMessageBytesMax(ws, options.preAuthFrameBytesMax) && !warnedNoMessageLimit) {
      warnedNoMessageLimit = true;
      logger.warn('this version of ws gives no per-socket message limit: unauthenticated peers may send messages up to messageBytesMax');
    }
    const controls: SocketControls = { setMessageBytesMax: (bytes) => void setMessageBytesMax(ws, bytes) };
    options.onConnection(socketTransport(ws), remote, controls);
  };
  // A round of pings goes out PING_SLICE sockets per turn of the event loop: with 10,000
  // devices, one loop over every socket stalled the node for 150 ms each round, and every
  // request waiting behind it.
  let pinging = false;
  const pinger = setInterval(() => {
    if (pinging) return;
    pinging = true;
    const round = [...sockets];
    let at = 0;
    const slice = () => {
      for (const end = Math.min(at + PING_SLICE, round.length); at < end; at++) {
        const ws = round[at];
        if (!sockets.has(ws)) continue;
        if (!alive.has(ws)) {
          ws.terminate();
          continue;
        }
        alive.delete(ws);
        ws.ping();
      }
      if (at < round.length) setImmediate(slice);
      else pinging = false;
    };
    slice();
  }, options.pingIntervalMs ?? PING_INTERVAL_MS);
  pinger.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    get connectionCount() {
      return sockets.size;
    },
    stopAccepting() {
      clearInterval(pinger);
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
    terminateAll() {
      for (const ws of sockets) ws.close(CloseCode.GOING_AWAY, 'node shutting down');
      setTimeout(() => {
        for (const ws of sockets) ws.terminate();
      }, 1000).unref();
    },
  };
}
