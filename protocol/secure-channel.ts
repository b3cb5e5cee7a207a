// The secure channel: a Noise XX (or IK) handshake, then every frame sealed with libsodium
// secretstream. It sits between the WebSocket transport and the frame codec, taking a
// FrameTransport and giving one back, and never looks inside a frame. No primitive is
// written here: noise-handshake runs the handshake, sodium-native seals and opens.
//
// Wire layout, one inner frame per line:
//
//   handshake: Noise_XX_25519_ChaChaPoly_BLAKE2b, prologue 'tributary/1' unless configured
//     1  initiator -> responder  e                           exactly 32 bytes (no payload)
//     2  responder -> initiator  e, ee, s, es, payload       96 + payload bytes
//     3  initiator -> responder  s, se, payload              64 + payload bytes
//   or, when the initiator knows the responder's static key beforehand (a client that pins
//   the node's key): Noise_IK_25519_ChaChaPoly_BLAKE2b, one round trip fewer
//     1  initiator -> responder  e, es, s, ss, payload       96 + payload bytes
//     2  responder -> initiator  e, ee, se, payload          48 + payload bytes
//   The responder tells them apart by message 1: XX's is exactly 32 bytes, IK's at least 96.
//   sealed phase, each direction under its own Noise split key (initiator -> responder on
//   the first, responder -> initiator on the second):
//     first  secretstream header, 24 bytes in clear
//     then   each frame as one or more crypto_secretstream_xchacha20poly1305_push messages
//            of at most SEAL_CHUNK_BYTES (64 KiB) of it: encrypted tag (1) || encrypted
//            chunk || MAC (16), so chunk + 17 bytes. The tag says whether the frame goes
//            on (TAG_PUSH) or ends with this chunk (TAG_MESSAGE); a frame of up to 64 KiB
//            is one message.
//
// Why chunks: sealing and opening are the costliest steps per byte, and a large frame (a
// Fetch answer of megabytes) sealed whole is opened only after the last byte arrives. In
// chunks, the receiver opens the first while the sender seals the next, so the two ends
// work at once instead of in turn. The receiver's bound on a reassembled frame
// (`sealedFrameBytesMax`, changeable with `setFrameBytesMax`) is checked as chunks arrive,
// so a peer cannot make it buffer more than the bound plus one chunk.
//
// The header travels as the first sealed-phase frame on both sides rather than inside a
// handshake message: it is made from the split key, which the responder only has once
// message 3 has arrived, so it cannot ride in message 2; one rule for both sides keeps the
// reader simple, for one 24-byte message per direction per connection. A header changed in
// transit gives the reader a different stream state, so the first sealed frame then fails.
// secretstream counts messages itself: a frame replayed, reordered, dropped (except the
// last), truncated or taken from another session fails to open.
//
// What each side learns: the peer's X25519 static key (the Noise form of its Ed25519
// identity) and its handshake payload. XX sends the responder's payload before the
// initiator has authenticated, so it must hold nothing secret; the initiator's payload (a
// credential, say) goes in message 3, after `verifyRemote` has accepted the responder.

import { createRequire } from 'node:module';
import sodium from 'sodium-native';
import { systemClock, type Clock } from './clock.js';
import { assert, Errors, TributaryError } from './errors.js';
import type { IdentityKeyPair } from './key-file.js';
import { CloseCode, readFrames } from './transport.js';
import type { CloseInfo, FrameFlow, FrameListener, FrameTransport } from './transport.js';

export { generateIdentity } from './key-file.js';

/** X25519 keys for Noise: the Montgomery form of an Ed25519 identity. */
export interface StaticKeyPair {
  publicKey: Buffer;
  secretKey: Buffer;
}

/** What a peer showed in the handshake, handed to `verifyRemote` before the session is up. */
export interface RemotePeer {
  /** The peer's X25519 static key, proven by the handshake. */
  staticKey: Buffer;
  /** The payload of the peer's last handshake message (authenticated with its static key). */
  payload: Buffer;
}

