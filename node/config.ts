// Node configuration: defaults, an optional YAML file, environment variables, then
// command-line flags, each overriding the one before. Every key is validated; a mistake is
// one clear line that starts with the key, and every mistake is reported at once.

import { readFileSync } from 'node:fs';
import { parseCidr } from './address-ranges.js';
import cron from 'node-cron';
import { parseDecimalInteger } from '../protocol/decimal.js';
import { Errors, TributaryError } from '../protocol/errors.js';
import { DEFAULT_SCHEDULES, type Schedules } from './maintenance.js';
import { parseConfigValue, TOPIC_CONFIG_KEYS } from './storage/config.js';
import type { GuardAction } from './storage/disk-guard.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './logger.js';
import { parseYamlText } from '../protocol/yaml-text.js';

export interface Limits {
  /** Largest WebSocket message accepted; checked from the frame header, before buffering. */
  frameBytesMax: number;
  /** Requests a connection may have in progress; past it the node stops reading from it. */
  inflightMax: number;
  /** Bytes of request frames in progress on one connection; past it the node stops reading. */
  inflightBytesMax: number;
  /** Longest a request may take before it is answered REQUEST_TIMED_OUT. */
  requestTimeoutMs: number;
  /** Longest long-poll a Fetch may ask for. */
  fetchWaitMsMax: number;
  /** Largest Fetch response body. */
  fetchBytesMax: number;
  /** Bytes queued towards one client before the node stops serving it until it reads. */
  sendBufferBytesMax: number;
  /** Open client connections. */
  connectionsMax: number;
  /**
   * Time a new socket has to make its WebSocket upgrade, from its TCP accept; and then,
   * again, to finish the Noise handshake.
   */
  handshakeTimeoutMs: number;
  /**
   * Sockets before admission (TCP accept to Hello), node-wide; past it the oldest
   * unfinished one is evicted for the newcomer. 1024: a reconnect storm of 1,000 devices
   * (simulator/scenarios/reconnect-storm.yaml) may have every device before admission at
   * once; it saw 2,603 evictions at 128 and 839 at 256, none in three runs each at 512
   * and 1024. 1024 is also the default connectionsMax: a full reconnect of a node with
   * default limits fits.
   */
  handshakesMax: number;
  /** Time a connection has to say Hello once its handshake is done. */
  helloTimeoutMs: number;
  /** Partitions on this node, all topics together: each holds an open segment file. */
  partitionsMax: number;
  /**
   * Bytes queued towards all clients together. Past it, only connections whose own queue
   * is nearly empty are read from and answered; the rest wait for their clients to read.
   */
  sendBufferBytesTotalMax: number;
  /**
   * Bytes queued towards one principal's connections together. Past it, that principal's
   * connections are served as those of a node over sendBufferBytesTotalMax, and no one else's.
   */
  sendBufferBytesPerPrincipalMax: number;
  /** Admitted connections of one principal (one identity key); anonymous clients are not counted. */
  connectionsPerPrincipalMax: number;
  /** Bytes of request frames one principal's connections hold (being received, or in progress). */
  inflightBytesPerPrincipalMax: number;
  /** Bytes of request frames all connections hold together. */
  inflightBytesTotalMax: number;
  /** Sockets from one address not yet admitted (TCP accepted, Hello not yet answered). */
  handshakesPerAddressMax: number;
  /** New sockets per second from one address (a token bucket holding one second's worth). */
  handshakesPerAddressPerSecond: number;
  /**
   * Addresses (CIDR ranges or single addresses) exempt from the per-address limits: a
   * factory behind NAT. Loopback is always exempt. The handshake deadline and the
   * eviction of the oldest unfinished handshake apply to every address.
   */
  exemptAddresses: string[];
  /** Entries (partitions, topics, groups) one request may name. */
  requestEntriesMax: number;
  /** Bytes read from segment files, beyond what it returns, to answer one request. */
  requestScanBytesMax: number;
  /** Bytes inflated from compressed batches to serve one request (produce checks included). */
  requestDecompressBytesMax: number;
  /**
   * Bytes inflated for one principal's requests together, per second (a token bucket holding
   * one second's worth); anonymous clients are one principal.
   */
  decompressBytesPerPrincipalPerSecond: number;
  /** Groups with committed offsets, per principal. */
  offsetGroupsPerPrincipalMax: number;
  /** Committed offsets (group, topic, partition), per principal. */
  offsetPartitionsPerPrincipalMax: number;
  /** Bytes of commit metadata, per principal. */
  offsetMetadataBytesPerPrincipalMax: number;
  /** Groups with committed offsets, node-wide; also what is loaded at start. */
  offsetGroupsMax: number;
  /** Committed offsets, node-wide; also what is loaded at start. */
  offsetPartitionsMax: number;
  /** Bytes of commit metadata, node-wide; also what is loaded at start. */
  offsetMetadataBytesMax: number;
  /**
   * Committed offsets of a group with no live member are deleted this long after its newest
   * commit (Kafka's offsets.retention.minutes); -1 keeps them.
   */
  offsetsRetentionMs: number;
  /** Live consumer group members created by one principal. */
  groupMembersPerPrincipalMax: number;
  /** Live consumer group members, node-wide. */
  groupMembersMax: number;
}

