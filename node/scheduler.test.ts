import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';
import { Scheduler } from './scheduler.js';
import { until } from '../test/helpers/until.js';

const schedulers: Scheduler[] = [];
let lines: string[] = [];

function scheduler(): Scheduler {
  lines = [];
  const s = new Scheduler(createLogger({ level: 'debug', pretty: false, write: (line) => lines.push(line) }));
  schedulers.push(s);
  return s;
}

afterEach(async () => {
  for (const s of schedulers.splice(0)) await s.stop();
});

function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

// Far from now, so cron never fires during a test that drives the job by hand.
const YEARLY = '0 0 0 1 1 *';

describe('scheduler', () => {
  it('refuses an invalid schedule and a second job of the same name', () => {
    const s = scheduler();
    expect(() => s.add({ name: 'a', schedule: 'every minute', run: async () => {} })).toThrow(/invalid schedule/);
    s.add({ name: 'a', schedule: YEARLY, run: async () => {} });
    expect(() => s.add({ name: 'a', schedule: YEARLY, run: async () => {} })).toThrow(/already scheduled/);
  });

  it('never overlaps a job with itself: a second run joins the one in progress', async () => {
    const s = scheduler();
    let started = 0;
    const g = gate();
    s.add({
      name: 'slow',
      schedule: YEARLY,
      run: async () => {
        started++;
        await g.wait;
      },
    });
    const first = s.runNow('slow');
    const second = s.runNow('slow');
    expect(second).toBe(first);
    await new Promise((r) => setImmediate(r));
    expect(started).toBe(1);
    expect(s.stats()[0]).toMatchObject({ running: true, runs: 0 });
    g.open();
    await first;
    expect(s.stats()[0]).toMatchObject({ running: false, runs: 1 });
    await s.runNow('slow');
    expect(started).toBe(2);
  });

  it('skips cron turns that find the job still running, and counts them', async () => {
    const s = scheduler();
    let started = 0;
    const g = gate();
    s.add({
      name: 'every-second',
      schedule: '* * * * * *',
      run: async () => {
        started++;
        await g.wait;
      },
    });
    // Wait (bounded) until cron has started the job and then skipped at least one turn.
    await until(() => s.stats()[0].skipped > 0, 'a skipped cron turn', { intervalMs: 50 });
    expect(started).toBe(1);
    expect(s.stats()[0].skipped).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('this turn skipped'))).toBe(true);
    g.open();
  });

  it('counts and logs a failing job, and runs it again next time', async () => {
    const s = scheduler();
    let calls = 0;
    s.add({
      name: 'flaky',
      schedule: YEARLY,
      run: () => {
        calls++;
        if (calls === 1) throw new Error('disk on fire');
        return Promise.resolve();
      },
    });
    await s.runNow('flaky');
    expect(s.stats()[0]).toMatchObject({ failures: 1, runs: 0, lastError: 'disk on fire' });
    expect(lines.some((l) => l.includes('background job failed') && l.includes('disk on fire'))).toBe(true);
    await s.runNow('flaky');
    expect(s.stats()[0]).toMatchObject({ failures: 1, runs: 1 });
  });

  it('stop waits for runs in progress and nothing runs after it', async () => {
    const s = scheduler();
    const order: string[] = [];
    let started = 0;
    const g = gate();
    s.add({
      name: 'job',
      schedule: YEARLY,
      run: async () => {
        started++;
        await g.wait;
        order.push('run finished');
      },
    });
    void s.runNow('job');
    await new Promise((r) => setImmediate(r));
    const stopping = s.stop().then(() => order.push('stopped'));
    // A stop that did not wait would settle within this turn of the event loop.
    await new Promise((r) => setImmediate(r));
    g.open();
    await stopping;
    expect(order).toEqual(['run finished', 'stopped']);
    await s.runNow('job');
    expect(started).toBe(1);
  });
});
