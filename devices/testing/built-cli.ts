// The built `tributary` entry point for tests that spawn it. Builds dist/ when it is missing
// or older than the sources it runs (`npm test` builds first, so this only matters when
// vitest runs alone). Test files run in parallel workers: a lock directory makes one build
// at a time, and a worker that waited checks again instead of building twice, so no test
// spawns the CLI while tsc is rewriting it.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI_ENTRY = join(root, 'dist/node/cli/main.js');
const LOCK = join(tmpdir(), `tributary-build-${Buffer.from(root).toString('hex').slice(-32)}.lock`);
/** A lock older than this was left by a killed worker. */
const LOCK_STALE_MS = 300_000;
const BUILD_TIMEOUT_MS = 240_000;

/** Newest modification time of the .ts sources under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function isFresh(): boolean {
  const sources = Math.max(...['devices', 'node', 'protocol'].map((d) => newestSource(join(root, d))));
  const outputs = [CLI_ENTRY, join(root, 'dist/devices/cli/index.js')];
  return outputs.every((o) => existsSync(o) && statSync(o).mtimeMs >= sources);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function takeLock(): void {
  for (const deadline = Date.now() + BUILD_TIMEOUT_MS + LOCK_STALE_MS; Date.now() < deadline; sleep(200)) {
    try {
      mkdirSync(LOCK);
      return;
    } catch {
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > LOCK_STALE_MS) rmdirSync(LOCK);
      } catch {
        // released meanwhile: try again
      }
    }
  }
  throw new Error(`could not take the build lock ${LOCK}`);
}

/** Returns the path of the built CLI, building it first when needed. */
export function ensureBuiltCli(): string {
  if (isFresh()) return CLI_ENTRY;
  takeLock();
  try {
    if (isFresh()) return CLI_ENTRY; // another worker built it while we waited
    const build = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], {
      encoding: 'utf8',
      timeout: BUILD_TIMEOUT_MS,
    });
    if (build.status !== 0) throw new Error(`build failed:\n${build.stdout}${build.stderr}`);
    return CLI_ENTRY;
  } finally {
    rmdirSync(LOCK);
  }
}
