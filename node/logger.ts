// A minimal structured logger: one JSON object per line on stderr, or a short readable
// line when stderr is a terminal. The interface is what pino offers, so pino can replace it
// without touching callers.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields | string, msg?: string): void;
  info(fields: LogFields | string, msg?: string): void;
  warn(fields: LogFields | string, msg?: string): void;
  error(fields: LogFields | string, msg?: string): void;
}

const LEVELS: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 };

export function createLogger(options: { level?: LogLevel; pretty?: boolean; write?: (line: string) => void } = {}): Logger {
  const min = LEVELS[options.level ?? 'info'];
  const pretty = options.pretty ?? process.stderr.isTTY === true;
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const log = (level: LogLevel) => (fields: LogFields | string, msg?: string) => {
    if (LEVELS[level] < min) return;
    const f = typeof fields === 'string' ? {} : fields;
    const m = typeof fields === 'string' ? fields : (msg ?? '');
    if (pretty) {
      const extra = Object.entries(f)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${m}${extra ? ` ${extra}` : ''}\n`);
    } else {
      write(`${JSON.stringify({ level: LEVELS[level], time: Date.now(), msg: m, ...f })}\n`);
    }
  };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
