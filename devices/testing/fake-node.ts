// A small in-memory node for the SDK's unit tests: it speaks the wire protocol over
// memoryPipe (or over a real `ws` server) and keeps partitions as arrays of stored batches.
// Every connection starts, as on the node, with the Noise XX handshake (the fake node is
// the responder, with its own identity and optionally a credential to show in message 2);
// each FakeConnection records the client's static key and message-3 payload, so tests can
// check what a client showed. It checks no credential itself: `refuseHello` lets a test
// refuse a client the way the node does, with an error answer to Hello and a close.
// It is deliberately simple and obviously correct, and it lets tests inject what a real
// node would do only under faults: held, dropped or failed answers and closed connections,
// before or after the request took effect (an append whose answer is lost).
// Idempotent producers as the node's rules have them (node/storage/producer-state.ts):
// InitProducerId hands out ids from 1 at epoch 0; per producer id and partition the last 5
// batches are kept; a resend of one of them answers DUPLICATE_SEQUENCE with its offset, a
// sequence that does not follow the last one OUT_OF_ORDER_SEQUENCE (a producer it has no
// batch from must start at 0), an epoch below the one it holds INVALID_PRODUCER_EPOCH.
// Push delivery as the contract has it (protocol/frames.ts, Subscribe): a subscription per
// Subscribe, ids counted per connection from 1 (so a reconnect reuses them), pushes after
// the answer, on every append and grant, never past the credit but for the frame's first
// batch once any credit is left (credit = granted - pushed, below 0 after that batch), an
// error pushed once and the partition dropped, every subscription ended with its
// connection. Each FakeSubscription keeps what was granted and pushed, so tests can check
// the bound. `knowsSubscribe = false` makes it a node older than push delivery;
// `pushesBeforeAnswer = true` sends a subscription's first push ahead of its answer.
// It is not the node: integration tests run the real one (node/broker.ts).

import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { systemClock, type Clock } from '../../protocol/clock.js';
import { CREDENTIAL_BYTES_MAX } from '../../protocol/credential.js';
import { Errors, type ErrorSpec, type TributaryError } from '../../protocol/errors.js';
import { decodeFrame, encodeFrame, Kind, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, PROTOCOL_VERSION, RESPONSE, type Frame } from '../../protocol/frames.js';
import { Compression, compressionOf, decodeBatch, lastOffsetOf, readBatchHeader, setBaseOffset, validateBatch, validateRecords, type BatchHeader } from '../../protocol/record-batch.js';
import { generateIdentity, type IdentityKeyPair } from '../../protocol/key-file.js';
import { HANDSHAKE_MESSAGE2_BYTES_MIN, noiseKeyPairFromIdentity, secureResponder } from '../../protocol/secure-channel.js';
import { memoryPipe, socketTransport, type FrameTransport } from '../../protocol/transport.js';
import type { TransportFactory } from '../client.js';

type Body = Record<string, unknown>;

/**
 * What a hook may decide for one request: answer normally, answer this, stay silent, or cut
 * the connection; the last two either before the request takes effect or after (the node
 * appended, and the answer is lost).
 */
export type HookAction = undefined | { answer: Body } | 'silent' | 'close' | 'silent-after-handling' | 'close-after-handling';

export interface FakeRequest {
  kind: number;
  correlationId: number;
  body: Body;
  connection: FakeConnection;
}

interface StoredPartition {
  batches: Buffer[];
  logStartOffset: number;
  logEndOffset: number;
}

/** An idempotent producer's batch as the node remembers it. */
interface ProducerBatch {
  baseSequence: number;
  recordCount: number;
  baseOffset: number;
}

/** A subscription as the fake node keeps it, with its credit accounts for tests to check. */
export interface FakeSubscription {
  readonly id: number;
  readonly connection: FakeConnection;
  /** Subscribed partitions (by "topic/partition") and the next offset to push of each. */
  readonly positions: Map<string, { topic: string; partition: number; offset: number }>;
  readonly maxBytes: number;
  /** Granted minus pushed; below 0 after a push's first batch went past it. */
  credit: number;
  /** creditBytes of the Subscribe plus every Credit. */
  grantedBytes: number;
  /** Bytes of records pushed, all partitions. */
  pushedBytes: number;
  /** The most pushedBytes ever exceeded grantedBytes by: at most one batch. */
  overdraftBytesMax: number;
  /** Its answer is on its way: pushes may follow it. */
  started: boolean;
  ended: boolean;
}