/** The limits that are numbers (every one but exemptAddresses). */
export type NumericLimit = Exclude<keyof Limits, 'exemptAddresses'>;

export interface NodeConfig {
  dataDir: string;
  host: string;
  port: number;
  /** Persisted in the data folder on first start when not given. */
  nodeId?: string;
  limits: Limits;
  /** Defaults for new topics, by Kafka's config names (segment.bytes, flush, ...). */
  topicDefaults: Record<string, string | number>;
  auth: AuthConfig;
  log: LogConfig;
  storage: StorageConfig;
  /** node-cron schedules (six fields, with seconds) of the background jobs. */
  schedule: Schedules;
}

export interface StorageConfig {
  /** Bytes of segment files this node may hold, all partitions together; 0: no limit. */
  maxBytes: number;
  /** Free bytes the data folder's file system must keep; 0: not checked. */
  minFreeBytes: number;
  /** Past a limit: refuse produce (STORAGE_FULL, retriable) or drop the oldest segments. */
  guard: GuardAction;
  /** Lets the guard drop segments an uplink has not forwarded yet. */
  dropUnsent: boolean;
}

export const DEFAULT_STORAGE: StorageConfig = Object.freeze({
  maxBytes: 0,
  // Room for the node's own writes (indexes, snapshots, the clean-shutdown marker) and
  // the OS's: a full root file system takes the whole gateway down, not only the broker.
  minFreeBytes: 64 * 1024 * 1024,
  // Nothing is lost by default: devices back off and keep their data.
  guard: 'refuse' as GuardAction,
  dropUnsent: false,
});

export interface LogConfig {
  /** Least severe level written. */
  level: LogLevel;
  /** json, pretty, or auto: pretty only when stderr is a terminal. */
  format: LogFormat;
}

export interface AuthConfig {
  /** The fleet public key, 64 hex characters (what `tributary fleet init` printed). */
  fleetPublicKey?: string;
  /** The node's identity key file; default <dataDir>/node.key, made on the first start. */
  identity?: string;
  /** The node's credential file (role node), for clients that pin the fleet key. */
  credential?: string;
  /**
   * loopback: clients without a credential are admitted from loopback only (dev mode);
   * none: never. When unset: loopback for a node started with neither a config file nor a
   * fleet key, none otherwise.
   */
  anonymous?: 'loopback' | 'none';
}

