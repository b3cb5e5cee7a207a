// How the Client makes each connection to a node, and who hears of it. Every (re)connect
// opens a raw transport through the application's transport factory, runs the Noise XX (or
// IK) handshake on it (protocol/secure-channel.ts) and speaks sealed frames from then on:
//
//   transportFactory -> raw transport -> secureInitiator -> sealed transport -> request engine
//
// Hello is the first sealed frame; frameBytesMax and inflightMax come from its answer.
// The handshake shows the node our identity and, in message 3, our credential; before
// sending message 3 we check the node against the pins (protocol/peer-auth.ts), so an
// impostor learns nothing of us. A refusal on either side (a pin that does not match, a
// Hello answered UNAUTHORIZED) is not retried: no number of attempts changes a key.

import type { Clock } from '../protocol/clock.js';
import { CREDENTIAL_BYTES_MAX } from '../protocol/credential.js';
import { errorSpecForCode, Errors, TributaryError } from '../protocol/errors.js';
import { Kind, PROTOCOL_VERSION, type HelloResponse } from '../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { verifyNode, type NodePins } from '../protocol/peer-auth.js';
import { abortable, type ConnectionInfo, type Greeting, type GreetingLink, type TransportFactory } from '../protocol/request-engine.js';
import {
  HANDSHAKE_MESSAGE2_BYTES_MIN,
  noiseKeyPairFromIdentity,
  noisePublicKeyFromIdentity,
  secureInitiator,
  type SecureChannelOptions,
} from '../protocol/secure-channel.js';
import { CloseCode, type CloseInfo } from '../protocol/transport.js';
import { ConnectionError, reasonOf } from './errors.js';
import { peekCredential } from './identity.js';

/** The largest frame we accept from a node; a Fetch answer is bounded by its fetchBytesMax. */
const INBOUND_FRAME_BYTES_MAX = 256 * 1024 * 1024;

/** The Client's options that are about each connection: who we are, whom we accept, who hears. */
export interface ConnectionOptions {
  /**
   * Who this client is in the handshake (an Ed25519 key pair, as `readIdentityFile` gives).
   * Without one the client makes a fresh key pair and is anonymous, which a node admits
   * only in dev mode on loopback.
   */
  identity?: IdentityKeyPair;
  /**
   * This identity's fleet credential, the bytes `tributary credentials issue` wrote; sent to
   * the node in handshake message 3. Needs `identity`. Without it the client is anonymous.
   */
  credential?: Uint8Array;
  /** Accept only the node with this identity public key (32 bytes, Ed25519). Checked first. */
  nodePublicKey?: Buffer;
  /** Accept any node holding a valid `node` credential of this fleet (32 bytes, Ed25519). */
  fleetPublicKey?: Buffer;
  /**
   * The largest frame taken from the node (it arrives in sealed chunks, reassembled up to
   * this); a larger one closes the connection. Default 256 MiB.
   */
  inboundFrameBytesMax?: number;
  /** Called after each successful Hello (first connect and every reconnect). */
  onConnect?: (info: { nodeId: string; frameBytesMax: number; inflightMax: number }) => void;
  /** Called when an established connection is lost (not on close()). */
  onDisconnect?: (info: CloseInfo) => void;
}

/** What the connection side needs of the Client's options: those above, and two it defaults. */
export interface ConnectionSettings extends ConnectionOptions {
  clientId: string;
  /** Times each handshake out. */
  clock: Clock;
}

/**
 * The Client's connections: the secure channel over each raw transport, Hello, and the
 * listeners told of each connection made or lost.
 */
export class ClientConnections {
  /** The handshake's settings, fixed for the client's life: every reconnect shows the same. */
  private readonly secureChannel: SecureChannelOptions;
  private readonly reconnectListeners = new Set<() => void>();

  constructor(private readonly settings: ConnectionSettings) {
    this.secureChannel = secureChannelOptions(settings);
  }

  /** Opens a raw transport with `open`, then runs the handshake over it. */
  secureTransportFactory(open: TransportFactory): TransportFactory {
    return async (url, { signal } = {}) => {
      const raw = await open(url, { signal });
      try {
        const handshake = secureInitiator(raw, this.secureChannel);
        const session = await (signal === undefined ? handshake : abortable(handshake, signal, (late) => late.transport.close()));
        return session.transport;
      } catch (err) {
        raw.close(CloseCode.NORMAL, 'connect attempt failed');
        throw withUrl(err, (detail) => `refusing node at ${url}: ${detail}`);
      }
    };
  }

