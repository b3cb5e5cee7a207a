// All topics and partitions of one data folder:
//
//   <data>/.clean-shutdown           present only between a clean close and the next open
//   <data>/topics/<name>.json        { name, partitions, overrides } per topic, written durably
//   <data>/<topic>-<partition>/      one PartitionLog each
//
// Topic admin operations run one at a time (a queue), so create and delete never race on
// one name. Every change that must survive a crash is ordered so that a crash at any point
// leaves either the old state or the new one, or a leftover the next open finishes:
//   create: config file (durable rename) -> partition folders -> folder fsync.
//           A crash after the config leaves empty partitions, which open recreates.
//   delete: config renamed to `<name>.del` -> partition folders renamed to
//           `<random>-delete` -> config removed -> folders removed. Open finishes any
//           `.del` topic (or one marked as older versions did: `<name>.json.deleting`, or
//           a config saying `deleting: true`) and removes every `-delete` folder. Renames
//           only: a full disk, where deleting a topic is how space comes back, cannot stop
//           it.
//
// Every file name made from a topic name fits the 255-byte NAME_MAX of common file systems
// at the longest legal name (249 ASCII characters, topic-rules.ts): `<name>.json` is 254,
// `<name>.del` 253, `<name>-9999` 254; temporary and `-delete` names do not grow with it.

import { systemClock, type Clock } from '../../protocol/clock.js';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { normalizeOverrides, parseConfigValue, parseTopicConfig, TOPIC_CONFIG_KEYS } from './config.js';
import type { TopicConfig } from './config.js';
import { fsyncDir, isErrno, isTemporaryName, nodeFileOps, readFileSyncOrNull, writeFileDurable, writeFully } from './file-ops.js';
import type { FileOps } from './file-ops.js';
import { PartitionLog } from './partition-log.js';
import { DEFAULT_READ_FDS_MAX, ReadFdCache } from './read-fd-cache.js';
import type { PartitionRecovery } from './recovery.js';
import { validatePartitionCount, validateTopicName } from './topic-rules.js';

export interface LogManagerOptions {
  /** Broker-wide defaults under each topic's overrides. */
  defaults?: Partial<TopicConfig>;
  /** Timers and the wall clock of every partition (segment.ms, flush.interval.ms); default systemClock. */
  clock?: Clock;
  /** File system; node:fs unless a test injects faults. */
  fileOps?: FileOps;
  /** Bound on fds (and loaded indexes) held open for reading sealed segments. */
  readFdsMax?: number;
}

export interface CreateTopicOptions {
  /** Allows a name starting with '__' (internal topics such as __consumer_offsets). */
  internal?: boolean;
}

export interface TopicInfo {
  name: string;
  partitions: number;
  config: TopicConfig;
}

/** Where a topic's config value comes from, as Kafka's DescribeConfigs names its sources. */
export type ConfigSource = 'topic' | 'node' | 'default';

export interface ConfigEntry {
  name: string;
  value: string | number;
  source: ConfigSource;
}

/** One step of Kafka's IncrementalAlterConfigs: set a key, or delete it back to the node default. */
export interface ConfigChange {
  name: string;
  op: 'set' | 'delete';
  value?: string | number;
}

/**
 * Keys of internal topics the node's own state depends on: __consumer_offsets and
 * __revocations stay compacted (retention must never drop the last commit or revocation)
 * and fsync before their writes are acknowledged.
 */
const INTERNAL_TOPIC_FIXED_KEYS: readonly string[] = ['cleanup.policy', 'flush'];

export interface RecoveryReport {
  /** The clean-shutdown marker was present: indexes were trusted, nothing was scanned. */
  clean: boolean;
  partitions: PartitionRecovery[];
  /** Topics whose config could not be read, and why; their folders are left untouched. */
  unreadableTopics: { topic: string; file: string; reason: string }[];
  /** Deletions a crash interrupted, finished at open. */
  finishedDeletes: string[];
}

interface StoredTopic {
  name: string;
  partitions: number;
  overrides: Record<string, string | number>;
  deleting?: boolean;
}

interface TopicState {
  info: TopicInfo;
  overrides: Record<string, string | number>;
  logs: PartitionLog[];
}

