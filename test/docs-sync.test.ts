// The operator's documents name what the code has: every limit in `limits` has a row in
// docs/configuration.md with its default, and every metric a node serves has a row in
// docs/metrics.md. A limit added without its row, or a metric renamed, fails here.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../node/config.js';
import { startBroker } from '../node/broker.js';
import { silentLogger } from '../node/logger.js';

const read = (doc: string) => readFileSync(new URL(`../docs/${doc}`, import.meta.url), 'utf8');

/** The rows of the markdown table under `## heading`, by the first cell's `name`. */
function tableRows(text: string, heading: string): Map<string, string[]> {
  const start = text.indexOf(`\n## ${heading}\n`);
  expect(start, `section ${heading}`).toBeGreaterThanOrEqual(0);
  const end = text.indexOf('\n## ', start + 1);
  const rows = new Map<string, string[]>();
  for (const line of text.slice(start, end < 0 ? undefined : end).split('\n')) {
    const m = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (m) rows.set(m[1], m[2].split('|').map((c) => c.trim()));
  }
  return rows;
}

describe('the documents name what the code has', () => {
  it('every limit has a row in docs/configuration.md, with its default', () => {
    const rows = tableRows(read('configuration.md'), '`limits`');
    for (const [key, value] of Object.entries(DEFAULT_LIMITS)) {
      const row = rows.get(key);
      expect(row, `limits.${key} has no row`).toBeDefined();
      const shown = (row as string[])[0];
      if (typeof value === 'number') {
        const mib = value / (1024 * 1024);
        const kib = value / 1024;
        const forms = [String(value), `${mib} MiB`, `${kib} KiB`];
        expect(forms.some((f) => shown === f), `limits.${key}: default shown as ${shown}, is ${value}`).toBe(true);
      }
    }
    for (const key of rows.keys()) expect(Object.keys(DEFAULT_LIMITS), `row ${key} names no limit`).toContain(key);
  });

  it('every metric a node serves has a row in docs/metrics.md', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tributary-docs-'));
    const broker = await startBroker({ dataDir, port: 0, logger: silentLogger, storage: { maxBytes: 1 << 30 } });
    try {
      const text = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
      const served = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
      expect(served.size).toBeGreaterThan(30);
      const documented = read('metrics.md');
      const missing = [...served].filter((name) => !documented.includes(`\`${name}\``));
      expect(missing).toEqual([]);
    } finally {
      await broker.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
