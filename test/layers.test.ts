// The house's layers, read from the imports of every source file (tests and benchmarks
// aside: they may use anything). protocol/ stands on nothing of ours; node/ and devices/
// stand on protocol/ and never on each other; sync/ on protocol/ and the interfaces node/
// exposes (type imports only); the simulator on devices/ and protocol/ (it starts nodes by
// running the built command); the `tributary` command, node/cli/, composes everything and
// nothing imports it. No cycle of imports, type imports included: one file of types that
// imports the code it describes ties the two together as surely as a run-time cycle.

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/node-process.js';

const LAYERED = ['protocol', 'node', 'devices', 'sync', 'simulator'];

type Layer = 'protocol' | 'node' | 'cli' | 'devices' | 'sync' | 'simulator' | 'other';

/** What each layer may import at run time, and by type only. */
const MAY_IMPORT: Record<Exclude<Layer, 'other'>, { value: Layer[]; type: Layer[] }> = {
  protocol: { value: ['protocol'], type: ['protocol'] },
  node: { value: ['protocol', 'node'], type: ['protocol', 'node'] },
  devices: { value: ['protocol', 'devices'], type: ['protocol', 'devices'] },
  sync: { value: ['protocol', 'sync'], type: ['protocol', 'sync', 'node'] },
  simulator: { value: ['protocol', 'devices', 'simulator'], type: ['protocol', 'devices', 'simulator'] },
  cli: { value: ['protocol', 'node', 'cli', 'devices', 'sync', 'simulator'], type: ['protocol', 'node', 'cli', 'devices', 'sync', 'simulator'] },
};

function layerOf(file: string): Layer {
  if (file.startsWith('node/cli/')) return 'cli';
  const top = file.split('/')[0];
  return (LAYERED.includes(top) ? top : 'other') as Layer;
}

interface Import {
  from: string;
  to: string;
  typeOnly: boolean;
}

/** The relative imports of a source file, resolved to paths from the root (`.js` to `.ts`). */
export function importsOf(file: string, source: string): Import[] {
  const out: Import[] = [];
  // import x from '...'; import type {..} from '...'; export {..} from '...'; export * from '...'
  const statement = /^\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm;
  for (const m of source.matchAll(statement)) {
    const spec = m[3];
    if (!spec.startsWith('.')) continue;
    // `import { type A, type B } from` is type-only too.
    const names = /\{([^}]*)\}/.exec(m[0])?.[1];
    const allTyped = names !== undefined && names.split(',').every((n) => n.trim() === '' || n.trim().startsWith('type '));
    out.push({ from: file, to: resolve(file, spec), typeOnly: m[2] !== undefined || allTyped });
  }
  for (const m of source.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g)) out.push({ from: file, to: resolve(file, m[1]), typeOnly: false });
  return out;
}

function resolve(file: string, spec: string): string {
  return normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts');
}

/** Every wrong-way import and every import cycle among `files` (path from the root -> source). */
export function layerViolations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  const edges = new Map<string, string[]>();
  for (const [file, source] of files) {
    const from = layerOf(file);
    if (from === 'other') continue;
    for (const imp of importsOf(file, source)) {
      const to = layerOf(imp.to);
      const allowed = imp.typeOnly ? MAY_IMPORT[from].type : MAY_IMPORT[from].value;
      if (!allowed.includes(to)) problems.push(`${file} imports ${imp.to}${imp.typeOnly ? ' (type)' : ''}: ${from} may not import ${to === 'cli' ? 'node/cli' : to}`);
      edges.set(file, [...(edges.get(file) ?? []), imp.to]);
    }
  }
  for (const cycle of cycles(edges)) problems.push(`import cycle: ${cycle.join(' -> ')}`);
  return problems;
}

/** The cycles of a graph, each once, as paths that end where they begin. */
function cycles(edges: ReadonlyMap<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of edges.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of [...edges.keys()].sort()) if (!state.has(file)) visit(file);
  return found;
}

function sourceFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'testdata') walk(path);
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) {
        files.set(relative(ROOT, path), readFileSync(path, 'utf8'));
      }
    }
  };
  for (const top of LAYERED) {
    try {
      walk(join(ROOT, top));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // sync/ may not exist yet
    }
  }
  return files;
}

describe('the layers', () => {
  it('hold in this tree: no wrong-way import, no import cycle', () => {
    const files = sourceFiles();
    expect(files.size).toBeGreaterThan(100);
    expect(layerViolations(files)).toEqual([]);
  });

  it('are told apart: each wrong-way import and a cycle is named', () => {
    const files = new Map<string, string>([
      ['protocol/a.ts', "import { x } from '../node/broker.js';\n"],
      ['node/b.ts', "import { connect } from '../devices/index.js';\nimport type { Y } from '../protocol/a.js';\n"],
      ['devices/c.ts', "export { z } from '../node/cli/main.js';\n"],
      ['sync/d.ts', "import type { PartitionLog } from '../node/storage/partition-log.js';\nimport { LogManager } from '../node/storage/log-manager.js';\n"],
      ['simulator/e.ts', "const m = await import('../node/broker.js');\n"],
      ['node/cli/main.ts', "import { run } from '../../simulator/e.js';\nimport { f } from '../f.js';\n"],
      ['node/f.ts', "import { type G } from './g.js';\nimport { h } from './h.js';\n"],
      ['node/h.ts', "import { f } from './f.js';\n"],
      // A cycle through a type import is one too.
      ['node/i.ts', "import type { J } from './j.js';\n"],
      ['node/j.ts', "import { i } from './i.js';\n"],
    ]);
    expect(layerViolations(files)).toEqual([
      'protocol/a.ts imports node/broker.ts: protocol may not import node',
      'node/b.ts imports devices/index.ts: node may not import devices',
      'devices/c.ts imports node/cli/main.ts: devices may not import node/cli',
      'sync/d.ts imports node/storage/log-manager.ts: sync may not import node',
      'simulator/e.ts imports node/broker.ts: simulator may not import node',
      'import cycle: node/f.ts -> node/h.ts -> node/f.ts',
      'import cycle: node/i.ts -> node/j.ts -> node/i.ts',
    ]);
  });
});
