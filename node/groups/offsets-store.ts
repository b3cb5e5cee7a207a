// Committed offsets of consumer groups, kept as Kafka keeps them: records of the internal
// topic `__consumer_offsets` (cleanup.policy=compact, kept forever, flush=batch so that a
// commit that was answered survives a power loss), one record per (group, topic,
// partition), the newest one winning. The topic is read back at start into memory; a
// commit is answered once its record is durable, and only then visible to OffsetFetch.
//
//   key   = CBOR [1, group, topic, partition]
//   value = CBOR { offset, metadata, commitMs, by, leaderEpoch }      (null: the commit was deleted)
//
// `leaderEpoch` (KIP-320's committedLeaderEpoch: the epoch of the last record consumed
// before `offset`) is written only when the committer knew it; a value without it (all
// written before it existed) reads as -1, unknown. A node older than it reads the fields
// it knows by name and ignores this one, and its cleaner copies records as they are, so a
// downgrade keeps the offsets and forgets only the epochs it never reads.
//
// `by` is the principal whose commit wrote the record (Principal.key): what the node holds
// for committed offsets is bounded per principal as well as node-wide, in groups, in
// committed partitions and in bytes of metadata (limits.offset*). Each stored offset counts
// against the principal of its latest commit; records written before `by` existed count
// node-wide only. What is loaded at start is bounded by the node-wide limits too: records
// past them are skipped and counted, so a topic filled by an earlier version cannot make
// the node run out of memory at every start.

import { Decoder, Encoder } from 'cbor-x';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { encodeBatch } from '../../protocol/record-batch.js';
import { ANONYMOUS } from '../auth/acl.js';
import type { Logger } from '../logger.js';
import type { LogManager } from '../storage/log-manager.js';
import { replayLog } from '../storage/replay.js';

export const CONSUMER_OFFSETS_TOPIC = '__consumer_offsets';
const TOPIC_CONFIG = { 'cleanup.policy': 'compact', 'retention.ms': -1, flush: 'batch' } as const;
const KEY_VERSION = 1;
/** Kafka's offset.metadata.max.bytes. */
export const OFFSET_METADATA_CHARS_MAX = 4096;
const GROUP_ID = /^[A-Za-z0-9._-]{1,249}$/;
/** Tombstones written in one batch when offsets are deleted. */
const TOMBSTONES_PER_BATCH = 1000;
/** Stored offsets whose record names no principal (written before `by` existed). */
const NO_PRINCIPAL = '';

export interface CommittedOffset {
  offset: number;
  /** The leader epoch of the record before `offset`; -1 when the committer did not know it. */
  leaderEpoch: number;
  metadata: string;
  commitMs: number;
}

/** A stored offset and the principal it counts against. */
interface Entry extends CommittedOffset {
  by: string;
  metadataBytes: number;
}

/** The bounds of committed offsets: their config keys (limits.offset*, node/config.ts). */
export type OffsetLimit =
  | 'offsetGroupsPerPrincipalMax'
  | 'offsetPartitionsPerPrincipalMax'
  | 'offsetMetadataBytesPerPrincipalMax'
  | 'offsetGroupsMax'
  | 'offsetPartitionsMax'
  | 'offsetMetadataBytesMax';

export type OffsetLimits = Record<OffsetLimit, number>;


export const UNBOUNDED_OFFSET_LIMITS: OffsetLimits = {
  offsetGroupsPerPrincipalMax: Number.POSITIVE_INFINITY,
  offsetPartitionsPerPrincipalMax: Number.POSITIVE_INFINITY,
  offsetMetadataBytesPerPrincipalMax: Number.POSITIVE_INFINITY,
  offsetGroupsMax: Number.POSITIVE_INFINITY,
  offsetPartitionsMax: Number.POSITIVE_INFINITY,
  offsetMetadataBytesMax: Number.POSITIVE_INFINITY,
};

