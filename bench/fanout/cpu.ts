import { readCpuSeconds, wallNow } from '../common/dispatcher';

/**
 * CPU seconds of a few processes sampled every `everyMs` (/proc/PID/stat, 10 ms ticks), so that the CPU
 * each used in a window known only afterwards (a trace's start, up to the last agent's trace:run) can
 * be read back: the simulated agents share the dispatcher's cores, and their CPU in that window is the
 * dispatcher's loss.
 */
export class CpuSampler {
  private readonly samples: Array<{ at: number; cpu: number[] }> = [];
  private readonly timer: NodeJS.Timeout;
  /** Bounds memory on a long bench: 20 min at 50 ms. */
  private static readonly MAX_SAMPLES = 24_000;

  constructor(private readonly pids: number[], everyMs = 50) {
    this.take();
    this.timer = setInterval(() => this.take(), everyMs);
  }

  private take(): void {
    if (this.samples.length >= CpuSampler.MAX_SAMPLES) return;
    this.samples.push({ at: wallNow(), cpu: this.pids.map((p) => readCpuSeconds(p) ?? NaN) });
  }

  /** CPU seconds of each process from the last sample at or before `from` to the first at or after `to`. */
  between(from: number, to: number): number[] {
    let a = this.samples[0];
    let b = this.samples[this.samples.length - 1];
    for (const s of this.samples) {
      if (s.at <= from) a = s;
      if (s.at >= to) {
        b = s;
        break;
      }
    }
    return this.pids.map((_, i) => (a && b ? b.cpu[i] - a.cpu[i] : NaN));
  }

  stop(): void {
    this.take();
    clearInterval(this.timer);
  }
}
