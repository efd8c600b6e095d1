import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Page } from 'puppeteer-core';
import { startTestCouch, TestCouch } from '../support/couch';
import { AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER, VIEWER } from '../support/dispatcher';
import { bytesOf, CALL, makeTestRings, PROXY, startTestAgent, T0, TestAgent, until } from '../support/trace';
import { MERGED_ATTACHMENT, traceDocId } from '../../dispatcher/store/layout';
import { browserKindSkipReason, launchPuppeteer, logInPuppeteer as logIn, PuppeteerBrowser } from './browser';

/*
 * The web page in Debian's Firefox ESR, so that "works in Chromium and
 * Firefox" is checked rather than assumed. playwright-core drives only its
 * own patched Firefox, which cannot be downloaded here; puppeteer-core drives
 * the stock one over WebDriver BiDi. The Chromium tests (page.test.ts) cover
 * every behaviour; this one walks the main path once in Firefox: log in,
 * trace, live rows, table, ladder by mouse and keyboard, a download, History,
 * the viewer's page, the 1280×800 layout, and no console error on the way.
 */

declare const document: any;
declare const window: any;

const ROOT = resolve(__dirname, '..', '..', '..');
const skip = browserKindSkipReason('firefox');

const utcInput = (epochSec: number) => new Date(epochSec * 1000).toISOString().slice(0, 19);

/** Sets an input's value as a person's typing would leave it (datetime-local inputs take no typed text in every browser alike). */
async function setValue(page: Page, selector: string, value: string): Promise<void> {
  await page.$eval(
    selector,
    (el: any, v: string) => {
      el.value = v;
      el.dispatchEvent(new window.Event('input', { bubbles: true }));
      el.dispatchEvent(new window.Event('change', { bubbles: true }));
    },
    value,
  );
}

async function rowsText(page: Page, selector: string): Promise<string[][]> {
  return page.$$eval(`${selector} tbody tr`, (rows: any[]) => rows.map((r) => [...r.children].map((c: any) => c.textContent.trim())));
}

