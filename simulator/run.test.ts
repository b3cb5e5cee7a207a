import { describe, expect, it } from 'vitest';
import { WORKER_SEMI_SPACE_MIB, workerExecArgv } from './run.js';

describe('workerExecArgv', () => {
  it("adds the workers' young-generation size to the simulator's own flags", () => {
    const own = ['--enable-source-maps', '--cpu-prof'];
    expect(workerExecArgv(own)).toEqual(['--enable-source-maps', '--cpu-prof', `--max-semi-space-size=${WORKER_SEMI_SPACE_MIB}`]);
    expect(own).toHaveLength(2);
  });

  it('keeps a young-generation size the simulator was started with, in either spelling', () => {
    expect(workerExecArgv(['--max-semi-space-size=8'])).toEqual(['--max-semi-space-size=8']);
    expect(workerExecArgv(['--max-semi-space-size', '8'])).toEqual(['--max-semi-space-size', '8']);
  });
});