/** What a principal, or the node, holds. */
interface Holdings {
  /** Stored offsets per group. */
  groups: Map<string, number>;
  partitions: number;
  metadataBytes: number;
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

export function validateGroupId(groupId: unknown): asserts groupId is string {
  if (typeof groupId !== 'string' || !GROUP_ID.test(groupId)) {
    throw new TributaryError(Errors.INVALID_REQUEST, `group id ${JSON.stringify(groupId)} must be 1-249 of [A-Za-z0-9._-]`);
  }
}

function emptyHoldings(): Holdings {
  return { groups: new Map(), partitions: 0, metadataBytes: 0 };
}

export interface OffsetsOpenOptions {
  limits?: Partial<OffsetLimits>;
  /** Told which limit a commit reached (its config key), for the metrics. */
  onLimitReached?: (limit: OffsetLimit) => void;
}

export interface OffsetCommitEntry {
  topic: string;
  partition: number;
  offset: number;
  /** -1 or left out: unknown. */
  leaderEpoch?: number;
  metadata: string;
}

export class ConsumerOffsets {
  private readonly groups = new Map<string, Map<string, Entry>>();
  private readonly byPrincipal = new Map<string, Holdings>();
  private readonly node = emptyHoldings();
  /** Room held by commits waiting for their fsync (see `reserve`). */
  private readonly reservedBy = new Map<string, Holdings>();
  private readonly reservedNode = emptyHoldings();
  /** Records left out at start because the node-wide limits were reached. */
  private skippedAtLoad = 0;

  /** `limits` without the per-principal bounds, which anonymous clients are not held to. */
  private readonly anonymousLimits: OffsetLimits;

  private constructor(
    private readonly logs: LogManager,
    private readonly limits: OffsetLimits,
    private readonly onLimitReached: (limit: OffsetLimit) => void,
  ) {
    const unbounded = Number.POSITIVE_INFINITY;
    this.anonymousLimits = { ...limits, offsetGroupsPerPrincipalMax: unbounded, offsetPartitionsPerPrincipalMax: unbounded, offsetMetadataBytesPerPrincipalMax: unbounded };
  }

  /** Creates the topic on first start and loads the commits in it, within the node-wide limits. */
  static async open(logs: LogManager, logger: Logger, options: OffsetsOpenOptions = {}): Promise<ConsumerOffsets> {
    const limits: OffsetLimits = { ...UNBOUNDED_OFFSET_LIMITS };
    for (const key of Object.keys(UNBOUNDED_OFFSET_LIMITS) as OffsetLimit[]) limits[key] = options.limits?.[key] ?? limits[key];
    const store = new ConsumerOffsets(logs, limits, options.onLimitReached ?? (() => {}));
    if (!logs.topic(CONSUMER_OFFSETS_TOPIC)) await logs.createTopic(CONSUMER_OFFSETS_TOPIC, 1, { ...TOPIC_CONFIG }, { internal: true });
    const log = logs.partition(CONSUMER_OFFSETS_TOPIC, 0);
    if (!log) return store;
    let undecodable = 0;
    const replayed = replayLog(
      log,
      (record) => {
        try {
          store.load(record.key, record.value);
        } catch {
          // A key or value that is not CBOR (a record a client produced, not a commit).
          undecodable++;
        }
      },
      {
        // Produce checks what a compressed batch inflates to against max.message.bytes, and
        // the node writes its own commits uncompressed: no batch here may inflate past it.
        decompressedBytesMax: log.config['max.message.bytes'],
        onUndecodableBatch: () => undefined,
      },
    );
    if (replayed.undecodableBatches > 0 || undecodable > 0) {
      logger.warn({ batches: replayed.undecodableBatches, records: undecodable }, 'skipped __consumer_offsets batches and records that do not decode');
    }
    if (store.skippedAtLoad > 0) {
      logger.warn(
        { records: store.skippedAtLoad, offsetGroupsMax: store.limits.offsetGroupsMax, offsetPartitionsMax: store.limits.offsetPartitionsMax, offsetMetadataBytesMax: store.limits.offsetMetadataBytesMax },
        'committed offsets past the node-wide limits were not loaded: those groups start from their reset policy',
      );
    }
    logger.info({ groups: store.groups.size, partitions: store.node.partitions }, 'committed offsets loaded');
    return store;
  }

