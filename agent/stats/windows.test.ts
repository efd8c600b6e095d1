import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { MessageRecord } from '../index/format';
import { PeerConfigError, PeerResolver } from './peers';
import { WindowStats } from './windows';
import { figuresOf } from '../../shared/stats/figures';
import { loadStats, saveStats, statsPath } from './store';
import { withTmp } from '../../test/support/with-tmp';

const LOCAL = '10.0.0.1';
const peers = () => new PeerResolver({ local: [LOCAL], names: ['carrierA=192.0.2.0/24', 'sbc=192.0.2.7'] });

function msg(at: number, src: string, dst: string, c: string, m: string | null, s: number | null, q: string): MessageRecord {
  return { p: [0], t: [Math.floor(at), Math.round((at % 1) * 1e9)], src, dst, sp: 5060, dp: 5060, pr: 17, m, s, c, q, ru: null, fu: null, tu: null, n: 100 };
}

/** An incoming call from `from`, its final `code` after `answerIn` s, and (answered) a BYE after `talk` s. */
function call(st: WindowStats, at: number, from: string, c: string, code: number, answerIn = 1, talk?: number): void {
  st.add(msg(at, from, LOCAL, c, 'INVITE', null, '1 INVITE'));
  st.add(msg(at + 0.01, LOCAL, from, c, null, 100, '1 INVITE'));
  st.add(msg(at + 0.25, LOCAL, from, c, null, 180, '1 INVITE'));
  st.add(msg(at + answerIn, LOCAL, from, c, null, code, '1 INVITE'));
  if (talk !== undefined) st.add(msg(at + answerIn + talk, from, LOCAL, c, 'BYE', null, '2 BYE'));
}

test('per peer and direction: outcomes, durations and the RFC 6076 figures; names by longest prefix', () => {
  const st = new WindowStats(peers(), { windowSeconds: 360, shortCallSeconds: 10 });
  const t0 = 1_700_000_000 - (1_700_000_000 % 360);
  call(st, t0 + 1, '192.0.2.5', 'a1', 200, 2, 30);
  call(st, t0 + 2, '192.0.2.5', 'a2', 200, 1, 0.5);
  call(st, t0 + 3, '192.0.2.5', 'a3', 486);
  call(st, t0 + 4, '192.0.2.5', 'a4', 302);
  call(st, t0 + 5, '192.0.2.5', 'a5', 503);
  call(st, t0 + 6, '192.0.2.7', 's1', 200, 1, 5);
  // A retransmitted INVITE and a second final are not new dialogs or outcomes.
  st.add(msg(t0 + 7, '192.0.2.5', LOCAL, 'a3', 'INVITE', null, '1 INVITE'));
  st.add(msg(t0 + 7, LOCAL, '192.0.2.5', 'a3', null, 486, '1 INVITE'));
  const [w] = st.windowsBetween();
  assert.equal(w.start, t0);
  assert.deepEqual(w.rows.map((r) => `${r.dir} ${r.peer}`), ['in carrierA', 'out carrierA', 'in sbc', 'out sbc']);
  const a = w.rows[0].counts;
  assert.equal(a.invites, 5);
  assert.deepEqual(a.requests, { INVITE: 6, BYE: 2 });
  assert.deepEqual(w.rows[1].counts.responses, { 100: 5, 180: 5, 200: 2, 486: 2, 302: 1, 503: 1 });
  const f = figuresOf(a);
  assert.equal(f.answered, 2);
  assert.equal(f.busy, 1);
  assert.deepEqual(f.failed, { '3xx': 1, '4xx': 0, '5xx': 1, '6xx': 0 });
  assert.equal(f.ser, 50); // 2 / (5 - 1 redirected)
  assert.equal(f.seer, 75); // (2 + 486) / 4
  assert.equal(f.isa, 20); // 503 / 5
  assert.ok(Math.abs(f.srd! - 0.25) < 1e-6, `SRD ${f.srd}`); // INVITE to 180
  assert.equal(f.zeroDuration, 1);
  assert.equal(f.short, 1);
  assert.ok(Math.abs(f.meanDuration! - 15.25) < 1e-6);
  assert.equal(figuresOf(w.rows[2].counts).answered, 1, 'the /32 name wins over the /24');
});

test('bounded: peers past the cap fold into "other", old windows go, unanswered INVITEs time out as unfinished', () => {
  const st = new WindowStats(peers(), { windowSeconds: 60, maxPeersPerWindow: 6, retentionSeconds: 600, finalTimeoutSeconds: 30 });
  const t0 = 1_700_000_040;
  for (let i = 0; i < 20; i++) st.add(msg(t0 + i * 0.01, `198.51.100.${i}`, LOCAL, `o${i}`, 'OPTIONS', null, '1 OPTIONS'));
  const [w] = st.windowsBetween();
  assert.equal(w.rows.length, 5, 'four peers and "other"');
  assert.equal(w.rows.find((r) => r.peer === 'other')!.counts.requests.OPTIONS, 16);
  st.add(msg(t0 + 1, '192.0.2.5', LOCAL, 'lost', 'INVITE', null, '1 INVITE'));
  st.add(msg(t0 + 100, '192.0.2.5', LOCAL, 'later', 'OPTIONS', null, '1 OPTIONS'));
  assert.equal(st.windowsBetween()[0].rows.find((r) => r.peer === 'other' && r.dir === 'in')!.counts.unfinished, 1);
  st.add(msg(t0 + 2000, '192.0.2.5', LOCAL, 'much-later', 'OPTIONS', null, '1 OPTIONS'));
  assert.equal(st.windowsBetween().length, 1, 'windows past the retention are dropped');
  assert.equal(st.windowsBetween(t0, t0 + 60).length, 0);
});

