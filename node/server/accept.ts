// From an accepted WebSocket to a served connection: the Noise handshake, the admission
// decision, then the Connection; and, when it ends, why, counted in the metrics.
//
// Until Hello has succeeded the peer is a stranger and costs little: the socket takes only
// small messages (PRE_AUTH_FRAME_BYTES_MAX, also the bound on a reassembled sealed frame),
// the handshake must finish in handshakeTimeoutMs and Hello follow within helloTimeoutMs,
// and the socket holds one of the listener's pre-authentication slots (per address and
// node-wide, the oldest evicted when they are full: listener.ts, pre-auth.ts) until Hello
// has succeeded or it failed. Only once admitted does the session take frames up to
// frameBytesMax, as sealed chunks of at most 64 KiB each.

import { CREDENTIAL_BYTES_MAX } from '../../protocol/credential.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import {
  HANDSHAKE_MESSAGE2_BYTES_MIN,
  SEALED_FRAME_FAILED,
  SEALED_MESSAGE_BYTES_MAX,
  secureResponder,
  type SecureSession,
  type StaticKeyPair,
} from '../../protocol/secure-channel.js';
import { CloseCode, forwardingTransport, type CloseInfo, type FrameTransport } from '../../protocol/transport.js';
import type { CloseReason } from '../metrics.js';
import { Connection } from './connection.js';
import type { BrokerContext } from './context.js';
import type { RemoteEndpoint, SocketControls } from './listener.js';

/**
 * The largest message before admission: handshake message 3 with a full credential, the
 * stream header, or a sealed Hello, whichever is largest; each is checked more tightly
 * where it is read. (Message 2 carries the node's own credential the other way.)
 */
export const PRE_AUTH_FRAME_BYTES_MAX = HANDSHAKE_MESSAGE2_BYTES_MIN + CREDENTIAL_BYTES_MAX;

export interface NodeIdentity {
  staticKeyPair: StaticKeyPair;
  /** The node's own fleet credential, shown to clients that pin the fleet key. */
  credential?: Buffer;
}

export interface AcceptHooks {
  /** The connection is past its handshake and being served. */
  onServing(connection: Connection): void;
  onClosed(connection: Connection | null): void;
}

/** Wraps a transport to remember the first close we asked for, for the close reason. */
function recordingCloses(inner: FrameTransport): { transport: FrameTransport; ourClose: () => CloseInfo | null } {
  let ours: CloseInfo | null = null;
  const transport = forwardingTransport(inner, {
    close(code = CloseCode.NORMAL, reason = '') {
      if (!inner.isClosed) ours ??= { code, reason };
      inner.close(code, reason);
    },
  });
  return { transport, ourClose: () => ours };
}

function handshakeFailureReason(err: unknown, ours: CloseInfo | null): CloseReason | 'peer' {
  if (!(err instanceof TributaryError)) return 'protocol_error';
  if (err.is(Errors.REQUEST_TIMED_OUT)) return 'handshake_timeout';
  if (err.is(Errors.NETWORK)) return 'peer';
  if (ours?.code === CloseCode.TOO_BIG) return 'handshake_too_big';
  if (err.is(Errors.UNAUTHORIZED)) return 'handshake_failed';
  return 'handshake_malformed';
}

/** Gone before finishing the handshake: `ws` may have refused an oversized message, or the peer left. */
function peerHandshakeCloseReason(info: CloseInfo): CloseReason {
  if (info.code === CloseCode.TOO_BIG) return 'handshake_too_big';
  if (info.code === CloseCode.PROTOCOL_ERROR) return 'handshake_malformed';
  return 'handshake_abandoned';
}

/** Why a connection that was being served ended. */
function servedCloseReason(connection: Connection, ours: CloseInfo | null, info: CloseInfo): CloseReason {
  if (connection.closeReason) return connection.closeReason;
  if (ours?.code === CloseCode.TOO_BIG) return 'frame_too_big';
  if (ours?.code === CloseCode.TRY_AGAIN_LATER) return 'request_bytes_max';
  if (ours) return ours.reason === SEALED_FRAME_FAILED || ours.reason.startsWith('sealed stream header') ? 'sealed_frame_failed' : 'protocol_error';
  return peerCloseReason(info);
}

/** The socket closed without our asking: the peer left, or `ws` refused what it sent. */
function peerCloseReason(info: CloseInfo): CloseReason {
  if (info.code === CloseCode.TOO_BIG) return 'frame_too_big';
  if (info.code === CloseCode.PROTOCOL_ERROR) return 'protocol_error';
  return 'client_closed';
}

