import { afterEach, expect, it } from 'vitest';
import { Decoder, Encoder } from 'cbor-x';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { computeCrc, decodeBatch, encodeBatch, OFFSET_ATTRIBUTES, OFFSET_CRC, splitBatches } from '../../protocol/record-batch.js';
import { silentLogger } from '../logger.js';
import { LogManager } from '../storage/log-manager.js';
import { makeTempDir, removeDir } from '../storage/testing.js';
import { CONSUMER_OFFSETS_TOPIC, ConsumerOffsets, type OffsetLimit, type OffsetLimits } from './offsets-store.js';

const open: { logs: LogManager; dir: string }[] = [];
afterEach(async () => {
  for (const { logs, dir } of open.splice(0)) {
    await logs.close();
    removeDir(dir);
  }
});

async function store(limits: Partial<OffsetLimits> = {}, reached: OffsetLimit[] = []): Promise<{ offsets: ConsumerOffsets; logs: LogManager; dir: string }> {
  const dir = makeTempDir();
  const logs = await LogManager.open(dir);
  open.push({ logs, dir });
  await logs.createTopic('t', 2);
  return { offsets: await ConsumerOffsets.open(logs, silentLogger, { limits, onLimitReached: (l) => reached.push(l) }), logs, dir };
}

/** The values of every record in `bytes`, CBOR-decoded. */
function decodeBatches(bytes: Buffer): unknown[] {
  const dec = new Decoder({ useRecords: false, mapsAsObjects: true });
  return splitBatches(bytes).flatMap((b) => decodeBatch(b).records.map((r) => dec.decode(r.value!) as unknown));
}

const at = (partition: number, offset: number, metadata = '') => ({ topic: 't', partition, offset, metadata });

/** The error a promise rejects with: its code and message. */
async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TributaryError);
  return { code: (err as TributaryError).code, message: (err as TributaryError).message };
}

it('the newest commit wins, and the store reads back the same from its topic', async () => {
  const { offsets, logs } = await store();
  await offsets.commit('g', [{ topic: 't', partition: 0, offset: 5, metadata: 'a' }], 1);
  await offsets.commit('g', [{ topic: 't', partition: 0, offset: 9, metadata: 'b' }, { topic: 't', partition: 1, offset: 2, metadata: '' }], 2);
  expect(offsets.committed('g', 't', 0)).toEqual({ offset: 9, leaderEpoch: -1, metadata: 'b', commitMs: 2 });
  const reread = await ConsumerOffsets.open(logs, silentLogger);
  expect(reread.all('g').map((o) => [o.topic, o.partition, o.committed.offset]).sort()).toEqual([['t', 0, 9], ['t', 1, 2]]);
});

it('keeps offsets of at most offsetGroupsMax groups node-wide: one more is refused, known groups go on', async () => {
  const reached: OffsetLimit[] = [];
  const { offsets } = await store({ offsetGroupsMax: 2 }, reached);
  await offsets.commit('a', [at(0, 1)], 1, 'key:x');
  await offsets.commit('b', [at(0, 1)], 1, 'key:y');
  expect(await refusal(offsets.commit('c', [at(0, 1)], 1, 'key:z'))).toEqual({ code: Errors.RESOURCE_LIMIT.code, message: expect.stringMatching(/2 groups \(limits\.offsetGroupsMax\)/) });
  await offsets.commit('a', [at(0, 2)], 2, 'key:x');
  expect(offsets.committed('a', 't', 0)?.offset).toBe(2);
  expect(offsets.committed('c', 't', 0)).toBeUndefined();
  expect(reached).toEqual(['offsetGroupsMax']);
});

it('bounds each principal in groups, partitions and metadata bytes, while another principal is still served', async () => {
  const reached: OffsetLimit[] = [];
  const { offsets } = await store({ offsetGroupsPerPrincipalMax: 2, offsetPartitionsPerPrincipalMax: 3, offsetMetadataBytesPerPrincipalMax: 10 }, reached);
  await offsets.commit('g1', [at(0, 1), at(1, 1)], 1, 'key:attacker');
  await offsets.commit('g2', [at(0, 1)], 1, 'key:attacker');
  expect((await refusal(offsets.commit('g3', [at(0, 1)], 1, 'key:attacker'))).message).toMatch(/limits\.offsetGroupsPerPrincipalMax/);
  expect((await refusal(offsets.commit('g2', [at(1, 1)], 1, 'key:attacker'))).message).toMatch(/limits\.offsetPartitionsPerPrincipalMax/);
  expect((await refusal(offsets.commit('g1', [at(0, 2, 'x'.repeat(11))], 1, 'key:attacker'))).message).toMatch(/limits\.offsetMetadataBytesPerPrincipalMax/);
  // Moving what it has forward is never refused, and metadata within its bytes is fine.
  await offsets.commit('g1', [at(0, 9, 'ten bytes!'), at(1, 9)], 2, 'key:attacker');
  await offsets.commit('g1', [at(0, 10, 'ten bytes?')], 2, 'key:attacker'); // replaces its own ten bytes
  expect(offsets.heldBy('key:attacker')).toEqual({ groups: 2, partitions: 3, metadataBytes: 10 });
  // Someone else's commits go on.
  await offsets.commit('g3', [at(0, 5), at(1, 5)], 3, 'key:app');
  await offsets.commit('g4', [at(0, 5)], 3, 'key:app');
  expect(offsets.committed('g4', 't', 0)?.offset).toBe(5);
  expect(reached).toEqual(['offsetGroupsPerPrincipalMax', 'offsetPartitionsPerPrincipalMax', 'offsetMetadataBytesPerPrincipalMax']);
  expect(offsets.totals).toEqual({ groups: 4, partitions: 6, metadataBytes: 10 });
});

