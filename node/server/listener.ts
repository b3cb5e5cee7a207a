// The network edge: one TCP server carrying the WebSocket endpoint `/v1`, `/healthz` and
// `/metrics`. Each accepted WebSocket becomes a FrameTransport handed to `onConnection`;
// nothing here knows about frames or requests.
//
// Every socket is a stranger from its TCP accept until its Hello has succeeded, and holds a
// pre-authentication slot (pre-auth.ts) all that time: per source address a few at once and
// a few new ones per second, node-wide at most handshakesMax, the oldest evicted when full.
// The TCP server is ours, not the HTTP server's, so that a socket refused by a per-address
// limit is answered and cut before the HTTP parser ever sees it; admitted sockets are handed
// to the HTTP server as Node documents (`server.emit('connection', socket)`). A socket that
// has not made its WebSocket upgrade within handshakeTimeoutMs is closed by its slot's own
// deadline. (The HTTP server's headersTimeout and requestTimeout would not do: they are
// checked only by a listening HTTP server, and only every connectionsCheckingInterval,
// 30 s by default.) Plain HTTP requests are answered with `Connection: close`, so a scraper
// holds its slot only for one request.
//
// A new socket may send only small messages: `ws` checks each message's length from its
// header against the socket's limit and closes with 1009 before buffering it, and until
// the connection is authenticated that limit is preAuthFrameBytesMax, not messageBytesMax
// (one sealed chunk).
// So a stranger cannot make the node buffer megabytes per connection.

import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemClock, type Clock, type ClockTimer } from '../../protocol/clock.js';
import { SEALED_MESSAGE_BYTES_MAX } from '../../protocol/secure-channel.js';
import { CloseCode, socketTransport, type FrameTransport } from '../../protocol/transport.js';
import { ExemptAddresses } from '../address-ranges.js';
import type { Limits } from '../config.js';
import type { Logger } from '../logger.js';
import { PreAuthSlots, type PreAuthRefusal, type PreAuthSlot } from './pre-auth.js';

export const WS_PATH = '/v1';
/** Unread messages a connection may have waiting before its socket is paused. */
const INBOX_FRAMES_MAX = 16;

/** Silent peers (half-open TCP after a gateway's network drops) are found by ping. */
const PING_INTERVAL_MS = 30_000;
/** Sockets pinged per turn of the event loop. */
const PING_SLICE = 256;

/** What the connection's owner may change on its socket. */
export interface SocketControls {
  /** The largest message the socket accepts from now on. */
  setMessageBytesMax(bytes: number): void;
  /**
   * The peer is admitted (its Hello succeeded) or its connection failed before: its
   * pre-authentication slot is freed. A socket the node is closing is then cut as soon as
   * its close frame is out, rather than after `ws`'s 30 s wait for the stranger's answer.
   */
  endPreAuth(): void;
  /** The listener closed this socket to make room for a newer one; it counted the close. */
  readonly evicted: boolean;
}

/** Why a socket was refused before it had an owner (`tributary_connections_refused_total`). */
export type RefusalReason = 'connections_max' | 'handshakes_per_address' | 'handshake_rate_per_address';

/** Why the listener itself closed a socket before admission (`tributary_connections_closed_total`). */
export type PreAuthCloseReason = 'preauth_evicted' | 'http_timeout';

/** The limits the listener enforces, by config key (`tributary_limits_reached_total`). */
export type PreAuthLimit = 'handshakesMax' | PreAuthRefusal;

const REFUSAL_REASONS: Record<PreAuthRefusal, RefusalReason> = {
  handshakesPerAddressMax: 'handshakes_per_address',
  handshakesPerAddressPerSecond: 'handshake_rate_per_address',
};

/** The close reason of an upgraded socket evicted before its Hello: 1013 makes clients retry. */
export const EVICTED_REASON = 'evicted: too many connections before admission (handshakesMax)';

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
  /** What /healthz answers; any status but ok answers 503. */
  health(): { status: 'ok' | 'starting' | 'stopping' } & Record<string, unknown>;
  metrics(): Promise<{ contentType: string; body: string }>;
  /** A socket or upgrade refused because a limit was reached. */
  onRefused(reason: RefusalReason): void;
  /** A limit of the listener stopped a socket (refused it, or evicted an older one). */
  onLimitReached(limit: PreAuthLimit): void;
  /** The listener closed a socket before admission (evicted, or out of time in HTTP). */
  onPreAuthClosed(reason: PreAuthCloseReason): void;
  onConnection(transport: FrameTransport, remote: RemoteEndpoint, controls: SocketControls): void;
  /** How often every socket is pinged; one that has not answered the previous ping is cut. */
  pingIntervalMs?: number;
  /**
   * Times the handshake deadlines, the pings and the per-address rates (monotonic); default
   * the system's clock.
   */
  clock?: Clock;
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
  /** The address bound, as the socket reports it (a host name resolved, 0.0.0.0 kept). */
  readonly address: string;
  readonly connectionCount: number;
  /** Sockets before admission: from TCP accept until Hello succeeded (at most handshakesMax). */
  readonly preAuthCount: number;
  /** Stops accepting; open sockets stay until closed by their owners or `terminateAll`. */
  stopAccepting(): Promise<void>;
  terminateAll(): void;
}