export interface SecureChannelOptions {
  staticKeyPair: StaticKeyPair;
  /** Mixed into the handshake hash; both sides must use the same. Default 'tributary/1'. */
  prologue?: Buffer;
  /** The handshake must finish within this, or the connection is closed. Default 5000. */
  handshakeTimeoutMs?: number;
  /** Where handshakeTimeoutMs is timed; default the system clock. */
  clock?: Clock;
  /** A bigger handshake message closes the connection. Default 1024; 96..65535. */
  handshakeFrameBytesMax?: number;
  /**
   * Carried in our last handshake message (initiator: message 3; responder: message 2),
   * e.g. a credential. Must fit handshakeFrameBytesMax with the message's own bytes
   * (HANDSHAKE_MESSAGE3_BYTES_MIN for the initiator, HANDSHAKE_MESSAGE2_BYTES_MIN for the
   * responder). The responder's goes out before the initiator is authenticated.
   */
  payload?: Buffer;
  /**
   * Called once the peer's static key and payload are known and authenticated, before we
   * finish: the initiator calls it before sending message 3, so a client pinning the node's
   * key reveals nothing (not even its own identity) to an impostor. Throw to refuse: a
   * TributaryError is the rejection as thrown, anything else becomes UNAUTHORIZED; either
   * way the connection is closed with the error's message.
   */
  verifyRemote?: (remote: RemotePeer) => void;
  /**
   * Initiator only: the responder's X25519 static key, known beforehand (the Noise form of
   * a pinned node key). With it the handshake is Noise IK: two messages instead of three,
   * and our static key and payload travel in message 1, encrypted to that key, so only its
   * holder can read them. The payload must then fit handshakeFrameBytesMax with
   * IK_MESSAGE1_BYTES_MIN. `verifyRemote` still sees the responder's payload.
   */
  remoteStaticKey?: Buffer;
  /**
   * The largest frame the session will reassemble from the peer's chunks; a larger one
   * closes the connection with 1009. Default SEALED_FRAME_BYTES_MAX_DEFAULT (256 MiB).
   */
  sealedFrameBytesMax?: number;
}

/**
 * Where the bytes of frames being reassembled are accounted, beyond the session's own
 * bound: a receiver serving many peers bounds them all together. `reserve` says whether
 * `bytes` more may be held; what it granted is given back with `release` once the frame is
 * whole (or dropped).
 */
export interface ReassemblyBudget {
  reserve(bytes: number): boolean;
  release(bytes: number): void;
}

export interface SecureSession {
  /** Frames sent on it are sealed, frames read from it were opened and authenticated. */
  transport: FrameTransport;
  /** Changes the bound on frames reassembled from here on (e.g. raised once admitted). */
  setFrameBytesMax(bytes: number): void;
  /**
   * Accounts the chunks of frames being reassembled from here on in `budget` too; when it
   * refuses a chunk, the connection closes with 1013 (try again later).
   */
  setReassemblyBudget(budget: ReassemblyBudget): void;
  remoteStaticKey: Buffer;
  remotePayload: Buffer;
  /** The Noise handshake hash h, equal on both sides: a channel binding. 64 bytes. */
  handshakeHash: Buffer;
}

export const PROLOGUE_DEFAULT = Buffer.from('tributary/1');
export const HANDSHAKE_TIMEOUT_MS_DEFAULT = 5000;
export const HANDSHAKE_FRAME_BYTES_MAX_DEFAULT = 1024;

const KEY_BYTES = 32;
const MAC_BYTES = 16;
export const HANDSHAKE_MESSAGE1_BYTES = KEY_BYTES;
/** e (32), encrypted s (32 + 16), encrypted payload (payload + 16). */
export const HANDSHAKE_MESSAGE2_BYTES_MIN = KEY_BYTES + KEY_BYTES + MAC_BYTES + MAC_BYTES;
/** encrypted s (32 + 16), encrypted payload (payload + 16). */
export const HANDSHAKE_MESSAGE3_BYTES_MIN = KEY_BYTES + MAC_BYTES + MAC_BYTES;
/** IK message 1: e (32), encrypted s (32 + 16), encrypted payload (payload + 16). */
export const IK_MESSAGE1_BYTES_MIN = KEY_BYTES + KEY_BYTES + MAC_BYTES + MAC_BYTES;
/** IK message 2: e (32), encrypted payload (payload + 16). */
export const IK_MESSAGE2_BYTES_MIN = KEY_BYTES + MAC_BYTES;
/** Noise's own bound on a handshake message. */
const NOISE_MESSAGE_BYTES_MAX = 65535;

// --- noise-handshake, typed: it ships no declarations, so it is loaded with require. -----

interface NoiseState {
  initialise(prologue: Buffer, remoteStatic?: Buffer): void;
  send(payload?: Buffer): Buffer;
  recv(message: Buffer): Buffer;
  readonly complete: boolean;
  /** Split key we send with (initiator: k1, responder: k2). */
  readonly tx: Buffer | null;
  /** Split key we receive with. */
  readonly rx: Buffer | null;
  readonly rs: Buffer | null;
  readonly hash: Buffer | null;
}
type NoiseConstructor = new (pattern: 'XX' | 'IK', initiator: boolean, staticKeyPair: StaticKeyPair) => NoiseState;
const Noise = createRequire(import.meta.url)('noise-handshake') as NoiseConstructor;

