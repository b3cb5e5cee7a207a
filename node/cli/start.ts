// `tributary start`: run one node in the foreground until SIGTERM or SIGINT, then shut down
// cleanly (answer what is in progress, flush, write the clean-shutdown marker).

import { existsSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { readCredentialFile, readIdentityFile } from '../../protocol/identity-files.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { parsePublicKey, type IdentityKeyPair } from '../../protocol/key-file.js';
import { isLoopbackAddress } from '../auth/authenticator.js';
import { applyConfig, ConfigMistakes, defaultConfig, loadConfigFile, type NodeConfig } from '../config.js';
import { NODE_KEY_FILE } from '../node-meta.js';
import { checkNodeCredential, startBroker, type Broker, type BrokerAuthOptions } from '../broker.js';
import { WS_PATH } from '../server/listener.js';
import { createLogger, prettyFor, type Logger } from '../logger.js';

interface StartFlags {
  data?: string;
  port?: string;
  host?: string;
  nodeId?: string;
  config?: string;
  logLevel?: string;
  fleetKey?: string;
  identity?: string;
  credential?: string;
  anonymous?: string;
}

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('run a node in the foreground (data in ./data, ws://127.0.0.1:7400/v1 by default)')
    .option('--data <dir>', 'data folder (default ./data, or TRIBUTARY_DATA)')
    .option('--port <n>', 'port for WebSocket and HTTP; 0 picks a free one (default 7400)')
    .option('--host <address>', 'address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)')
    .option('--node-id <id>', 'node id, fixed on first start (default: generated)')
    .option('--config <file>', 'YAML config file; flags override it. With one, clients need a credential unless auth.anonymous says otherwise')
    .option('--fleet-key <hex>', 'fleet public key: admit holders of its credentials (env TRIBUTARY_FLEET_KEY)')
    .option('--identity <file>', "the node's key file (default <data>/node.key, made on first start)")
    .option('--credential <file>', "the node's credential (role node), for clients that pin the fleet key")
    .option('--anonymous <policy>', 'clients without a credential: loopback (dev mode) or none')
    .option('--log-level <level>', 'trace | debug | info | warn | error | fatal | silent (default info, or TRIBUTARY_LOG_LEVEL)')
    .action(async (flags: StartFlags) => {
      const { config, auth } = prepareStart(flags);
      await runNode(config, auth);
    });
}

/** Settings the environment may give, by variable: between the config file and the flags. */
const ENV_SETTINGS: Record<string, string> = {
  TRIBUTARY_DATA: 'dataDir',
  TRIBUTARY_HOST: 'host',
  TRIBUTARY_PORT: 'port',
  TRIBUTARY_NODE_ID: 'nodeId',
  TRIBUTARY_LOG_LEVEL: 'log.level',
  TRIBUTARY_FLEET_KEY: 'auth.fleetPublicKey',
};

/** Settings the flags give, by flag. */
const FLAG_SETTINGS: Record<string, [keyof StartFlags, string]> = {
  '--data': ['data', 'dataDir'],
  '--port': ['port', 'port'],
  '--host': ['host', 'host'],
  '--node-id': ['nodeId', 'nodeId'],
  '--log-level': ['logLevel', 'log.level'],
  '--fleet-key': ['fleetKey', 'auth.fleetPublicKey'],
  '--identity': ['identity', 'auth.identity'],
  '--credential': ['credential', 'auth.credential'],
  '--anonymous': ['anonymous', 'auth.anonymous'],
};

/** `{ 'auth.identity': v }` as the nested map a config file would hold. */
function nest(settings: Record<string, string>): Record<string, unknown> {
  const out: Record<string, Record<string, unknown> | string> = {};
  for (const [path, value] of Object.entries(settings)) {
    const [head, tail] = path.split('.', 2);
    if (tail === undefined) out[head] = value;
    else out[head] = { ...(out[head] as Record<string, unknown> | undefined), [tail]: value };
  }
  return out;
}

