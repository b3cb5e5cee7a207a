// Topic administration: create, delete, list and describe topics, alter and describe their
// configs, and look up offsets.
// Plural calls answer per topic (one may fail while the others succeed, as in Kafka's
// AdminClient); singular calls throw the topic's error.

import { Errors, TributaryError } from '../protocol/errors.js';
import { EARLIEST_TIMESTAMP, Kind, LATEST_TIMESTAMP, type ConfigSource, type ListOffsetsPartitionResult, type TopicMetadata } from '../protocol/frames.js';
import type { Client } from './client.js';
import { wireError } from './errors.js';

export type TopicConfig = Record<string, string | number>;

export interface NewTopic {
  name: string;
  partitions: number;
  config?: TopicConfig;
}

export interface TopicOutcome {
  name: string;
  /** null when the topic was created or deleted. */
  error: TributaryError | null;
}

export interface PartitionDescription {
  partition: number;
  leader: string;
  leaderEpoch: number;
  /** First offset still kept. */
  logStartOffset: number;
  /** Offset the next record will get. */
  logEndOffset: number;
}

export interface TopicDescription {
  name: string;
  partitions: PartitionDescription[];
  config: TopicConfig;
}

/** Keys to set and keys to delete (back to the node's default), as Kafka's IncrementalAlterConfigs. */
export interface ConfigAlteration {
  set?: TopicConfig;
  delete?: readonly string[];
}

export interface ConfigEntry {
  name: string;
  value: string | number;
  /** topic: set on the topic; node: the node's topicDefaults; default: built in. */
  source: ConfigSource;
}

export interface TopicConfigDescription {
  name: string;
  /** null when `configs` holds the topic's configs. */
  error: TributaryError | null;
  configs: ConfigEntry[];
}

/** 'earliest' (first kept), 'latest' (log end), or a time in ms (first at or after it). */
export type OffsetSpec = 'earliest' | 'latest' | number;

export interface OffsetQuery {
  topic: string;
  partition: number;
  at: OffsetSpec;
}

export interface OffsetAnswer {
  topic: string;
  partition: number;
  /** null when no record has a timestamp at or after the one asked for. */
  offset: number | null;
  timestamp: number;
}

export class Admin {
  constructor(
    private readonly client: Client,
    private readonly ownsClient = false,
  ) {}

  async createTopics(topics: readonly NewTopic[]): Promise<TopicOutcome[]> {
    if (topics.length === 0) return [];
    const response = await this.client.request(Kind.CreateTopics, {
      topics: topics.map((t) => (t.config === undefined ? { name: t.name, partitions: t.partitions } : { name: t.name, partitions: t.partitions, config: t.config })),
    });
    return outcomes(topics.map((t) => t.name), response.topics);
  }

  async createTopic(name: string, options: { partitions?: number; config?: TopicConfig } = {}): Promise<void> {
    const [outcome] = await this.createTopics([{ name, partitions: options.partitions ?? 1, config: options.config }]);
    if (outcome.error) throw outcome.error;
  }

  async deleteTopics(names: readonly string[]): Promise<TopicOutcome[]> {
    if (names.length === 0) return [];
    const response = await this.client.request(Kind.DeleteTopics, { topics: [...names] });
    return outcomes(names, response.topics);
  }

  async deleteTopic(name: string): Promise<void> {
    const [outcome] = await this.deleteTopics([name]);
    if (outcome.error) throw outcome.error;
  }

  /**
   * Changes a topic's configs at run time: all of them or, when the node refuses one
   * (INVALID_CONFIG naming the key and value), none. Throws the topic's error.
   */
  async alterTopicConfigs(topic: string, changes: ConfigAlteration): Promise<void> {
    const configs = [
      ...Object.entries(changes.set ?? {}).map(([name, value]) => ({ name, op: 'set' as const, value })),
      ...(changes.delete ?? []).map((name) => ({ name, op: 'delete' as const })),
    ];
    const response = await this.client.request(Kind.AlterConfigs, { topics: [{ name: topic, configs }] });
    const [outcome] = outcomes([topic], response.topics);
    if (outcome.error) throw outcome.error;
  }

  /** Every config of each topic with its value and source, per topic (one may fail). */
  async describeTopicConfigs(topics: readonly string[]): Promise<TopicConfigDescription[]> {
    if (topics.length === 0) return [];
    const response = await this.client.request(Kind.DescribeConfigs, { topics: [...topics] });
    return outcomes(topics, response.topics).map((o, i) => {
      const r = answerOf(response.topics, i, o.name);
      return { name: o.name, error: o.error, configs: o.error === null && r !== undefined ? r.configs.map((c) => ({ ...c })) : [] };
    });
  }