// --- secretstream, typed as sodium-native 5 has it (@types/sodium-native describes v2). --

interface SecretStream {
  crypto_secretstream_xchacha20poly1305_STATEBYTES: number;
  crypto_secretstream_xchacha20poly1305_HEADERBYTES: number;
  crypto_secretstream_xchacha20poly1305_ABYTES: number;
  crypto_secretstream_xchacha20poly1305_TAG_MESSAGE: number;
  crypto_secretstream_xchacha20poly1305_TAG_PUSH: number;
  crypto_secretstream_xchacha20poly1305_init_push(state: Buffer, header: Buffer, key: Buffer): void;
  crypto_secretstream_xchacha20poly1305_init_pull(state: Buffer, header: Buffer, key: Buffer): void;
  crypto_secretstream_xchacha20poly1305_push(state: Buffer, ciphertext: Uint8Array, message: Uint8Array, ad: null, tag: number): number;
  crypto_secretstream_xchacha20poly1305_pull(state: Buffer, message: Uint8Array, tag: Buffer, ciphertext: Uint8Array, ad: null): number;
}
const secretstream = sodium as unknown as SecretStream;
const STATE_BYTES = secretstream.crypto_secretstream_xchacha20poly1305_STATEBYTES;
const TAG_MESSAGE = secretstream.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
const TAG_PUSH = secretstream.crypto_secretstream_xchacha20poly1305_TAG_PUSH;
export const SEALED_HEADER_BYTES = secretstream.crypto_secretstream_xchacha20poly1305_HEADERBYTES;
/** Bytes a sealed frame carries beyond its plaintext: tag (1) + MAC (16). */
export const SEALED_FRAME_OVERHEAD_BYTES = secretstream.crypto_secretstream_xchacha20poly1305_ABYTES;

export const SEALED_FRAME_FAILED = 'sealed frame failed authentication';
/** Plaintext bytes per sealed message; larger frames are sent in chunks of this size. */
export const SEAL_CHUNK_BYTES = 64 * 1024;
/** The largest message of the sealed phase: one chunk and its overhead. */
export const SEALED_MESSAGE_BYTES_MAX = SEAL_CHUNK_BYTES + SEALED_FRAME_OVERHEAD_BYTES;
export const SEALED_FRAME_BYTES_MAX_DEFAULT = 256 * 1024 * 1024;

// --- keys ------------------------------------------------------------------------------

/** An Ed25519 identity's X25519 form, the static key it uses in Noise. */
export function noiseKeyPairFromIdentity(identity: IdentityKeyPair): StaticKeyPair {
  if (identity.secretKey.length !== sodium.crypto_sign_SECRETKEYBYTES) {
    throw new TributaryError(Errors.INVALID_CONFIG, 'identity secret key must be 64 bytes (Ed25519)');
  }
  const secretKey = Buffer.alloc(KEY_BYTES);
  sodium.crypto_sign_ed25519_sk_to_curve25519(secretKey, identity.secretKey);
  return { publicKey: noisePublicKeyFromIdentity(identity.publicKey), secretKey };
}

/**
 * An Ed25519 public key's X25519 form: what `remoteStaticKey` holds for a peer with that
 * identity, so a pinned identity key or a credential's subject is compared through this.
 */
export function noisePublicKeyFromIdentity(identityPublicKey: Buffer): Buffer {
  const publicKey = Buffer.alloc(KEY_BYTES);
  try {
    if (identityPublicKey.length !== sodium.crypto_sign_PUBLICKEYBYTES) throw new Error('wrong length');
    sodium.crypto_sign_ed25519_pk_to_curve25519(publicKey, identityPublicKey);
  } catch {
    throw new TributaryError(Errors.INVALID_CONFIG, 'not an Ed25519 public key');
  }
  return publicKey;
}

// --- sealing ---------------------------------------------------------------------------

/** One direction's sending half: seals frames in order under a split key. */
export class FrameSealer {
  private readonly state = Buffer.alloc(STATE_BYTES);
  /** Sent before the first sealed frame. */
  readonly header = Buffer.alloc(SEALED_HEADER_BYTES);

  constructor(key: Buffer) {
    secretstream.crypto_secretstream_xchacha20poly1305_init_push(this.state, this.header, key);
  }

