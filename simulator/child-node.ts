// Starts a node (the built `tributary start`) as a child process and waits until it
// listens: the simulator's own node, the benchmarks' nodes, and tests that kill nodes. It
// runs the command, never imports the node: the simulator stands on devices/ and protocol/.

import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built `tributary` command beside this file's build: dist/simulator/ and dist/node/cli/. */
export const NODE_CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'node', 'cli', 'main.js');
/**
 * V8 flags for the node process: `npm start` and the systemd unit pass the same (the unit's
 * comment in node/cli/service.ts says why each), and so do the simulator's and the
 * benchmarks' nodes, so that they measure the node as it runs.
 */
export const NODE_V8_FLAGS = '--max-semi-space-size=16 --heap-growing-percent=100 --v8-pool-size=1 --interrupt-budget=4194304';
/** The tail of the node's stdout and stderr that is kept, for error messages. */
const OUTPUT_KEPT_BYTES = 256 * 1024;
const START_TIMEOUT_MS_DEFAULT = 20_000;

export interface ChildNodeOptions {
  /** The CLI script; default this build's. Tests that run from source pass the built one. */
  cli?: string;
  /** What follows `start`: --data, --port, --config and so on. */
  args: readonly string[];
  /** Node.js options before the script, such as NODE_V8_FLAGS. */
  nodeOptions?: readonly string[];
  /** A command the node runs under (e.g. nsenter into a mount namespace); it must exec the node. */
  wrap?: readonly string[];
  /** Default 20 s; past it the node is killed and the start fails. */
  startTimeoutMs?: number;
  /** Called at once with the process, so that a caller can track it for cleanup. */
  onSpawn?: (proc: ChildProcess) => void;
}

export interface ChildNode {
  readonly proc: ChildProcess;
  readonly url: string;
  readonly port: number;
  /** The last 256 KiB of its stdout and stderr. */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM and wait: the clean path; SIGKILL after `killAfterMs` if given. Resolves with the exit code. */
  stop(killAfterMs?: number): Promise<number | null>;
  /** SIGKILL and wait: the crash path. */
  kill(): Promise<void>;
}

export async function startChildNode(options: ChildNodeOptions): Promise<ChildNode> {
  const argv = [...(options.nodeOptions ?? []), options.cli ?? NODE_CLI, 'start', ...options.args];
  const wrap = options.wrap ?? [];
  const stdio: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
  const proc = wrap.length > 0 ? spawn(wrap[0], [...wrap.slice(1), process.execPath, ...argv], { stdio }) : spawn(process.execPath, argv, { stdio });
  options.onSpawn?.(proc);
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-OUTPUT_KEPT_BYTES));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const timeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS_DEFAULT;
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the node did not start within ${timeoutMs} ms:\n${out}`)), timeoutMs);
      const check = () => {
        const m = /listening on (ws:\/\/\S+)/.exec(out);
        if (m === null) return;
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        resolve(m[1]);
      };
      proc.stdout!.on('data', check);
      proc.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the node exited with ${code} before listening:\n${out}`));
      });
    });
  } catch (err) {
    // A node that did not come up is not left running behind the error.
    proc.kill('SIGKILL');
    throw err;
  }
  return {
    proc,
    url,
    port: Number(new URL(url).port),
    output: () => out,
    exited,
    async stop(killAfterMs?: number) {
      proc.kill('SIGTERM');
      const forced = killAfterMs === undefined ? undefined : setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
      const code = await exited;
      clearTimeout(forced);
      return code;
    },
    async kill() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