  /** Names of every topic, sorted. */
  async listTopics(): Promise<string[]> {
    const response = await this.client.request(Kind.Metadata, {});
    return response.topics
      .filter((t) => t.error === Errors.NONE.code)
      .map((t) => t.name)
      .sort();
  }

  /** Partitions (leader, epoch, log start and end) and config of one topic. */
  async describeTopic(name: string): Promise<TopicDescription> {
    const meta = await this.topicMetadata(name);
    const partitions = [...meta.partitions].sort((a, b) => a.partition - b.partition);
    const ends = await this.listOffsets(
      partitions.flatMap((p) => [
        { topic: name, partition: p.partition, at: 'earliest' as const },
        { topic: name, partition: p.partition, at: 'latest' as const },
      ]),
    );
    return {
      name,
      config: { ...meta.config },
      partitions: partitions.map((p, i) => ({
        partition: p.partition,
        leader: p.leader,
        leaderEpoch: p.leaderEpoch,
        logStartOffset: ends[2 * i].offset ?? 0,
        logEndOffset: ends[2 * i + 1].offset ?? 0,
      })),
    };
  }

  /** Metadata of one topic; UNKNOWN_TOPIC when it does not exist. */
  async topicMetadata(name: string): Promise<TopicMetadata> {
    const response = await this.client.request(Kind.Metadata, { topics: [name] });
    const meta = answerOf(response.topics, 0, name);
    if (meta === undefined) throw new TributaryError(Errors.UNKNOWN_TOPIC, `topic '${name}' does not exist`);
    if (meta.error !== Errors.NONE.code) throw wireError(meta.error, meta.message ?? `topic '${name}'`);
    return meta;
  }

  /** Offsets by position or time, in query order; a partition's error throws. */
  async listOffsets(queries: readonly OffsetQuery[]): Promise<OffsetAnswer[]> {
    if (queries.length === 0) return [];
    const response = await this.client.request(Kind.ListOffsets, {
      partitions: queries.map((q) => ({ topic: q.topic, partition: q.partition, timestamp: timestampOf(q.at) })),
    });
    // Answers come in request order; a repeated (topic, partition) is answered once each.
    return queries.map((q, i) => {
      const r = answerFor(response.partitions, i, q);
      if (r.error !== Errors.NONE.code) throw wireError(r.error, r.message);
      return { topic: q.topic, partition: q.partition, offset: r.offset < 0 ? null : r.offset, timestamp: r.timestamp };
    });
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

function timestampOf(at: OffsetSpec): number {
  if (at === 'earliest') return EARLIEST_TIMESTAMP;
  if (at === 'latest') return LATEST_TIMESTAMP;
  if (!Number.isSafeInteger(at) || at < 0) throw new TributaryError(Errors.INVALID_REQUEST, `an offset query needs 'earliest', 'latest' or ms since the epoch, got ${String(at)}`);
  return at;
}

function answerFor(results: ListOffsetsPartitionResult[], i: number, q: OffsetQuery): ListOffsetsPartitionResult {
  const r = results[i];
  if (r !== undefined && answersTopic(r.topic, q.topic) && r.partition === q.partition) return r;
  const found = results.find((x) => x.topic === q.topic && x.partition === q.partition);
  if (found === undefined) throw new TributaryError(Errors.UNKNOWN, `node did not answer for ${q.topic}/${q.partition}`);
  return found;
}

function outcomes(names: readonly string[], results: { name: string; error: number; message?: string }[]): TopicOutcome[] {
  return names.map((name, i) => {
    const r = answerOf(results, i, name);
    if (r === undefined) return { name, error: new TributaryError(Errors.UNKNOWN, `node did not answer for topic '${name}'`) };
    return { name, error: r.error === Errors.NONE.code ? null : wireError(r.error, r.message) };
  });
}

/**
 * The answer about topic `name`, asked for at position `i`: answers come in request order,
 * and a repeated name is answered once each.
 */
export function answerOf<T extends { name: string }>(results: readonly T[], i: number, name: string): T | undefined {
  const r = results[i];
  return r !== undefined && answersTopic(r.name, name) ? r : results.find((x) => x.name === name);
}

/**
 * Whether an answer's topic is `asked`. A node echoes a name too long to be a topic name cut
 * to the longest legal length, with INVALID_TOPIC: matched only in place (by position), that
 * answer is the one about the long name, whose error is then shown rather than a missing
 * answer.
 */
export function answersTopic(answered: string, asked: string): boolean {
  return answered === asked || (answered.length > 0 && answered.length < asked.length && asked.startsWith(answered));
}