  /** Applies one stored record at start; records that are not ours are ignored. */
  private load(key: Buffer | null, value: Buffer | null): void {
    if (key === null) return;
    const k = decoder.decode(key) as unknown;
    if (!Array.isArray(k) || k[0] !== KEY_VERSION || typeof k[1] !== 'string' || typeof k[2] !== 'string' || !Number.isInteger(k[3])) return;
    const [, group, topic, partition] = k as [number, string, string, number];
    if (value === null) {
      this.remove(group, tpKey(topic, partition));
      return;
    }
    const v = decoder.decode(value) as Partial<CommittedOffset> & { by?: unknown };
    if (!Number.isSafeInteger(v?.offset)) return;
    const leaderEpoch = Number.isInteger(v.leaderEpoch) && (v.leaderEpoch as number) >= 0 ? (v.leaderEpoch as number) : -1;
    const entry = newEntry(v.offset as number, leaderEpoch, typeof v.metadata === 'string' ? v.metadata : '', Number(v.commitMs) || 0, typeof v.by === 'string' ? v.by : NO_PRINCIPAL);
    const tp = tpKey(topic, partition);
    // An update of an offset already loaded always applies: skipping it would leave the
    // older position in place and rewind the group. Only new offsets are bounded here.
    if (!this.groups.get(group)?.has(tp) && this.nodeLimitReached(group, tp, entry) !== null) {
      this.skippedAtLoad++;
      return;
    }
    this.put(group, tp, entry);
  }

  private holdingsOf(principal: string): Holdings {
    let h = this.byPrincipal.get(principal);
    if (!h) this.byPrincipal.set(principal, (h = emptyHoldings()));
    return h;
  }

  private put(group: string, tp: string, entry: Entry): void {
    let offsets = this.groups.get(group);
    if (!offsets) this.groups.set(group, (offsets = new Map()));
    const old = offsets.get(tp);
    if (old) this.uncount(group, old);
    offsets.set(tp, entry);
    this.count(group, entry, 1);
  }

  private remove(group: string, tp: string): void {
    const offsets = this.groups.get(group);
    const old = offsets?.get(tp);
    if (!offsets || !old) return;
    offsets.delete(tp);
    this.uncount(group, old);
    if (offsets.size === 0) this.groups.delete(group);
  }

  private uncount(group: string, entry: Entry): void {
    this.count(group, entry, -1);
  }

  /** Adds (+1) or takes away (-1) one stored offset from its principal's and the node's holdings. */
  private count(group: string, entry: Entry, sign: 1 | -1): void {
    const holders = entry.by === NO_PRINCIPAL ? [this.node] : [this.node, this.holdingsOf(entry.by)];
    for (const h of holders) {
      h.partitions += sign;
      h.metadataBytes += sign * entry.metadataBytes;
      const n = (h.groups.get(group) ?? 0) + sign;
      if (n > 0) h.groups.set(group, n);
      else h.groups.delete(group);
    }
    if (entry.by !== NO_PRINCIPAL && sign < 0) {
      const h = this.holdingsOf(entry.by);
      if (h.partitions === 0) this.byPrincipal.delete(entry.by);
    }
  }

  /** The node-wide limit that storing `entry` at (group, tp) would pass, or null. */
  private nodeLimitReached(group: string, tp: string, entry: Entry): OffsetLimit | null {
    const old = this.groups.get(group)?.get(tp);
    const h = this.node;
    if (!this.groups.has(group) && h.groups.size + 1 > this.limits.offsetGroupsMax) return 'offsetGroupsMax';
    if (!old && h.partitions + 1 > this.limits.offsetPartitionsMax) return 'offsetPartitionsMax';
    const grown = entry.metadataBytes - (old?.metadataBytes ?? 0);
    if (grown > 0 && h.metadataBytes + grown > this.limits.offsetMetadataBytesMax) return 'offsetMetadataBytesMax';
    return null;
  }

