// The SDK as another project uses it (README, "Use it from your project"): this package
// packed with `npm pack`, installed into a new project outside the repository, and
// installed from its folder; then `import { connect } from 'tributary/devices'` runs
// against a real node, and a TypeScript file that imports it type-checks against the
// shipped declarations.
//
// No network: the new project gets a lockfile made from this repository's, holding the
// runtime dependencies only, so `npm ci --offline` takes every tarball from the npm cache
// that installing this repository filled (a lockfile spares npm the registry's package
// lists, which that install never fetched). The tarball's own contents, scripts and types
// are what is under test, and the ws it brings is the registry's, without this
// repository's speed patch.

import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { ensureBuiltCli } from '../devices/testing/built-cli.js';
import { ROOT, runProcess, startNodeProcess, stopAllNodes, tempDir, type CliRun } from './helpers/node-process.js';

const STEP_TIMEOUT_MS = 60_000;
/** What the tarball may not hold: tests, test helpers, benchmarks, source maps, the ws patch. */
const NOT_SHIPPED = /\.test\.|\/testing[./]|\/testdata\/|^dist\/bench\/|\.map$|^protocol\/|^test\//;

const dir = tempDir('trib-sdk-outside-');
let tarball = '';
let shipped: string[] = [];

afterEach(stopAllNodes);
afterAll(() => dir.remove());

