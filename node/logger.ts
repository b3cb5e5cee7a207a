// Structured logs with pino: one JSON object per line on stderr (level number, time, msg,
// fields), which journald and any log shipper take as they are; readable lines instead when
// stderr is a terminal, or when asked. Callers see only `Logger`, which pino's logger
// satisfies, so none of them depends on pino.

import { createRequire } from 'node:module';
import pino, { type DestinationStream } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'pretty', 'auto'] as const;
/** auto: pretty when the output is a terminal, JSON otherwise (a service, a pipe, a file). */
export type LogFormat = (typeof LOG_FORMATS)[number];
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields | string, msg?: string): void;
  info(fields: LogFields | string, msg?: string): void;
  warn(fields: LogFields | string, msg?: string): void;
  error(fields: LogFields | string, msg?: string): void;
}

export interface LoggerOptions {
  /** Least severe level written; default info. */
  level?: LogLevel;
  /** true: readable lines; false: JSON lines; default: readable only when stderr is a terminal. */
  pretty?: boolean;
  /** Where each line goes instead of stderr (tests capture logs with it). */
  write?: (line: string) => void;
}

/** `log.format` of the config as `createLogger`'s `pretty` option. */
export function prettyFor(format: LogFormat): boolean | undefined {
  return format === 'auto' ? undefined : format === 'pretty';
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const toStderr = options.write === undefined;
  const pretty = options.pretty ?? (toStderr && process.stderr.isTTY === true);
  // Synchronous writes to fd 2: a line is out before the call returns, so nothing is lost on
  // process.exit or a crash, and no handle or worker keeps the process alive.
  let write = options.write;
  if (write === undefined) {
    const stderr = pino.destination({ dest: 2, sync: true });
    write = (line) => void stderr.write(line);
  }
  const destination: DestinationStream = pretty ? prettyDestination(write, toStderr) : { write };
  return pino(
    {
      level: options.level ?? 'info',
      // journald (and any collector) records the pid and host itself; lines stay short on an
      // SD card that holds months of them.
      base: null,
      // Errors logged as `err` keep their type and stack.
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}

/**
 * pino-pretty's formatter, run in this thread on each JSON line. pino's `transport` option
 * would run pino-pretty in a worker thread, which costs about 13 MB of RSS, a lot on a
 * Raspberry Pi; pino-pretty is only loaded when pretty output is wanted.
 */
function prettyDestination(write: (line: string) => void, toStderr: boolean): DestinationStream {
  const pinoPretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
  const format = pinoPretty.prettyFactory({
    // Colour only on a terminal: a forced pretty format under systemd keeps the journal clean.
    colorize: toStderr && process.stderr.isTTY === true && pinoPretty.isColorSupported,
    translateTime: 'SYS:HH:MM:ss.l',
    singleLine: true,
  });
  return { write: (line: string) => write(format(line)) };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
