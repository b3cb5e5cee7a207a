// `tributary service install`: writes a systemd unit that runs this install of the node as
// a service on a gateway, with the paths of the running Node.js binary and of this package,
// so an upgrade is "build the new version, install the unit again". It writes one file and
// prints the commands that start the service; it never runs systemctl itself.
// deploy/tributary.service is this unit for the defaults, /usr/bin/node and
// /opt/tributary/v1, the README's install (test/service.test.ts keeps the three equal).

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { writeFileDurably } from '../node-meta.js';
import { NODE_V8_FLAGS } from '../../simulator/child-node.js';

export const UNIT_NAME = 'tributary.service';

export interface UnitSettings {
  /** Absolute path of the Node.js binary. */
  node: string;
  /** Absolute path of this package's dist/node/cli/main.js. */
  main: string;
  user: string;
  config: string;
  dataDir: string;
}

export const UNIT_DEFAULTS = { user: 'tributary', config: '/etc/tributary/tributary.yaml', dataDir: '/var/lib/tributary', unitDir: '/etc/systemd/system' };

/** The unit file. Every line but the paths is fixed, so the template in deploy/ cannot drift. */
// V8 flags for the node process (npm start passes the same): see the unit's comment.
export { NODE_V8_FLAGS };

export function renderUnit(s: UnitSettings): string {
  // StateDirectory= makes the folder (owned by the user) before the first start; it only
  // names folders under /var/lib. Elsewhere the folder must exist already.
  const stateDir = s.dataDir.startsWith('/var/lib/') ? `StateDirectory=${s.dataDir.slice('/var/lib/'.length)}\nStateDirectoryMode=0750` : `# ${s.dataDir} is outside /var/lib: create it owned by ${s.user} before the first start.`;
  return `# Tributary node, written by \`tributary service install\`. Run that again (with --force)
# after an upgrade, so ExecStart names the new install; local changes belong in
# \`systemctl edit tributary\`, which an install leaves alone.
[Unit]
Description=Tributary edge event-streaming node
Wants=network-online.target
After=network-online.target

[Service]
# exec, not simple: \`systemctl start\` fails when the binary cannot be run at all.
Type=exec
User=${s.user}
Group=${s.user}
# For small gateways: one V8 helper thread, and V8's optimizing compiler only for code
# that runs hot under load (a 62 times larger interrupt budget), not for the code of the
# start. An idle node then stays under 70 MB, at the same throughput (bench/RESULTS.md,
# "footprint"). Semi-spaces of at most 16 MB (V8's 64-bit default, pinned): smaller ones
# made a node serving 10,000 devices spend 14-18% of its time in young-generation GC, and
# an idle node gives the space back. The old generation may grow to twice what survived
# the last full GC before the next: with V8's own choice (about 1.25 times under load) a
# node serving 10,000 devices ran a full GC every 7 s, each stalling every device for a
# quarter of a second; idle and start-up footprints are unchanged. They are V8 flags: a
# Node.js upgrade that drops one refuses to start, so check \`node --v8-options\` after
# upgrading Node.js.
ExecStart=${s.node} ${NODE_V8_FLAGS} ${s.main} start --config ${s.config}
# The sandbox below lets the node write only to its data folder, so the unit names it; this
# overrides dataDir in the config file.
Environment=TRIBUTARY_DATA=${s.dataDir}
WorkingDirectory=${s.dataDir}
${stateDir}
UMask=0027

# SIGTERM makes the node answer what is in progress, flush every partition and write the
# clean-shutdown marker, so the next start skips the recovery scan. Give it time on a slow
# SD card; past the timeout systemd kills it and the next start checks every partition's tail.
KillSignal=SIGTERM
TimeoutStopSec=90s
Restart=on-failure
RestartSec=5s
# Exit code 2 is a mistake in the configuration: restarting would not fix it.
RestartPreventExitStatus=2
# One open file per segment and index, one socket per client.
LimitNOFILE=65536
# A bound on the whole service (page cache included, which the kernel reclaims first), so a
# runaway node is restarted rather than pushing a 1 GB Raspberry Pi into the OOM killer for
# everything else. Raise it (systemctl edit tributary) with more clients or larger limits.
MemoryMax=512M

# Logs are JSON lines on stderr (stdout says where the node listens): the journal keeps both.
StandardOutput=journal
StandardError=journal
SyslogIdentifier=tributary

# Hardening: no privileges, the system read-only except the data folder. No
# MemoryDenyWriteExecute: V8 compiles JavaScript to machine code at run time.
NoNewPrivileges=true
CapabilityBoundingSet=
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
PrivateDevices=true
ReadWritePaths=${s.dataDir}
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true

[Install]
WantedBy=multi-user.target
`;
}

interface InstallFlags {
  user: string;
  config: string;
  data: string;
  unitDir: string;
  dryRun?: boolean;
  force?: boolean;
  /** False with --no-sandbox-check. */
  sandboxCheck: boolean;
}

export function registerServiceCommand(program: Command): void {
  const service = program.command('service').description('run this install as a systemd service (a gateway)');
  service
    .command('install')
    .description(`write a systemd unit (${UNIT_NAME}) that runs this install of the node, then print the commands that start it`)
    .option('--user <name>', 'system user the node runs as', UNIT_DEFAULTS.user)
    .option('--config <file>', 'config file the service reads', UNIT_DEFAULTS.config)
    .option('--data <dir>', 'data folder (the only place the service may write)', UNIT_DEFAULTS.dataDir)
    .option('--unit-dir <dir>', 'where to write the unit', UNIT_DEFAULTS.unitDir)
    .option('--dry-run', 'print the unit on stdout and write nothing')
    .option('--force', 'replace an existing unit that differs')
    .option('--no-sandbox-check', 'write the unit even where its sandbox hides Node.js, this install, the config or the data (for a drop-in that relaxes ProtectHome, PrivateTmp or PrivateDevices)')
    .action((flags: InstallFlags) => install(flags));
}

