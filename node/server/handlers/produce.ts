import type { ClockTimer } from '../../../protocol/clock.js';
import { Errors, TributaryError } from '../../../protocol/errors.js';
import type { Kind, ProducePartitionResult, ProduceResponse } from '../../../protocol/frames.js';
import { isInvalid, type DecodedRequests, type Part, type PartitionAddress, type ProducePart } from '../../../protocol/requests.js';
import { BATCH_OVERHEAD, checkCodecInflatable, Compression, compressionOf, readBatchHeader, TimestampType, validateRecords } from '../../../protocol/record-batch.js';
import type { BatchHeader } from '../../../protocol/record-batch.js';
import type { RequestContext } from '../context.js';
import { REVOCATIONS_TOPIC } from '../../../protocol/revocation.js';
import { refusal } from './authorize.js';
import { errorResult, LimitsReached } from './errors.js';
import { isRefusal } from '../../partition-roles.js';
import { DURABLE_ALREADY } from '../../storage/partition-log.js';
import type { PartitionLog } from '../../storage/partition-log.js';
import { inflateWithin, requestBudget } from '../../storage/request-budget.js';
import type { DecompressGrant } from '../principal-rates.js';

// Produce appends each partition's batch as received: the storage engine validates it
// (length, magic, CRC), patches the base offset and leader epoch in place and writes the
// bytes. The records of an uncompressed batch are not looked at (its bytes bound what it
// can claim); those of a compressed batch are, once, before the append: inflated within
// the topic's max.message.bytes and the request's decompression budget, parsed and matched
// to the header (validateRecords), so that no later reader meets a bomb or a lie. With
// acks=1 the answer waits for the topic's flush policy (flush=batch: after fsync); with
// acks=0 nothing is answered.
export async function handleProduce(request: DecodedRequests[Kind.Produce], ctx: RequestContext): Promise<ProduceResponse | undefined> {
  const { acks, partitions } = request;
  // How long the answer may wait for the flush policy, as Kafka's produce timeout.
  const { requestTimeoutMs } = ctx.broker.limits;
  const timeoutMs = Math.min(request.timeoutMs ?? requestTimeoutMs, requestTimeoutMs);
  // Shared by every batch of the request: many small bombs cost no more than one budget.
  // Its inflating share comes from the principal's rate at the first compressed batch, and
  // what is left goes back once the batches are checked and appended, before any wait.
  const grant = ctx.broker.principalRates.grantFor(ctx.principal.key, requestBudget(ctx.broker.limits));
  const limitsReached = new LimitsReached();
  let appended: Appended;
  try {
    appended = appendEntries(partitions, ctx, grant, limitsReached, acks !== 0);
  } finally {
    grant.release();
  }
  limitsReached.count(ctx.broker.metrics);
  if (ctx.broker.faults?.dropAfterAppend?.()) {
    ctx.dropConnection('fault injected: answer lost after append');
    return undefined;
  }
  if (acks === 0) return undefined;
  const { results, durable, waiting } = appended;
  if (durable.length > 0) {
    let timer: ClockTimer | undefined;
    const timedOut = new Promise<void>((resolve) => (timer = ctx.broker.clock.setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(durable), timedOut]);
    timer?.cancel();
    for (const w of waiting) {
      if (w.settled) continue;
      // Appended but not yet flushed as the topic asks: the outcome is unknown to the client.
      w.result.error = Errors.REQUEST_TIMED_OUT.code;
      w.result.message = `not flushed within ${timeoutMs} ms`;
    }
  }
  return { partitions: results };
}

interface Appended {
  results: ProducePartitionResult[];
  /** The fsyncs the answer waits for (flush=batch); none when nothing is answered. */
  durable: Promise<void>[];
  waiting: { result: ProducePartitionResult; settled: boolean }[];
}

/** Each entry checked and appended in turn, synchronously; a failing one is answered alone. */
function appendEntries(parts: Part<ProducePart, PartitionAddress>[], ctx: RequestContext, grant: DecompressGrant, limitsReached: LimitsReached, answered: boolean): Appended {
  const { logger } = ctx.broker;
  const out: Appended = { results: [], durable: [], waiting: [] };
  for (const part of parts) {
    const result: ProducePartitionResult = { topic: part.topic, partition: part.partition, error: Errors.NONE.code, baseOffset: -1, logStartOffset: -1 };
    out.results.push(result);
    if (isInvalid(part)) {
      Object.assign(result, part.invalid);
      continue;
    }
    try {
      const durable = appendEntry(part, ctx, grant, result);
      // Under flush=interval or os the batch is as durable as an ack needs already: no
      // waiting, and no timer or promises for this request.
      if (!answered || durable === null || durable === DURABLE_ALREADY) continue;
      const pending = { result, settled: false };
      out.waiting.push(pending);
      out.durable.push(
        durable.then(
          () => void (pending.settled = true),
          (err: unknown) => {
            pending.settled = true;
            Object.assign(result, errorResult(err, logger, { request: 'Produce', topic: result.topic, partition: result.partition }));
          },
        ),
      );
    } catch (err) {
      limitsReached.note(err);
      Object.assign(result, errorResult(err, logger, { request: 'Produce', topic: result.topic, partition: result.partition }));
    }
  }
  return out;
}

