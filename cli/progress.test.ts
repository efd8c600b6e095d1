import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlainProgress, progressLines, TtyProgress } from './progress';
import type { HostProgress, TraceProgressView } from './trace-state';

function hp(h: string, state: string, packets = 0, error?: string): HostProgress {
  return { host: h, state, packets, bytes: packets * 1000, truncated: false, at: '2025-11-23T12:00:00.000Z', ...(error ? { error } : {}) };
}

/** A terminal-like sink: what was written, in order. */
class Sink {
  out = '';
  constructor(
    readonly isTTY: boolean,
    readonly columns = 80,
    readonly rows = 30,
  ) {}
  write(s: string) {
    this.out += s;
    return true;
  }
}

test('plain output: one line per state change, progress alone says nothing', () => {
  const s = new Sink(false);
  const p = new PlainProgress(s);
  const v: TraceProgressView = { id: 'tr1', state: 'running', hosts: [hp('a', 'queued'), hp('b', 'queued')] };
  p.update(v, []);
  p.update({ ...v, hosts: [hp('a', 'started'), hp('b', 'queued')] }, [{ host: 'a', from: 'queued', to: 'started', progress: hp('a', 'started') }]);
  p.update({ ...v, hosts: [hp('a', 'started', 5), hp('b', 'queued')] }, []);
  p.update(v, [{ host: 'b', from: 'queued', to: 'unreachable', progress: hp('b', 'unreachable', 0, 'agent b is not connected\nto any dispatcher') }]);
  p.update(v, [{ host: null, from: 'running', to: 'partial', progress: null }]);
  p.note('lost the connection');
  p.finish({ id: 'tr1', state: 'partial', hosts: [hp('a', 'done', 5), hp('b', 'unreachable')], merged: { packets: 5, bytes: 5000, duplicates: 0 } });
  p.note('after the end: not shown');
  assert.deepEqual(s.out.trimEnd().split('\n'), [
    'tracefleet: trace tr1: asking 2 hosts: a, b',
    'tracefleet: trace tr1: host a: started',
    'tracefleet: trace tr1: host b: unreachable (0 packets, 0 B): agent b is not connected to any dispatcher',
    'tracefleet: lost the connection',
    'tracefleet: trace tr1: partial: hosts 1 done, 1 unreachable; merged 5 packets, 4.9 KiB',
  ]);
  assert.doesNotMatch(s.out, /\x1b/);
});

test('terminal output: the table is redrawn in place, cut to the width', async () => {
  const s = new Sink(true, 60);
  let now = 1_000_000;
  const p = new TtyProgress(s, () => now);
  const long = 'x'.repeat(200);
  p.update({ id: 'tr1', state: 'running', hosts: [hp('a', 'started', 1), hp('b', 'error', 0, long)] });
  await new Promise((r) => setTimeout(r, 150));
  const first = s.out;
  assert.doesNotMatch(first, /\x1b\[\d+F/, 'nothing to go back over the first time');
  const firstLines = first.trimEnd().split('\n');
  assert.equal(firstLines.length, 5, first); // header, column titles, 2 hosts, counts
  for (const l of firstLines) assert.ok(l.length <= 59, `line too wide for 60 columns: ${l}`);
  assert.match(firstLines[0], /^trace tr1 {2}running {2}0s {2}1\/2 hosts finished/);
  now += 3000;
  p.finish({ id: 'tr1', state: 'done', hosts: [hp('a', 'done', 7), hp('b', 'error', 0, long)], merged: { packets: 7, bytes: 7000, duplicates: 0 } });
  const second = s.out.slice(first.length);
  assert.ok(second.startsWith('\x1b[5F\x1b[J'), JSON.stringify(second.slice(0, 12)));
  assert.match(second, /trace tr1 {2}done {2}3s {2}2\/2 hosts finished {2}merged: 7 packets/);
  // Nothing after finish: the ticker is stopped.
  p.update({ id: 'tr1', state: 'running', hosts: [] });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(s.out.length, first.length + second.length);
});

test('more hosts than the terminal has rows: the rest summed up by state', () => {
  const hosts = Array.from({ length: 50 }, (_, i) => hp(`h${i}`, i % 2 ? 'done' : 'started'));
  const lines = progressLines({ id: 't', state: 'running', hosts }, { maxRows: 10 });
  assert.equal(lines.length, 1 + 1 + 9 + 1);
  assert.equal(lines[lines.length - 1], '… 41 more hosts: 21 done, 20 started');
  // Escape sequences in names or errors from the dispatcher are shown, not obeyed.
  const evil = progressLines({ id: 't', state: 'running', hosts: [hp('a', 'error', 0, 'bad\x1b[2Jthing')] });
  assert.ok(evil.every((l) => !l.includes('\x1b')));
});
