// A small in-memory node for the SDK's unit tests: it speaks the wire protocol over
// memoryPipe (or over a real `ws` server) and keeps partitions as arrays of stored batches.
// Every connection starts, as on the node, with the Noise XX handshake (the fake node is
// the responder, with its own identity and optionally a credential to show in message 2);
// each FakeConnection records the client's static key and message-3 payload, so tests can
// check what a client showed. It checks no credential itself: `refuseHello` lets a test
// refuse a client the way the node does, with an error answer to Hello and a close.
// It is deliberately simple, and it lets tests inject what a real node would do only under
// faults: held, dropped or failed answers and closed connections, before or after the
// request took effect (an append whose answer is lost).
// It re-implements no rule of the node's: it decodes requests with the node's decoder
// (protocol/requests.ts: a malformed request gets the node's answer), cuts Fetch answers
// and pushes by the node's fetch rules (protocol/fetch-rules.ts: whole batches, KIP-74,
// OFFSET_OUT_OF_RANGE outside [log start, log end]), and checks idempotent batches by the
// node's sequence rule (protocol/producer-sequence.ts), after validating them as the node
// does (protocol/record-batch.ts). InitProducerId hands out ids from 1 at epoch 0. What it
// keeps simpler than the node: one segment per partition, the high watermark at the log
// end, no topic configs, ACLs or groups. The SDK's behaviour suites that need no fault run
// against it and the real node alike (devices/*.both-nodes.test.ts), which keeps it honest.
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
import { Errors, TributaryError, type ErrorSpec } from '../../protocol/errors.js';
import { firstRecordAtOrAfter, isFetchOffsetInLog, offsetOutOfRange, partitionReadBytesMax, selectFetchBatches } from '../../protocol/fetch-rules.js';
import { decodeFrame, encodeFrame, Kind, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, PROTOCOL_VERSION, RESPONSE, type Frame } from '../../protocol/frames.js';
import { checkSequence, rememberBatch, type ProducerSequences } from '../../protocol/producer-sequence.js';
import { Compression, compressionOf, decodeBatch, lastOffsetOf, readBatchHeader, setBaseOffset, validateBatch, validateRecords } from '../../protocol/record-batch.js';
import { decodeRequest, isInvalid, type DecodedRequests, type RequestLimits } from '../../protocol/requests.js';
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
  /** What the partition keeps of each idempotent producer, by producer id. */
  producers: Map<number, ProducerSequences>;
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

