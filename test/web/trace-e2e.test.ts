import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DISPATCHER_PORT, FleetBed, fleetSkipReason, ROOT } from '../support/fleet';
import { runSippCalls } from '../support/sipp';
import { tsharkPackets, tsharkSelect } from '../support/tshark';
import { browserSkipReason, launchBrowser, logIn, TestBrowser } from './browser';
import { NsPort, openNsPort } from './ns-port';

/*
 * The web page against the real thing: `tracefleet dispatcher` (serving the
 * page) and two agents capturing eth0, each in a network namespace of its
 * own, a real sipp call between the agents' hosts, and headless Chromium
 * driving the page from the root namespace through a port relayed into the
 * dispatcher's namespace. What the page shows is checked against the call
 * sipp made, the store (through the REST API) and tshark.
 */

declare const document: any;
declare const window: any;

const skip = browserSkipReason() || fleetSkipReason();

const NUMBER = '+15550100123';
const TRACED = NUMBER.slice(-7);
/** FleetBed.addTracer's user and password. */
const USER = 'tester';
const PASSWORD = 'correct-horse-battery-staple';
const OUTPUT = join(ROOT, 'test-output', 'web');

const HOST_STATE_RANK: Record<string, number> = { queued: 0, started: 1, done: 2 };

/** Records every state each host row of the trace page shows, in order, for as long as the document lives. */
const WATCH_HOST_ROWS = `(() => {
  window.__hostStates = {};
  const look = () => {
    for (const tr of document.querySelectorAll('#trace-hosts tbody tr[data-host]')) {
      const seen = (window.__hostStates[tr.dataset.host] ??= []);
      if (seen[seen.length - 1] !== tr.dataset.state) seen.push(tr.dataset.state);
    }
  };
  new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
})()`;

async function rowsText(page: import('playwright-core').Page, selector: string): Promise<string[][]> {
  return page.locator(`${selector} tbody tr`).evaluateAll((rows: any[]) => rows.map((r) => [...r.children].map((c: any) => c.textContent.trim())));
}

