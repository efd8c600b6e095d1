import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TraceView } from '../../shared/protocol/client';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { ETH_IPV4, ethernet, ipv4, sipInvite, udp } from '../../test/support/packets';
import { startTestCouch, TestCouch } from '../../test/support/couch';
import { AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER, type TestUser } from '../../test/support/dispatcher';
import { startTestAgent, TestAgent, until } from '../../test/support/trace';
import { CLI, ROOT } from '../../test/support/fleet';
import { haveCommand, run } from '../../test/support/proc';
import { readRecords } from '../../test/support/pcapfile';
import { formatTrace } from '../../cli/commands/remote';
import { browserSkipReason, launchBrowser, logIn } from '../../test/web/browser';

/*
 * One clock and which hop went bad, through a whole dispatcher and two real
 * agents on rings made with the tools an operator has: one call captured on
 * host a and on host b, b's capture shifted by a known offset with
 * `editcap -t` and both imported with `tracefleet ring import`. On the path
 * from a to b, five of the caller's RTP packets never reach b, and b sees
 * the others 0.4-0.8 ms after a (a path delay with jitter); the callee's
 * packets reach a in 0.4 ms, none lost.
 */

const skip = !haveCommand('editcap') || !haveCommand('tshark') ? 'needs editcap and tshark (scripts/setup.sh installs them)' : false;

const T0 = 1_795_300_000;
const CID = 'clock-hops@192.0.2.10';
const A = '192.0.2.10';
const B = '198.51.100.20';
const A_RTP = 49170;
const B_RTP = 50000;
const SHIFT_S = '0.0123';
const SHIFT_MS = 12.3;
const PATH_NS = 400_000;
/** Caller RTP sequence numbers lost between a and b. */
const LOST = new Set([1010, 1011, 1050, 1100, 1148]);
const RTP_PACKETS = 150;

const basic = (u: Pick<TestUser, 'name' | 'password'>) => `Basic ${Buffer.from(`${u.name}:${u.password}`).toString('base64')}`;

