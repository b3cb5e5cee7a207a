// A node the simulator runs itself: the built `tributary start` as a child process in a temp
// data folder, so the scenario can SIGKILL it and start it again on the same folder and port,
// and the run can sample its memory and CPU from /proc.

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeKeyFile, generateIdentity, type IdentityKeyPair } from '../protocol/key-file.js';
import { issueCredential } from '../protocol/credential.js';
import { NODE_V8_FLAGS, startChildNode } from './child-node.js';

const START_TIMEOUT_MS = 30_000;
/** Connections beyond the devices': admin, verifier members, and sockets still closing after a reconnect storm. */
const CONNECTIONS_SPARE = 256;
/** Linux's USER_HZ: /proc times are in these ticks on every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

export interface FleetKeys {
  fleet: IdentityKeyPair;
  /** An admin credential for the run's own clients (topic creation, the verifier). */
  admin: { identity: IdentityKeyPair; credential: Buffer };
}

export class LocalNode {
  readonly dataDir: string;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private port = 0;
  private url_ = '';
  private lastCpu: { ticks: number; atMs: number } | null = null;

  private constructor(private readonly fleet: FleetKeys | null, connectionsMax: number) {
    this.dataDir = mkdtempSync(join(tmpdir(), 'tributary-sim-'));
    // The node's default connectionsMax (1024) is a gateway's; a simulated fleet needs one
    // connection per device, plus the run's own (admin, verifier). A config file makes the
    // node require credentials unless it says otherwise, so dev mode is spelled out.
    const config = { limits: { connectionsMax }, auth: { anonymous: fleet ? 'none' : 'loopback' } };
    writeFileSync(join(this.dataDir, 'sim-node.yaml'), `${JSON.stringify(config)}\n`);
  }

  /**
   * A node for `devices` devices; in fleet mode also a fleet (key pair, a node identity and
   * credential, an admin credential for the run's own clients) in the temp folder.
   */
  static create(fleetMode: boolean, devices: number): LocalNode {
    const connectionsMax = devices + CONNECTIONS_SPARE;
    if (!fleetMode) return new LocalNode(null, connectionsMax);
    const fleet = generateIdentity();
    const adminIdentity = generateIdentity();
    const expiresAt = Date.now() + 7 * 24 * 3600_000;
    const admin = { identity: adminIdentity, credential: issueCredential(fleet, { subject: adminIdentity.publicKey, role: 'admin', produce: ['*'], consume: ['*'], expiresAt }) };
    const node = new LocalNode({ fleet, admin }, connectionsMax);
    const nodeIdentity = generateIdentity();
    writeFileSync(join(node.dataDir, 'sim-node.key'), encodeKeyFile(nodeIdentity), { mode: 0o600 });
    writeFileSync(join(node.dataDir, 'sim-node.cred'), issueCredential(fleet, { subject: nodeIdentity.publicKey, role: 'node', produce: [], consume: [], expiresAt }), { mode: 0o600 });
    return node;
  }

  get url(): string {
    return this.url_;
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get isRunning(): boolean {
    return this.proc !== null;
  }

  get fleetKeys(): FleetKeys | null {
    return this.fleet;
  }

  /** Starts the node; the first start picks a free port, restarts take the same one. */
  async start(): Promise<void> {
    const args = ['--data', join(this.dataDir, 'data'), '--port', String(this.port), '--log-level', 'warn', '--config', join(this.dataDir, 'sim-node.yaml')];
    if (this.fleet) {
      args.push('--fleet-key', this.fleet.fleet.publicKey.toString('hex'), '--identity', join(this.dataDir, 'sim-node.key'), '--credential', join(this.dataDir, 'sim-node.cred'));
    }
    // The node as npm start and the systemd unit run it; TRIBUTARY_SIM_NODE_FLAGS replaces
    // the V8 flags (e.g. to add --cpu-prof).
    const nodeOptions = (process.env.TRIBUTARY_SIM_NODE_FLAGS ?? NODE_V8_FLAGS).split(' ').filter((f) => f !== '');
    const child = await startChildNode({
      args,
      nodeOptions,
      startTimeoutMs: START_TIMEOUT_MS,
      // Known from the spawn on, so that an interrupted run kills a node still starting.
      onSpawn: (proc) => {
        this.proc = proc;
        this.lastCpu = null;
        this.exited = new Promise((r) => proc.once('exit', () => {
          if (this.proc === proc) this.proc = null;
          r();
        }));
      },
    });
    this.url_ = child.url;
    this.port = child.port;
  }

  /** The crash path: SIGKILL, no chance to flush or close anything. */
  async kill(): Promise<void> {
    if (!this.proc) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** The clean path, then the temp folder goes. */
  async stopAndRemove(): Promise<void> {
    if (this.proc) {
      const proc = this.proc;
      proc.kill('SIGTERM');
      const forced = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(forced);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** RSS (MiB) and CPU (% of one core since the previous call) from /proc; nulls when unknown. */
  sampleResources(): { rssMiB: number | null; cpuPercent: number | null } {
    const pid = this.pid;
    if (pid === null) return { rssMiB: null, cpuPercent: null };
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      // Fields after the command name (which may hold spaces, hence the last ')'): utime is 14th, stime 15th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      const now = performance.now();
      let cpuPercent: number | null = null;
      if (this.lastCpu) cpuPercent = Math.round((((ticks - this.lastCpu.ticks) / CLOCK_TICKS_PER_SECOND) / ((now - this.lastCpu.atMs) / 1000)) * 1000) / 10;
      this.lastCpu = { ticks, atMs: now };
      return { rssMiB: Number.isFinite(rssKiB) ? Math.round((rssKiB / 1024) * 10) / 10 : null, cpuPercent };
    } catch {
      // Not Linux, or the process just exited.
      return { rssMiB: null, cpuPercent: null };
    }
  }
}