test('web page end to end: trace a real sipp call by number, watch hosts finish, read the ladder, download, reopen from History, check the fleet', { skip, timeout: 300_000 }, async (t) => {
  const started = Date.now();
  const phase = (name: string) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${name}`);
  const bed = await FleetBed.create(t, { agents: ['a', 'b'] });
  const { net } = bed;
  let relay: NsPort | null = null;
  let browser: TestBrowser | null = null;
  try {
    await bed.startDispatcher();
    await bed.addTracer(USER);
    for (const h of ['a', 'b']) await bed.startAgent(h);
    await bed.waitAgentsConnected(['a', 'b'], 20_000);
    const call = await runSippCalls({
      uacNs: net.ns('a'), uasNs: net.ns('b'), transport: 'udp',
      uacHost: { addr: net.addr('a'), port: 5060 }, uasHost: { addr: net.addr('b'), port: 5060 },
      calls: 1, number: NUMBER, fromUser: '+15550100999',
    });
    assert.equal(call.successful, 1, `the sipp call failed: ${call.errors}`);
    const callId = call.callIds[0];
    phase('fleet up, call made');

    relay = await openNsPort({ ns: net.ns('disp'), socketPath: join(bed.dir, 'web.sock'), target: { host: net.addr('disp'), port: DISPATCHER_PORT } });
    browser = await launchBrowser();
    const { page, errors } = await browser.newPage();
    const fail = (what: string) => `${what}\npage errors: ${errors.join('\n') || 'none'}\n${bed.logs()}`;

    // ---- log in, fill the form, start ------------------------------------------------
    await logIn(page, relay.url, USER, PASSWORD);
    await page.locator('#tf-hosts label[data-host="b"]').waitFor();
    await page.evaluate(WATCH_HOST_ROWS);
    await page.locator('#tf-number').fill(TRACED);
    await page.locator('#tf-window-15m').check();
    await page.locator('#tf-hosts-all').check();
    await page.getByRole('button', { name: 'Start trace' }).click();
    await page.waitForURL(/#\/trace\/[A-Za-z0-9_-]+$/);
    const id = /#\/trace\/(.+)$/.exec(page.url())![1];
    await page.locator('#trace-status[data-state="done"]').waitFor({ timeout: 90_000 }).catch(() => {
      throw new Error(fail(`trace ${id} did not reach done on the page`));
    });
    phase(`trace ${id} done on the page`);

    // ---- the host rows: every state seen goes forward, ending at done ------------------
    const seen = (await page.evaluate(() => window.__hostStates)) as Record<string, string[]>;
    assert.deepEqual(Object.keys(seen).sort(), ['a', 'b'], fail(`host rows seen: ${JSON.stringify(seen)}`));
    for (const [host, states] of Object.entries(seen)) {
      assert.equal(states[states.length - 1], 'done', `host ${host} went through ${states.join(' → ')}`);
      const ranks = states.map((s) => HOST_STATE_RANK[s] ?? -1);
      assert.ok(ranks.every((r, i) => r >= 0 && (i === 0 || r > ranks[i - 1])), `host ${host} went through ${states.join(' → ')}`);
    }
    t.diagnostic(`host rows: ${Object.entries(seen).map(([h, s]) => `${h}: ${s.join(' → ')}`).join('; ')}`);
    const rest = await bed.api<{ trace: { state: string; hosts: Array<{ host: string; packets: number; state: string }> } }>('GET', `/api/traces/${id}`);
    for (const hv of rest.json.trace.hosts) {
      const cell = await page.locator(`#trace-hosts tr[data-host="${hv.host}"] [data-field="packets"]`).textContent();
      assert.equal(cell?.replace(/,/g, ''), String(hv.packets), `host ${hv.host}: the page's packets vs the REST API's`);
      assert.ok(hv.packets >= 7, `host ${hv.host} captured ${hv.packets} packets of a 7-message call`);
    }

    // ---- the ladder: the basic call's seven arrows, in order and direction -------------
    await page.locator('#ladder .ladder-arrow').first().waitFor();
    const arrows = await page
      .locator(`#ladder .ladder-arrow[data-call-id="${callId}"]`)
      .evaluateAll((gs: any[]) => gs.map((g) => ({ label: g.querySelector('.ladder-label').textContent, src: g.dataset.src, dst: g.dataset.dst })));
    const uac = `${net.addr('a')}:5060`;
    const uas = `${net.addr('b')}:5060`;
    const expected: Array<[string, string, string]> = [
      ['INVITE', uac, uas],
      ['100', uas, uac],
      ['180', uas, uac],
      ['200', uas, uac],
      ['ACK', uac, uas],
      ['BYE', uac, uas],
      ['200', uas, uac],
    ];
    assert.deepEqual(
      arrows.map((a) => [a.label.replace(/^[✓✗↻]\s*/u, '').split(' ')[0], a.src, a.dst]),
      expected,
      `ladder arrows: ${JSON.stringify(arrows)}`,
    );
    // Choosing an arrow shows that message.
    await page.locator(`#ladder .ladder-arrow[data-call-id="${callId}"]`).nth(2).click();
    assert.match((await page.locator('#ladder .ladder-details').textContent()) ?? '', /180 Ringing/);
    // ... and the table marks the same message.
    assert.match((await page.locator('#msg-table tr.selected').textContent()) ?? '', /180 Ringing/);

    // ---- the message table: every host's captures ---------------------------------------
    const messages = await bed.api<{ messages: Array<{ host: string; callId: string }> }>('GET', `/api/traces/${id}/messages`);
    const rows = await rowsText(page, '#msg-table');
    assert.equal(rows.length, messages.json.messages.length);
    for (const h of ['a', 'b']) assert.equal(rows.filter((r) => r[1] === h).length, 7, `host ${h}'s rows: ${JSON.stringify(rows)}`);
    await page.locator('#msg-filter').fill('ringing');
    assert.equal(await page.locator('#msg-table tbody tr').count(), 2, 'one 180 Ringing per host');
    await page.locator('#msg-filter').fill('');

    // ---- screenshot of the finished trace -----------------------------------------------
    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, 'trace.png'), fullPage: true });
    t.diagnostic(`screenshot: ${join(OUTPUT, 'trace.png')}`);

    // ---- the merged PCAP, as a browser downloads it ----------------------------------------
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('a.download[data-what="merged"]').click()]);
    assert.equal(download.suggestedFilename(), `trace-${id}-number-${TRACED}.pcap`);
    const saved = join(bed.dir, 'page-merged.pcap');
    await download.saveAs(saved);
    assert.ok((await tsharkPackets(saved)).length > 0, 'tshark reads no packet in the downloaded PCAP');
    const sip = await tsharkSelect([saved], `sip.Call-ID == "${callId}"`);
    assert.ok(sip.length >= 14, `tshark finds ${sip.length} SIP packets of the call in the download (7 seen on each of a and b)`);
    const viaRest = join(bed.dir, 'rest-merged.pcap');
    assert.equal(await bed.apiDownload(`/api/traces/${id}/merged.pcap`, viaRest), 200);
    assert.ok(readFileSync(saved).equals(readFileSync(viaRest)), "the page's download differs from the REST API's merged.pcap");
    phase('ladder, table and download checked');

    // ---- History: the trace, and opening it shows the same --------------------------------
    const hostRows = await rowsText(page, '#trace-hosts');
    await page.getByRole('link', { name: 'History' }).click();
    const row = page.locator(`#history-table tbody tr[data-id="${id}"]`);
    await row.waitFor();
    const cells = (await rowsText(page, '#history-table'))[0];
    assert.equal(cells[0], id, 'the newest trace first');
    assert.equal(cells[2], USER);
    assert.match(cells[3], new RegExp(`number ${TRACED}.*last 15m`));
    assert.equal(cells[5], 'done');
    await row.getByRole('link', { name: id }).click();
    await page.locator('#msg-table tbody tr').first().waitFor();
    assert.deepEqual(await rowsText(page, '#trace-hosts'), hostRows);
    assert.deepEqual(await rowsText(page, '#msg-table'), rows);
    assert.equal(await page.locator(`#ladder .ladder-arrow[data-call-id="${callId}"]`).count(), 7);

    // ---- Fleet: both agents, and the mark for a window their rings do not reach ------------
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.locator('#fleet-table tbody tr[data-agent="b"]').waitFor();
    const fleet = await page.locator('#fleet-table tbody tr').evaluateAll((rs: any[]) => rs.map((r) => ({ agent: r.dataset.agent, connected: r.dataset.connected, short: r.dataset.short, text: r.textContent })));
    assert.deepEqual(fleet.map((f) => `${f.agent}:${f.connected}`), ['a:true', 'b:true']);
    for (const f of fleet) {
      assert.match(f.text, /eth0/);
      // The rings started a minute or two ago: a 15-minute window reaches further back.
      assert.equal(f.short, 'true', `agent ${f.agent} is not marked for the 15 min window: ${f.text}`);
      assert.match(f.text, /does not reach the window/);
    }
    // A window starting now is covered.
    await page.getByRole('link', { name: 'New trace' }).click();
    await page.locator('#tf-window-custom').check();
    await page.locator('#tf-from').fill(new Date().toISOString().slice(0, 19));
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.locator('#fleet-table tbody tr[data-agent="b"]').waitFor();
    assert.equal(await page.locator('#fleet-window').inputValue(), 'custom');
    // An agent's ring span reaches the dispatcher with its heartbeats (every 5 s): one that had just started
    // may still look empty, so wait for the page's own refresh rather than read the first frame.
    await page
      .waitForFunction(() => [...document.querySelectorAll('#fleet-table tbody tr')].map((r) => (r as unknown as { dataset: { short?: string } }).dataset.short).join() === 'false,false', null, { timeout: 15_000 })
      .catch(() => {});
    assert.deepEqual(await page.locator('#fleet-table tbody tr').evaluateAll((rs: any[]) => rs.map((r) => r.dataset.short)), ['false', 'false']);
    await page.locator('#fleet-window').selectOption('1h');
    assert.deepEqual(await page.locator('#fleet-table tbody tr').evaluateAll((rs: any[]) => rs.map((r) => r.dataset.short)), ['true', 'true']);

    assert.deepEqual(errors, [], fail('the page logged errors'));
    phase('history and fleet checked');
  } finally {
    await browser?.close();
    await relay?.close();
  }
});
