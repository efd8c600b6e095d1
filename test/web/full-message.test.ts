import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { importCaptures } from '../../agent/index/import';
import { fullMessagesPage, fullTraceMessage, type FullTraceMessage } from '../../shared/protocol/client';
import { startTestCouch, TestCouch } from '../support/couch';
import { AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER } from '../support/dispatcher';
import { FULL_CALL_ID, FULL_T0, writeCallPcap } from '../support/full-call';
import { startTestAgent, TestAgent, until } from '../support/trace';
import { tsharkSipMessages, type TsharkSipMessage } from '../support/tshark';
import { browserSkipReason, launchBrowser, logIn, TestBrowser } from './browser';

/*
 * The whole SIP message over REST (real HTTP, the real dispatcher on the
 * embedded store, two real agents that both saw the call), in the CLI and
 * in the page (headless Chromium): what tshark shows for each frame, and a
 * message whose headers carry markup, a script and terminal escapes is
 * shown as text, nothing runs.
 */

declare const window: any;
declare const document: any;

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const basic = `Basic ${Buffer.from(`${TRACER.name}:${TRACER.password}`).toString('base64')}`;

describe('the whole SIP message (REST, CLI, page)', () => {
  let dir = '';
  let couch: TestCouch;
  let d: TestDispatcher;
  const agents: TestAgent[] = [];
  let ref: TsharkSipMessage[] = [];
  let id = '';

  async function get(path: string): Promise<{ status: number; body: any }> {
    const r = await fetch(`${d.url}${path}`, { headers: { authorization: basic } });
    return { status: r.status, body: await r.json() };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tf-fullmsg-'));
    const pcap = join(dir, 'call.pcap');
    writeCallPcap(pcap);
    ref = await tsharkSipMessages(pcap);
    couch = await startTestCouch();
    d = await startTestDispatcher(couch.url, { staticDir: join(ROOT, 'web') });
    for (const host of ['a', 'b']) {
      const ring = join(dir, `ring-${host}`);
      await importCaptures(ring, [pcap]);
      agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: host, ringDir: ring }));
    }
    await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === 2, 'agents a and b connected');
    const started = await fetch(`${d.url}/api/traces`, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/json' },
      body: JSON.stringify({ callId: [FULL_CALL_ID], since: new Date((FULL_T0 - 60) * 1000).toISOString(), until: new Date((FULL_T0 + 60) * 1000).toISOString() }),
    });
    assert.equal(started.status, 201);
    id = ((await started.json()) as { trace: { id: string } }).trace.id;
    await until(async () => (await get(`/api/traces/${id}`)).body.trace.state === 'done', 'the trace is done', 30_000);
  });

  after(async () => {
    for (const a of agents) a.close();
    await d?.stop();
    await couch?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function sameAsTshark(m: FullTraceMessage, t: TsharkSipMessage, what: string): void {
    assert.ok(m.full, `${what}: decoded`);
    assert.equal(m.full.startLine, t.startLine, `${what}: start line`);
    assert.deepEqual(m.full.headers, t.headers, `${what}: headers`);
    assert.equal(Buffer.from(m.full.body, 'latin1').toString('hex'), t.body.toString('hex'), `${what}: body`);
    assert.equal(Buffer.from(m.full.raw, 'base64').toString('hex'), t.raw.toString('hex'), `${what}: bytes`);
  }

  test('GET /api/traces/:id/messages?full=1 and /messages/:n give every message whole, as tshark shows it; bounds are checked', async () => {
    assert.equal(ref.length, 8);
    const all = await get(`/api/traces/${id}/messages?full=1&limit=200`);
    assert.equal(all.status, 200);
    const page = fullMessagesPage.parse(all.body);
    assert.equal(page.total, 16, 'each host captured the 8 messages');
    assert.equal(page.note, undefined);
    for (const host of ['a', 'b']) {
      const mine = page.messages.filter((m) => m.host === host);
      assert.equal(mine.length, 8);
      mine.forEach((m, i) => sameAsTshark(m, ref[i], `${host} #${i} frame ${ref[i].frame}`));
    }
    // The call's figures, per host: the BYE came from the caller's own TCP port.
    const figures = { callId: FULL_CALL_ID, caller: '192.0.2.1:5060', callee: '198.51.100.7:5060', finalStatus: 200, finalReason: 'OK', endedBy: 'caller', endedWith: 'BYE', srdMs: 0.001, answerMs: 0.002, durationMs: 0.007, retransmissions: 0, messages: 8 };
    assert.deepEqual(page.calls, [{ ...figures, host: 'a' }, { ...figures, host: 'b' }]);
    // A page of it, and one message by its number: the same.
    const part = fullMessagesPage.parse((await get(`/api/traces/${id}/messages?full=1&offset=5&limit=3`)).body);
    assert.equal(part.offset, 5);
    assert.deepEqual(part.messages, page.messages.slice(5, 8));
    const one = await get(`/api/traces/${id}/messages/9`);
    assert.equal(one.status, 200);
    assert.deepEqual(fullTraceMessage.parse(one.body.message), page.messages[9]);
    // Without full: the summaries, as before.
    const plain = await get(`/api/traces/${id}/messages`);
    assert.equal(plain.body.messages.length, 16);
    assert.equal(plain.body.messages[0].full, undefined);
    assert.equal((await get(`/api/traces/${id}/messages/16`)).status, 404);
    assert.equal((await get(`/api/traces/${id}/messages/-1`)).status, 400);
    assert.equal((await get(`/api/traces/${id}/messages?full=1&limit=201`)).status, 400);
    assert.equal((await get(`/api/traces/${id}/messages?full=yes`)).status, 400);
  });

  test('tracefleet show --messages --full prints each message whole, its control and bidi characters escaped', async () => {
    const login = await fetch(`${d.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: TRACER.name, password: TRACER.password }) });
    const token = ((await login.json()) as { token: string }).token;
    const out = await new Promise<string>((ok, ko) =>
      execFile(process.execPath, [CLI, 'show', id, '--messages', '--full'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TRACEFLEET_URL: d.url, TRACEFLEET_TOKEN: token }, timeout: 60_000 }, (e, stdout, stderr) =>
        e ? ko(new Error(`${e.message}\n${stderr}`)) : ok(stdout),
      ),
    );
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(out, /[\x00-\x09\x0b-\x1f\x7f\u202e]/, 'no raw control or bidi character reaches the terminal');
    assert.match(out, /X-Evil: <img src=x onerror="window.__pwned=1"><script>window.__pwned=1<\/script>/);
    assert.match(out, /Subject: \\x1b\[2J\\x1b\]0;owned\\x07 \\u202eevil/);
    assert.equal(out.split('\n').filter((l) => l.startsWith('── #')).length, 16);
    assert.equal(out.split('\n').filter((l) => l === 'a=rtpmap:101 telephone-event/8000').length, 4, 'both INVITEs’ SDP, on both hosts');
    assert.match(out, /^BYE sip:bob@198\.51\.100\.7 SIP\/2\.0$/m);
    assert.match(out, /^full-msg@192\.0\.2\.1 +a +200 OK +caller \(BYE\) +0\.000 +0\.000 +0\.000 +0$/m, 'the calls table');
  });

  test('the page shows the chosen message whole, as text: the markup and the script in its headers do not run', { skip: browserSkipReason() }, async () => {
    let browser: TestBrowser | undefined;
    try {
      browser = await launchBrowser();
      const { page, errors } = await browser.newPage();
      await logIn(page, d.url, TRACER.name, TRACER.password, `#/trace/${id}`);
      await page.locator('#msg-table tbody tr').first().waitFor();
      assert.deepEqual(
        await page.locator('#calls-table tbody tr').evaluateAll((rs: any[]) => rs.map((r) => [...r.children].map((c: any) => c.textContent))),
        ['a', 'b'].map((host) => [FULL_CALL_ID, host, '200 OK', 'caller (BYE)', '0.000 s', '0.000 s', '0.000 s', '0']),
      );
      // The first row is host a's INVITE, the one with the hostile headers.
      await page.locator('#msg-table tbody tr').first().click();
      await page.locator('#full-formatted').waitFor();
      const shown = await page.locator('#full-formatted').evaluate((el: any) => ({
        start: el.querySelector('.sip-start').textContent,
        headers: [...el.querySelectorAll('dt')].map((dt: any) => [dt.textContent, dt.nextElementSibling.textContent]),
        elements: el.querySelectorAll('script, img, iframe').length,
      }));
      assert.equal(shown.start, ref[0].startLine);
      assert.deepEqual(
        shown.headers.find((x: string[]) => x[0] === 'X-Evil'),
        ['X-Evil', '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'],
      );
      assert.deepEqual(shown.headers.find((x: string[]) => x[0] === 'Subject'), ['Subject', '\\x1b[2J\\x1b]0;owned\\x07 \\u202eevil']);
      assert.equal(shown.headers.length, ref[0].headers.length);
      assert.equal(shown.elements, 0, 'no element was made from the message');
      assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing ran');
      assert.match((await page.locator('#full-body').textContent()) ?? '', /^v=0\no=alice /);
      // The raw view: the exact bytes, CR/LF and the UTF-8 of U+202E shown escaped.
      await page.locator('#full-raw-toggle').click();
      const raw = (await page.locator('#full-raw').textContent()) ?? '';
      assert.ok(await page.locator('#full-raw').isVisible());
      assert.ok(raw.startsWith('INVITE sip:+15551234567@example.com SIP/2.0\\r\\n\n'));
      assert.match(raw, /Subject: \\x1b\[2J\\x1b\]0;owned\\x07 \\xe2\\x80\\xaeevil\\r\\n/);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(raw, /[\x00-\x09\x0b-\x1f\x7f-\uffff]/);
      // A ladder arrow: the fragmented re-INVITE, whole with its 2400-byte SDP line.
      const arrows = page.locator('#ladder .ladder-arrow');
      await arrows.first().waitFor();
      const labels = await arrows.evaluateAll((gs: any[]) => gs.map((g) => g.querySelector('.ladder-label').textContent));
      const reinvite = labels.findIndex((l: string, i: number) => /INVITE/.test(l) && labels.slice(0, i).some((x: string) => /INVITE/.test(x)));
      assert.ok(reinvite > 0, `a second INVITE among ${labels.join(', ')}`);
      await arrows.nth(reinvite).click();
      await page.locator('#full-body').waitFor();
      await until(async () => /a=x-pad:p{2400}/.test((await page.locator('#full-body').textContent()) ?? ''), 'the re-INVITE whole in the panel');
      assert.deepEqual(errors, [], `the page logged errors:\n${errors.join('\n')}`);
      await page.close();
    } finally {
      await browser?.close();
    }
  });
});
