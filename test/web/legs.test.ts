import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { startTestCouch, TestCouch } from '../support/couch';
import { AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER } from '../support/dispatcher';
import { startTestAgent, TestAgent, until } from '../support/trace';
import { B2B, LEGS_T0, Leg, Z, writeLegsRing } from '../support/legcalls';
import { browserSkipReason, launchBrowser, logIn, TestBrowser } from './browser';

/*
 * A call of two legs in headless Chromium: the message table's Leg column,
 * the stream table grouped by call and leg, and the table on corrected clock
 * time. Real agents (in this process) over rings of hand-made calls: host x
 * at the B2BUA saw both legs, host y further on saw only the B leg, with a
 * clock 1.5 s ahead. The legs share a Session-ID; each leg has its own RTP
 * (the B2BUA anchors media), so each stream belongs to exactly one leg.
 */

declare const document: any;

const ROOT = resolve(__dirname, '..', '..', '..');
const skip = browserSkipReason();
const SHIFT_MS = 1500;
const U = '5f0c2b7e9d1a4c3f8b6e0a2d4c6e8f10';
const CALLER = '4930777001';
const A_LEG: Leg = { callId: 'leg-a@web', from: CALLER, start: 0, end: 8, headers: [`Session-ID: ${U}`], offer: ['10.0.0.1', 4000], answer: [B2B, 30000], rtp: 40 };
const B_LEG: Leg = { callId: 'leg-b@web', from: 'b2bua', start: 1, end: 9, headers: [`Session-ID: ${U}`], src: B2B, dst: Z, offer: [B2B, 30002], answer: [Z, 6000], rtp: 40 };
// Not of the call: on the same hosts, at the same time, never in the result.
const OTHER: Leg = { callId: 'other@web', from: '4930777002', start: 0.5, end: 8, headers: ['Session-ID: 0123456789abcdef0123456789abcdef'], src: B2B, dst: Z, offer: [B2B, 30010], answer: [Z, 6010], rtp: 10 };

const utcInput = (epochSec: number) => new Date(epochSec * 1000).toISOString().slice(0, 19);
/** 'HH:MM:SS.mmm' as milliseconds of the day. */
const clockMs = (t: string) => {
  const m = /^(\d{2}):(\d{2}):(\d{2})\.(\d{3})$/.exec(t.trim());
  assert.ok(m, `a clock time: ${JSON.stringify(t)}`);
  return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number(m[4]);
};

interface Row {
  time: string;
  corrected: string | null;
  captured: string | null;
  leg: string;
  host: string;
  what: string;
  callId: string;
}

async function messageRows(page: Page): Promise<Row[]> {
  return page.locator('#msg-table tbody tr').evaluateAll((rows: any[]) =>
    rows.map((r) => {
      const cell = (k: string) => r.querySelector(`td.col-${k}`);
      return {
        time: cell('time').textContent,
        corrected: cell('time').querySelector('.corrected')?.textContent ?? null,
        captured: cell('time').querySelector('.captured')?.textContent ?? null,
        leg: cell('leg')?.textContent ?? '',
        host: cell('host').textContent,
        what: cell('what').textContent,
        callId: cell('callId').textContent,
      };
    }),
  );
}

