import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetStats } from './fleet-stats';
import { emptyCounts, type PeerCounts } from '../../shared/stats/counts';
import { agentHeartbeat } from '../../shared/protocol/agent';

const W = 360;
const T = 1_800_000_000 - (1_800_000_000 % W);
const c = (invites: number, finals: Record<string, number>): PeerCounts => ({ ...emptyCounts(), invites, finals, requests: { INVITE: invites } });

test('windows from several hosts: replaced when sent again, summed per window, peer and host, the worst first; old ones dropped', () => {
  let now = T + 100;
  const s = new FleetStats({ now: () => now, retentionSeconds: 3600 });
  const seen: string[] = [];
  s.onWindows((h, ws) => seen.push(`${h}:${ws.map((w) => w.start).join(',')}`));
  s.apply('a', [{ start: T, seconds: W, rows: [{ peer: 'p1', dir: 'in', counts: c(3, { 200: 3 }) }] }]);
  // Sent again with more calls: replaces, never adds.
  s.apply('a', [{ start: T, seconds: W, rows: [{ peer: 'p1', dir: 'in', counts: c(4, { 200: 4 }) }, { peer: 'p2', dir: 'out', counts: c(10, { 503: 6, 200: 4 }) }] }]);
  s.apply('b', [{ start: T, seconds: W, rows: [{ peer: 'p2', dir: 'out', counts: c(5, { 503: 1, 200: 4 }) }] }]);
  assert.deepEqual(seen, [`a:${T}`, `a:${T}`, `b:${T}`]);
  const q = s.query({ from: T - W, to: T + W });
  assert.equal(q.windows.length, 1);
  assert.deepEqual(q.windows[0].hosts, ['a', 'b']);
  assert.equal(q.windows[0].total.counts.invites, 19);
  assert.deepEqual(q.peers.map((p) => [p.peer, p.dir, p.hosts, p.counts.invites, p.figures.errorRatio]), [['p2', 'out', ['a', 'b'], 15, (100 * 7) / 15], ['p1', 'in', ['a'], 4, 0]]);
  assert.deepEqual(q.hosts.map((h) => h.host), ['a', 'b']);
  assert.deepEqual(s.query({ from: T - W, to: T + W, peer: ['p1'] }).peers.map((p) => p.peer), ['p1']);
  assert.deepEqual(s.query({ from: T + 10 * W, to: T + 11 * W }), { from: new Date((T + 10 * W) * 1000).toISOString(), to: new Date((T + 11 * W) * 1000).toISOString(), windows: [], peers: [], hosts: [] });
  // Past the retention: dropped when anything comes, and never taken.
  now = T + 2 * 3600;
  assert.equal(s.apply('a', [{ start: T, seconds: W, rows: [] }]), 0);
  assert.deepEqual(s.windowsOf('a', 0, Infinity), []);
});

test('a heartbeat carries whole windows; one from before the statistics parses too; a bad peer is refused', () => {
  const status = { ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: {}, indexErrors: 0 };
  assert.equal(agentHeartbeat.safeParse(status).success, true);
  const withStats = { ...status, stats: { windows: [{ start: T, seconds: W, rows: [{ peer: '192.0.2.1', dir: 'in', counts: c(1, { 200: 1 }) }] }] } };
  assert.equal(agentHeartbeat.safeParse(withStats).success, true);
  const bad = structuredClone(withStats);
  bad.stats.windows[0].rows[0].peer = '<b>x</b> y';
  assert.equal(agentHeartbeat.safeParse(bad).success, false);
});