describe('web page in Firefox ESR (in-process dispatcher and agents)', { skip, timeout: 180_000 }, () => {
  let dir = '';
  let couch: TestCouch;
  let d: TestDispatcher;
  let browser: PuppeteerBrowser;
  const agents: TestAgent[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tf-firefox-'));
    couch = await startTestCouch();
    const rings = await makeTestRings(dir);
    d = await startTestDispatcher(couch.url, { staticDir: join(ROOT, 'web') });
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'a', ringDir: rings.a }));
    agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b }));
    await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === 2, 'agents a and b connected');
    browser = await launchPuppeteer('firefox');
  });

  after(async () => {
    await browser?.close();
    for (const a of agents) a.close();
    await d?.stop();
    await couch?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a tracer traces from the page: rows reach done, table, ladder by mouse and keyboard, the merged download, History; no console error', async () => {
    const { page, errors } = await browser.newPage();
    await logIn(page, d.url, TRACER.name, TRACER.password);
    assert.match(await browser.browser.version(), /firefox/i);
    assert.equal(await page.$eval('#who', (e: any) => e.textContent), `${TRACER.name} (tracer)`);

    await page.locator('#tf-callId').fill(CALL);
    await page.click('#tf-window-custom');
    await setValue(page, '#tf-from', utcInput(T0 - 60));
    await setValue(page, '#tf-to', utcInput(T0 + 60));
    await page.waitForSelector('#tf-hosts label[data-host="b"]');
    await page.click('#tf-hosts-pick');
    await page.click('#tf-host-a');
    await page.click('#tf-host-b');
    await page.click('#tf-submit');
    await page.waitForFunction(() => /#\/trace\/[A-Za-z0-9_-]+$/.test(window.location.hash));
    const id = await page.evaluate(() => window.location.hash.replace(/^#\/trace\//, ''));

    await page.waitForSelector('#trace-status[data-state="done"]', { timeout: 30_000 });
    assert.deepEqual(await page.$$eval('#trace-hosts tbody tr', (rs: any[]) => rs.map((r) => `${r.dataset.host}:${r.dataset.state}`)), ['a:done', 'b:done']);
    assert.equal((await d.orchestrator.view(id))?.state, 'done');

    await page.waitForSelector('#msg-table tbody tr');
    const rows = await rowsText(page, '#msg-table');
    assert.deepEqual(rows.map((r) => `${r[1]} ${r[3]}`), ['a INVITE', 'b INVITE', 'b 200 OK', 'a 200 OK']);
    await page.click('#msg-table th[data-key="host"] button');
    assert.deepEqual((await rowsText(page, '#msg-table')).map((r) => r[1]), ['a', 'a', 'b', 'b']);

    // The ladder: both hosts' captures folded into one arrow per message, in time order.
    await page.waitForSelector('#ladder .ladder-arrow');
    const arrows = await page.$$eval('#ladder .ladder-arrow', (gs: any[]) => gs.map((g) => `${g.dataset.src}>${g.dataset.dst} ${g.querySelector('.ladder-label').textContent}`));
    assert.deepEqual(arrows, [`${PROXY}:5060>198.51.100.7:5060 INVITE`, `198.51.100.7:5060>${PROXY}:5060 ✓ 200 OK`]);
    await (await page.$$('#ladder .ladder-arrow'))[1].click();
    await page.waitForFunction(() => /200 OK/.test(document.querySelector('#ladder .ladder-details')?.textContent ?? ''));
    // By keyboard: focus the first arrow and press Enter.
    await page.$$eval('#ladder .ladder-arrow', (gs: any[]) => gs[0].focus());
    assert.equal(await page.evaluate(() => document.activeElement?.classList.contains('ladder-arrow')), true, 'an arrow takes the focus');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /INVITE/.test(document.querySelector('#ladder .ladder-details')?.textContent ?? ''));

    // The merged download, fetched as the page's click does (a download token for the link's path, never the session in the URL):
    // the stored bytes, a name that says what it is.
    const link = await page.$eval('a.download[data-what="merged"]', (a: any) => ({ href: a.href, name: a.getAttribute('download') }));
    const got = await page.evaluate(async (href: string) => {
      const session = JSON.parse(window.sessionStorage.getItem('tracefleet.session'));
      const path = new URL(href).pathname;
      const t = (await (await fetch('/api/download-token', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${session.token}` }, body: JSON.stringify({ path }) })).json()) as { url: string };
      const r = await fetch(t.url);
      const body = new Uint8Array(await r.arrayBuffer());
      const digest = new Uint8Array(await window.crypto.subtle.digest('SHA-256', body));
      return { status: r.status, disposition: r.headers.get('content-disposition'), bytes: body.length, sha256: [...digest].map((b) => b.toString(16).padStart(2, '0')).join('') };
    }, link.href);
    const stored = await bytesOf(d.store.store.getAttachmentStream(traceDocId(id), MERGED_ATTACHMENT));
    assert.equal(got.status, 200);
    assert.equal(got.bytes, stored.length);
    assert.equal(got.sha256, createHash('sha256').update(stored).digest('hex'), 'the merged PCAP fetched in Firefox is the stored one');
    assert.match(got.disposition ?? '', new RegExp(`trace-${id}-callid-crossing-call_orch\\.pcap`));

    // History: newest first; opening the trace shows what it showed live.
    const hostRows = await rowsText(page, '#trace-hosts');
    await page.click('#nav a[href="#/history"]');
    await page.waitForSelector(`#history-table tbody tr[data-id="${id}"]`);
    assert.equal(await page.$eval('#history-table tbody tr', (r: any) => r.dataset.id), id);
    await page.click(`#history-table tbody tr[data-id="${id}"] a`);
    await page.waitForSelector('#msg-table tbody tr');
    assert.deepEqual(await rowsText(page, '#trace-hosts'), hostRows);
    assert.deepEqual((await rowsText(page, '#msg-table')).map((r) => `${r[1]} ${r[3]}`), rows.map((r) => `${r[1]} ${r[3]}`));

    // Readable at 1280×800: the page itself never scrolls sideways (the ladder scrolls inside its own box).
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 1280, 'the page is wider than 1280 px');
    assert.deepEqual(errors, [], `Firefox logged errors:\n${errors.join('\n')}`);
    await page.close();
  });

  test('a viewer sees History and no trace form', async () => {
    const { page, errors } = await browser.newPage();
    await logIn(page, d.url, VIEWER.name, VIEWER.password);
    await page.waitForFunction(() => window.location.hash === '#/history');
    await page.waitForSelector('#history-table');
    assert.equal(await page.$('#tf-number'), null, 'no trace form');
    assert.equal(await page.$eval('#nav-new', (e: any) => e.offsetParent === null), true, 'no New trace link');
    assert.deepEqual(errors, []);
    await page.close();
  });
});
