// A node is an ordered list of components (storage, the internal topics' stores, metrics,
// the disk guard, sessions, groups, the listener, the scheduler; later fetchers and uplinks).
// They start in list order, each on the ones before it, and stop in the reverse order, so
// that nothing stops while something started after it still uses it. A start that fails
// stops what had started, newest first, so a failed start leaves nothing running or open.

import type { Logger } from './logger.js';

export interface Component {
  /** Named in the log when its start or stop fails. */
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
}

export class Components {
  private readonly started: Component[] = [];
  private stopping: Promise<void> | null = null;

  constructor(private readonly logger: Logger) {}

  /** The names of the started components, in start order. */
  get running(): string[] {
    return this.started.map((c) => c.name);
  }

  /**
   * Starts each component in order. When one fails, the ones started are stopped, newest
   * first, and the failure is thrown as it was.
   */
  async start(components: readonly Component[]): Promise<void> {
    for (const component of components) {
      try {
        await component.start?.();
      } catch (err) {
        await this.stop().catch(() => undefined);
        throw err;
      }
      this.started.push(component);
    }
  }

  /**
   * Stops every started component, newest first. A component whose stop fails is logged and
   * the others still stop (a node that cannot stop its scheduler must still close its logs);
   * the first failure is thrown once all have been asked. Calling it again waits for the
   * same stop.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      let first: unknown = null;
      while (this.started.length > 0) {
        const component = this.started.pop() as Component;
        try {
          await component.stop?.();
        } catch (err) {
          this.logger.error({ component: component.name, err: (err as Error)?.stack ?? String(err) }, 'a component failed to stop');
          first ??= err;
        }
      }
      if (first !== null) throw first;
    })();
    return this.stopping;
  }
}
