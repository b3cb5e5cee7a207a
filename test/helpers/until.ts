// Waits for the state a test needs to see, by the condition that proves it, not by a sleep:
// the one helper every test polls with. It fails with what it waited for once `timeoutMs`
// passes (a bound for a broken build, never a measure of speed).

export interface UntilOptions {
  /** Default 20 s. */
  timeoutMs?: number;
  /** Between checks; default 2 ms. */
  intervalMs?: number;
}

export async function until(condition: () => boolean | Promise<boolean>, what: string, options: UntilOptions = {}): Promise<void> {
  const giveUpAt = Date.now() + (options.timeoutMs ?? 20_000);
  const intervalMs = options.intervalMs ?? 2;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > giveUpAt) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
