import { describe, expect, it } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';
import { DEFAULT_TOPIC_CONFIG, parseTopicConfig } from './config.js';

function failure(run: () => unknown): TributaryError {
  try {
    run();
  } catch (err) {
    if (err instanceof TributaryError) return err;
    throw err;
  }
  throw new Error('did not throw');
}

describe('parseTopicConfig', () => {
  it('gives the defaults for no overrides', () => {
    expect(parseTopicConfig(undefined)).toEqual(DEFAULT_TOPIC_CONFIG);
    expect(DEFAULT_TOPIC_CONFIG).toMatchObject({ 'segment.bytes': 64 * 1024 * 1024, flush: 'interval', 'max.message.bytes': 1048588, 'retention.bytes': -1 });
  });

  it('parses strings from the CLI and numbers from the wire, over broker defaults', () => {
    const config = parseTopicConfig({ 'segment.bytes': '1024', 'flush.interval.ms': 250, flush: 'batch', 'retention.ms': '-1' }, { 'index.interval.bytes': 0, flush: 'os' });
    expect(config).toMatchObject({ 'segment.bytes': 1024, 'flush.interval.ms': 250, flush: 'batch', 'retention.ms': -1, 'index.interval.bytes': 0 });
  });

  it('refuses unknown keys and bad values with INVALID_CONFIG naming key and value', () => {
    const cases: [Record<string, string | number>, RegExp][] = [
      [{ 'segment.byte': 1024 }, /unknown topic config key 'segment\.byte'/],
      [{ 'segment.bytes': '1e6' }, /'segment\.bytes' = '1e6': must be an integer/],
      [{ 'segment.bytes': ' 2048' }, /'segment\.bytes' = ' 2048'/],
      [{ 'segment.bytes': '' }, /'segment\.bytes' = ''/],
      [{ 'segment.bytes': 1023 }, /'segment\.bytes' = 1023: must be between 1024 and/],
      [{ 'segment.bytes': 2 ** 31 }, /'segment\.bytes' = 2147483648/],
      [{ 'segment.ms': 0 }, /'segment\.ms' = 0/],
      [{ 'flush.interval.ms': 2 ** 31 }, /'flush\.interval\.ms'/],
      [{ 'max.message.bytes': 60 }, /'max\.message\.bytes' = 60/],
      [{ 'index.interval.bytes': -1 }, /'index\.interval\.bytes' = -1/],
      [{ 'retention.ms': '-2' }, /'retention\.ms' = '-2'/],
      [{ 'retention.bytes': 0.5 }, /'retention\.bytes' = 0\.5/],
      [{ flush: 'always' }, /'flush' = 'always': must be one of batch, interval, os/],
      [{ flush: 1 }, /'flush' = 1/],
    ];
    for (const [raw, message] of cases) {
      const err = failure(() => parseTopicConfig(raw));
      expect(err.errorName, JSON.stringify(raw)).toBe('INVALID_CONFIG');
      expect(err.message, JSON.stringify(raw)).toMatch(message);
    }
    expect(failure(() => parseTopicConfig(JSON.parse('{"__proto__": 5}') as Record<string, number>)).message).toMatch(/unknown topic config key '__proto__'/);
    expect(failure(() => parseTopicConfig({}, { 'segment.bytes': 5 })).message).toMatch(/default topic config 'segment\.bytes' = 5/);
  });

  it('returns a frozen object', () => {
    expect(Object.isFrozen(parseTopicConfig({}))).toBe(true);
  });
});
