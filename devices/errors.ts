// Errors as the SDK raises them. Every failure a caller sees is a TributaryError from the one
// errors module (protocol/errors.ts); this file only adds the shapes the SDK needs on top:
// the first-connect failure whose message must read as one plain line for the command line,
// and a partition's failure.

import { errorSpecForCode, Errors, TributaryError } from '../protocol/errors.js';

// Rebuilt in protocol/, where the request engine reads answers; the SDK rebuilds the
// per-partition errors of an answer the same way.
export { wireError } from '../protocol/errors.js';

/**
 * The first connection to a node could not be made within connectTimeoutMs. Its message is
 * exactly "cannot reach node at URL: REASON" (the reason is the socket's error code, such
 * as ECONNREFUSED, when there is one), so a command line prints it as it is.
 */
export class ConnectionError extends TributaryError {
  readonly url: string;
  constructor(url: string, reason: string, options?: { cause?: unknown }) {
    super(Errors.NETWORK, `cannot reach node at ${url}: ${reason}`, options);
    this.name = 'ConnectionError';
    this.url = url;
    this.message = `cannot reach node at ${url}: ${reason}`;
  }
}

/** A short reason for a failed connection attempt: the system error code when there is one. */
export function reasonOf(err: unknown): string {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    const message = (err as { message?: unknown }).message;
    if (typeof message === 'string' && message !== '') return message;
  }
  return String(err);
}

export function clientClosed(what = 'client'): TributaryError {
  return new TributaryError(Errors.CLIENT_CLOSED, `${what} was closed`);
}

/**
 * A failure that belongs to one partition of a consumer's assignment (a corrupt batch, an
 * offset out of range with autoOffsetReset 'none', a topic that does not exist). Fetching
 * of that partition stops until the application seeks it.
 */
export class PartitionError extends TributaryError {
  readonly topic: string;
  readonly partition: number;
  /** The position the failure was met at. */
  readonly offset: number;
  constructor(cause: TributaryError, topic: string, partition: number, offset: number) {
    super(errorSpecForCode(cause.code), `${topic}/${partition} at offset ${offset}: ${detailOf(cause)}`, { cause });
    this.name = 'PartitionError';
    this.topic = topic;
    this.partition = partition;
    this.offset = offset;
  }
}

/** A TributaryError's message without the leading "NAME: ". */
export function detailOf(err: TributaryError): string {
  const prefix = `${err.errorName}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}
