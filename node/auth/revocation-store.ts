// The node's revocation list, kept in the internal topic `__revocations` (one partition,
// cleanup.policy=compact, kept forever, fsynced before each append is acknowledged). At
// start the whole topic is read back; afterwards every record produced to it is checked
// against the fleet key before it is appended and takes effect as soon as it is.
//
// The topic is the list: a revocation survives restarts because it is in the log, and it
// will reach other nodes the way any record does. A record that does not verify is refused
// at produce time, so the log holds only records the fleet signed; one that fails at load
// anyway (a fleet key changed in the config) is skipped and logged, never fatal.

import { Errors, TributaryError } from '../../protocol/errors.js';
import { decodeBatch } from '../../protocol/record-batch.js';
import { REVOCATIONS_TOPIC, RevocationList, verifyRevocation, type Revocation } from '../../protocol/revocation.js';
import type { Logger } from '../logger.js';
import type { LogManager } from '../storage/log-manager.js';
import { replayLog } from '../storage/replay.js';

/** Records in one produce to __revocations: each is verified with Ed25519, so keep it small. */
const RECORDS_PER_BATCH_MAX = 1000;
/** What one batch of revocations may inflate to: each record is well under 2 KiB. */
const RECORDS_PER_BATCH_INFLATED_MAX = RECORDS_PER_BATCH_MAX * 2048;

export const REVOCATIONS_TOPIC_CONFIG = { 'cleanup.policy': 'compact', 'retention.ms': -1, flush: 'batch' } as const;

export class RevocationStore {
  readonly list = new RevocationList();

  private constructor(
    private readonly fleetPublicKey: Buffer | undefined,
    private readonly logger: Logger,
  ) {}

  /** Creates the topic on first start and loads every revocation in it. */
  static async open(logs: LogManager, fleetPublicKey: Buffer | undefined, logger: Logger): Promise<RevocationStore> {
    const store = new RevocationStore(fleetPublicKey, logger);
    if (!logs.topic(REVOCATIONS_TOPIC)) {
      await logs.createTopic(REVOCATIONS_TOPIC, 1, { ...REVOCATIONS_TOPIC_CONFIG }, { internal: true });
    }
    const log = logs.partition(REVOCATIONS_TOPIC, 0);
    if (!log || !fleetPublicKey) return store;
    let skipped = 0;
    replayLog(
      log,
      (record) => {
        try {
          store.list.add(verifyRevocation(record.value ?? Buffer.alloc(0), fleetPublicKey, record.key?.toString('utf8')));
        } catch (err) {
          skipped++;
          if (skipped <= 10) logger.warn({ offset: record.offset, reason: (err as TributaryError).detail ?? String(err) }, 'skipped a revocation record that does not verify');
        }
      },
      {
        // No batch of the topic inflates past what `check` allowed it at produce.
        decompressedBytesMax: RECORDS_PER_BATCH_INFLATED_MAX,
        // Produce checks every record, so this should not happen; if it does, the node
        // still starts, without these revocations, and says so loudly.
        onUndecodableBatch: (batch, err) => {
          logger.error({ offset: batch.baseOffset, err: (err as Error)?.message ?? String(err) }, 'a batch of __revocations cannot be decoded; its revocations are not applied');
        },
      },
    );
    logger.info({ revocations: store.list.size, skipped }, 'revocation list loaded');
    return store;
  }

  /**
   * Checks every record of a batch produced to __revocations before it is appended: each
   * must be a revocation the fleet signed, stored under its own key. Returns what to apply
   * once the append succeeds. Throws INVALID_RECORD naming the first bad record.
   */
  check(batch: Buffer): Revocation[] {
    if (!this.fleetPublicKey) {
      throw new TributaryError(Errors.INVALID_RECORD, 'this node has no fleet key, so it cannot check revocations');
    }
    const decoded = decodeBatch(batch, { decompressedBytesMax: RECORDS_PER_BATCH_INFLATED_MAX });
    if (decoded.records.length > RECORDS_PER_BATCH_MAX) {
      throw new TributaryError(Errors.INVALID_RECORD, `at most ${RECORDS_PER_BATCH_MAX} revocations per batch`);
    }
    return decoded.records.map((record, i) => {
      try {
        return verifyRevocation(record.value ?? Buffer.alloc(0), this.fleetPublicKey as Buffer, record.key?.toString('utf8') ?? '');
      } catch (err) {
        throw new TributaryError(Errors.INVALID_RECORD, `record ${i}: ${(err as TributaryError).detail ?? String(err)}`);
      }
    });
  }

  /** Called with every revocation applied after the load: the node closes what it names. */
  onApplied: ((revocation: Revocation) => void) | null = null;

  apply(revocations: readonly Revocation[]): void {
    for (const r of revocations) {
      this.list.add(r);
      this.onApplied?.(r);
      this.logger.info({ revoked: 'credentialId' in r.target ? { credentialId: r.target.credentialId } : { subject: r.target.subject.toString('hex') }, reason: r.reason }, 'revocation applied');
    }
  }
}