  /**
   * What one request's commits add: to its principal and to the node, in groups (by name,
   * so that two commits in flight to one new group take one place), committed partitions
   * and bytes of metadata. Only growth counts: a commit that moves an offset forward adds
   * nothing, so it is never refused, even when the limits were lowered since.
   */
  private growth(group: string, principal: string, entries: readonly [string, Entry][]): { own: Holdings; node: Holdings } {
    const ownHeld = this.byPrincipal.get(principal);
    const offsets = this.groups.get(group);
    const own = emptyHoldings();
    const node = emptyHoldings();
    for (const [tp, entry] of entries) {
      const old = offsets?.get(tp);
      if (!old) node.partitions++;
      if (!old || old.by !== principal) own.partitions++;
      node.metadataBytes += Math.max(0, entry.metadataBytes - (old?.metadataBytes ?? 0));
      own.metadataBytes += Math.max(0, entry.metadataBytes - (old && old.by === principal ? old.metadataBytes : 0));
    }
    if (!this.groups.has(group)) node.groups.set(group, 1);
    if (!ownHeld?.groups.has(group)) own.groups.set(group, 1);
    return { own, node };
  }

  /** The limit that `growth` would pass on top of what is held and reserved, or null. */
  private limitReached(principal: string, growth: { own: Holdings; node: Holdings }): OffsetLimit | null {
    const held = this.byPrincipal.get(principal) ?? emptyHoldings();
    const reserved = this.reservedBy.get(principal) ?? emptyHoldings();
    // Anonymous clients (dev mode, loopback only) are one local user: bounded node-wide only.
    const L = principal === ANONYMOUS.key ? this.anonymousLimits : this.limits;
    const newGroups = (h: Holdings, r: Holdings, g: Holdings) => [...g.groups.keys()].filter((k) => !r.groups.has(k)).length + h.groups.size + r.groups.size;
    if (growth.own.groups.size > 0 && newGroups(held, reserved, growth.own) > L.offsetGroupsPerPrincipalMax) return 'offsetGroupsPerPrincipalMax';
    if (growth.own.partitions > 0 && held.partitions + reserved.partitions + growth.own.partitions > L.offsetPartitionsPerPrincipalMax) return 'offsetPartitionsPerPrincipalMax';
    if (growth.own.metadataBytes > 0 && held.metadataBytes + reserved.metadataBytes + growth.own.metadataBytes > L.offsetMetadataBytesPerPrincipalMax) return 'offsetMetadataBytesPerPrincipalMax';
    if (growth.node.groups.size > 0 && newGroups(this.node, this.reservedNode, growth.node) > L.offsetGroupsMax) return 'offsetGroupsMax';
    if (growth.node.partitions > 0 && this.node.partitions + this.reservedNode.partitions + growth.node.partitions > L.offsetPartitionsMax) return 'offsetPartitionsMax';
    if (growth.node.metadataBytes > 0 && this.node.metadataBytes + this.reservedNode.metadataBytes + growth.node.metadataBytes > L.offsetMetadataBytesMax) return 'offsetMetadataBytesMax';
    return null;
  }

  /**
   * Holds (+1) or gives back (-1) the room a commit in flight needs: commits wait for their
   * fsync before they apply, and without the reservation every commit in flight would be
   * checked against the same figures and pass together.
   */
  private reserve(principal: string, growth: { own: Holdings; node: Holdings }, sign: 1 | -1): void {
    let own = this.reservedBy.get(principal);
    if (!own) this.reservedBy.set(principal, (own = emptyHoldings()));
    for (const [into, add] of [
      [own, growth.own],
      [this.reservedNode, growth.node],
    ] as const) {
      into.partitions += sign * add.partitions;
      into.metadataBytes += sign * add.metadataBytes;
      for (const g of add.groups.keys()) {
        const n = (into.groups.get(g) ?? 0) + sign;
        if (n > 0) into.groups.set(g, n);
        else into.groups.delete(g);
      }
    }
    if (own.partitions === 0 && own.metadataBytes === 0 && own.groups.size === 0) this.reservedBy.delete(principal);
  }