/** The node's default max.message.bytes, which bounds its check of compressed batches. */
const MAX_MESSAGE_BYTES_DEFAULT = 1024 * 1024 + 12;
/** The node's default limits.requestEntriesMax, for decoding requests as it does. */
const DECODE_LIMITS: RequestLimits = { requestEntriesMax: 10_000 };

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
  private nextProducerId = 1;
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
      Array.from({ length: partitions }, () => ({ batches: [], logStartOffset: 0, logEndOffset: 0, producers: new Map() })),
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
    validateForAppend(bytes);
    return this.store(p, bytes);
  }

  private store(p: StoredPartition, bytes: Buffer): number {
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
   * Raises the epoch every partition holds for a producer id, as a newer incarnation taking
   * it over would: its batches at the old epoch are then refused INVALID_PRODUCER_EPOCH.
   */
  fenceProducer(producerId: number): void {
    for (const p of this.allPartitions()) {
      const held = p.producers.get(producerId);
      if (held !== undefined) p.producers.set(producerId, { epoch: held.epoch + 1, batches: [] });
    }
  }

  /**
   * Forgets every producer's batches, as a node that lost its producer state would: the
   * next batch of a producer is then expected at sequence 0.
   */
  forgetProducers(): void {
    for (const p of this.allPartitions()) p.producers.clear();
  }

  private allPartitions(): StoredPartition[] {
    return [...this.topics.values()].flat();
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

  /**
   * The answer to one request, decoded as the node decodes it: a request that fails as a
   * whole is answered with the node's error, before anything else happens.
   */
  private async answer(kind: number, body: Body, connection: FakeConnection): Promise<Body | undefined> {
    const pushKind = kind === Kind.Subscribe || kind === Kind.Credit || kind === Kind.Unsubscribe;
    if (pushKind && !this.knowsSubscribe) return unknownKind(kind);
    try {
      switch (kind) {
        case Kind.Hello: {
          const { version } = decodeRequest(Kind.Hello, body, DECODE_LIMITS);
          if (version !== PROTOCOL_VERSION) return { error: Errors.UNSUPPORTED_VERSION.code, message: `client speaks version ${version}, this node speaks ${PROTOCOL_VERSION}` };
          return { version: PROTOCOL_VERSION, nodeId: this.nodeId, frameBytesMax: this.frameBytesMax, inflightMax: this.inflightMax };
        }
        case Kind.Metadata:
          return this.metadata(decodeRequest(Kind.Metadata, body, DECODE_LIMITS));
        case Kind.Produce:
          return this.produce(decodeRequest(Kind.Produce, body, DECODE_LIMITS));
        case Kind.Fetch:
          return await this.fetch(decodeRequest(Kind.Fetch, body, DECODE_LIMITS));
        case Kind.ListOffsets:
          return this.listOffsets(decodeRequest(Kind.ListOffsets, body, DECODE_LIMITS));
        case Kind.InitProducerId:
          decodeRequest(Kind.InitProducerId, body, DECODE_LIMITS);
          return { error: 0, producerId: this.nextProducerId++, producerEpoch: 0 };
        case Kind.Subscribe:
          return this.subscribe(decodeRequest(Kind.Subscribe, body, DECODE_LIMITS), connection);
        case Kind.Credit: {
          const request = decodeRequest(Kind.Credit, body, DECODE_LIMITS);
          const sub = this.liveSubscriptions().find((x) => x.connection === connection && x.id === request.subscriptionId);
          if (sub !== undefined) {
            sub.credit += request.bytes;
            sub.grantedBytes += request.bytes;
            this.pump(sub);
          }
          return undefined; // Credit is not answered
        }
        case Kind.Unsubscribe: {
          const request = decodeRequest(Kind.Unsubscribe, body, DECODE_LIMITS);
          const sub = this.liveSubscriptions().find((x) => x.connection === connection && x.id === request.subscriptionId);
          if (sub === undefined) return { error: Errors.INVALID_REQUEST.code, message: `no subscription ${request.subscriptionId} on this connection` };
          sub.ended = true;
          return { error: 0 };
        }
        default:
          return unknownKind(kind);
      }
    } catch (err) {
      if (err instanceof TributaryError) return { error: err.code, message: err.detail };
      throw err;
    }
  }

  private subscribe(request: DecodedRequests[Kind.Subscribe], connection: FakeConnection): Body {
    const credit = request.creditBytes;
    const sub: FakeSubscription = {
      id: connection.nextSubscriptionId++,
      connection,
      positions: new Map(),
      maxBytes: request.maxBytes ?? Infinity,
      credit,
      grantedBytes: credit,
      pushedBytes: 0,
      overdraftBytesMax: 0,
      started: false,
      ended: false,
    };
    const partitions = request.partitions.map((part) => {
      const { topic, partition, fetchOffset } = part;
      if (isInvalid(part)) return { topic, partition, ...part.invalid };
      const p = this.partition(topic, partition);
      if (p === undefined) return { topic, partition, ...unknownPartition(topic, partition) };
      if (!isFetchOffsetInLog(fetchOffset, p.logStartOffset, p.logEndOffset)) {
        return { topic, partition, ...answerOf(offsetOutOfRange(`${topic}-${partition}`, fetchOffset, p.logStartOffset, p.logEndOffset)) };
      }
      sub.positions.set(`${topic}/${partition}`, { topic, partition, offset: fetchOffset });
      return { topic, partition, error: 0 };
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
   * Pushes what is there while credit lasts. A frame's partitions share min(credit, maxBytes)
   * by the node's fetch rules (each with data at least one whole batch while any is left),
   * so the node is never more than one batch past what was granted. Errors need no credit.
   */
  private pump(sub: FakeSubscription): void {
    if (this.pushesHeld || !sub.started || sub.ended || sub.connection.transport.isClosed) return;
    for (;;) {
      const results: Body[] = [];
      let bytes = 0;
      for (const [key, at] of sub.positions) {
        const p = this.partition(at.topic, at.partition);
        const base = { topic: at.topic, partition: at.partition, highWatermark: p?.logEndOffset ?? -1, logStartOffset: p?.logStartOffset ?? -1 };
        if (p === undefined || !isFetchOffsetInLog(at.offset, p.logStartOffset, p.logEndOffset)) {
          const error = p === undefined ? unknownPartition(at.topic, at.partition) : answerOf(offsetOutOfRange(`${at.topic}-${at.partition}`, at.offset, p.logStartOffset, p.logEndOffset));
          results.push({ ...base, ...error, records: Buffer.alloc(0) });
          sub.positions.delete(key);
          continue;
        }
        if (sub.credit <= 0) continue;
        const room = partitionReadBytesMax(Infinity, Math.min(sub.credit, sub.maxBytes), bytes);
        if (room === 0) continue;
        const { start, end } = selectFetchBatches(p.batches, at.offset, room, p.logEndOffset);
        if (start === end) continue;
        const out = p.batches.slice(start, end);
        at.offset = lastOffsetOf(out[out.length - 1]) + 1;
        const records = Buffer.concat(out);
        bytes += records.length;
        results.push({ ...base, error: 0, records });
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

  private metadata(request: DecodedRequests[Kind.Metadata]): Body {
    const asked = request.topics ?? [...this.topics.keys()];
    return {
      nodeId: this.nodeId,
      topics: asked.map((name) => {
        if (isInvalid(name)) return { name: name.name, ...name.invalid, partitions: [], config: {} };
        const parts = this.topics.get(name);
        if (parts === undefined) return { name, error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic '${name}'`, partitions: [], config: {} };
        return { name, error: 0, partitions: parts.map((_, partition) => ({ partition, leader: this.nodeId, leaderEpoch: 0 })), config: {} };
      }),
    };
  }

  private produce(request: DecodedRequests[Kind.Produce]): Body | undefined {
    const partitions = request.partitions.map((part) => {
      const result = { topic: part.topic, partition: part.partition, error: 0, baseOffset: -1, logStartOffset: -1 };
      if (isInvalid(part)) return { ...result, ...part.invalid };
      const p = this.partition(part.topic, part.partition);
      if (p === undefined) return { ...result, ...unknownPartition(part.topic, part.partition) };
      try {
        const appended = this.appendChecked(part.topic, part.partition, p, part.records);
        const written = { ...result, baseOffset: appended.baseOffset, logStartOffset: p.logStartOffset };
        // A resend: in the log once, at these offsets, as the node answers it.
        if (appended.duplicate) return { ...written, error: Errors.DUPLICATE_SEQUENCE.code, message: `already written at offset ${appended.baseOffset}` };
        return written;
      } catch (err) {
        if (!(err instanceof TributaryError)) throw err;
        return { ...result, ...answerOf(err) };
      }
    });
    return request.acks === 0 ? undefined : { partitions };
  }

  /**
   * Validates and appends a producer's batch as the node does, an idempotent one checked by
   * the node's sequence rule first: a resend is not appended but answered with its offset.
   */
  private appendChecked(topic: string, partition: number, p: StoredPartition, records: Buffer): { baseOffset: number; duplicate: boolean } {
    const bytes = Buffer.from(records);
    validateForAppend(bytes);
    const header = readBatchHeader(bytes);
    if (header.producerId < 0) return { baseOffset: this.store(p, bytes), duplicate: false };
    // Kafka's lastSequence = baseSequence + lastOffsetDelta, as the node reads it.
    const producer = { producerId: header.producerId, producerEpoch: header.producerEpoch, baseSequence: header.baseSequence, recordCount: header.lastOffsetDelta + 1 };
    let earlier;
    try {
      earlier = checkSequence(p.producers.get(producer.producerId), producer, `${topic}-${partition}`);
    } catch (err) {
      if (err instanceof TributaryError && err.is(Errors.OUT_OF_ORDER_SEQUENCE)) this.outOfOrderBatches++;
      throw err;
    }
    if (earlier !== null) {
      this.duplicateBatches++;
      return { baseOffset: earlier.firstOffset, duplicate: true };
    }
    const baseOffset = this.store(p, bytes);
    let held = p.producers.get(producer.producerId);
    if (held === undefined || producer.producerEpoch > held.epoch) p.producers.set(producer.producerId, (held = { epoch: producer.producerEpoch, batches: [] }));
    rememberBatch(held, producer, baseOffset);
    return { baseOffset, duplicate: false };
  }

  private async fetch(request: DecodedRequests[Kind.Fetch]): Promise<Body> {
    const wanted = request.partitions;
    const ready = () => wanted.some((w) => {
      const p = this.partition(w.topic, w.partition);
      return isInvalid(w) || p === undefined || w.fetchOffset !== p.logEndOffset;
    });
    if (!ready()) {
      await new Promise<void>((resolve) => {
        const timer = this.clock.setTimeout(resolve, request.maxWaitMs);
        this.appendWaiters.push(() => {
          timer.cancel();
          resolve();
        });
      });
    }
    const answerBytesMax = request.maxBytes ?? Infinity;
    let answerBytes = 0;
    return {
      partitions: wanted.map((w) => {
        const p = this.partition(w.topic, w.partition);
        const base = { topic: w.topic, partition: w.partition, error: 0, highWatermark: -1, logStartOffset: -1, records: Buffer.alloc(0) };
        if (isInvalid(w)) return { ...base, ...w.invalid };
        if (p === undefined) return { ...base, ...unknownPartition(w.topic, w.partition) };
        const served = { ...base, highWatermark: p.logEndOffset, logStartOffset: p.logStartOffset };
        const room = partitionReadBytesMax(w.maxBytes ?? answerBytesMax, answerBytesMax, answerBytes);
        if (room === 0) return served;
        if (!isFetchOffsetInLog(w.fetchOffset, p.logStartOffset, p.logEndOffset)) {
          return { ...served, ...answerOf(offsetOutOfRange(`${w.topic}-${w.partition}`, w.fetchOffset, p.logStartOffset, p.logEndOffset)) };
        }
        const { start, end } = selectFetchBatches(p.batches, w.fetchOffset, room, p.logEndOffset);
        const records = Buffer.concat(p.batches.slice(start, end));
        answerBytes += records.length;
        return { ...served, records };
      }),
    };
  }

  private listOffsets(request: DecodedRequests[Kind.ListOffsets]): Body {
    return {
      partitions: request.partitions.map((part) => {
        const result = { topic: part.topic, partition: part.partition, error: 0, offset: -1, timestamp: -1 };
        if (isInvalid(part)) return { ...result, ...part.invalid };
        const p = this.partition(part.topic, part.partition);
        if (p === undefined) return { ...result, ...unknownPartition(part.topic, part.partition) };
        // The high watermark is the log end here.
        if (part.timestamp === LATEST_TIMESTAMP) return { ...result, offset: p.logEndOffset };
        if (part.timestamp === EARLIEST_TIMESTAMP) return { ...result, offset: p.logStartOffset };
        for (const b of p.batches) {
          if (readBatchHeader(b).maxTimestamp < part.timestamp) continue;
          const r = firstRecordAtOrAfter(decodeBatch(b).records, part.timestamp);
          if (r) return { ...result, offset: r.offset, timestamp: r.timestamp };
        }
        return result;
      }),
    };
  }
}

/**
 * The node's checks of a producer's batch before it is stored: the batch itself, and the
 * records of a compressed one (the fake has no topic configs: within the default
 * max.message.bytes).
 */
function validateForAppend(bytes: Buffer): void {
  validateBatch(bytes);
  if (compressionOf(bytes) !== Compression.None) validateRecords(bytes, MAX_MESSAGE_BYTES_DEFAULT);
}

/** As the node answers a kind it does not know. */
function unknownKind(kind: number): Body {
  return { error: Errors.INVALID_REQUEST.code, message: `unknown request kind ${kind}` };
}

/** As the node answers a partition it does not have. */
function unknownPartition(topic: string, partition: number): { error: number; message: string } {
  return { error: Errors.UNKNOWN_TOPIC.code, message: `unknown topic or partition ${topic}/${partition}` };
}

/** An error as the node puts it in an answer. */
function answerOf(err: TributaryError): { error: number; message: string } {
  return { error: err.code, message: err.detail };
}
