// The SDK's default transport: a `ws` WebSocket with binary frames, opened per connection
// by the Client's transport factory (the secure channel runs over it).

import WebSocket from 'ws';
import { Errors, TributaryError } from '../protocol/errors.js';
import type { TransportFactory } from '../protocol/request-engine.js';
import { SEALED_MESSAGE_BYTES_MAX } from '../protocol/secure-channel.js';
import { forwardingTransport, socketTransport, type FrameTransport } from '../protocol/transport.js';

const WS_CLOSED = 3;
/** After close(), how long the closing handshake may take before the socket is cut. */
const CLOSE_HANDSHAKE_MS = 1000;

/** How the default transport closes. */
export interface WebSocketTransportOptions {
  /**
   * How long a close waits for the node's close frame before it cuts the socket, asked at
   * each close (undefined: 1 s; 0 cuts at once): a command past its deadline does not wait
   * on a node that does not answer.
   */
  closeHandshakeMs?: () => number | undefined;
}

/**
 * Opens `ws` WebSockets. Closing waits for the node's close frame for at most a second,
 * then terminates: `ws` would otherwise keep a 30 s timer that holds the process open.
 */
export function webSocketTransportFactory(options: WebSocketTransportOptions = {}): TransportFactory {
  return (url, { signal } = {}) =>
    new Promise<FrameTransport>((resolve, reject) => {
      const problem = badNodeUrl(url);
      // Not retriable: no number of attempts makes a malformed URL reachable.
      if (problem !== null) return reject(new TributaryError(Errors.INVALID_CONFIG, `invalid node URL '${url}': ${problem}`));
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        // After the handshake every message is one sealed chunk; frames are reassembled
        // above, bounded by inboundFrameBytesMax. (Handshake messages are smaller still.)
        maxPayload: SEALED_MESSAGE_BYTES_MAX,
        // RFC 6455 masks client frames so that script-chosen bytes cannot pose as requests to
        // a proxy in between. Every message we send is a Noise handshake message or sealed
        // ciphertext, so no one chooses our bytes, and an all-zero mask lets ws skip copying
        // and XORing each frame (about a tenth of a producer's CPU at 100 MB/s).
        generateMask: (mask: Buffer) => void mask.fill(0),
      });
      ws.binaryType = 'nodebuffer';
      // 'error' is always followed by 'close'; without a listener it would throw.
      ws.on('error', () => {});
      const onAbort = () => {
        cleanup();
        ws.terminate();
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const onOpen = () => {
        cleanup();
        resolve(closeWithDeadline(socketTransport(ws), ws, () => options.closeHandshakeMs?.() ?? CLOSE_HANDSHAKE_MS));
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const cleanup = () => {
        signal?.removeEventListener('abort', onAbort);
        ws.off('open', onOpen);
        ws.off('error', onError);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      ws.once('open', onOpen);
      ws.once('error', onError);
    });
}

function badNodeUrl(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'not a URL (expected ws://host:port/v1)';
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') return `scheme must be ws: or wss:, got ${parsed.protocol}`;
  return null;
}

function closeWithDeadline(transport: FrameTransport, ws: WebSocket, closeHandshakeMs: () => number): FrameTransport {
  return forwardingTransport(transport, {
    close(code, reason) {
      transport.close(code, reason);
      if (ws.readyState === WS_CLOSED) return;
      const waitMs = closeHandshakeMs();
      if (waitMs <= 0) return void ws.terminate();
      // The system's timer, not the client's clock: this bounds a real socket's life, and a
      // test's ManualClock that stops moving must not leave the socket (and the process) open.
      const timer = setTimeout(() => ws.terminate(), waitMs);
      ws.once('close', () => clearTimeout(timer));
    },
  });
}