  /**
   * Writes the commits of one request as one batch and applies them once it is durable;
   * resolves with the bytes appended (for the disk guard). Throws a TributaryError for the
   * whole request (a limit, storage), never half-applies.
   */
  async commit(group: string, commits: readonly OffsetCommitEntry[], nowMs: number, principal = NO_PRINCIPAL): Promise<number> {
    if (commits.length === 0) return 0;
    const entries = new Map<string, Entry>();
    for (const c of commits) entries.set(tpKey(c.topic, c.partition), newEntry(c.offset, c.leaderEpoch ?? -1, c.metadata, nowMs, principal));
    const growth = this.growth(group, principal, [...entries]);
    const limit = this.limitReached(principal, growth);
    if (limit !== null) {
      this.onLimitReached(limit);
      throw new TributaryError(Errors.RESOURCE_LIMIT, limitMessage(limit, this.limits[limit]));
    }
    const log = this.logs.partition(CONSUMER_OFFSETS_TOPIC, 0);
    if (!log) throw new TributaryError(Errors.STORAGE_ERROR, `${CONSUMER_OFFSETS_TOPIC} is missing`);
    const records = commits.map((c) => ({
      key: Buffer.from(encoder.encode([KEY_VERSION, group, c.topic, c.partition])),
      value: Buffer.from(
        encoder.encode({
          offset: c.offset,
          metadata: c.metadata,
          commitMs: nowMs,
          ...(principal === NO_PRINCIPAL ? {} : { by: principal }),
          ...(c.leaderEpoch !== undefined && c.leaderEpoch >= 0 ? { leaderEpoch: c.leaderEpoch } : {}),
        }),
      ),
    }));
    const batch = encodeBatch(records, { timestamp: nowMs });
    this.reserve(principal, growth, 1);
    try {
      await log.append(batch).durable;
      for (const [tp, entry] of entries) this.put(group, tp, entry);
    } finally {
      this.reserve(principal, growth, -1);
    }
    return batch.length;
  }

  /**
   * Deletes the committed offsets of every group that has no live member (`isLive` says)
   * and whose newest commit is older than `retentionMs` (Kafka's offsets.retention.minutes):
   * tombstones go to the topic, which compaction then drops, and the places they held are
   * free again. Resolves with the groups deleted.
   */
  async expire(nowMs: number, retentionMs: number, isLive: (group: string) => boolean): Promise<number> {
    if (retentionMs < 0) return 0;
    const expired: string[] = [];
    for (const [group, offsets] of this.groups) {
      if (isLive(group)) continue;
      let newest = 0;
      for (const e of offsets.values()) newest = Math.max(newest, e.commitMs);
      if (newest + retentionMs < nowMs) expired.push(group);
    }
    for (const group of expired) {
      const offsets = this.groups.get(group);
      if (offsets) await this.tombstone(group, [...offsets.keys()], nowMs);
    }
    return expired.length;
  }

  /** Deletes every committed offset of `topic` (the topic was deleted); resolves with how many. */
  async forgetTopic(topic: string, nowMs: number): Promise<number> {
    let count = 0;
    for (const [group, offsets] of [...this.groups]) {
      const keys = [...offsets.keys()].filter((k) => k.slice(0, k.lastIndexOf('\u0000')) === topic);
      if (keys.length === 0) continue;
      await this.tombstone(group, keys, nowMs);
      count += keys.length;
    }
    return count;
  }

