// `tributary service install` as an operator runs it (the built CLI), writing into a temp
// folder instead of /etc/systemd/system: the unit names this install, --dry-run writes
// nothing, a different unit is never replaced without --force, and the template in deploy/
// is exactly what the command writes, so the two cannot drift.

import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, readdirSync, readFileSync, realpathSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { HIDDEN_FROM_SERVICE, NODE_V8_FLAGS, UNIT_DEFAULTS } from '../node/cli/service.js';
import { CLI, ROOT, runCli, tempDir } from './helpers/node-process.js';

const NODE = realpathSync(process.execPath);
const MAIN = realpathSync(CLI);
// Names that exist on no machine, so the command prints how to create the user.
const USER = 'trib-svc-test-x';
const CONFIG = '/etc/tributary-test/node.yaml';
const DATA = '/var/lib/tributary-test';

function withUnitDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = tempDir('trib-unit-');
    try {
      await fn(dir.path);
    } finally {
      dir.remove();
    }
  };
}

/**
 * The checks of what the sandbox hides look at this checkout too, which may sit anywhere (a
 * temp folder, a home folder): the tests of what the unit says skip them; the tests of the
 * checks themselves (checked) keep them.
 */
const install = (unitDir: string, ...args: string[]) => runCli(['service', 'install', '--unit-dir', unitDir, '--no-sandbox-check', ...args]);
const checked = (unitDir: string, ...args: string[]) => runCli(['service', 'install', '--unit-dir', unitDir, ...args]);

function directives(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1], [...(out.get(m[1]) ?? []), m[2]]);
  }
  return out;
}

it('writes a unit that runs this install: this node binary, this main.js, the chosen user, config and data', withUnitDir(async (unitDir) => {
  const r = await install(unitDir, '--user', USER, '--config', CONFIG, '--data', DATA);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const path = join(unitDir, 'tributary.service');
  // Only the unit: the temp file it was written through is gone.
  expect(readdirSync(unitDir)).toEqual(['tributary.service']);
  expect(statSync(path).mode & 0o777).toBe(0o644);
  const d = directives(readFileSync(path, 'utf8'));
  expect(d.get('ExecStart')).toEqual([`${NODE} ${NODE_V8_FLAGS} ${MAIN} start --config ${CONFIG}`]);
  expect(d.get('User')).toEqual([USER]);
  expect(d.get('Group')).toEqual([USER]);
  expect(d.get('Environment')).toEqual([`TRIBUTARY_DATA=${DATA}`]);
  expect(d.get('WorkingDirectory')).toEqual([DATA]);
  expect(d.get('ReadWritePaths')).toEqual([DATA]);
  expect(d.get('StateDirectory')).toEqual(['tributary-test']);
  expect(d.get('KillSignal')).toEqual(['SIGTERM']);
  expect(d.get('Restart')).toEqual(['on-failure']);
  expect(d.get('RestartPreventExitStatus')).toEqual(['2']);
  expect(d.get('ProtectSystem')).toEqual(['strict']);
  // What to run next, in order: the user first, since the unit names it.
  expect(r.stdout).toContain(`wrote ${path}`);
  const steps = r.stdout.split('\n').map((l) => l.trim());
  const at = (prefix: string) => steps.findIndex((l) => l.startsWith(prefix));
  expect(at(`useradd --system`)).toBeGreaterThan(0);
  expect(steps[at('useradd')]).toMatch(new RegExp(`${USER}$`));
  expect(at('systemctl daemon-reload')).toBeGreaterThan(at('useradd'));
  expect(at('systemctl enable --now tributary')).toBeGreaterThan(at('systemctl daemon-reload'));
}));

it('a data folder outside /var/lib gets no StateDirectory, and the steps say to create it', withUnitDir(async (unitDir) => {
  const r = await install(unitDir, '--user', USER, '--data', '/srv/tributary/');
  expect(r.code).toBe(0);
  const d = directives(readFileSync(join(unitDir, 'tributary.service'), 'utf8'));
  expect(d.has('StateDirectory')).toBe(false);
  expect(d.get('ReadWritePaths')).toEqual(['/srv/tributary']);
  expect(r.stdout).toContain(`install -d -o ${USER} -g ${USER} -m 0750 /srv/tributary`);
}));

it('--dry-run prints the unit and writes nothing', withUnitDir(async (unitDir) => {
  const dry = await install(unitDir, '--dry-run', '--data', DATA);
  expect(dry.code).toBe(0);
  expect(readdirSync(unitDir)).toEqual([]);
  // What it printed is exactly what an install writes.
  expect((await install(unitDir, '--data', DATA)).code).toBe(0);
  expect(dry.stdout).toBe(readFileSync(join(unitDir, 'tributary.service'), 'utf8'));
}));

