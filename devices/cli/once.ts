// Something that happens once (a signal, a failed write, a deadline) and ends whichever wait
// is going on. `Promise.race([wait, longLived])` would leave a reaction on the long-lived
// promise for every wait, so a command that waits millions of times in a run of days (a
// consumer following a topic, `tail -F | produce`) would grow without bound; here a wait
// leaves nothing behind once it is over.

export class Once<R extends string> {
  private firedWith: R | null = null;
  private readonly wakers = new Set<(reason: R) => void>();

  /** Why it happened, or null while it has not. */
  get reason(): R | null {
    return this.firedWith;
  }

  fire(reason: R): void {
    if (this.firedWith !== null) return;
    this.firedWith = reason;
    for (const wake of this.wakers) wake(reason);
    this.wakers.clear();
  }

  /** `p`'s value, or the reason if this happens first (or has happened). */
  race<T>(p: Promise<T>): Promise<T | R> {
    if (this.firedWith !== null) return Promise.resolve(this.firedWith);
    return new Promise<T | R>((resolve, reject) => {
      const wake = (reason: R) => resolve(reason);
      this.wakers.add(wake);
      p.then(
        (value) => {
          this.wakers.delete(wake);
          resolve(value);
        },
        (err: unknown) => {
          this.wakers.delete(wake);
          reject(err);
        },
      );
    });
  }
}