  /** Seals a whole frame as one message (the caller keeps it within SEAL_CHUNK_BYTES). */
  seal(frame: Uint8Array): Buffer {
    return this.sealChunk(frame, false);
  }

  /** Seals one chunk of a frame; `more` says the frame continues in the next chunk. */
  sealChunk(chunk: Uint8Array, more: boolean, into?: Buffer): Buffer {
    const sealed = into ?? Buffer.allocUnsafe(chunk.byteLength + SEALED_FRAME_OVERHEAD_BYTES);
    secretstream.crypto_secretstream_xchacha20poly1305_push(this.state, sealed, chunk, null, more ? TAG_PUSH : TAG_MESSAGE);
    return sealed;
  }
}

/** One direction's receiving half: opens frames in the order they were sealed. */
export class FrameOpener {
  private readonly state = Buffer.alloc(STATE_BYTES);
  private readonly tag = Buffer.alloc(1);

  /** `header` must be SEALED_HEADER_BYTES long (checked by the caller, from the wire). */
  constructor(key: Buffer, header: Buffer) {
    secretstream.crypto_secretstream_xchacha20poly1305_init_pull(this.state, header, key);
  }

  /**
   * The frame, or null if it fails to open: tampered, replayed, reordered, truncated, or
   * sealed under another key. After a null the stream state is not to be trusted again.
   */
  open(sealed: Buffer): Buffer | null {
    const chunk = this.openChunk(sealed);
    return chunk === null || chunk.more ? null : chunk.data;
  }

  /** One chunk and whether its frame continues, or null as for `open`. */
  openChunk(sealed: Buffer): { data: Buffer; more: boolean } | null {
    // Checked before allocating: a frame shorter than the overhead cannot be one we sealed.
    if (sealed.length < SEALED_FRAME_OVERHEAD_BYTES) return null;
    const data = Buffer.allocUnsafe(sealed.length - SEALED_FRAME_OVERHEAD_BYTES);
    try {
      secretstream.crypto_secretstream_xchacha20poly1305_pull(this.state, data, this.tag, sealed, null);
    } catch {
      return null;
    }
    // We only ever push TAG_MESSAGE and TAG_PUSH; any other tag, even authentic, is not
    // our protocol (REKEY would change the state, FINAL would end the stream).
    if (this.tag[0] === TAG_MESSAGE) return { data, more: false };
    if (this.tag[0] === TAG_PUSH) return { data, more: true };
    return null;
  }
}

const DONE: IteratorResult<Buffer> = { value: undefined, done: true };
/** The start of every session's read chain, shared: most sessions are read by listen(). */
const READ_NOTHING: Promise<unknown> = Promise.resolve();

/**
 * The FrameTransport of an established session. Reading pulls inner frames only as its
 * reader asks, so the inner transport's backpressure holds; a frame that fails to open
 * closes the connection and ends the reader, and nothing of it is yielded.
 */
class SealedTransport implements FrameTransport {
  private opener: FrameOpener | null = null;
  private ended = false;
  /** Reads run one at a time, so frames open in arrival order even under concurrent next(). */
  private reading: Promise<unknown> = READ_NOTHING;
  /** Made on first use: sessions read by listen() never need it. */
  private iterator: AsyncIterator<Buffer> | null = null;
  /** Chunks of the frame being reassembled, and their bytes. */
  private parts: Buffer[] = [];
  private partsBytes = 0;
  /** Accounts `parts` beyond this session, when set; `reserved` is what it granted. */
  budget: ReassemblyBudget | null = null;
  private reserved = 0;

  constructor(
    private readonly inner: FrameTransport,
    private readonly source: AsyncIterator<Buffer>,
    private readonly sealer: FrameSealer,
    /** Zeroed once the peer's header has arrived and the opener holds it. */
    private readonly receiveKey: Buffer,
    public frameBytesMax: number,
  ) {}

  private async readOne(): Promise<IteratorResult<Buffer>> {
    for (;;) {
      if (this.ended) return DONE;
      let next: IteratorResult<Buffer>;
      try {
        next = await this.source.next();
      } catch {
        next = DONE; // transports end their iterators rather than throw; be safe anyway
      }
      if (next.done) {
        this.ended = true;
        this.dropParts();
        return DONE;
      }
      const frame = this.take(next.value);
      if (this.ended) return DONE;
      if (frame !== undefined) return { value: frame, done: false };
    }
  }

