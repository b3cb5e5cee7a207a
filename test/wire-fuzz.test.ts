// A bounded, seeded fuzz of a real node over real WebSockets on loopback: ~150 connections
// that each send something wrong (bytes that are no handshake, forged handshake messages,
// sealed garbage, CBOR bombs, random requests, tampered messages), in small parallel waves.
// What must hold afterwards: every connection ended (the node closed every one it had to),
// no request failed with an unexpected server error, the node still serves an ordinary
// client, its gauges are back to zero, every close was counted under a known reason, and
// its memory did not run away. Replay a seed with TRIBUTARY_SEED=<seed>.

import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../node/broker.js';
import { silentLogger, type LogFields, type Logger } from '../node/logger.js';
import type { CloseReason } from '../node/metrics.js';
import { PRE_AUTH_FRAME_BYTES_MAX } from '../node/server/accept.js';
import { encodeFrame, Kind, PROTOCOL_VERSION, RESPONSE } from '../protocol/frames.js';
import { generateIdentity } from '../protocol/key-file.js';
import { decodeBatch, encodeBatch, splitBatches } from '../protocol/record-batch.js';
import { REVOCATIONS_TOPIC } from '../protocol/revocation.js';
import { HANDSHAKE_MESSAGE1_BYTES, HANDSHAKE_MESSAGE3_BYTES_MIN, IK_MESSAGE1_BYTES_MIN, noiseKeyPairFromIdentity, PROLOGUE_DEFAULT, type StaticKeyPair } from '../protocol/secure-channel.js';
import { Rng } from '../protocol/testdata/helpers.js';
import { tempDir } from './helpers/node-process.js';
import { RawClient } from './helpers/raw-client.js';
import { until } from './helpers/until.js';

const SEED = process.env.TRIBUTARY_SEED ? Number(process.env.TRIBUTARY_SEED) >>> 0 : 0x5eed_f022;
const CONNECTIONS = 150;
const WAVE = 10;
/** How long a connection may stay open before the test closes it itself. */
const CONNECTION_BOUND_MS = 3000;
const RSS_GROWTH_BYTES_MAX = 200 * 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 300;
const HELLO_TIMEOUT_MS = 300;
const TOPICS = ['fz.a', 'fz.b', 'fz-c', REVOCATIONS_TOPIC, 'missing'];

// Every CloseReason of node/metrics.ts, checked both ways by the compiler: a reason added
// there and not here fails the typecheck.
const CLOSE_REASONS = [
  'client_closed',
  'node_shutdown',
  'handshake_timeout',
  'handshake_malformed',
  'handshake_too_big',
  'handshake_failed',
  'handshake_abandoned',
  'unauthorized',
  'hello_timeout',
  'hello_invalid',
  'frame_malformed',
  'frame_too_big',
  'sealed_frame_failed',
  'credential_revoked',
  'credential_expired',
  'connections_per_principal',
  'request_bytes_max',
  'protocol_error',
  'preauth_evicted',
  'http_timeout',
  'fault_injected',
] as const satisfies readonly CloseReason[];
const allReasonsListed: [Exclude<CloseReason, (typeof CLOSE_REASONS)[number]>] extends [never] ? true : false = true;

/** Close codes a connection may end with: the node's refusals, or our own close (1005). */
const CLOSE_CODES_EXPECTED = new Set([1002, 1005, 1008, 1009, 1013]);

interface NoiseState {
  initialise(prologue: Buffer, remoteStatic?: Buffer): void;
  send(payload?: Buffer): Buffer;
}
const Noise = createRequire(import.meta.url)('noise-handshake') as new (pattern: 'XX', initiator: boolean, staticKeyPair: StaticKeyPair) => NoiseState;

type Category = 'wire-junk' | 'message3-junk' | 'sealed-junk' | 'session-junk' | 'tamper';
const CATEGORIES: readonly Category[] = ['wire-junk', 'message3-junk', 'sealed-junk', 'session-junk', 'tamper'];

interface Outcome {
  index: number;
  category: Category;
  /** What was sent, for the failure message. */
  plan: string;
  /** The node must close this connection by itself. */
  nodeMustClose: boolean;
  /** Closed by the end of its script or its bound, not by us. */
  endedByItself: boolean;
  code: number;
  reason: string;
  /** The close reason the node's metrics must count, when it is known in advance. */
  expectedLabel?: CloseReason;
}

