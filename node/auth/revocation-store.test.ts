import { afterEach, expect, it } from 'vitest';
import { generateIdentity } from '../../protocol/key-file.js';
import { computeCrc, encodeBatch, OFFSET_ATTRIBUTES, OFFSET_CRC } from '../../protocol/record-batch.js';
import { REVOCATIONS_TOPIC, revocationKey, signRevocation, type RevocationTarget } from '../../protocol/revocation.js';
import type { LogFields, Logger } from '../logger.js';
import { LogManager } from '../storage/log-manager.js';
import { makeTempDir, removeDir } from '../storage/testing.js';
import { RevocationStore } from './revocation-store.js';

const NOW = 1_800_000_000_000;
const fleet = generateIdentity();

const open: { logs: LogManager; dir: string }[] = [];
afterEach(async () => {
  for (const { logs, dir } of open.splice(0)) {
    await logs.close();
    removeDir(dir);
  }
});

async function logManager(): Promise<LogManager> {
  const dir = makeTempDir();
  const logs = await LogManager.open(dir);
  open.push({ logs, dir });
  return logs;
}

function recording(): { logger: Logger; lines: { level: string; fields: LogFields; msg?: string }[] } {
  const lines: { level: string; fields: LogFields; msg?: string }[] = [];
  const at = (level: string) => (fields: LogFields | string, msg?: string) => {
    lines.push(typeof fields === 'string' ? { level, fields: {}, msg: fields } : { level, fields, msg });
  };
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

const recordOf = (target: RevocationTarget, signer = fleet) => ({ key: Buffer.from(revocationKey(target)), value: signRevocation(signer, target, { now: NOW }) });
const byId = (id: string): RevocationTarget => ({ credentialId: id });

it('loads at start what was checked and appended, and passes over what does not verify or decode, saying so', async () => {
  const logs = await logManager();
  const first = await RevocationStore.open(logs, fleet.publicKey, recording().logger);
  const log = logs.partition(REVOCATIONS_TOPIC, 0)!;
  const good = encodeBatch([recordOf(byId('aa01')), recordOf({ subject: generateIdentity().publicKey })]);
  first.apply(first.check(good));
  await log.append(good).durable;
  // Appended past `check`, as a changed fleet key or a bug would leave them: a record of
  // another fleet, and a plain batch flagged gzip (its CRC right, its records unreadable).
  await log.append(encodeBatch([recordOf(byId('bb02'), generateIdentity())])).durable;
  const flagged = encodeBatch([recordOf(byId('cc03'))]);
  flagged.writeInt16BE(flagged.readInt16BE(OFFSET_ATTRIBUTES) | 1, OFFSET_ATTRIBUTES);
  flagged.writeUInt32BE(computeCrc(flagged), OFFSET_CRC);
  await log.append(flagged).durable;
  await log.append(encodeBatch([recordOf(byId('dd04'))])).durable;

  const { logger, lines } = recording();
  const reopened = await RevocationStore.open(logs, fleet.publicKey, logger);
  expect(reopened.list.size).toBe(3);
  for (const id of ['aa01', 'dd04']) expect(reopened.list.find({ id, subject: generateIdentity().publicKey })).toBeDefined();
  for (const id of ['bb02', 'cc03']) expect(reopened.list.find({ id, subject: generateIdentity().publicKey })).toBeUndefined();
  expect(lines.filter((l) => l.level !== 'info' && l.level !== 'debug')).toEqual([
    { level: 'warn', fields: { offset: 2, reason: 'revocation refused: signed by another fleet' }, msg: 'skipped a revocation record that does not verify' },
    { level: 'error', fields: { offset: 3, err: expect.any(String) }, msg: 'a batch of __revocations cannot be decoded; its revocations are not applied' },
  ]);
  expect(lines.find((l) => l.msg === 'revocation list loaded')?.fields).toEqual({ revocations: 3, skipped: 1 });
});

it('without a fleet key nothing is loaded: nothing could be checked', async () => {
  const logs = await logManager();
  await RevocationStore.open(logs, fleet.publicKey, recording().logger);
  await logs.partition(REVOCATIONS_TOPIC, 0)!.append(encodeBatch([recordOf(byId('aa01'))])).durable;
  expect((await RevocationStore.open(logs, undefined, recording().logger)).list.size).toBe(0);
});
