import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineSweep, type Deadlined } from './watchdog';

/** A run as HostRun keeps its deadline: expire() clears it before acting, as HostRun does. */
class Run implements Deadlined {
  deadline = 0;
  fired: number[] = [];
  constructor(private readonly sweep: DeadlineSweep) {}
  arm(ms: number): void {
    this.deadline = performance.now() + ms;
  }
  expire(): void {
    this.deadline = 0;
    this.fired.push(performance.now());
    this.sweep.unwatch(this);
  }
}

test("a sweep fires each run's deadline once, no earlier than it and at most a tick late, and skips runs disarmed", async () => {
  const sweep = new DeadlineSweep(300);
  assert.equal(sweep.tickMs, 50, 'a tenth of the shortest timeout, at least 50 ms');
  assert.equal(new DeadlineSweep(60_000).tickMs, 1_000, 'at most 1 s');
  const early = new Run(sweep);
  const late = new Run(sweep);
  const disarmed = new Run(sweep);
  const t0 = performance.now();
  for (const r of [early, late, disarmed]) sweep.watch(r);
  early.arm(100);
  late.arm(300);
  disarmed.arm(100);
  disarmed.deadline = 0;
  try {
    await sleep(200);
    assert.equal(early.fired.length, 1);
    // A tick late at most, on a quiet loop; the bound leaves room for a loaded machine's timers.
    assert.ok(early.fired[0] - t0 >= 100 && early.fired[0] - t0 < 1_000, `fired at ${early.fired[0] - t0} ms`);
    if (performance.now() - t0 < 300) assert.equal(late.fired.length, 0, 'not before its deadline');
    await sleep(300);
    assert.equal(late.fired.length, 1);
    assert.ok(late.fired[0] - t0 >= 300, `fired at ${late.fired[0] - t0} ms`);
    assert.equal(early.fired.length, 1, 'once');
    assert.equal(disarmed.fired.length, 0);
  } finally {
    sweep.stop();
  }
});