export const CLEAN_SHUTDOWN_FILE = '.clean-shutdown';
const TOPICS_DIR = 'topics';
const DELETE_SUFFIX = '-delete';
const PARTITION_OPENS_AT_ONCE = 8;
// Neither ends in `.json`, so no topic's config file is ever mistaken for a marker. The
// marker is short: `.json.deleting` after a 249-character name was 263 bytes, so such a
// topic could be created but not deleted (ENAMETOOLONG).
const DELETING_SUFFIX = '.del';
/** The marker of older versions, still finished at open. */
const OLD_DELETING_SUFFIX = '.json.deleting';

export class LogManager {
  readonly recoveryReport: RecoveryReport;
  private readonly topicStates = new Map<string, TopicState>();
  /** Names whose config file could not be read: their folders may hold data, so no create. */
  private readonly unreadableNames = new Set<string>();
  /**
   * Topics whose deletion failed part way (a full or failing disk): gone for clients, but
   * their files may remain. A create or delete of the name finishes the deletion first, so
   * a new topic never adopts the old one's folders.
   */
  private readonly pendingDeletes = new Map<string, StoredTopic>();
  private readonly ops: FileOps;
  private readonly readFds: ReadFdCache;
  private readonly clock: Clock;
  private readonly defaults: Partial<TopicConfig>;
  private adminQueue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly dataDir: string,
    options: LogManagerOptions,
    clean: boolean,
  ) {
    this.ops = options.fileOps ?? nodeFileOps;
    this.readFds = new ReadFdCache(options.readFdsMax ?? DEFAULT_READ_FDS_MAX);
    this.clock = options.clock ?? systemClock;
    // Parsed once: DescribeConfigs shows these as the node's values, under each topic's own.
    const defaults: Record<string, string | number> = {};
    for (const [key, value] of Object.entries(options.defaults ?? {})) {
      if (value !== undefined) defaults[key] = parseConfigValue(key, value, 'default topic config');
    }
    this.defaults = defaults as Partial<TopicConfig>;
    this.recoveryReport = { clean, partitions: [], unreadableTopics: [], finishedDeletes: [] };
  }

  static async open(dataDir: string, options: LogManagerOptions = {}): Promise<LogManager> {
    // Refuse bad defaults now, not at the first topic.
    parseTopicConfig(undefined, options.defaults);
    const ops = options.fileOps ?? nodeFileOps;
    await ops.mkdir(path.join(dataDir, TOPICS_DIR));
    const markerPath = path.join(dataDir, CLEAN_SHUTDOWN_FILE);
    const clean = readFileSyncOrNull(ops, markerPath) !== null;
    const manager = new LogManager(dataDir, options, clean);
    try {
      await manager.removeLeftovers();
      await manager.loadTopics(clean);
    } catch (err) {
      // A partition that cannot be opened stops the node; the ones opened release their fds.
      // The marker stays, so the next attempt is the same kind of start.
      await Promise.allSettled(manager.allLogs().map((log) => log.close()));
      manager.readFds.releaseAll();
      throw err;
    }
    // From here on a crash must be detected: the marker goes before anything is written.
    if (clean) {
      await ops.rm(markerPath);
      await fsyncDir(ops, dataDir);
    }
    return manager;
  }

  private get topicsDir(): string {
    return path.join(this.dataDir, TOPICS_DIR);
  }

  private partitionDir(topic: string, partition: number): string {
    return path.join(this.dataDir, `${topic}-${partition}`);
  }

  // -------------------------------------------------------------------------------------
  // Open

  private async removeLeftovers(): Promise<void> {
    for (const entry of await this.ops.readdir(this.topicsDir)) {
      if (isTemporaryName(entry.name)) await this.ops.rm(path.join(this.topicsDir, entry.name));
    }
    for (const entry of await this.ops.readdir(this.dataDir)) {
      if (entry.isDirectory && entry.name.endsWith(DELETE_SUFFIX)) await this.ops.rm(path.join(this.dataDir, entry.name));
    }
  }

  private async loadTopics(clean: boolean): Promise<void> {
    const entries = await this.ops.readdir(this.topicsDir);
    for (const file of entries.filter((e) => !e.isDirectory)) {
      const suffix = [DELETING_SUFFIX, OLD_DELETING_SUFFIX].find((s) => file.name.endsWith(s));
      if (suffix === undefined) continue;
      const stored = this.readStoredTopic(file.name, file.name.slice(0, -suffix.length));
      if (stored === null) continue;
      await this.finishDelete(stored, file.name);
      this.recoveryReport.finishedDeletes.push(stored.name);
    }
    const files = entries.filter((e) => !e.isDirectory && e.name.endsWith('.json'));
    const opens: (() => Promise<void>)[] = [];
    const reports: PartitionRecovery[][] = [];
    for (const file of files) {
      const stored = this.readStoredTopic(file.name, file.name.slice(0, -'.json'.length));
      if (stored === null) continue;
      if (stored.deleting) {
        await this.finishDelete(stored, file.name);
        this.recoveryReport.finishedDeletes.push(stored.name);
        continue;
      }
      const config = parseTopicConfig(stored.overrides, this.defaults);
      const logs: PartitionLog[] = [];
      const topicReports: PartitionRecovery[] = [];
      reports.push(topicReports);
      // Registered before the partitions open, so a failure below closes what did open.
      this.topicStates.set(stored.name, { info: { name: stored.name, partitions: stored.partitions, config }, overrides: stored.overrides, logs });
      for (let p = 0; p < stored.partitions; p++) {
        opens.push(async () => {
          logs[p] = await this.openPartition(stored.name, p, config, clean);
          topicReports[p] = logs[p].recovery;
        });
      }
    }
    // A few at a time: an open mostly waits on the disk (fsyncs after an unclean start), so
    // the waits overlap; the scans themselves are synchronous and take turns.
    await runLimited(opens, PARTITION_OPENS_AT_ONCE);
    for (const topicReports of reports) this.recoveryReport.partitions.push(...topicReports);
    // Partition folders a crash left uncreated were just made: make their entries durable.
    await fsyncDir(this.ops, this.dataDir);
  }

  /** A topic config file, or null (reported) if it is not one this code wrote. */
  private readStoredTopic(fileName: string, name: string): StoredTopic | null {
    try {
      const bytes = readFileSyncOrNull(this.ops, path.join(this.topicsDir, fileName));
      if (bytes === null) return null;
      const stored = JSON.parse(bytes.toString('utf8')) as StoredTopic;
      if (stored.name !== name) throw new Error(`names topic '${String(stored.name)}'`);
      validateTopicName(name, true);
      validatePartitionCount(stored.partitions);
      normalizeOverrides(stored.overrides);
      return stored;
    } catch (err) {
      this.recoveryReport.unreadableTopics.push({ topic: name, file: path.join(this.topicsDir, fileName), reason: (err as Error).message });
      this.unreadableNames.add(name);
      return null;
    }
  }

  private openPartition(topic: string, partition: number, config: TopicConfig, clean: boolean): Promise<PartitionLog> {
    return PartitionLog.open(this.partitionDir(topic, partition), topic, partition, config, {
      clean,
      ops: this.ops,
      readFds: this.readFds,
      clock: this.clock,
    });
  }

  // -------------------------------------------------------------------------------------
  // Topics

  topics(): TopicInfo[] {
    return [...this.topicStates.values()].map((s) => s.info).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  topic(name: string): TopicInfo | undefined {
    return this.topicStates.get(name)?.info;
  }

  partition(topic: string, partition: number): PartitionLog | undefined {
    return this.topicStates.get(topic)?.logs[partition];
  }

  createTopic(name: string, partitions: number, config?: Record<string, string | number>, options: CreateTopicOptions = {}): Promise<TopicInfo> {
    return this.admin(() => this.doCreateTopic(name, partitions, config, options));
  }

  deleteTopic(name: string): Promise<void> {
    return this.admin(() => this.doDeleteTopic(name));
  }

  /**
   * Every config key of a topic with its value and where that comes from: the topic's own
   * override, the node's default (topicDefaults), or the built-in default.
   */
  describeTopicConfig(name: string): ConfigEntry[] {
    const state = this.topicStates.get(name);
    if (state === undefined) throw new TributaryError(Errors.UNKNOWN_TOPIC, `topic '${name}' does not exist`);
    const has = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key);
    return TOPIC_CONFIG_KEYS.map((key) => ({
      name: key,
      value: state.info.config[key],
      source: has(state.overrides, key) ? 'topic' : has(this.defaults, key) ? 'node' : 'default',
    }));
  }

  /**
   * Kafka's IncrementalAlterConfigs for one topic, all or nothing: every change is checked
   * before anything is written, the new overrides are written durably, then every partition
   * takes the new config (see PartitionLog.updateConfig for when each key takes effect).
   */
  alterTopicConfig(name: string, changes: readonly ConfigChange[]): Promise<TopicInfo> {
    return this.admin(() => this.doAlterTopicConfig(name, changes));
  }

  /** Runs topic admin operations one at a time, in call order. */
  private admin<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.adminQueue.then(() => {
      if (this.closed) throw new TributaryError(Errors.SHUTTING_DOWN, 'the log manager is closed');
      return operation();
    });
    this.adminQueue = run.catch(() => undefined);
    return run;
  }

  private async doCreateTopic(name: string, partitions: number, raw: Record<string, string | number> | undefined, options: CreateTopicOptions): Promise<TopicInfo> {
    validateTopicName(name, options.internal ?? false);
    validatePartitionCount(partitions);
    const overrides = normalizeOverrides(raw);
    const config = parseTopicConfig(overrides, this.defaults);
    if (this.topicStates.has(name)) throw new TributaryError(Errors.TOPIC_ALREADY_EXISTS, `topic '${name}' already exists`);
    await this.finishPendingDelete(name);
    if (this.unreadableNames.has(name)) {
      throw new TributaryError(Errors.TOPIC_ALREADY_EXISTS, `topic '${name}' exists on disk but its config file is unreadable (see the recovery report)`);
    }
    const stored: StoredTopic = { name, partitions, overrides };
    await this.storageStep(`create topic '${name}'`, () => this.writeStoredTopic(stored));
    const logs: PartitionLog[] = [];
    try {
      for (let p = 0; p < partitions; p++) logs.push(await this.openPartition(name, p, config, false));
      await fsyncDir(this.ops, this.dataDir);
    } catch (err) {
      await this.undoCreate(stored, logs);
      throw storageError(`create topic '${name}'`, err);
    }
    const info: TopicInfo = { name, partitions, config };
    this.topicStates.set(name, { info, overrides, logs });
    return info;
  }

  private async doAlterTopicConfig(name: string, changes: readonly ConfigChange[]): Promise<TopicInfo> {
    const state = this.topicStates.get(name);
    if (state === undefined) throw new TributaryError(Errors.UNKNOWN_TOPIC, `topic '${name}' does not exist`);
    const overrides = { ...state.overrides };
    const seen = new Set<string>();
    for (const change of changes) {
      if (seen.has(change.name)) throw new TributaryError(Errors.INVALID_CONFIG, `config '${change.name}' is changed twice in one request`);
      seen.add(change.name);
      if (change.op === 'set') {
        overrides[change.name] = parseConfigValue(change.name, change.value);
      } else {
        // Deleting an unknown key is a typo worth reporting, not a no-op.
        if (!(TOPIC_CONFIG_KEYS as readonly string[]).includes(change.name)) parseConfigValue(change.name, undefined);
        delete overrides[change.name];
      }
    }
    const config = parseTopicConfig(overrides, this.defaults);
    if (name.startsWith('__')) {
      for (const key of INTERNAL_TOPIC_FIXED_KEYS) {
        const k = key as keyof TopicConfig;
        if (config[k] !== state.info.config[k]) {
          throw new TributaryError(Errors.INVALID_CONFIG, `'${name}' is an internal topic: its ${key} stays '${String(state.info.config[k])}' (the node's own state depends on it)`);
        }
      }
    }
    await this.storageStep(`alter config of topic '${name}'`, () => this.writeStoredTopic({ name, partitions: state.info.partitions, overrides }));
    state.overrides = overrides;
    state.info = { name, partitions: state.info.partitions, config };
    for (const log of state.logs) log.updateConfig(config);
    return state.info;
  }

  private async undoCreate(stored: StoredTopic, logs: PartitionLog[]): Promise<void> {
    for (const log of logs) await log.close().catch(() => undefined);
    await this.finishDelete(stored, `${stored.name}.json`).catch(() => undefined);
  }

  private async doDeleteTopic(name: string): Promise<void> {
    const state = this.topicStates.get(name);
    if (state === undefined) {
      // A deletion that failed before: this is its retry.
      if (this.pendingDeletes.has(name)) return this.finishPendingDelete(name);
      throw new TributaryError(Errors.UNKNOWN_TOPIC, `topic '${name}' does not exist`);
    }
    this.topicStates.delete(name);
    // A partition that failed (a dead disk) still has to go; its close error is not ours.
    for (const log of state.logs) await log.close().catch(() => undefined);
    this.pendingDeletes.set(name, { name, partitions: state.info.partitions, overrides: state.overrides });
    await this.finishPendingDelete(name);
  }

  /**
   * Runs (again) the deletion of `name` if one is pending: the config is renamed to the
   * `.del` marker (unless an earlier try did), then finishDelete. A failure keeps it
   * pending and answers STORAGE_ERROR.
   */
  private async finishPendingDelete(name: string): Promise<void> {
    const stored = this.pendingDeletes.get(name);
    if (stored === undefined) return;
    await this.storageStep(`delete topic '${name}'`, async () => {
      try {
        await this.ops.rename(path.join(this.topicsDir, `${name}.json`), path.join(this.topicsDir, `${name}${DELETING_SUFFIX}`));
      } catch (err) {
        // Renamed by an earlier try that failed later on.
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      await fsyncDir(this.ops, this.topicsDir);
      await this.finishDelete(stored, `${name}${DELETING_SUFFIX}`);
    });
    this.pendingDeletes.delete(name);
  }

  /** Deletes a topic marked for deletion (config file `configFile`); safe to repeat after a crash. */
  private async finishDelete(stored: StoredTopic, configFile: string): Promise<void> {
    const doomed: string[] = [];
    for (let p = 0; p < stored.partitions; p++) {
      const target = path.join(this.dataDir, `${randomBytes(8).toString('hex')}${DELETE_SUFFIX}`);
      try {
        await this.ops.rename(this.partitionDir(stored.name, p), target);
        doomed.push(target);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    }
    await fsyncDir(this.ops, this.dataDir);
    await this.ops.rm(path.join(this.topicsDir, configFile));
    await fsyncDir(this.ops, this.topicsDir);
    for (const dir of doomed) await this.ops.rm(dir);
  }

  private async writeStoredTopic(stored: StoredTopic): Promise<void> {
    await writeFileDurable(this.ops, this.topicsDir, `${stored.name}.json`, Buffer.from(`${JSON.stringify(stored, null, 2)}\n`, 'utf8'));
  }

  private async storageStep(what: string, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      throw storageError(what, err);
    }
  }

  // -------------------------------------------------------------------------------------
  // Lifecycle

  private allLogs(): PartitionLog[] {
    // A failed open leaves holes in a topic's list: the partitions not opened.
    return [...this.topicStates.values()].flatMap((s) => s.logs.filter((log) => log !== undefined));
  }

  async flushAll(): Promise<void> {
    await Promise.all(this.allLogs().map((log) => log.flush()));
  }

  /**
   * Closes every partition (sync, seal, close fds), then writes the clean-shutdown marker,
   * durably, only if all of them closed cleanly: otherwise the next open must scan.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    // Let queued admin operations finish first; new ones are refused.
    await this.adminQueue;
    this.closed = true;
    const results = await Promise.allSettled(this.allLogs().map((log) => log.close()));
    this.readFds.releaseAll();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    const markerPath = path.join(this.dataDir, CLEAN_SHUTDOWN_FILE);
    const fd = this.ops.openSync(markerPath, 'w');
    try {
      writeFully(this.ops, fd, Buffer.from(`${new Date(this.clock.now()).toISOString()}\n`), 0);
      await this.ops.fsync(fd);
    } finally {
      this.ops.closeSync(fd);
    }
    await fsyncDir(this.ops, this.dataDir);
  }
}

/**
 * Runs `tasks` with at most `limit` in progress. At the first failure no further task
 * starts; the ones running are awaited, then the failure is thrown.
 */
async function runLimited(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | null = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < tasks.length) {
      const task = tasks[next++];
      try {
        await task();
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
}

function storageError(what: string, err: unknown): TributaryError {
  if (err instanceof TributaryError) return err;
  return new TributaryError(Errors.STORAGE_ERROR, `${what}: ${(err as Error).message}`, { cause: err });
}
