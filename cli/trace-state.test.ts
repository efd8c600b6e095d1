import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostView, TraceUpdate, TraceView } from '../shared/protocol/client';
import { exitOfTrace, TraceTracker } from './trace-state';

const T = (s: number) => new Date(Date.UTC(2025, 10, 23, 12, 0, s)).toISOString();

function host(h: string, state: HostView['state'], at: number, packets = 0): HostView {
  return { host: h, state, packets, bytes: packets * 100, truncated: false, stored: state === 'done', updatedAt: T(at) };
}

function view(state: TraceView['state'], hosts: HostView[], at = 0): TraceView {
  return { id: 'tr1', request: { callId: ['x'] }, user: 'alice', createdAt: T(0), ...(state !== 'running' ? { finishedAt: T(at) } : {}), state, hosts };
}

function upd(h: string | null, state: string, at: number, packets = 0, extra: Partial<TraceUpdate> = {}): TraceUpdate {
  return { traceId: 'tr1', host: h, state, packets, bytes: packets * 100, at: T(at), ...extra };
}

test('updates in any order: newer wins, a final state is never undone', () => {
  const t = new TraceTracker(view('running', [host('a', 'queued', 0), host('b', 'queued', 0)]));
  assert.deepEqual(t.applyUpdate(upd('a', 'started', 2)).map((c) => [c.host, c.from, c.to]), [['a', 'queued', 'started']]);
  // Progress without a state change: applied, no change line.
  assert.deepEqual(t.applyUpdate(upd('a', 'started', 3, 10)), []);
  assert.equal(t.view().hosts[0].packets, 10);
  // An older progress report arriving late is ignored.
  t.applyUpdate(upd('a', 'started', 1, 5));
  assert.equal(t.view().hosts[0].packets, 10);
  // Another trace's update is not ours.
  assert.deepEqual(t.applyUpdate({ ...upd('a', 'done', 9), traceId: 'other' }), []);
  assert.deepEqual(t.applyUpdate(upd('a', 'done', 4, 12)).map((c) => c.to), ['done']);
  // A poll that read the store before the host finished: stale, and a final state stays.
  assert.deepEqual(t.applyView(view('running', [host('a', 'started', 9, 11), host('b', 'unreachable', 1)])).map((c) => [c.host, c.to]), [['b', 'unreachable']]);
  assert.equal(t.view().hosts[0].state, 'done');
  assert.equal(t.view().hosts[0].packets, 12);
  assert.equal(t.final, false);
  assert.deepEqual(
    t.applyUpdate(upd(null, 'partial', 5, 12, { merged: { packets: 12, bytes: 1200, duplicates: 0 } })).map((c) => [c.host, c.to]),
    [[null, 'partial']],
  );
  assert.equal(t.final, true);
  assert.deepEqual(t.view().merged, { packets: 12, bytes: 1200, duplicates: 0 });
  // A late "running" (a poll answered before the end) changes nothing.
  assert.deepEqual(t.applyView(view('running', [host('a', 'started', 3), host('b', 'queued', 0)])), []);
  assert.equal(t.view().state, 'partial');
});

test('a trace already final in the first view is final at once', () => {
  const t = new TraceTracker(view('failed', [host('a', 'unreachable', 1)], 1));
  assert.equal(t.final, true);
  assert.deepEqual(t.applyUpdate(upd(null, 'running', 0)), []);
});

test('merged counts from the later report when the first final one had none', () => {
  const t = new TraceTracker(view('running', [host('a', 'queued', 0)]));
  t.applyUpdate(upd(null, 'done', 5));
  assert.equal(t.view().merged, undefined);
  t.applyView({ ...view('done', [host('a', 'done', 4, 3)], 5), merged: { packets: 3, bytes: 300, duplicates: 1 } });
  assert.deepEqual(t.view().merged, { packets: 3, bytes: 300, duplicates: 1 });
});

test('exit codes of final traces', () => {
  assert.equal(exitOfTrace({ state: 'done', hosts: [{ state: 'done' }] }), 0);
  assert.equal(exitOfTrace({ state: 'done', hosts: [{ state: 'done' }, { state: 'lost' }] }), 3);
  assert.equal(exitOfTrace({ state: 'partial', hosts: [{ state: 'done' }, { state: 'error' }] }), 3);
  for (const s of ['failed', 'cancelled', 'interrupted', 'running']) assert.equal(exitOfTrace({ state: s, hosts: [] }), 1, s);
});
