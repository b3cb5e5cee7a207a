// The secure channel, over memoryPipe and over real `ws` WebSockets on 127.0.0.1: the
// handshake and what each side learns, frames both ways, pinning, every way a sealed frame
// can be tampered with, bad handshake messages from a table, replayed handshakes, timeouts,
// no plaintext on the wire; then a seeded fuzz of the responder's handshake and of the
// sealed phase (memory only): nothing crashes, every case settles, nothing unauthenticated
// is ever yielded.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import sodium from 'sodium-native';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { ManualClock } from './clock.js';
import { Errors, TributaryError } from './errors.js';
import {
  FrameOpener,
  FrameSealer,
  generateIdentity,
  HANDSHAKE_MESSAGE2_BYTES_MIN,
  HANDSHAKE_MESSAGE3_BYTES_MIN,
  IK_MESSAGE1_BYTES_MIN,
  IK_MESSAGE2_BYTES_MIN,
  noiseKeyPairFromIdentity,
  noisePublicKeyFromIdentity,
  PROLOGUE_DEFAULT,
  SEAL_CHUNK_BYTES,
  SEALED_FRAME_FAILED,
  SEALED_FRAME_OVERHEAD_BYTES,
  SEALED_HEADER_BYTES,
  secureInitiator,
  secureResponder,
} from './secure-channel.js';
import type { SecureChannelOptions, SecureSession, StaticKeyPair } from './secure-channel.js';
import { Rng, testSeeds, withSeedAsync } from './testdata/helpers.js';
import { CloseCode, forwardingTransport, memoryPipe, socketTransport } from './transport.js';
import type { CloseInfo, FrameTransport } from './transport.js';
import { until } from '../test/helpers/until.js';

const MIB = 1024 * 1024;

// --- keys ------------------------------------------------------------------------------

interface Party {
  identity: { publicKey: Buffer; secretKey: Buffer };
  keys: StaticKeyPair;
}

function party(): Party {
  const identity = generateIdentity();
  return { identity, keys: noiseKeyPairFromIdentity(identity) };
}

const node = party();
const device = party();
const impostor = party();

// --- links: a pair of joined inner transports ------------------------------------------

interface Link {
  client: FrameTransport;
  server: FrameTransport;
  close(): Promise<void>;
}

async function memoryLink(): Promise<Link> {
  const [client, server] = memoryPipe();
  return {
    client,
    server,
    close: async () => {
      client.close();
      server.close();
    },
  };
}

/** A WebSocketServer on an ephemeral port and one client, each end wrapped by socketTransport. */
async function wsLink(): Promise<Link> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const { port } = wss.address() as AddressInfo;
  // Wrapped inside the event handlers, so no message can arrive before the transport listens.
  const serverSide = new Promise<FrameTransport>((resolve) => wss.once('connection', (socket) => resolve(socketTransport(socket))));
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
  const client = await new Promise<FrameTransport>((resolve, reject) => {
    socket.once('open', () => resolve(socketTransport(socket)));
    socket.once('error', reject);
  });
  const server = await serverSide;
  return {
    client,
    server,
    close: async () => {
      socket.terminate();
      for (const s of wss.clients) s.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

const LINKS = [
  { name: 'memoryPipe', open: memoryLink },
  { name: 'ws on 127.0.0.1', open: wsLink },
] as const;

async function withLink<T>(open: () => Promise<Link>, body: (link: Link) => Promise<T>): Promise<T> {
  const link = await open();
  try {
    return await body(link);
  } finally {
    await link.close();
  }
}

/**
 * `inner` with a hook on what it sends: the hook gets each frame (a copy) and its index on
 * this transport, and returns the frames to send in its place (none to drop it, two to
 * duplicate, something else to tamper).
 */
function intercept(inner: FrameTransport, hook: (frame: Buffer, index: number) => Buffer[]): FrameTransport {
  let index = 0;
  return forwardingTransport(inner, {
    send(frame) {
      for (const f of hook(Buffer.from(frame), index++)) inner.send(f);
    },
  });
}

/** Records a copy of every frame `inner` sends. */
function recording(inner: FrameTransport): { transport: FrameTransport; sent: Buffer[] } {
  const sent: Buffer[] = [];
  return {
    sent,
    transport: intercept(inner, (frame) => {
      sent.push(frame);
      return [frame];
    }),
  };
}

// On the initiator's inner transport: 0 message 1, 1 message 3, 2 its stream header, then
// sealed frames. On the responder's: 0 message 2, 1 its header, then sealed frames.
const INITIATOR_FIRST_SEALED = 3;
const RESPONDER_FIRST_SEALED = 2;

function clientOptions(extra: Partial<SecureChannelOptions> = {}): SecureChannelOptions {
  return { staticKeyPair: device.keys, payload: Buffer.from('device credential'), ...extra };
}

function serverOptions(extra: Partial<SecureChannelOptions> = {}): SecureChannelOptions {
  return { staticKeyPair: node.keys, payload: Buffer.from('node hello'), ...extra };
}

async function connect(
  client: FrameTransport,
  server: FrameTransport,
  options: { client?: Partial<SecureChannelOptions>; server?: Partial<SecureChannelOptions> } = {},
): Promise<[SecureSession, SecureSession]> {
  return Promise.all([secureInitiator(client, clientOptions(options.client)), secureResponder(server, serverOptions(options.server))]);
}

// --- reading and outcomes --------------------------------------------------------------

async function readAll(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const frame of source) out.push(frame);
  return out;
}

/**
 * Reads until the transport ends, an END frame arrives or `framesMax` frames were read.
 * Tampering tests send END last: the channel must have closed before it, and if it did not,
 * the test fails on what was read rather than by waiting for an end that never comes.
 */
const END = Buffer.from('END');
async function readUntilEnd(source: AsyncIterable<Buffer>, framesMax: number): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const frame of source) {
    if (frame.equals(END)) break;
    out.push(frame);
    if (out.length === framesMax) break;
  }
  return out;
}

async function readCount(source: FrameTransport, count: number): Promise<Buffer[]> {
  const it = source[Symbol.asyncIterator]();
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const next = await it.next();
    if (next.done) throw new Error(`transport ended after ${i} of ${count} frames`);
    out.push(next.value);
  }
  return out;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

function outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** The TributaryError a promise rejected with, checked to carry `errorName` and `detail`. */
async function rejection(p: Promise<unknown>, errorName: string, detail: RegExp): Promise<TributaryError> {
  const result = await outcome(p);
  if (result.ok) throw new Error(`expected ${errorName}, but it resolved`);
  const err = result.error;
  if (!(err instanceof TributaryError)) throw new Error(`expected TributaryError ${errorName}, got ${String(err)}`, { cause: err });
  expect(err.errorName, err.message).toBe(errorName);
  expect(err.detail).toMatch(detail);
  return err;
}

function expectClose(info: CloseInfo, code: number, reason: RegExp | string): void {
  expect(info.code, `closed with ${info.code}: ${info.reason}`).toBe(code);
  if (typeof reason === 'string') expect(info.reason).toBe(reason);
  else expect(info.reason).toMatch(reason);
}