  /**
   * Reads by callback (FrameTransport.listen): each message of the inner transport is
   * opened as it arrives, and whole frames go to `listener`. Not with the iterator.
   */
  listen(listener: FrameListener): FrameFlow {
    let endSent = false;
    const end = (): void => {
      if (endSent) return;
      endSent = true;
      listener.end();
    };
    return readFrames(this.inner, {
      frame: (message) => {
        if (this.ended) return;
        const frame = this.take(message);
        if (this.ended) end();
        else if (frame !== undefined) listener.frame(frame);
      },
      end: () => {
        this.ended = true;
        this.dropParts();
        end();
      },
    });
  }

  /**
   * One message of the inner transport: the stream header, a chunk, or a whole frame,
   * which is returned. A message that fails to open, or breaks a rule, ends the reading
   * (`ended`) and closes the connection.
   */
  private take(message: Buffer): Buffer | undefined {
    if (this.opener === null) {
      this.acceptHeader(message);
      return undefined;
    }
    const chunk = this.opener.openChunk(message);
    if (chunk === null) {
      this.fail(SEALED_FRAME_FAILED);
      return undefined;
    }
    if (this.partsBytes + chunk.data.length > this.frameBytesMax) {
      this.ended = true;
      this.dropParts();
      this.inner.close(CloseCode.TOO_BIG, `frame of more than ${this.frameBytesMax} bytes`);
      return undefined;
    }
    if (chunk.more) {
      // Senders fill every chunk but a frame's last: a short one could only make us keep
      // many small buffers for few bytes (and a peer could send them without end).
      if (chunk.data.length !== SEAL_CHUNK_BYTES) {
        this.fail(`sealed chunk of ${chunk.data.length} bytes before the end of a frame; such chunks are ${SEAL_CHUNK_BYTES}`);
        return undefined;
      }
      if (this.budget !== null) {
        if (!this.budget.reserve(chunk.data.length)) {
          this.ended = true;
          this.dropParts();
          this.inner.close(CloseCode.TRY_AGAIN_LATER, 'the node holds as many bytes of unfinished frames as it may; send again later');
          return undefined;
        }
        this.reserved += chunk.data.length;
      }
      this.parts.push(chunk.data);
      this.partsBytes += chunk.data.length;
      return undefined;
    }
    if (this.parts.length === 0) return chunk.data;
    this.parts.push(chunk.data);
    const frame = Buffer.concat(this.parts, this.partsBytes + chunk.data.length);
    this.dropParts();
    return frame;
  }

  /** Forgets the frame being reassembled, giving its bytes back to the budget. */
  dropParts(): void {
    this.parts = [];
    this.partsBytes = 0;
    if (this.reserved > 0) this.budget?.release(this.reserved);
    this.reserved = 0;
  }

  private acceptHeader(header: Buffer): void {
    if (header.length !== SEALED_HEADER_BYTES) {
      this.fail(`sealed stream header is ${header.length} bytes, not ${SEALED_HEADER_BYTES}`);
      return;
    }
    this.opener = new FrameOpener(this.receiveKey, header);
    sodium.sodium_memzero(this.receiveKey);
  }

  private fail(reason: string): void {
    this.ended = true;
    this.dropParts();
    this.inner.close(CloseCode.PROTOCOL_ERROR, reason);
  }

  send(frame: Uint8Array): void {
    if (this.inner.isClosed) return;
    if (frame.byteLength <= SEAL_CHUNK_BYTES) {
      this.inner.send(this.sealer.seal(frame));
      return;
    }
    // One allocation for every chunk of the frame: a Fetch answer of megabytes would
    // otherwise be a hundred buffers for the garbage collector.
    const chunks = Math.ceil(frame.byteLength / SEAL_CHUNK_BYTES);
    const out = Buffer.allocUnsafe(frame.byteLength + chunks * SEALED_FRAME_OVERHEAD_BYTES);
    let to = 0;
    for (let at = 0; at < frame.byteLength; at += SEAL_CHUNK_BYTES) {
      const end = Math.min(at + SEAL_CHUNK_BYTES, frame.byteLength);
      const sealed = out.subarray(to, to + (end - at) + SEALED_FRAME_OVERHEAD_BYTES);
      to += sealed.length;
      this.inner.send(this.sealer.sealChunk(frame.subarray(at, end), end < frame.byteLength, sealed));
    }
  }

  get bufferedBytes(): number {
    return this.inner.bufferedBytes;
  }

  drained(lowBytes: number): Promise<void> {
    return this.inner.drained(lowBytes);
  }

  close(code?: number, reason?: string): void {
    this.inner.close(code, reason);
  }

  get closed(): Promise<CloseInfo> {
    return this.inner.closed;
  }

