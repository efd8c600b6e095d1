// The call-flow ladder (web/ladder.js) in real headless Chromium: the module
// is served as is from web/ by a static server on loopback and driven
// through a small test page.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve, sep } from 'node:path';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { MessageSummary } from '../../agent/query/engine';

// Browser-side globals, used only inside page.evaluate callbacks.
declare const document: any;
declare const window: any;
declare const getComputedStyle: any;
declare const requestAnimationFrame: any;

const CHROMIUM = '/usr/bin/chromium';

function repoRoot(): string {
  let d = __dirname;
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'web', 'ladder.js'))) return d;
    d = dirname(d);
  }
  throw new Error(`no repository root (package.json beside web/ladder.js) above ${__dirname}`);
}
const ROOT = repoRoot();
const WEB = join(ROOT, 'web');
const OUT = join(ROOT, 'test-output', 'web');

const TEST_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>ladder test</title></head>
<body style="margin:16px;font-family:system-ui,sans-serif">
<h1 style="font-size:18px;margin:0 0 8px">Trace t-0001 · call flow</h1>
<div id="c"></div>
<script type="module">
import { renderLadder } from '/ladder.js';
window.__selected = [];
window.__render = async (messages, dialog, clockOffsetsMs) => {
  if (window.__ladder) window.__ladder.destroy();
  window.__selected = [];
  const c = document.getElementById('c');
  window.__ladder = renderLadder(c, messages, { dialog, clockOffsetsMs, onSelect: (m) => window.__selected.push(m) });
  const link = document.querySelector('link[data-ladder-css]');
  if (!link) throw new Error('ladder.js linked no stylesheet');
  if (!link.sheet) await new Promise((ok, fail) => { link.addEventListener('load', ok); link.addEventListener('error', () => fail(new Error('ladder.css did not load'))); });
  await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
};
window.__ready = true;
</script>
</body></html>`;

const TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' };

function startStatic(): Promise<Server> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/__test.html') {
      res.writeHead(200, { 'content-type': TYPES['.html'] });
      res.end(TEST_PAGE);
      return;
    }
    const file = resolve(WEB, `.${path}`);
    if (!file.startsWith(WEB + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok(server));
  });
}

/** A SIP summary as the page gets it from /api/traces/:id/messages. */
type Msg = MessageSummary & { host?: string };

/** A summary at `base` + `offset` seconds ("s.nnnnnnnnn" of the offset), as the engine writes it. */
function msg(base: number, offset: string, host: string, src: string, dst: string, what: string | number, reason: string | null, callId: string, cseq: string, from: string, to: string): Msg {
  const [s, f = ''] = offset.split('.');
  const frac = f.padEnd(9, '0');
  const sec = base + Number(s);
  const time = new Date(sec * 1000).toISOString().replace(/\.\d{3}Z$/, `.${frac}Z`);
  const isReq = typeof what === 'string';
  return {
    host,
    ts: `${sec}.${frac}`,
    time,
    src,
    dst,
    transport: 'udp',
    method: isReq ? what : null,
    status: isReq ? null : what,
    reason: isReq ? null : reason,
    callId,
    cseq,
    from,
    to,
    ruri: isReq ? to : null,
    correlation: null,
    bytes: isReq ? 820 : 410,
    packets: 1,
  };
}

// A basic call between two addresses, captured by both parties' hosts.
const T0 = 1_700_000_000; // 2023-11-14T22:13:20Z
const UAC = '10.0.0.1:5060';
const UAS = '10.0.0.2:5080';
const CALL = '3848276298220188511@10.0.0.1';
const basicOne = (host: string, skew: number): Msg[] => {
  const at = (t: number) => (t + skew).toFixed(9);
  return [
    msg(T0, at(0), host, UAC, UAS, 'INVITE', null, CALL, '1 INVITE', '1001', '2002'),
    msg(T0, at(0.01), host, UAS, UAC, 100, 'Trying', CALL, '1 INVITE', '1001', '2002'),
    msg(T0, at(0.12), host, UAS, UAC, 180, 'Ringing', CALL, '1 INVITE', '1001', '2002'),
    msg(T0, at(2.5), host, UAS, UAC, 200, 'OK', CALL, '1 INVITE', '1001', '2002'),
    msg(T0, at(2.51), host, UAC, UAS, 'ACK', null, CALL, '1 ACK', '1001', '2002'),
    msg(T0, at(10), host, UAC, UAS, 'BYE', null, CALL, '2 BYE', '1001', '2002'),
    msg(T0, at(10.02), host, UAS, UAC, 200, 'OK', CALL, '2 BYE', '2002', '1001'),
  ];
};
// The callee's host clock runs 3 ms ahead: its captures of the same packets
// come 3 ms later. Fed in reverse so the ladder has to sort.
const BASIC: Msg[] = [...basicOne('uac', 0), ...basicOne('uas', 0.003000001)].reverse();

// Two dialogs through a proxy at 192.0.2.1; the proxy's host captures
// everything, bob's host (clock 0.5 ms behind) the proxy↔bob leg too.
const T1 = 1_700_000_100;
const ALICE = '192.0.2.10:5060';
const PROXY = '192.0.2.1:5060';
const BOB = '198.51.100.20:5060';
const CAROL = '192.0.2.30:5062';
const A = 'a84b4c76e66710@alice.example';
const B = 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6@carol.example';
const DIALOGS: Msg[] = [
  msg(T1, '0.000', 'proxy', ALICE, PROXY, 'INVITE', null, A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.002', 'proxy', PROXY, ALICE, 100, 'Trying', A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.004', 'proxy', PROXY, BOB, 'INVITE', null, A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.0035', 'bob', PROXY, BOB, 'INVITE', null, A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.150', 'proxy', BOB, PROXY, 180, 'Ringing', A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.1495', 'bob', BOB, PROXY, 180, 'Ringing', A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.152', 'proxy', PROXY, ALICE, 180, 'Ringing', A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.300', 'proxy', CAROL, PROXY, 'INVITE', null, B, '7 INVITE', '3003', '4004'),
  msg(T1, '0.800', 'proxy', CAROL, PROXY, 'INVITE', null, B, '7 INVITE', '3003', '4004'),
  msg(T1, '0.802', 'proxy', PROXY, CAROL, 486, 'Busy Here', B, '7 INVITE', '3003', '4004'),
  msg(T1, '0.810', 'proxy', CAROL, PROXY, 'ACK', null, B, '7 ACK', '3003', '4004'),
  msg(T1, '1.000', 'proxy', BOB, PROXY, 200, 'OK', A, '1 INVITE', '1001', '2002'),
  msg(T1, '0.9995', 'bob', BOB, PROXY, 200, 'OK', A, '1 INVITE', '1001', '2002'),
  msg(T1, '1.002', 'proxy', PROXY, ALICE, 200, 'OK', A, '1 INVITE', '1001', '2002'),
  msg(T1, '1.050', 'proxy', ALICE, PROXY, 'ACK', null, A, '1 ACK', '1001', '2002'),
  msg(T1, '1.052', 'proxy', PROXY, BOB, 'ACK', null, A, '1 ACK', '1001', '2002'),
  msg(T1, '1.0515', 'bob', PROXY, BOB, 'ACK', null, A, '1 ACK', '1001', '2002'),
];

function rgb(hex: string): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgb(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255})`;
}
// The documented palette (Okabe-Ito) of the four kinds.
const LINE = { request: rgb('#0072B2'), provisional: rgb('#E69F00'), success: rgb('#009E73'), failure: rgb('#D55E00') };