/** Lets queued microtasks run out: everything memoryPipe has scheduled is delivered. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function flipBit(frame: Buffer, bit: number): Buffer {
  const out = Buffer.from(frame);
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
}

// --- keys ------------------------------------------------------------------------------

describe('identity keys', () => {
  it('the Noise key pair is the X25519 form of the Ed25519 identity, and its public half matches', () => {
    const { identity, keys } = party();
    const derived = Buffer.alloc(32);
    sodium.crypto_scalarmult_base(derived, keys.secretKey);
    expect(derived.equals(keys.publicKey)).toBe(true);
    expect(noisePublicKeyFromIdentity(identity.publicKey).equals(keys.publicKey)).toBe(true);
    expect(keys.publicKey.equals(identity.publicKey)).toBe(false);
  });

  it('refuses what is not an Ed25519 public key', () => {
    expect(() => noisePublicKeyFromIdentity(Buffer.alloc(31))).toThrow(/not an Ed25519 public key/);
    // Not a point on the curve: libsodium refuses it.
    const offCurve = Buffer.alloc(32, 0xff);
    expect(() => noisePublicKeyFromIdentity(offCurve)).toThrow(TributaryError);
  });
});

// --- the suite, over each link ---------------------------------------------------------

describe.each(LINKS)('secure channel over $name', ({ open }) => {
  it('handshake: each side learns the other static key and payload, and the same handshake hash', async () => {
    await withLink(open, async ({ client, server }) => {
      const [c, s] = await connect(client, server);
      expect(c.remoteStaticKey.equals(node.keys.publicKey)).toBe(true);
      expect(s.remoteStaticKey.equals(device.keys.publicKey)).toBe(true);
      expect(s.remoteStaticKey.equals(noisePublicKeyFromIdentity(device.identity.publicKey))).toBe(true);
      expect(c.remotePayload.toString()).toBe('node hello');
      expect(s.remotePayload.toString()).toBe('device credential');
      expect(c.handshakeHash.length).toBe(64);
      expect(c.handshakeHash.equals(s.handshakeHash)).toBe(true);
    });
  });

  it('empty payloads are the default', async () => {
    await withLink(open, async ({ client, server }) => {
      const [c, s] = await Promise.all([secureInitiator(client, { staticKeyPair: device.keys }), secureResponder(server, { staticKeyPair: node.keys })]);
      expect(c.remotePayload.length).toBe(0);
      expect(s.remotePayload.length).toBe(0);
    });
  });

  it('frames of 0 B to 1 MiB round-trip both ways, in order (seeded sizes)', async () => {
    await withLink(open, async ({ client, server }) => {
      const [c, s] = await connect(client, server);
      const rng = new Rng(0x5ec0de);
      const frames = (count: number): Buffer[] => {
        const sizes = [0, 1, 16, 17, 24, MIB];
        while (sizes.length < count) sizes.push(rng.bool(0.2) ? rng.int(0, MIB) : Math.floor(2 ** (rng.float() * 20)));
        return sizes.map((size, i) => {
          const f = rng.bytes(size);
          if (size >= 4) f.writeUInt32BE(i, 0); // a frame out of order shows up as a wrong index
          return f;
        });
      };
      const toServer = frames(120);
      const toClient = frames(120);
      const serverGot = readCount(s.transport, toServer.length);
      const clientGot = readCount(c.transport, toClient.length);
      for (let i = 0; i < Math.max(toServer.length, toClient.length); i++) {
        if (i < toServer.length) c.transport.send(toServer[i]);
        if (i < toClient.length) s.transport.send(toClient[i]);
      }
      const [atServer, atClient] = await Promise.all([serverGot, clientGot]);
      expect(atServer.length).toBe(toServer.length);
      atServer.forEach((f, i) => expect(f.equals(toServer[i]), `frame ${i} to the server`).toBe(true));
      atClient.forEach((f, i) => expect(f.equals(toClient[i]), `frame ${i} to the client`).toBe(true));
    });
  });

  it('a sealed frame is its plaintext plus 17 bytes, after a 24-byte header', async () => {
    await withLink(open, async ({ client, server }) => {
      const rec = recording(client);
      const [c, s] = await connect(rec.transport, server);
      c.transport.send(Buffer.alloc(100));
      await readCount(s.transport, 1);
      expect(rec.sent.map((f) => f.length)).toEqual([32, HANDSHAKE_MESSAGE3_BYTES_MIN + 'device credential'.length, SEALED_HEADER_BYTES, 100 + SEALED_FRAME_OVERHEAD_BYTES]);
    });
  });

  it('a frame over 64 KiB travels as sealed chunks and arrives whole', async () => {
    await withLink(open, async ({ client, server }) => {
      const rec = recording(client);
      const [c, s] = await connect(rec.transport, server);
      const big = Buffer.alloc(3 * SEAL_CHUNK_BYTES + 1000);
      for (let i = 0; i < big.length; i++) big[i] = i % 251;
      c.transport.send(big);
      c.transport.send(Buffer.from('after'));
      const [got, after] = await readCount(s.transport, 2);
      expect(got.equals(big)).toBe(true);
      expect(String(after)).toBe('after');
      const chunk = SEAL_CHUNK_BYTES + SEALED_FRAME_OVERHEAD_BYTES;
      expect(rec.sent.slice(3).map((f) => f.length)).toEqual([chunk, chunk, chunk, 1000 + SEALED_FRAME_OVERHEAD_BYTES, 5 + SEALED_FRAME_OVERHEAD_BYTES]);
    });
  });

  it('read by listen: whole frames in order, chunked ones reassembled, then end once the peer closes', async () => {
    await withLink(open, async ({ client, server }) => {
      const [c, s] = await connect(client, server);
      const got: Buffer[] = [];
      let ended = 0;
      const gotAll = new Promise<void>((resolve) => {
        s.transport.listen!({
          frame: (f) => void got.push(f),
          end: () => {
            ended++;
            resolve();
          },
        });
      });
      const big = Buffer.alloc(2 * SEAL_CHUNK_BYTES + 7, 9);
      c.transport.send(Buffer.from('one'));
      c.transport.send(big);
      c.transport.send(Buffer.alloc(0));
      c.transport.send(Buffer.from('last'));
      // Closed once all four are read: a close may not overtake frames still on their way.
      await until(() => got.length === 4, 'the four frames');
      c.transport.close();
      await gotAll;
      expect(got.map((f) => f.length)).toEqual([3, big.length, 0, 4]);
      expect(got[1].equals(big)).toBe(true);
      expect(ended).toBe(1);
    });
  });

  it('read by listen: a frame that fails to open is not handed over; the connection closes and the reading ends', async () => {
    await withLink(open, async ({ client, server }) => {
      // The device's third sealed message (after the header) has a bit flipped on the way.
      const tampering = intercept(client, (frame, index) => (index === INITIATOR_FIRST_SEALED + 1 ? [flipBit(frame, 100)] : [frame]));
      const [c, s] = await connect(tampering, server);
      const got: string[] = [];
      const ended = new Promise<void>((resolve) => s.transport.listen!({ frame: (f) => void got.push(String(f)), end: resolve }));
      for (const f of ['a', 'b', 'c']) c.transport.send(Buffer.from(f));
      await ended;
      expect(got).toEqual(['a']);
      expectClose(await server.closed, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
    });
  });

  it('a frame whose chunks add up past sealedFrameBytesMax closes with 1009; the bound can be raised', async () => {
    await withLink(open, async ({ client, server }) => {
      const [c, s] = await connect(client, server, { server: { sealedFrameBytesMax: 2 * SEAL_CHUNK_BYTES } });
      c.transport.send(Buffer.alloc(2 * SEAL_CHUNK_BYTES, 1)); // exactly the bound: accepted
      expect((await readCount(s.transport, 1))[0].length).toBe(2 * SEAL_CHUNK_BYTES);
      s.setFrameBytesMax(3 * SEAL_CHUNK_BYTES);
      c.transport.send(Buffer.alloc(3 * SEAL_CHUNK_BYTES, 2));
      expect((await readCount(s.transport, 1))[0].length).toBe(3 * SEAL_CHUNK_BYTES);
      c.transport.send(Buffer.alloc(3 * SEAL_CHUNK_BYTES + 1, 3));
      expect(await readAll(s.transport)).toEqual([]);
      expectClose(await server.closed, CloseCode.TOO_BIG, `frame of more than ${3 * SEAL_CHUNK_BYTES} bytes`);
    });
  });

  it('a chunk dropped or repeated inside a frame fails authentication', async () => {
    for (const mangle of [(chunks: Buffer[]) => [chunks[0], chunks[2]], (chunks: Buffer[]) => [chunks[0], chunks[0], chunks[1], chunks[2]]]) {
      await withLink(open, async ({ client, server }) => {
        // Hold back the three chunks of one frame and pass them on mangled.
        const held: Buffer[] = [];
        let index = 0;
        const wire = intercept(client, (frame) => {
          if (index++ < 3) return [frame];
          held.push(frame);
          return held.length === 3 ? mangle(held) : [];
        });
        const [c, s] = await connect(wire, server);
        c.transport.send(Buffer.alloc(2 * SEAL_CHUNK_BYTES + 10, 9));
        expect(await readAll(s.transport)).toEqual([]);
        expectClose(await server.closed, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    }
  });

  describe('IK, when the initiator knows the responder key', () => {
    const ik = { client: { remoteStaticKey: node.keys.publicKey } };

    it('finishes in two messages; each side learns the other key and payload, and the same hash', async () => {
      await withLink(open, async ({ client, server }) => {
        const fromClient = recording(client);
        const fromServer = recording(server);
        const [c, s] = await connect(fromClient.transport, fromServer.transport, ik);
        expect(s.remoteStaticKey.equals(device.keys.publicKey)).toBe(true);
        expect(c.remoteStaticKey.equals(node.keys.publicKey)).toBe(true);
        expect(String(s.remotePayload)).toBe('device credential');
        expect(String(c.remotePayload)).toBe('node hello');
        expect(c.handshakeHash.equals(s.handshakeHash)).toBe(true);
        c.transport.send(Buffer.from('ping'));
        s.transport.send(Buffer.from('pong'));
        expect(String((await readCount(s.transport, 1))[0])).toBe('ping');
        expect(String((await readCount(c.transport, 1))[0])).toBe('pong');
        expect(fromClient.sent.map((f) => f.length)).toEqual([IK_MESSAGE1_BYTES_MIN + 'device credential'.length, SEALED_HEADER_BYTES, 4 + SEALED_FRAME_OVERHEAD_BYTES]);
        expect(fromServer.sent.map((f) => f.length)).toEqual([IK_MESSAGE2_BYTES_MIN + 'node hello'.length, SEALED_HEADER_BYTES, 4 + SEALED_FRAME_OVERHEAD_BYTES]);
      });
    });

    it('a responder without the pinned key cannot open message 1; the initiator is told, not left retrying', async () => {
      await withLink(open, async ({ client, server }) => {
        const [atClient, atServer] = await Promise.all([
          outcome(secureInitiator(client, clientOptions({ remoteStaticKey: node.keys.publicKey }))),
          outcome(secureResponder(server, { staticKeyPair: impostor.keys, payload: Buffer.from('impostor') })),
        ]);
        expect(atServer.ok || (atServer.error as TributaryError).detail).toBe('handshake message 1 failed authentication');
        expect(atClient.ok).toBe(false);
        const err = (atClient as { error: TributaryError }).error;
        expect([err.errorName, err.retriable]).toEqual(['UNAUTHORIZED', false]);
        expect(err.detail).toMatch(/does not hold the pinned key, or refused us: it closed on IK message 1/);
      });
    });

    it('a responder that runs out of time closes with 1013, which the initiator may retry', async () => {
      await withLink(open, async ({ client, server }) => {
        // Message 1 is held back past the responder's deadline, as on a stalled link.
        const late = intercept(client, (frame, i) => {
          if (i === 0) setTimeout(() => client.send(frame), 150);
          return i === 0 ? [] : [frame];
        });
        const [atClient, atServer] = await Promise.all([
          outcome(secureInitiator(late, clientOptions({ remoteStaticKey: node.keys.publicKey, handshakeTimeoutMs: 2000 }))),
          outcome(secureResponder(server, serverOptions({ handshakeTimeoutMs: 50 }))),
        ]);
        expect((atServer as { error: TributaryError }).error.errorName).toBe('REQUEST_TIMED_OUT');
        const err = (atClient as { error: TributaryError }).error;
        expect([err.errorName, err.retriable]).toEqual(['NETWORK', true]);
        expect(err.detail).toMatch(/1013: handshake did not finish within 50 ms/);
      });
    });

    it("a responder that refuses the initiator's key sends nothing back", async () => {
      await withLink(open, async ({ client, server }) => {
        const fromServer = recording(server);
        const verifyRemote = (): void => {
          throw new TributaryError(Errors.UNAUTHORIZED, 'not on the list');
        };
        const [atClient, atServer] = await Promise.all([
          outcome(secureInitiator(client, clientOptions({ remoteStaticKey: node.keys.publicKey }))),
          outcome(secureResponder(fromServer.transport, serverOptions({ verifyRemote }))),
        ]);
        expect([atClient.ok, atServer.ok]).toEqual([false, false]);
        expect(fromServer.sent).toEqual([]);
        expect((atClient as { error: TributaryError }).error.detail).toMatch(/not on the list/);
      });
    });

    it('a replayed message 1 gets an answer only the original initiator could use', async () => {
      let message1: Buffer | undefined;
      await withLink(open, async ({ client, server }) => {
        const captured = intercept(client, (frame, i) => {
          if (i === 0) message1 = frame;
          return [frame];
        });
        await connect(captured, server, ik);
      });
      await withLink(open, async ({ client, server }) => {
        // The replayer sends the captured message 1, then has to make up a stream header and
        // a frame, since it cannot derive the session keys.
        const session = secureResponder(server, serverOptions());
        client.send(message1 as Buffer);
        const s = await session;
        client.send(Buffer.alloc(SEALED_HEADER_BYTES, 1));
        client.send(Buffer.alloc(40, 2));
        expect(await readAll(s.transport)).toEqual([]);
        expectClose(await server.closed, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('message 1 between 33 and 95 bytes is neither pattern; 96 random bytes fail authentication', async () => {
      for (const [bytes, errorName, detail] of [
        [IK_MESSAGE1_BYTES_MIN - 1, 'INVALID_REQUEST', /must be 32 bytes \(XX\) or at least 96 \(IK\), got 95/],
        [IK_MESSAGE1_BYTES_MIN, 'UNAUTHORIZED', /^handshake message 1 failed authentication$/],
      ] as const) {
        await withLink(open, async ({ client, server }) => {
          const session = secureResponder(server, serverOptions());
          client.send(Buffer.alloc(bytes, 0x42));
          await rejection(session, errorName, detail);
        });
      }
    });
  });

  describe('pinning', () => {
    it('a node that pins a device key admits it, and refuses another key in the handshake', async () => {
      const pinned = noisePublicKeyFromIdentity(device.identity.publicKey);
      const verifyRemote = ({ staticKey }: { staticKey: Buffer }): void => {
        if (!staticKey.equals(pinned)) throw new TributaryError(Errors.UNAUTHORIZED, 'client key is not the pinned one');
      };
      await withLink(open, async ({ client, server }) => {
        const [, s] = await connect(client, server, { server: { verifyRemote } });
        expect(s.remoteStaticKey.equals(pinned)).toBe(true);
      });
      await withLink(open, async ({ client, server }) => {
        const initiator = outcome(secureInitiator(client, clientOptions({ staticKeyPair: impostor.keys })));
        await rejection(secureResponder(server, serverOptions({ verifyRemote })), 'UNAUTHORIZED', /^client key is not the pinned one$/);
        expectClose(await server.closed, CloseCode.POLICY_VIOLATION, 'client key is not the pinned one');
        expectClose(await client.closed, CloseCode.POLICY_VIOLATION, 'client key is not the pinned one');
        await initiator;
      });
    });

    it('or the node checks remoteStaticKey once the session is up, and closes', async () => {
      await withLink(open, async ({ client, server }) => {
        const [, s] = await connect(client, server, { client: { staticKeyPair: impostor.keys } });
        // The check a node makes against a credential's subject: compare X25519 forms.
        if (!s.remoteStaticKey.equals(noisePublicKeyFromIdentity(device.identity.publicKey))) {
          s.transport.close(CloseCode.POLICY_VIOLATION, 'credential subject does not match the handshake key');
        }
        expect(s.transport.isClosed).toBe(true);
        expectClose(await client.closed, CloseCode.POLICY_VIOLATION, /credential subject/);
      });
    });

    it('a device that pins the node key refuses an impostor before message 3: its identity and payload never leave', async () => {
      await withLink(open, async ({ client, server }) => {
        const rec = recording(client);
        const pinned = noisePublicKeyFromIdentity(node.identity.publicKey);
        const verifyRemote = ({ staticKey }: { staticKey: Buffer }): void => {
          if (!staticKey.equals(pinned)) throw new Error('node key is not the pinned one');
        };
        const responder = outcome(secureResponder(server, serverOptions({ staticKeyPair: impostor.keys })));
        await rejection(secureInitiator(rec.transport, clientOptions({ verifyRemote })), 'UNAUTHORIZED', /remote peer refused: node key is not the pinned one/);
        expect(rec.sent.length).toBe(1); // message 1 only: e, nothing of the device
        const r = await responder;
        expect(r.ok).toBe(false);
      });
    });
  });

  // A short timeout: with the channel working these take milliseconds; one that stopped
  // detecting tampering would otherwise leave a reader waiting for the full default.
  describe('sealed frames: tampering closes the connection, nothing of it is yielded', { timeout: 10_000 }, () => {
    /**
     * The client sends `count` frames through `hook` (on its inner transport, indices as
     * INITIATOR_FIRST_SEALED says); the server reads until its transport ends. Returns the
     * frames sent, those read, and how the server's side closed.
     */
    async function tampered(link: Link, count: number, hook: (frame: Buffer, index: number) => Buffer[]) {
      const [c, s] = await connect(intercept(link.client, hook), link.server);
      const sent = Array.from({ length: count }, (_, i) => Buffer.from(`frame ${i} `.repeat(i + 1)));
      const reading = readUntilEnd(s.transport, count + 1);
      for (const f of [...sent, END]) c.transport.send(f);
      const got = await reading;
      // Promises, awaited after the caller has checked what was read: a failure says what came through.
      return { sent, got, info: link.server.closed, clientInfo: link.client.closed };
    }

    function expectPrefix(got: Buffer[], sent: Buffer[], length: number): void {
      expect(got.map(String)).toEqual(sent.slice(0, length).map(String));
    }

    it('a bit flipped anywhere in any sealed frame (seeded positions)', async () => {
      const rng = new Rng(0xb17f11b);
      for (let trial = 0; trial < 6; trial++) {
        const target = rng.int(0, 5);
        await withLink(open, async (link) => {
          let bit = -1;
          const { sent, got, info, clientInfo } = await tampered(link, 6, (frame, index) => {
            if (index !== INITIATOR_FIRST_SEALED + target) return [frame];
            bit = rng.int(0, frame.length * 8 - 1);
            return [flipBit(frame, bit)];
          });
          expect(bit, 'the hook flipped a bit').toBeGreaterThanOrEqual(0);
          expectPrefix(got, sent, target);
          expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
          expectClose(await clientInfo, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
        });
      }
    });

    it('a bit flipped in the stream header fails the first frame', async () => {
      await withLink(open, async (link) => {
        const { got, info } = await tampered(link, 3, (frame, index) => (index === INITIATOR_FIRST_SEALED - 1 ? [flipBit(frame, 77)] : [frame]));
        expect(got).toEqual([]);
        expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('a bit flipped in a frame from the node to the device', async () => {
      await withLink(open, async ({ client, server }) => {
        const [c, s] = await Promise.all([
          secureInitiator(client, clientOptions()),
          secureResponder(
            intercept(server, (frame, index) => (index === RESPONDER_FIRST_SEALED + 1 ? [flipBit(frame, 9)] : [frame])),
            serverOptions(),
          ),
        ]);
        const reading = readUntilEnd(c.transport, 4);
        for (let i = 0; i < 3; i++) s.transport.send(Buffer.from(`answer ${i}`));
        s.transport.send(END);
        expect((await reading).map(String)).toEqual(['answer 0']);
        expectClose(await client.closed, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('a replayed frame', async () => {
      await withLink(open, async (link) => {
        const { sent, got, info } = await tampered(link, 4, (frame, index) => (index === INITIATOR_FIRST_SEALED + 1 ? [frame, frame] : [frame]));
        expectPrefix(got, sent, 2);
        expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('two frames swapped', async () => {
      await withLink(open, async (link) => {
        let held: Buffer | null = null;
        const { sent, got, info } = await tampered(link, 4, (frame, index) => {
          if (index === INITIATOR_FIRST_SEALED + 1) {
            held = frame;
            return [];
          }
          if (index === INITIATOR_FIRST_SEALED + 2 && held) return [frame, held];
          return [frame];
        });
        expectPrefix(got, sent, 1);
        expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('a dropped frame fails the one after it', async () => {
      await withLink(open, async (link) => {
        const { sent, got, info } = await tampered(link, 4, (frame, index) => (index === INITIATOR_FIRST_SEALED + 1 ? [] : [frame]));
        expectPrefix(got, sent, 1);
        expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('a truncated frame, and one shorter than the 17-byte overhead', async () => {
      for (const keep of [(n: number) => n - 1, () => SEALED_FRAME_OVERHEAD_BYTES - 1, () => 0]) {
        await withLink(open, async (link) => {
          const { sent, got, info } = await tampered(link, 3, (frame, index) => (index === INITIATOR_FIRST_SEALED + 1 ? [frame.subarray(0, keep(frame.length))] : [frame]));
          expectPrefix(got, sent, 1);
          expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
        });
      }
    });

    it('a frame sealed in another session', async () => {
      const foreign = new FrameSealer(Buffer.alloc(32, 7));
      await withLink(open, async (link) => {
        const { sent, got, info } = await tampered(link, 3, (frame, index) => (index === INITIATOR_FIRST_SEALED + 1 ? [foreign.seal(Buffer.from('frame 1 frame 1 '))] : [frame]));
        expectPrefix(got, sent, 1);
        expectClose(await info, CloseCode.PROTOCOL_ERROR, SEALED_FRAME_FAILED);
      });
    });

    it('a stream header of the wrong length', async () => {
      await withLink(open, async (link) => {
        const { got, info } = await tampered(link, 2, (frame, index) => (index === INITIATOR_FIRST_SEALED - 1 ? [frame.subarray(0, 23)] : [frame]));
        expect(got).toEqual([]);
        expectClose(await info, CloseCode.PROTOCOL_ERROR, 'sealed stream header is 23 bytes, not 24');
      });
    });
  });

  describe('bad handshake messages reject with a typed error and close with the reason', () => {
    interface BadMessage {
      name: string;
      /** Whose outgoing handshake message is altered: index 0 is message 1 (initiator) or 2 (responder), 1 is message 3. */
      from: 'initiator' | 'responder';
      index: number;
      alter: (frame: Buffer) => Buffer[];
      errorName: string;
      detail: RegExp;
      closeCode: number;
      client?: Partial<SecureChannelOptions>;
      server?: Partial<SecureChannelOptions>;
    }
    const garbage = (frame: Buffer): Buffer[] => [new Rng(frame.length).bytes(frame.length)];
    const cases: BadMessage[] = [
      { name: 'message 1 empty', from: 'initiator', index: 0, alter: () => [Buffer.alloc(0)], errorName: 'INVALID_REQUEST', detail: /^handshake message 1 must be 32 bytes \(XX\) or at least 96 \(IK\), got 0$/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 1 truncated', from: 'initiator', index: 0, alter: (f) => [f.subarray(0, 31)], errorName: 'INVALID_REQUEST', detail: /must be 32 bytes \(XX\) or at least 96 \(IK\), got 31/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 1 with a payload', from: 'initiator', index: 0, alter: (f) => [Buffer.concat([f, Buffer.from('x')])], errorName: 'INVALID_REQUEST', detail: /must be 32 bytes \(XX\) or at least 96 \(IK\), got 33/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 1 oversized', from: 'initiator', index: 0, alter: () => [Buffer.alloc(4000, 1)], errorName: 'INVALID_REQUEST', detail: /^handshake message 1 is 4000 bytes, over the limit of 1024$/, closeCode: CloseCode.TOO_BIG },
      { name: 'message 1 a low-order key (all zero)', from: 'initiator', index: 0, alter: () => [Buffer.alloc(32)], errorName: 'UNAUTHORIZED', detail: /^handshake message 1 failed authentication$/, closeCode: CloseCode.POLICY_VIOLATION },
      { name: 'message 1 sent twice (the copy arrives as message 3)', from: 'initiator', index: 0, alter: (f) => [f, f], errorName: 'INVALID_REQUEST', detail: /^handshake message 3 is 32 bytes, shorter than the minimum of 64$/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 3 missing (the header arrives as message 3)', from: 'initiator', index: 1, alter: () => [], errorName: 'INVALID_REQUEST', detail: /message 3 is 24 bytes, shorter than the minimum of 64/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 3 with a bit flipped', from: 'initiator', index: 1, alter: (f) => [flipBit(f, 8 * 40 + 3)], errorName: 'UNAUTHORIZED', detail: /^handshake message 3 failed authentication$/, closeCode: CloseCode.POLICY_VIOLATION },
      { name: 'message 3 short by a byte', from: 'initiator', index: 1, alter: (f) => [f.subarray(0, f.length - 1)], errorName: 'UNAUTHORIZED', detail: /message 3 failed authentication/, closeCode: CloseCode.POLICY_VIOLATION },
      { name: 'message 3 truncated below its minimum', from: 'initiator', index: 1, alter: (f) => [f.subarray(0, 63)], errorName: 'INVALID_REQUEST', detail: /message 3 is 63 bytes, shorter than the minimum of 64/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 3 garbage', from: 'initiator', index: 1, alter: garbage, errorName: 'UNAUTHORIZED', detail: /message 3 failed authentication/, closeCode: CloseCode.POLICY_VIOLATION },
      {
        name: 'message 3 oversized (a payload over the node limit)',
        from: 'initiator',
        index: 1,
        alter: (f) => [f],
        client: { payload: Buffer.alloc(1500, 1), handshakeFrameBytesMax: 4096 },
        errorName: 'INVALID_REQUEST',
        detail: /^handshake message 3 is 1564 bytes, over the limit of 1024$/,
        closeCode: CloseCode.TOO_BIG,
      },
      { name: 'message 2 with a bit flipped', from: 'responder', index: 0, alter: (f) => [flipBit(f, 8 * 50)], errorName: 'UNAUTHORIZED', detail: /^handshake message 2 failed authentication$/, closeCode: CloseCode.POLICY_VIOLATION },
      { name: 'message 2 garbage', from: 'responder', index: 0, alter: garbage, errorName: 'UNAUTHORIZED', detail: /message 2 failed authentication/, closeCode: CloseCode.POLICY_VIOLATION },
      { name: 'message 2 truncated below its minimum', from: 'responder', index: 0, alter: (f) => [f.subarray(0, 95)], errorName: 'INVALID_REQUEST', detail: /message 2 is 95 bytes, shorter than the minimum of 96/, closeCode: CloseCode.PROTOCOL_ERROR },
      { name: 'message 2 oversized', from: 'responder', index: 0, alter: (f) => [Buffer.concat([f, Buffer.alloc(2000)])], errorName: 'INVALID_REQUEST', detail: /message 2 is \d+ bytes, over the limit of 1024/, closeCode: CloseCode.TOO_BIG },
    ];

    it.each(cases)('$name', async (bad) => {
      await withLink(open, async ({ client, server }) => {
        const alterAt = (index: number) => (frame: Buffer, i: number) => (i === index ? bad.alter(frame) : [frame]);
        const c = secureInitiator(bad.from === 'initiator' ? intercept(client, alterAt(bad.index)) : client, clientOptions(bad.client));
        const s = secureResponder(bad.from === 'responder' ? intercept(server, alterAt(bad.index)) : server, serverOptions(bad.server));
        // Handled now: the side that was not fed the bad message may fail first (NETWORK).
        void outcome(c);
        void outcome(s);
        const [victim, victimInner, other, otherInner] = bad.from === 'initiator' ? [s, server, c, client] : [c, client, s, server];
        const err = await rejection(victim, bad.errorName, bad.detail);
        expectClose(await victimInner.closed, bad.closeCode, err.detail);
        expectClose(await otherInner.closed, bad.closeCode, err.detail);
        await outcome(other); // whatever it made of it, it settles
      });
    });
  });

  describe('replayed handshakes fail', () => {
    /** A full handshake with both sides' outgoing frames recorded. */
    async function recordedSession(): Promise<{ fromClient: Buffer[]; fromServer: Buffer[] }> {
      const { client, server } = await memoryLink();
      const c = recording(client);
      const s = recording(server);
      await connect(c.transport, s.transport);
      client.close();
      return { fromClient: c.sent, fromServer: s.sent };
    }

    it("an initiator's messages 1 and 3, re-sent to a new responder", async () => {
      const old = await recordedSession();
      await withLink(open, async ({ client, server }) => {
        const responder = secureResponder(server, serverOptions());
        const replies = client[Symbol.asyncIterator]();
        client.send(old.fromClient[0]);
        expect((await replies.next()).done).toBe(false); // the node's fresh message 2
        client.send(old.fromClient[1]);
        await rejection(responder, 'UNAUTHORIZED', /^handshake message 3 failed authentication$/);
        expectClose(await client.closed, CloseCode.POLICY_VIOLATION, 'handshake message 3 failed authentication');
      });
    });

    it("a responder's message 2, re-sent to a new initiator", async () => {
      const old = await recordedSession();
      await withLink(open, async ({ client, server }) => {
        const initiator = secureInitiator(client, clientOptions());
        const requests = server[Symbol.asyncIterator]();
        expect((await requests.next()).done).toBe(false); // the device's fresh message 1
        server.send(old.fromServer[0]);
        await rejection(initiator, 'UNAUTHORIZED', /^handshake message 2 failed authentication$/);
      });
    });
  });

  describe('handshakes that cannot finish', () => {
    it('times out when the peer says nothing, on either side', async () => {
      await withLink(open, async ({ server }) => {
        await rejection(secureResponder(server, serverOptions({ handshakeTimeoutMs: 50 })), 'REQUEST_TIMED_OUT', /^handshake did not finish within 50 ms$/);
        expectClose(await server.closed, CloseCode.TRY_AGAIN_LATER, 'handshake did not finish within 50 ms');
      });
      await withLink(open, async ({ client }) => {
        await rejection(secureInitiator(client, clientOptions({ handshakeTimeoutMs: 50 })), 'REQUEST_TIMED_OUT', /within 50 ms/);
        expect(client.isClosed).toBe(true);
      });
    });

    it('times the handshake out on the clock it is given, and only when that clock passes the timeout', async () => {
      await withLink(open, async ({ client }) => {
        const clock = new ManualClock();
        let settled = false;
        const handshake = outcome(secureInitiator(client, clientOptions({ handshakeTimeoutMs: 50, clock })).finally(() => (settled = true)));
        await clock.advanceAsync(49);
        expect(settled).toBe(false);
        expect(clock.pending).toBe(1);
        clock.advance(1);
        const result = await handshake;
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.error).toMatchObject({ code: Errors.REQUEST_TIMED_OUT.code, detail: 'handshake did not finish within 50 ms' });
        expect(client.isClosed).toBe(true);
      });
    });

    it('times out when both sides wait as responders', async () => {
      await withLink(open, async ({ client, server }) => {
        const a = secureResponder(client, serverOptions({ handshakeTimeoutMs: 50 }));
        const b = secureResponder(server, serverOptions({ handshakeTimeoutMs: 50 }));
        const [ra, rb] = await Promise.all([outcome(a), outcome(b)]);
        for (const r of [ra, rb]) {
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.error).toBeInstanceOf(TributaryError);
        }
        const names = [ra, rb].map((r) => (!r.ok && r.error instanceof TributaryError ? r.error.errorName : ''));
        expect(names).toContain('REQUEST_TIMED_OUT');
      });
    });

    it('two initiators: message 1 is too short to be message 2', async () => {
      await withLink(open, async ({ client, server }) => {
        const [ra, rb] = await Promise.all([outcome(secureInitiator(client, clientOptions())), outcome(secureInitiator(server, serverOptions()))]);
        const names = [ra, rb].map((r) => (!r.ok && r.error instanceof TributaryError ? r.error.errorName : 'resolved'));
        expect(names).toContain('INVALID_REQUEST');
        for (const name of names) expect(['INVALID_REQUEST', 'NETWORK']).toContain(name);
      });
    });

    it('the peer closes mid-handshake', async () => {
      await withLink(open, async ({ client, server }) => {
        const responder = secureResponder(server, serverOptions());
        client.send(Buffer.alloc(32, 9));
        client.close(CloseCode.GOING_AWAY, 'bye');
        await rejection(responder, 'NETWORK', /^connection closed during the handshake, before message 3 \(1001: bye\)$/);
      });
    });

    it('different prologues: the initiator refuses message 2, the responder sees the close', async () => {
      await withLink(open, async ({ client, server }) => {
        const c = secureInitiator(client, clientOptions({ prologue: Buffer.from('tributary/2') }));
        const s = secureResponder(server, serverOptions());
        void outcome(s);
        await rejection(c, 'UNAUTHORIZED', /message 2 failed authentication/);
        await rejection(s, 'NETWORK', /before message 3 \(1008: handshake message 2 failed authentication\)/);
      });
    });
  });

  it('captured bytes on the wire hold no plaintext of frames or payloads (and do without the channel)', async () => {
    const marker = Buffer.from('MARKER-7f3a-sensor-reading-42');
    const withMarker = (i: number) => Buffer.concat([Buffer.from(`record ${i} `), marker, Buffer.alloc(i * 100, 0x20), marker]);
    const captured = async (secure: boolean): Promise<Buffer> =>
      withLink(open, async ({ client, server }) => {
        const c = recording(client);
        const s = recording(server);
        let a: FrameTransport = c.transport;
        let b: FrameTransport = s.transport;
        if (secure) {
          const [cs, ss] = await connect(c.transport, s.transport, { client: { payload: withMarker(0) }, server: { payload: withMarker(1) } });
          a = cs.transport;
          b = ss.transport;
        }
        const atB = readCount(b, 20);
        const atA = readCount(a, 20);
        for (let i = 0; i < 20; i++) {
          a.send(withMarker(i));
          b.send(withMarker(i));
        }
        const got = await Promise.all([atA, atB]);
        for (const frames of got) frames.forEach((f, i) => expect(f.equals(withMarker(i))).toBe(true));
        return Buffer.concat([...c.sent, ...s.sent]);
      });
    expect((await captured(false)).includes(marker), 'control: the marker is visible without the channel').toBe(true);
    const wire = await captured(true);
    expect(wire.length).toBeGreaterThan(20 * 2 * marker.length);
    expect(wire.includes(marker)).toBe(false);
    expect(wire.includes(marker.subarray(0, 12))).toBe(false);
  });
});

// --- memory only -----------------------------------------------------------------------

describe('secure channel options and reading', () => {
  it('a payload that cannot fit handshakeFrameBytesMax rejects with INVALID_CONFIG and closes', async () => {
    const [client] = memoryPipe();
    await rejection(secureInitiator(client, clientOptions({ payload: Buffer.alloc(1024 - HANDSHAKE_MESSAGE3_BYTES_MIN + 1) })), 'INVALID_CONFIG', /at most 960 fit/);
    expectClose(await client.closed, CloseCode.INTERNAL_ERROR, /handshake payload is 961 bytes/);
    const [, server] = memoryPipe();
    await rejection(secureResponder(server, serverOptions({ payload: Buffer.alloc(1024 - HANDSHAKE_MESSAGE2_BYTES_MIN + 1) })), 'INVALID_CONFIG', /at most 928 fit/);
    const [other] = memoryPipe();
    await rejection(secureInitiator(other, { staticKeyPair: { publicKey: Buffer.alloc(32), secretKey: Buffer.alloc(64) } }), 'INVALID_CONFIG', /X25519 keys of 32 bytes/);
  });

  it('the largest payloads that fit do fit', async () => {
    const [client, server] = memoryPipe();
    const [c, s] = await connect(client, server, {
      client: { payload: Buffer.alloc(1024 - HANDSHAKE_MESSAGE3_BYTES_MIN, 1) },
      server: { payload: Buffer.alloc(1024 - HANDSHAKE_MESSAGE2_BYTES_MIN, 2) },
    });
    expect(s.remotePayload.length).toBe(960);
    expect(c.remotePayload.length).toBe(928);
  });

  it('concurrent next() calls get frames in order, one each', async () => {
    const [client, server] = memoryPipe();
    const [c, s] = await connect(client, server);
    const it = s.transport[Symbol.asyncIterator]();
    const waiting = [it.next(), it.next(), it.next()];
    for (let i = 0; i < 3; i++) c.transport.send(Buffer.from(`n${i}`));
    expect((await Promise.all(waiting)).map((r) => String(r.value))).toEqual(['n0', 'n1', 'n2']);
    c.transport.close();
    expect((await it.next()).done).toBe(true);
  });

  it('the session transport closes the inner one, with the code and reason', async () => {
    const [client, server] = memoryPipe();
    const [c] = await connect(client, server);
    c.transport.close(CloseCode.NORMAL, 'done');
    expect(client.isClosed).toBe(true);
    expectClose(await server.closed, CloseCode.NORMAL, 'done');
    expectClose(await c.transport.closed, CloseCode.NORMAL, 'done');
  });

  it('FrameSealer and FrameOpener: open what was sealed, in order, and nothing else', () => {
    const key = Buffer.alloc(32, 3);
    const sealer = new FrameSealer(key);
    const opener = new FrameOpener(key, sealer.header);
    const a = sealer.seal(Buffer.from('a'));
    const b = sealer.seal(new Uint8Array([0x62]));
    expect(opener.open(b)).toBeNull(); // out of order
    const fresh = new FrameOpener(key, sealer.header);
    expect(String(fresh.open(a))).toBe('a');
    expect(String(fresh.open(b))).toBe('b');
    expect(fresh.open(b)).toBeNull(); // replayed
    expect(new FrameOpener(Buffer.alloc(32, 4), sealer.header).open(a)).toBeNull(); // wrong key
  });

  it('a chunk that says its frame goes on must be full: short ones close the connection before they pile up', async () => {
    // A hand-run initiator, to hold the sealing key and send chunks no honest sender would.
    const [client, server] = memoryPipe();
    const session = secureResponder(server, serverOptions());
    const noise = new Noise('XX', true, device.keys) as NoiseDriver & { tx: Buffer };
    noise.initialise(PROLOGUE_DEFAULT);
    const incoming = client[Symbol.asyncIterator]();
    client.send(noise.send());
    noise.recv((await incoming.next()).value as Buffer);
    client.send(noise.send(Buffer.from('device credential')));
    const s = await session;
    const sealer = new FrameSealer(noise.tx);
    client.send(sealer.header);
    const full = Buffer.alloc(SEAL_CHUNK_BYTES, 1);
    client.send(sealer.sealChunk(full, true));
    client.send(sealer.sealChunk(Buffer.from('end'), false));
    expect((await readCount(s.transport, 1))[0].length).toBe(SEAL_CHUNK_BYTES + 3);
    for (let i = 0; i < 1000; i++) client.send(sealer.sealChunk(Buffer.alloc(0), true));
    expect(await readAll(s.transport)).toEqual([]);
    expectClose(await server.closed, CloseCode.PROTOCOL_ERROR, /sealed chunk of 0 bytes before the end of a frame/);
  });

  it('FrameOpener: a chunk that says its frame goes on is not a whole frame', () => {
    const key = Buffer.alloc(32, 5);
    const sealer = new FrameSealer(key);
    const first = sealer.sealChunk(Buffer.from('par'), true);
    const last = sealer.sealChunk(Buffer.from('t'), false);
    expect(new FrameOpener(key, sealer.header).open(first)).toBeNull();
    const opener = new FrameOpener(key, sealer.header);
    expect(opener.openChunk(first)).toEqual({ data: Buffer.from('par'), more: true });
    expect(opener.openChunk(last)).toEqual({ data: Buffer.from('t'), more: false });
  });
});

// --- fuzz ------------------------------------------------------------------------------

interface NoiseDriver {
  initialise(prologue: Buffer): void;
  send(payload?: Buffer): Buffer;
  recv(message: Buffer): Buffer;
}
const Noise = createRequire(import.meta.url)('noise-handshake') as new (pattern: 'XX', initiator: boolean, keys: StaticKeyPair) => NoiseDriver;

/** A changed copy of `frame`: never equal to it. */
function mutate(rng: Rng, frame: Buffer, foreign: Buffer): Buffer {
  switch (rng.int(0, 4)) {
    case 0: {
      let out = frame;
      for (let i = rng.int(1, 3); i > 0; i--) out = flipBit(out, rng.int(0, frame.length * 8 - 1));
      return out.equals(frame) ? flipBit(frame, 0) : out;
    }
    case 1:
      return frame.subarray(0, rng.int(0, frame.length - 1));
    case 2:
      return Buffer.concat([frame, rng.bytes(rng.int(1, rng.bool(0.1) ? 2000 : 40))]);
    case 3: {
      const out = rng.bytes(rng.int(0, rng.bool(0.1) ? 2000 : 200));
      return out.equals(frame) ? Buffer.concat([out, Buffer.alloc(1)]) : out;
    }
    default:
      return foreign.equals(frame) ? flipBit(frame, 1) : foreign;
  }
}

const FUZZ_CASES = 2000;

describe('fuzz (seeded, memoryPipe)', () => {
  it.each(testSeeds([101, 202]))(`seed %i: ${FUZZ_CASES} mangled handshakes into a responder settle, typed, and yield nothing`, async (seed) => {
    await withSeedAsync(seed, async (rng) => {
      // Messages of another session, to splice in.
      const other = new Noise('XX', true, impostor.keys);
      other.initialise(PROLOGUE_DEFAULT);
      const foreign = [other.send()];
      const tally = { succeeded: 0, refused: 0 };
      for (let n = 0; n < FUZZ_CASES; n++) {
        const [client, server] = memoryPipe();
        const result = outcome(secureResponder(server, serverOptions({ payload: rng.bytes(rng.int(0, 64)), handshakeTimeoutMs: 60_000 })));
        const replies = client[Symbol.asyncIterator]();
        const noise = new Noise('XX', true, device.keys);
        noise.initialise(PROLOGUE_DEFAULT);
        let honest = true;
        const sendMaybeMutated = (message: Buffer): void => {
          if (rng.bool(0.5)) {
            honest = false;
            client.send(mutate(rng, message, rng.pick(foreign)));
          } else {
            client.send(message);
          }
        };
        let sentAnything = false;
        if (rng.bool(0.1)) {
          honest = false;
          sentAnything = true;
          client.send(rng.bytes(rng.pick([0, 24, 32, 64, 96, rng.int(0, 1200)])));
        }
        if (rng.bool(0.97)) {
          sendMaybeMutated(noise.send());
          sentAnything = true;
        } else {
          honest = false;
        }
        // Whatever arrived, the responder answers or closes; with nothing sent it waits.
        const reply: IteratorResult<Buffer> = sentAnything ? await replies.next() : { done: true, value: undefined };
        if (!reply.done) {
          let message3: Buffer;
          try {
            noise.recv(reply.value);
            message3 = noise.send(rng.bytes(rng.int(0, 100)));
          } catch {
            honest = false;
            message3 = rng.bytes(rng.int(0, 300));
          }
          if (rng.bool(0.97)) sendMaybeMutated(message3);
          else honest = false;
          // Frames after the handshake that nobody sealed: they must never come out.
          for (let i = rng.int(0, 3); i > 0; i--) client.send(rng.bytes(rng.pick([24, 17, rng.int(0, 80)])));
        }
        await turn();
        client.close(CloseCode.NORMAL, 'fuzz case over');
        const r = await result;
        if (r.ok) {
          expect(honest, `case ${n}: a mangled handshake succeeded`).toBe(true);
          expect(r.value.remoteStaticKey.equals(device.keys.publicKey)).toBe(true);
          expect(await readAll(r.value.transport), `case ${n}: unsealed frames yielded`).toEqual([]);
          tally.succeeded++;
        } else {
          expect(honest, `case ${n}: an honest handshake failed: ${String(r.error)}`).toBe(false);
          expect(r.error).toBeInstanceOf(TributaryError);
          expect(['INVALID_REQUEST', 'UNAUTHORIZED', 'NETWORK']).toContain((r.error as TributaryError).errorName);
          expect(server.isClosed).toBe(true);
          tally.refused++;
        }
      }
      // Both outcomes were exercised, so neither branch of the checks is dead.
      expect(tally.succeeded).toBeGreaterThan(FUZZ_CASES / 10);
      expect(tally.refused).toBeGreaterThan(FUZZ_CASES / 2);
    });
  });

  it.each(testSeeds([303, 404]))(`seed %i: ${FUZZ_CASES} mangled sealed streams yield only a prefix of what was sent`, async (seed) => {
    await withSeedAsync(seed, async (rng) => {
      const foreignSealer = new FrameSealer(rng.bytes(32));
      const tally = { clean: 0, mangled: 0 };
      for (let n = 0; n < FUZZ_CASES; n++) {
        const [clientInner, server] = memoryPipe();
        // Handshake frames pass; the header and sealed frames are held, then mangled and sent.
        const held: Buffer[] = [];
        const client = intercept(clientInner, (frame, index) => {
          if (index < INITIATOR_FIRST_SEALED - 1) return [frame];
          held.push(frame);
          return [];
        });
        const [c, s] = await connect(client, server);
        const sent = Array.from({ length: rng.int(1, 8) }, () => rng.bytes(rng.bool(0.1) ? rng.int(0, 4000) : rng.int(0, 40)));
        for (const f of sent) c.transport.send(f);
        // held[0] is the header, held[i + 1] sealed frame i. `yieldMax`: frames that may still open.
        let wire = held.slice();
        let yieldMax = sent.length;
        const p = rng.int(0, held.length - 1);
        const kind = rng.int(0, 7);
        if (kind === 1) {
          wire[p] = mutate(rng, held[p], foreignSealer.seal(rng.bytes(rng.int(0, 30))));
          yieldMax = Math.max(0, p - 1);
        } else if (kind === 2) {
          wire.splice(p + 1, 0, held[p]);
          yieldMax = p;
        } else if (kind === 3 && p < held.length - 1 && !(p === 0 && held.length === 2)) {
          // Not the last frame: a stream cut short is not detectable by the channel (the
          // frames before the cut are genuine). Nor the header of a one-frame stream: that
          // leaves one frame, which a 7-byte frame's 24 bytes would pass for a header, cut short.

          wire.splice(p, 1);
          yieldMax = Math.max(0, p - 1);
        } else if (kind === 4 && p < held.length - 1) {
          wire = [...held.slice(0, p), held[p + 1], held[p], ...held.slice(p + 2)];
          yieldMax = Math.max(0, p - 1);
        } else if (kind === 5) {
          wire.splice(p, 0, rng.bytes(rng.pick([17, 24, rng.int(0, 100)])));
          yieldMax = Math.max(0, p - 1);
        } else if (kind === 6) {
          wire.splice(p, 0, foreignSealer.seal(rng.bytes(rng.int(0, 30))));
          yieldMax = Math.max(0, p - 1);
        }
        const mangled = wire.length !== held.length || wire.some((f, i) => !f.equals(held[i]));
        const reading = readAll(s.transport);
        for (const f of wire) clientInner.send(f);
        await turn();
        clientInner.close(CloseCode.NORMAL, 'fuzz case over');
        const got = await reading;
        const info = await server.closed;
        expect(got.length, `case ${n}`).toBeLessThanOrEqual(yieldMax);
        got.forEach((f, i) => expect(f.equals(sent[i]), `case ${n}: frame ${i} is not what was sent`).toBe(true));
        if (mangled) {
          expect(info.code, `case ${n}: ${info.reason}`).toBe(CloseCode.PROTOCOL_ERROR);
          tally.mangled++;
        } else {
          expect(got.length, `case ${n}`).toBe(sent.length);
          expect(info.code, `case ${n}: ${info.reason}`).toBe(CloseCode.NORMAL);
          tally.clean++;
        }
      }
      expect(tally.clean).toBeGreaterThan(FUZZ_CASES / 20);
      expect(tally.mangled).toBeGreaterThan(FUZZ_CASES / 2);
    });
  });
});
