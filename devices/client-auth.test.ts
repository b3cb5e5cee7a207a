// The Client's side of the secure channel against the fake node (which runs the real
// responder): what the client shows in the handshake, how it checks the node against its
// pins, that a refusal on either side fails connect() at once instead of retrying, that
// network failures during the handshake are retried, and that reconnects handshake again.
// Over memoryPipe, and over a real `ws` server where the socket itself matters.

import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../protocol/clock.js';
import { issueCredential, type Role } from '../protocol/credential.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { encodeFrame, Kind, RESPONSE } from '../protocol/frames.js';
import { generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { noisePublicKeyFromIdentity } from '../protocol/secure-channel.js';
import { memoryPipe } from '../protocol/transport.js';
import { Client, webSocketTransportFactory, type ClientOptions } from './client.js';
import { FakeNode } from './testing/fake-node.js';
import { until } from '../test/helpers/until.js';

const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

function track(client: Client): Client {
  clients.push(client);
  return client;
}

const DAY_MS = 86_400_000;
const fleet = generateIdentity();
const device = generateIdentity();

function credentialFor(subject: IdentityKeyPair, role: Role, options: { issuer?: IdentityKeyPair; expiresAt?: number; now?: number } = {}): Buffer {
  const now = options.now ?? Date.now();
  return issueCredential(options.issuer ?? fleet, { subject: subject.publicKey, role, produce: ['*'], consume: ['*'], expiresAt: options.expiresAt ?? now + DAY_MS }, now);
}

/** Byte-exact comparison (cbor-x's buffers carry an extra property that toEqual sees). */
function hex(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : Buffer.from(bytes).toString('hex');
}

/** A client that would retry for a minute: any refusal that ends sooner was not retried. */
/** A fake node in `fleet`, showing its node credential, for clients that pin the fleet (XX). */
function fleetNode(): FakeNode {
  const node = new FakeNode();
  node.credential = credentialFor(node.identity, 'node');
  return node;
}

function patientClient(node: FakeNode, options: ClientOptions = {}): Client {
  return track(new Client('mem://fake', { transportFactory: node.transportFactory, connectTimeoutMs: 60_000, reconnect: { initialMs: 1, maxMs: 5 }, ...options }));
}

async function connectError(client: Client): Promise<TributaryError> {
  const err = await client.connect().then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TributaryError);
  return err as TributaryError;
}

describe('Client handshake: what it shows', () => {
  it('sends its credential in message 3 byte-exact, under its own identity key', async () => {
    const node = fleetNode();
    const credential = credentialFor(device, 'device');
    const client = patientClient(node, { identity: device, credential, fleetPublicKey: fleet.publicKey });
    await client.connect();
    const [connection] = node.connections;
    expect(connection.handshake).toBe('done');
    expect(hex(connection.remotePayload)).toBe(hex(credential));
    expect(connection.remoteStaticKey).toEqual(noisePublicKeyFromIdentity(device.publicKey));
    // Hello is still the first frame, now sealed.
    expect(node.requests[0].kind).toBe(Kind.Hello);
  });

  it('is anonymous without an identity: an empty payload, and a fresh key per client', async () => {
    const node = new FakeNode();
    await patientClient(node).connect();
    await patientClient(node).connect();
    const [a, b] = node.connections;
    expect(a.remotePayload).toEqual(Buffer.alloc(0));
    expect(b.remotePayload).toEqual(Buffer.alloc(0));
    expect(a.remoteStaticKey).not.toEqual(b.remoteStaticKey);
  });

  it('shows an identity without a credential as an empty payload under that key', async () => {
    const node = new FakeNode();
    await patientClient(node, { identity: device }).connect();
    expect(node.connections[0].remotePayload).toEqual(Buffer.alloc(0));
    expect(node.connections[0].remoteStaticKey).toEqual(noisePublicKeyFromIdentity(device.publicKey));
  });

  it('handshakes again on every reconnect, showing the same identity and credential', async () => {
    const node = fleetNode();
    const credential = credentialFor(device, 'device');
    // On a manual clock the client stays away until the clock passes its reconnect backoff.
    const clock = new ManualClock();
    const client = patientClient(node, { identity: device, credential, fleetPublicKey: fleet.publicKey, clock });
    await client.connect();
    node.dropConnections();
    await until(() => !client.isConnected, 'disconnected');
    const answer = client.request(Kind.Metadata, {});
    await clock.advanceAsync(5);
    await expect(answer).resolves.toMatchObject({ nodeId: 'fake-1' });
    expect(client.connectionCount).toBe(2);
    expect(node.connections).toHaveLength(2);
    for (const c of node.connections) {
      expect(c.handshake).toBe('done');
      expect(hex(c.remotePayload)).toBe(hex(credential));
      expect(c.remoteStaticKey).toEqual(noisePublicKeyFromIdentity(device.publicKey));
    }
    expect(node.requests.filter((r) => r.kind === Kind.Hello).map((r) => node.connections.indexOf(r.connection))).toEqual([0, 1]);
  });
});