it('refuses to replace a different unit without --force, and leaves it as it was', withUnitDir(async (unitDir) => {
  const path = join(unitDir, 'tributary.service');
  expect((await install(unitDir, '--data', DATA)).code).toBe(0);
  const first = readFileSync(path, 'utf8');

  const again = await install(unitDir, '--data', DATA);
  expect(again.code).toBe(0);
  expect(again.stdout).toContain('already this unit; nothing written');

  const other = await install(unitDir, '--data', '/var/lib/elsewhere');
  expect(other.code).not.toBe(0);
  const lines = other.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^tributary: .*tributary\.service exists and differs .*--force replaces it/);
  expect(readFileSync(path, 'utf8')).toBe(first);

  const forced = await install(unitDir, '--data', '/var/lib/elsewhere', '--force');
  expect(forced.code).toBe(0);
  expect(forced.stdout).toContain('replaced the previous unit');
  expect(forced.stdout).toContain('systemctl restart tributary');
  expect(directives(readFileSync(path, 'utf8')).get('ReadWritePaths')).toEqual(['/var/lib/elsewhere']);
  expect(readdirSync(unitDir)).toEqual(['tributary.service']);
}));

/** Runs `run`, expects one line matching `message` and nothing written. */
async function expectRefused(run: (unitDir: string) => ReturnType<typeof install>, message: RegExp): Promise<void> {
  const dir = tempDir('trib-unit-');
  try {
    const r = await run(dir.path);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(readdirSync(dir.path)).toEqual([]);
  } finally {
    dir.remove();
  }
}

it.each([
  [['--config', 'tributary.yaml'], /--config must be an absolute path/],
  [['--data', '/var/lib/my data'], /--data path '\/var\/lib\/my data' has a space/],
  [['--data', '/var/lib/100%'], /has a space or one of/],
  [['--user', 'Root Admin'], /--user must be a system user name/],
  [['--unit-dir', '/nonexistent-unit-dir'], /unit folder \/nonexistent-unit-dir does not exist/],
])('refuses %j with one clear line', (args, message) => expectRefused((unitDir) => install(unitDir, ...args), message));

// --config and --data are checked before this checkout's own path, wherever it sits.
it.each([
  [['--data', '/home/pi/tributary'], /--data is under \/home .*ProtectHome/],
  [['--data', '/tmp/tributary'], /^tributary: --data is under \/tmp \(\/tmp\/tributary\), which the service cannot see \(PrivateTmp: it has a \/tmp and \/var\/tmp of its own\)/],
  [['--config', '/var/tmp/node.yaml'], /--config is under \/var\/tmp .*PrivateTmp/],
  [['--data', '/dev/shm/tributary'], /--data is under \/dev .*PrivateDevices/],
])('refuses %j, which the sandbox hides, with one clear line', (args, message) => expectRefused((unitDir) => checked(unitDir, ...args), message));

it('deploy/tributary.service is the unit the command writes for the defaults, paths aside', withUnitDir(async (unitDir) => {
  const r = await install(unitDir, '--dry-run');
  expect(r.code).toBe(0);
  const template = readFileSync(join(ROOT, 'deploy/tributary.service'), 'utf8');
  const generated = r.stdout.replaceAll(MAIN, '/opt/tributary/v1/dist/node/cli/main.js').replaceAll(NODE, '/usr/bin/node');
  // Directive by directive first, for a readable failure; then every byte, comments too.
  expect(Object.fromEntries(directives(generated))).toEqual(Object.fromEntries(directives(template)));
  expect(generated).toBe(template);
}));

// systemd's own checker (Debian package systemd; .ci/run installs it).
it('systemd-analyze verify finds nothing wrong with the unit', withUnitDir(async (unitDir) => {
  // The user must exist for verify; root does everywhere.
  expect((await install(unitDir, '--user', 'root', '--data', DATA)).code).toBe(0);
  const v = spawnSync('systemd-analyze', ['verify', join(unitDir, 'tributary.service')], { encoding: 'utf8', timeout: 20_000 });
  expect(v.stderr.split('\n').filter((l) => l.includes('tributary.service')), v.stderr).toEqual([]);
}));

it('npm start runs the node with the same V8 flags as the unit', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  expect(pkg.scripts.start).toBe(`node ${NODE_V8_FLAGS} dist/node/cli/main.js start`);
});

