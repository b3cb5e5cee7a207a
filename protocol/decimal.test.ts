import { expect, it } from 'vitest';
import { parseDecimalInteger } from './decimal.js';

it('reads plain decimal integers, negative ones too', () => {
  expect(parseDecimalInteger('0')).toBe(0);
  expect(parseDecimalInteger('7400')).toBe(7400);
  expect(parseDecimalInteger('-12')).toBe(-12);
  expect(parseDecimalInteger('007')).toBe(7);
  expect(parseDecimalInteger(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
});

it('refuses what Number() would take but nobody types as an integer', () => {
  for (const text of ['', ' ', '0x10', '1e9', '0b11', '0o7', ' 7', '7 ', '7.0', '1.5', '+7', 'Infinity', 'NaN', '1_000', '9007199254740993']) {
    expect(parseDecimalInteger(text), text).toBeUndefined();
  }
});
