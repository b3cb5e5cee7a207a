// The decoding of request bodies into typed requests, kind by kind, as tables: a good body
// and what it decodes to; each kind of bad field, and whether it fails the whole request
// (the error and its message) or only its own part (answered alone, echoing what was read
// of it, the rest of the request decoded).

import { describe, expect, it } from 'vitest';
import { Errors, LimitReachedError, TributaryError, type ErrorSpec } from './errors.js';
import { EARLIEST_TIMESTAMP, Kind } from './frames.js';
import { decodeRequest, isInvalid, type Body, type RequestKind } from './requests.js';

const limits = { requestEntriesMax: 3 };
const batch = Buffer.from([1, 2, 3]);
const LONG = 'n'.repeat(300);

interface Refused {
  label: string;
  body: Body;
  /** The whole request fails with this error and message. */
  error: ErrorSpec;
  message: string | RegExp;
}

interface PartAnswered {
  label: string;
  body: Body;
  /** The first part is answered alone with this; any later part decodes. */
  part: Record<string, unknown>;
  error: ErrorSpec;
  message: string | RegExp;
}

function refusedAs(kind: RequestKind, row: Refused): void {
  let thrown: unknown;
  try {
    decodeRequest(kind, row.body, limits);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, row.label).toBeInstanceOf(TributaryError);
  const err = thrown as TributaryError;
  expect(err.code, row.label).toBe(row.error.code);
  if (typeof row.message === 'string') expect(err.detail, row.label).toBe(row.message);
  else expect(err.detail, row.label).toMatch(row.message);
}

/** The parts of a decoded request, whichever field holds them. */
function partsOf(decoded: object): unknown[] {
  const d = decoded as { partitions?: unknown[]; topics?: unknown[]; offsets?: unknown[] };
  return d.partitions ?? d.topics ?? d.offsets ?? [];
}

function answeredAs(kind: RequestKind, row: PartAnswered): void {
  const parts = partsOf(decodeRequest(kind, row.body, limits) as object);
  const [first, ...rest] = parts as Parameters<typeof isInvalid>[0][];
  expect(isInvalid(first), row.label).toBe(true);
  const { invalid, ...echoed } = first as { invalid: { error: number; message: string } };
  expect(echoed, row.label).toEqual(row.part);
  expect(invalid.error, row.label).toBe(row.error.code);
  if (typeof row.message === 'string') expect(invalid.message, row.label).toBe(row.message);
  else expect(invalid.message, row.label).toMatch(row.message);
  for (const p of rest) expect(isInvalid(p), row.label).toBe(false);
}

/** Rows every kind with a list of entries shares: the list missing, of the wrong type, or past limits.requestEntriesMax. */
function entryListRows(field: string, base: Body, entry: unknown): Refused[] {
  return [
    { label: `${field} missing`, body: { ...base, [field]: undefined }, error: Errors.INVALID_REQUEST, message: `${field} must be an array, got nothing` },
    { label: `${field} a map`, body: { ...base, [field]: {} }, error: Errors.INVALID_REQUEST, message: `${field} must be an array, got {}` },
    {
      label: `${field} past requestEntriesMax`,
      body: { ...base, [field]: [entry, entry, entry, entry] },
      error: Errors.INVALID_REQUEST,
      message: `${field} names 4 entries; limits.requestEntriesMax allows 3 per request`,
    },
  ];
}

