import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Alerts } from './alerts';
import { AlertWebhook, type AlertmanagerMessage } from './webhook';
import { FleetStats } from '../stats/fleet-stats';
import { emptyCounts, type PeerCounts, type StatsWindow } from '../../shared/stats/counts';
import { alertRule, type AlertEvent } from '../../shared/alerts/rule';
import { openTestStore, startTestCouch, TestCouch } from '../../test/support/couch';
import type { TraceStore } from '../store/store';

/*
 * The evaluator on real FleetStats and a real store: an alert fires past
 * the threshold with enough calls, not without; it clears when a window
 * with enough calls is back within it; both are stored in order. The
 * webhook retries a refusing receiver and gives up after its attempts.
 */

const W = 360;
const T = 1_800_000_000 - (1_800_000_000 % W);

function counts(invites: number, finals: Record<string, number>): PeerCounts {
  return { ...emptyCounts(), requests: { INVITE: invites }, invites, finals };
}
const win = (start: number, rows: Array<[string, PeerCounts]>): StatsWindow => ({ start, seconds: W, rows: rows.map(([peer, c]) => ({ peer, dir: 'out' as const, counts: c })) });

let couch: TestCouch;
let store: TraceStore;
let drop: () => Promise<void>;
before(async () => {
  couch = await startTestCouch();
  ({ store, drop } = await openTestStore(couch.url));
});
after(async () => {
  await drop();
  await couch.stop();
});

test('a peer rule fires past its threshold with enough INVITEs, clears when a window is back, and both are stored', async () => {
  let now = T;
  const stats = new FleetStats({ now: () => now });
  const events: AlertEvent[] = [];
  const alerts = new Alerts({ store, stats, publish: (e) => events.push(e), now: () => now * 1000, evalMs: 60_000 });
  await alerts.load();
  await alerts.putRule(alertRule.parse({ name: 'isa', figure: 'isa', op: 'above', threshold: 20, minInvites: 10, scope: 'peer' }), 'ada');

  // Too few INVITEs: a bad ratio says nothing.
  now = T + 10;
  stats.apply('h1', [win(T, [['192.0.2.1', counts(5, { 503: 5 })], ['carrier', counts(50, { 200: 50 })]])]);
  alerts.evaluateNow();
  assert.equal(events.length, 0);
  // Another host sees the same peer: summed across the fleet, 12 INVITEs, 7 of them 503.
  stats.apply('h2', [win(T, [['192.0.2.1', counts(7, { 503: 2, 200: 5 })]])]);
  alerts.evaluateNow();
  assert.equal(events.length, 1);
  const fired = events[0];
  assert.equal(fired.status, 'firing');
  assert.equal(fired.key, 'isa:192.0.2.1');
  assert.equal(fired.peer, '192.0.2.1');
  assert.equal(fired.invites, 12);
  assert.ok(Math.abs(fired.value! - (100 * 7) / 12) < 1e-9);
  assert.deepEqual(fired.trace, { ip: ['192.0.2.1'], method: ['INVITE'], status: ['503'], since: new Date(T * 1000).toISOString(), until: new Date((T + W) * 1000).toISOString(), hosts: ['h1', 'h2'] });
  assert.deepEqual(alerts.firing().map((e) => e.key), ['isa:192.0.2.1']);
  // Still bad: no second alert.
  stats.apply('h1', [win(T, [['192.0.2.1', counts(8, { 503: 8 })]])]);
  alerts.evaluateNow();
  assert.equal(events.length, 1);

  // The next window starts with few calls: not enough to clear.
  now = T + W + 5;
  stats.apply('h1', [win(T + W, [['192.0.2.1', counts(2, { 200: 2 })]])]);
  alerts.evaluateNow();
  assert.equal(events.length, 1);
  // Enough calls, back within the threshold: cleared.
  stats.apply('h1', [win(T + W, [['192.0.2.1', counts(20, { 200: 19, 503: 1 })]])]);
  alerts.evaluateNow();
  assert.equal(events.length, 2);
  assert.equal(events[1].status, 'resolved');
  assert.equal(events[1].startsAt, fired.startsAt);
  assert.ok(events[1].endsAt);
  assert.deepEqual(alerts.firing(), []);

  await alerts.flushed();
  const stored = await store.listAlerts(10);
  assert.equal(stored.length, 1, 'one document per alert, rewritten when cleared');
  assert.equal(stored[0].status, 'resolved');
  // A dispatcher started again reads the rules back.
  const again = new Alerts({ store, stats: new FleetStats() });
  await again.load();
  assert.deepEqual(again.ruleList().map((r) => r.name), ['isa']);
  alerts.close();
  again.close();
});

