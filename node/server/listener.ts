// The network edge: one HTTP server carrying the WebSocket endpoint `/v1` and `/healthz`.
// Each accepted WebSocket becomes a FrameTransport handed to `onConnection`; nothing here
// knows about frames or requests.

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, socketTransport, type FrameTransport } from '../../protocol/transport.js';
import type { Limits } from '../config.js';
import type { Logger } from '../logger.js';

export const WS_PATH = '/v1';
/** Silent peers (half-open TCP after a gateway's network drops) are found by ping. */
const PING_INTERVAL_MS = 30_000;

export interface ListenerOptions {
  host: string;
  port: number;
  limits: Limits;
  logger: Logger;
  health(): object;
  onConnection(transport: FrameTransport, remoteAddress: string): void;
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
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.frameBytesMax, perMessageDeflate: false });
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(options.health())}\n`);
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
      return refuse('503 Service Unavailable');
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      alive.add(ws);
      ws.on('pong', () => alive.add(ws));
      ws.on('close', () => sockets.delete(ws));
      const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
      options.onConnection(socketTransport(ws), remote);
    });
  });
  const pinger = setInterval(() => {
    for (const ws of sockets) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, PING_INTERVAL_MS);
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