/** The node keeps this many batches per producer id and partition, as Kafka does. */
const PRODUCER_BATCHES_KEPT = 5;
/** The node's default max.message.bytes, which bounds its check of compressed batches. */
const MAX_MESSAGE_BYTES_DEFAULT = 1024 * 1024 + 12;
const SEQUENCE_MAX = 0x7fffffff;

export class FakeConnection {
  inflight = 0;
  /** Subscription ids are unique per connection only, as on the node. */
  nextSubscriptionId = 1;
  /** The sealed transport once the handshake is done; the raw one until then. */
  transport: FrameTransport;
  /** 'failed' with `handshakeError` when the handshake did not complete. */
  handshake: 'pending' | 'done' | 'failed' = 'pending';
  handshakeError: TributaryError | null = null;
  /** The client's X25519 static key, from the handshake. */
  remoteStaticKey: Buffer | null = null;
  /** The client's message-3 payload (its credential, or empty when anonymous). */
  remotePayload: Buffer | null = null;
  constructor(
    readonly raw: FrameTransport,
    readonly node: FakeNode,
  ) {
    this.transport = raw;
  }
  answer(frame: { kind: number; correlationId: number }, body: Body): void {
    this.transport.send(encodeFrame(frame.kind | RESPONSE, frame.correlationId, body));
  }
}

export class FakeNode {
  frameBytesMax = 16 * 1024 * 1024;
  inflightMax = 32;
  nodeId = 'fake-1';
  /** The node's identity in the handshake; a test may replace it before clients connect. */
  identity: IdentityKeyPair = generateIdentity();
  /** Sent as the payload of handshake message 2: the node's credential, or nothing. */
  credential: Buffer | null = null;
  /**
   * Called at each Hello: an error refuses the client as the node does, by answering Hello
   * with it and closing the connection.
   */
  refuseHello: ((connection: FakeConnection) => TributaryError | undefined) | null = null;
  /** When true, the transport factory fails as a refused TCP connect would. */
  refuse = false;
  /** Every request received, in order (Hello included). */
  readonly requests: FakeRequest[] = [];
  /** Highest number of requests seen in progress on one connection at once. */
  maxInflightSeen = 0;
  readonly connections: FakeConnection[] = [];
  hook: ((req: FakeRequest) => HookAction | Promise<HookAction>) | null = null;
  /** When false, Subscribe, Credit and Unsubscribe are unknown kinds, as on an older node. */
  knowsSubscribe = true;
  /** Sends a new subscription's first pushes ahead of its Subscribe answer, which a client must survive. */
  pushesBeforeAnswer = false;
  /**
   * Times a Fetch's long poll (maxWaitMs): a test sharing a ManualClock with its client
   * sees a poll end only when it moves the clock.
   */
  clock: Clock = systemClock;
  /** Every subscription opened, ended ones too, in order. */
  readonly subscriptions: FakeSubscription[] = [];
  /** SubscribeData frames sent so far. */
  pushes = 0;
  private pushesHeld = false;
  /** Idempotent batches answered DUPLICATE_SEQUENCE, and OUT_OF_ORDER_SEQUENCE, so far. */
  duplicateBatches = 0;
  outOfOrderBatches = 0;
  private readonly topics = new Map<string, StoredPartition[]>();
  /** Producer ids handed out, with the epoch the node holds for each. */
  private readonly producerEpochs = new Map<number, number>();
  private nextProducerId = 1;
  /** Per "producerId/topic/partition": its last batches, oldest first. */
  private readonly producerBatches = new Map<string, ProducerBatch[]>();
  private appendWaiters: (() => void)[] = [];

