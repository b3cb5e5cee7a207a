// The node's background jobs (retention, compaction, checkpoints, the disk guard) on
// node-cron schedules. node-cron only says when; this class makes sure a job never overlaps
// itself (a tick that finds the job still running is skipped and counted, whether the run
// came from cron or from runNow), and that stop() aborts the runs in progress (each job
// stops at its next step) and waits for them, so shutdown never closes a log under a job
// and never waits for a whole compaction.

import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from './logger.js';

export interface JobSpec {
  name: string;
  /** A node-cron expression (six fields: with seconds), e.g. every 5 minutes: '0 *\/5 * * * *'. */
  schedule: string;
  /** `signal` aborts when the scheduler stops: a long job gives up at its next step. */
  run(signal: AbortSignal): Promise<unknown>;
}

interface JobState {
  spec: JobSpec;
  task: ScheduledTask;
  running: Promise<void> | null;
  runs: number;
  skipped: number;
  failures: number;
  lastError: string | null;
}

export interface JobStats {
  name: string;
  schedule: string;
  runs: number;
  skipped: number;
  failures: number;
  running: boolean;
  lastError: string | null;
}

export class Scheduler {
  private readonly jobs = new Map<string, JobState>();
  private stopped = false;
  private readonly stopping = new AbortController();

  constructor(private readonly logger: Logger) {}

  add(spec: JobSpec): void {
    if (this.jobs.has(spec.name)) throw new Error(`job ${spec.name} is already scheduled`);
    if (!cron.validate(spec.schedule)) throw new Error(`job ${spec.name}: invalid schedule '${spec.schedule}'`);
    const state: JobState = { spec, task: undefined as unknown as ScheduledTask, running: null, runs: 0, skipped: 0, failures: 0, lastError: null };
    // A background job must not keep a stopping process alive: unref'd timers.
    state.task = cron.schedule(spec.schedule, () => this.tick(state), { name: spec.name, unref: true, suppressMissedWarning: true });
    this.jobs.set(spec.name, state);
  }

  /** Runs a job now (tests, operators); joins a run in progress rather than overlapping it. */
  runNow(name: string): Promise<void> {
    const state = this.jobs.get(name);
    if (state === undefined) throw new Error(`no job named ${name}`);
    if (this.stopped) return Promise.resolve();
    return state.running ?? this.start(state);
  }

  stats(): JobStats[] {
    return [...this.jobs.values()].map((s) => ({
      name: s.spec.name,
      schedule: s.spec.schedule,
      runs: s.runs,
      skipped: s.skipped,
      failures: s.failures,
      running: s.running !== null,
      lastError: s.lastError,
    }));
  }

  /** Stops every schedule, tells the runs in progress to give up, and waits for them. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    for (const state of this.jobs.values()) await state.task.destroy();
    await Promise.allSettled([...this.jobs.values()].map((s) => s.running));
  }

  private tick(state: JobState): void {
    if (this.stopped) return;
    if (state.running !== null) {
      state.skipped++;
      this.logger.debug({ job: state.spec.name }, 'job still running from its last turn; this turn skipped');
      return;
    }
    void this.start(state);
  }

  private start(state: JobState): Promise<void> {
    // Started in a microtask, so `running` is set before the job can finish (even a job
    // that throws at once).
    const run = Promise.resolve()
      .then(() => state.spec.run(this.stopping.signal))
      .then(
        () => {
          state.runs++;
        },
        (err: unknown) => {
          state.failures++;
          state.lastError = (err as Error)?.message ?? String(err);
          this.logger.error({ job: state.spec.name, err }, 'background job failed');
        },
      )
      .finally(() => {
        state.running = null;
      });
    state.running = run;
    return run;
  }
}
