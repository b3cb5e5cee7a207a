// Node configuration: defaults, an optional YAML file, then command-line flags, each
// overriding the one before. Every key is validated; a mistake is one clear line naming
// the key. (The full configuration surface, env vars and `config check` come with the
// operations issue; the shape here is the one it extends.)

import { readFileSync } from 'node:fs';
import { parseCidr } from './address-ranges.js';
import cron from 'node-cron';
import { createRequire } from 'node:module';
import { Errors, TributaryError } from '../protocol/errors.js';
import { DEFAULT_SCHEDULES, type Schedules } from './maintenance.js';
import type { GuardAction } from './storage/disk-guard.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './logger.js';

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
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    throw invalid(`${key} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function str(key: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw invalid(`${key} must be a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}

/**
 * Runs `apply` for every entry, collecting what is wrong instead of stopping at the first
 * mistake, so one run of `config check` names them all; throws one INVALID_CONFIG whose
 * detail has a line per mistake.
 */
function forEachSetting(entries: [string, unknown][], apply: (key: string, value: unknown) => void): void {
  const mistakes: string[] = [];
  for (const [key, value] of entries) {
    try {
      apply(key, value);
    } catch (err) {
      if (!(err instanceof TributaryError)) throw err;
      mistakes.push(...err.detail.split('\n'));
    }
  }
  if (mistakes.length > 0) throw invalid(mistakes.join('\n'));
}

/** Applies a partial, untrusted config object (from YAML or flags) onto `base`. */
export function applyConfig(base: NodeConfig, raw: unknown, source: string): NodeConfig {
  if (raw === null || raw === undefined) return base;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${source}: expected a map of settings`);
  const out: NodeConfig = { ...base, limits: { ...base.limits }, topicDefaults: { ...base.topicDefaults }, auth: { ...base.auth }, storage: { ...base.storage }, schedule: { ...base.schedule } };
  forEachSetting(Object.entries(raw as Record<string, unknown>), (key, value) => {
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
      case 'nodeId':
        out.nodeId = str(key, value);
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(out.nodeId)) throw invalid(`nodeId must be 1-64 of [A-Za-z0-9._-], got ${JSON.stringify(value)}`);
        break;
      case 'limits':
        out.limits = applyLimits(out.limits, value, source);
        break;
      case 'topicDefaults':
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(`${source}: topicDefaults must be a map`);
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          if (typeof v !== 'string' && typeof v !== 'number') throw invalid(`topicDefaults.${k} must be a string or number`);
          out.topicDefaults[k] = v;
        }
        break;
      case 'auth':
        out.auth = applyAuth(out.auth, value, source);
        break;
      case 'log':
        out.log = applyLog(out.log, value, source);
        break;
      case 'storage':
        out.storage = applyStorage(out.storage, value, source);
        break;
      case 'schedule':
        out.schedule = applySchedule(out.schedule, value, source);
        break;
      default:
        throw invalid(`${source}: unknown setting '${key}'`);
    }
  });
  return out;
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

function applyStorage(base: StorageConfig, raw: unknown, source: string): StorageConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${source}: storage must be a map`);
  const out = { ...base };
  forEachSetting(Object.entries(raw as Record<string, unknown>), (key, value) => {
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
        throw invalid(`${source}: unknown setting 'storage.${key}'`);
    }
  });
  return out;
}

function applySchedule(base: Schedules, raw: unknown, source: string): Schedules {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${source}: schedule must be a map`);
  const out = { ...base };
  forEachSetting(Object.entries(raw as Record<string, unknown>), (key, value) => {
    if (!Object.prototype.hasOwnProperty.call(DEFAULT_SCHEDULES, key)) {
      throw invalid(`${source}: unknown setting 'schedule.${key}' (known: ${Object.keys(DEFAULT_SCHEDULES).join(', ')})`);
    }
    if (typeof value !== 'string' || !cron.validate(value)) {
      throw invalid(`schedule.${key} must be a cron expression such as '0 */5 * * * *' (seconds first), got ${JSON.stringify(value)}`);
    }
    out[key as keyof Schedules] = value;
  });
  return out;
}

function applyAuth(base: AuthConfig, raw: unknown, source: string): AuthConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${source}: auth must be a map`);
  const out = { ...base };
  forEachSetting(Object.entries(raw as Record<string, unknown>), (key, value) => {
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
        throw invalid(`${source}: unknown setting 'auth.${key}'`);
    }
  });
  return out;
}

function applyLog(base: LogConfig, raw: unknown, source: string): LogConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${source}: log must be a map`);
  const out = { ...base };
  forEachSetting(Object.entries(raw as Record<string, unknown>), (key, value) => {
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
        throw invalid(`${source}: unknown setting 'log.${key}'`);
    }
  });
  return out;
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

function applyLimits(base: Limits, raw: unknown, source: string): Limits {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(`${source}: limits must be a map`);
  const out = { ...base };
  forEachSetting(Object.entries(raw as Record<string, unknown>), (key, value) => {
    if (key === 'exemptAddresses') {
      out.exemptAddresses = parseAddressRanges('limits.exemptAddresses', value);
      return;
    }
    const range = LIMIT_RANGES[key as NumericLimit];
    if (!range) throw invalid(`${source}: unknown setting 'limits.${key}'`);
    out[key as NumericLimit] = intIn(`limits.${key}`, value, range[0], range[1]);
  });
  return out;
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
  try {
    // Loaded here, not at start: a node without a config file does not carry the YAML
    // parser (about 3 MB of memory on a gateway).
    const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
    return parse(text);
  } catch (err) {
    throw invalid(`${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
}