  readonly transportFactory: TransportFactory = async () => {
    if (this.refuse) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const [clientSide, nodeSide] = memoryPipe();
    this.serve(nodeSide);
    return clientSide;
  };

  createTopic(name: string, partitions: number): void {
    this.topics.set(
      name,
      Array.from({ length: partitions }, () => ({ batches: [], logStartOffset: 0, logEndOffset: 0 })),
    );
  }

  partition(topic: string, partition: number): StoredPartition | undefined {
    return this.topics.get(topic)?.[partition];
  }

  /** Every stored record of a partition, decoded. */
  records(topic: string, partition: number): ReturnType<typeof decodeBatch>['records'] {
    const p = this.partition(topic, partition);
    return p === undefined ? [] : p.batches.flatMap((b) => decodeBatch(b).records);
  }

  /** Appends as the node does: validate, patch the base offset, keep the bytes. */
  append(topic: string, partition: number, batch: Uint8Array): number {
    const p = this.partition(topic, partition);
    if (p === undefined) throw new Error('no such partition');
    const bytes = Buffer.from(batch);
    validateBatch(bytes);
    // The node checks a compressed batch's records at produce (the fake has no topic
    // configs, so within the default max.message.bytes).
    if (compressionOf(bytes) !== Compression.None) validateRecords(bytes, MAX_MESSAGE_BYTES_DEFAULT);
    const base = p.logEndOffset;
    setBaseOffset(bytes, base);
    p.batches.push(bytes);
    p.logEndOffset = lastOffsetOf(bytes) + 1;
    const ws = this.appendWaiters;
    this.appendWaiters = [];
    for (const w of ws) w();
    this.pumpAll();
    return base;
  }

  /**
   * Deletes the batches wholly before `offset` and moves the log start there, as retention
   * does; a subscription positioned before it is pushed OFFSET_OUT_OF_RANGE.
   */
  deleteRecordsBefore(topic: string, partition: number, offset: number): void {
    const p = this.partition(topic, partition);
    if (p === undefined || offset > p.logEndOffset) throw new Error('no such partition or offset');
    p.batches = p.batches.filter((b) => lastOffsetOf(b) >= offset);
    p.logStartOffset = offset;
    this.pumpAll();
  }

  /** Sends no SubscribeData until releasePushes(), as a clogged link would. */
  holdPushes(): void {
    this.pushesHeld = true;
  }

  releasePushes(): void {
    this.pushesHeld = false;
    this.pumpAll();
  }

  /**
   * Pushes `error` for the partition in every live subscription holding it, which the
   * partition then leaves, as the node does when it cannot read the partition.
   */
  pushError(topic: string, partition: number, error: ErrorSpec, message = `${error.name}: injected by the test`): void {
    for (const sub of this.liveSubscriptions()) {
      const key = `${topic}/${partition}`;
      if (!sub.positions.delete(key)) continue;
      const p = this.partition(topic, partition);
      const result = { topic, partition, error: error.code, message, highWatermark: p?.logEndOffset ?? -1, logStartOffset: p?.logStartOffset ?? -1, records: Buffer.alloc(0) };
      this.sendPush(sub, [result], 0);
    }
  }

  /**
   * Raises the epoch the node holds for a producer id, as a newer incarnation taking it over
   * would: its batches at the old epoch are then refused INVALID_PRODUCER_EPOCH.
   */
  fenceProducer(producerId: number): void {
    this.producerEpochs.set(producerId, (this.producerEpochs.get(producerId) ?? 0) + 1);
  }

  /**
   * Forgets every producer's batches, as a node that lost its producer state would: the
   * next batch of a producer is then expected at sequence 0.
   */
  forgetProducers(): void {
    this.producerBatches.clear();
  }

  /** Closes every connection, as a node restart or a network cut would. */
  dropConnections(): void {
    for (const c of this.connections) c.raw.close(1001, 'fake node dropped the connection');
  }

