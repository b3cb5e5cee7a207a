import { Errors, TributaryError, type ErrorSpec } from '../../../protocol/errors.js';
import type { Logger } from '../../logger.js';

/**
 * The wire form of a failure inside one entry of a request. A TributaryError keeps its
 * code; anything else is a bug or an unexpected system failure, logged and answered as
 * UNKNOWN so that one bad partition never takes the connection down.
 */
export function errorResult(err: unknown, logger: Logger, where: Record<string, unknown>): { error: number; message: string } {
  if (err instanceof TributaryError) return { error: err.code, message: err.detail };
  logger.error({ ...where, err: (err as Error)?.stack ?? String(err) }, 'unexpected error while serving a request');
  return { error: Errors.UNKNOWN.code, message: `unexpected server error: ${(err as Error)?.message ?? String(err)}` };
}

export function fail(which: ErrorSpec, detail: string): never {
  throw new TributaryError(which, detail);
}