const where = (o: Pick<Outcome, 'index' | 'category' | 'plan'>) => `seed ${SEED} connection ${o.index} (${o.category}: ${o.plan})`;

// --- generators -------------------------------------------------------------------------

function junkLength(rng: Rng): number {
  return rng.pick([
    () => 0,
    () => rng.int(1, HANDSHAKE_MESSAGE1_BYTES - 1),
    () => HANDSHAKE_MESSAGE1_BYTES,
    () => rng.int(33, 200),
    () => rng.int(200, PRE_AUTH_FRAME_BYTES_MAX),
    () => PRE_AUTH_FRAME_BYTES_MAX + rng.int(0, 1),
    () => rng.int(0, 6000),
  ])();
}

/** CBOR that is well-formed-looking but costly: deep nesting, huge declared lengths, many items. */
function cborBomb(rng: Rng): Buffer {
  const head = Buffer.from([0x83, 0x01, 0x01]); // [Hello, 1, <bomb>]
  const bombs: (() => Buffer)[] = [
    () => Buffer.alloc(rng.int(33, 3000), 0x81), // arrays of one, nested past depthMax
    () => Buffer.alloc(rng.int(33, 3000), 0x9f), // indefinite arrays, nested, never broken
    () => Buffer.concat([Buffer.alloc(rng.int(33, 1000), 0xc6), Buffer.from([0x00])]), // tags in tags
    () => Buffer.concat([Buffer.from([0xa1, 0x61, 0x61]), Buffer.alloc(rng.int(33, 2000), 0xa1)]), // maps in maps
    () => Buffer.from([0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]), // bytes(2^63-1)
    () => Buffer.from([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // array(2^64-1)
    () => Buffer.from([0xba, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00]), // map(2^32-1)
    () => Buffer.concat([Buffer.from([0x9a, 0x00, 0x0f, 0x42, 0x40]), Buffer.alloc(rng.int(100, 3000), 0x00)]), // array(1e6) of too few
    () => Buffer.concat([Buffer.from([0x5f]), Buffer.alloc(rng.int(10, 2000), 0x40)]), // endless empty chunks
    () => Buffer.from([0x1c]), // reserved additional info
    () => Buffer.concat([Buffer.from([0xa1, 0x67]), Buffer.from('version'), Buffer.from([0xfb]), rng.bytes(8)]), // {version: float}
  ];
  return Buffer.concat([head, rng.pick(bombs)()]);
}

function randomScalar(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => rng.int(-2, 3),
    () => rng.int(-0x80000000, 0x7fffffff),
    () => rng.pick([2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 60, 1.5, -0.5]),
    () => rng.pick(TOPICS),
    () => rng.bytes(rng.int(0, 64)).toString('latin1'),
    () => rng.bytes(rng.int(0, 128)),
    () => rng.bool(),
    () => null,
  ])();
}

function randomValue(rng: Rng, depth = 0): unknown {
  if (depth >= 3 || rng.bool(0.6)) return randomScalar(rng);
  if (rng.bool()) return Array.from({ length: rng.int(0, 4) }, () => randomValue(rng, depth + 1));
  return randomMap(rng, depth + 1);
}

const FIELDS = ['version', 'clientId', 'topics', 'partitions', 'name', 'acks', 'timeoutMs', 'maxWaitMs', 'minBytes', 'maxBytes', 'topic', 'partition', 'fetchOffset', 'records', 'timestamp', 'config', 'includeInternal'];

function randomMap(rng: Rng, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let n = rng.int(0, 5); n > 0; n--) out[rng.bool(0.85) ? rng.pick(FIELDS) : `k${rng.int(0, 99)}`] = randomValue(rng, depth);
  return out;
}

/** A record batch: valid, or valid and then cut, bit-flipped or padded, or random bytes. */
function randomRecords(rng: Rng): Buffer {
  const records = Array.from({ length: rng.int(1, 4) }, () => ({ key: rng.bool() ? rng.bytes(rng.int(0, 40)) : null, value: rng.bytes(rng.int(0, 200)) }));
  const batch = encodeBatch(records);
  return rng.pick<() => Buffer>([
    () => batch,
    () => batch.subarray(0, rng.int(0, batch.length - 1)),
    () => {
      const bad = Buffer.from(batch);
      bad[rng.int(0, bad.length - 1)] ^= 1 << rng.int(0, 7);
      return bad;
    },
    () => Buffer.concat([batch, rng.bytes(rng.int(1, 64))]),
    () => rng.bytes(rng.int(0, 300)),
  ])();
}

