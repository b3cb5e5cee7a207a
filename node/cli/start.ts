// `tributary start`: run one node in the foreground until SIGTERM or SIGINT, then shut down
// cleanly (answer what is in progress, flush, write the clean-shutdown marker).

import type { Command } from 'commander';
import { applyConfig, defaultConfig, loadConfigFile, type NodeConfig } from '../config.js';
import { startBroker } from '../broker.js';
import { createLogger, type LogLevel } from '../logger.js';

interface StartFlags {
  data?: string;
  port?: string;
  host?: string;
  nodeId?: string;
  config?: string;
  logLevel?: string;
}

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description('run a node in the foreground (data in ./data, ws://127.0.0.1:7400/v1 by default)')
    .option('--data <dir>', 'data folder (default ./data, or TRIBUTARY_DATA)')
    .option('--port <n>', 'port for WebSocket and HTTP; 0 picks a free one (default 7400)')
    .option('--host <address>', 'address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)')
    .option('--node-id <id>', 'node id, fixed on first start (default: generated)')
    .option('--config <file>', 'YAML config file; flags override it')
    .option('--log-level <level>', 'debug | info | warn | error (default info)')
    .action(async (flags: StartFlags) => {
      const config = resolveConfig(flags);
      const level = (flags.logLevel ?? 'info') as LogLevel;
      if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new Error(`--log-level must be debug, info, warn or error, got '${level}'`);
      await runNode(config, level);
    });
}

export function resolveConfig(flags: StartFlags, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let config = defaultConfig();
  if (env.TRIBUTARY_DATA) config.dataDir = env.TRIBUTARY_DATA;
  if (flags.config) config = applyConfig(config, loadConfigFile(flags.config), flags.config);
  const overrides: Record<string, unknown> = {};
  if (flags.data !== undefined) overrides.dataDir = flags.data;
  if (flags.port !== undefined) overrides.port = flags.port;
  if (flags.host !== undefined) overrides.host = flags.host;
  if (flags.nodeId !== undefined) overrides.nodeId = flags.nodeId;
  return applyConfig(config, overrides, 'command line');
}

async function runNode(config: NodeConfig, level: LogLevel): Promise<void> {
  const logger = createLogger({ level });
  const broker = await startBroker({
    dataDir: config.dataDir,
    host: config.host,
    port: config.port,
    nodeId: config.nodeId,
    limits: config.limits,
    topicDefaults: config.topicDefaults,
    logger,
  });
  logger.warn('dev mode: connections are neither encrypted nor authenticated; listen on loopback only');
  process.stdout.write(`tributary node ${broker.nodeId} listening on ${broker.url} (data in ${config.dataDir})\n`);

  await new Promise<void>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        logger.warn({ signal }, 'second signal: exiting without a clean shutdown');
        process.exit(1);
      }
      signalled = true;
      logger.info({ signal }, 'shutting down');
      broker.close().then(resolve, (err: unknown) => {
        logger.error({ err: (err as Error)?.stack ?? String(err) }, 'shutdown failed');
        process.exitCode = 1;
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // Everything is flushed and closed; do not let a stray socket timer hold the process.
  setTimeout(() => process.exit(), 2000).unref();
}