function install(flags: InstallFlags): void {
  const settings: UnitSettings = {
    node: realpathSync(process.execPath),
    main: realpathSync(fileURLToPath(new URL('./main.js', import.meta.url))),
    user: flags.user,
    config: flags.config,
    dataDir: flags.data.replace(/(.)\/+$/, '$1'),
  };
  checkSettings(settings, flags.sandboxCheck);
  const unit = renderUnit(settings);
  if (flags.dryRun) {
    process.stdout.write(unit);
    return;
  }
  const path = join(flags.unitDir, UNIT_NAME);
  if (!existsSync(flags.unitDir) || !statSync(flags.unitDir).isDirectory()) {
    throw new Error(`unit folder ${flags.unitDir} does not exist: is this a systemd machine? (--unit-dir chooses another)`);
  }
  const existing = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  if (existing === unit) {
    process.stdout.write(`${path} is already this unit; nothing written\n`);
  } else {
    if (existing !== undefined && !flags.force) {
      throw new Error(`${path} exists and differs from the unit for this install (another install, or edited by hand): --force replaces it, --dry-run shows the new one`);
    }
    try {
      writeFileDurably(flags.unitDir, path, unit, 0o644);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
        const who = process.getuid?.() === 0 ? '' : ': run it as root (sudo tributary service install), or choose --unit-dir';
        throw new Error(`cannot write ${path} (${code})${who}`);
      }
      throw err;
    }
    process.stdout.write(`wrote ${path}${existing !== undefined ? ' (replaced the previous unit)' : ''}\n`);
  }
  process.stdout.write(nextSteps(settings, existing !== undefined));
}

/**
 * Folders the unit's sandbox hides from the service, by the directive that hides them: code,
 * a config or data there is not what the service would see. (test/service.test.ts checks
 * that the unit sets each directive.)
 */
export const HIDDEN_FROM_SERVICE: readonly { directive: string; why: string; folders: readonly string[] }[] = [
  { directive: 'ProtectHome=true', why: 'ProtectHome', folders: ['/home', '/root', '/run/user'] },
  { directive: 'PrivateTmp=true', why: 'PrivateTmp: it has a /tmp and /var/tmp of its own', folders: ['/tmp', '/var/tmp'] },
  { directive: 'PrivateDevices=true', why: 'PrivateDevices: it has a /dev of its own', folders: ['/dev'] },
];

function hiddenBy(path: string): { folder: string; why: string } | undefined {
  for (const { why, folders } of HIDDEN_FROM_SERVICE) {
    const folder = folders.find((f) => path === f || path.startsWith(`${f}/`));
    if (folder !== undefined) return { folder, why };
  }
  return undefined;
}

/** Rejects what the unit cannot express or the sandbox would hide, with the reason. */
function checkSettings(s: UnitSettings, sandboxCheck: boolean): void {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(s.user)) throw new Error(`--user must be a system user name (lower case letters, digits, _ and -), got '${s.user}'`);
  for (const [what, path] of [['--config', s.config], ['--data', s.dataDir], ['the Node.js binary', s.node], ['this install', s.main]] as const) {
    if (!isAbsolute(path)) throw new Error(`${what} must be an absolute path, got '${path}'`);
    // systemd splits ExecStart at spaces and expands % and $; such paths would need quoting
    // rules that differ between directives.
    if (/[\s"'\\%$;]/.test(path)) throw new Error(`${what} path '${path}' has a space or one of "'\\%$; which a systemd unit cannot take as it is; move it`);
    // The unit would fail to start, or (a private /tmp) start on an empty folder of its own.
    // A symbolic link counts where it leads: that is what the service would open.
    const hidden = sandboxCheck ? (hiddenBy(path) ?? hiddenBy(existsSync(path) ? realpathSync(path) : path)) : undefined;
    if (hidden !== undefined) {
      throw new Error(
        `${what} is under ${hidden.folder} (${path}), which the service cannot see (${hidden.why}): install Node.js system-wide, the code in /opt and the data in /var/lib (see "Put it on a gateway" in the README), or give --no-sandbox-check if a drop-in of yours relaxes that directive`,
      );
    }
  }
  if (s.dataDir === '/') throw new Error('--data must be a folder of its own, not /');
}

function userExists(user: string): boolean {
  const r = spawnSync('getent', ['passwd', user], { encoding: 'utf8' });
  if (r.error === undefined) return r.status === 0;
  try {
    return readFileSync('/etc/passwd', 'utf8').split('\n').some((line) => line.startsWith(`${user}:`));
  } catch {
    return false;
  }
}

function nextSteps(s: UnitSettings, replaced: boolean): string {
  const steps: string[] = [];
  if (!userExists(s.user)) steps.push(`useradd --system --user-group --home-dir ${s.dataDir} --no-create-home --shell /usr/sbin/nologin ${s.user}`);
  if (!s.dataDir.startsWith('/var/lib/')) steps.push(`install -d -o ${s.user} -g ${s.user} -m 0750 ${s.dataDir}`);
  if (!existsSync(s.config)) steps.push(`# write ${s.config} (readable by ${s.user}), then check it as that user:`);
  steps.push(`runuser -u ${s.user} -- ${s.node} ${s.main} config check ${s.config}`);
  steps.push('systemctl daemon-reload');
  steps.push(replaced ? 'systemctl restart tributary' : 'systemctl enable --now tributary');
  steps.push('journalctl -u tributary -f');
  return `next, as root:\n${steps.map((l) => `  ${l}`).join('\n')}\n`;
}