export const DEFAULT_LIMITS: Limits = {
  frameBytesMax: 16 * 1024 * 1024,
  inflightMax: 32,
  inflightBytesMax: 64 * 1024 * 1024,
  requestTimeoutMs: 30_000,
  fetchWaitMsMax: 30_000,
  fetchBytesMax: 16 * 1024 * 1024,
  sendBufferBytesMax: 8 * 1024 * 1024,
  connectionsMax: 1024,
  handshakeTimeoutMs: 5000,
  handshakesMax: 1024,
  helloTimeoutMs: 5000,
  partitionsMax: 4096,
  sendBufferBytesTotalMax: 128 * 1024 * 1024,
  sendBufferBytesPerPrincipalMax: 16 * 1024 * 1024,
  connectionsPerPrincipalMax: 16,
  inflightBytesPerPrincipalMax: 64 * 1024 * 1024,
  inflightBytesTotalMax: 256 * 1024 * 1024,
  handshakesPerAddressMax: 32,
  handshakesPerAddressPerSecond: 50,
  exemptAddresses: [],
  requestEntriesMax: 10_000,
  requestScanBytesMax: 16 * 1024 * 1024,
  requestDecompressBytesMax: 64 * 1024 * 1024,
  decompressBytesPerPrincipalPerSecond: 64 * 1024 * 1024,
  offsetGroupsPerPrincipalMax: 100,
  offsetPartitionsPerPrincipalMax: 10_000,
  offsetMetadataBytesPerPrincipalMax: 1024 * 1024,
  offsetGroupsMax: 10_000,
  offsetPartitionsMax: 100_000,
  offsetMetadataBytesMax: 16 * 1024 * 1024,
  offsetsRetentionMs: 7 * 24 * 3600 * 1000,
  groupMembersPerPrincipalMax: 256,
  groupMembersMax: 10_000,
};

export function defaultConfig(): NodeConfig {
  return { dataDir: './data', host: '127.0.0.1', port: 7400, limits: { ...DEFAULT_LIMITS, exemptAddresses: [...DEFAULT_LIMITS.exemptAddresses] }, topicDefaults: {}, auth: {}, log: { level: 'info', format: 'auto' }, storage: { ...DEFAULT_STORAGE }, schedule: { ...DEFAULT_SCHEDULES } };
}

function invalid(detail: string): TributaryError {
  return new TributaryError(Errors.INVALID_CONFIG, detail);
}

function intIn(key: string, value: unknown, min: number, max: number): number {
  // A string comes from a flag, an environment variable or a quoted YAML value: decimal
  // digits only, so that 0x10 or 1e4 is not read as a port nobody typed.
  const n = typeof value === 'string' ? parseDecimalInteger(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    const digits = typeof value === 'string' ? ' written in decimal digits' : '';
    throw invalid(`${key} must be an integer from ${min} to ${max}${digits}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function str(key: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw invalid(`${key} must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * The mistakes of a configuration, collected instead of stopping at the first, so that one
 * run of `config check` (or a refused start) names them all. Each is one line that starts
 * with the key it concerns, as the operator wrote it: a key path of the file, or the flag
 * or environment variable that set it.
 */
export class ConfigMistakes {
  private readonly found: { key: string; line: string }[] = [];

  /**
   * Runs `check` for the setting `key`: an INVALID_CONFIG it throws is recorded, a line per
   * line of its detail, and undefined returned. `label` replaces `key` where a line starts
   * with it (`--port` for `port`).
   */
  check<T>(key: string, check: () => T, label?: string): T | undefined {
    try {
      return check();
    } catch (err) {
      if (!(err instanceof TributaryError) || !err.is(Errors.INVALID_CONFIG)) throw err;
      for (const line of err.detail.split('\n')) {
        this.found.push({ key, line: label !== undefined && line.startsWith(key) ? label + line.slice(key.length) : line });
      }
      return undefined;
    }
  }

  /** Whether `key`, or a key under it, was wrong: a check that depends on it would only repeat the mistake. */
  concerns(key: string): boolean {
    return this.found.some((m) => m.key === key || m.key.startsWith(`${key}.`));
  }

  /** One INVALID_CONFIG with a line per mistake, if there was any. */
  throwIfAny(): void {
    if (this.found.length > 0) throw invalid(this.found.map((m) => m.line).join('\n'));
  }
}

/** Where settings come from, and how to name them in a mistake. */
interface ApplyContext {
  mistakes: ConfigMistakes;
  /** Key paths as the operator wrote them, when not as such (`port` given as `--port`). */
  labels: Record<string, string>;
}

/**
 * Runs `apply` for every entry of the map `raw` (the settings under `prefix`), recording a
 * mistake per entry instead of stopping at the first.
 */
function forEachSetting(ctx: ApplyContext, prefix: string, raw: unknown, apply: (key: string, value: unknown, path: string) => void): void {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    ctx.mistakes.check(prefix, () => {
      throw invalid(`${prefix} must be a map of settings, got ${JSON.stringify(raw)}`);
    });
    return;
  }
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;
    ctx.mistakes.check(path, () => apply(key, value, path), ctx.labels[path]);
  }
}

/** An unknown key, with the keys that are valid where it stands and the likeliest meant. */
function unknownKey(prefix: string, key: string, valid: readonly string[]): TributaryError {
  const path = prefix === '' ? key : `${prefix}.${key}`;
  const meant = closestKey(key, valid);
  const hint = meant === undefined ? '' : ` (did you mean ${meant}?)`;
  return invalid(`${path}: unknown key${hint}; valid keys${prefix === '' ? '' : ` under ${prefix}`}: ${valid.join(', ')}`);
}

/** The valid key a typo most likely meant: the same but for case, or at most two edits away. */
function closestKey(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of valid) {
    const distance = candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length];
}