describe('Client handshake: checking the node', () => {
  it('accepts the node whose key is pinned', async () => {
    const node = new FakeNode();
    const client = patientClient(node, { nodePublicKey: node.identity.publicKey });
    await client.connect();
    await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
  });

  it('refuses another node at once with UNAUTHORIZED, before showing its credential', async () => {
    const node = new FakeNode();
    const credential = credentialFor(device, 'device');
    const client = patientClient(node, { identity: device, credential, nodePublicKey: generateIdentity().publicKey });
    const queued = client.request(Kind.Metadata, {});
    const err = await connectError(client);
    expect(err.code).toBe(Errors.UNAUTHORIZED.code);
    expect(err.retriable).toBe(false);
    expect(err.message).toBe('UNAUTHORIZED: refusing node at mem://fake: the peer does not hold the pinned key, or refused us: it closed on IK message 1 (handshake message 1 failed authentication)');
    await expect(queued).rejects.toMatchObject({ code: Errors.UNAUTHORIZED.code });
    expect(client.isClosed).toBe(true);
    // One attempt, and the credential was never readable by the impostor: with the node's
    // key pinned the handshake is IK, and message 1 is encrypted to the pinned key.
    expect(node.connections).toHaveLength(1);
    await until(() => node.connections[0].handshake !== 'pending', 'the node saw the handshake end');
    expect(node.connections[0].handshake).toBe('failed');
    expect(node.connections[0].remotePayload).toBeNull();
  });

  const nodeIdentity = generateIdentity();
  const otherFleet = generateIdentity();
  const past = Date.now() - 10 * DAY_MS;
  it.each<[string, Buffer | null, RegExp | null]>([
    ['a valid node credential', credentialFor(nodeIdentity, 'node'), null],
    ['an expired node credential', credentialFor(nodeIdentity, 'node', { now: past, expiresAt: past + DAY_MS }), /no valid credential of the pinned fleet: credential refused: expired at/],
    ['a credential with role app', credentialFor(nodeIdentity, 'app'), /the node's credential has role app, not node/],
    ['a node credential for a different key', credentialFor(generateIdentity(), 'node'), /its subject is not the key that made the handshake/],
    ['a node credential of another fleet', credentialFor(nodeIdentity, 'node', { issuer: otherFleet }), /credential refused: issued by another fleet/],
    ['no credential', null, /no credential was presented/],
  ])('with the fleet pinned, a node showing %s is %s', async (_what, nodeCredential, refusal) => {
    const node = new FakeNode();
    node.identity = nodeIdentity;
    node.credential = nodeCredential;
    const client = patientClient(node, { fleetPublicKey: fleet.publicKey });
    if (refusal === null) {
      await client.connect();
      await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
      return;
    }
    const err = await connectError(client);
    expect(err.code).toBe(Errors.UNAUTHORIZED.code);
    expect(err.message).toMatch(/^UNAUTHORIZED: refusing node at mem:\/\/fake: /);
    expect(err.message).toMatch(refusal);
    expect(node.connections).toHaveLength(1);
  });

  it('with both pins, the node must be that node and hold a credential of that fleet', async () => {
    const both = (node: FakeNode) => patientClient(node, { nodePublicKey: node.identity.publicKey, fleetPublicKey: fleet.publicKey });
    await expect(both(fleetNode()).connect()).resolves.toBeUndefined();
    // The right key but no fleet credential: refused at once.
    const err = await connectError(both(new FakeNode()));
    expect([err.code, err.retriable]).toEqual([Errors.UNAUTHORIZED.code, false]);
    expect(err.message).toMatch(/no valid credential of the pinned fleet: no credential was presented/);
  });

  it('shows a credential only to a pinned node', () => {
    expect(() => patientClient(new FakeNode(), { identity: device, credential: credentialFor(device, 'device') })).toThrow(/a credential is shown only to a pinned node/);
  });

  it('accepts any node without a pin (encrypted, not authenticated)', async () => {
    const node = new FakeNode();
    node.credential = credentialFor(generateIdentity(), 'device', { issuer: otherFleet });
    await expect(patientClient(node).connect()).resolves.toBeUndefined();
  });
});

describe('Client handshake: refusals and failures', () => {
  it('fails connect at once when the node answers Hello with UNAUTHORIZED', async () => {
    const node = new FakeNode();
    node.refuseHello = () => new TributaryError(Errors.UNAUTHORIZED, 'credential refused: revoked');
    const client = patientClient(node, { identity: device, credential: credentialFor(device, 'device'), nodePublicKey: node.identity.publicKey });
    const queued = client.request(Kind.Metadata, {});
    const err = await connectError(client);
    expect(err.code).toBe(Errors.UNAUTHORIZED.code);
    expect(err.message).toBe('UNAUTHORIZED: node at mem://fake refused this client: credential refused: revoked');
    await expect(queued).rejects.toMatchObject({ code: Errors.UNAUTHORIZED.code });
    expect(node.connections).toHaveLength(1);
    expect(client.isClosed).toBe(true);
  });

  it('a request the node refuses fails with UNAUTHORIZED and the connection stays usable', async () => {
    const node = new FakeNode();
    node.hook = (req) =>
      node.requests.filter((r) => r.kind === Kind.Metadata).length === 1 ? { answer: { error: Errors.UNAUTHORIZED.code, message: "UNAUTHORIZED: role device may not describe topic 'x'" } } : undefined;
    const client = patientClient(node);
    await client.connect();
    const err = (await client.request(Kind.Metadata, { topics: ['x'] }).catch((e: unknown) => e)) as TributaryError;
    expect(err.code).toBe(Errors.UNAUTHORIZED.code);
    expect(err.message).toBe("UNAUTHORIZED: role device may not describe topic 'x'");
    await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
    expect(client.isConnected).toBe(true);
    expect(node.connections).toHaveLength(1);
  });

  it('a refusal at a reconnect fails what waits and closes the client', async () => {
    const node = new FakeNode();
    node.refuseHello = (connection) => (node.connections.indexOf(connection) > 0 ? new TributaryError(Errors.UNAUTHORIZED, 'credential refused: revoked') : undefined);
    const clock = new ManualClock();
    const client = patientClient(node, { clock });
    await client.connect();
    node.dropConnections();
    await until(() => !client.isConnected, 'disconnected');
    // Asked while the client waits out its reconnect backoff: the refusal at the reconnect is its answer.
    const failure = client.request(Kind.Metadata, {}, { timeoutMs: 60_000 }).then(() => null, (e: unknown) => e);
    await clock.advanceAsync(5);
    expect(await failure).toMatchObject({ code: Errors.UNAUTHORIZED.code });
    expect(client.isClosed).toBe(true);
    expect(node.connections).toHaveLength(2);
  });

  it('retries a connection lost during the handshake', async () => {
    const node = new FakeNode();
    let attempts = 0;
    const client = patientClient(node, {
      transportFactory: async (url) => {
        if (++attempts > 1) return node.transportFactory(url);
        // A peer that accepts the socket and closes it before answering message 1.
        const [clientSide, nodeSide] = memoryPipe();
        void (async () => {
          for await (const _ of nodeSide) return nodeSide.close(1001, 'restarting');
        })();
        return clientSide;
      },
    });
    await client.connect();
    expect(attempts).toBe(2);
    expect(node.connections).toHaveLength(1);
  });

  it('refuses a peer whose message 2 is malformed without retrying', async () => {
    let attempts = 0;
    const client = track(
      new Client('mem://garbage', {
        connectTimeoutMs: 60_000,
        transportFactory: async () => {
          attempts++;
          const [clientSide, nodeSide] = memoryPipe();
          void (async () => {
            for await (const _ of nodeSide) return nodeSide.send(Buffer.from('not noise'));
          })();
          return clientSide;
        },
      }),
    );
    const err = await connectError(client);
    expect(err.code).toBe(Errors.INVALID_REQUEST.code);
    expect(err.message).toMatch(/^INVALID_REQUEST: refusing node at mem:\/\/garbage: handshake message 2/);
    expect(attempts).toBe(1);
  });
});

describe('Client handshake: options checked up front', () => {
  const other = generateIdentity();
  it.each<[string, ClientOptions, RegExp]>([
    ['a credential over CREDENTIAL_BYTES_MAX', { identity: device, credential: Buffer.alloc(4097) }, /credential is 4097 bytes; a credential is 1 to 4096/],
    ['an empty credential', { identity: device, credential: Buffer.alloc(0) }, /credential is 0 bytes/],
    ['a credential without an identity', { credential: credentialFor(device, 'device') }, /a credential needs the identity it was issued to/],
    ['a credential of another identity', { identity: other, credential: credentialFor(device, 'device') }, /credential was issued to key [0-9a-f]{64}, not to this identity/],
    ['bytes that are no credential', { identity: device, credential: Buffer.from('hello') }, /credential is not a Tributary credential/],
    ['a node key of the wrong length', { nodePublicKey: Buffer.alloc(31, 1) }, /nodePublicKey is not an Ed25519 public key/],
    ['a fleet key that is no curve point', { fleetPublicKey: Buffer.alloc(32) }, /fleetPublicKey is not an Ed25519 public key/],
  ])('refuses %s with INVALID_CONFIG', (_what, options, message) => {
    let thrown: unknown;
    try {
      new Client('mem://fake', options);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(TributaryError);
    expect((thrown as TributaryError).code).toBe(Errors.INVALID_CONFIG.code);
    expect((thrown as Error).message).toMatch(message);
  });
});

describe('Client handshake over a real WebSocket', () => {
  it('shows its credential and checks the pin over ws', async () => {
    const node = new FakeNode();
    const server = await node.listen();
    try {
      const credential = credentialFor(device, 'device');
      const client = track(await Client.connect(server.url, { identity: device, credential, nodePublicKey: node.identity.publicKey }));
      await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
      expect(hex(node.connections[0].remotePayload)).toBe(hex(credential));

      const impostorPinned = track(new Client(server.url, { connectTimeoutMs: 60_000, nodePublicKey: generateIdentity().publicKey }));
      const err = await connectError(impostorPinned);
      expect(err.code).toBe(Errors.UNAUTHORIZED.code);
      expect(err.message).toContain(`refusing node at ${server.url}`);
      expect(node.connections).toHaveLength(2);
    } finally {
      await server.close();
    }
  });

  it('accepts a frame of exactly inboundFrameBytesMax, although it arrives sealed, and refuses one byte more', async () => {
    const inboundFrameBytesMax = 50_000;
    const node = new FakeNode();
    // Answers the first Metadata with a frame padded to `size` bytes, the second to one more.
    let extra = 0;
    node.hook = (req) => {
      const size = inboundFrameBytesMax + extra++;
      const frameOf = (padding: number) => encodeFrame(Kind.Metadata | RESPONSE, req.correlationId, { nodeId: 'fake-1', topics: [], padding: 'x'.repeat(padding) });
      const padding = 1000 + size - frameOf(1000).length;
      expect(frameOf(padding).length).toBe(size);
      return { answer: { nodeId: 'fake-1', topics: [], padding: 'x'.repeat(padding) } };
    };
    const server = await node.listen();
    try {
      const client = track(await Client.connect(server.url, { transportFactory: webSocketTransportFactory(), inboundFrameBytesMax, reconnect: { initialMs: 1000, maxMs: 1000 } }));
      await expect(client.request(Kind.Metadata, {})).resolves.toMatchObject({ nodeId: 'fake-1' });
      // One byte over: the reassembly refuses the frame and the answer is lost with the connection.
      await expect(client.request(Kind.Metadata, {})).rejects.toMatchObject({ code: Errors.NETWORK.code });
    } finally {
      await server.close();
    }
  });
});