/** A request body near what `kind` expects, so the fuzz reaches past the first field check. */
function nearValidBody(rng: Rng, kind: number): Record<string, unknown> {
  const partition = () => rng.pick([0, 0, 1, -1, 99, 1.5, '0']);
  switch (kind) {
    case Kind.Hello:
      return { version: rng.pick([PROTOCOL_VERSION, 0, 2, -1, 'one']), clientId: randomScalar(rng) };
    case Kind.Metadata:
      return { topics: rng.pick<unknown>([undefined, null, [], [rng.pick(TOPICS)], TOPICS, 'fz.a', [1, {}]]), includeInternal: rng.pick([true, false, 1]) };
    case Kind.CreateTopics:
      return {
        topics: [
          {
            name: rng.pick([...TOPICS, '', '..', 'bad name', 'x'.repeat(300), 7]),
            partitions: rng.pick([-1, 0, 1, 2, 5000, 2 ** 31, 1.5, '2']),
            config: rng.pick<unknown>([undefined, {}, { 'cleanup.policy': 'compact' }, { 'segment.bytes': -1 }, { bogus: 1 }, { 'retention.ms': 'soon' }, 'x']),
          },
        ],
      };
    case Kind.DeleteTopics:
      return { topics: rng.pick<unknown>([[rng.pick(TOPICS)], [], ['missing', 5], 'fz.a']) };
    case Kind.Produce:
      return {
        acks: rng.pick([1, 1, -1, 0, 2, '1']),
        timeoutMs: rng.pick([undefined, 0, 100, -1]),
        partitions: [{ topic: rng.pick(TOPICS), partition: partition(), records: rng.pick<() => unknown>([() => randomRecords(rng), () => randomScalar(rng)])() }],
      };
    case Kind.Fetch:
      return {
        maxWaitMs: rng.pick([0, 0, 20, -1, 0x7fffffff, undefined]),
        minBytes: rng.pick([undefined, 0, 1, 1 << 20, -1]),
        maxBytes: rng.pick([undefined, 1, 1 << 20, 0]),
        partitions: [{ topic: rng.pick(TOPICS), partition: partition(), fetchOffset: rng.pick([0, 1, 5, -1, Number.MAX_SAFE_INTEGER, 1.5]), maxBytes: rng.pick([undefined, 1, 0]) }],
      };
    case Kind.ListOffsets:
      return { partitions: [{ topic: rng.pick(TOPICS), partition: partition(), timestamp: rng.pick([-1, -2, -3, 0, Date.now(), 'now']) }] };
    default:
      return randomMap(rng);
  }
}

/** One sealed frame after Hello: a request of a random kind with a random or near-valid body, or junk. */
function sessionFrame(rng: Rng, correlationId: number): { bytes: Buffer; what: string } {
  if (rng.bool(0.08)) return { bytes: rng.bytes(rng.int(0, 300)), what: 'junk' };
  const kind = rng.bool(0.85) ? rng.int(1, 7) : rng.pick([0, 8, 100, 127, rng.int(0, 255)]);
  const body = rng.bool(0.7) ? nearValidBody(rng, kind) : randomMap(rng);
  return { bytes: encodeFrame(kind, rng.bool(0.95) ? correlationId : rng.pick([0, 0xffffffff]), body), what: `kind ${kind}` };
}

/** A first sealed frame that is not a usable Hello, so the node must close the connection. */
function firstFrameJunk(rng: Rng): { bytes: Buffer; what: string } {
  const valid = encodeFrame(rng.int(1, 7), rng.int(0, 100), nearValidBody(rng, rng.int(1, 7)));
  return rng.pick<() => { bytes: Buffer; what: string }>([
    () => ({ bytes: rng.bytes(junkLength(rng)), what: 'random bytes' }),
    () => ({ bytes: valid.subarray(0, rng.int(0, valid.length - 1)), what: 'truncated frame' }),
    () => ({ bytes: encodeFrame(Kind.Hello, 1, { version: PROTOCOL_VERSION, clientId: 'x' }).subarray(0, rng.int(0, 10)), what: 'truncated Hello' }),
    () => ({ bytes: cborBomb(rng), what: 'CBOR bomb' }),
    () => ({ bytes: encodeFrame(rng.int(2, 7), 1, nearValidBody(rng, Kind.Metadata)), what: 'request before Hello' }),
    () => ({ bytes: encodeFrame(Kind.Hello, 1, { version: rng.pick([0, 2, 'x', -1]), clientId: 'x' }), what: 'Hello of a bad version' }),
    () => ({ bytes: encodeFrame(Kind.Hello | RESPONSE, 1, { version: PROTOCOL_VERSION }), what: 'a response' }),
    () => ({ bytes: encodeFrame(Kind.Hello, 1, { version: PROTOCOL_VERSION, clientId: 'x'.repeat(5000) }), what: 'oversized Hello' }),
  ])();
}