const TOP_LEVEL_KEYS = ['dataDir', 'host', 'port', 'nodeId', 'limits', 'topicDefaults', 'auth', 'log', 'storage', 'schedule'] as const;

/**
 * Applies a partial, untrusted config object (from YAML, the environment or flags) onto
 * `base`. With `mistakes`, what is wrong is recorded there and the rest applied; without,
 * every mistake is thrown at once as one INVALID_CONFIG.
 */
export function applyConfig(base: NodeConfig, raw: unknown, source: string, options: { mistakes?: ConfigMistakes; labels?: Record<string, string> } = {}): NodeConfig {
  if (raw === null || raw === undefined) return base;
  const ctx: ApplyContext = { mistakes: options.mistakes ?? new ConfigMistakes(), labels: options.labels ?? {} };
  const out: NodeConfig = { ...base, limits: { ...base.limits }, topicDefaults: { ...base.topicDefaults }, auth: { ...base.auth }, storage: { ...base.storage }, schedule: { ...base.schedule } };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    ctx.mistakes.check('', () => {
      throw invalid(`${source}: expected a map of settings`);
    });
  } else {
    applyTopLevel(ctx, out, raw);
  }
  if (options.mistakes === undefined) ctx.mistakes.throwIfAny();
  return out;
}

function applyTopLevel(ctx: ApplyContext, out: NodeConfig, raw: object): void {
  forEachSetting(ctx, '', raw, (key, value) => {
    switch (key) {
      case 'dataDir':
        out.dataDir = str(key, value);
        break;
      case 'host':
        out.host = str(key, value);
        break;
      case 'port':
        out.port = intIn(key, value, 0, 65535);
        break;
      case 'nodeId': {
        const nodeId = str(key, value);
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(nodeId)) throw invalid(`nodeId must be 1-64 of [A-Za-z0-9._-], got ${JSON.stringify(value)}`);
        out.nodeId = nodeId;
        break;
      }
      case 'limits':
        applyLimits(ctx, out.limits, value);
        break;
      case 'topicDefaults':
        applyTopicDefaults(ctx, out.topicDefaults, value);
        break;
      case 'auth':
        applyAuth(ctx, out.auth, value);
        break;
      case 'log':
        applyLog(ctx, out.log, value);
        break;
      case 'storage':
        applyStorage(ctx, out.storage, value);
        break;
      case 'schedule':
        applySchedule(ctx, out.schedule, value);
        break;
      default:
        throw unknownKey('', key, TOP_LEVEL_KEYS);
    }
  });
}