  /** Hello, the first sealed request: the node's limits and id come from its answer. */
  readonly greet = async (link: GreetingLink): Promise<Greeting> => {
    const hello = (await link.request(Kind.Hello, { version: PROTOCOL_VERSION, clientId: this.settings.clientId }).catch((err: unknown) => {
      throw err instanceof TributaryError && err.is(Errors.UNAUTHORIZED) ? withUrl(err, (detail) => `node at ${link.url} refused this client: ${detail}`) : err;
    })) as unknown as HelloResponse;
    return { peerId: String(hello.nodeId ?? ''), limits: { frameBytesMax: hello.frameBytesMax, inflightMax: hello.inflightMax } };
  };

  /** The first connect gave up: one line naming the node(s) and the last reason. */
  unreachable(urls: readonly string[], lastError: unknown): Error {
    return new ConnectionError(urls.join(', '), reasonOf(lastError), { cause: lastError });
  }

  /**
   * Calls `listener` after each reconnect (every successful Hello but the first), before the
   * requests queued while the client was away are sent. Returns the remover.
   */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  readonly onReady = (info: ConnectionInfo): void => {
    this.settings.onConnect?.({ nodeId: info.peerId, ...info.limits });
    if (info.connection > 1) for (const listener of this.reconnectListeners) listener();
  };

  readonly onLost = (info: CloseInfo): void => {
    this.settings.onDisconnect?.(info);
  };
}

/**
 * A non-retriable failure of the handshake or Hello, reworded to name the node, so the one
 * line a command prints says which node and which side refused. Retriable failures go on to
 * the retry loop unchanged; CLIENT_CLOSED and INVALID_CONFIG are about us, not the node.
 */
function withUrl(err: unknown, describe: (detail: string) => string): unknown {
  if (!(err instanceof TributaryError) || err.retriable || err.is(Errors.CLIENT_CLOSED) || err.is(Errors.INVALID_CONFIG)) return err;
  return new TributaryError(errorSpecForCode(err.code), describe(err.detail), { cause: err });
}

/**
 * The handshake's settings from the client's options, checked here so a mistake shows at
 * construction as INVALID_CONFIG rather than as a node refusing us later.
 */
function secureChannelOptions(options: ConnectionSettings): SecureChannelOptions {
  const bad = (detail: string) => new TributaryError(Errors.INVALID_CONFIG, detail);
  const { clock, identity, credential, nodePublicKey, fleetPublicKey } = options;
  if (credential !== undefined) {
    if (credential.length === 0 || credential.length > CREDENTIAL_BYTES_MAX) {
      throw bad(`credential is ${credential.length} bytes; a credential is 1 to ${CREDENTIAL_BYTES_MAX}`);
    }
    // A credential admits only the key it names, and the node checks that against the key
    // of the handshake: without the matching identity it could only be refused.
    if (identity === undefined) throw bad('a credential needs the identity it was issued to (option identity)');
    const claims = peekCredential(credential);
    if (claims === null) throw bad('credential is not a Tributary credential');
    if (!claims.subject.equals(identity.publicKey)) {
      throw bad(`credential was issued to key ${claims.subject.toString('hex')}, not to this identity ${identity.publicKey.toString('hex')}`);
    }
    // A credential grants rights, so it goes only to a node we can check: unpinned, a man
    // in the middle would be admitted in our name and read everything we send.
    if (nodePublicKey === undefined && fleetPublicKey === undefined) {
      throw bad('a credential is shown only to a pinned node: give the node key or the fleet key (nodePublicKey or fleetPublicKey; --node-key or --fleet-key)');
    }
  }
  const pins: NodePins = {};
  if (nodePublicKey !== undefined) pins.nodePublicKey = checkedPin('nodePublicKey', nodePublicKey);
  if (fleetPublicKey !== undefined) pins.fleetPublicKey = checkedPin('fleetPublicKey', fleetPublicKey);
  return {
    staticKeyPair: noiseKeyPairFromIdentity(identity ?? generateIdentity()),
    payload: credential === undefined ? undefined : Buffer.from(credential),
    // Knowing the node's key beforehand, the handshake is Noise IK: one round trip fewer,
    // and our key and credential are encrypted to that node alone.
    remoteStaticKey: pins.nodePublicKey ? noisePublicKeyFromIdentity(pins.nodePublicKey) : undefined,
    verifyRemote: (remote) => verifyNode(remote, pins),
    // Message 2 may carry the node's credential, up to the largest a credential may be.
    handshakeFrameBytesMax: HANDSHAKE_MESSAGE2_BYTES_MIN + CREDENTIAL_BYTES_MAX,
    sealedFrameBytesMax: options.inboundFrameBytesMax ?? INBOUND_FRAME_BYTES_MAX,
    clock,
  };
}

/** A pinned key must be an Ed25519 public key, or no node could ever match it. */
function checkedPin(name: string, key: Buffer): Buffer {
  try {
    noisePublicKeyFromIdentity(key);
  } catch {
    throw new TributaryError(Errors.INVALID_CONFIG, `${name} is not an Ed25519 public key (32 bytes)`);
  }
  return Buffer.from(key);
}