interface Snap {
  lanes: Array<{ addr: string; x: number; label: string; hosts: string | null }>;
  arrows: Array<{
    row: number;
    label: string;
    kind: string;
    src: string;
    dst: string;
    hosts: string;
    hostsText: string | null;
    lineLeft: number;
    lineRight: number;
    headLeft: number;
    headRight: number;
    y: number;
    stroke: string;
    dash: string;
    labelFill: string;
    retrans: boolean;
    aria: string;
    role: string;
    tabindex: string;
    callId: string;
  }>;
  times: Array<{ clock: string; delta: string; tag: string | null }>;
  options: Array<{ value: string; text: string }> | null;
  legend: Array<{ callId: string; colour: string; text: string }>;
  legendHidden: boolean;
}

function snap(page: Page): Promise<Snap> {
  return page.evaluate(() => {
    const lanes = [...document.querySelectorAll('.ladder-lane')].map((g: any) => {
      const r = g.querySelector('rect').getBoundingClientRect();
      return { addr: g.dataset.lane, x: r.left + r.width / 2, label: g.querySelector('.ladder-lane-addr').textContent, hosts: g.querySelector('.ladder-lane-host')?.textContent ?? null };
    });
    const arrows = [...document.querySelectorAll('.ladder-arrow')].map((g: any) => {
      const line = g.querySelector('.ladder-line');
      const head = g.querySelector('.ladder-head');
      const label = g.querySelector('.ladder-label');
      const lr = line.getBoundingClientRect();
      const hr = head.getBoundingClientRect();
      const cs = getComputedStyle(line);
      return {
        row: Number(g.dataset.row),
        label: label.textContent,
        kind: g.dataset.kind,
        src: g.dataset.src,
        dst: g.dataset.dst,
        hosts: g.dataset.hosts,
        hostsText: g.querySelector('.ladder-hosts')?.textContent ?? null,
        lineLeft: lr.left,
        lineRight: lr.right,
        headLeft: hr.left,
        headRight: hr.right,
        y: lr.top + lr.height / 2,
        stroke: cs.stroke,
        dash: cs.strokeDasharray,
        labelFill: getComputedStyle(label).fill,
        retrans: g.classList.contains('retransmission'),
        aria: g.getAttribute('aria-label'),
        role: g.getAttribute('role'),
        tabindex: g.getAttribute('tabindex'),
        callId: g.dataset.callId,
      };
    });
    const times = [...document.querySelectorAll('.ladder-time')].map((g: any) => ({
      clock: g.querySelector('.ladder-clock').textContent,
      delta: g.querySelector('.ladder-delta').textContent,
      tag: g.querySelector('.ladder-dialog-tag')?.textContent ?? null,
    }));
    const select = document.querySelector('.ladder-view select');
    const legendBox = document.querySelector('.ladder-dialog-legend');
    return {
      lanes,
      arrows,
      times,
      options: select ? [...select.options].map((o: any) => ({ value: o.value, text: o.textContent })) : null,
      legend: [...legendBox.querySelectorAll('li[data-call-id]')].map((li: any) => ({
        callId: li.dataset.callId,
        colour: getComputedStyle(li.querySelector('.ladder-swatch')).backgroundColor,
        text: li.textContent,
      })),
      legendHidden: legendBox.hidden,
    };
  });
}