test('an alert still firing at a restart is taken back, and clears once its rule is removed', async () => {
  let now = T + 10 * W;
  const stats = new FleetStats({ now: () => now });
  const first = new Alerts({ store, stats, now: () => now * 1000, evalMs: 60_000 });
  await first.load();
  await first.putRule(alertRule.parse({ name: 'fleet-ser', figure: 'ser', op: 'below', threshold: 80, minInvites: 1, scope: 'fleet' }), 'ada');
  stats.apply('h1', [win(T + 10 * W, [['p', counts(10, { 486: 10 })]])]);
  first.evaluateNow();
  assert.deepEqual(first.firing().map((e) => e.key), ['fleet-ser']);
  // A fleet alert's trace selects by status on every host that counted (no address to select by).
  assert.deepEqual(first.firing()[0].trace?.all, true);
  await first.flushed();
  first.close();

  const events: AlertEvent[] = [];
  const second = new Alerts({ store, stats: new FleetStats(), publish: (e) => events.push(e) });
  await second.load();
  assert.deepEqual(second.firing().map((e) => e.key), ['fleet-ser']);
  await second.removeRule('fleet-ser');
  assert.deepEqual(events.map((e) => [e.key, e.status]), [['fleet-ser', 'resolved']]);
  second.close();
});

test('the webhook retries a receiver that refuses, and gives up after its attempts', async (t) => {
  const got: AlertmanagerMessage[] = [];
  let refuse = 2;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (refuse-- > 0) {
        res.statusCode = 503;
        res.end();
        return;
      }
      got.push(JSON.parse(body));
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const hook = new AlertWebhook(url, () => 'http://dispatcher.example:8060', undefined, 10);
  // A failed assertion must not leave the receiver or the webhook's timers holding the test process open.
  t.after(() => {
    server.close();
    server.closeAllConnections();
    hook.close();
  });
  const e: AlertEvent = {
    key: 'r:192.0.2.1', rule: 'r', status: 'firing', severity: 'warning', figure: 'isa', value: 60, threshold: 50, op: 'above', invites: 10, scope: 'peer', host: null, peer: '192.0.2.1',
    since: '2026-12-04T10:00:00.000Z', until: '2026-12-04T10:06:00.000Z', startsAt: '2026-12-04T10:05:00.000Z', endsAt: null, summary: 'r: isa 60.0 > 50', trace: null,
  };
  hook.send(e);
  hook.send({ ...e, status: 'resolved', endsAt: '2026-12-04T10:12:00.000Z' });
  // The receiver has a body before the webhook has its answer: wait for both.
  for (let i = 0; i < 200 && (got.length < 2 || hook.counts.sent < 2); i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got.map((m) => [m.status, m.alerts[0].endsAt]), [['firing', '0001-01-01T00:00:00Z'], ['resolved', '2026-12-04T10:12:00.000Z']]);
  assert.equal(got[0].externalURL, 'http://dispatcher.example:8060');
  assert.equal(got[0].alerts[0].generatorURL, 'http://dispatcher.example:8060/#/health');
  assert.equal(got[0].alerts[0].fingerprint, got[1].alerts[0].fingerprint);
  assert.deepEqual(hook.counts, { sent: 2, failed: 0, dropped: 0 });
  // A receiver that is away: five attempts, then given up, and the next goes on.
  server.close();
  hook.send(e);
  for (let i = 0; i < 300 && hook.counts.failed < 1; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(hook.counts.failed, 1);
  hook.close();
});

test('rules are refused with the field at fault', () => {
  const good = { name: 'a', figure: 'ser', op: 'below', threshold: 80, minInvites: 50, scope: 'peer' };
  assert.deepEqual(alertRule.parse(good), { ...good, windows: 1, severity: 'warning' });
  for (const [bad, path] of [
    [{ ...good, threshold: -1 }, 'threshold'],
    [{ ...good, figure: 'srd', threshold: -0.5 }, 'threshold'],
    [{ ...good, op: 'equal' }, 'op'],
    [{ ...good, scope: 'planet' }, 'scope'],
    [{ ...good, scope: 'host', match: 'a b' }, 'match'],
    [{ ...good, scope: 'peer', match: 'x'.repeat(65) }, 'match'],
    [{ ...good, windows: 241 }, 'windows'],
    [{ ...good, description: 'two\nlines' }, 'description'],
  ] as const) {
    const r = alertRule.safeParse(bad);
    assert.equal(r.success, false, JSON.stringify(bad));
    assert.equal(r.error!.issues[0].path[0], path, JSON.stringify(bad));
  }
});
