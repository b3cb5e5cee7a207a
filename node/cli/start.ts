// `tributary start`: run one node in the foreground until SIGTERM or SIGINT, then shut down
// cleanly (answer what is in progress, flush, write the clean-shutdown marker).

import type { Command } from 'commander';
import { readCredentialFile, readIdentityFile } from '../../devices/identity.js';
import { Errors, TributaryError } from '../../protocol/errors.js';
import { parsePublicKey } from '../../protocol/key-file.js';
import { isLoopbackAddress } from '../auth/authenticator.js';
import { applyConfig, defaultConfig, loadConfigFile, type NodeConfig } from '../config.js';
import { parseTopicConfig } from '../storage/config.js';
import { startBroker, type BrokerAuthOptions } from '../broker.js';
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
      await runNode(resolveConfig(flags));
    });
}

/** Settings the environment may give, by variable: between the config file and the flags. */
const ENV_SETTINGS: Record<string, string> = { TRIBUTARY_DATA: 'dataDir', TRIBUTARY_HOST: 'host', TRIBUTARY_PORT: 'port', TRIBUTARY_NODE_ID: 'nodeId' };

export function resolveConfig(flags: StartFlags, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let config = defaultConfig();
  if (flags.config) config = applyConfig(config, loadConfigFile(flags.config), flags.config);
  const fromEnv: Record<string, unknown> = {};
  for (const [variable, key] of Object.entries(ENV_SETTINGS)) if (env[variable]) fromEnv[key] = env[variable];
  if (env.TRIBUTARY_LOG_LEVEL) fromEnv.log = { level: env.TRIBUTARY_LOG_LEVEL };
  config = applyConfig(config, fromEnv, 'environment');
  // Topic defaults are checked now too, so every mistake of a config shows before the start.
  parseTopicConfig(config.topicDefaults);
  const overrides: Record<string, unknown> = {};
  if (flags.data !== undefined) overrides.dataDir = flags.data;
  if (flags.port !== undefined) overrides.port = flags.port;
  if (flags.host !== undefined) overrides.host = flags.host;
  if (flags.nodeId !== undefined) overrides.nodeId = flags.nodeId;
  if (flags.logLevel !== undefined) overrides.log = { level: flags.logLevel };
  const auth: Record<string, unknown> = {};
  const fleetKey = flags.fleetKey ?? env.TRIBUTARY_FLEET_KEY;
  if (fleetKey !== undefined && fleetKey !== '') auth.fleetPublicKey = fleetKey;
  if (flags.identity !== undefined) auth.identity = flags.identity;
  if (flags.credential !== undefined) auth.credential = flags.credential;
  if (flags.anonymous !== undefined) auth.anonymous = flags.anonymous;
  if (Object.keys(auth).length > 0) overrides.auth = auth;
  const resolved = applyConfig(config, overrides, 'command line');
  // Dev mode is for a node started bare; a config file or a fleet key means production.
  resolved.auth.anonymous ??= flags.config || resolved.auth.fleetPublicKey ? 'none' : 'loopback';
  if (resolved.auth.anonymous === 'none' && !resolved.auth.fleetPublicKey) {
    throw new TributaryError(
      Errors.INVALID_CONFIG,
      'anonymous clients are refused but no fleet key is set, so no client could connect: set auth.fleetPublicKey (or auth.anonymous: loopback for a development node)',
    );
  }
  return resolved;
}

/** Reads the key and credential files a config names; a problem is one clear line. */
export function authOptions(config: NodeConfig): BrokerAuthOptions {
  const { auth } = config;
  return {
    fleetPublicKey: auth.fleetPublicKey ? parsePublicKey(auth.fleetPublicKey, 'auth.fleetPublicKey') : undefined,
    identity: auth.identity ? readIdentityFile(auth.identity) : undefined,
    credential: auth.credential ? readCredentialFile(auth.credential) : undefined,
    anonymous: auth.anonymous,
  };
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

async function runNode(config: NodeConfig): Promise<void> {
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
    auth: authOptions(config),
    storage: config.storage,
    schedule: config.schedule,
  });
  announceAuth(logger, config, broker.publicKey, broker.fleetPublicKey, broker.anonymous);
  const mode = broker.anonymous === 'loopback' && !broker.fleetPublicKey ? 'dev mode: anonymous clients from loopback only' : 'credentials required';
  process.stdout.write(`tributary node ${broker.nodeId} listening on ${broker.url} (data in ${config.dataDir}; ${mode}; node key ${broker.publicKey.toString('hex')})\n`);

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