  /** Handshakes on `raw` as the node does, then serves frames; the connection is recorded at once. */
  serve(raw: FrameTransport): FakeConnection {
    const connection = new FakeConnection(raw, this);
    this.connections.push(connection);
    void (async () => {
      let transport: FrameTransport;
      try {
        const session = await secureResponder(raw, {
          staticKeyPair: noiseKeyPairFromIdentity(this.identity),
          payload: this.credential ?? undefined,
          // As the node: room for a full credential in message 3 (and ours in message 2).
          handshakeFrameBytesMax: HANDSHAKE_MESSAGE2_BYTES_MIN + CREDENTIAL_BYTES_MAX,
        });
        transport = session.transport;
        connection.transport = transport;
        connection.remoteStaticKey = session.remoteStaticKey;
        connection.remotePayload = session.remotePayload;
        connection.handshake = 'done';
      } catch (err) {
        connection.handshake = 'failed';
        connection.handshakeError = err as TributaryError;
        return;
      }
      for await (const bytes of transport) {
        const frame = decodeFrame(bytes);
        const req: FakeRequest = { kind: frame.kind, correlationId: frame.correlationId, body: frame.body, connection };
        this.requests.push(req);
        connection.inflight++;
        this.maxInflightSeen = Math.max(this.maxInflightSeen, connection.inflight);
        void this.handle(frame, req, connection).finally(() => connection.inflight--);
      }
      // Subscriptions end with their connection.
      for (const sub of this.subscriptions) if (sub.connection === connection) sub.ended = true;
    })();
    return connection;
  }

