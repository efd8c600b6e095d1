import { performance } from 'node:perf_hooks';

/*
 * `tracefleet trace --timing`: when each step of the command happened, so
 * that a slow trace can be split into its parts (bench/ttfp reads it). The
 * marks are milliseconds since the process's time origin (Node's own start),
 * and `origin` is that origin on the wall clock, so that they line up with
 * the dispatcher's and agents' log times on the same machine.
 */

export interface TimingSink {
  mark(step: string): void;
}

export class Timing implements TimingSink {
  private readonly marks: Record<string, number> = {};
  private traceId: string | null = null;

  mark(step: string): void {
    // The first time a step is reached is the one that counts (a reconnection connects again).
    if (!(step in this.marks)) this.marks[step] = Math.round(performance.now() * 1000) / 1000;
  }

  trace(id: string): void {
    this.traceId = id;
  }

  /** One line on stderr: `tracefleet timing: {json}`. */
  print(stream: NodeJS.WritableStream = process.stderr): void {
    this.mark('end');
    stream.write(`tracefleet timing: ${JSON.stringify({ traceId: this.traceId, origin: performance.timeOrigin, marks: this.marks })}\n`);
  }
}

/** Marks nothing: a command run without --timing. */
export const NO_TIMING: TimingSink = { mark: () => {} };
