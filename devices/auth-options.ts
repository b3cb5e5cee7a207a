// Who a client is and which node it trusts, from what an application or an operator gives:
// key pairs and bytes, file paths and hex, or the environment. `connect()` and the command
// line resolve through here, so both read the same files the same way and say the same
// thing when one is wrong.
//
//   setting          option (SDK)                       flag (CLI)      environment
//   identity         identity | identityFile            --identity      TRIBUTARY_IDENTITY
//   credential       credential | credentialFile        --credential    TRIBUTARY_CREDENTIAL
//   node pin         nodePublicKey (Buffer or hex)      --node-key      TRIBUTARY_NODE_KEY
//   fleet pin        fleetPublicKey (Buffer or hex)     --fleet-key     TRIBUTARY_FLEET_KEY
//
// Each setting falls back to its environment variable on its own, only when the caller gave
// it in neither form; an empty variable counts as unset.

import { Errors, TributaryError } from '../protocol/errors.js';
import { parsePublicKey, type IdentityKeyPair } from '../protocol/key-file.js';
import { noisePublicKeyFromIdentity } from '../protocol/secure-channel.js';
import type { ClientOptions } from './client.js';
import { readCredentialFile, readIdentityFile } from './identity.js';

export interface AuthOptions {
  /** This client's key pair. Exclusive with identityFile. */
  identity?: IdentityKeyPair;
  /** Path of an identity file (`tributary keys generate`), mode 0600. */
  identityFile?: string;
  /** This identity's credential bytes. Exclusive with credentialFile. */
  credential?: Uint8Array;
  /** Path of a credential file (`tributary credentials issue --out`). */
  credentialFile?: string;
  /** Pin one node: its identity public key, as bytes or 64 hex characters. */
  nodePublicKey?: Buffer | string;
  /** Pin a fleet: any node with a valid `node` credential of it; bytes or 64 hex characters. */
  fleetPublicKey?: Buffer | string;
}

/** What the Client takes, resolved. */
export type ResolvedAuth = Pick<ClientOptions, 'identity' | 'credential' | 'nodePublicKey' | 'fleetPublicKey'>;

export const AUTH_ENV = {
  identityFile: 'TRIBUTARY_IDENTITY',
  credentialFile: 'TRIBUTARY_CREDENTIAL',
  nodePublicKey: 'TRIBUTARY_NODE_KEY',
  fleetPublicKey: 'TRIBUTARY_FLEET_KEY',
} as const;

/** How the caller spells each setting, so an error names what the user typed. */
export type AuthOptionNames = Record<keyof typeof AUTH_ENV, string>;

const SDK_NAMES: AuthOptionNames = { identityFile: 'identityFile', credentialFile: 'credentialFile', nodePublicKey: 'nodePublicKey', fleetPublicKey: 'fleetPublicKey' };

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Resolves `options` (falling back to `env`) into the Client's options. Throws
 * TributaryError(INVALID_CONFIG) with one line naming the option or variable at fault.
 */
export function resolveAuthOptions(options: AuthOptions, env: Env = process.env, names: AuthOptionNames = SDK_NAMES): ResolvedAuth {
  const resolved: ResolvedAuth = {};
  const identity = either(options.identity, options.identityFile, 'identity', names.identityFile);
  if (identity.value !== undefined) resolved.identity = identity.value;
  else {
    const file = fromOptionOrEnv(identity.path, env, 'identityFile', names);
    if (file !== undefined) resolved.identity = labelled(file.label, () => readIdentityFile(file.text));
  }
  const credential = either(options.credential, options.credentialFile, 'credential', names.credentialFile);
  if (credential.value !== undefined) resolved.credential = credential.value;
  else {
    const file = fromOptionOrEnv(credential.path, env, 'credentialFile', names);
    if (file !== undefined) resolved.credential = labelled(file.label, () => readCredentialFile(file.text));
  }
  const nodeKey = publicKey(options.nodePublicKey, env, 'nodePublicKey', names);
  if (nodeKey !== undefined) resolved.nodePublicKey = nodeKey;
  const fleetKey = publicKey(options.fleetPublicKey, env, 'fleetPublicKey', names);
  if (fleetKey !== undefined) resolved.fleetPublicKey = fleetKey;
  return resolved;
}

function either<T>(value: T | undefined, path: string | undefined, valueName: string, pathName: string): { value?: T; path?: string } {
  if (value !== undefined && path !== undefined) throw new TributaryError(Errors.INVALID_CONFIG, `give ${valueName} or ${pathName}, not both`);
  return value !== undefined ? { value } : { path };
}

function fromOptionOrEnv(given: string | undefined, env: Env, setting: keyof typeof AUTH_ENV, names: AuthOptionNames): { text: string; label: string } | undefined {
  if (given !== undefined) {
    if (given === '') throw new TributaryError(Errors.INVALID_CONFIG, `${names[setting]} must not be empty`);
    return { text: given, label: names[setting] };
  }
  const fromEnv = env[AUTH_ENV[setting]];
  return fromEnv ? { text: fromEnv, label: AUTH_ENV[setting] } : undefined;
}

/** Runs `read`, prefixing the label to an INVALID_CONFIG so the line says where the path came from. */
function labelled<T>(label: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof TributaryError) throw new TributaryError(Errors.INVALID_CONFIG, `${label}: ${err.detail}`, { cause: err });
    throw err;
  }
}

function publicKey(given: Buffer | string | undefined, env: Env, setting: 'nodePublicKey' | 'fleetPublicKey', names: AuthOptionNames): Buffer | undefined {
  if (Buffer.isBuffer(given)) return given; // the Client checks bytes it is handed
  const text = fromOptionOrEnv(given, env, setting, names);
  if (text === undefined) return undefined;
  const key = parsePublicKey(text.text, text.label);
  try {
    noisePublicKeyFromIdentity(key);
  } catch {
    throw new TributaryError(Errors.INVALID_CONFIG, `${text.label} is not an Ed25519 public key`);
  }
  return key;
}