/** Each arrow starts on its source lane and its head touches the destination lane. */
function assertDirections(s: Snap): void {
  const x = new Map(s.lanes.map((l) => [l.addr, l.x]));
  for (const a of s.arrows) {
    const sx = x.get(a.src);
    const dx = x.get(a.dst);
    assert.ok(sx !== undefined && dx !== undefined, `lanes for ${a.src} and ${a.dst}`);
    if (dx > sx) {
      assert.ok(Math.abs(a.lineLeft - sx) <= 4, `${a.label} row ${a.row} starts at its source lane (${a.lineLeft} vs ${sx})`);
      assert.ok(Math.abs(a.headRight - dx) <= 3, `${a.label} row ${a.row} points at its destination lane (${a.headRight} vs ${dx})`);
      assert.ok(a.headLeft >= a.lineRight - 2, `${a.label} row ${a.row}: head at the right end`);
    } else {
      assert.ok(Math.abs(a.lineRight - sx) <= 4, `${a.label} row ${a.row} starts at its source lane (${a.lineRight} vs ${sx})`);
      assert.ok(Math.abs(a.headLeft - dx) <= 3, `${a.label} row ${a.row} points at its destination lane (${a.headLeft} vs ${dx})`);
      assert.ok(a.headRight <= a.lineLeft + 2, `${a.label} row ${a.row}: head at the left end`);
    }
  }
  for (let i = 1; i < s.arrows.length; i++) assert.ok(s.arrows[i].y > s.arrows[i - 1].y, `row ${i} below row ${i - 1}`);
}