/** Checked here, key by key, so a mistake names its key path like every other setting. */
function applyTopicDefaults(ctx: ApplyContext, out: Record<string, string | number>, raw: unknown): void {
  forEachSetting(ctx, 'topicDefaults', raw, (key, value, path) => {
    if (!(TOPIC_CONFIG_KEYS as readonly string[]).includes(key)) throw unknownKey('topicDefaults', key, TOPIC_CONFIG_KEYS);
    if (typeof value !== 'string' && typeof value !== 'number') throw invalid(`${path} must be a string or number, got ${JSON.stringify(value)}`);
    try {
      parseConfigValue(key, value, 'topicDefaults');
    } catch (err) {
      // Its detail reads "topicDefaults 'flush' = 'x': must be ...": lead with the key path.
      if (err instanceof TributaryError) throw invalid(err.detail.replace(`topicDefaults '${key}'`, path));
      throw err;
    }
    out[key] = value;
  });
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };

/** A byte count: an integer, or a number with a unit (512MiB, 2GB, 1.5GiB). */
export function parseBytes(key: string, value: unknown): number {
  let n: number | undefined;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = match ? BYTE_UNITS[match[2].toLowerCase()] : undefined;
    if (match && unit !== undefined) n = Math.floor(Number(match[1]) * unit);
  }
  if (n === undefined || !Number.isSafeInteger(n) || n < 0) {
    throw invalid(`${key} must be a byte count such as 1073741824, 512MiB or 2GB, got ${JSON.stringify(value)}`);
  }
  return n;
}

function applyStorage(ctx: ApplyContext, out: StorageConfig, raw: unknown): void {
  forEachSetting(ctx, 'storage', raw, (key, value) => {
    switch (key) {
      case 'maxBytes':
      case 'minFreeBytes':
        out[key] = parseBytes(`storage.${key}`, value);
        break;
      case 'guard':
        if (value !== 'refuse' && value !== 'drop') throw invalid(`storage.guard must be refuse or drop, got ${JSON.stringify(value)}`);
        out.guard = value;
        break;
      case 'dropUnsent':
        if (typeof value !== 'boolean') throw invalid(`storage.dropUnsent must be true or false, got ${JSON.stringify(value)}`);
        out.dropUnsent = value;
        break;
      default:
        throw unknownKey('storage', key, Object.keys(DEFAULT_STORAGE));
    }
  });
}

function applySchedule(ctx: ApplyContext, out: Schedules, raw: unknown): void {
  forEachSetting(ctx, 'schedule', raw, (key, value) => {
    if (!Object.prototype.hasOwnProperty.call(DEFAULT_SCHEDULES, key)) throw unknownKey('schedule', key, Object.keys(DEFAULT_SCHEDULES));
    if (typeof value !== 'string' || !cron.validate(value)) {
      throw invalid(`schedule.${key} must be a cron expression such as '0 */5 * * * *' (seconds first), got ${JSON.stringify(value)}`);
    }
    out[key as keyof Schedules] = value;
  });
}

const AUTH_KEYS = ['fleetPublicKey', 'identity', 'credential', 'anonymous'] as const;

function applyAuth(ctx: ApplyContext, out: AuthConfig, raw: unknown): void {
  forEachSetting(ctx, 'auth', raw, (key, value) => {
    switch (key) {
      case 'fleetPublicKey':
        if (typeof value !== 'string' || !/^[0-9a-fA-F]{64}$/.test(value.trim())) throw invalid(`auth.fleetPublicKey must be 64 hex characters, got ${JSON.stringify(value)}`);
        out.fleetPublicKey = value.trim().toLowerCase();
        break;
      case 'identity':
      case 'credential':
        out[key] = str(`auth.${key}`, value);
        break;
      case 'anonymous':
        if (value !== 'loopback' && value !== 'none') throw invalid(`auth.anonymous must be loopback or none, got ${JSON.stringify(value)}`);
        out.anonymous = value;
        break;
      default:
        throw unknownKey('auth', key, AUTH_KEYS);
    }
  });
}

function applyLog(ctx: ApplyContext, out: LogConfig, raw: unknown): void {
  forEachSetting(ctx, 'log', raw, (key, value) => {
    switch (key) {
      case 'level':
        if (!LOG_LEVELS.includes(value as LogLevel)) throw invalid(`log.level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`);
        out.level = value as LogLevel;
        break;
      case 'format':
        if (!LOG_FORMATS.includes(value as LogFormat)) throw invalid(`log.format must be json, pretty or auto, got ${JSON.stringify(value)}`);
        out.format = value as LogFormat;
        break;
      default:
        throw unknownKey('log', key, ['level', 'format']);
    }
  });
}