function okWithSdp(): Buffer {
  const body = `v=0\r\no=bob 1 1 IN IP4 ${B}\r\ns=-\r\nc=IN IP4 ${B}\r\nt=0 0\r\nm=audio ${B_RTP} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n`;
  return Buffer.from(
    'SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\nTo: <sip:+15551234567@example.com>;tag=a6c85cf\r\n' +
      `From: "Alice" <sip:alice@example.com>;tag=1928301774\r\nCall-ID: ${CID}\r\nCSeq: 314159 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    'latin1',
  );
}

function rtp(seq: number, ssrc: number, ts: number): Buffer {
  const b = Buffer.alloc(12 + 160, 0xd5);
  b[0] = 0x80;
  b[1] = 8;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

interface Sent {
  /** Nanoseconds after T0 the packet left its sender. */
  at: number;
  fromA: boolean;
  frame: Buffer;
  /** Caller RTP sequence number, for the loss on the a-to-b path. */
  seq?: number;
}

function callPackets(): Sent[] {
  const u = (fromA: boolean, sport: number, dport: number, p: Buffer, id: number) =>
    ethernet(ETH_IPV4, ipv4({ src: fromA ? A : B, dst: fromA ? B : A, proto: 17, id }, udp(sport, dport, p)));
  const invite = Buffer.from(sipInvite(CID).toString('latin1').replace(/192\.0\.2\.10/g, A).replace('m=audio 49170', `m=audio ${A_RTP}`), 'latin1');
  const out: Sent[] = [
    { at: 0, fromA: true, frame: u(true, 5060, 5060, invite, 1) },
    { at: 50_000_000, fromA: false, frame: u(false, 5060, 5060, okWithSdp(), 2) },
  ];
  for (let i = 0; i < RTP_PACKETS; i++) {
    out.push({ at: 100_000_000 + i * 20_000_000, fromA: true, seq: 1000 + i, frame: u(true, A_RTP, B_RTP, rtp(1000 + i, 0x11111111, i * 160), 100 + i) });
    out.push({ at: 110_000_000 + i * 20_000_000, fromA: false, frame: u(false, B_RTP, A_RTP, rtp(5000 + i, 0x22222222, i * 160), 1000 + i) });
  }
  return out;
}

function writePcap(path: string, pkts: Array<{ at: number; frame: Buffer }>): void {
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
  for (const p of [...pkts].sort((x, y) => x.at - y.at)) {
    w.write({ tsSec: T0 + Math.floor(p.at / 1e9), tsNsec: p.at % 1e9, origLen: p.frame.length, data: p.frame });
  }
  w.flush();
  closeSync(fd);
}

let dir = '';
let couch: TestCouch;
const rings: Record<'a' | 'b', string> = { a: '', b: '' };

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tf-vantage-'));
  couch = await startTestCouch();
  const sent = callPackets();
  // Host a: its own packets as they leave, b's as they arrive 0.4 ms later.
  writePcap(join(dir, 'a.pcap'), sent.map((p) => ({ at: p.fromA ? p.at : p.at + PATH_NS, frame: p.frame })));
  // Host b, on a's clock: a's packets 0.4-0.8 ms later (jitter), less the lost ones; its own as they leave.
  const onB = sent.filter((p) => !(p.seq !== undefined && LOST.has(p.seq))).map((p, i) => ({ at: p.fromA ? p.at + PATH_NS + (i % 5) * 100_000 : p.at, frame: p.frame }));
  writePcap(join(dir, 'b-true.pcap'), onB);
  // ... and b's clock runs SHIFT_S ahead.
  await run('editcap', ['-t', SHIFT_S, join(dir, 'b-true.pcap'), join(dir, 'b.pcap')], { timeoutMs: 30_000 });
  for (const h of ['a', 'b'] as const) {
    rings[h] = join(dir, `ring-${h}`);
    await run(process.execPath, [CLI, 'ring', 'import', '--ring', rings[h], join(dir, `${h}.pcap`)], { timeoutMs: 60_000 });
  }
});

after(async () => {
  await couch?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function withFleet(fn: (d: TestDispatcher) => Promise<void>): Promise<void> {
  const d = await startTestDispatcher(couch.url, { staticDir: join(ROOT, 'web') });
  const agents: TestAgent[] = (['a', 'b'] as const).map((h) => startTestAgent({ url: d.url, token: AGENT_TOKEN, name: h, ringDir: rings[h] }));
  try {
    await until(async () => (await d.orchestrator.agents()).filter((x) => x.connected && x.hostname !== null).length === 2, 'agents connected');
    await fn(d);
  } finally {
    for (const x of agents) x.close();
    await d.stop();
  }
}

async function traced(d: TestDispatcher, body: object): Promise<TraceView> {
  const res = await fetch(`${d.url}/api/traces`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic(TRACER) }, body: JSON.stringify(body) });
  assert.equal(res.status, 201, await res.clone().text());
  const id = ((await res.json()) as { trace: TraceView }).trace.id;
  await until(async () => (await d.store.store.getTrace(id))?.state === 'done', 'the trace to finish', 30_000);
  const v = await fetch(`${d.url}/api/traces/${id}`, { headers: { authorization: basic(TRACER) } });
  return ((await v.json()) as { trace: TraceView }).trace;
}

async function download(d: TestDispatcher, path: string, out: string): Promise<Buffer> {
  const res = await fetch(`${d.url}${path}`, { headers: { authorization: basic(TRACER) } });
  assert.equal(res.status, 200, path);
  const b = Buffer.from(await res.arrayBuffer());
  writeFileSync(out, b);
  return b;
}

test('one clock: b shifted by editcap -t is placed within 1 ms; --align-clocks writes a PCAPNG on corrected time saying the offset per interface; host files keep theirs', { skip, timeout: 120_000 }, () =>
  withFleet(async (d) => {
    const v = await traced(d, { callId: [CID], rtp: true, alignClocks: true });
    assert.ok(v.clocks, 'the trace has clock offsets');
    assert.equal(v.clocks.aligned, true);
    const a = v.clocks.hosts.find((h) => h.host === 'a')!;
    const b = v.clocks.hosts.find((h) => h.host === 'b')!;
    // Equal sample counts: the reference is the first by name.
    assert.equal(v.clocks.reference, 'a');
    assert.equal(a.offsetMs, 0);
    assert.ok(b.offsetMs !== null && Math.abs(b.offsetMs - SHIFT_MS) < 1, `b's offset ${b.offsetMs} ms is within 1 ms of ${SHIFT_MS}`);
    assert.equal(b.against, 'a');
    assert.equal(b.twoWay, true);
    // Every packet both hosts kept: the call's 2 SIP messages and 2 x 150 RTP packets, less the 5 lost.
    assert.equal(b.samples, 2 + 2 * RTP_PACKETS - LOST.size);

    const merged = await download(d, `/api/traces/${v.id}/merged.pcap`, join(dir, 'merged.pcapng'));
    assert.equal(merged.readUInt32LE(0), 0x0a0d0d0a, 'an aligned merge is a PCAPNG');
    const text = merged.toString('latin1');
    assert.match(text, /a: reference clock, timestamps as captured/);
    assert.ok(text.includes(`b: clock offset ${b.offsetMs!.toFixed(6)} ms against a subtracted`), 'b says its offset');
    // tshark reads it: the INVITE from each interface (host) is now 0.4 ms apart, not 12.7 ms.
    const r = await run('tshark', ['-r', join(dir, 'merged.pcapng'), '-n', '-Y', 'sip.Method == "INVITE"', '-T', 'fields', '-e', 'frame.interface_name', '-e', 'frame.time_epoch'], { timeoutMs: 60_000 });
    const rows = r.stdout.trim().split('\n').map((l) => l.split('\t'));
    assert.deepEqual(rows.map((x) => x[0]).sort(), ['a', 'b']);
    const t = Object.fromEntries(rows.map(([host, ts]) => [host, Number(ts)]));
    assert.ok(Math.abs(t.b - t.a) < 0.001, `INVITE on corrected clocks: a ${t.a}, b ${t.b}`);

    // b's own file keeps b's clock: its INVITE where editcap put it.
    await download(d, `/api/traces/${v.id}/hosts/b/packets.pcap`, join(dir, 'host-b.pcap'));
    const hostB = readRecords(join(dir, 'host-b.pcap'));
    const ringB = readRecords(join(dir, 'b.pcap'));
    assert.equal(hostB[0].epochNs, ringB[0].epochNs);
    assert.equal(ringB[0].epochNs, BigInt(T0) * 1_000_000_000n + 12_300_000n + BigInt(PATH_NS));

    // Without --align-clocks: the same offsets, a classic PCAP on the hosts' own clocks.
    const plain = await traced(d, { callId: [CID], rtp: true });
    assert.equal(plain.clocks?.aligned, false);
    assert.equal(plain.clocks?.hosts.find((h) => h.host === 'b')?.offsetMs, b.offsetMs);
    const m2 = await download(d, `/api/traces/${plain.id}/merged.pcap`, join(dir, 'merged.pcap'));
    assert.notEqual(m2.readUInt32LE(0), 0x0a0d0d0a);
  }),
);