function mutate(rng: Rng, message: Buffer): { bytes: Buffer; what: string } {
  return rng.pick<() => { bytes: Buffer; what: string }>([
    () => {
      const bad = Buffer.from(message);
      bad[rng.int(0, Math.max(0, bad.length - 1))] ^= 1 << rng.int(0, 7);
      return { bytes: bad, what: 'bit flip' };
    },
    () => ({ bytes: message.subarray(0, rng.int(0, Math.max(0, message.length - 1))), what: 'truncated' }),
    () => ({ bytes: Buffer.concat([message, rng.bytes(rng.int(1, 64))]), what: 'extended' }),
    () => ({ bytes: rng.bytes(message.length), what: 'replaced' }),
    () => ({ bytes: Buffer.alloc(0), what: 'emptied' }),
  ])();
}

// --- one connection ---------------------------------------------------------------------

/** Resolves with the close, or null once `ms` have passed. The timer never outlives it. */
function closedWithin(client: RawClient, ms: number): Promise<{ code: number; reason: string } | null> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([client.closed, new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)))]).finally(() => clearTimeout(timer));
}

/** A request whose answer may never come (the node may close first): resolves either way. */
async function requestOrClose(client: RawClient, kind: number, body: object): Promise<'answered' | 'closed'> {
  const answered = client.request(kind, body).then(
    () => 'answered' as const,
    () => 'closed' as const,
  );
  return Promise.race([answered, client.closed.then(() => 'closed' as const)]);
}