const LIMIT_RANGES: Record<NumericLimit, [number, number]> = {
  frameBytesMax: [1024, 256 * 1024 * 1024],
  inflightMax: [1, 1024],
  inflightBytesMax: [1024 * 1024, 4 * 1024 * 1024 * 1024],
  requestTimeoutMs: [100, 600_000],
  fetchWaitMsMax: [0, 600_000],
  fetchBytesMax: [1024, 256 * 1024 * 1024],
  sendBufferBytesMax: [64 * 1024, 1024 * 1024 * 1024],
  connectionsMax: [1, 1_000_000],
  handshakeTimeoutMs: [100, 60_000],
  handshakesMax: [1, 100_000],
  helloTimeoutMs: [100, 600_000],
  partitionsMax: [1, 1_000_000],
  sendBufferBytesTotalMax: [1024 * 1024, 16 * 1024 * 1024 * 1024],
  sendBufferBytesPerPrincipalMax: [64 * 1024, 16 * 1024 * 1024 * 1024],
  connectionsPerPrincipalMax: [1, 1_000_000],
  inflightBytesPerPrincipalMax: [1024 * 1024, 16 * 1024 * 1024 * 1024],
  inflightBytesTotalMax: [1024 * 1024, 64 * 1024 * 1024 * 1024],
  handshakesPerAddressMax: [1, 100_000],
  handshakesPerAddressPerSecond: [1, 100_000],
  requestEntriesMax: [1, 1_000_000],
  requestScanBytesMax: [64 * 1024, 4 * 1024 * 1024 * 1024],
  requestDecompressBytesMax: [1024 * 1024, 4 * 1024 * 1024 * 1024],
  decompressBytesPerPrincipalPerSecond: [1024 * 1024, 4 * 1024 * 1024 * 1024],
  offsetGroupsPerPrincipalMax: [1, 10_000_000],
  offsetPartitionsPerPrincipalMax: [1, 100_000_000],
  offsetMetadataBytesPerPrincipalMax: [0, 16 * 1024 * 1024 * 1024],
  offsetGroupsMax: [1, 10_000_000],
  offsetPartitionsMax: [1, 100_000_000],
  offsetMetadataBytesMax: [0, 16 * 1024 * 1024 * 1024],
  offsetsRetentionMs: [-1, 10 * 365 * 24 * 3600 * 1000],
  groupMembersPerPrincipalMax: [1, 10_000_000],
  groupMembersMax: [1, 10_000_000],
};

function applyLimits(ctx: ApplyContext, out: Limits, raw: unknown): void {
  forEachSetting(ctx, 'limits', raw, (key, value) => {
    if (key === 'exemptAddresses') {
      out.exemptAddresses = parseAddressRanges('limits.exemptAddresses', value);
      return;
    }
    const range = Object.prototype.hasOwnProperty.call(LIMIT_RANGES, key) ? LIMIT_RANGES[key as NumericLimit] : undefined;
    if (!range) throw unknownKey('limits', key, Object.keys(DEFAULT_LIMITS));
    out[key as NumericLimit] = intIn(`limits.${key}`, value, range[0], range[1]);
  });
}

/** A list of addresses or CIDR ranges (`10.0.0.0/8`, `192.168.1.7`, `fd00::/8`), each checked. */
export function parseAddressRanges(key: string, value: unknown): string[] {
  if (!Array.isArray(value)) throw invalid(`${key} must be a list of addresses or CIDR ranges such as 10.0.0.0/8`);
  const mistakes: string[] = [];
  for (const [i, entry] of value.entries()) {
    if (typeof entry !== 'string' || parseCidr(entry) === null) mistakes.push(`${key}[${i}] must be an address or CIDR range such as 10.0.0.0/8 or fd00::/8, got ${JSON.stringify(entry)}`);
  }
  if (mistakes.length > 0) throw invalid(mistakes.join('\n'));
  return (value as string[]).map((s) => s.trim());
}

export function loadConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw invalid(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseYamlText(text, path);
}
