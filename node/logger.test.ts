// The node's logs: JSON lines a machine can read (journald, a shipper), readable lines in a
// terminal, the level from the config, errors with their stack, and no line lost on exit.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from './cli/start.js';
import { createLogger, prettyFor, type LoggerOptions } from './logger.js';
import { ROOT, tempDir } from '../test/helpers/node-process.js';

function capture(options: Omit<LoggerOptions, 'write'> = {}) {
  const lines: string[] = [];
  const logger = createLogger({ ...options, write: (line) => lines.push(line) });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('JSON lines', () => {
  it('writes one JSON object per line with the level number, time, msg and the fields', () => {
    const { logger, lines, records } = capture({ pretty: false });
    logger.info({ topic: 'sensors', partitions: 3 }, 'topic created');
    logger.warn('plain message');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line.endsWith('\n') && line.indexOf('\n') === line.length - 1).toBe(true);
    const [created, plain] = records();
    expect(created).toMatchObject({ level: 30, msg: 'topic created', topic: 'sensors', partitions: 3 });
    expect(typeof created.time).toBe('number');
    expect(plain).toMatchObject({ level: 40, msg: 'plain message' });
    // journald records pid and host itself.
    expect(created).not.toHaveProperty('pid');
    expect(created).not.toHaveProperty('hostname');
  });

  it('is the format when the output is not a terminal and nothing forces pretty', () => {
    const { logger, records } = capture();
    logger.info({ a: 1 }, 'x');
    expect(records()[0]).toMatchObject({ level: 30, msg: 'x', a: 1 });
  });

  it('leaves a message with printf characters as it is', () => {
    const { logger, records } = capture();
    logger.info({ path: '/v1' }, 'rate 100%s %d');
    expect(records()[0].msg).toBe('rate 100%s %d');
  });
});

describe('levels', () => {
  it('writes info and above by default', () => {
    const { logger, records } = capture();
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(records().map((r) => [r.level, r.msg])).toEqual([[30, 'i'], [40, 'w'], [50, 'e']]);
  });

  it.each([
    ['debug', ['d', 'i', 'w', 'e']],
    ['warn', ['w', 'e']],
    ['error', ['e']],
    ['fatal', []],
    ['silent', []],
  ] as const)('at %s writes %j', (level, expected) => {
    const { logger, records } = capture({ level });
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(records().map((r) => r.msg)).toEqual(expected);
  });
});

it('pretty output is a readable line, not JSON, with the message and the fields', () => {
  const { logger, lines } = capture({ pretty: true });
  logger.warn({ connectionsMax: 1024 }, 'connection refused: limit reached');
  expect(lines).toHaveLength(1);
  expect(() => JSON.parse(lines[0])).toThrow();
  expect(lines[0]).toContain('WARN');
  expect(lines[0]).toContain('connection refused: limit reached');
  expect(lines[0]).toContain('connectionsMax');
  expect(lines[0]).toContain('1024');
  // Captured output is not a terminal: no colour codes.
  expect(lines[0]).not.toMatch(/\x1b\[/);
});

it('an Error logged as err keeps its type, message and stack', () => {
  const { logger, records } = capture();
  class StorageError extends Error {}
  logger.error({ err: new StorageError('disk full'), topic: 't' }, 'flush failed');
  const [r] = records();
  const err = r.err as Record<string, unknown>;
  expect(err.type).toBe('StorageError');
  expect(err.message).toBe('disk full');
  expect(err.stack).toMatch(/disk full\n\s+at /);
  expect(err.stack).toContain('logger.test');
  expect(r.topic).toBe('t');
});

it('log.format maps to pretty: auto leaves it to the terminal', () => {
  expect([prettyFor('json'), prettyFor('pretty'), prettyFor('auto')]).toEqual([false, true, undefined]);
});

describe('log settings', () => {
  it('default to info and auto; come from the file, then TRIBUTARY_LOG_LEVEL, then --log-level', () => {
    const dir = tempDir();
    try {
      const config = join(dir.path, 'node.yaml');
      writeFileSync(config, 'auth:\n  anonymous: loopback\nlog:\n  level: debug\n  format: json\n');
      expect(resolveConfig({}, {}).log).toEqual({ level: 'info', format: 'auto' });
      expect(resolveConfig({ config }, {}).log).toEqual({ level: 'debug', format: 'json' });
      expect(resolveConfig({ config }, { TRIBUTARY_LOG_LEVEL: 'warn' }).log).toEqual({ level: 'warn', format: 'json' });
      expect(resolveConfig({ config, logLevel: 'error' }, { TRIBUTARY_LOG_LEVEL: 'warn' }).log).toEqual({ level: 'error', format: 'json' });
    } finally {
      dir.remove();
    }
  });

  it('refuse a bad level or format, or an unknown key, one line each', () => {
    const dir = tempDir();
    try {
      const config = join(dir.path, 'node.yaml');
      writeFileSync(config, 'log:\n  level: loud\n  format: xml\n  colour: true\n');
      expect(() => resolveConfig({ config }, {})).toThrow(
        [
          'log.level must be one of trace, debug, info, warn, error, fatal, silent, got "loud"',
          'log.format must be json, pretty or auto, got "xml"',
          'log.colour: unknown key; valid keys under log: level, format',
        ].join('\n'),
      );
      expect(() => resolveConfig({ logLevel: 'verbose' }, {})).toThrow(/--log-level must be one of .*got "verbose"/);
      expect(() => resolveConfig({}, { TRIBUTARY_LOG_LEVEL: 'verbose' })).toThrow(/TRIBUTARY_LOG_LEVEL must be one of .*got "verbose"/);
    } finally {
      dir.remove();
    }
  });
});

it('writes to stderr synchronously: every line is out when the process exits at once, and nothing holds it open', () => {
  // A separate process, so stderr is a real pipe as under a service manager (the built
  // module: run \`npx tsc -p tsconfig.build.json\` first).
  const script = `
    const { createLogger } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/node/logger.js')).href)});
    const logger = createLogger({ level: 'info' });
    for (let i = 0; i < 2000; i++) logger.info({ i }, 'line');
    logger.info('last');
    if (process.argv[1] === 'exit') process.exit(3);
  `;
  for (const how of ['exit', 'drain'] as const) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, how], { encoding: 'utf8', timeout: 20_000 });
    expect(r.error, how).toBeUndefined();
    expect(r.status, how).toBe(how === 'exit' ? 3 : 0);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; i?: number });
    expect(lines, how).toHaveLength(2001);
    expect(lines[1999].i).toBe(1999);
    expect(lines[2000].msg).toBe('last');
  }
});