/** A socket from its TCP accept until it is admitted or closed. */
interface Stranger {
  readonly socket: Socket;
  readonly slot: PreAuthSlot;
  /** Until the WebSocket upgrade; the handshake's and Hello's own deadlines follow it. */
  deadline: ClockTimer | null;
  /** Set at the upgrade. */
  transport: FrameTransport | null;
  /** A plain HTTP request (`/healthz`, `/metrics`) is being answered on it. */
  answering: boolean;
}

/**
 * A short HTTP answer, then the socket is cut as soon as it is written: a refused stranger
 * gets no time to hold a file descriptor by never closing its end.
 */
function answerAndClose(socket: Socket | Duplex, status: string, text: string, retryAfterSeconds?: number): void {
  const body = `${text}\n`;
  const retry = retryAfterSeconds === undefined ? '' : `Retry-After: ${retryAfterSeconds}\r\n`;
  socket.write(`HTTP/1.1 ${status}\r\n${retry}Connection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  cutWhenWritten(socket);
}

/** Closes a socket once what was written to it is out, without waiting for the peer. */
function cutWhenWritten(socket: Socket | Duplex): void {
  if ('destroySoon' in socket && typeof socket.destroySoon === 'function') socket.destroySoon();
  else socket.end(() => socket.destroy());
}

export async function listen(options: ListenerOptions): Promise<Listener> {
  const { limits, logger } = options;
  const clock = options.clock ?? systemClock;
  const sockets = new Set<WebSocket>();
  const alive = new WeakSet<WebSocket>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.messageBytesMax, perMessageDeflate: false });
  let warnedNoMessageLimit = false;
  const slots = new PreAuthSlots({
    handshakesMax: limits.handshakesMax,
    handshakesPerAddressMax: limits.handshakesPerAddressMax,
    handshakesPerAddressPerSecond: limits.handshakesPerAddressPerSecond,
    exempt: new ExemptAddresses(limits.exemptAddresses),
    now: () => clock.monotonic(),
  });
  /** Strangers not yet upgraded, by socket: the HTTP server's events name only the socket. */
  const inHttp = new Map<Duplex, Stranger>();

  const server = createHttpServer((req, res) => answerHttp(req, res));
  const answerHttp = (req: IncomingMessage, res: ServerResponse): void => {
    const stranger = inHttp.get(req.socket);
    // Evicted or out of time while the request was read: already answered and closing.
    if (stranger === undefined || !stranger.slot.held) return void res.destroy();
    stranger.answering = true;
    res.setHeader('connection', 'close');
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      // Starting (storage still opening) or stopping: 503, so a probe that reads only the
      // status code (curl -f, a load balancer) does not send clients to a node that turns them away.
      const health = options.health();
      const ready = health.status === 'ok';
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json', ...(ready ? {} : { 'retry-after': '1' }) }).end(`${JSON.stringify(health)}\n`);
      return;
    }
    if (req.method === 'GET' && path === '/metrics' && options.health().status === 'starting') {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('the node is starting: its metrics exist once storage is open\n');
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
  };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const stranger = inHttp.get(socket);
    if (stranger === undefined || !stranger.slot.held) return void socket.destroy();
    const path = (req.url ?? '').split('?')[0];
    if (path !== WS_PATH) return answerAndClose(socket, '404 Not Found', `not found: ${path}`);
    if (sockets.size >= limits.connectionsMax) {
      logger.warn({ connectionsMax: limits.connectionsMax }, 'connection refused: limit reached');
      options.onRefused('connections_max');
      return answerAndClose(socket, '503 Service Unavailable', 'connectionsMax reached', 1);
    }
    inHttp.delete(socket);
    clearDeadline(stranger);
    const remote = { address: req.socket.remoteAddress ?? '?', port: req.socket.remotePort ?? 0 };
    wss.handleUpgrade(req, socket, head, (ws) => adopt(ws, remote, stranger));
  });

  // Outside the upgrade handler, so that the closures a socket keeps for its life do not
  // keep the upgrade request (headers and all) with them.
  const adopt = (ws: WebSocket, remote: RemoteEndpoint, stranger: Stranger): void => {
    sockets.add(ws);
    alive.add(ws);
    ws.on('pong', () => alive.add(ws));
    ws.on('close', () => sockets.delete(ws));
    if (!setMessageBytesMax(ws, options.preAuthFrameBytesMax) && !warnedNoMessageLimit) {
      warnedNoMessageLimit = true;
      logger.warn('this version of ws gives no per-socket message limit: unauthenticated peers may send messages up to messageBytesMax');
    }
    // A client's messages wait unread only while its connection is at a limit; sixteen of
    // them (sealed chunks of at most 64 KiB) are enough to keep a producer's next request
    // in hand, and bound what a connection that stopped being read holds to about 1 MiB.
    const transport = socketTransport(ws, { inboxFramesMax: INBOX_FRAMES_MAX, inboxBytesMax: INBOX_FRAMES_MAX * SEALED_MESSAGE_BYTES_MAX });
    stranger.transport = transport;
    const controls: SocketControls = {
      setMessageBytesMax: (bytes) => void setMessageBytesMax(ws, bytes),
      endPreAuth: () => {
        if (stranger.slot.release() && transport.isClosed) cutWhenWritten(stranger.socket);
      },
      get evicted() {
        return stranger.slot.evicted;
      },
    };
    options.onConnection(transport, remote, controls);
  };

  const clearDeadline = (stranger: Stranger): void => {
    stranger.deadline?.cancel();
    stranger.deadline = null;
  };

  /** The oldest stranger gives its place to a newer one. Its slot is already freed. */
  const evict = (stranger: Stranger): void => {
    clearDeadline(stranger);
    options.onPreAuthClosed('preauth_evicted');
    options.onLimitReached('handshakesMax');
    if (stranger.transport !== null) {
      stranger.transport.close(CloseCode.TRY_AGAIN_LATER, EVICTED_REASON);
      cutWhenWritten(stranger.socket);
    } else if (stranger.answering) {
      stranger.socket.destroy();
    } else {
      answerAndClose(stranger.socket, '503 Service Unavailable', 'evicted: handshakesMax reached', 1);
    }
  };

  /** No WebSocket upgrade (nor a plain request answered) within handshakeTimeoutMs of the accept. */
  const expire = (stranger: Stranger): void => {
    stranger.deadline = null;
    if (!stranger.slot.release()) return;
    options.onPreAuthClosed('http_timeout');
    if (stranger.answering) stranger.socket.destroy();
    else answerAndClose(stranger.socket, '408 Request Timeout', `no request within ${limits.handshakeTimeoutMs} ms`);
  };

  const accept = (socket: Socket): void => {
    // Ours, for the socket's whole life: Node's HTTP server drops its own error listener from
    // an upgraded socket, and a refused one never meets it. Without one, a client's reset
    // would be an uncaught error that ends the process.
    socket.on('error', () => socket.destroy());
    const address = socket.remoteAddress;
    // Reset by the peer before we got to it.
    if (address === undefined) return void socket.destroy();
    let stranger: Stranger | undefined;
    const taken = slots.take(address, () => {
      if (stranger !== undefined) evict(stranger);
    });
    if (typeof taken === 'string') {
      logger.debug({ remote: address, limit: taken }, 'connection refused: per-address limit reached');
      options.onRefused(REFUSAL_REASONS[taken]);
      options.onLimitReached(taken);
      return answerAndClose(socket, '503 Service Unavailable', `${taken} reached`, 1);
    }
    const held: Stranger = { socket, slot: taken, deadline: null, transport: null, answering: false };
    stranger = held;
    held.deadline = clock.setTimeout(() => expire(held), limits.handshakeTimeoutMs);
    inHttp.set(socket, held);
    socket.once('close', () => {
      clearDeadline(held);
      inHttp.delete(socket);
      held.slot.release();
    });
    server.emit('connection', socket);
  };
  const tcp = createTcpServer({ allowHalfOpen: true, noDelay: true }, accept);

  // A round of pings goes out PING_SLICE sockets per turn of the event loop: with 10,000
  // devices, one loop over every socket stalled the node for 150 ms each round, and every
  // request waiting behind it.
  const pingIntervalMs = options.pingIntervalMs ?? PING_INTERVAL_MS;
  let pinging = false;
  let pinger: ClockTimer | null = null;
  const armPinger = (): void => {
    pinger = clock.setTimeout(ping, pingIntervalMs).unref();
  };
  const ping = (): void => {
    armPinger();
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
  };
  armPinger();

  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(options.port, options.host, () => {
      tcp.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    pinger?.cancel();
    throw err;
  });
  const { port, address } = tcp.address() as AddressInfo;

  return {
    port,
    address,
    get connectionCount() {
      return sockets.size;
    },
    get preAuthCount() {
      return slots.size;
    },
    stopAccepting() {
      pinger?.cancel();
      pinger = null;
      return new Promise((resolve) => {
        tcp.close(() => resolve());
        // Sockets still in HTTP go now, but for an answer being written; WebSockets are
        // closed by their owners, or by terminateAll.
        for (const stranger of inHttp.values()) if (!stranger.answering) stranger.socket.destroy();
      });
    },
    terminateAll() {
      for (const ws of sockets) ws.close(CloseCode.GOING_AWAY, 'node shutting down');
      clock
        .setTimeout(() => {
          for (const ws of sockets) ws.terminate();
        }, 1000)
        .unref();
    },
  };
}