  get isClosed(): boolean {
    return this.inner.isClosed;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    this.iterator ??= {
      next: () => {
        const result = this.reading.then(() => this.readOne());
        this.reading = result;
        return result;
      },
      return: async () => {
        this.ended = true;
        await this.source.return?.();
        return DONE;
      },
    };
    return this.iterator;
  }
}

// --- the handshake ---------------------------------------------------------------------

/** A handshake failure: the error the promise rejects with, and how the connection closes. */
class HandshakeFailure extends Error {
  constructor(
    readonly error: TributaryError,
    readonly closeCode: number,
  ) {
    super(error.message);
  }
}

const malformed = (detail: string): HandshakeFailure => new HandshakeFailure(new TributaryError(Errors.INVALID_REQUEST, detail), CloseCode.PROTOCOL_ERROR);
const tooBig = (detail: string): HandshakeFailure => new HandshakeFailure(new TributaryError(Errors.INVALID_REQUEST, detail), CloseCode.TOO_BIG);
const refused = (detail: string, cause?: unknown): HandshakeFailure =>
  new HandshakeFailure(new TributaryError(Errors.UNAUTHORIZED, detail, { cause }), CloseCode.POLICY_VIOLATION);

interface Limits {
  prologue: Buffer;
  timeoutMs: number;
  frameBytesMax: number;
  payload: Buffer;
  sealedFrameBytesMax: number;
}

function resolveLimits(options: SecureChannelOptions, initiator: boolean): Limits {
  const bad = (detail: string) => new HandshakeFailure(new TributaryError(Errors.INVALID_CONFIG, detail), CloseCode.INTERNAL_ERROR);
  const { publicKey, secretKey } = options.staticKeyPair;
  if (publicKey.length !== KEY_BYTES || secretKey.length !== KEY_BYTES) throw bad('static key pair must be X25519 keys of 32 bytes');
  const frameBytesMax = options.handshakeFrameBytesMax ?? HANDSHAKE_FRAME_BYTES_MAX_DEFAULT;
  if (!Number.isInteger(frameBytesMax) || frameBytesMax < HANDSHAKE_MESSAGE2_BYTES_MIN || frameBytesMax > NOISE_MESSAGE_BYTES_MAX) {
    throw bad(`handshakeFrameBytesMax must be an integer from ${HANDSHAKE_MESSAGE2_BYTES_MIN} to ${NOISE_MESSAGE_BYTES_MAX}`);
  }
  const timeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT;
  if (!(timeoutMs > 0)) throw bad('handshakeTimeoutMs must be positive');
  const payload = options.payload ?? Buffer.alloc(0);
  if (options.remoteStaticKey !== undefined && (!initiator || options.remoteStaticKey.length !== KEY_BYTES)) {
    throw bad('remoteStaticKey is for the initiator, and must be an X25519 key of 32 bytes');
  }
  const ownLastMessageBytes = !initiator ? HANDSHAKE_MESSAGE2_BYTES_MIN : options.remoteStaticKey ? IK_MESSAGE1_BYTES_MIN : HANDSHAKE_MESSAGE3_BYTES_MIN;
  const payloadMax = frameBytesMax - ownLastMessageBytes;
  if (payload.length > payloadMax) throw bad(`handshake payload is ${payload.length} bytes; at most ${payloadMax} fit handshakeFrameBytesMax`);
  const sealedFrameBytesMax = options.sealedFrameBytesMax ?? SEALED_FRAME_BYTES_MAX_DEFAULT;
  if (!Number.isSafeInteger(sealedFrameBytesMax) || sealedFrameBytesMax < 1) throw bad('sealedFrameBytesMax must be a positive integer');
  return { prologue: options.prologue ?? PROLOGUE_DEFAULT, timeoutMs, frameBytesMax, payload, sealedFrameBytesMax };
}

/** Reads handshake message `n`, refusing an oversized one before anything is done with it. */
async function readMessage(inner: FrameTransport, source: AsyncIterator<Buffer>, n: number, limits: Limits): Promise<Buffer> {
  const next = await source.next();
  if (next.done) {
    const info = inner.isClosed ? await inner.closed : null;
    const how = info ? ` (${info.code}${info.reason ? `: ${info.reason}` : ''})` : '';
    throw new HandshakeFailure(new TributaryError(Errors.NETWORK, `connection closed during the handshake, before message ${n}${how}`), CloseCode.GOING_AWAY);
  }
  const message = next.value;
  if (message.length > limits.frameBytesMax) throw tooBig(`handshake message ${n} is ${message.length} bytes, over the limit of ${limits.frameBytesMax}`);
  return message;
}