it('a stored offset counts against the principal of its latest commit', async () => {
  const { offsets } = await store({ offsetPartitionsPerPrincipalMax: 2 });
  await offsets.commit('g', [at(0, 1), at(1, 1)], 1, 'key:a');
  await offsets.commit('g', [at(1, 2)], 2, 'key:b');
  expect([offsets.heldBy('key:a').partitions, offsets.heldBy('key:b').partitions]).toEqual([1, 1]);
  await offsets.commit('h', [at(0, 1)], 3, 'key:a'); // a has room again
  expect(offsets.totals.partitions).toBe(3);
});

it('reads back who committed, and loads at most what the node-wide limits allow', async () => {
  const { offsets, logs } = await store();
  for (let i = 0; i < 5; i++) await offsets.commit(`g${i}`, [at(0, i, 'meta')], i, 'key:a');
  const reread = await ConsumerOffsets.open(logs, silentLogger);
  expect(reread.heldBy('key:a')).toEqual({ groups: 5, partitions: 5, metadataBytes: 20 });
  const bounded = await ConsumerOffsets.open(logs, silentLogger, { limits: { offsetGroupsMax: 3 } });
  expect([bounded.groupCount, bounded.skippedRecordsAtLoad]).toEqual([3, 2]);
  expect(bounded.heldBy('key:a').groups).toBe(3);
  const byBytes = await ConsumerOffsets.open(logs, silentLogger, { limits: { offsetMetadataBytesMax: 9 } });
  expect(byBytes.totals).toEqual({ groups: 2, partitions: 2, metadataBytes: 8 });
});

it("keeps a commit's leader epoch (KIP-320) through a restart; values without one read as unknown, and an older reader sees the fields it knew", async () => {
  const { offsets, logs } = await store();
  await offsets.commit('g', [{ topic: 't', partition: 0, offset: 2000, leaderEpoch: 0, metadata: '' }, { topic: 't', partition: 1, offset: 5, leaderEpoch: -1, metadata: '' }], 1);
  await offsets.commit('h', [at(0, 3)], 1); // a client older than the field leaves it out
  const reread = await ConsumerOffsets.open(logs, silentLogger);
  expect(reread.committed('g', 't', 0)).toMatchObject({ offset: 2000, leaderEpoch: 0 });
  expect(reread.committed('g', 't', 1)).toMatchObject({ offset: 5, leaderEpoch: -1 });
  expect(reread.committed('h', 't', 0)).toMatchObject({ offset: 3, leaderEpoch: -1 });
  // The stored value: an unknown epoch is not written, a known one is a field of its own that
  // a reader of the older shape ({ offset, metadata, commitMs, by }) passes over.
  const log = logs.partition(CONSUMER_OFFSETS_TOPIC, 0);
  const values = decodeBatches(log!.read(0, 1 << 20, log!.logEndOffset)).map((v) => v as Record<string, unknown>);
  expect(values.map((v) => Object.keys(v).sort())).toEqual([
    ['commitMs', 'leaderEpoch', 'metadata', 'offset'],
    ['commitMs', 'metadata', 'offset'],
    ['commitMs', 'metadata', 'offset'],
  ]);
  expect(values[0]).toMatchObject({ offset: 2000, leaderEpoch: 0 });
});

it('records written before commits named their principal count node-wide only', async () => {
  const { logs } = await store();
  const enc = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
  const legacy = encodeBatch([{ key: Buffer.from(enc.encode([1, 'old', 't', 0])), value: Buffer.from(enc.encode({ offset: 7, metadata: 'm', commitMs: 1 })) }]);
  await logs.partition(CONSUMER_OFFSETS_TOPIC, 0)?.append(legacy).durable;
  const offsets = await ConsumerOffsets.open(logs, silentLogger);
  expect(offsets.committed('old', 't', 0)).toEqual({ offset: 7, leaderEpoch: -1, metadata: 'm', commitMs: 1 });
  expect(offsets.totals).toEqual({ groups: 1, partitions: 1, metadataBytes: 1 });
  await offsets.commit('old', [at(0, 8)], 2, 'key:a'); // now it is a's
  expect(offsets.heldBy('key:a')).toEqual({ groups: 1, partitions: 1, metadataBytes: 0 });
  expect(offsets.totals).toEqual({ groups: 1, partitions: 1, metadataBytes: 0 });
});