test('saved beside the ring and restored after a restart; a file that is not ours is refused by name', withTmp((dir) => {
  const st = new WindowStats(peers());
  call(st, 1_700_000_001, '192.0.2.5', 'a1', 486);
  saveStats(dir, st);
  const back = new WindowStats(peers());
  back.restore(loadStats(dir)!);
  assert.deepEqual(back.windowsBetween(), st.windowsBetween());
  writeFileSync(statsPath(dir), JSON.stringify({ version: 1, windowSeconds: 360, newest: 0, windows: [{ start: 0, seconds: 360, rows: [{ peer: 'x', dir: 'sideways', counts: {} }] }] }));
  assert.throws(() => loadStats(dir), /not a statistics file \(windows\.0\.rows\.0\.dir/);
}));

test('peer configuration is checked: addresses, prefixes, ports and names', () => {
  assert.throws(() => new PeerResolver({ local: ['10.0.0.300'] }), PeerConfigError);
  assert.throws(() => new PeerResolver({ local: ['10.0.0.0/33'] }), /prefix over 32/);
  assert.throws(() => new PeerResolver({ names: ['<b>=10.0.0.1'] }), /bad peer name/);
  const p = new PeerResolver({ local: ['127.0.0.1:5060', '[::1]:5070'] });
  assert.deepEqual(p.classify('127.0.0.1', 5061, '127.0.0.1', 5060), { peer: '127.0.0.1', dir: 'in' });
  assert.deepEqual(p.classify('127.0.0.1', 5060, '127.0.0.1', 5061), { peer: '127.0.0.1', dir: 'out' });
  assert.deepEqual(p.classify('::1', 5070, '::2', 5060), { peer: '::2', dir: 'out' });
});

test('takeChanged gives each window counted in since the last call, whole, once; the outbox sends newest first within its bytes and all again after a reconnection', async () => {
  const { StatsOutbox } = await import('./outbox');
  const st = new WindowStats(peers(), { windowSeconds: 360 });
  const t0 = 1_700_000_000 - (1_700_000_000 % 360);
  call(st, t0 + 1, '192.0.2.5', 'c1', 503);
  call(st, t0 + 361, '192.0.2.5', 'c2', 200, 1, 5);
  const first = st.takeChanged();
  assert.deepEqual(first.map((w) => w.start), [t0, t0 + 360]);
  assert.deepEqual(st.takeChanged(), []);
  // The same row as the last message (the indexer's cached row) still marks its window.
  st.add(msg(t0 + 380, '192.0.2.5', LOCAL, 'c3', 'OPTIONS', null, '1 OPTIONS'));
  const again = st.takeChanged();
  assert.deepEqual(again.map((w) => w.start), [t0 + 360]);
  assert.equal(again[0].rows.find((r) => r.dir === 'in')!.counts.requests.OPTIONS, 1);
  // A dialog's late outcome marks the window its INVITE was counted in (and the response its own).
  st.add(msg(t0 + 300, '192.0.2.9', LOCAL, 'c5', 'INVITE', null, '1 INVITE'));
  st.takeChanged();
  st.add(msg(t0 + 370, LOCAL, '192.0.2.9', 'c5', null, 486, '1 INVITE'));
  const late = st.takeChanged();
  assert.deepEqual(late.map((w) => w.start), [t0, t0 + 360]);
  assert.equal(late[0].rows.find((r) => r.dir === 'in')!.counts.finals['486'], 1);
  st.add(msg(t0 + 401, '192.0.2.9', LOCAL, 'c4', 'INVITE', null, '1 INVITE'));
  st.add(msg(t0 + 402, LOCAL, '192.0.2.9', 'c4', null, 200, '1 INVITE'));
  st.add(msg(t0 + 730, '192.0.2.9', LOCAL, 'c4', 'BYE', null, '2 BYE'));
  assert.deepEqual(st.takeChanged().map((w) => w.start), [t0 + 360, t0 + 720]);

  const box = new StatsOutbox();
  box.update(first);
  const size = (w: unknown) => JSON.stringify(w).length + 1;
  // Room for the newest only: the older waits for the next heartbeat.
  const d1 = box.take(size(first[1]));
  assert.deepEqual(d1?.windows.map((w) => w.start), [t0 + 360]);
  assert.deepEqual(box.take()?.windows.map((w) => w.start), [t0]);
  assert.equal(box.take(), null);
  box.resendAll();
  assert.deepEqual(box.take()?.windows.map((w) => w.start), [t0 + 360, t0]);
});