function checkAtLeast(n: number, message: Buffer, bytesMin: number): void {
  if (message.length < bytesMin) throw malformed(`handshake message ${n} is ${message.length} bytes, shorter than the minimum of ${bytesMin}`);
}

/** Runs a noise-handshake step; whatever it throws is a failed authentication of message `n`. */
function noiseStep<T>(n: number, step: () => T): T {
  try {
    return step();
  } catch (err) {
    throw refused(`handshake message ${n} failed authentication`, err);
  }
}

function verify(options: SecureChannelOptions, remote: RemotePeer): void {
  if (!options.verifyRemote) return;
  try {
    options.verifyRemote(remote);
  } catch (err) {
    if (err instanceof TributaryError) throw new HandshakeFailure(err, CloseCode.POLICY_VIOLATION);
    throw refused(`remote peer refused: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

function established(inner: FrameTransport, source: AsyncIterator<Buffer>, noise: NoiseState, remotePayload: Buffer, limits: Limits): SecureSession {
  const { tx, rx, rs, hash } = noise;
  assert(noise.complete && tx && rx && rs && hash, 'noise-handshake finished without split keys');
  const sealer = new FrameSealer(tx);
  sodium.sodium_memzero(tx);
  inner.send(sealer.header);
  const transport = new SealedTransport(inner, source, sealer, rx, limits.sealedFrameBytesMax);
  return {
    transport,
    setFrameBytesMax: (bytes) => void (transport.frameBytesMax = bytes),
    setReassemblyBudget: (budget) => void (transport.budget = budget),
    remoteStaticKey: rs,
    remotePayload,
    handshakeHash: hash,
  };
}

async function initiatorSteps(inner: FrameTransport, source: AsyncIterator<Buffer>, options: SecureChannelOptions, limits: Limits): Promise<SecureSession> {
  if (options.remoteStaticKey) return initiatorStepsIK(inner, source, options, options.remoteStaticKey, limits);
  const noise = new Noise('XX', true, options.staticKeyPair);
  noise.initialise(limits.prologue);
  inner.send(noise.send());
  const message2 = await readMessage(inner, source, 2, limits);
  checkAtLeast(2, message2, HANDSHAKE_MESSAGE2_BYTES_MIN);
  const remotePayload = noiseStep(2, () => noise.recv(message2));
  const remoteStaticKey = noise.rs;
  assert(remoteStaticKey, 'noise-handshake gave no remote static key after message 2');
  verify(options, { staticKey: remoteStaticKey, payload: remotePayload });
  const message3 = noiseStep(3, () => noise.send(limits.payload));
  inner.send(message3);
  return established(inner, source, noise, remotePayload, limits);
}

/** IK: the responder's key is known, so message 1 carries our static key and payload. */
async function initiatorStepsIK(
  inner: FrameTransport,
  source: AsyncIterator<Buffer>,
  options: SecureChannelOptions,
  remoteStaticKey: Buffer,
  limits: Limits,
): Promise<SecureSession> {
  const noise = new Noise('IK', true, options.staticKeyPair);
  noise.initialise(limits.prologue, Buffer.from(remoteStaticKey));
  inner.send(noiseStep(1, () => noise.send(limits.payload)));
  let message2: Buffer;
  try {
    message2 = await readMessage(inner, source, 2, limits);
  } catch (err) {
    // A responder that cannot open message 1 (it does not hold the key we were given) or
    // refuses us closes with 1008 instead of answering: no retry changes that. (A
    // responder that ran out of time closes with 1013, which is worth another try.)
    const info = inner.isClosed ? await inner.closed : null;
    if (err instanceof HandshakeFailure && info?.code === CloseCode.POLICY_VIOLATION) {
      throw refused(`the peer does not hold the pinned key, or refused us: it closed on IK message 1 (${info.reason || 'no reason given'})`, err);
    }
    throw err;
  }
  checkAtLeast(2, message2, IK_MESSAGE2_BYTES_MIN);
  // Only the holder of remoteStaticKey's secret can have made a message 2 that opens.
  const remotePayload = noiseStep(2, () => noise.recv(message2));
  verify(options, { staticKey: remoteStaticKey, payload: remotePayload });
  return established(inner, source, noise, remotePayload, limits);
}

async function responderSteps(inner: FrameTransport, source: AsyncIterator<Buffer>, options: SecureChannelOptions, limits: Limits): Promise<SecureSession> {
  const message1 = await readMessage(inner, source, 1, limits);
  if (message1.length >= IK_MESSAGE1_BYTES_MIN) return responderStepsIK(inner, source, options, message1, limits);
  const noise = new Noise('XX', false, options.staticKeyPair);
  noise.initialise(limits.prologue);
  // XX's message 1 is exactly e: a payload there would travel unencrypted and unauthenticated.
  if (message1.length !== HANDSHAKE_MESSAGE1_BYTES) {
    throw malformed(`handshake message 1 must be ${HANDSHAKE_MESSAGE1_BYTES} bytes (XX) or at least ${IK_MESSAGE1_BYTES_MIN} (IK), got ${message1.length}`);
  }
  noiseStep(1, () => noise.recv(message1));
  // The ee DH of message 2 is where a low-order ephemeral key from message 1 is refused.
  inner.send(noiseStep(1, () => noise.send(limits.payload)));
  const message3 = await readMessage(inner, source, 3, limits);
  checkAtLeast(3, message3, HANDSHAKE_MESSAGE3_BYTES_MIN);
  const remotePayload = noiseStep(3, () => noise.recv(message3));
  const remoteStaticKey = noise.rs;
  assert(remoteStaticKey, 'noise-handshake gave no remote static key after message 3');
  verify(options, { staticKey: remoteStaticKey, payload: remotePayload });
  return established(inner, source, noise, remotePayload, limits);
}

/**
 * IK as the responder: message 1 already holds the initiator's static key and payload, so
 * it is checked before we answer; a refused initiator gets no message 2. A replayed message
 * 1 gets a message 2 that only the original initiator's ephemeral key could use.
 */
function responderStepsIK(inner: FrameTransport, source: AsyncIterator<Buffer>, options: SecureChannelOptions, message1: Buffer, limits: Limits): SecureSession {
  const noise = new Noise('IK', false, options.staticKeyPair);
  noise.initialise(limits.prologue);
  const remotePayload = noiseStep(1, () => noise.recv(message1));
  const remoteStaticKey = noise.rs;
  assert(remoteStaticKey, 'noise-handshake gave no remote static key after IK message 1');
  verify(options, { staticKey: remoteStaticKey, payload: remotePayload });
  inner.send(noiseStep(2, () => noise.send(limits.payload)));
  return established(inner, source, noise, remotePayload, limits);
}

type Steps = typeof initiatorSteps;

/** Closes `inner` for a failed handshake; returns what the promise rejects with. */
function closeFor(inner: FrameTransport, err: unknown): unknown {
  if (err instanceof HandshakeFailure) {
    inner.close(err.closeCode, err.error.detail);
    return err.error;
  }
  // Not an operating failure: a bug here or in a library. Close, and report it as it is.
  inner.close(CloseCode.INTERNAL_ERROR, 'secure channel failed');
  return err;
}

function handshake(inner: FrameTransport, options: SecureChannelOptions, initiator: boolean, steps: Steps): Promise<SecureSession> {
  let limits: Limits;
  try {
    limits = resolveLimits(options, initiator);
  } catch (err) {
    return Promise.reject(closeFor(inner, err));
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      reject(closeFor(inner, err));
    };
    const timer = (options.clock ?? systemClock).setTimeout(() => {
      fail(new HandshakeFailure(new TributaryError(Errors.REQUEST_TIMED_OUT, `handshake did not finish within ${limits.timeoutMs} ms`), CloseCode.TRY_AGAIN_LATER));
    }, limits.timeoutMs);
    // Frames are read through one iterator for the whole connection: the handshake reads
    // its messages from it and the session goes on from the same place.
    const source = inner[Symbol.asyncIterator]();
    steps(inner, source, options, limits).then((session) => {
      if (settled) return; // timed out just as it finished: the connection is already closed
      settled = true;
      timer.cancel();
      resolve(session);
    }, fail);
  });
}

/**
 * Runs Noise XX over `inner` as the initiator (the client). Resolves once message 3 and our
 * stream header are sent, with a transport whose frames are sealed and opened. Rejects with
 * a TributaryError, and closes `inner` with its message, if the handshake fails:
 * INVALID_REQUEST for a malformed or oversized message, UNAUTHORIZED for one that fails
 * authentication or a peer `verifyRemote` refuses, REQUEST_TIMED_OUT past
 * handshakeTimeoutMs, NETWORK if the connection closes first.
 */
export function secureInitiator(inner: FrameTransport, options: SecureChannelOptions): Promise<SecureSession> {
  return handshake(inner, options, true, initiatorSteps);
}

/** Runs Noise XX over `inner` as the responder (the node). As `secureInitiator`. */
export function secureResponder(inner: FrameTransport, options: SecureChannelOptions): Promise<SecureSession> {
  return handshake(inner, options, false, responderSteps);
}