  /** A real `ws` server on an ephemeral port, for tests of the default transport. */
  async listen(): Promise<{ url: string; close(): Promise<void> }> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1' });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    wss.on('connection', (ws) => this.serve(socketTransport(ws)));
    const port = (wss.address() as AddressInfo).port;
    return {
      url: `ws://127.0.0.1:${port}/v1`,
      close: () =>
        new Promise<void>((resolve) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => resolve());
        }),
    };
  }

  private async handle(frame: Frame, req: FakeRequest, connection: FakeConnection): Promise<void> {
    const refusal = frame.kind === Kind.Hello ? this.refuseHello?.(connection) : undefined;
    if (refusal !== undefined) {
      connection.answer(frame, { error: refusal.code, message: refusal.message });
      connection.transport.close(1008, 'fake node refused the client');
      return;
    }
    const action = this.hook && frame.kind !== Kind.Hello ? await this.hook(req) : undefined;
    if (action === 'silent') return;
    if (action === 'close') {
      connection.transport.close(1011, 'fake node closed on request');
      return;
    }
    if (action !== undefined && typeof action === 'object') return connection.answer(frame, action.answer);
    const body = await this.answer(frame.kind, frame.body, connection);
    if (this.pushesBeforeAnswer) this.startSubscriptions(connection);
    if (action === 'silent-after-handling') return this.startSubscriptions(connection);
    if (action === 'close-after-handling') {
      connection.transport.close(1011, 'fake node closed on request, after handling it');
      return;
    }
    if (body !== undefined) connection.answer(frame, body);
    // A new subscription's first push follows its answer on the wire.
    this.startSubscriptions(connection);
  }

  private async answer(kind: number, body: Body, connection: FakeConnection): Promise<Body | undefined> {
    const pushKind = kind === Kind.Subscribe || kind === Kind.Credit || kind === Kind.Unsubscribe;
    if (pushKind && !this.knowsSubscribe) return unknownKind(kind);
    switch (kind) {
      case Kind.Hello:
        if (body.version !== PROTOCOL_VERSION) return { error: Errors.UNSUPPORTED_VERSION.code, message: 'UNSUPPORTED_VERSION: bad version' };
        return { version: PROTOCOL_VERSION, nodeId: this.nodeId, frameBytesMax: this.frameBytesMax, inflightMax: this.inflightMax };
      case Kind.Metadata:
        return this.metadata(body);
      case Kind.Produce:
        return this.produce(body);
      case Kind.Fetch:
        return this.fetch(body);
      case Kind.ListOffsets:
        return this.listOffsets(body);
      case Kind.InitProducerId: {
        const producerId = this.nextProducerId++;
        this.producerEpochs.set(producerId, 0);
        return { producerId, producerEpoch: 0 };
      }
      case Kind.Subscribe:
        return this.subscribe(body, connection);
      case Kind.Credit: {
        const sub = this.liveSubscriptions().find((x) => x.connection === connection && x.id === body.subscriptionId);
        if (sub !== undefined) {
          sub.credit += body.bytes as number;
          sub.grantedBytes += body.bytes as number;
          this.pump(sub);
        }
        return undefined; // Credit is not answered
      }
      case Kind.Unsubscribe: {
        const sub = this.liveSubscriptions().find((x) => x.connection === connection && x.id === body.subscriptionId);
        if (sub === undefined) return { error: Errors.INVALID_REQUEST.code, message: `INVALID_REQUEST: no subscription ${String(body.subscriptionId)} on this connection` };
        sub.ended = true;
        return { error: 0 };
      }
      default:
        return unknownKind(kind);
    }
  }

  private subscribe(body: Body, connection: FakeConnection): Body {
    const credit = body.creditBytes as number;
    const sub: FakeSubscription = {
      id: connection.nextSubscriptionId++,
      connection,
      positions: new Map(),
      maxBytes: typeof body.maxBytes === 'number' ? body.maxBytes : Infinity,
      credit,
      grantedBytes: credit,
      pushedBytes: 0,
      overdraftBytesMax: 0,
      started: false,
      ended: false,
    };
    const wanted = body.partitions as { topic: string; partition: number; fetchOffset: number }[];
    const partitions = wanted.map((w) => {
      const p = this.partition(w.topic, w.partition);
      const base = { topic: w.topic, partition: w.partition };
      if (p === undefined) return { ...base, error: Errors.UNKNOWN_TOPIC.code, message: 'UNKNOWN_TOPIC: no such partition' };
      if (w.fetchOffset < p.logStartOffset || w.fetchOffset > p.logEndOffset) {
        return { ...base, error: Errors.OFFSET_OUT_OF_RANGE.code, message: 'OFFSET_OUT_OF_RANGE: out of range' };
      }
      sub.positions.set(`${w.topic}/${w.partition}`, { topic: w.topic, partition: w.partition, offset: w.fetchOffset });
      return { ...base, error: 0 };
    });
    this.subscriptions.push(sub);
    return { error: 0, subscriptionId: sub.id, partitions };
  }

  private liveSubscriptions(): FakeSubscription[] {
    return this.subscriptions.filter((s) => !s.ended && !s.connection.transport.isClosed);
  }

  private startSubscriptions(connection: FakeConnection): void {
    for (const sub of this.liveSubscriptions()) {
      if (sub.connection !== connection || sub.started) continue;
      sub.started = true;
      this.pump(sub);
    }
  }

  private pumpAll(): void {
    for (const sub of this.liveSubscriptions()) this.pump(sub);
  }

  /**
   * Pushes what is there while credit lasts. A frame takes batches in partition order while
   * they fit min(credit, maxBytes), and its first batch whatever its size: so the node is
   * never more than one batch past what was granted. Errors need no credit.
   */
  private pump(sub: FakeSubscription): void {
    if (this.pushesHeld || !sub.started || sub.ended || sub.connection.transport.isClosed) return;
    for (;;) {
      const results: Body[] = [];
      let bytes = 0;
      for (const [key, at] of sub.positions) {
        const p = this.partition(at.topic, at.partition);
        const base = { topic: at.topic, partition: at.partition, highWatermark: p?.logEndOffset ?? -1, logStartOffset: p?.logStartOffset ?? -1 };
        if (p === undefined || at.offset < p.logStartOffset || at.offset > p.logEndOffset) {
          const error = p === undefined ? Errors.UNKNOWN_TOPIC : Errors.OFFSET_OUT_OF_RANGE;
          results.push({ ...base, error: error.code, message: `${error.name}: pushed by the fake node`, records: Buffer.alloc(0) });
          sub.positions.delete(key);
          continue;
        }
        if (sub.credit <= 0) continue;
        const out: Buffer[] = [];
        for (const b of p.batches) {
          if (lastOffsetOf(b) < at.offset) continue;
          if (bytes > 0 && bytes + b.length > Math.min(sub.credit, sub.maxBytes)) break;
          out.push(b);
          bytes += b.length;
        }
        if (out.length === 0) continue;
        at.offset = lastOffsetOf(out[out.length - 1]) + 1;
        results.push({ ...base, error: 0, records: Buffer.concat(out) });
      }
      if (results.length === 0) return;
      this.sendPush(sub, results, bytes);
    }
  }

  private sendPush(sub: FakeSubscription, partitions: Body[], bytes: number): void {
    sub.credit -= bytes;
    sub.pushedBytes += bytes;
    sub.overdraftBytesMax = Math.max(sub.overdraftBytesMax, sub.pushedBytes - sub.grantedBytes);
    this.pushes++;
    sub.connection.transport.send(encodeFrame(Kind.SubscribeData | RESPONSE, 0, { subscriptionId: sub.id, partitions }));
  }

  private metadata(body: Body): Body {
    const names = (body.topics as string[] | undefined) ?? [...this.topics.keys()];
    return {
      nodeId: this.nodeId,
      topics: names.map((name) => {
        const parts = this.topics.get(name);
        if (parts === undefined) return { name, error: Errors.UNKNOWN_TOPIC.code, message: `UNKNOWN_TOPIC: topic '${name}' does not exist`, partitions: [], config: {} };
        return { name, error: 0, partitions: parts.map((_, partition) => ({ partition, leader: this.nodeId, leaderEpoch: 0 })), config: {} };
      }),
    };
  }

  private produce(body: Body): Body | undefined {
    const entries = body.partitions as { topic: string; partition: number; records: Uint8Array }[];
    const partitions = entries.map((e) => {
      if (this.partition(e.topic, e.partition) === undefined) {
        return { topic: e.topic, partition: e.partition, error: Errors.UNKNOWN_TOPIC.code, message: 'UNKNOWN_TOPIC: no such partition', baseOffset: -1, logStartOffset: -1 };
      }
      const base = { topic: e.topic, partition: e.partition, logStartOffset: 0 };
      const header = readBatchHeader(Buffer.from(e.records));
      if (header.producerId < 0) return { ...base, error: 0, baseOffset: this.append(e.topic, e.partition, e.records) };
      const refusal = this.checkSequence(e.topic, e.partition, header);
      if (refusal !== null) return { ...base, ...refusal };
      const baseOffset = this.append(e.topic, e.partition, e.records);
      this.rememberBatch(e.topic, e.partition, header, baseOffset);
      return { ...base, error: 0, baseOffset };
    });
    return body.acks === 0 ? undefined : { partitions };
  }

  /** Null when the idempotent batch may be appended; else the answer refusing it (or naming where it already is). */
  private checkSequence(topic: string, partition: number, h: BatchHeader): { error: number; message: string; baseOffset: number } | null {
    const held = this.producerEpochs.get(h.producerId) ?? 0;
    if (h.producerEpoch < held) {
      return { error: Errors.INVALID_PRODUCER_EPOCH.code, message: `INVALID_PRODUCER_EPOCH: epoch ${h.producerEpoch} is older than ${held}`, baseOffset: -1 };
    }
    const kept = this.producerBatches.get(`${h.producerId}/${topic}/${partition}`) ?? [];
    const earlier = kept.find((b) => b.baseSequence === h.baseSequence && b.recordCount === h.recordCount);
    if (earlier !== undefined) {
      this.duplicateBatches++;
      return { error: Errors.DUPLICATE_SEQUENCE.code, message: 'DUPLICATE_SEQUENCE: already written', baseOffset: earlier.baseOffset };
    }
    const last = kept[kept.length - 1];
    const expected = last === undefined ? 0 : (last.baseSequence + last.recordCount) % (SEQUENCE_MAX + 1);
    if (h.baseSequence !== expected) {
      this.outOfOrderBatches++;
      return { error: Errors.OUT_OF_ORDER_SEQUENCE.code, message: `OUT_OF_ORDER_SEQUENCE: sequence ${h.baseSequence}, expected ${expected}`, baseOffset: -1 };
    }
    return null;
  }

  private rememberBatch(topic: string, partition: number, h: BatchHeader, baseOffset: number): void {
    const key = `${h.producerId}/${topic}/${partition}`;
    const kept = this.producerBatches.get(key) ?? [];
    kept.push({ baseSequence: h.baseSequence, recordCount: h.recordCount, baseOffset });
    if (kept.length > PRODUCER_BATCHES_KEPT) kept.shift();
    this.producerBatches.set(key, kept);
  }

  private async fetch(body: Body): Promise<Body> {
    const wanted = body.partitions as { topic: string; partition: number; fetchOffset: number; maxBytes: number }[];
    const ready = () => wanted.some((w) => {
      const p = this.partition(w.topic, w.partition);
      return p === undefined || w.fetchOffset !== p.logEndOffset;
    });
    if (!ready()) {
      await new Promise<void>((resolve) => {
        const timer = this.clock.setTimeout(resolve, body.maxWaitMs as number);
        this.appendWaiters.push(() => {
          timer.cancel();
          resolve();
        });
      });
    }
    // KIP-74, as the node does: partitions are filled in request order from one budget of
    // maxBytes; the first with data gets at least one whole batch, later ones what is left.
    const responseBytesMax = typeof body.maxBytes === 'number' ? body.maxBytes : Infinity;
    let responseBytes = 0;
    return {
      partitions: wanted.map((w) => {
        const p = this.partition(w.topic, w.partition);
        const base = { topic: w.topic, partition: w.partition, highWatermark: p?.logEndOffset ?? -1, logStartOffset: p?.logStartOffset ?? -1 };
        if (p === undefined) return { ...base, error: Errors.UNKNOWN_TOPIC.code, message: 'UNKNOWN_TOPIC: no such partition', records: Buffer.alloc(0) };
        if (w.fetchOffset > p.logEndOffset || w.fetchOffset < p.logStartOffset) {
          return { ...base, error: Errors.OFFSET_OUT_OF_RANGE.code, message: 'OFFSET_OUT_OF_RANGE: out of range', records: Buffer.alloc(0) };
        }
        const out: Buffer[] = [];
        let bytes = 0;
        const budget = Math.min(w.maxBytes, responseBytesMax - responseBytes);
        if (budget <= 0 && responseBytes > 0) return { ...base, error: 0, records: Buffer.alloc(0) };
        for (const b of p.batches) {
          if (lastOffsetOf(b) < w.fetchOffset) continue;
          if (out.length > 0 && bytes + b.length > budget) break;
          out.push(b);
          bytes += b.length;
        }
        responseBytes += bytes;
        return { ...base, error: 0, records: Buffer.concat(out) };
      }),
    };
  }

  private listOffsets(body: Body): Body {
    const wanted = body.partitions as { topic: string; partition: number; timestamp: number }[];
    return {
      partitions: wanted.map((w) => {
        const p = this.partition(w.topic, w.partition);
        const base = { topic: w.topic, partition: w.partition };
        if (p === undefined) return { ...base, error: Errors.UNKNOWN_TOPIC.code, message: 'UNKNOWN_TOPIC: no such partition', offset: -1, timestamp: -1 };
        if (w.timestamp === LATEST_TIMESTAMP) return { ...base, error: 0, offset: p.logEndOffset, timestamp: -1 };
        if (w.timestamp === EARLIEST_TIMESTAMP) return { ...base, error: 0, offset: p.logStartOffset, timestamp: -1 };
        for (const b of p.batches) {
          if (readBatchHeader(b).maxTimestamp < w.timestamp) continue;
          const r = decodeBatch(b).records.find((x) => x.timestamp >= w.timestamp);
          if (r) return { ...base, error: 0, offset: r.offset, timestamp: r.timestamp };
        }
        return { ...base, error: 0, offset: -1, timestamp: -1 };
      }),
    };
  }
}

/** As the node answers a kind it does not know. */
function unknownKind(kind: number): Body {
  return { error: Errors.INVALID_REQUEST.code, message: `INVALID_REQUEST: unknown request kind ${kind}` };
}
