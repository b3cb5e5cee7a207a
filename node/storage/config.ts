// Per-topic storage configuration, named as Kafka names its topic configs so an operator
// who knows Kafka knows these. Values arrive as strings (CLI flags) or numbers (CBOR wire
// frames); both are parsed here, strictly, and a bad key or value is refused with a message
// naming both, never silently clamped.

import { BATCH_OVERHEAD } from '../../protocol/record-batch.js';
import { Errors, TributaryError } from '../../protocol/errors.js';

export type FlushPolicy = 'batch' | 'interval' | 'os';
export type CleanupPolicy = 'delete' | 'compact';

export interface TopicConfig {
  /** Roll when the active segment reaches this many bytes. */
  'segment.bytes': number;
  /** Roll when the active segment's first batch was appended longer ago than this. */
  'segment.ms': number;
  /** batch: fsync before an append is durable; interval: fsync on a timer; os: leave it to the OS. */
  'flush': FlushPolicy;
  'flush.interval.ms': number;
  /** Largest batch accepted, in bytes (Kafka's default 1048588 = 1 MiB + 12). */
  'max.message.bytes': number;
  /** A sparse index entry every ~this many bytes of log. */
  'index.interval.bytes': number;
  /** Stored and validated now; enforced by retention (a later step). -1 = forever. */
  'retention.ms': number;
  'retention.bytes': number;
  /** delete: retention drops old segments; compact: keep the newest record per key. Stored
   * and validated now; the compaction job comes with the scheduler (a later step). */
  'cleanup.policy': CleanupPolicy;
  /** compact: how long a tombstone (null value) stays readable once its segment's newest
   * record is this old, so a consumer that reads in time sees the delete (Kafka's). */
  'delete.retention.ms': number;
}

const MIB = 1024 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;
// File positions in the sparse index are int32, so no segment may grow past this.
const INT32_MAX = 0x7fffffff;
// setTimeout clamps larger delays to 1 ms, which would turn a long interval into a busy loop.
const TIMER_MS_MAX = 0x7fffffff;

export const DEFAULT_TOPIC_CONFIG: TopicConfig = Object.freeze({
  // 64 MiB, not Kafka's 1 GiB: edge flash is small, and retention drops whole segments.
  'segment.bytes': 64 * MIB,
  'segment.ms': 7 * DAY_MS,
  'flush': 'interval',
  'flush.interval.ms': 1000,
  'max.message.bytes': MIB + 12,
  'index.interval.bytes': 4096,
  'retention.ms': 7 * DAY_MS,
  'retention.bytes': -1,
  'cleanup.policy': 'delete',
  'delete.retention.ms': DAY_MS,
});

type Rule = { kind: 'int'; min: number; max: number } | { kind: 'enum'; values: readonly string[] };

const RULES: { readonly [K in keyof TopicConfig]: Rule } = {
  'segment.bytes': { kind: 'int', min: 1024, max: INT32_MAX },
  'segment.ms': { kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  'flush': { kind: 'enum', values: ['batch', 'interval', 'os'] },
  'flush.interval.ms': { kind: 'int', min: 1, max: TIMER_MS_MAX },
  'max.message.bytes': { kind: 'int', min: BATCH_OVERHEAD, max: INT32_MAX },
  'index.interval.bytes': { kind: 'int', min: 0, max: INT32_MAX },
  'retention.ms': { kind: 'int', min: -1, max: Number.MAX_SAFE_INTEGER },
  'retention.bytes': { kind: 'int', min: -1, max: Number.MAX_SAFE_INTEGER },
  'cleanup.policy': { kind: 'enum', values: ['delete', 'compact'] },
  'delete.retention.ms': { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER },
};

export const TOPIC_CONFIG_KEYS = Object.freeze(Object.keys(RULES) as (keyof TopicConfig)[]);

function isConfigKey(key: string): key is keyof TopicConfig {
  return Object.prototype.hasOwnProperty.call(RULES, key);
}

function invalid(detail: string): TributaryError {
  return new TributaryError(Errors.INVALID_CONFIG, detail);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : String(value);
}

/** Parses one value for `key`; `source` names where it came from for the error message. */
export function parseConfigValue(key: string, value: unknown, source = 'topic config'): number | FlushPolicy | CleanupPolicy {
  if (!isConfigKey(key)) {
    throw invalid(`unknown ${source} key '${key}' (known: ${TOPIC_CONFIG_KEYS.join(', ')})`);
  }
  const rule = RULES[key];
  if (rule.kind === 'enum') {
    if (typeof value === 'string' && rule.values.includes(value)) return value as FlushPolicy | CleanupPolicy;
    throw invalid(`${source} '${key}' = ${describe(value)}: must be one of ${rule.values.join(', ')}`);
  }
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^-?\d{1,16}$/.test(value)) n = Number(value);
  else throw invalid(`${source} '${key}' = ${describe(value)}: must be an integer`);
  if (!Number.isSafeInteger(n)) throw invalid(`${source} '${key}' = ${describe(value)}: must be an integer`);
  if (n < rule.min || n > rule.max) {
    throw invalid(`${source} '${key}' = ${describe(value)}: must be between ${rule.min} and ${rule.max}`);
  }
  return n;
}

/**
 * Resolves a topic's config: Kafka's model of broker defaults overridden per topic. Unknown
 * keys and bad values (in `raw` or in `defaults`) are a TributaryError(INVALID_CONFIG).
 */
export function parseTopicConfig(raw: Record<string, string | number> | undefined, defaults?: Partial<TopicConfig>): TopicConfig {
  const out: Record<string, number | string> = { ...DEFAULT_TOPIC_CONFIG };
  for (const [key, value] of Object.entries(defaults ?? {})) {
    if (value === undefined) continue;
    out[key] = parseConfigValue(key, value, 'default topic config');
  }
  for (const [key, value] of Object.entries(raw ?? {})) {
    out[key] = parseConfigValue(key, value);
  }
  return Object.freeze(out) as unknown as TopicConfig;
}

/** Normalises overrides (for persisting only what the user set, as Kafka does). */
export function normalizeOverrides(raw: Record<string, string | number> | undefined): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [key, value] of Object.entries(raw ?? {})) out[key] = parseConfigValue(key, value);
  return out;
}
