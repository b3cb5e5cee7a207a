// Writing many small lines to stdout fast and politely: lines are joined into chunks of
// ~64 KiB, a chunk waits for 'drain' when the pipe is full (so a slow reader slows us
// instead of filling memory), and a reader that goes away (`| head`) ends output quietly
// rather than with an EPIPE crash.

import type { Writable } from 'node:stream';

const CHUNK_CHARS = 64 * 1024;

export class LineWriter {
  private parts: string[] = [];
  private chars = 0;
  private brokenNow = false;
  private markBroken: () => void = () => {};
  /** Resolves once the reader has gone away, so a caller waiting for input can stop too. */
  readonly whenBroken: Promise<'broken'>;
  private readonly onError = (err: NodeJS.ErrnoException) => {
    // EPIPE, ECONNRESET...: the reader is gone. Nothing more can be written; stop quietly.
    this.brokenNow = true;
    this.lastError = err;
    this.markBroken();
  };
  lastError: Error | null = null;

  constructor(private readonly out: Writable) {
    this.whenBroken = new Promise<'broken'>((resolve) => (this.markBroken = () => resolve('broken')));
    out.on('error', this.onError);
  }

  /** True once the reader has gone away. */
  get broken(): boolean {
    return this.brokenNow || this.out.destroyed;
  }

  /** Queues one line (without its newline); resolves at once unless a chunk had to wait. */
  write(line: string): Promise<void> | undefined {
    this.parts.push(line);
    this.chars += line.length + 1;
    if (this.chars >= CHUNK_CHARS) return this.flush();
    return undefined;
  }

  async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = this.parts.join('\n') + '\n';
    this.parts = [];
    this.chars = 0;
    if (this.broken) return;
    if (!this.out.write(chunk)) await this.drained();
  }

  /** Stops listening for errors. Call after the last flush. */
  dispose(): void {
    // A late EPIPE after the last write must still not crash the process.
    this.out.off('error', this.onError);
    this.out.on('error', () => {});
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.out.off('drain', done);
        this.out.off('close', done);
        this.out.off('error', done);
        resolve();
      };
      this.out.on('drain', done);
      this.out.on('close', done);
      this.out.on('error', done);
    });
  }
}

/** Rows under a header, columns padded to their widest cell (the last one not padded). */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(header), ...rows.map(line)];
}