test('which hop went bad: the caller stream loses exactly its 5 packets on a → b, the callee stream none on b → a; delay and jitter on corrected clocks', { skip, timeout: 120_000 }, () =>
  withFleet(async (d) => {
    const v = await traced(d, { callId: [CID], rtp: true });
    const hops = v.hops ?? [];
    assert.equal(hops.length, 2, JSON.stringify(hops));
    const up = hops.find((h) => h.ssrc === '0x11111111')!;
    const down = hops.find((h) => h.ssrc === '0x22222222')!;
    assert.deepEqual([up.from, up.to, up.src, up.dst], ['a', 'b', `${A}:${A_RTP}`, `${B}:${B_RTP}`]);
    assert.deepEqual([up.packets, up.lost, up.unseenUpstream], [RTP_PACKETS, LOST.size, 0]);
    assert.deepEqual([down.from, down.to], ['b', 'a']);
    assert.deepEqual([down.packets, down.lost, down.unseenUpstream], [RTP_PACKETS, 0, 0]);
    assert.equal(up.corrected, true);
    // On true clocks a → b takes 0.4-0.8 ms (median 0.6) and b → a 0.4 ms; the two-way estimate splits the asymmetry: 0.5 ms each.
    assert.ok(Math.abs(up.delayMs! - 0.5) < 0.05, `a → b delay ${up.delayMs}`);
    assert.ok(Math.abs(down.delayMs! - 0.5) < 0.05, `b → a delay ${down.delayMs}`);
    assert.ok(up.jitterAddedMeanMs! > 0.05, `a → b adds jitter: ${up.jitterAddedMeanMs}`);
    assert.ok(down.jitterAddedMaxMs! < 0.001, `b → a adds none: ${down.jitterAddedMaxMs}`);

    // summary.json of the download carries them (its `trace` is the trace view).
    const tar = (await download(d, `/api/traces/${v.id}/trace.tar`, join(dir, 'trace.tar'))).toString('latin1');
    assert.match(tar, /"hops": \[/);
    assert.match(tar, /"clocks": \{/);

    // The CLI's show prints both tables.
    const shown = formatTrace(v).join('\n');
    assert.match(shown, /clocks against a/);
    assert.match(shown, /^b +\+12\.\d{3} /m);
    assert.match(shown, /0x11111111 .* a → b +150 +5 +0 /);
    assert.match(shown, /0x22222222 .* b → a +150 +0 +0 /);
  }),
);

test('the page: the form\'s Align clocks box asks for it; the trace shows each host\'s clock and the per-hop table with the bad hop marked', { skip: skip || browserSkipReason(), timeout: 180_000 }, () =>
  withFleet(async (d) => {
    const browser = await launchBrowser();
    try {
      const { page, errors } = await browser.newPage();
      await logIn(page, d.url, TRACER.name, TRACER.password);
      await page.locator('#tf-callId').fill(CID);
      await page.locator('#tf-window-custom').check();
      const utc = (sec: number) => new Date(sec * 1000).toISOString().slice(0, 19);
      await page.locator('#tf-from').fill(utc(T0 - 60));
      await page.locator('#tf-to').fill(utc(T0 + 60));
      await page.locator('#tf-rtp').check();
      await page.locator('#tf-alignClocks').check();
      await page.locator('#tf-submit').click();
      await page.waitForURL(/#\/trace\/[A-Za-z0-9_-]+$/);
      const id = /#\/trace\/(.+)$/.exec(page.url())![1];
      assert.equal((await d.orchestrator.view(id))?.request.alignClocks, true);
      await page.locator('#trace-status[data-state="done"]').waitFor({ timeout: 30_000 });
      await page.locator('#hop-table tbody tr').first().waitFor();
      const rows = (sel: string) => page.locator(`${sel} tbody tr`).evaluateAll((rs: any[]) => rs.map((r) => ({ cells: [...r.children].map((c: any) => c.textContent.trim()), cls: r.className })));
      const hops = await rows('#hop-table');
      assert.equal(hops.length, 2);
      const bad = hops.find((h) => h.cells[0] === '0x11111111')!;
      assert.deepEqual([bad.cells[2], bad.cells[3], bad.cells[4], bad.cls], ['a → b', '150', '5 (3.3%)', 'hop-loss']);
      const clean = hops.find((h) => h.cells[0] === '0x22222222')!;
      assert.deepEqual([clean.cells[2], clean.cells[4], clean.cls], ['b → a', '0 (0.0%)', '']);
      const clocks = await rows('#clock-table');
      assert.deepEqual(clocks.map((c) => c.cells[0]), ['a', 'b']);
      assert.equal(clocks[0].cells[1], 'reference');
      assert.match(clocks[1].cells[1], /^\+12\.\d{3}$/);
      assert.match((await page.locator('#trace-summary dd[data-field="clocks"]').textContent()) ?? '', /reference a; 1 host placed, largest offset b \+12\.\d{3} ms; merged file on corrected clocks/);
      // The ladder drew (ordered on corrected time) without an error.
      await page.locator('#ladder .ladder-arrow').first().waitFor();
      assert.deepEqual(errors, []);
      // For people to look at: the trace page of a two-hop call with loss on one link.
      mkdirSync(join(ROOT, 'test-output', 'web'), { recursive: true });
      await page.locator('#trace-hops').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(ROOT, 'test-output', 'web', 'hops.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  }),
);