async function runConnection(url: string, index: number, nodePublicKey: Buffer): Promise<Outcome> {
  const rng = new Rng((SEED ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0);
  const category = CATEGORIES[index % CATEGORIES.length];
  const client = await RawClient.open(url);
  let plan = '';
  let expectedLabel: CloseReason | undefined;
  let nodeMustClose = true;
  // Each script sends its bytes; failures on our side (a handshake the tamper broke, a
  // request the close cut short) are part of the fuzz, not of the test.
  const script = async (): Promise<void> => {
    switch (category) {
      case 'wire-junk': {
        const n = junkLength(rng);
        plan = `message 1 of ${n} random bytes`;
        // 32 bytes are a plausible XX message 1 (then silence); 96 or more are read as IK's,
        // which random bytes fail to authenticate; anything else is neither.
        expectedLabel =
          n > PRE_AUTH_FRAME_BYTES_MAX
            ? 'handshake_too_big'
            : n === HANDSHAKE_MESSAGE1_BYTES
              ? 'handshake_timeout'
              : n >= IK_MESSAGE1_BYTES_MIN
                ? 'handshake_failed'
                : 'handshake_malformed';
        client.sendWire(rng.bytes(n));
        return;
      }
      case 'message3-junk': {
        const noise = new Noise('XX', true, noiseKeyPairFromIdentity(generateIdentity()));
        noise.initialise(PROLOGUE_DEFAULT);
        const n = junkLength(rng);
        plan = `valid message 1, message 3 of ${n} random bytes`;
        expectedLabel = n > PRE_AUTH_FRAME_BYTES_MAX ? 'handshake_too_big' : n < HANDSHAKE_MESSAGE3_BYTES_MIN ? 'handshake_malformed' : 'handshake_failed';
        client.sendWire(noise.send());
        client.sendWire(rng.bytes(n));
        return;
      }
      case 'sealed-junk': {
        await client.handshake();
        if (rng.bool(0.1)) {
          plan = 'handshake, then silence';
          expectedLabel = 'hello_timeout';
          return;
        }
        if (rng.bool(0.1)) {
          const n = rng.int(0, 300);
          plan = `handshake, then ${n} unsealed bytes`;
          client.sendWire(rng.bytes(n));
          return;
        }
        const frames = Array.from({ length: rng.int(1, 3) }, () => firstFrameJunk(rng));
        plan = `handshake, then sealed: ${frames.map((f) => `${f.what} (${f.bytes.length} B)`).join(', ')}`;
        for (const f of frames) client.sendRaw(f.bytes);
        return;
      }
      case 'session-junk': {
        nodeMustClose = false;
        await client.handshake();
        if ((await requestOrClose(client, Kind.Hello, { version: PROTOCOL_VERSION, clientId: `fuzz-${index}` })) === 'closed') {
          plan = 'Hello refused';
          nodeMustClose = true;
          return;
        }
        const frames = Array.from({ length: rng.int(1, 8) }, (_, i) => sessionFrame(rng, 1000 + i));
        plan = `Hello, then ${frames.map((f) => `${f.what} (${f.bytes.length} B)`).join(', ')}`;
        for (const f of frames) client.sendRaw(f.bytes);
        // Frames are read in order: once a well-formed request sent last is answered, the
        // node has read everything before it and chose to keep the connection.
        await requestOrClose(client, Kind.Metadata, {});
        return;
      }
      case 'tamper': {
        // XX: 0 message 1, 1 message 3, 2 the stream header, 3 Hello, 4 the request after it.
        // IK (the node's key pinned): 0 message 1, 1 the stream header, 2 Hello, 3 the request.
        const ik = rng.bool(0.5);
        const target = rng.int(0, ik ? 3 : 4);
        let what = 'never applied';
        plan = `${ik ? 'IK' : 'XX'} message ${target} tampered`;
        try {
          await client.handshake({
            nodePublicKey: ik ? nodePublicKey : undefined,
            tamper: (message, i) => {
              if (i !== target) return message;
              const m = mutate(rng, message);
              what = m.what;
              return m.bytes;
            },
          });
          if ((await requestOrClose(client, Kind.Hello, { version: PROTOCOL_VERSION, clientId: `fuzz-${index}` })) === 'answered') {
            await requestOrClose(client, Kind.Metadata, {});
          }
        } finally {
          plan = `${ik ? 'IK' : 'XX'} message ${target} ${what}`;
        }
        return;
      }
    }
  };
  await script().catch(() => {});
  // A session the node may keep is closed by us as soon as its script is done.
  const closed = await closedWithin(client, nodeMustClose ? CONNECTION_BOUND_MS : 0);
  if (closed) return { index, category, plan, nodeMustClose, endedByItself: true, code: closed.code, reason: closed.reason, expectedLabel };
  client.close();
  const ours = await client.closed;
  return { index, category, plan, nodeMustClose, endedByItself: false, code: ours.code, reason: ours.reason, expectedLabel };
}

// --- the node's view --------------------------------------------------------------------

async function closeCounters(broker: Broker): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^tributary_connections_closed_total\{reason="([^"]*)"\} (\d+)/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe(`wire fuzz against a real node (seed ${SEED})`, () => {
  const dir = tempDir('trib-fuzz-');
  let broker: Broker;
  const unexpected: string[] = [];
  const logger: Logger = {
    ...silentLogger,
    error: (fields: LogFields | string, msg?: string) => void unexpected.push(`${msg ?? ''} ${JSON.stringify(fields)}`.slice(0, 2000)),
  };

  beforeAll(async () => {
    broker = await startBroker({ dataDir: dir.path, port: 0, logger, limits: { handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, helloTimeoutMs: HELLO_TIMEOUT_MS } });
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  it('survives every connection, closes those it must, and keeps serving', async () => {
    expect(allReasonsListed).toBe(true);
    const rssBefore = process.memoryUsage().rss;
    const outcomes: Outcome[] = [];
    for (let start = 0; start < CONNECTIONS; start += WAVE) {
      const wave = Array.from({ length: Math.min(WAVE, CONNECTIONS - start) }, (_, i) => runConnection(broker.url, start + i, broker.publicKey));
      outcomes.push(...(await Promise.all(wave)));
    }
    expect(outcomes).toHaveLength(CONNECTIONS);

    // Every connection that had to be closed by the node was, within the bound.
    const leftOpen = outcomes.filter((o) => o.nodeMustClose && !o.endedByItself);
    expect(leftOpen.map(where), `seed ${SEED}: the node left these open for ${CONNECTION_BOUND_MS} ms`).toEqual([]);
    const badCodes = outcomes.filter((o) => !CLOSE_CODES_EXPECTED.has(o.code));
    expect(badCodes.map((o) => `${where(o)}: closed ${o.code} ${o.reason}`), `seed ${SEED}: unexpected close codes`).toEqual([]);
    // Session fuzz may keep a connection open, but a close by the node there still names why.
    for (const o of outcomes.filter((x) => x.endedByItself && x.code !== 1009)) expect(o.reason, where(o)).not.toBe('');
    expect(unexpected, `seed ${SEED}: the node logged errors`).toEqual([]);
    // Not vacuous: some random sessions got past Hello and were served to the end.
    expect(outcomes.filter((o) => o.category === 'session-junk' && !o.endedByItself).length, `seed ${SEED}`).toBeGreaterThan(0);

    // Still serving an ordinary client, end to end.
    const client = await RawClient.connect(broker.url);
    const created = await client.request<{ topics: { error: number }[] }>(Kind.CreateTopics, { topics: [{ name: 'after-fuzz', partitions: 1 }] });
    expect(created.topics[0].error, `seed ${SEED}`).toBe(0);
    const produced = await client.request<{ partitions: { error: number; baseOffset: number }[] }>(Kind.Produce, {
      acks: 1,
      partitions: [{ topic: 'after-fuzz', partition: 0, records: encodeBatch([{ key: Buffer.from('k'), value: Buffer.from('still here') }]) }],
    });
    expect(produced.partitions[0], `seed ${SEED}`).toMatchObject({ error: 0, baseOffset: 0 });
    const fetched = await client.request<{ partitions: { error: number; records: Uint8Array }[] }>(Kind.Fetch, {
      maxWaitMs: 0,
      partitions: [{ topic: 'after-fuzz', partition: 0, fetchOffset: 0 }],
    });
    expect(fetched.partitions[0].error, `seed ${SEED}`).toBe(0);
    const values = splitBatches(Buffer.from(fetched.partitions[0].records)).flatMap((b) => decodeBatch(b).records.map((r) => r.value?.toString()));
    expect(values, `seed ${SEED}`).toEqual(['still here']);
    client.close();
    await client.closed;

    // Nothing left behind: connections, handshakes and requests all at zero, once the
    // last closes have landed.
    const total = CONNECTIONS + 1;
    let stats = broker.stats();
    let counters = await closeCounters(broker);
    const settled = async (): Promise<boolean> => {
      stats = broker.stats();
      counters = await closeCounters(broker);
      return stats.connections === 0 && stats.handshakesInProgress === 0 && stats.requestsInFlight === 0 && sum(counters) >= total;
    };
    // Given up on after 5 s, the expectations below say what was left, with the seed.
    await until(settled, 'every connection closed and counted', { timeoutMs: 5000, intervalMs: 20 }).catch(() => {});
    expect({ connections: stats.connections, handshakesInProgress: stats.handshakesInProgress, requestsInFlight: stats.requestsInFlight }, `seed ${SEED}`).toEqual({
      connections: 0,
      handshakesInProgress: 0,
      requestsInFlight: 0,
    });

    // Every connection counted once, under a known reason; those whose reason is certain
    // from what they sent, under that one.
    const nodeClosed = outcomes.filter((o) => o.endedByItself).length;
    expect(sum(counters), `seed ${SEED}: closes counted ${JSON.stringify([...counters])}`).toBeGreaterThanOrEqual(nodeClosed);
    expect(sum(counters), `seed ${SEED}: closes counted ${JSON.stringify([...counters])}`).toBe(total);
    for (const label of counters.keys()) expect(CLOSE_REASONS as readonly string[], `seed ${SEED}: unknown close reason`).toContain(label);
    const expectedByLabel = new Map<string, number>();
    for (const o of outcomes) if (o.expectedLabel) expectedByLabel.set(o.expectedLabel, (expectedByLabel.get(o.expectedLabel) ?? 0) + 1);
    for (const [label, n] of expectedByLabel) {
      expect(counters.get(label) ?? 0, `seed ${SEED}: ${label} counted ${JSON.stringify([...counters])}`).toBeGreaterThanOrEqual(n);
    }

    // A coarse bound: the node shares this process with vitest and the clients.
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    expect(rssGrowth, `seed ${SEED}: rss grew by ${rssGrowth} bytes`).toBeLessThan(RSS_GROWTH_BYTES_MAX);
  });
});
