// What one request may spend on work its own bytes do not show: bytes inflated from
// compressed batches (limits.requestDecompressBytesMax) and bytes read from segment files
// beyond what it returns (limits.requestScanBytesMax). A handler makes one budget per
// request (a subscription one per push) and hands it to the appends and reads it asks for,
// which take from it as they go: for a Fetch or a push, only the index files of the cold
// segments it opens. Once a part is spent, whatever needs it is answered THROTTLED
// (retriable) and the rest of the request goes on: a 200 KB gzip bomb named 10,000 times in
// one ListOffsets once made a node inflate 64 MiB per entry and block its event loop for
// 35 s. What a request may inflate is also granted from its principal's rate
// (node/server/principal-rates.ts), so that pipelined requests do not each spend a whole
// budget.

import { DecodeError, Errors, InflateBoundError, LimitReachedError } from '../../protocol/errors.js';

/** The limits that can bound what a request inflates, by config key. */
export type DecompressLimit = 'requestDecompressBytesMax' | 'decompressBytesPerPrincipalPerSecond';

export interface RequestBudget {
  /** Bytes this request may still inflate. */
  decompressBytesLeft: number;
  /**
   * The limit that set decompressBytesLeft, named when it is spent: the request's own
   * (when absent), or its principal's rate when that granted less (node/server/principal-rates.ts).
   */
  decompressLimit?: DecompressLimit;
  /** Bytes this request may still read from segment files beyond what it returns. */
  scanBytesLeft: number;
  /** scanBytesLeft at the start: the most one segment open is charged (chargeSegmentOpen). */
  readonly scanBytesMax?: number;
}

export function requestBudget(limits: { readonly requestDecompressBytesMax: number; readonly requestScanBytesMax: number }): RequestBudget {
  return { decompressBytesLeft: limits.requestDecompressBytesMax, scanBytesLeft: limits.requestScanBytesMax, scanBytesMax: limits.requestScanBytesMax };
}

/**
 * For work that answers no client request (tests, benchmarks, tools): every inflate is still
 * bounded by its batch's own bound, max.message.bytes.
 */
export function unlimitedBudget(): RequestBudget {
  return { decompressBytesLeft: Number.POSITIVE_INFINITY, scanBytesLeft: Number.POSITIVE_INFINITY };
}

function decompressSpent(budget: RequestBudget): LimitReachedError {
  if (budget.decompressLimit === 'decompressBytesPerPrincipalPerSecond') {
    return new LimitReachedError(
      Errors.THROTTLED,
      'decompressBytesPerPrincipalPerSecond',
      "this principal's requests have inflated what limits.decompressBytesPerPrincipalPerSecond allows for now; retry later",
    );
  }
  return new LimitReachedError(
    Errors.THROTTLED,
    'requestDecompressBytesMax',
    'this request has spent its decompression budget (limits.requestDecompressBytesMax) on earlier partitions; send fewer partitions per request',
  );
}

function scanSpent(): LimitReachedError {
  return new LimitReachedError(
    Errors.THROTTLED,
    'requestScanBytesMax',
    'this request has spent its read budget (limits.requestScanBytesMax) on earlier partitions; send fewer partitions per request',
  );
}

/**
 * Takes `bytes` of segment reading from the budget before they are read. When fewer are
 * left, the budget is spent for the rest of the request (so that what follows is refused
 * alike, not let through by size) and THROTTLED is thrown.
 */
export function chargeScan(budget: RequestBudget, bytes: number): void {
  if (bytes > budget.scanBytesLeft) {
    budget.scanBytesLeft = 0;
    throw scanSpent();
  }
  budget.scanBytesLeft -= bytes;
}

/**
 * Takes what opening a cold segment for a read costs (its index files, or the scan of its
 * log that rebuilds them) before it is read, so that a request refused for a spent budget
 * loads nothing. One open is charged at most a whole budget: a request that has read
 * nothing else may open a segment whose indexes outgrew limits.requestScanBytesMax (a
 * 2 GiB segment indexed at every batch), which would otherwise stay unreadable.
 */
export function chargeSegmentOpen(budget: RequestBudget, bytes: number): void {
  chargeScan(budget, Math.min(bytes, budget.scanBytesMax ?? bytes));
}

/** THROTTLED now if the request can inflate nothing more: before a batch is even read. */
export function checkCanInflate(budget: RequestBudget): void {
  if (budget.decompressBytesLeft <= 0) throw decompressSpent(budget);
}

/**
 * Runs `inflate` with a bound of min(recordsBytesMax, what the budget has left), so nothing
 * is inflated past either, and takes what it inflated from the budget. Past the bound: when
 * the budget set it, THROTTLED (the batch may be fine; a smaller request can tell); when
 * the batch's own bound did, CORRUPT_BATCH naming max.message.bytes.
 */
export function inflateWithin<T extends { inflatedBytes: number }>(budget: RequestBudget, recordsBytesMax: number, inflate: (bytesMax: number) => T): T {
  checkCanInflate(budget);
  const bytesMax = Math.min(recordsBytesMax, budget.decompressBytesLeft);
  let inflated: T;
  try {
    inflated = inflate(bytesMax);
  } catch (err) {
    if (!(err instanceof InflateBoundError)) throw err;
    // zlib stopped at the bound: all of it was inflated.
    budget.decompressBytesLeft = Math.max(0, budget.decompressBytesLeft - err.boundBytes);
    if (err.boundBytes < recordsBytesMax) {
      budget.decompressBytesLeft = 0;
      throw decompressSpent(budget);
    }
    throw new DecodeError(Errors.CORRUPT_BATCH, `its records inflate past ${recordsBytesMax} bytes, the topic's max.message.bytes`, err.at, { cause: err });
  }
  budget.decompressBytesLeft -= inflated.inflatedBytes;
  return inflated;
}
