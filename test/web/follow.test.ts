import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, Socket as UdpSocket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { startAgent, RunningAgent } from '../../agent/daemon/run';
import { agentStatusOf, connectDispatcher, DispatcherLink } from '../../agent/link/client';
import { serveFollows, FollowServer } from '../../agent/follow/serve';
import { silentLogger } from '../../shared/log/log';
import { startTestCouch, TestCouch } from '../support/couch';
import { AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER } from '../support/dispatcher';
import { isRoot, LOOPBACK, NEEDS_ROOT, sleep, tempDir, waitFor } from '../support/capture';
import { callDatagrams, sipDatagram } from '../support/sip-datagrams';
import { browserSkipReason, launchBrowser, logIn, TestBrowser } from './browser';

/*
 * "Follow live" in headless Chromium: a real dispatcher serving the page, a
 * real agent capturing lo, and a call sent message by message to 127.0.0.1
 * after the follow started. Each message must reach the ladder before the
 * next one is sent: the ladder grows while the call runs.
 */

declare const document: any;

const ROOT = resolve(__dirname, '..', '..', '..');
const SIP_PORT = 5096;
const skip = browserSkipReason() || (isRoot() ? false : NEEDS_ROOT);

let couch: TestCouch;
let d: TestDispatcher;
let agent: RunningAgent;
let link: DispatcherLink;
let follows: FollowServer;
let browser: TestBrowser;
let tx: UdpSocket;
let dir = '';

function send(b: Buffer): Promise<void> {
  return new Promise((ok, fail) => tx.send(b, SIP_PORT, LOOPBACK, (e) => (e ? fail(e) : ok())));
}

before(async () => {
  if (skip) return;
  couch = await startTestCouch();
  d = await startTestDispatcher(couch.url, { staticDir: join(ROOT, 'web') });
  dir = tempDir('tf-web-follow-');
  const ring = join(dir, 'ring');
  agent = await startAgent({ ringDir: ring, interfaces: ['lo'], filter: `udp port ${SIP_PORT}`, ringMaxBytes: 64 * 1024 * 1024, maxSegmentBytes: 4 * 1024 * 1024, logger: silentLogger });
  link = connectDispatcher({
    url: d.url,
    token: AGENT_TOKEN,
    name: 'lo-w',
    hello: () => ({ version: 'test', hostname: hostname(), interfaces: ['lo'], ...agentStatusOf(agent.engine.stats(), ring, 0) }),
    status: () => agentStatusOf(agent.engine.stats(), ring, 0),
    logger: silentLogger,
  });
  follows = serveFollows(link.socket, { follows: agent.follows, maxFollows: 2, logger: silentLogger });
  for (let i = 0; i < 100 && !(await d.orchestrator.agents()).some((a) => a.name === 'lo-w' && a.connected); i++) await sleep(100);
  tx = createSocket('udp4');
  await new Promise<void>((ok) => tx.bind(0, LOOPBACK, () => ok()));
  browser = await launchBrowser();
});

after(async () => {
  if (skip) return;
  await browser?.close();
  tx?.close();
  follows?.close();
  link?.close();
  await agent?.stop();
  await d?.stop();
  await couch?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('Follow live: the ladder and the table grow while the call runs; pause holds them; stop links to the stored trace', { skip, timeout: 120_000 }, async () => {
  const { page, errors } = await browser.newPage();
  const fail = (what: string) => `${what}; page errors: ${errors.join(' | ') || 'none'}`;
  await logIn(page, d.url, TRACER.name, TRACER.password);
  const number = `1555${String(Date.now()).slice(-7)}`;
  const callId = `live-${Date.now()}`;
  await page.locator('#tf-number').fill(number.slice(-7));
  // RTP is not followed live: said at its box, and nothing starts.
  await page.locator('#tf-rtp').check();
  await page.getByRole('button', { name: 'Follow live' }).click();
  await page.waitForFunction(() => /RTP is not followed live yet/.test(document.querySelector('#err-rtp').textContent));
  assert.equal(follows.active(), 0);
  await page.locator('#tf-rtp').uncheck();
  await page.getByRole('button', { name: 'Follow live' }).click();
  await page.locator('#follow-status').waitFor();
  assert.ok(await waitFor(() => follows.active() === 1, 15_000), fail('the agent never started following'));
  await page.locator('#follow-hosts tr[data-host="lo-w"]').waitFor();

  const arrows = () => page.locator(`#ladder .ladder-arrow[data-call-id="${callId}"]`).count();
  const msgs = callDatagrams(callId, `+${number}`, SIP_PORT);
  for (const [i, m] of msgs.entries()) {
    await send(m);
    // The next message is sent only once this one is on the ladder.
    await page
      .waitForFunction(([id, n]) => document.querySelectorAll(`#ladder .ladder-arrow[data-call-id="${id}"]`).length >= n, [callId, i + 1] as const, { timeout: 10_000 })
      .catch(() => {
        throw new Error(fail(`message ${i + 1} of the call never reached the ladder`));
      });
    assert.equal(await arrows(), i + 1, 'one arrow per message, none ahead of the call');
  }
  assert.equal(await page.locator('#msg-table tbody tr').count(), 7);
  assert.equal(await page.locator('#follow-hosts tr[data-host="lo-w"] [data-field="messages"]').textContent(), '7');
  assert.match((await page.locator('#follow-hosts tr[data-host="lo-w"] [data-field="behind"]').textContent()) ?? '', /^\d+(\.\d)? m?s$/, 'the host row says how far behind it is');

  // A filter typed in the table stays while messages keep coming.
  await page.locator('#msg-filter').fill('options');
  assert.equal(await page.locator('#msg-table tbody tr').count(), 0);

  // Paused: the follow goes on (the status counts it), the ladder waits.
  await page.getByRole('button', { name: 'Pause' }).click();
  await send(sipDatagram(`OPTIONS sip:+${number}@${LOOPBACK} SIP/2.0`, callId, `+${number}`, '3 OPTIONS', SIP_PORT));
  await page.waitForFunction(() => /Paused \(still following\): 8 SIP messages/.test(document.querySelector('#follow-status').textContent), undefined, { timeout: 10_000 });
  await sleep(600);
  assert.equal(await arrows(), 7, 'the ladder holds still while paused');
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.waitForFunction((id) => document.querySelectorAll(`#ladder .ladder-arrow[data-call-id="${id}"]`).length === 8, callId, { timeout: 10_000 });
  assert.equal(await page.locator('#msg-filter').inputValue(), 'options');
  assert.deepEqual(await page.locator('#msg-table tbody tr .col-what').allTextContents(), ['OPTIONS']);

  // Stopped: stored, and the page links to it.
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.locator('#follow-status[data-state="ended"]').waitFor({ timeout: 20_000 });
  const link = page.locator('#follow-trace-link');
  const id = /^#\/trace\/(.+)$/.exec((await link.getAttribute('href')) ?? '')?.[1];
  assert.ok(id, 'a link to the stored trace');
  await link.click();
  await page.locator('#trace-status[data-state="done"]').waitFor({ timeout: 30_000 });
  assert.equal((await d.orchestrator.view(id))?.merged?.packets, 8);
  await page.locator(`#ladder .ladder-arrow[data-call-id="${callId}"]`).first().waitFor();
  assert.equal(await arrows(), 8, 'the stored trace shows the same call');
  assert.deepEqual(errors, []);
});