/**
 * One entry: its batch checked and appended, `result` filled in. Returns what resolves
 * once the append is durable, or null when nothing was appended (refused, unknown).
 */
function appendEntry(part: ProducePart, ctx: RequestContext, grant: DecompressGrant, result: ProducePartitionResult): Promise<void> | null {
  const { partitionRoles, shuttingDown } = ctx.broker;
  const { topic, records } = part;
  // Checked before the topic is looked up, so a refusal says nothing of what exists.
  const refused = refusal(ctx, 'produce', topic);
  if (refused) {
    Object.assign(result, refused);
    return null;
  }
  const header = refuseByHeader(records);
  if (shuttingDown) throw new TributaryError(Errors.SHUTTING_DOWN);
  // Only the leader appends what producers send (NOT_LEADER elsewhere); a follower's log
  // takes its leader's batches through replication.
  const log = partitionRoles.leaderLog(topic, result.partition);
  if (isRefusal(log)) {
    Object.assign(result, log);
    return null;
  }
  checkCompressedRecords(records, log, grant);
  // Revocations are trusted for the fleet's signature, not for who sent them: every
  // record is checked before it reaches the log, and applies as soon as it is there.
  const revocations = topic === REVOCATIONS_TOPIC ? ctx.broker.revocations.check(records) : null;
  if (ctx.broker.diskGuard.refuses(topic)) {
    ctx.broker.metrics.diskGuardRefusedBatches.inc({ topic });
    throw new TributaryError(Errors.STORAGE_FULL, `the node's storage is full (storage.maxBytes or storage.minFreeBytes); retry later`);
  }
  const appended = log.append(records, header);
  if (!appended.duplicate) {
    ctx.broker.diskGuard.noteAppended(records.length);
    ctx.broker.metrics.countAppended(topic, records);
    if (revocations) ctx.broker.revocations.apply(revocations);
  }
  result.baseOffset = appended.baseOffset;
  // An idempotent producer's resend: in the log once, at these offsets. Answered as
  // Kafka's DUPLICATE_SEQUENCE, which the producer takes as success.
  if (appended.duplicate) {
    ctx.broker.metrics.duplicateBatches.inc();
    result.error = Errors.DUPLICATE_SEQUENCE.code;
    result.message = `already written at offset ${appended.baseOffset}`;
  }
  result.logStartOffset = log.logStartOffset;
  return appended.durable;
}

/**
 * What the header alone refuses, before the topic is looked up or anything inflated.
 * Returns the parsed header for the append (undefined for bytes too short to hold one).
 */
function refuseByHeader(records: Buffer): BatchHeader | undefined {
  if (records.length < BATCH_OVERHEAD) return undefined; // the storage engine's validation names this
  const header = readBatchHeader(records);
  refuseBrokerOnlyAttributes(header);
  // Node 20's zlib inflates gzip only: the records of a snappy, lz4 or zstd batch could not
  // be checked, and an unchecked compressed batch is what let a bomb in.
  checkCodecInflatable(header.compression);
  return header;
}

/**
 * Transactions, control batches and log-append time are the broker's to write: a client
 * batch carrying them would pass through unexamined and mislead every reader later.
 */
function refuseBrokerOnlyAttributes(header: BatchHeader): void {
  if (header.isTransactional || header.isControl) {
    throw new TributaryError(Errors.INVALID_REQUEST, 'transactional and control batches are not accepted from clients');
  }
  if (header.timestampType === TimestampType.LogAppendTime) {
    throw new TributaryError(Errors.INVALID_REQUEST, 'batches must carry create time; log-append time is set by the node');
  }
}

/**
 * Kafka's LogValidator for a compressed batch, before it is appended: inflated once within
 * min(the topic's max.message.bytes, what the request's budget has left of its grant), its records
 * parsed and matched to its header. Uncompressed batches keep the header-only path: their
 * bytes bound what they can claim, and no read of them later costs more than their size.
 */
function checkCompressedRecords(records: Buffer, log: PartitionLog, grant: DecompressGrant): void {
  if (records.length < BATCH_OVERHEAD || compressionOf(records) === Compression.None) return;
  const recordsBytesMax = log.config['max.message.bytes'];
  // The append refuses it as BATCH_TOO_LARGE, and nothing need be inflated to know that.
  if (records.length > recordsBytesMax) return;
  inflateWithin(grant.budgetToInflate(), recordsBytesMax, (bytesMax) => validateRecords(records, recordsBytesMax, bytesMax));
}