it('an update of an offset already loaded applies at start even past the node-wide limits, so no group is rewound', async () => {
  const { offsets, logs } = await store();
  await offsets.commit('a', [at(0, 1)], 1, 'key:x');
  await offsets.commit('b', [at(0, 1)], 1, 'key:x');
  await offsets.commit('a', [at(0, 7, 'now with metadata')], 2, 'key:x');
  const bounded = await ConsumerOffsets.open(logs, silentLogger, { limits: { offsetGroupsMax: 1, offsetMetadataBytesMax: 0 } });
  expect(bounded.committed('a', 't', 0)?.offset).toBe(7);
  expect([bounded.groupCount, bounded.skippedRecordsAtLoad]).toEqual([1, 1]);
});

it('deletes the offsets of groups empty past the retention, and of a deleted topic, for good and with their places', async () => {
  const { offsets, logs } = await store({ offsetGroupsMax: 3 });
  await logs.createTopic('u', 1);
  await offsets.commit('old', [at(0, 1)], 1_000, 'key:x');
  await offsets.commit('live', [at(0, 1)], 1_000, 'key:x');
  await offsets.commit('recent', [at(0, 1), { topic: 'u', partition: 0, offset: 4, metadata: '' }], 9_000, 'key:x');
  expect((await refusal(offsets.commit('new', [at(0, 1)], 9_000, 'key:y'))).code).toBe(Errors.RESOURCE_LIMIT.code);
  // At 10,000 ms with a retention of 5,000 ms: 'old' goes; 'live' has a member; 'recent' is young.
  expect(await offsets.expire(10_000, 5_000, (g) => g === 'live')).toBe(1);
  expect(offsets.groupIds().sort()).toEqual(['live', 'recent']);
  expect(await offsets.forgetTopic('u', 10_000)).toBe(1);
  expect(offsets.all('recent').map((o) => o.topic)).toEqual(['t']);
  await offsets.commit('new', [at(0, 1)], 10_000, 'key:y'); // its place is free again
  expect(offsets.heldBy('key:x')).toEqual({ groups: 2, partitions: 2, metadataBytes: 0 });
  // Read back: the tombstones hold.
  const reread = await ConsumerOffsets.open(logs, silentLogger);
  expect(reread.groupIds().sort()).toEqual(['live', 'new', 'recent']);
  expect(reread.all('recent').map((o) => o.topic)).toEqual(['t']);
  expect(await offsets.expire(10_000, -1, () => false)).toBe(0); // -1 keeps everything
});

it('anonymous clients (dev mode) are held to the node-wide bounds only', async () => {
  const { offsets } = await store({ offsetGroupsPerPrincipalMax: 1, offsetGroupsMax: 3 });
  for (const g of ['a', 'b', 'c']) await offsets.commit(g, [at(0, 1)], 1, 'anonymous');
  expect((await refusal(offsets.commit('d', [at(0, 1)], 1, 'anonymous'))).message).toMatch(/limits\.offsetGroupsMax/);
  expect((await refusal(offsets.commit('e', [at(0, 1)], 1, 'key:x'))).message).toMatch(/limits\.offsetGroupsMax/);
});

it('at start, a batch or a record a client produced that does not decode is passed over, and every commit around it loads', async () => {
  const { offsets, logs } = await store();
  await offsets.commit('g', [at(0, 1)], 1);
  const enc = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
  const commitRecord = (group: string, offset: number) => ({ key: Buffer.from(enc.encode([1, group, 't', 0])), value: Buffer.from(enc.encode({ offset, metadata: '', commitMs: 2 })) });
  const log = logs.partition(CONSUMER_OFFSETS_TOPIC, 0)!;
  // A plain batch flagged gzip: its CRC is right, its records cannot be read.
  const flagged = encodeBatch([commitRecord('lost', 5)]);
  flagged.writeInt16BE(flagged.readInt16BE(OFFSET_ATTRIBUTES) | 1, OFFSET_ATTRIBUTES);
  flagged.writeUInt32BE(computeCrc(flagged), OFFSET_CRC);
  await log.append(flagged).durable;
  // A key that is not CBOR, then a commit in the same batch.
  await log.append(encodeBatch([{ key: Buffer.from([0xff, 0xff]), value: Buffer.from('x') }, commitRecord('h', 7)])).durable;
  await offsets.commit('g', [at(0, 9)], 3);
  const reread = await ConsumerOffsets.open(logs, silentLogger);
  expect(reread.groupIds().sort()).toEqual(['g', 'h']);
  expect([reread.committed('g', 't', 0)?.offset, reread.committed('h', 't', 0)?.offset]).toEqual([9, 7]);
});
