import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { startTestCouch, TestCouch } from '../support/couch';
import { ADMIN, AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER, VIEWER } from '../support/dispatcher';
import { bytesOf, CALL, makeTestRings, PROXY, startTestAgent, T0, TestAgent, TestHost, until } from '../support/trace';
import { MERGED_ATTACHMENT, traceDocId } from '../../dispatcher/store/layout';
import { browserSkipReason, launchBrowser, logIn, TestBrowser } from './browser';
import { CHUNK_BYTES } from '../../shared/protocol/agent';

/*
 * The web page in headless Chromium against a real dispatcher (in this
 * process, its store a real CouchDB-compatible server) and real agents
 * (agent/link + agent/trace in this process over rings imported from
 * generated captures). Needs no root: the sipp end to end is in
 * trace-e2e.test.ts.
 */

declare const document: any;
declare const sessionStorage: any;

const ROOT = resolve(__dirname, '..', '..', '..');
const skip = browserSkipReason();

/** 'YYYY-MM-DDTHH:MM:SS' (UTC) as the page's datetime-local inputs take it. */
const utcInput = (epochSec: number) => new Date(epochSec * 1000).toISOString().slice(0, 19);

/** Text of every row of a table body, cell by cell. */
async function rowsText(page: Page, selector: string): Promise<string[][]> {
  return page.locator(`${selector} tbody tr`).evaluateAll((rows: any[]) => rows.map((r) => [...r.children].map((c: any) => c.textContent.trim())));
}