/** Runs a program in `cwd`, bounded in time; never left running. */
function exec(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<CliRun> {
  return runProcess(command, args, { cwd, env, timeoutMs: STEP_TIMEOUT_MS });
}

async function ok(command: string, args: string[], cwd: string): Promise<string> {
  const r = await exec(command, args, cwd);
  expect(r.code, `${command} ${args.join(' ')}:\n${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Where npm keeps its cache and settings: the only npm_* variables a parent npm (`npm test`) passes on that are kept. */
const NPM_KEPT = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig']);

/**
 * npm as a project outside this repository runs it. The npm_* variables of a parent npm
 * name this repository (npm_config_local_prefix would make the child install into it).
 */
function npm(args: string[], cwd: string): Promise<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_') || NPM_KEPT.has(name.toLowerCase())));
  return exec('npm', args, cwd, env).then((r) => {
    expect(r.code, `npm ${args.join(' ')}:\n${r.stdout}${r.stderr}`).toBe(0);
    return r.stdout;
  });
}

/** A new project folder with this package.json (and `private`, ESM). */
function project(name: string, manifest: Record<string, unknown> = {}): string {
  const path = join(dir.path, name);
  mkdirSync(path);
  writeFileSync(join(path, 'package.json'), `${JSON.stringify({ name, private: true, type: 'module', ...manifest }, null, 2)}\n`);
  return path;
}

/**
 * The lockfile of a project depending on the tarball: this repository's entries for its
 * runtime dependencies (a dev-only entry is dropped; one shared by dev and optional paths
 * stays, as optional), beside the tarball itself.
 */
function lockfileFor(name: string, spec: string, tarballPath: string): string {
  const ours = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown> & { scripts: Record<string, string> };
  // npm ci runs a package's install scripts only if its lockfile entry says it has some.
  const hasInstallScript = ['preinstall', 'install', 'postinstall'].some((s) => s in manifest.scripts);
  const packages: Record<string, unknown> = {
    '': { name, dependencies: { tributary: spec } },
    'node_modules/tributary': {
      version: manifest.version,
      resolved: spec,
      integrity: `sha512-${createHash('sha512').update(readFileSync(tarballPath)).digest('base64')}`,
      license: manifest.license,
      dependencies: manifest.dependencies,
      bin: manifest.bin,
      engines: manifest.engines,
      ...(hasInstallScript ? { hasInstallScript } : {}),
    },
  };
  for (const [path, entry] of Object.entries(ours.packages)) {
    if (path === '' || entry.dev === true || entry.link === true) continue;
    const { devOptional, ...rest } = entry;
    packages[path] = devOptional === true ? { ...rest, optional: true } : rest;
  }
  return `${JSON.stringify({ name, lockfileVersion: 3, requires: true, packages }, null, 2)}\n`;
}

/** The program a user of the SDK writes (README, The SDK): a topic, one record out and back. */
const PROGRAM = `import { connect } from 'tributary/devices';

const tb = await connect(process.argv[2], { clientId: 'sdk-user' });
await tb.admin().createTopic(process.argv[3], { partitions: 1 });
const producer = tb.producer({ lingerMs: 5 });
const { partition, offset } = await producer.send(process.argv[3], { key: 'dev-1', value: { celsius: 21.5 } });
const consumer = tb.consumer({ valueDecoding: 'auto' });
consumer.assign([{ topic: process.argv[3], partition, offset }]);
for await (const record of consumer) {
  console.log(JSON.stringify({ key: record.key?.toString(), value: record.value, offset: record.offset }));
  break;
}
await tb.close();
`;

/** A TypeScript user of the SDK: it compiles only if the shipped declarations are real. */
const TYPED_PROGRAM = `import { connect } from 'tributary/devices';

const tb = await connect('ws://127.0.0.1:7400/v1', { clientId: 'typed' });
const sent: { partition: number; offset: number } = await tb.producer().send('sensors', { value: 'x' });
// @ts-expect-error partitions is a number: with no types (any) this line would not be an error
await tb.admin().createTopic('sensors', { partitions: '3' });
console.log(sent.offset);
await tb.close();
`;

beforeAll(async () => {
  ensureBuiltCli();
  // The declarations are part of the build; a dist/ from before they were emitted is rebuilt.
  if (!existsSync(join(ROOT, 'dist/devices/index.d.ts'))) await ok(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], ROOT);
  // --ignore-scripts: `prepare` (the ws patch and the build) already ran for this checkout.
  const packed = JSON.parse(await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', dir.path], ROOT)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(dir.path, packed[0].filename);
  shipped = packed[0].files.map((f) => f.path);
}, 120_000);

it('packs dist/ with its declarations and README, no tests, and no install script to run in a project', () => {
  expect(shipped).toEqual(expect.arrayContaining(['README.md', 'package.json', 'dist/devices/index.js', 'dist/devices/index.d.ts', 'dist/node/cli/main.js']));
  expect(shipped.filter((path) => NOT_SHIPPED.test(path))).toEqual([]);
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  // npm runs these in the project that installs the package, where patch-package (a dev
  // dependency) and the patch are absent.
  expect(Object.keys(manifest.scripts).filter((s) => ['preinstall', 'install', 'postinstall'].includes(s))).toEqual([]);
});

it('installs from the npm pack tarball: the SDK connects, produces and consumes with the registry ws, and type-checks', async () => {
  const spec = `file:${tarball}`;
  // The override is this repository's, so that the lockfile's tree is the one tested here.
  const { overrides } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { overrides: unknown };
  const app = project('sdk-user', { dependencies: { tributary: spec }, overrides });
  writeFileSync(join(app, 'package-lock.json'), lockfileFor('sdk-user', spec, tarball));
  await npm(['ci', '--offline', '--no-audit', '--no-fund'], app);
  // The ws a project gets is the registry's, without this repository's patch to its receiver.
  expect(readFileSync(join(app, 'node_modules/ws/lib/receiver.js'), 'utf8')).not.toContain('_singleFragment');

  const node = await startNodeProcess({ dataDir: join(dir.path, 'data') });
  writeFileSync(join(app, 'program.mjs'), PROGRAM);
  const printed = await ok(process.execPath, ['program.mjs', node.url, 'from-a-tarball'], app);
  expect(JSON.parse(printed)).toEqual({ key: 'dev-1', value: { celsius: 21.5 }, offset: 0 });

  writeFileSync(join(app, 'typed.ts'), TYPED_PROGRAM);
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')] },
      files: ['typed.ts'],
    }),
  );
  await ok(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);
});

it('installs from the repository folder (a link to it), and the SDK runs from there', async () => {
  const app = project('sdk-linked');
  // --ignore-scripts: npm would run the folder's `prepare` (the build) in this checkout,
  // under the feet of the tests running beside this one.
  await npm(['install', '--offline', '--ignore-scripts', '--no-audit', '--no-fund', ROOT], app);
  expect(lstatSync(join(app, 'node_modules/tributary')).isSymbolicLink()).toBe(true);
  const node = await startNodeProcess({ dataDir: join(dir.path, 'data-linked') });
  writeFileSync(join(app, 'program.mjs'), PROGRAM);
  const printed = await ok(process.execPath, ['program.mjs', node.url, 'from-a-folder'], app);
  expect(JSON.parse(printed)).toEqual({ key: 'dev-1', value: { celsius: 21.5 }, offset: 0 });
});
