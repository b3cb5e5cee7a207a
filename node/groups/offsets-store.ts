// Committed offsets of consumer groups, kept as Kafka keeps them: records of the internal
// topic `__consumer_offsets` (cleanup.policy=compact, kept forever, flush=batch so that a
// commit that was answered survives a power loss), one record per (group, topic,
// partition), the newest one winning. The whole topic is read back at start into memory;
// a commit is answered once its record is durable, and only then visible to OffsetFetch.
//
//   key   = CBOR [1, group, topic, partition]
//   value = CBOR { offset, metadata, commitMs }      (null: the commit was deleted)

import { Decoder, Encoder } from 'cbor-x';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { decodeBatch, encodeBatch, readBatchHeader, splitBatches } from '../../protocol/record-batch.js';
import type { Logger } from '../logger.js';
import type { LogManager } from '../storage/log-manager.js';

export const CONSUMER_OFFSETS_TOPIC = '__consumer_offsets';
const TOPIC_CONFIG = { 'cleanup.policy': 'compact', 'retention.ms': -1, flush: 'batch' } as const;
const KEY_VERSION = 1;
/** Kafka's offset.metadata.max.bytes. */
export const OFFSET_METADATA_CHARS_MAX = 4096;
const GROUP_ID = /^[A-Za-z0-9._-]{1,249}$/;
const LOAD_READ_BYTES = 1024 * 1024;
/** Groups with committed offsets this node keeps; a commit for one more is refused. */
export const GROUPS_WITH_OFFSETS_MAX = 100_000;

export interface CommittedOffset {
  offset: number;
  metadata: string;
  commitMs: number;
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

export function validateGroupId(groupId: unknown): asserts groupId is string {
  if (typeof groupId !== 'string' || !GROUP_ID.test(groupId)) {
    throw new TributaryError(Errors.INVALID_REQUEST, `group id ${JSON.stringify(groupId)} must be 1-249 of [A-Za-z0-9._-]`);
  }
}

export class ConsumerOffsets {
  private readonly groups = new Map<string, Map<string, CommittedOffset>>();

  private constructor(
    private readonly logs: LogManager,
    private readonly groupsMax: number,
  ) {}

  /** Creates the topic on first start and loads every commit in it. */
  static async open(logs: LogManager, logger: Logger, options: { groupsMax?: number } = {}): Promise<ConsumerOffsets> {
    const store = new ConsumerOffsets(logs, options.groupsMax ?? GROUPS_WITH_OFFSETS_MAX);
    if (!logs.topic(CONSUMER_OFFSETS_TOPIC)) await logs.createTopic(CONSUMER_OFFSETS_TOPIC, 1, { ...TOPIC_CONFIG }, { internal: true });
    const log = logs.partition(CONSUMER_OFFSETS_TOPIC, 0);
    if (!log) return store;
    let offset = log.logStartOffset;
    let skipped = 0;
    while (offset < log.logEndOffset) {
      const batches = splitBatches(log.read(offset, LOAD_READ_BYTES, log.logEndOffset));
      if (batches.length === 0) break;
      for (const batch of batches) {
        try {
          for (const record of decodeBatch(batch).records) store.apply(record.key, record.value);
        } catch {
          skipped++;
        }
        const header = readBatchHeader(batch);
        offset = header.baseOffset + header.lastOffsetDelta + 1;
      }
    }
    if (skipped > 0) logger.warn({ batches: skipped }, 'skipped __consumer_offsets batches that do not decode');
    logger.info({ groups: store.groups.size }, 'committed offsets loaded');
    return store;
  }

  /** Applies one stored record (at load); records that are not ours are ignored. */
  private apply(key: Buffer | null, value: Buffer | null): void {
    if (key === null) return;
    const k = decoder.decode(key) as unknown;
    if (!Array.isArray(k) || k[0] !== KEY_VERSION || typeof k[1] !== 'string' || typeof k[2] !== 'string' || !Number.isInteger(k[3])) return;
    const [, group, topic, partition] = k as [number, string, string, number];
    if (value === null) {
      this.groups.get(group)?.delete(tpKey(topic, partition));
      return;
    }
    const v = decoder.decode(value) as Partial<CommittedOffset>;
    if (!Number.isSafeInteger(v?.offset)) return;
    this.set(group, topic, partition, { offset: v.offset as number, metadata: typeof v.metadata === 'string' ? v.metadata : '', commitMs: Number(v.commitMs) || 0 });
  }

  private set(group: string, topic: string, partition: number, committed: CommittedOffset): void {
    let offsets = this.groups.get(group);
    if (!offsets) {
      offsets = new Map();
      this.groups.set(group, offsets);
    }
    offsets.set(tpKey(topic, partition), committed);
  }

  /**
   * Writes the commits of one request as one batch and applies them once it is durable.
   * Throws a TributaryError for the whole request (storage), never half-applies.
   */
  async commit(group: string, commits: { topic: string; partition: number; offset: number; metadata: string }[], nowMs: number): Promise<void> {
    if (commits.length === 0) return;
    if (!this.groups.has(group) && this.groups.size >= this.groupsMax) {
      throw new TributaryError(Errors.INVALID_REQUEST, `this node keeps offsets of at most ${this.groupsMax} groups`);
    }
    const log = this.logs.partition(CONSUMER_OFFSETS_TOPIC, 0);
    if (!log) throw new TributaryError(Errors.STORAGE_ERROR, `${CONSUMER_OFFSETS_TOPIC} is missing`);
    const records = commits.map((c) => ({
      key: Buffer.from(encoder.encode([KEY_VERSION, group, c.topic, c.partition])),
      value: Buffer.from(encoder.encode({ offset: c.offset, metadata: c.metadata, commitMs: nowMs })),
    }));
    const appended = log.append(encodeBatch(records, { timestamp: nowMs }));
    await appended.durable;
    for (const c of commits) this.set(group, c.topic, c.partition, { offset: c.offset, metadata: c.metadata, commitMs: nowMs });
  }

  committed(group: string, topic: string, partition: number): CommittedOffset | undefined {
    return this.groups.get(group)?.get(tpKey(topic, partition));
  }

  /** Every committed offset of a group, as [topic, partition, offset]. */
  all(group: string): { topic: string; partition: number; committed: CommittedOffset }[] {
    const out: { topic: string; partition: number; committed: CommittedOffset }[] = [];
    for (const [key, committed] of this.groups.get(group) ?? []) {
      const sep = key.lastIndexOf('\u0000');
      out.push({ topic: key.slice(0, sep), partition: Number(key.slice(sep + 1)), committed });
    }
    return out;
  }

  /** Groups with at least one committed offset. */
  groupIds(): string[] {
    return [...this.groups].filter(([, offsets]) => offsets.size > 0).map(([id]) => id);
  }

  get groupCount(): number {
    return this.groups.size;
  }
}