describe('web page (in-process dispatcher and agents)', { skip }, () => {
  let dir = '';
  let couch: TestCouch;
  let d: TestDispatcher;
  let browser: TestBrowser;
  const agents: TestAgent[] = [];
  let rings: Record<TestHost, string>;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tf-web-'));
    couch = await startTestCouch();
    rings = await makeTestRings(dir, { bulk: { a: 600 } });
    // idleMs long: the stalled agent of the Cancel test must still be running when the page cancels it.
    d = await startTestDispatcher(couch.url, { staticDir: join(ROOT, 'web'), timeouts: { runAckMs: 5000, idleMs: 60_000 } });
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'a', ringDir: rings.a }));
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b }));
    // 4000 bulk packets: ~20 chunks of CHUNK_BYTES (the agent held to them, whatever the dispatcher offers), so the agent reports progress (every 16 chunks) before it stalls at 18.
    const big = await makeTestRings(mkdtempSync(join(dir, 'big-')));
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'stall', ringDir: big.a, stallAfterChunks: 18, maxChunkBytes: CHUNK_BYTES }));
    await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === 3, 'agents a, b, stall connected');
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    for (const a of agents) a.close();
    await d?.stop();
    await couch?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the page loads, and login, the trace form, History and Fleet render without a console error', async () => {
    const { page, errors } = await browser.newPage();
    await page.goto(`${d.url}/`);
    await page.locator('#login-user').waitFor();
    assert.equal(await page.title(), 'Log in · tracefleet');
    await logIn(page, d.url, TRACER.name, TRACER.password);
    // The form, with the fleet's agents to pick from.
    await page.locator('#tf-number').waitFor();
    await page.locator('#tf-hosts label[data-host="stall"]').waitFor();
    assert.deepEqual(await page.locator('#tf-hosts label').evaluateAll((ls: any[]) => ls.map((l) => l.dataset.host)), ['a', 'b', 'stall']);
    assert.equal(await page.locator('#who').textContent(), `${TRACER.name} (tracer)`);
    await page.getByRole('link', { name: 'History' }).click();
    await page.locator('#history-table').waitFor();
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.locator('#fleet-table tbody tr[data-agent="stall"]').waitFor();
    assert.equal(await page.locator('#fleet-table tbody tr[data-connected="true"]').count(), 3);
    await page.getByRole('link', { name: 'New trace' }).click();
    await page.locator('#tf-number').waitFor();
    await page.locator('#conn[data-status="connected"]').waitFor();
    assert.deepEqual(errors, [], `the page logged errors:\n${errors.join('\n')}`);
    await page.close();
  });

  test('a trace from the page: live host rows reach done; messages, ladder, downloads; reopened from History and after a reload', async () => {
    const { page, errors } = await browser.newPage();
    // Every URL the page asks for or follows, to check that none carries the session token.
    const urls: string[] = [];
    page.on('request', (r) => urls.push(r.url()));
    page.on('framenavigated', (f) => urls.push(f.url()));
    const first = await page.goto(`${d.url}/`);
    const headers = first!.headers();
    assert.match(headers['content-security-policy'] ?? '', /(^|; )frame-ancestors 'none'(;|$)/);
    assert.match(headers['content-security-policy'] ?? '', /(^|; )script-src 'self'(;|$)/);
    assert.doesNotMatch(headers['content-security-policy'] ?? '', /unsafe-inline|unsafe-eval/);
    assert.equal(headers['referrer-policy'], 'no-referrer');
    assert.equal(headers['x-content-type-options'], 'nosniff');
    await logIn(page, d.url, TRACER.name, TRACER.password);
    await page.locator('#tf-callId').fill(CALL);
    await page.locator('#tf-window-custom').check();
    await page.locator('#tf-from').fill(utcInput(T0 - 60));
    await page.locator('#tf-to').fill(utcInput(T0 + 60));
    await page.locator('#tf-hosts-pick').check();
    await page.locator('#tf-host-a').check();
    await page.locator('#tf-host-b').check();
    await page.locator('#tf-submit').click();
    await page.waitForURL(/#\/trace\/[A-Za-z0-9_-]+$/);
    const id = /#\/trace\/(.+)$/.exec(page.url())![1];

    await page.locator('#trace-status[data-state="done"]').waitFor({ timeout: 30_000 });
    assert.deepEqual(await page.locator('#trace-hosts tbody tr').evaluateAll((rs: any[]) => rs.map((r) => `${r.dataset.host}:${r.dataset.state}`)), ['a:done', 'b:done']);
    const trace = (await d.orchestrator.view(id))!;
    assert.equal(trace.state, 'done');
    // Legs are followed unless the box is unticked.
    assert.deepEqual(trace.request, { callId: [CALL], since: new Date((T0 - 60) * 1000).toISOString(), until: new Date((T0 + 60) * 1000).toISOString(), hosts: ['a', 'b'], legs: true });
    const packets = (await page.locator('#trace-hosts tbody tr[data-host="a"] [data-field="packets"]').textContent())?.replace(/,/g, '');
    assert.equal(packets, String(trace.hosts.find((x) => x.host === 'a')!.packets));

    // The SIP table: every host's captures of INVITE and 200, time-ordered.
    await page.locator('#msg-table tbody tr').first().waitFor();
    const rows = await rowsText(page, '#msg-table');
    assert.deepEqual(rows.map((r) => `${r[1]} ${r[3]}`), ['a INVITE', 'b INVITE', 'b 200 OK', 'a 200 OK']);
    assert.ok(rows.every((r) => r[4] === CALL));
    const messageRows = rows;
    // Filter and sort.
    await page.locator('#msg-filter').fill('200 ok');
    assert.equal(await page.locator('#msg-table tbody tr').count(), 2);
    await page.locator('#msg-filter').fill('');
    await page.locator('#msg-table th[data-key="host"] button').click();
    assert.deepEqual((await rowsText(page, '#msg-table')).map((r) => r[1]), ['a', 'a', 'b', 'b']);
    assert.equal(await page.locator('#msg-table th[data-key="host"]').getAttribute('aria-sort'), 'ascending');
    await page.locator('#msg-table th[data-key="host"] button').click();
    assert.equal(await page.locator('#msg-table th[data-key="host"]').getAttribute('aria-sort'), 'descending');
    assert.deepEqual((await rowsText(page, '#msg-table')).map((r) => r[1]), ['b', 'b', 'a', 'a']);

    // The ladder: one arrow per message (both hosts' captures folded), in time order.
    await page.locator('#ladder .ladder-arrow').first().waitFor();
    const arrows = await page.locator('#ladder .ladder-arrow').evaluateAll((gs: any[]) => gs.map((g) => `${g.dataset.src}>${g.dataset.dst} ${g.querySelector('.ladder-label').textContent}`));
    assert.deepEqual(arrows, [`${PROXY}:5060>198.51.100.7:5060 INVITE`, `198.51.100.7:5060>${PROXY}:5060 ✓ 200 OK`]);
    await page.locator('#ladder .ladder-arrow').nth(1).click();
    assert.match((await page.locator('#ladder .ladder-details').textContent()) ?? '', /200 OK/);
    assert.match((await page.locator('#msg-table tr.selected').textContent()) ?? '', /200 OK/);
    // A row of the table shows its message beside it.
    await page.locator('#msg-table tbody tr').first().click();
    assert.match((await page.locator('#message-details').textContent()) ?? '', /INVITE/);

    // Downloads: the merged PCAP as the store holds it, under a name that says what it is.
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('a.download[data-what="merged"]').click()]);
    assert.match(download.suggestedFilename(), new RegExp(`^trace-${id}-callid-crossing-call_orch\\.pcap$`));
    const saved = join(dir, 'merged.pcap');
    await download.saveAs(saved);
    const stored = await bytesOf(d.store.store.getAttachmentStream(traceDocId(id), MERGED_ATTACHMENT));
    assert.ok(readFileSync(saved).equals(stored), 'the downloaded merged.pcap differs from the stored one');
    // A link opens one download, so each click asks for a link of its own: the same file again downloads again.
    const [again] = await Promise.all([page.waitForEvent('download'), page.locator('a.download[data-what="merged"]').click()]);
    assert.notEqual(again.url(), download.url(), 'the second click followed a new link');
    const savedAgain = join(dir, 'merged-again.pcap');
    await again.saveAs(savedAgain);
    assert.ok(readFileSync(savedAgain).equals(stored), 'the second download of merged.pcap differs from the stored one');
    // The first click's link, followed again (from history, say), is refused with what to do.
    const replay = await fetch(download.url());
    assert.equal(replay.status, 410);
    assert.match(((await replay.json()) as { error: string }).error, /download again from the page for a new link/);
    const [hostDl] = await Promise.all([page.waitForEvent('download'), page.locator('a.download[data-what="host:b"]').click()]);
    assert.equal(hostDl.suggestedFilename(), `trace-${id}-callid-crossing-call_orch-b.pcap`);
    const [tarDl] = await Promise.all([page.waitForEvent('download'), page.locator('a.download[data-what="tar"]').click()]);
    assert.equal(tarDl.suggestedFilename(), `trace-${id}-callid-crossing-call_orch.tar`);

    // No session token in any URL: not in what the page fetched or followed, not in a link it shows.
    urls.push(download.url(), hostDl.url(), tarDl.url());
    const session = JSON.parse((await page.evaluate(() => JSON.stringify(Object.values({ ...sessionStorage })))) as string) as string[];
    const token = session.map((v) => (JSON.parse(v) as { token?: string }).token).find((t) => typeof t === 'string');
    assert.ok(token && token.startsWith('ts1.'), 'the page keeps its session in sessionStorage');
    const hrefs = await page.locator('a[href]').evaluateAll((as: any[]) => as.map((a) => a.href as string));
    for (const u of [...urls, ...hrefs]) {
      assert.ok(!u.includes(token) && !u.includes(encodeURIComponent(token)) && !/access_token=/.test(u), `the session token is in a URL: ${u.slice(0, 200)}`);
    }
    assert.match(download.url(), /\/merged\.pcap\?dl=td1\./, 'the merged download went through a download token');

    const hostRows = await rowsText(page, '#trace-hosts');

    // History: newest first, with who ran it, its filter and state; opening it shows the same.
    await page.getByRole('link', { name: 'History' }).click();
    const row = page.locator(`#history-table tbody tr[data-id="${id}"]`);
    await row.waitFor();
    assert.equal(await page.locator('#history-table tbody tr').first().getAttribute('data-id'), id);
    const cells = (await rowsText(page, '#history-table'))[0];
    assert.equal(cells[2], TRACER.name);
    assert.match(cells[3], new RegExp(`Call-ID ${CALL}`));
    assert.equal(cells[5], 'done');
    await row.getByRole('link', { name: id }).click();
    await page.locator('#msg-table tbody tr').first().waitFor();
    assert.deepEqual(await rowsText(page, '#trace-hosts'), hostRows);
    assert.deepEqual(await rowsText(page, '#msg-table'), messageRows);
    await page.reload();
    await page.locator('#msg-table tbody tr').first().waitFor();
    assert.deepEqual(await rowsText(page, '#trace-hosts'), hostRows, 'a reload shows the same trace');
    assert.deepEqual(await rowsText(page, '#msg-table'), messageRows);
    assert.deepEqual(errors, [], `the page logged errors:\n${errors.join('\n')}`);
    await page.close();
  });

  test('Cancel: a host stalled mid-stream shows started, then cancelled once the page cancels the trace', async () => {
    const { page, errors } = await browser.newPage();
    await logIn(page, d.url, TRACER.name, TRACER.password);
    await page.locator('#tf-ip').fill(PROXY);
    await page.locator('#tf-window-custom').check();
    await page.locator('#tf-from').fill(utcInput(T0 - 60));
    await page.locator('#tf-to').fill(utcInput(T0 + 60));
    await page.locator('#tf-hosts-pick').check();
    await page.locator('#tf-host-stall').check();
    await page.locator('#tf-submit').click();
    await page.waitForURL(/#\/trace\//);
    // Progress counted from the chunks that arrived; the rest are held back by the agent.
    await page.locator('#trace-hosts tr[data-host="stall"][data-state="started"]').waitFor();
    await until(async () => Number((await page.locator('#trace-hosts tr[data-host="stall"] [data-field="packets"]').textContent())?.replace(/,/g, '')) > 0, 'progress on the stalled host', 20_000);
    await page.getByRole('button', { name: 'Cancel trace' }).click();
    await page.locator('#trace-hosts tr[data-host="stall"][data-state="cancelled"]').waitFor();
    await page.locator('#trace-status[data-state="cancelled"]').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Cancel trace' }).count(), 0, 'Cancel is gone once the trace ended');
    assert.deepEqual(errors, []);
    await page.close();
  });

  test("the form: bad values are refused in the page; the dispatcher's refusals land on the field they concern", async () => {
    const { page } = await browser.newPage();
    await logIn(page, d.url, TRACER.name, TRACER.password);
    const error = (field: string) => page.locator(`#err-${field}`).textContent();
    await page.locator('#tf-submit').click();
    assert.match((await error('number')) ?? '', /at least one of: number, Call-ID, IP or port/);
    await page.locator('#tf-number').fill('12');
    await page.locator('#tf-port').fill('70000');
    await page.locator('#tf-ip').fill('10.1.2');
    await page.locator('#tf-filter').fill('INVITE, 9xx');
    await page.locator('#tf-window-custom').check();
    await page.locator('#tf-from').fill(utcInput(T0 + 60));
    await page.locator('#tf-to').fill(utcInput(T0 - 60));
    await page.locator('#tf-submit').click();
    assert.match((await error('number')) ?? '', /fewer than 4 digits/);
    assert.match((await error('port')) ?? '', /from 1 to 65535/);
    assert.match((await error('ip')) ?? '', /not an IP address/);
    assert.match((await error('filter')) ?? '', /"9xx" is neither/);
    assert.match((await error('to')) ?? '', /before its start/);
    assert.equal(await page.locator('#tf-number').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tf-number', 'focus moves to the first wrong field');
    assert.equal(page.url().includes('#/trace/'), false, 'no trace was started');

    // What the dispatcher itself says to bad requests (REST and the socket), and where the page shows it.
    const token = await page.evaluate(() => JSON.parse(sessionStorage.getItem('tracefleet.session')).token);
    const refusals: Array<[object, string]> = [
      [{ number: ['12'] }, 'number'],
      [{ port: ['0'] }, 'port'],
      [{ ip: ['10.1.2'] }, 'ip'],
      [{ callId: ['x'.repeat(1025)] }, 'callId'],
      [{ callId: ['c'], method: ['IN VITE'] }, 'filter'],
      [{ callId: ['c'], status: ['9xx'] }, 'filter'],
      [{ callId: ['c'], since: 'yesterday' }, 'from'],
      [{ callId: ['c'], since: '1h', until: '2h' }, 'to'],
      [{ callId: ['c'], hosts: ['nosuch'] }, 'hosts'],
      [{ since: '5m' }, 'number'],
    ];
    for (const [body, field] of refusals) {
      const res = await fetch(`${d.url}/api/traces`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 400, JSON.stringify(body));
      const refusal = (await res.json()) as { error: string; message: string; code: string; field: string | null };
      assert.equal(refusal.message, refusal.error);
      assert.match(refusal.code, /^TF_/);
      const socketAck = await page.evaluate(
        `(async () => {
          const { io } = await import('/socket.io/socket.io.esm.min.js');
          const s = io('/client', { auth: { token: ${JSON.stringify(token)} }, forceNew: true, reconnection: false });
          try { return await s.timeout(5000).emitWithAck('trace:start', ${JSON.stringify(body)}); } finally { s.close(); }
        })()`,
      );
      const ack = socketAck as { ok: boolean; error: string; code: string; field: string | null };
      assert.equal(ack.ok, false);
      assert.deepEqual([ack.code, ack.field], [refusal.code, refusal.field], 'the socket and REST refuse alike');
      for (const said of [refusal, ack]) {
        const mapped = await page.evaluate(`import('/lib/request.js').then((m) => m.fieldOf(${JSON.stringify({ code: said.code, field: said.field })}))`);
        assert.equal(mapped, field, `${JSON.stringify(body).slice(0, 100)} -> ${JSON.stringify(said).slice(0, 300)}`);
      }
    }
    await page.close();
  });

  test('a viewer sees no trace form and no Cancel, and a trace:start sent from their session is refused', async () => {
    // A trace for the viewer to look at.
    const t = await d.orchestrator.start({ callId: [CALL], since: String(T0 - 60), until: String(T0 + 60), hosts: ['a'] }, ADMIN.name);
    await until(async () => (await d.orchestrator.view(t.id))?.state === 'done', 'the admin trace done');
    const { page } = await browser.newPage();
    await logIn(page, d.url, VIEWER.name, VIEWER.password);
    await page.waitForURL(/#\/history$/);
    assert.equal(await page.locator('#nav-new').isVisible(), false, 'no New trace link for a viewer');
    await page.goto(`${d.url}/#/`);
    await page.waitForURL(/#\/history$/);
    await page.locator(`#history-table tr[data-id="${t.id}"]`).waitFor();
    assert.equal(await page.locator('#tf-number').count(), 0, 'no trace form');
    await page.locator(`#history-table tr[data-id="${t.id}"] a`).click();
    await page.locator('#trace-status[data-state="done"]').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Cancel trace' }).count(), 0);
    const ack = await page.evaluate(
      `(async () => {
        const { io } = await import('/socket.io/socket.io.esm.min.js');
        const token = JSON.parse(sessionStorage.getItem('tracefleet.session')).token;
        const s = io('/client', { auth: { token }, forceNew: true, reconnection: false });
        try { return await s.timeout(5000).emitWithAck('trace:start', { callId: ['${CALL}'] }); } finally { s.close(); }
      })()`,
    );
    assert.equal((ack as { code: string }).code, 'TF_FORBIDDEN', JSON.stringify(ack));
    assert.match((ack as { error: string }).error, /needs the tracer or admin role/);
    await page.close();
  });

  test('History pages through traces, newest first, 20 at a time', async () => {
    // Stored traces of another user, made directly in the store: the list is the store's, not the orchestrator's.
    const base = Date.parse('2026-01-02T03:04:05Z');
    for (let i = 0; i < 23; i++) {
      await d.store.store.createTrace({ id: `paged-${String(i).padStart(2, '0')}`, request: { number: [`55501${String(i).padStart(2, '0')}`] }, user: 'pat', hosts: ['a'], state: 'done', createdAt: new Date(base + i * 1000).toISOString() });
    }
    const { page, errors } = await browser.newPage();
    await logIn(page, d.url, VIEWER.name, VIEWER.password);
    await page.locator('#history-table tbody tr').first().waitFor();
    const ids = () => page.locator('#history-table tbody tr').evaluateAll((rs: any[]) => rs.map((r) => r.dataset.id));
    const first = await ids();
    assert.equal(first.length, 20);
    const all = (await d.store.store.listTraces({ limit: 1000 })).traces.map((t) => t.id);
    assert.deepEqual(first, all.slice(0, 20), 'the first page is the store\'s newest 20');
    assert.equal(await page.locator('#history-newer').isDisabled(), true);
    await page.getByRole('button', { name: 'Older →' }).click();
    await page.locator(`#history-table tbody tr[data-id="${all[20]}"]`).waitFor();
    assert.deepEqual(await ids(), all.slice(20, 40));
    await page.getByRole('button', { name: '← Newer' }).click();
    await page.locator(`#history-table tbody tr[data-id="${all[0]}"]`).waitFor();
    assert.deepEqual(await ids(), first);
    assert.deepEqual(errors, []);
    await page.close();
  });

  test('log in and out: a wrong password is refused on the form; log out and an expired session end at the login form', async () => {
    const { page } = await browser.newPage();
    await page.goto(`${d.url}/`);
    await page.locator('#login-user').fill(TRACER.name);
    await page.locator('#login-password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#login-error').filter({ hasText: /wrong user name or password/ }).waitFor();
    await page.locator('#login-password').fill(TRACER.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#tf-number').waitFor();
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.locator('#login-user').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('tracefleet.session')), null);
    await page.reload();
    await page.locator('#login-user').waitFor();

    // A session the dispatcher no longer knows: back to the login form with a reason.
    await page.evaluate(() => sessionStorage.setItem('tracefleet.session', JSON.stringify({ token: 'tf_s_forged', user: 'tom', roles: ['tracer'] })));
    await page.goto(`${d.url}/#/history`);
    await page.reload();
    await page.locator('#login-user').waitFor();
    assert.match((await page.locator('.login .notice').textContent()) ?? '', /session has ended/);
    await page.close();
  });
});