it('refuses to install code that sits where the sandbox hides it (a private /tmp)', async () => {
  // This install, copied under the temp folder: the unit would run code the service cannot see.
  const copy = tempDir('trib-install-');
  const unitDir = tempDir('trib-unit-');
  try {
    cpSync(join(ROOT, 'dist'), join(copy.path, 'dist'), { recursive: true });
    copyFileSync(join(ROOT, 'package.json'), join(copy.path, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(copy.path, 'node_modules'));
    const r = spawnSync(process.execPath, [join(copy.path, 'dist/node/cli/main.js'), 'service', 'install', '--unit-dir', unitDir.path], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^tributary: this install is under /tmp \\(${realpathSync(copy.path)}/dist/node/cli/main\\.js\\), which the service cannot see \\(PrivateTmp[^\\n]*\\n$`));
    expect(readdirSync(unitDir.path)).toEqual([]);
    // Unless the operator says a drop-in of theirs relaxes the sandbox.
    const relaxed = spawnSync(process.execPath, [join(copy.path, 'dist/node/cli/main.js'), 'service', 'install', '--unit-dir', unitDir.path, '--no-sandbox-check'], { encoding: 'utf8', timeout: 20_000 });
    expect(relaxed.status, relaxed.stderr).toBe(0);
    expect(readFileSync(join(unitDir.path, 'tributary.service'), 'utf8')).toContain(`${realpathSync(copy.path)}/dist/node/cli/main.js start`);
  } finally {
    copy.remove();
    unitDir.remove();
  }
});

it('every sandbox directive the install checks against is one the unit sets', async () => {
  const r = await runCli(['service', 'install', '--dry-run', '--no-sandbox-check']);
  const set = r.stdout.split('\n');
  for (const { directive } of HIDDEN_FROM_SERVICE) expect(set, directive).toContain(directive);
});

/** The text of the README's section `## heading`. */
function readmeSection(heading: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

function match(text: string, pattern: RegExp): string {
  const m = pattern.exec(text);
  expect(m, String(pattern)).not.toBeNull();
  return (m as RegExpExecArray)[1];
}

it('the README\'s "Put it on a gateway", deploy/tributary.service and the install defaults name the same paths and settings', () => {
  const readme = readmeSection('Put it on a gateway');
  const unit = directives(readFileSync(join(ROOT, 'deploy/tributary.service'), 'utf8'));
  // What the README has the operator make.
  const code = match(readme, /sudo git clone <repository URL> (\S+)\n/);
  const config = match(readme, /sudoedit (\S+)/);
  const dataDir = match(readme, /^\s+dataDir: (\S+)$/m);
  const user = match(readme, /--shell \/usr\/sbin\/nologin (\S+)/);
  const home = match(readme, /useradd --system --user-group --home-dir (\S+)/);
  const unitFile = match(readme, /`service install` writes `([^`]+)`/);
  // What it says the unit runs and does.
  const runs = match(readme, /The unit runs `node ([^`]+)`/);
  expect(readme).toContain(`with the data folder\n   \`${dataDir}\``);

  expect(unit.get('ExecStart')).toEqual([`/usr/bin/node ${NODE_V8_FLAGS} ${code}/${runs}`]);
  expect(runs).toBe(`dist/node/cli/main.js start --config ${config}`);
  expect(unit.get('User')).toEqual([user]);
  expect(unit.get('ReadWritePaths')).toEqual([dataDir]);
  expect(unit.get('Environment')).toEqual([`TRIBUTARY_DATA=${dataDir}`]);
  expect(unit.get('WorkingDirectory')).toEqual([dataDir]);
  expect(home).toBe(dataDir);
  expect(UNIT_DEFAULTS).toMatchObject({ user, config, dataDir });
  expect(join(UNIT_DEFAULTS.unitDir, 'tributary.service')).toBe(unitFile);
  // The behaviour it promises.
  expect(readme).toMatch(/restarts the node 5 s after a failure but not after a configuration mistake \(exit code\s+2\), gives a stop 90 s to flush, caps memory at 512 MB/);
  expect(unit.get('RestartSec')).toEqual(['5s']);
  expect(unit.get('RestartPreventExitStatus')).toEqual(['2']);
  expect(unit.get('TimeoutStopSec')).toEqual(['90s']);
  expect(unit.get('MemoryMax')).toEqual(['512M']);
  expect(readme).toContain('no access to `/home`, a `/tmp` of its own');
  expect(unit.get('ProtectHome')).toEqual(['true']);
  expect(unit.get('PrivateTmp')).toEqual(['true']);
});