describe('web/ladder.js in headless Chromium', () => {
  let browser: Browser;
  let server: Server;
  let base: string;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does)`);
    server = await startStatic();
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60_000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  });

  /** A fresh page with the ladder of `messages`; `problems` collects console errors, page errors and failed loads. */
  async function open(messages: Msg[], dialog?: string, clockOffsetsMs?: Record<string, number>): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(15_000);
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });
    await page.goto(`${base}/__test.html`);
    await page.waitForFunction(() => window.__ready === true);
    await page.evaluate(([m, d, o]) => window.__render(m, d, o), [messages, dialog, clockOffsetsMs] as const);
    return { page, problems };
  }

  it('draws a basic call: lanes, arrows in time order with labels, directions and kind colours; two hosts\' captures once', async () => {
    const { page, problems } = await open(BASIC);
    const s = await snap(page);

    assert.deepEqual(s.lanes.map((l) => [l.addr, l.label]), [[UAC, UAC], [UAS, UAS]]);
    assert.ok(s.lanes[0].x < s.lanes[1].x, 'lanes left to right in order of first appearance');
    assert.equal(s.options, null, 'one dialog: no selector');
    assert.equal(s.legendHidden, true, 'one dialog: no dialog legend');

    assert.deepEqual(
      s.arrows.map((a) => [a.label, a.kind, a.src === UAC ? '→' : '←']),
      [
        ['INVITE', 'request', '→'],
        ['100 Trying', 'provisional', '←'],
        ['180 Ringing', 'provisional', '←'],
        ['✓ 200 OK', 'success', '←'],
        ['ACK', 'request', '→'],
        ['BYE', 'request', '→'],
        ['✓ 200 OK', 'success', '←'],
      ],
    );
    assertDirections(s);

    // Each message was captured by both hosts (14 summaries): drawn once, named with both.
    for (const a of s.arrows) {
      assert.equal(a.hosts, 'uac, uas');
      assert.equal(a.hostsText, 'uac, uas');
      assert.equal(a.retrans, false, `${a.label} is no retransmission`);
      assert.equal(a.role, 'button');
      assert.match(a.aria, /captured by uac and uas/);
    }

    // Colours by kind, and a second cue besides colour (dashes for provisional, ✓ for success).
    for (const a of s.arrows) assert.equal(a.stroke, LINE[a.kind as keyof typeof LINE], `${a.label} stroke`);
    const dash = Object.fromEntries(s.arrows.map((a) => [a.kind, a.dash]));
    assert.equal(dash.request, 'none');
    assert.notEqual(dash.provisional, 'none');
    assert.equal(new Set(s.arrows.map((a) => a.stroke)).size, 3, 'request, provisional and success differ');

    assert.deepEqual(
      s.times.map((t) => [t.clock, t.delta]),
      [
        ['22:13:20.000', '+0.000 s'],
        ['22:13:20.010', '+0.010 s'],
        ['22:13:20.120', '+0.120 s'],
        ['22:13:22.500', '+2.500 s'],
        ['22:13:22.510', '+2.510 s'],
        ['22:13:30.000', '+10.000 s'],
        ['22:13:30.020', '+10.020 s'],
      ],
    );
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('sorts by the exact nanosecond timestamp, not as a float', async () => {
    // 1700000000.000000001 and ...002 are the same double.
    const later = msg(T0, '0.000000002', 'h', UAS, UAC, 180, 'Ringing', CALL, '1 INVITE', '1001', '2002');
    const earlier = msg(T0, '0.000000001', 'h', UAS, UAC, 100, 'Trying', CALL, '1 INVITE', '1001', '2002');
    assert.equal(Number(later.ts), Number(earlier.ts));
    const { page, problems } = await open([later, earlier]);
    const s = await snap(page);
    assert.deepEqual(s.arrows.map((a) => a.label), ['100 Trying', '180 Ringing']);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it("orders by corrected time: a host whose clock is 2 s behind has its captures moved by the trace's clock offsets, and folded with the other host's", async () => {
    // uas's clock is 2 s behind: its INVITE (1 ms after uac's, truly) and its own 100 Trying (10 ms) read 2 s early.
    const messages = [
      msg(T0, '0', 'uac', UAC, UAS, 'INVITE', null, CALL, '1 INVITE', '1001', '2002'),
      msg(T0 - 2, '0.001', 'uas', UAC, UAS, 'INVITE', null, CALL, '1 INVITE', '1001', '2002'),
      msg(T0 - 2, '0.010', 'uas', UAS, UAC, 100, 'Trying', CALL, '1 INVITE', '1001', '2002'),
    ];
    const raw = await open(messages);
    const r = await snap(raw.page);
    // On raw clocks the answer comes before its INVITE, and uac's capture looks like a retransmission 2 s later.
    assert.deepEqual(r.arrows.map((a) => [a.label, a.hosts]), [['INVITE', 'uas'], ['100 Trying', 'uas'], ['↻ INVITE', 'uac']]);
    await raw.page.close();
    const fixed = await open(messages, undefined, { uac: 0, uas: -2000 });
    const f = await snap(fixed.page);
    assert.deepEqual(f.arrows.map((a) => [a.label, a.hosts]), [['INVITE', 'uac, uas'], ['100 Trying', 'uas']]);
    assert.deepEqual([...raw.problems, ...fixed.problems], []);
    await fixed.page.close();
  });

  it('folds captures by different hosts within 50 ms only; the same host or later is a retransmission', async () => {
    const invite = (offset: string, host: string) => msg(T0, offset, host, UAC, UAS, 'INVITE', null, CALL, '1 INVITE', '1001', '2002');
    const { page, problems } = await open([
      invite('0', 'uac'),
      invite('0.049', 'uas'), // the same packet, seen by the callee's host 49 ms later
      msg(T0, '0.030', 'uas', UAC, UAS, 'INVITE', null, 'other@x', '1 INVITE', '1', '2'), // another dialog
      invite('0.200', 'uac'),
      invite('0.260', 'uas'), // 60 ms apart: two packets
      invite('0.500', 'uas'),
      invite('0.510', 'uas'), // the same host twice: two packets
    ]);
    const s = await snap(page);
    assert.deepEqual(
      s.arrows.map((a) => [a.label, a.hosts, a.retrans, a.callId === CALL]),
      [
        ['INVITE', 'uac, uas', false, true],
        ['INVITE', 'uas', false, false],
        ['↻ INVITE', 'uac', true, true],
        ['↻ INVITE', 'uas', true, true],
        ['↻ INVITE', 'uas', true, true],
        ['↻ INVITE', 'uas', true, true],
      ],
    );
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('shows two dialogs with a selector, dialog colours and a legend; marks a retransmission; filters by dialog', async () => {
    const { page, problems } = await open(DIALOGS);
    let s = await snap(page);

    assert.deepEqual(s.options?.map((o) => o.value), ['all', A, B]);
    assert.match(s.options![0].text, /All dialogs \(2\)/);
    assert.match(s.options![1].text, /^#1 INVITE 1001 → 2002 · a84b4c76e66710@alice\.example \(9\)$/);
    assert.match(s.options![2].text, /^#2 INVITE 3003 → 4004 · f81d4fae-7dec-11d0-a765-00a0c91e6bf6@carol\.example \(4\)$/);

    // 17 summaries, 4 of them bob's copies of the proxy's captures: 13 arrows.
    assert.equal(s.arrows.length, 13);
    assert.deepEqual(s.lanes.map((l) => l.addr), [ALICE, PROXY, BOB, CAROL]);
    assert.equal(s.lanes[1].hosts, 'proxy', 'the proxy host is at 192.0.2.1 (in every message it captured)');
    assert.equal(s.lanes[0].hosts, null);
    assertDirections(s);
    assert.deepEqual(
      s.arrows.map((a) => [a.label, a.callId === A ? 1 : 2, a.hosts]),
      [
        ['INVITE', 1, 'proxy'],
        ['100 Trying', 1, 'proxy'],
        ['INVITE', 1, 'bob, proxy'],
        ['180 Ringing', 1, 'bob, proxy'],
        ['180 Ringing', 1, 'proxy'],
        ['INVITE', 2, 'proxy'],
        ['↻ INVITE', 2, 'proxy'],
        ['✗ 486 Busy Here', 2, 'proxy'],
        ['ACK', 2, 'proxy'],
        ['✓ 200 OK', 1, 'bob, proxy'],
        ['✓ 200 OK', 1, 'proxy'],
        ['ACK', 1, 'proxy'],
        ['ACK', 1, 'bob, proxy'],
      ],
    );
    assert.deepEqual(
      s.times.slice(0, 4).map((t) => [t.clock, t.delta]),
      [
        ['22:15:00.000', '+0.000 s'],
        ['22:15:00.002', '+0.002 s'],
        ['22:15:00.003', '+0.003 s'], // bob's capture, 0.5 ms before the proxy's
        ['22:15:00.149', '+0.149 s'],
      ],
    );
    const retx = s.arrows.filter((a) => a.retrans);
    assert.equal(retx.length, 1);
    assert.equal(retx[0].row, 6);
    assert.match(retx[0].aria, /retransmission/);

    // 'all': line colour per dialog, label colour still per kind.
    const colourA = new Set(s.arrows.filter((a) => a.callId === A).map((a) => a.stroke));
    const colourB = new Set(s.arrows.filter((a) => a.callId === B).map((a) => a.stroke));
    assert.equal(colourA.size, 1);
    assert.equal(colourB.size, 1);
    assert.notDeepEqual([...colourA], [...colourB]);
    assert.equal(s.legendHidden, false);
    assert.deepEqual(s.legend.map((l) => [l.callId, l.colour]), [[A, [...colourA][0]], [B, [...colourB][0]]]);
    assert.deepEqual(s.times.map((t) => t.tag), s.arrows.map((a) => (a.callId === A ? '#1' : '#2')));
    const busy = s.arrows.find((a) => a.label.includes('486'))!;
    const invite = s.arrows[0];
    assert.notEqual(busy.labelFill, invite.labelFill, 'failure and request labels differ');
    assert.notEqual(busy.dash, 'none', 'failure has its own line style');

    // One dialog: its arrows and lanes only, in kind colours, no dialog legend.
    await page.selectOption('.ladder-view select', B);
    s = await snap(page);
    assert.deepEqual(s.arrows.map((a) => a.label), ['INVITE', '↻ INVITE', '✗ 486 Busy Here', 'ACK']);
    assert.deepEqual(s.lanes.map((l) => l.addr), [CAROL, PROXY]);
    assert.deepEqual(s.arrows.map((a) => a.stroke), [LINE.request, LINE.request, LINE.failure, LINE.request]);
    assert.equal(s.legendHidden, true);
    assert.deepEqual(s.times.map((t) => t.delta), ['+0.000 s', '+0.500 s', '+0.502 s', '+0.510 s']);
    assertDirections(s);
    await page.close();

    // opts.dialog picks the dialog up front.
    const second = await open(DIALOGS, A);
    s = await snap(second.page);
    assert.equal(s.arrows.length, 9);
    assert.equal(await second.page.$eval('.ladder-view select', (el: any) => el.value), A);
    assert.deepEqual(problems, []);
    assert.deepEqual(second.problems, []);
    await second.page.close();
  });

  it('groups legs: a call of two dialogs (grouped by two hosts differently) gets one selector entry showing both legs', async () => {
    const T2 = 1_700_000_200;
    const CALLER = '192.0.2.10:5060';
    const B2B = '192.0.2.5:5060';
    const CALLEE = '198.51.100.7:5060';
    const LA = 'a-leg@caller';
    const LB = 'b-leg@b2bua';
    const OTHER = 'other@caller';
    const leg = (m: Msg, group: string, via?: string): Msg => ({ ...m, legGroup: group, ...(via ? { legVia: via as Msg['legVia'] } : {}) });
    const legs: Msg[] = [
      // The edge host saw both legs and linked them; the core host saw only the B leg, a call of one leg to it.
      leg(msg(T2, '0.000', 'edge', CALLER, B2B, 'INVITE', null, LA, '1 INVITE', '4930001', '700'), LA),
      leg(msg(T2, '0.010', 'edge', B2B, CALLEE, 'INVITE', null, LB, '1 INVITE', 'b2bua', '700'), LA, 'session-id'),
      leg(msg(T2, '0.0101', 'core', B2B, CALLEE, 'INVITE', null, LB, '1 INVITE', 'b2bua', '700'), LB),
      leg(msg(T2, '0.500', 'edge', CALLEE, B2B, 200, 'OK', LB, '1 INVITE', 'b2bua', '700'), LA, 'session-id'),
      leg(msg(T2, '0.510', 'edge', B2B, CALLER, 200, 'OK', LA, '1 INVITE', '4930001', '700'), LA),
      leg(msg(T2, '0.600', 'edge', '192.0.2.11:5060', B2B, 'INVITE', null, OTHER, '1 INVITE', '4930002', '701'), OTHER),
    ];
    const { page, problems } = await open(legs);
    let s = await snap(page);
    assert.deepEqual(s.options?.map((o) => o.value), ['all', 'call:1', LA, LB, OTHER]);
    assert.match(s.options![1].text, /^Call #1: all 2 legs$/);
    assert.match(s.options![2].text, /^#1 call #1 leg A: INVITE 4930001 → 700/);
    assert.match(s.options![3].text, /^#2 call #1 leg B \(session-id\): INVITE b2bua → 700/);
    assert.match(s.options![4].text, /^#3 INVITE 4930002 → 701/, 'a call of one leg is no call of legs');

    await page.selectOption('.ladder-view select', 'call:1');
    s = await snap(page);
    assert.deepEqual([...new Set(s.arrows.map((a) => a.callId))].sort(), [LA, LB].sort());
    assert.equal(s.arrows.length, 4, "the core host's capture of the B leg's INVITE folds into the edge host's");
    assert.deepEqual(s.lanes.map((l) => l.addr), [CALLER, B2B, CALLEE], 'one lane per address:port of either leg');
    assert.equal(s.legendHidden, false);
    assert.deepEqual(s.legend.map((l) => l.callId), [LA, LB]);
    assert.notEqual(s.arrows.find((a) => a.callId === LA)!.stroke, s.arrows.find((a) => a.callId === LB)!.stroke, 'each leg keeps its colour');
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('click and keyboard select an arrow: onSelect gets the message, the details panel shows its fields', async () => {
    const { page, problems } = await open(BASIC);
    assert.match(await page.textContent('.ladder-details') ?? '', /Click an arrow/);

    await page.locator('.ladder-arrow').nth(2).click();
    let picked = await page.evaluate(() => window.__selected);
    assert.equal(picked.length, 1);
    assert.equal(picked[0].status, 180);
    assert.equal(picked[0].host, 'uac', 'the first capture');
    const field = (name: string) => page.$eval(`.ladder-details dd[data-field="${name}"]`, (el: any) => el.textContent);
    assert.equal(await page.textContent('.ladder-details h3'), '180 Ringing');
    assert.equal(await field('Status'), '180 Ringing');
    assert.equal(await field('Call-ID'), CALL);
    assert.equal(await field('CSeq'), '1 INVITE');
    assert.equal(await field('From'), '1001');
    assert.equal(await field('To'), '2002');
    assert.equal(await field('Request-URI'), '—');
    assert.equal(await field('Correlation'), '—');
    assert.equal(await field('Source → destination'), `${UAS} → ${UAC}`);
    assert.equal(await field('Transport'), 'UDP');
    assert.equal(await field('Captured by'), 'uac at 1700000000.120000000; uas at 1700000000.123000001');
    assert.match(await field('Time'), /^2023-11-14T22:13:20\.120000000Z \(\+0\.120 s from the first message\)$/);
    assert.equal(await field('Size'), '410 bytes in 1 packet');
    assert.equal(await page.getAttribute('.ladder-arrow[data-row="2"]', 'aria-pressed'), 'true');

    // Keyboard: the selected arrow is the diagram's one Tab stop; arrows move, Enter and Space select.
    await page.focus('.ladder-arrow[data-row="2"]');
    await page.keyboard.press('ArrowDown');
    assert.equal(await page.evaluate(() => document.activeElement?.dataset?.row), '3');
    await page.keyboard.press('Enter');
    picked = await page.evaluate(() => window.__selected);
    assert.equal(picked.length, 2);
    assert.equal(picked[1].status, 200);
    assert.equal(await page.textContent('.ladder-details h3'), '✓ 200 OK');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press(' ');
    picked = await page.evaluate(() => window.__selected);
    assert.equal(picked.length, 3);
    assert.equal(picked[2].method, 'ACK');
    assert.equal(await field('CSeq'), '1 ACK');
    assert.equal(await page.evaluate(() => window.scrollY), 0, 'Space did not scroll the page');
    const tabStops = await page.$$eval('.ladder-arrow[tabindex="0"]', (els: any[]) => els.map((e) => e.dataset.row));
    assert.deepEqual(tabStops, ['4']);

    // Tab from the top of the page (a click on the heading moves the starting point there) lands on the diagram's tab stop.
    await page.click('h1');
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'BODY');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.dataset?.row), '4');
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('IPv6 lanes; markup in the data stays text; destroy() removes the diagram', async () => {
    const V6A = '[2001:db8::1]:5060';
    const V6B = '[2001:db8::2]:5060';
    const evil = '<img src=x onerror="window.__pwned=1">';
    const { page, problems } = await open([
      { ...msg(T0, '0', 'sbc', V6A, V6B, 'OPTIONS', null, evil, '1 OPTIONS', evil, '2002'), transport: 'tcp' },
      { ...msg(T0, '0.004', 'sbc', V6B, V6A, 404, evil, evil, '1 OPTIONS', evil, '2002'), transport: 'tcp' },
    ]);
    const s = await snap(page);
    assert.deepEqual(s.lanes.map((l) => l.label), [V6A, V6B]);
    assert.deepEqual(s.arrows.map((a) => a.kind), ['request', 'failure']);
    assert.equal(s.arrows[1].stroke, LINE.failure);
    assert.ok(s.arrows[1].label.startsWith('✗ 404 <img'), s.arrows[1].label);
    assertDirections(s);
    await page.locator('.ladder-arrow').nth(1).click();
    assert.equal(await page.$eval('.ladder-details dd[data-field="Call-ID"]', (el: any) => el.textContent), evil);
    assert.equal(await page.$$eval('#c img', (els: any[]) => els.length), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);

    await page.evaluate(() => window.__ladder.destroy());
    assert.equal(await page.$eval('#c', (el: any) => el.childElementCount), 0);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('many lanes scroll sideways inside the ladder at 1280×800, with sticky lane headers and time column', async () => {
    const addrs = Array.from({ length: 9 }, (_, i) => `10.1.0.${i + 1}:5060`);
    const many: Msg[] = [];
    for (let i = 0; i < 24; i++) {
      const a = addrs[i % addrs.length];
      const b = addrs[(i + 1) % addrs.length];
      many.push(msg(T0, (i * 0.05).toFixed(3), 'mirror', a, b, 'MESSAGE', null, 'chain@x', `${i + 1} MESSAGE`, '1', '2'));
    }
    const { page, problems } = await open(many);
    const box = await page.evaluate(() => {
      const sc = document.querySelector('.ladder-scroll');
      return { sw: sc.scrollWidth, cw: sc.clientWidth, sh: sc.scrollHeight, ch: sc.clientHeight, doc: document.documentElement.scrollWidth };
    });
    assert.ok(box.sw > box.cw, `the ladder scrolls sideways (${box.sw} > ${box.cw})`);
    assert.ok(box.sh > box.ch, 'and down');
    assert.ok(box.doc <= 1280, `the page itself does not (${box.doc})`);
    const stuck = await page.evaluate(async () => {
      const sc = document.querySelector('.ladder-scroll');
      sc.scrollTop = 400;
      sc.scrollLeft = 500;
      await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
      const r = sc.getBoundingClientRect();
      return {
        headTop: document.querySelector('.ladder-head').getBoundingClientRect().top - r.top - sc.clientTop,
        timesLeft: document.querySelector('.ladder-times').getBoundingClientRect().left - r.left - sc.clientLeft,
      };
    });
    assert.ok(Math.abs(stuck.headTop) <= 1, `lane headers stay on top (${stuck.headTop})`);
    assert.ok(Math.abs(stuck.timesLeft) <= 1, `times stay on the left (${stuck.timesLeft})`);
    assert.deepEqual(problems, []);
    await page.close();
  });

  it('saves a screenshot of two dialogs with a selected message (test-output/web/ladder.png)', async () => {
    const { page, problems } = await open(DIALOGS);
    await page.locator('.ladder-arrow').nth(7).click();
    mkdirSync(OUT, { recursive: true });
    const file = join(OUT, 'ladder.png');
    await page.screenshot({ path: file, fullPage: true });
    const png = readFileSync(file);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(png.readUInt32BE(16), 1280, 'screenshot 1280 px wide');
    assert.deepEqual(problems, []);
    await page.close();
  });
});