describe('web page: the legs of a call and one clock', { skip }, () => {
  let dir = '';
  let couch: TestCouch;
  let d: TestDispatcher;
  let browser: TestBrowser;
  const agents: TestAgent[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tf-web-legs-'));
    const ringX = join(dir, 'ring-x');
    const ringY = join(dir, 'ring-y');
    await writeLegsRing(join(dir, 'x.pcap'), ringX, [A_LEG, B_LEG, OTHER]);
    await writeLegsRing(join(dir, 'y.pcap'), ringY, [B_LEG, OTHER], { shiftMs: SHIFT_MS });
    couch = await startTestCouch();
    d = await startTestDispatcher(couch.url, { staticDir: join(ROOT, 'web') });
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'x', ringDir: ringX }));
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'y', ringDir: ringY }));
    await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === 2, 'agents x and y connected');
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const a of agents) a.close();
    await d?.stop();
    await couch?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a trace by the caller: the Leg column, streams grouped by leg, the table on corrected time with the capture time shown', async (t) => {
    const { page, errors } = await browser.newPage();
    const fail = (what: string) => `${what}; page errors: ${errors.join(' | ') || 'none'}`;
    await logIn(page, d.url, TRACER.name, TRACER.password);
    await page.locator('#tf-number').fill(CALLER);
    assert.equal(await page.locator('#tf-legs').isChecked(), true, 'legs are followed by default');
    await page.locator('#tf-window-custom').check();
    await page.locator('#tf-from').fill(utcInput(LEGS_T0 - 60));
    await page.locator('#tf-to').fill(utcInput(LEGS_T0 + 60));
    await page.locator('#tf-hosts-pick').check();
    await page.locator('#tf-host-x').check();
    await page.locator('#tf-host-y').check();
    await page.locator('#tf-submit').click();
    await page.waitForURL(/#\/trace\/[A-Za-z0-9_-]+$/);
    const id = /#\/trace\/(.+)$/.exec(page.url())![1];
    await page.locator('#trace-status[data-state="done"]').waitFor({ timeout: 30_000 }).catch(() => {
      throw new Error(fail(`trace ${id} did not reach done`));
    });
    await page.locator('#msg-table tbody tr').first().waitFor();
    const view = (await d.orchestrator.view(id))!;
    const yClock = view.clocks?.hosts.find((c) => c.host === 'y');
    assert.ok(yClock && yClock.offsetMs !== null && Math.abs(yClock.offsetMs - SHIFT_MS) < 1, `y's offset estimated: ${JSON.stringify(view.clocks)}`);

    // ---- the Leg column: every message of the A leg is '#1 A', of the B leg '#1 B' linked by session-id, on both hosts
    assert.equal(await page.locator('#msg-table thead th[data-key="leg"]').textContent(), 'Leg');
    const rows = await messageRows(page);
    assert.equal(rows.length, 4 + 4 + 4, fail('A leg on x, B leg on x and on y, four messages each'));
    assert.deepEqual(new Set(rows.map((r) => r.callId)), new Set([A_LEG.callId, B_LEG.callId]), 'the unrelated call is not in the trace');
    for (const r of rows) {
      if (r.callId === A_LEG.callId) assert.equal(r.leg, '#1 A', `${r.host} ${r.what}`);
      else assert.equal(r.leg, '#1 Bsession-id', `${r.host} ${r.what}`);
    }
    assert.deepEqual(
      rows.filter((r) => r.callId === B_LEG.callId).map((r) => r.host).sort(),
      ['x', 'x', 'x', 'x', 'y', 'y', 'y', 'y'],
    );
    // Sorted by leg: the A leg's messages, then the B leg's.
    await page.locator('#msg-table thead th[data-key="leg"] button').click();
    assert.deepEqual((await messageRows(page)).map((r) => r.leg.slice(0, 4)), [...Array(4).fill('#1 A'), ...Array(8).fill('#1 B')]);
    await page.locator('#msg-table thead th[data-key="time"] button').click();

    // ---- one clock: y's copies sit beside x's (corrected), each showing the time y captured it, 1.5 s later
    assert.equal(await page.locator('#msg-table thead th[data-key="time"]').textContent(), 'Time (UTC, corrected)');
    const timed = await messageRows(page);
    const bLeg = timed.filter((r) => r.callId === B_LEG.callId);
    // Captured times alone would put y's INVITE and 200 after x's 200 (1.5 s later); corrected, each message's two copies are together.
    assert.deepEqual(bLeg.map((r) => r.what), ['INVITE', 'INVITE', '200 OK', '200 OK', 'BYE', 'BYE', '200 OK', '200 OK'], fail(JSON.stringify(bLeg)));
    for (const r of timed) {
      if (r.host === 'y') {
        assert.ok(r.corrected && r.captured, `y's row shows both times: ${JSON.stringify(r)}`);
        const captured = r.captured.replace(/^captured /, '');
        assert.equal(clockMs(captured) - clockMs(r.corrected), SHIFT_MS, `y's ${r.what}: corrected ${r.corrected}, captured ${captured}`);
      } else {
        assert.equal(r.captured, null, `x is the reference: one time only (${r.time})`);
      }
    }
    const firstY = bLeg.find((r) => r.host === 'y')!;
    const firstX = bLeg.find((r) => r.host === 'x')!;
    assert.equal(firstY.corrected, firstX.time.trim(), 'the corrected time of y\'s INVITE is the time x captured it');
    t.diagnostic(`y offset ${yClock.offsetMs} ms; B leg in the table: ${bLeg.map((r) => `${r.host} ${r.what} ${r.corrected ?? r.time}`).join(', ')}`);

    // ---- the stream table: one call, its A leg's streams then its B leg's, on every host that saw them
    const groups = page.locator('#stream-table tbody.stream-group');
    assert.equal(await groups.count(), 1, 'one call');
    assert.match((await groups.locator('tr.group-head').textContent()) ?? '', /^Call #1: 2 legs \(leg-a@web, leg-b@web\)$/);
    assert.equal(await page.locator('#stream-table thead th').first().textContent(), 'Call / leg');
    const streams = await page.locator('#stream-table tbody tr[data-ssrc]').evaluateAll((trs: any[]) => trs.map((tr) => ({ leg: tr.dataset.leg, callId: tr.dataset.callId, host: tr.dataset.host, src: tr.children[3].textContent })));
    assert.deepEqual(
      streams.map((s) => `${s.leg} ${s.host}`),
      ['1A x', '1A x', '1B x', '1B x', '1B y', '1B y'].slice(0, streams.length),
      fail(JSON.stringify(streams)),
    );
    assert.equal(streams.length, 6, 'two streams on the A leg (x), two on the B leg on x and on y');
    for (const s of streams) {
      const leg = s.leg === '1A' ? A_LEG : B_LEG;
      assert.equal(s.callId, leg.callId);
      assert.ok(s.src.includes(`${leg.offer![0]}:${leg.offer![1]}`), `${s.leg} stream ${s.src} between the leg's own ends`);
    }
    const legCells = await page.locator('#stream-table tbody tr[data-ssrc] td:first-child').allTextContents();
    assert.deepEqual(legCells, ['#1 A', '#1 A', '#1 Bsession-id', '#1 Bsession-id', '#1 Bsession-id', '#1 Bsession-id']);

    // ---- the ladder offers the call with all its legs together
    const options = await page.locator('#ladder select option').allTextContents();
    assert.ok(options.includes('Call #1: all 2 legs'), `ladder selector: ${options.join(' | ')}`);

    // ---- reopened (a finished trace read from the store, as from History): the same table, on the same clock
    await page.reload();
    await page.locator('#msg-table tbody tr').first().waitFor();
    assert.equal(await page.locator('#msg-table thead th[data-key="time"]').textContent(), 'Time (UTC, corrected)', 'the clocks come with a finished trace\'s view');
    assert.deepEqual(await messageRows(page), timed);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