describe('decodeRequest', () => {
  it('an entry list past requestEntriesMax is a LimitReachedError naming the key, for the node to count', () => {
    const err = (() => {
      try {
        decodeRequest(Kind.Fetch, { partitions: [{}, {}, {}, {}] }, limits);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(LimitReachedError);
    expect((err as LimitReachedError).limit).toBe('requestEntriesMax');
  });

  it('a kind with no decoder is INVALID_REQUEST', () => {
    expect(() => decodeRequest(Kind.SubscribeData as RequestKind, {}, limits)).toThrow(/unknown request kind 10/);
  });
});

describe('Produce', () => {
  const good = { topic: 't', partition: 2, records: batch };

  it('decodes acks, the timeout and each partition; a timeout left out stays the node’s to fill', () => {
    expect(decodeRequest(Kind.Produce, { acks: -1, timeoutMs: 500, partitions: [good] }, limits)).toEqual({ acks: -1, timeoutMs: 500, partitions: [good] });
    const decoded = decodeRequest(Kind.Produce, { acks: 0, partitions: [{ ...good, records: new Uint8Array(batch) }] }, limits);
    expect(decoded.timeoutMs).toBeUndefined();
    expect(Buffer.isBuffer(decoded.partitions[0] as object)).toBe(false);
    expect(Buffer.isBuffer((decoded.partitions[0] as { records: Buffer }).records)).toBe(true);
  });

  it.each<Refused>([
    { label: 'acks missing', body: { partitions: [] }, error: Errors.INVALID_REQUEST, message: 'acks must be an integer from -1 to 1, got nothing' },
    { label: 'acks 2', body: { acks: 2, partitions: [] }, error: Errors.INVALID_REQUEST, message: 'acks must be an integer from -1 to 1, got 2' },
    { label: 'timeoutMs negative', body: { acks: 1, timeoutMs: -1, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^timeoutMs must be an integer from 0 to 2147483647/ },
    { label: 'timeoutMs null', body: { acks: 1, timeoutMs: null, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^timeoutMs must be an integer/ },
    ...entryListRows('partitions', { acks: 1 }, good),
  ])('$label fails the request', (row) => refusedAs(Kind.Produce, row));

  it.each<PartAnswered>([
    { label: 'entry no map', body: { acks: 1, partitions: [7, good] }, part: { topic: '', partition: -1 }, error: Errors.INVALID_REQUEST, message: 'partitions[0] must be a map, got 7' },
    { label: 'topic no string', body: { acks: 1, partitions: [{ ...good, topic: 5 }, good] }, part: { topic: '', partition: -1 }, error: Errors.INVALID_REQUEST, message: 'topic must be a string, got 5' },
    { label: 'topic illegal', body: { acks: 1, partitions: [{ ...good, topic: 'a b' }, good] }, part: { topic: 'a b', partition: -1 }, error: Errors.INVALID_TOPIC, message: /^topic name "a b" may contain only/ },
    { label: 'topic too long, echoed cut', body: { acks: 1, partitions: [{ ...good, topic: LONG }, good] }, part: { topic: LONG.slice(0, 249), partition: -1 }, error: Errors.INVALID_TOPIC, message: /is 300 characters long/ },
    { label: 'partition negative', body: { acks: 1, partitions: [{ ...good, partition: -1 }, good] }, part: { topic: 't', partition: -1 }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer from 0 to 2147483647, got -1/ },
    { label: 'records no bytes', body: { acks: 1, partitions: [{ ...good, records: 'x' }, good] }, part: { topic: 't', partition: 2 }, error: Errors.INVALID_REQUEST, message: 'records must be a byte string, got "x"' },
  ])('$label answers its partition alone', (row) => answeredAs(Kind.Produce, row));
});

describe('Fetch', () => {
  const good = { topic: 't', partition: 0, fetchOffset: 10 };

  it('fills the protocol’s defaults and leaves the node’s out', () => {
    expect(decodeRequest(Kind.Fetch, { partitions: [good] }, limits)).toEqual({ maxWaitMs: 0, minBytes: 1, maxBytes: undefined, partitions: [{ ...good, maxBytes: undefined }] });
    expect(decodeRequest(Kind.Fetch, { maxWaitMs: 100, minBytes: 0, maxBytes: 10, partitions: [{ ...good, maxBytes: 5 }] }, limits)).toEqual({
      maxWaitMs: 100,
      minBytes: 0,
      maxBytes: 10,
      partitions: [{ ...good, maxBytes: 5 }],
    });
  });

  it.each<Refused>([
    { label: 'maxWaitMs negative', body: { maxWaitMs: -1, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^maxWaitMs must be an integer from 0/ },
    { label: 'minBytes a string', body: { minBytes: '1', partitions: [] }, error: Errors.INVALID_REQUEST, message: /^minBytes must be an integer/ },
    { label: 'maxBytes 0', body: { maxBytes: 0, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^maxBytes must be an integer from 1/ },
    ...entryListRows('partitions', {}, good),
    { label: 'entry no map', body: { partitions: [good, null] }, error: Errors.INVALID_REQUEST, message: 'partitions[1] must be a map, got null' },
    { label: 'partition missing', body: { partitions: [{ topic: 't', fetchOffset: 0 }] }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer/ },
    { label: 'fetchOffset negative', body: { partitions: [{ ...good, fetchOffset: -1 }] }, error: Errors.INVALID_REQUEST, message: /^fetchOffset must be an integer from 0/ },
    { label: 'per-partition maxBytes 0', body: { partitions: [{ ...good, maxBytes: 0 }] }, error: Errors.INVALID_REQUEST, message: /^maxBytes must be an integer from 1/ },
    { label: 'a bad name and a bad offset: the offset', body: { partitions: [{ ...good, topic: 'a b', fetchOffset: 'x' }] }, error: Errors.INVALID_REQUEST, message: /^fetchOffset/ },
  ])('$label fails the request', (row) => refusedAs(Kind.Fetch, row));

  it.each<PartAnswered>([
    { label: 'topic no string', body: { partitions: [{ ...good, topic: 5 }, good] }, part: { topic: '', partition: 0, fetchOffset: 10, maxBytes: undefined }, error: Errors.INVALID_REQUEST, message: 'topic must be a string, got 5' },
    { label: 'topic illegal', body: { partitions: [{ ...good, topic: '..' }, good] }, part: { topic: '..', partition: 0, fetchOffset: 10, maxBytes: undefined }, error: Errors.INVALID_TOPIC, message: /cannot be '.' or '..'/ },
  ])('$label answers its partition alone', (row) => answeredAs(Kind.Fetch, row));
});

describe('ListOffsets', () => {
  const good = { topic: 't', partition: 1, timestamp: EARLIEST_TIMESTAMP };

  it('decodes each partition', () => {
    expect(decodeRequest(Kind.ListOffsets, { partitions: [good] }, limits)).toEqual({ partitions: [good] });
  });

  it.each<Refused>(entryListRows('partitions', {}, good))('$label fails the request', (row) => refusedAs(Kind.ListOffsets, row));

  it.each<PartAnswered>([
    { label: 'entry no map', body: { partitions: ['x', good] }, part: { topic: '', partition: -1 }, error: Errors.INVALID_REQUEST, message: 'partitions[0] must be a map, got "x"' },
    { label: 'topic illegal', body: { partitions: [{ ...good, topic: '' }, good] }, part: { topic: '', partition: -1 }, error: Errors.INVALID_TOPIC, message: /must be a non-empty string/ },
    { label: 'partition a float', body: { partitions: [{ ...good, partition: 1.5 }, good] }, part: { topic: 't', partition: -1 }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer/ },
    { label: 'timestamp below EARLIEST', body: { partitions: [{ ...good, timestamp: -3 }, good] }, part: { topic: 't', partition: 1 }, error: Errors.INVALID_REQUEST, message: /^timestamp must be an integer from -2/ },
  ])('$label answers its partition alone', (row) => answeredAs(Kind.ListOffsets, row));
});

describe('OffsetsForLeaderEpoch', () => {
  const good = { topic: 't', partition: 0, leaderEpoch: 3 };

  it('decodes each partition', () => {
    expect(decodeRequest(Kind.OffsetsForLeaderEpoch, { partitions: [good, { ...good, leaderEpoch: -1 }] }, limits)).toEqual({ partitions: [good, { ...good, leaderEpoch: -1 }] });
  });

  it.each<Refused>(entryListRows('partitions', {}, good))('$label fails the request', (row) => refusedAs(Kind.OffsetsForLeaderEpoch, row));

  it.each<PartAnswered>([
    { label: 'entry no map', body: { partitions: [[], good] }, part: { topic: '', partition: -1 }, error: Errors.INVALID_REQUEST, message: 'partitions[0] must be a map, got []' },
    { label: 'partition missing', body: { partitions: [{ topic: 't', leaderEpoch: 0 }, good] }, part: { topic: 't', partition: -1 }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer/ },
    { label: 'leaderEpoch below -1', body: { partitions: [{ ...good, leaderEpoch: -2 }, good] }, part: { topic: 't', partition: 0 }, error: Errors.INVALID_REQUEST, message: /^leaderEpoch must be an integer from -1/ },
    { label: 'topic illegal, read after the partition', body: { partitions: [{ ...good, topic: 'a/b' }, good] }, part: { topic: 'a/b', partition: 0 }, error: Errors.INVALID_TOPIC, message: /may contain only/ },
    { label: 'topic illegal and partition bad: the partition', body: { partitions: [{ ...good, topic: 'a/b', partition: 'x' }, good] }, part: { topic: 'a/b', partition: -1 }, error: Errors.INVALID_REQUEST, message: /^partition must be/ },
  ])('$label answers its partition alone', (row) => answeredAs(Kind.OffsetsForLeaderEpoch, row));
});

describe('ReplicaFetch', () => {
  const good = { topic: 't', partition: 0, fetchOffset: 0 };

  it('decodes the follower’s label, the wait and each partition, -1 for an epoch it names none of', () => {
    expect(decodeRequest(Kind.ReplicaFetch, { replicaId: 'n2', maxWaitMs: 50, partitions: [good, { ...good, currentLeaderEpoch: 4, maxBytes: 9 }] }, limits)).toEqual({
      replicaId: 'n2',
      maxWaitMs: 50,
      maxBytes: undefined,
      partitions: [
        { ...good, currentLeaderEpoch: -1, maxBytes: undefined },
        { ...good, currentLeaderEpoch: 4, maxBytes: 9 },
      ],
    });
    expect(decodeRequest(Kind.ReplicaFetch, { partitions: [] }, limits).replicaId).toBe('');
  });

  it.each<Refused>([
    { label: 'replicaId a number', body: { replicaId: 2, partitions: [] }, error: Errors.INVALID_REQUEST, message: 'replicaId must be a string of at most 256 characters' },
    { label: 'replicaId too long', body: { replicaId: 'r'.repeat(257), partitions: [] }, error: Errors.INVALID_REQUEST, message: 'replicaId must be a string of at most 256 characters' },
    { label: 'maxBytes negative', body: { maxBytes: -5, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^maxBytes must be an integer from 1/ },
    ...entryListRows('partitions', {}, good),
    { label: 'currentLeaderEpoch below -1', body: { partitions: [{ ...good, currentLeaderEpoch: -2 }] }, error: Errors.INVALID_REQUEST, message: /^currentLeaderEpoch must be an integer from -1/ },
    { label: 'fetchOffset missing', body: { partitions: [{ topic: 't', partition: 0 }] }, error: Errors.INVALID_REQUEST, message: /^fetchOffset must be an integer/ },
  ])('$label fails the request', (row) => refusedAs(Kind.ReplicaFetch, row));

  it.each<PartAnswered>([
    { label: 'topic illegal', body: { partitions: [{ ...good, topic: 'x'.repeat(250) }, good] }, part: { topic: 'x'.repeat(249), partition: 0, fetchOffset: 0, currentLeaderEpoch: -1, maxBytes: undefined }, error: Errors.INVALID_TOPIC, message: /is 250 characters long/ },
  ])('$label answers its partition alone', (row) => answeredAs(Kind.ReplicaFetch, row));
});

describe('Subscribe, Credit, Unsubscribe', () => {
  const good = { topic: 't', partition: 0, fetchOffset: 4 };

  it('decodes the credit, the push size the node caps, and each partition', () => {
    expect(decodeRequest(Kind.Subscribe, { creditBytes: 1024, partitions: [good] }, limits)).toEqual({ creditBytes: 1024, maxBytes: undefined, partitions: [good] });
    expect(decodeRequest(Kind.Subscribe, { creditBytes: 0, maxBytes: 10, partitions: [] }, limits)).toEqual({ creditBytes: 0, maxBytes: 10, partitions: [] });
    expect(decodeRequest(Kind.Credit, { subscriptionId: 3, bytes: 100 }, limits)).toEqual({ subscriptionId: 3, bytes: 100 });
    expect(decodeRequest(Kind.Unsubscribe, { subscriptionId: 3 }, limits)).toEqual({ subscriptionId: 3 });
  });

  it.each<Refused>([
    { label: 'creditBytes missing', body: { partitions: [] }, error: Errors.INVALID_REQUEST, message: 'creditBytes must be an integer from 0 to 268435456, got nothing' },
    { label: 'creditBytes past its cap', body: { creditBytes: 268435457, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^creditBytes must be an integer from 0 to 268435456/ },
    { label: 'maxBytes 0', body: { creditBytes: 1, maxBytes: 0, partitions: [] }, error: Errors.INVALID_REQUEST, message: /^maxBytes must be an integer from 1/ },
    ...entryListRows('partitions', { creditBytes: 1 }, good),
    { label: 'entry no map', body: { creditBytes: 1, partitions: [true] }, error: Errors.INVALID_REQUEST, message: 'partitions[0] must be a map, got true' },
    { label: 'fetchOffset a string', body: { creditBytes: 1, partitions: [{ ...good, fetchOffset: '4' }] }, error: Errors.INVALID_REQUEST, message: /^fetchOffset must be an integer/ },
  ])('Subscribe: $label fails the request', (row) => refusedAs(Kind.Subscribe, row));

  it.each<PartAnswered>([
    { label: 'topic illegal', body: { creditBytes: 1, partitions: [{ ...good, topic: 'a*b' }, good] }, part: { topic: 'a*b', partition: 0, fetchOffset: 4 }, error: Errors.INVALID_TOPIC, message: /may contain only/ },
    { label: 'topic no string', body: { creditBytes: 1, partitions: [{ ...good, topic: null }, good] }, part: { topic: '', partition: 0, fetchOffset: 4 }, error: Errors.INVALID_REQUEST, message: 'topic must be a string, got null' },
  ])('Subscribe: $label answers its partition alone', (row) => answeredAs(Kind.Subscribe, row));

  it.each<Refused & { kind: RequestKind }>([
    { kind: Kind.Credit, label: 'Credit: subscriptionId negative', body: { subscriptionId: -1, bytes: 1 }, error: Errors.INVALID_REQUEST, message: /^subscriptionId must be an integer from 0/ },
    { kind: Kind.Credit, label: 'Credit: bytes missing', body: { subscriptionId: 1 }, error: Errors.INVALID_REQUEST, message: 'bytes must be an integer from 0 to 268435456, got nothing' },
    { kind: Kind.Credit, label: 'Credit: bytes past the cap', body: { subscriptionId: 1, bytes: 2 ** 29 }, error: Errors.INVALID_REQUEST, message: /^bytes must be an integer from 0 to 268435456/ },
    { kind: Kind.Unsubscribe, label: 'Unsubscribe: subscriptionId missing', body: {}, error: Errors.INVALID_REQUEST, message: /^subscriptionId must be an integer from 0/ },
  ])('$label fails the request', (row) => refusedAs(row.kind, row));
});

describe('Metadata', () => {
  it('decodes the topics asked, or none: every topic; includeInternal only when true', () => {
    expect(decodeRequest(Kind.Metadata, {}, limits)).toEqual({ topics: undefined, includeInternal: false });
    expect(decodeRequest(Kind.Metadata, { topics: null, includeInternal: 1 }, limits)).toEqual({ topics: undefined, includeInternal: false });
    expect(decodeRequest(Kind.Metadata, { topics: ['a', '__revocations'], includeInternal: true }, limits)).toEqual({ topics: ['a', '__revocations'], includeInternal: true });
  });

  it.each<Refused>([
    { label: 'topics a string', body: { topics: 'a' }, error: Errors.INVALID_REQUEST, message: 'topics must be an array, got "a"' },
    { label: 'topics past requestEntriesMax', body: { topics: ['a', 'b', 'c', 'd'] }, error: Errors.INVALID_REQUEST, message: 'topics names 4 entries; limits.requestEntriesMax allows 3 per request' },
  ])('$label fails the request', (row) => refusedAs(Kind.Metadata, row));

  it.each<PartAnswered>([
    { label: 'name no string', body: { topics: [3, 'a'] }, part: { name: '' }, error: Errors.INVALID_REQUEST, message: 'topics[] must be a string, got 3' },
    { label: 'name illegal', body: { topics: ['a b', 'a'] }, part: { name: 'a b' }, error: Errors.INVALID_TOPIC, message: /may contain only/ },
  ])('$label answers its topic alone', (row) => answeredAs(Kind.Metadata, row));
});

describe('CreateTopics', () => {
  const good = { name: 't', partitions: 3 };

  it('decodes each topic, its count and config as sent (their rules are the node’s)', () => {
    expect(decodeRequest(Kind.CreateTopics, { topics: [good, { name: 'u', partitions: 0, config: { 'retention.ms': 5 } }] }, limits)).toEqual({
      topics: [good, { name: 'u', partitions: 0, config: { 'retention.ms': 5 } }],
    });
  });

  it.each<Refused>([
    ...entryListRows('topics', {}, good),
    { label: 'an entry no map', body: { topics: [good, 'u'] }, error: Errors.INVALID_REQUEST, message: 'topics[1] must be a map, got "u"' },
  ])('$label fails the request', (row) => refusedAs(Kind.CreateTopics, row));

  it('more than its own cap of 1000 fails the request, whatever requestEntriesMax allows', () => {
    const topics = Array.from({ length: 1001 }, () => good);
    expect(() => decodeRequest(Kind.CreateTopics, { topics }, { requestEntriesMax: 5000 })).toThrow('topics holds 1001 entries, at most 1000 allowed');
  });

  it.each<PartAnswered>([
    { label: 'name no string', body: { topics: [{ partitions: 1 }, good] }, part: { name: '' }, error: Errors.INVALID_REQUEST, message: 'name must be a string, got nothing' },
    { label: 'name illegal', body: { topics: [{ name: '.', partitions: 1 }, good] }, part: { name: '.' }, error: Errors.INVALID_TOPIC, message: /cannot be '.' or '..'/ },
    { label: 'partitions a string', body: { topics: [{ name: 'u', partitions: '2' }, good] }, part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: /^partitions must be an integer from -2147483648 to 2147483647/ },
    { label: 'config a list', body: { topics: [{ name: 'u', partitions: 1, config: [] }, good] }, part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: 'config must be a map, got []' },
  ])('$label answers its topic alone', (row) => answeredAs(Kind.CreateTopics, row));
});

describe('DeleteTopics and DescribeConfigs', () => {
  it.each([Kind.DeleteTopics, Kind.DescribeConfigs] as const)('kind %i decodes each name', (kind) => {
    expect(decodeRequest(kind, { topics: ['a', 'b'] }, limits)).toEqual({ topics: ['a', 'b'] });
  });

  it.each<Refused & { kind: RequestKind }>([
    ...([Kind.DeleteTopics, Kind.DescribeConfigs] as const).flatMap((kind) => [
      ...entryListRows('topics', {}, 'a').map((row) => ({ ...row, kind })),
      { kind, label: 'a name no string', body: { topics: ['a', 5] }, error: Errors.INVALID_REQUEST, message: 'topics[] must be a string, got 5' },
    ]),
  ])('kind $kind: $label fails the request', (row) => refusedAs(row.kind, row));

  it.each([Kind.DeleteTopics, Kind.DescribeConfigs] as const)('kind %i answers an illegal name alone, cut to a legal length', (kind) =>
    answeredAs(kind, { label: 'long name', body: { topics: [LONG, 'a'] }, part: { name: LONG.slice(0, 249) }, error: Errors.INVALID_TOPIC, message: /is 300 characters long/ }),
  );
});

describe('AlterConfigs', () => {
  const good = { name: 't', configs: [{ name: 'retention.ms', op: 'set', value: 1000 }, { name: 'flush', op: 'delete' }] };

  it('decodes each topic and its changes', () => {
    expect(decodeRequest(Kind.AlterConfigs, { topics: [good] }, limits)).toEqual({ topics: [good] });
  });

  it.each<Refused>([
    ...entryListRows('topics', {}, good),
    { label: 'an entry no map', body: { topics: [1] }, error: Errors.INVALID_REQUEST, message: 'topics[0] must be a map, got 1' },
  ])('$label fails the request', (row) => refusedAs(Kind.AlterConfigs, row));

  const set = (change: unknown): Body => ({ topics: [{ name: 'u', configs: [change] }, good] });
  it.each<PartAnswered>([
    { label: 'name illegal', body: { topics: [{ ...good, name: '' }, good] }, part: { name: '' }, error: Errors.INVALID_TOPIC, message: /non-empty string/ },
    { label: 'configs missing', body: { topics: [{ name: 'u' }, good] }, part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: 'configs must be an array, got nothing' },
    { label: 'configs past 100', body: { topics: [{ name: 'u', configs: Array.from({ length: 101 }, () => ({ name: 'flush', op: 'delete' })) }, good] }, part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: 'configs holds 101 entries, at most 100 allowed' },
    { label: 'a change no map', body: set('x'), part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: 'configs[0] must be a map, got "x"' },
    { label: 'a key no string', body: set({ name: 1, op: 'delete' }), part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: 'name must be a string, got 1' },
    { label: 'a delete with a value', body: set({ name: 'flush', op: 'delete', value: 'os' }), part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: "configs[0] deletes 'flush' and must carry no value" },
    { label: 'an unknown op', body: set({ name: 'flush', op: 'add' }), part: { name: 'u' }, error: Errors.INVALID_REQUEST, message: `configs[0].op must be 'set' or 'delete', got "add"` },
    { label: 'a set without a value', body: set({ name: 'flush', op: 'set' }), part: { name: 'u' }, error: Errors.INVALID_CONFIG, message: "config 'flush' needs a value (a string or a number)" },
  ])('$label answers its topic alone', (row) => answeredAs(Kind.AlterConfigs, row));
});

describe('Hello, InitProducerId, ListGroups', () => {
  it('Hello decodes the version; whether the node speaks it is the node’s to say', () => {
    expect(decodeRequest(Kind.Hello, { version: 9, clientId: 'c' }, limits)).toEqual({ version: 9 });
  });

  it.each<Refused>([
    { label: 'version missing', body: { clientId: 'c' }, error: Errors.INVALID_REQUEST, message: 'version must be an integer from 0 to 65535, got nothing' },
    { label: 'version past 65535', body: { version: 65536 }, error: Errors.INVALID_REQUEST, message: 'version must be an integer from 0 to 65535, got 65536' },
  ])('Hello: $label fails the request', (row) => refusedAs(Kind.Hello, row));

  it('InitProducerId and ListGroups read nothing of their bodies', () => {
    expect(decodeRequest(Kind.InitProducerId, { producerId: 'x' }, limits)).toEqual({});
    expect(decodeRequest(Kind.ListGroups, { anything: 1 }, limits)).toEqual({});
  });
});

/** Rows every request naming a group shares. */
function groupIdRows(base: Body): Refused[] {
  return [
    { label: 'groupId missing', body: { ...base, groupId: undefined }, error: Errors.INVALID_REQUEST, message: 'group id undefined must be 1-249 of [A-Za-z0-9._-]' },
    { label: 'groupId empty', body: { ...base, groupId: '' }, error: Errors.INVALID_REQUEST, message: 'group id "" must be 1-249 of [A-Za-z0-9._-]' },
    { label: 'groupId with a space', body: { ...base, groupId: 'a b' }, error: Errors.INVALID_REQUEST, message: 'group id "a b" must be 1-249 of [A-Za-z0-9._-]' },
    { label: 'groupId of 250', body: { ...base, groupId: 'g'.repeat(250) }, error: Errors.INVALID_REQUEST, message: /^group id "g+" must be 1-249/ },
  ];
}

describe('DescribeGroup', () => {
  it('decodes the group id', () => {
    expect(decodeRequest(Kind.DescribeGroup, { groupId: 'G-1.x_y' }, limits)).toEqual({ groupId: 'G-1.x_y' });
  });
  it.each<Refused>(groupIdRows({}))('$label fails the request', (row) => refusedAs(Kind.DescribeGroup, row));
});

describe('OffsetCommit', () => {
  const good = { topic: 't', partition: 0, offset: 7 };
  const base = { groupId: 'g', offsets: [good] };

  it('decodes the member, and each offset with its leader epoch (-1 unknown) and metadata', () => {
    expect(decodeRequest(Kind.OffsetCommit, base, limits)).toEqual({ groupId: 'g', offsets: [{ ...good, leaderEpoch: -1, metadata: '' }] });
    expect(decodeRequest(Kind.OffsetCommit, { groupId: 'g', memberId: 'm', memberEpoch: 4, offsets: [{ ...good, leaderEpoch: 2, metadata: 'x' }] }, limits)).toEqual({
      groupId: 'g',
      memberId: 'm',
      memberEpoch: 4,
      offsets: [{ ...good, leaderEpoch: 2, metadata: 'x' }],
    });
  });

  it.each<Refused>([
    ...groupIdRows(base),
    { label: 'memberId too long', body: { ...base, memberId: 'm'.repeat(65) }, error: Errors.INVALID_REQUEST, message: 'memberId must be a string of at most 64 characters' },
    { label: 'memberId null', body: { ...base, memberId: null }, error: Errors.INVALID_REQUEST, message: 'memberId must be a string of at most 64 characters' },
    { label: 'memberEpoch below -1', body: { ...base, memberEpoch: -2 }, error: Errors.INVALID_REQUEST, message: /^memberEpoch must be an integer from -1/ },
    ...entryListRows('offsets', { groupId: 'g' }, good),
    { label: 'an entry no map', body: { groupId: 'g', offsets: [null] }, error: Errors.INVALID_REQUEST, message: 'offsets[0] must be a map, got null' },
    { label: 'partition missing', body: { groupId: 'g', offsets: [{ topic: 't', offset: 1 }] }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer/ },
    { label: 'partition bad with a bad name: the partition', body: { groupId: 'g', offsets: [{ topic: 'a b', partition: -1, offset: 1 }] }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer/ },
    { label: 'offset negative', body: { groupId: 'g', offsets: [{ ...good, offset: -1 }] }, error: Errors.INVALID_REQUEST, message: /^offset must be an integer from 0/ },
    { label: 'leaderEpoch a string', body: { groupId: 'g', offsets: [{ ...good, leaderEpoch: '1' }] }, error: Errors.INVALID_REQUEST, message: /^leaderEpoch must be an integer from -1/ },
    { label: 'metadata a number', body: { groupId: 'g', offsets: [{ ...good, metadata: 1 }] }, error: Errors.INVALID_REQUEST, message: 'metadata must be a string, got 1' },
  ])('$label fails the request', (row) => refusedAs(Kind.OffsetCommit, row));

  it.each<PartAnswered>([
    { label: 'name illegal, its other fields unread', body: { groupId: 'g', offsets: [{ topic: 'a b', partition: 3, offset: 'x' }, good] }, part: { topic: 'a b', partition: 3 }, error: Errors.INVALID_TOPIC, message: /may contain only/ },
    { label: 'name no string', body: { groupId: 'g', offsets: [{ topic: 1, partition: 3, offset: 0 }, good] }, part: { topic: '', partition: 3 }, error: Errors.INVALID_REQUEST, message: 'topic must be a string, got 1' },
  ])('$label answers its partition alone', (row) => answeredAs(Kind.OffsetCommit, row));
});

describe('OffsetFetch', () => {
  it('decodes the group and the partitions named, or none: all', () => {
    expect(decodeRequest(Kind.OffsetFetch, { groupId: 'g' }, limits)).toEqual({ groupId: 'g' });
    expect(decodeRequest(Kind.OffsetFetch, { groupId: 'g', partitions: [{ topic: 't', partition: 1 }] }, limits)).toEqual({ groupId: 'g', partitions: [{ topic: 't', partition: 1 }] });
  });

  it.each<Refused>([
    ...groupIdRows({}),
    { label: 'partitions null', body: { groupId: 'g', partitions: null }, error: Errors.INVALID_REQUEST, message: 'partitions must be an array, got null' },
    { label: 'partitions past requestEntriesMax', body: { groupId: 'g', partitions: [{}, {}, {}, {}] }, error: Errors.INVALID_REQUEST, message: /limits\.requestEntriesMax allows 3/ },
    { label: 'an entry no map', body: { groupId: 'g', partitions: [1] }, error: Errors.INVALID_REQUEST, message: 'partitions[0] must be a map, got 1' },
    { label: 'a name illegal: the whole request', body: { groupId: 'g', partitions: [{ topic: 'a b', partition: 0 }] }, error: Errors.INVALID_TOPIC, message: /may contain only/ },
    { label: 'a partition negative', body: { groupId: 'g', partitions: [{ topic: 't', partition: -1 }] }, error: Errors.INVALID_REQUEST, message: /^partition must be an integer from 0/ },
  ])('$label fails the request', (row) => refusedAs(Kind.OffsetFetch, row));
});

describe('ConsumerGroupHeartbeat', () => {
  const base = { groupId: 'g', memberId: '', memberEpoch: 0, ownedPartitions: [] };

  it('decodes the member, what it subscribes to and what it owns', () => {
    expect(decodeRequest(Kind.ConsumerGroupHeartbeat, base, limits)).toEqual(base);
    const full = { ...base, subscribedTopics: ['a', '__x'], subscribedTopicPattern: 'sensors.*', ownedPartitions: [{ topic: 'a', partitions: [0, 2] }] };
    expect(decodeRequest(Kind.ConsumerGroupHeartbeat, full, limits)).toEqual(full);
  });

  it.each<Refused>([
    ...groupIdRows(base),
    { label: 'memberId missing', body: { ...base, memberId: undefined }, error: Errors.INVALID_REQUEST, message: 'memberId must be a string of at most 64 characters' },
    { label: 'memberEpoch missing', body: { ...base, memberEpoch: undefined }, error: Errors.INVALID_REQUEST, message: /^memberEpoch must be an integer from -1/ },
    { label: 'subscribedTopics null', body: { ...base, subscribedTopics: null }, error: Errors.INVALID_REQUEST, message: 'subscribedTopics must be an array, got null' },
    { label: 'subscribedTopics past 1000', body: { ...base, subscribedTopics: Array.from({ length: 1001 }, () => 'a') }, error: Errors.INVALID_REQUEST, message: 'subscribedTopics holds 1001 entries, at most 1000 allowed' },
    { label: 'a subscribed name no string', body: { ...base, subscribedTopics: [1] }, error: Errors.INVALID_REQUEST, message: 'subscribedTopics[] must be a string, got 1' },
    { label: 'a subscribed name illegal', body: { ...base, subscribedTopics: ['a b'] }, error: Errors.INVALID_TOPIC, message: /may contain only/ },
    { label: 'a pattern with a space', body: { ...base, subscribedTopicPattern: 'a *' }, error: Errors.INVALID_REQUEST, message: 'subscribedTopicPattern "a *" must be 1-249 of [A-Za-z0-9._-] and *' },
    { label: 'a pattern no string', body: { ...base, subscribedTopicPattern: 3 }, error: Errors.INVALID_REQUEST, message: 'subscribedTopicPattern must be a string, got 3' },
    { label: 'ownedPartitions missing', body: { ...base, ownedPartitions: undefined }, error: Errors.INVALID_REQUEST, message: 'ownedPartitions must be an array, got nothing' },
    { label: 'an owned entry no map', body: { ...base, ownedPartitions: [[]] }, error: Errors.INVALID_REQUEST, message: 'ownedPartitions[0] must be a map, got []' },
    { label: 'an owned partition negative', body: { ...base, ownedPartitions: [{ topic: 'a', partitions: [-1] }] }, error: Errors.INVALID_REQUEST, message: 'ownedPartitions[0] holds a bad partition' },
    {
      label: 'more than 10,000 owned partitions in all',
      body: { ...base, ownedPartitions: [{ topic: 'a', partitions: Array.from({ length: 6000 }, (_, i) => i) }, { topic: 'b', partitions: Array.from({ length: 6000 }, (_, i) => i) }] },
      error: Errors.INVALID_REQUEST,
      message: 'more than 10000 owned partitions',
    },
    { label: 'an owned topic illegal, read after its partitions', body: { ...base, ownedPartitions: [{ topic: '', partitions: [0] }] }, error: Errors.INVALID_TOPIC, message: /non-empty string/ },
    { label: 'an owned topic illegal and a bad partition: the partition', body: { ...base, ownedPartitions: [{ topic: '', partitions: ['x'] }] }, error: Errors.INVALID_REQUEST, message: 'ownedPartitions[0] holds a bad partition' },
  ])('$label fails the request', (row) => refusedAs(Kind.ConsumerGroupHeartbeat, row));
});