/** The settings of a start: the file, then the environment, then the flags; mistakes go to `mistakes`. */
function resolveSettings(flags: StartFlags, env: NodeJS.ProcessEnv, mistakes: ConfigMistakes): NodeConfig {
  let config = defaultConfig();
  if (flags.config) {
    const file = flags.config;
    const raw = mistakes.check('', () => loadConfigFile(file));
    config = applyConfig(config, raw, file, { mistakes });
  }
  const fromEnv: Record<string, string> = {};
  const envLabels: Record<string, string> = {};
  for (const [variable, path] of Object.entries(ENV_SETTINGS)) {
    // An empty variable is an unset one, as a shell's `VAR= command` means.
    if (env[variable] === undefined || env[variable] === '') continue;
    fromEnv[path] = env[variable] as string;
    envLabels[path] = variable;
  }
  config = applyConfig(config, nest(fromEnv), 'environment', { mistakes, labels: envLabels });
  const fromFlags: Record<string, string> = {};
  const flagLabels: Record<string, string> = {};
  for (const [flag, [name, path]] of Object.entries(FLAG_SETTINGS)) {
    if (flags[name] === undefined) continue;
    fromFlags[path] = flags[name] as string;
    flagLabels[path] = flag;
  }
  const resolved = applyConfig(config, nest(fromFlags), 'command line', { mistakes, labels: flagLabels });
  // Dev mode is for a node started bare; a config file or a fleet key means production.
  resolved.auth.anonymous ??= flags.config || resolved.auth.fleetPublicKey ? 'none' : 'loopback';
  // Not when the file, the fleet key or the policy could not be read: it would only echo that mistake.
  const undecided = ['', 'auth', 'auth.fleetPublicKey', 'auth.anonymous'].some((key) => mistakes.concerns(key));
  if (resolved.auth.anonymous === 'none' && !resolved.auth.fleetPublicKey && !undecided) {
    mistakes.check('auth.fleetPublicKey', () => {
      throw new TributaryError(
        Errors.INVALID_CONFIG,
        'auth.fleetPublicKey: anonymous clients are refused but no fleet key is set, so no client could connect: set auth.fleetPublicKey (or auth.anonymous: loopback for a development node)',
      );
    });
  }
  return resolved;
}

/** The settings of a start (file, environment, flags), every mistake thrown at once. */
export function resolveConfig(flags: StartFlags, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const mistakes = new ConfigMistakes();
  const config = resolveSettings(flags, env, mistakes);
  mistakes.throwIfAny();
  return config;
}

/**
 * Everything a start checks before it binds its port or touches the data folder: the
 * settings, then the key and credential files they name (and the node key already in the
 * data folder). `tributary config check` runs exactly this, so that a config it passes is
 * one the node starts with. Every mistake is thrown at once.
 */
export function prepareStart(flags: StartFlags, env: NodeJS.ProcessEnv = process.env): { config: NodeConfig; auth: BrokerAuthOptions } {
  const mistakes = new ConfigMistakes();
  const config = resolveSettings(flags, env, mistakes);
  const auth = authOptions(config, mistakes);
  mistakes.throwIfAny();
  return { config, auth };
}

/** Prefixes each line of an INVALID_CONFIG with the key it is about. */
function about<T>(key: string, read: () => T): () => T {
  return () => {
    try {
      return read();
    } catch (err) {
      if (err instanceof TributaryError && err.is(Errors.INVALID_CONFIG)) {
        const lines = err.detail.split('\n').map((line) => `${key}: ${line.replace(/: ENOENT$/, ': no such file').replace(/: EACCES$/, ': permission denied')}`);
        throw new TributaryError(Errors.INVALID_CONFIG, lines.join('\n'));
      }
      throw err;
    }
  };
}

/** Reads the key and credential files a config names, recording what is wrong with them. */
function authOptions(config: NodeConfig, mistakes: ConfigMistakes): BrokerAuthOptions {
  const { auth } = config;
  const fleetPublicKey = auth.fleetPublicKey ? mistakes.check('auth.fleetPublicKey', () => parsePublicKey(auth.fleetPublicKey as string, 'auth.fleetPublicKey')) : undefined;
  // The node's key: the file auth.identity names, or the one a start loads from (or makes
  // in) the data folder; a key others can read is refused either way.
  let nodeKey: Buffer | { madeAt: string } | undefined;
  let identity: IdentityKeyPair | undefined;
  if (auth.identity) {
    identity = mistakes.check('auth.identity', about('auth.identity', () => readIdentityFile(auth.identity as string)));
    nodeKey = identity?.publicKey;
  } else if (!mistakes.concerns('dataDir')) {
    const path = join(config.dataDir, NODE_KEY_FILE);
    if (existsSync(path)) {
      identity = mistakes.check('auth.identity', about('auth.identity', () => readIdentityFile(path)));
      nodeKey = identity?.publicKey;
    } else {
      nodeKey = { madeAt: path };
    }
  }
  let credential: Buffer | undefined;
  if (auth.credential) {
    credential = mistakes.check('auth.credential', about('auth.credential', () => readCredentialFile(auth.credential as string)));
    if (credential !== undefined && !mistakes.concerns('auth.fleetPublicKey')) {
      const checked = credential;
      mistakes.check('auth.credential', () => checkNodeCredential(checked, nodeKey, fleetPublicKey));
    }
  }
  return { fleetPublicKey, identity, credential, anonymous: auth.anonymous };
}

