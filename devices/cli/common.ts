// What every command that talks to a node shares: the --broker and auth flags, one way to
// connect, and one way to fail (a line `tributary: <message>` on stderr and exit code 1).

import type { Command } from 'commander';
import { TributaryError } from '../../protocol/errors.js';
import { AUTH_ENV, resolveAuthOptions, type AuthOptionNames } from '../auth-options.js';
import { Client, webSocketTransportFactory } from '../client.js';
import { reasonOf } from '../errors.js';

export const DEFAULT_BROKER = 'ws://127.0.0.1:7400/v1';
/** The command line fails fast when no node answers, instead of the SDK's 10 s. */
const CLI_CONNECT_TIMEOUT_MS = 3000;

/** The flags of withNode(); the auth ones are absent when not given. */
export interface NodeOptions {
  broker: string;
  identity?: string;
  credential?: string;
  nodeKey?: string;
  fleetKey?: string;
}

const FLAG_NAMES: AuthOptionNames = { identityFile: '--identity', credentialFile: '--credential', nodePublicKey: '--node-key', fleetPublicKey: '--fleet-key' };

/**
 * Adds --broker and the auth flags. The auth flags take no commander default: the
 * environment is read when connecting (auth-options.ts), so an error can name the variable.
 */
export function withNode(command: Command): Command {
  return command
    .option(
      '--broker <urls>',
      'node to talk to, or several separated by commas: when the one in use is gone, the next is tried (env TRIBUTARY_BROKER)',
      process.env.TRIBUTARY_BROKER || DEFAULT_BROKER,
    )
    .option('--identity <file>', `this client's identity key file; without one the client is anonymous (env ${AUTH_ENV.identityFile})`)
    .option('--credential <file>', `the identity's fleet credential file (env ${AUTH_ENV.credentialFile})`)
    .option('--node-key <hex>', `accept only the node with this public key (env ${AUTH_ENV.nodePublicKey})`)
    .option('--fleet-key <hex>', `accept any node with a node credential of this fleet (env ${AUTH_ENV.fleetPublicKey})`);
}

/** How a command that waits for the node longer than the others connects. */
export interface ConnectOptions {
  /** How long the first connect keeps trying; default 3 s. */
  connectTimeoutMs?: number;
  /** Every failed attempt to reach a node (first connect and reconnects), with its reason (ECONNREFUSED...) and the URL tried. */
  onUnreachable?: (reason: string, url: string) => void;
  /** Every connection made. */
  onConnect?: () => void;
  /** How long closing may wait for the node's close frame, asked as it closes (default 1 s). */
  closeHandshakeMs?: () => number | undefined;
}

/** Connects with the flags (falling back to the environment), runs `body`, closes. */
export async function withClient<T>(opts: NodeOptions, body: (client: Client) => Promise<T>, connect: ConnectOptions = {}): Promise<T> {
  const auth = resolveAuthOptions(
    { identityFile: opts.identity, credentialFile: opts.credential, nodePublicKey: opts.nodeKey, fleetPublicKey: opts.fleetKey },
    process.env,
    FLAG_NAMES,
  );
  const { onUnreachable, onConnect } = connect;
  const open = webSocketTransportFactory({ closeHandshakeMs: connect.closeHandshakeMs });
  const client = await Client.connect(brokerUrls(opts.broker), {
    connectTimeoutMs: connect.connectTimeoutMs ?? CLI_CONNECT_TIMEOUT_MS,
    clientId: 'tributary-cli',
    ...auth,
    onConnect,
    // The socket's own error (ECONNREFUSED: nothing listens) is the reason worth saying;
    // the client only says so once it gives up.
    transportFactory: (url, options) =>
      open(url, options).catch((err: unknown) => {
        // A malformed URL is refused for good, not retried: nothing to announce.
        const final = err instanceof TributaryError && !err.retriable;
        if (onUnreachable !== undefined && !final && !options?.signal?.aborted) onUnreachable(reasonOf(err), url);
        throw err;
      }),
  });
  try {
    return await body(client);
  } finally {
    await client.close();
  }
}

/**
 * The node URLs of a --broker value: `ws://a:7400/v1,ws://b:7400/v1`. Blanks around commas
 * are dropped; a value with no URL at all is kept whole, so that the client refuses it by
 * name as an invalid node URL.
 */
export function brokerUrls(broker: string): string[] {
  const urls = broker
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  return urls.length > 0 ? urls : [broker];
}

/**
 * Runs a command body: any error becomes one `tributary: message` line and exit code 1,
 * printed here so the format does not depend on the caller of parseAsync.
 */
export function run<A extends unknown[]>(body: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (err) {
      process.stderr.write(`tributary: ${messageOf(err)}\n`);
      process.exitCode = 1;
    }
  };
}

export function messageOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0];
}

export class UsageError extends Error {}