  /** Writes tombstones for `keys` of `group` (in batches of TOMBSTONES_PER_BATCH) and forgets them once durable. */
  private async tombstone(group: string, keys: string[], nowMs: number): Promise<void> {
    const log = this.logs.partition(CONSUMER_OFFSETS_TOPIC, 0);
    if (!log) throw new TributaryError(Errors.STORAGE_ERROR, `${CONSUMER_OFFSETS_TOPIC} is missing`);
    for (let i = 0; i < keys.length; i += TOMBSTONES_PER_BATCH) {
      const slice = keys.slice(i, i + TOMBSTONES_PER_BATCH);
      const records = slice.map((k) => {
        const sep = k.lastIndexOf('\u0000');
        return { key: Buffer.from(encoder.encode([KEY_VERSION, group, k.slice(0, sep), Number(k.slice(sep + 1))])), value: null };
      });
      await log.append(encodeBatch(records, { timestamp: nowMs })).durable;
      for (const k of slice) this.remove(group, k);
    }
  }

  committed(group: string, topic: string, partition: number): CommittedOffset | undefined {
    const e = this.groups.get(group)?.get(tpKey(topic, partition));
    return e && { offset: e.offset, leaderEpoch: e.leaderEpoch, metadata: e.metadata, commitMs: e.commitMs };
  }

  /** Every committed offset of a group, as [topic, partition, offset]. */
  all(group: string): { topic: string; partition: number; committed: CommittedOffset }[] {
    const out: { topic: string; partition: number; committed: CommittedOffset }[] = [];
    for (const [key, e] of this.groups.get(group) ?? []) {
      const sep = key.lastIndexOf('\u0000');
      out.push({ topic: key.slice(0, sep), partition: Number(key.slice(sep + 1)), committed: { offset: e.offset, leaderEpoch: e.leaderEpoch, metadata: e.metadata, commitMs: e.commitMs } });
    }
    return out;
  }

  /** Groups with at least one committed offset. */
  groupIds(): string[] {
    return [...this.groups.keys()];
  }

  get groupCount(): number {
    return this.groups.size;
  }

  /** What the node holds, for the metrics: groups, committed partitions, bytes of metadata. */
  get totals(): { groups: number; partitions: number; metadataBytes: number } {
    return { groups: this.node.groups.size, partitions: this.node.partitions, metadataBytes: this.node.metadataBytes };
  }

  /** What `principal` holds. */
  heldBy(principal: string): { groups: number; partitions: number; metadataBytes: number } {
    const h = this.byPrincipal.get(principal);
    return { groups: h?.groups.size ?? 0, partitions: h?.partitions ?? 0, metadataBytes: h?.metadataBytes ?? 0 };
  }

  /** Records left out at start because the node-wide limits were reached. */
  get skippedRecordsAtLoad(): number {
    return this.skippedAtLoad;
  }
}

function newEntry(offset: number, leaderEpoch: number, metadata: string, commitMs: number, by: string): Entry {
  return { offset, leaderEpoch, metadata, commitMs, by, metadataBytes: Buffer.byteLength(metadata, 'utf8') };
}

function limitMessage(limit: OffsetLimit, max: number): string {
  switch (limit) {
    case 'offsetGroupsPerPrincipalMax':
      return `this principal holds committed offsets of ${max} groups (limits.offsetGroupsPerPrincipalMax)`;
    case 'offsetPartitionsPerPrincipalMax':
      return `this principal holds ${max} committed offsets (limits.offsetPartitionsPerPrincipalMax)`;
    case 'offsetMetadataBytesPerPrincipalMax':
      return `this principal's commit metadata would pass ${max} bytes (limits.offsetMetadataBytesPerPrincipalMax)`;
    case 'offsetGroupsMax':
      return `this node holds committed offsets of ${max} groups (limits.offsetGroupsMax)`;
    case 'offsetPartitionsMax':
      return `this node holds ${max} committed offsets (limits.offsetPartitionsMax)`;
    case 'offsetMetadataBytesMax':
      return `commit metadata on this node would pass ${max} bytes (limits.offsetMetadataBytesMax)`;
  }
}
