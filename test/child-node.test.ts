// startChildNode, under the simulator, the benchmarks and every test that kills a node:
// it resolves once the node listens, says why when it does not, and leaves nothing running.

import { afterEach, describe, expect, it } from 'vitest';
import { startChildNode } from '../simulator/child-node.js';
import { CLI, tempDir } from './helpers/node-process.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function dataDir(): string {
  const dir = tempDir();
  cleanups.push(() => dir.remove());
  return dir.path;
}

describe('startChildNode', () => {
  it('resolves with the URL the node listens on, and stop() ends it cleanly', async () => {
    const node = await startChildNode({ cli: CLI, args: ['--data', dataDir(), '--port', '0', '--log-level', 'warn'] });
    expect(node.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(node.port).toBe(Number(new URL(node.url).port));
    expect(node.output()).toContain(`listening on ${node.url}`);
    expect(await node.stop(10_000)).toBe(0);
  });

  it('rejects with the exit code and the output when the node exits before listening', async () => {
    await expect(startChildNode({ cli: CLI, args: ['--data', dataDir(), '--port', 'not-a-port'] })).rejects.toThrow(/the node exited with 2 before listening:\n[^]*port/);
  });

  it('kills a node that does not listen within the start timeout', async () => {
    let killedBy: Promise<NodeJS.Signals | null> = Promise.resolve(null);
    const starting = startChildNode({
      cli: CLI,
      args: ['--data', dataDir(), '--port', '0'],
      startTimeoutMs: 1,
      onSpawn: (proc) => {
        cleanups.push(() => proc.kill('SIGKILL'));
        killedBy = new Promise((resolve) => proc.once('exit', (_code, signal) => resolve(signal)));
      },
    });
    await expect(starting).rejects.toThrow(/^the node did not start within 1 ms/);
    expect(await killedBy).toBe('SIGKILL');
  });
});
