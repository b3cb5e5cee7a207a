import { describe, expect, it } from 'vitest';
import { Components, type Component } from './components.js';
import { silentLogger } from './logger.js';

function recorder(): { events: string[]; part: (name: string, fail?: 'start' | 'stop') => Component } {
  const events: string[] = [];
  return {
    events,
    part: (name, fail) => ({
      name,
      async start() {
        events.push(`start ${name}`);
        if (fail === 'start') throw new Error(`${name} cannot start`);
      },
      stop() {
        events.push(`stop ${name}`);
        if (fail === 'stop') throw new Error(`${name} cannot stop`);
      },
    }),
  };
}

describe('Components', () => {
  it('starts in list order and stops in the reverse order, once however often stop is asked', async () => {
    const { events, part } = recorder();
    const parts = new Components(silentLogger);
    await parts.start([part('storage'), part('groups'), part('listener')]);
    expect(parts.running).toEqual(['storage', 'groups', 'listener']);
    await Promise.all([parts.stop(), parts.stop()]);
    expect(events).toEqual(['start storage', 'start groups', 'start listener', 'stop listener', 'stop groups', 'stop storage']);
    expect(parts.running).toEqual([]);
  });

  it('stops what had started, newest first, when a start fails, and throws that failure', async () => {
    const { events, part } = recorder();
    const parts = new Components(silentLogger);
    await expect(parts.start([part('storage'), part('groups'), part('listener', 'start'), part('scheduler')])).rejects.toThrow('listener cannot start');
    expect(events).toEqual(['start storage', 'start groups', 'start listener', 'stop groups', 'stop storage']);
  });

  it('still stops the others when one stop fails, and throws the first failure after', async () => {
    const { events, part } = recorder();
    const parts = new Components(silentLogger);
    await parts.start([part('storage', 'stop'), part('scheduler', 'stop'), part('listener')]);
    await expect(parts.stop()).rejects.toThrow('scheduler cannot stop');
    expect(events.slice(3)).toEqual(['stop listener', 'stop scheduler', 'stop storage']);
  });
});
