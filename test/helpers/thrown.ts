// The TributaryError a call throws, for tests that check its code and message; a test
// fails if the call returns or throws anything else.

import { expect } from 'vitest';
import { TributaryError } from '../../protocol/errors.js';

export function thrown(fn: () => unknown): TributaryError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TributaryError);
    return err as TributaryError;
  }
  throw new Error('nothing thrown');
}