/** Says at start who the node admits, so a dev-mode node is never mistaken for a secured one. */
function announceAuth(logger: Logger, config: NodeConfig, publicKey: Buffer, fleetPublicKey: Buffer | undefined, anonymous: string): void {
  logger.info({ nodePublicKey: publicKey.toString('hex') }, 'node identity (clients pin it with --node-key)');
  if (fleetPublicKey) logger.info({ fleetPublicKey: fleetPublicKey.toString('hex') }, 'admitting holders of this fleet\'s credentials');
  if (anonymous === 'loopback') {
    logger.warn(
      { anonymous },
      fleetPublicKey
        ? 'anonymous clients are admitted from loopback with full rights'
        : 'dev mode: no fleet key, so connections are encrypted but clients are not authenticated; anonymous clients are admitted from loopback only, with full rights',
    );
    if (!isLoopbackAddress(config.host) && config.host !== 'localhost') logger.warn({ host: config.host }, 'listening beyond loopback: remote clients need a credential, which this node cannot check without a fleet key');
  } else {
    logger.info('anonymous clients are refused');
  }
}

function wsUrl(address: string, port: number): string {
  return `ws://${address.includes(':') ? `[${address}]` : address}:${port}${WS_PATH}`;
}

/**
 * For a node on every interface, the URLs clients use: the start line shows the address
 * as bound (0.0.0.0 is no address to connect to from elsewhere), then these.
 */
function reachableAt(broker: Broker): string[] {
  const everyV4 = broker.address === '0.0.0.0';
  if (!everyV4 && broker.address !== '::') return [];
  const addresses: string[] = [];
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) {
      if (entry.internal || (everyV4 && entry.family !== 'IPv4') || entry.address.startsWith('fe80:')) continue;
      addresses.push(entry.address);
    }
  }
  const shown = addresses.slice(0, REACHABLE_SHOWN_MAX).map((a) => wsUrl(a, broker.port));
  if (addresses.length > REACHABLE_SHOWN_MAX) shown.push('...');
  return [`every ${everyV4 ? 'IPv4 ' : ''}interface: ${[broker.url, ...shown].join(', ')}`];
}

/** Interface addresses named on the start line; a router may have dozens. */
const REACHABLE_SHOWN_MAX = 4;

async function runNode(config: NodeConfig, auth: BrokerAuthOptions): Promise<void> {
  const logger = createLogger({ level: config.log.level, pretty: prettyFor(config.log.format) });
  // Signal handlers come first: whoever starts the node may stop it the moment it says it
  // is listening (a service manager, a test), and a SIGTERM that finds no handler kills the
  // process outright, without the clean shutdown. One during startup waits for it to end.
  let requested: NodeJS.Signals | null = null;
  let onSignal: (signal: NodeJS.Signals) => void = (signal) => {
    requested ??= signal;
  };
  process.on('SIGTERM', (signal) => onSignal(signal));
  process.on('SIGINT', (signal) => onSignal(signal));
  const broker = await startBroker({
    dataDir: config.dataDir,
    host: config.host,
    port: config.port,
    nodeId: config.nodeId,
    limits: config.limits,
    topicDefaults: config.topicDefaults,
    logger,
    auth,
    storage: config.storage,
    schedule: config.schedule,
  });
  announceAuth(logger, config, broker.publicKey, broker.fleetPublicKey, broker.anonymous);
  const mode = broker.anonymous === 'loopback' && !broker.fleetPublicKey ? 'dev mode: anonymous clients from loopback only' : 'credentials required';
  const where = [...reachableAt(broker), `data in ${config.dataDir}`, mode, `node key ${broker.publicKey.toString('hex')}`];
  process.stdout.write(`tributary node ${broker.nodeId} listening on ${wsUrl(broker.address, broker.port)} (${where.join('; ')})\n`);

  await new Promise<void>((resolve) => {
    let signalled = false;
    onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ signal }, 'second signal: exiting without a clean shutdown');
        process.exit(1);
      }
      signalled = true;
      logger.info({ signal }, 'shutting down');
      broker.close().then(resolve, (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exitCode = 1;
        resolve();
      });
    };
    if (requested !== null) onSignal(requested);
  });
  // Everything is flushed and closed; do not let a stray socket timer hold the process.
  setTimeout(() => process.exit(), 2000).unref();
}