/** One accepted WebSocket and what serving it needs. */
export interface Accepted {
  raw: FrameTransport;
  remote: RemoteEndpoint;
  controls: SocketControls;
  broker: BrokerContext;
  identity: NodeIdentity;
  hooks: AcceptHooks;
}

export async function acceptConnection(accepted: Accepted): Promise<void> {
  const { raw, remote, controls, broker, hooks } = accepted;
  // The peer is admitted (Hello succeeded) or gone: either way no longer a stranger, and its
  // pre-authentication slot is freed (once: the listener's slot counts that).
  const endPreAuth = () => controls.endPreAuth();
  const served: { connection: Connection | null } = { connection: null };
  try {
    await handshakeAndServe(accepted, endPreAuth, served);
  } catch (err) {
    // A bug, not a peer's doing: still, the slot is given back and the socket closed, so
    // no path leaves a connection half set up, holding a handshake slot for good.
    broker.logger.error({ remote: `${remote.address}:${remote.port}`, err: (err as Error)?.stack ?? String(err) }, 'connection failed');
    raw.close(CloseCode.INTERNAL_ERROR, 'internal error');
    broker.metrics.connectionsClosed.inc({ reason: 'protocol_error' });
    hooks.onClosed(served.connection);
  } finally {
    endPreAuth();
  }
}

async function handshakeAndServe(accepted: Accepted, endPreAuth: () => void, served: { connection: Connection | null }): Promise<void> {
  const { raw, remote, controls, broker, identity, hooks } = accepted;
  const { limits, logger, metrics } = broker;
  const { transport, ourClose } = recordingCloses(raw);
  const remoteLabel = `${remote.address}:${remote.port}`;
  const count = (reason: CloseReason) => metrics.connectionsClosed.inc({ reason });

  let session: SecureSession;
  try {
    session = await secureResponder(transport, {
      staticKeyPair: identity.staticKeyPair,
      payload: identity.credential,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      clock: broker.clock,
      handshakeFrameBytesMax: PRE_AUTH_FRAME_BYTES_MAX,
      // Nor may a stranger's chunks add up to more before it is admitted.
      sealedFrameBytesMax: PRE_AUTH_FRAME_BYTES_MAX,
    });
  } catch (err) {
    endPreAuth();
    const reason = handshakeFailureReason(err, ourClose());
    // An eviction (the listener closed the socket to make room for a newer stranger) was
    // counted by the listener.
    if (!controls.evicted) count(reason === 'peer' ? peerHandshakeCloseReason(await raw.closed) : reason);
    logger.debug({ remote: remoteLabel, reason, err: (err as Error)?.message ?? String(err) }, 'handshake failed');
    hooks.onClosed(null);
    return;
  }

  const admission = broker.authenticator.admit({ staticKey: session.remoteStaticKey, payload: session.remotePayload }, remote.address);
  const connection = new Connection(session.transport, broker, remoteLabel, admission, () => {
    // Admitted: frames up to frameBytesMax, which arrive in sealed chunks of at most 64 KiB.
    session.setFrameBytesMax(limits.frameBytesMax);
    // Frames of more than one chunk count against the principal's and the node's request
    // bytes while they are being received (node/server/request-memory.ts).
    const account = connection.requestAccount;
    session.setReassemblyBudget({ reserve: (bytes) => account.reserve(bytes) === null, release: (bytes) => account.release(bytes) });
    controls.setMessageBytesMax(SEALED_MESSAGE_BYTES_MAX);
    endPreAuth();
  });
  served.connection = connection;
  hooks.onServing(connection);
  try {
    await connection.serve();
  } catch (err) {
    logger.error({ remote: remoteLabel, err: (err as Error)?.stack ?? String(err) }, 'connection failed');
    connection.close(CloseCode.INTERNAL_ERROR, 'internal error', 'protocol_error');
  } finally {
    endPreAuth();
  }
  // Our own close is known at once; the peer's (or ws's) only when the socket reports it.
  const ours = ourClose();
  const info = ours ?? (await raw.closed);
  // An eviction (before Hello) was counted by the listener that closed the socket.
  if (!controls.evicted) count(broker.shuttingDown && !connection.closeReason && !ours ? 'node_shutdown' : servedCloseReason(connection, ours, info));
  hooks.onClosed(connection);
}
