import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, closeSync, rmSync, writeSync, readFileSync, createWriteStream, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePcapRecord, PcapFileWriterSync } from '../../shared/pcap/writer';
import { readCaptureFile } from '../../shared/pcap/reader';
import { execFileSync } from 'node:child_process';
import { ethernet, ipv4, sll, udp, ETH_IPV4, sipInvite, sipResponse } from '../../test/support/packets';
import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { PcapngParser } from '../../shared/pcap/pcapng';
import { LINKTYPE } from '../../shared/pcap/types';
import { importCaptures } from '../index/import';
import { SegmentIndexer } from '../index/builder';
import { TracefleetError } from '../../shared/errors/catalogue';
import { buildQuerySpec, TraceQuery } from '../../shared/query/query';
import { closeResult, resultRefs, runQuery, runQueryYielding, writeResultPcap } from './engine';
import { closedWithRefs } from '../../test/support/query';

const T0 = 1_795_000_000;
type Pkt = { sec: number; nsec: number; frame: Buffer };

function udpFrame(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  return ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(sport, dport, payload)));
}

function icmpFrame(src: string, dst: string): Buffer {
  return ethernet(ETH_IPV4, ipv4({ src, dst, proto: 1 }, Buffer.from([3, 3, 0, 0, 0, 0, 0, 0])));
}

function sip(text: string): Buffer {
  return Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');
}

function bye(callId: string): Buffer {
  return sip(`BYE sip:+15551234567@example.com SIP/2.0\nVia: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKbye\nFrom: "Alice" <sip:alice@example.com>;tag=1928301774\nTo: <sip:+15551234567@example.com>;tag=a6c85cf\nCall-ID: ${callId}\nCSeq: 314160 BYE\nContent-Length: 0\n\n`);
}

function inviteB(): Buffer {
  return sip(`INVITE sip:15559990000@example.net SIP/2.0\nVia: SIP/2.0/UDP gw.example.net;branch=z9hG4bKb\nFrom: <sip:bob@example.net>;tag=b1\nTo: <sip:15559990000@example.net>\nCall-ID: dialog-b@gw\nCSeq: 1 INVITE\nX-CID: corr-1\nContent-Length: 0\n\n`);
}

function writePcap(path: string, pkts: Pkt[], linkType: number = LINKTYPE.ETHERNET): void {
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType, nanos: true });
  for (const p of pkts) w.write({ tsSec: p.sec, tsNsec: p.nsec, origLen: p.frame.length, data: p.frame });
  w.flush();
  closeSync(fd);
}

const A = 'dialog-a@pc33';
const P = '192.0.2.1';
const GW = '198.51.100.7';

/** Two capture files: dialog A's INVITE/200 plus RTP and dialog B in the first, A's BYE in the second. */
function fixture(dir: string): { files: string[]; all: Pkt[] } {
  const first: Pkt[] = [
    { sec: T0, nsec: 100, frame: udpFrame(P, GW, 5060, 5060, sipInvite(A)) },
    { sec: T0, nsec: 200, frame: udpFrame(GW, P, 5060, 5060, sipResponse(200, 'OK', A)) },
    // RTP to the INVITE's SDP endpoint 192.0.2.10:49170, inside the dialog's span, and RTCP on 49171.
    { sec: T0 + 1, nsec: 0, frame: udpFrame('203.0.113.5', '192.0.2.10', 30000, 49170, Buffer.alloc(172, 0x80)) },
    { sec: T0 + 1, nsec: 5, frame: udpFrame('203.0.113.5', '192.0.2.10', 30001, 49171, Buffer.alloc(60, 0x81)) },
    { sec: T0 + 2, nsec: 0, frame: udpFrame(GW, '198.51.100.8', 5060, 5060, inviteB()) },
    { sec: T0 + 2, nsec: 10, frame: icmpFrame('198.51.100.8', GW) },
  ];
  const second: Pkt[] = [
    { sec: T0 + 3, nsec: 0, frame: udpFrame(P, GW, 5060, 5060, bye(A)) },
    { sec: T0 + 3, nsec: 1, frame: udpFrame(GW, P, 5060, 5060, sipResponse(200, 'OK', A, '314160 BYE')) },
    // RTP after the dialog ended: not the call's.
    { sec: T0 + 9, nsec: 0, frame: udpFrame('203.0.113.5', '192.0.2.10', 30000, 49170, Buffer.alloc(172, 0x80)) },
  ];
  const f1 = join(dir, 'one.pcap');
  const f2 = join(dir, 'two.pcap');
  writePcap(f1, first);
  writePcap(f2, second);
  return { files: [f1, f2], all: [...first, ...second] };
}

async function withRing(fn: (ring: string, all: Pkt[], dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-query-'));
  try {
    const { files, all } = fixture(dir);
    const ring = join(dir, 'ring');
    const r = await importCaptures(ring, files);
    assert.equal(r.packets, all.length);
    assert.equal(r.segments.length, 1, 'both files continue one import stream');
    await fn(ring, all, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function select(ring: string, raw: TraceQuery): Set<number> {
  const r = closedWithRefs(runQuery(ring, buildQuerySpec(raw, new Date((T0 + 10) * 1000))));
  // Identify packets by their timestamps, which are unique in the fixture.
  return new Set(r.refs.toArray().map((x) => (x.sec - T0) * 1e9 + x.nsec));
}

const at = (s: number, ns: number) => s * 1e9 + ns;

test('a Call-ID selects its whole dialog, and nothing else', async () => {
  await withRing(async (ring) => {
    assert.deepEqual(select(ring, { callId: [A] }), new Set([at(0, 100), at(0, 200), at(3, 0), at(3, 1)]));
    assert.deepEqual(select(ring, { callId: ['no-such-call'] }), new Set());
  });
});

test('a number matches by trailing digits, whatever its punctuation', async () => {
  await withRing(async (ring) => {
    const a = new Set([at(0, 100), at(0, 200), at(3, 0), at(3, 1)]);
    assert.deepEqual(select(ring, { number: ['1234567'] }), a);
    assert.deepEqual(select(ring, { number: ['+1 (555) 123-4567'] }), a);
    assert.deepEqual(select(ring, { number: ['9990000'] }), new Set([at(2, 0)]));
    assert.deepEqual(select(ring, { number: ['5551234560'] }), new Set());
  });
});

test('--rtp adds RTP and RTCP to the SDP endpoints within the dialog span only', async () => {
  await withRing(async (ring) => {
    const s = select(ring, { callId: [A], rtp: true });
    assert.ok(s.has(at(1, 0)) && s.has(at(1, 5)), 'RTP/RTCP inside the span missing');
    assert.ok(!s.has(at(9, 0)), 'RTP after the dialog selected');
  });
});

test('correlation key, IP with non-SIP packets, method/status narrowing, windows', async () => {
  await withRing(async (ring) => {
    assert.deepEqual(select(ring, { correlation: ['corr-1'] }), new Set([at(2, 0)]));
    // Only an address: the ICMP error to the gateway comes too.
    const byIp = select(ring, { ip: ['198.51.100.8'] });
    assert.ok(byIp.has(at(2, 0)) && byIp.has(at(2, 10)));
    assert.equal(byIp.size, 2);
    assert.deepEqual(select(ring, { callId: [A], method: ['bye'] }), new Set([at(0, 100), at(0, 200), at(3, 0), at(3, 1)]));
    assert.deepEqual(select(ring, { ip: [GW], method: ['INVITE'], status: ['4xx'] }), new Set());
    assert.deepEqual(select(ring, { all: true, method: ['BYE'] }), new Set([at(0, 100), at(0, 200), at(3, 0), at(3, 1)]));
    assert.deepEqual(select(ring, { ip: [GW], since: String(T0 + 2), until: String(T0 + 2.5) }).has(at(2, 0)), true);
    assert.equal(select(ring, { callId: [A], since: String(T0 + 5) }).size, 0);
  });
});

test('limits cut the time-ordered result and say so', async () => {
  await withRing(async (ring) => {
    const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [A], maxPackets: 2 })));
    assert.equal(r.truncated, true);
    assert.deepEqual(r.refs.toArray().map((x) => x.nsec), [100, 200]);
    const whole = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [A], maxPackets: 4 })));
    assert.equal(whole.truncated, false);
    // A byte limit that holds the first two records (16-byte headers included) and not the third.
    const [p0, p1] = whole.refs.toArray();
    const byBytes = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [A], maxBytes: 32 + p0.capLen + p1.capLen })));
    assert.equal(byBytes.truncated, true);
    assert.deepEqual(byBytes.refs.toArray(), [p0, p1]);
    assert.equal(byBytes.bytes, 32 + p0.capLen + p1.capLen);
  });
});

test('runQueryYielding answers as runQuery does, lets the event loop run between segments, and a stop releases what it opened', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-query-'));
  try {
    const { files, all } = fixture(dir);
    const ring = join(dir, 'ring');
    const imported = await importCaptures(ring, files, { maxSegmentBytes: 1200 });
    assert.equal(imported.packets, all.length);
    assert.ok(imported.segments.length >= 3, `the fixture spans ${imported.segments.length} segments; the test needs several`);
    const spec = buildQuerySpec({ ip: [GW], rtp: true }, new Date((T0 + 10) * 1000));
    const expected = closedWithRefs(runQuery(ring, spec));

    let steps = 0;
    let otherWork = 0;
    const timer = setInterval(() => otherWork++, 0);
    let answered;
    try {
      answered = closedWithRefs(await runQueryYielding(ring, spec, { onStep: () => steps++ }));
    } finally {
      clearInterval(timer);
    }
    assert.deepEqual(answered.refs.toArray(), expected.refs.toArray());
    assert.deepEqual(answered.messages, expected.messages);
    assert.ok(steps >= imported.segments.length, `${steps} steps for ${imported.segments.length} segments`);
    assert.ok(otherWork > 0, 'a timer ran while the query did');

    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    let seen = 0;
    await assert.rejects(runQueryYielding(ring, spec, { stopped: () => (++seen >= 2 ? 'cancelled by the test' : null) }), /cancelled by the test/);
    assert.equal(fds(), before, 'the index files opened before the stop are closed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('summaries are cut to the earliest maxMessages, counted in messagesMatched; the packets are never cut by it', async () => {
  await withRing(async (ring) => {
    const spec = buildQuerySpec({ callId: [A] });
    const whole = closedWithRefs(runQuery(ring, spec));
    assert.equal(whole.messagesMatched, 4);
    assert.equal(whole.messages.length, 4);
    const cut = closedWithRefs(runQuery(ring, spec, { maxMessages: 3 }));
    assert.equal(cut.messagesMatched, 4);
    assert.deepEqual(cut.messages, whole.messages.slice(0, 3), 'the earliest three, in time order');
    assert.deepEqual(cut.refs.toArray(), whole.refs.toArray());
    const none = closedWithRefs(runQuery(ring, spec, { maxMessages: 0 }));
    assert.deepEqual([none.messages.length, none.messagesMatched, none.refs.length], [0, 4, whole.refs.length]);
  });
});

test('a query over more dialogs than a sealed index keeps decoded answers every one of them (collecting reads them again after the cache let them go)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-query-'));
  try {
    const n = 700;
    const pkts: Pkt[] = Array.from({ length: n }, (_, i) => ({ sec: T0 + i, nsec: 0, frame: udpFrame(P, GW, 5060, 5060, sipInvite(`many-${i}@pc33`)) }));
    const file = join(dir, 'many.pcap');
    writePcap(file, pkts);
    const ring = join(dir, 'ring');
    await importCaptures(ring, [file]);
    const all = runQuery(ring, buildQuerySpec({ all: true, method: ['INVITE'] }));
    try {
      assert.equal(all.callIds.length, n);
      assert.deepEqual(resultRefs(all).toArray().map((r) => r.sec - T0), pkts.map((_, i) => i));
      // And each one alone, from a fresh index.
      for (const i of [0, 1, 350, n - 1]) {
        const one = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [`many-${i}@pc33`] })));
        assert.deepEqual(one.refs.toArray().map((r) => r.sec - T0), [i]);
        assert.equal(one.messages[0].callId, `many-${i}@pc33`);
      }
    } finally {
      closeResult(all);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the PCAP written holds the original bytes and nanosecond timestamps, in time order', async () => {
  await withRing(async (ring, all, dir) => {
    const r = runQuery(ring, buildQuerySpec({ callId: [A], rtp: true }));
    const out = join(dir, 'out.pcap');
    await writeResultPcap(r, createWriteStream(out));
    closeResult(r);
    const got = [];
    for await (const rec of readCaptureFile(out)) got.push(rec);
    const want = all.filter((p) => [at(0, 100), at(0, 200), at(1, 0), at(1, 5), at(3, 0), at(3, 1)].includes(at(p.sec - T0, p.nsec)));
    assert.equal(got.length, want.length);
    got.forEach((rec, i) => {
      assert.equal(rec.tsSec, want[i].sec);
      assert.equal(rec.tsNsec, want[i].nsec);
      assert.ok(rec.data.equals(want[i].frame));
    });
    assert.equal(readFileSync(out).readUInt32LE(0), 0xa1b23c4d, 'nanosecond PCAP magic');
    // One link type: exactly the classic PCAP a PcapWriter makes of these packets.
    const expected = Buffer.concat([
      pcapHeaderBytes({ linkType: LINKTYPE.ETHERNET, nanos: true }),
      ...want.flatMap((p) => encodePcapRecord({ tsSec: p.sec, tsNsec: p.nsec, origLen: p.frame.length, data: p.frame }, true)),
    ]);
    assert.ok(readFileSync(out).equals(expected));
  });
});

test('a result from segments of two link types (eth0 and any) is written as PCAPNG, one interface per link type', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-query-'));
  try {
    // eth0 saw the INVITE and its 200; the `any` capture (cooked) saw the BYE and its 200.
    const eth: Pkt[] = [
      { sec: T0, nsec: 100, frame: udpFrame(P, GW, 5060, 5060, sipInvite(A)) },
      { sec: T0, nsec: 200, frame: udpFrame(GW, P, 5060, 5060, sipResponse(200, 'OK', A)) },
    ];
    const cookedIp = (src: string, dst: string, payload: Buffer) => sll(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, payload)));
    const any: Pkt[] = [
      { sec: T0 + 3, nsec: 0, frame: cookedIp(P, GW, bye(A)) },
      { sec: T0 + 3, nsec: 1, frame: cookedIp(GW, P, sipResponse(200, 'OK', A, '314160 BYE')) },
    ];
    const f1 = join(dir, 'eth0.pcap');
    const f2 = join(dir, 'any.pcap');
    writePcap(f1, eth);
    writePcap(f2, any, LINKTYPE.LINUX_SLL);
    const ring = join(dir, 'ring');
    const imported = await importCaptures(ring, [f1, f2]);
    assert.equal(imported.segments.length, 2, 'a segment stream per link type');

    const r = runQuery(ring, buildQuerySpec({ callId: [A] }));
    const out = join(dir, 'out.pcapng');
    const w = await writeResultPcap(r, createWriteStream(out));
    closeResult(r);
    assert.deepEqual(w, { packets: 4, bytes: [...eth, ...any].reduce((n, p) => n + p.frame.length, 0), format: 'pcapng' });

    const got = [];
    for await (const rec of readCaptureFile(out)) got.push({ ...rec, data: Buffer.from(rec.data) });
    const want = [...eth.map((p) => ({ ...p, lt: LINKTYPE.ETHERNET })), ...any.map((p) => ({ ...p, lt: LINKTYPE.LINUX_SLL }))];
    assert.equal(got.length, want.length);
    got.forEach((rec, i) => {
      assert.equal(rec.tsSec, want[i].sec);
      assert.equal(rec.tsNsec, want[i].nsec);
      assert.equal(rec.linkType, want[i].lt);
      assert.ok(rec.data.equals(want[i].frame));
    });
    const bytes = readFileSync(out);
    const parser = new PcapngParser();
    parser.scan(bytes, 0, () => undefined);
    assert.deepEqual(
      parser.interfaces.map((i) => [i.linkType, i.tsExponent]),
      [[LINKTYPE.ETHERNET, 9], [LINKTYPE.LINUX_SLL, 9]],
    );
    const shark = execFileSync('tshark', ['-r', out, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'sip.Call-ID'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    assert.deepEqual(
      shark.split('\n').filter(Boolean),
      want.map((p) => `${p.sec}.${String(p.nsec).padStart(9, '0')}\t${p.frame.length}\t${A}`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('summaries describe each SIP message of the selected dialogs', async () => {
  await withRing(async (ring) => {
    const r = closedWithRefs(runQuery(ring, buildQuerySpec({ number: ['15551234567'] })));
    assert.deepEqual(r.callIds, [A]);
    assert.deepEqual(r.messages.map((m) => m.method ?? m.status), ['INVITE', 200, 'BYE', 200]);
    const inv = r.messages[0];
    assert.equal(inv.src, `${P}:5060`);
    assert.equal(inv.dst, `${GW}:5060`);
    assert.equal(inv.cseq, '314159 INVITE');
    assert.equal(inv.from, 'alice');
    assert.equal(inv.ts, `${T0}.000000100`);
  });
});

test('a journal (unsealed index) answers exactly like the sealed one; a corrupt index is rebuilt', async () => {
  await withRing(async (ring) => {
    const sealed = select(ring, { number: ['1234567'], rtp: true });
    const seg = readdirSync(ring).find((n) => n.endsWith('.pcap'))!;
    const segPath = join(ring, seg);
    const idxPath = segPath.replace(/\.pcap$/, '.idx');
    // Leave a journal only, as a live capture has it.
    const ix = new SegmentIndexer(segPath, idxPath);
    ix.catchUp();
    ix.close();
    const journal = closedWithRefs(runQuery(ring, buildQuerySpec({ number: ['1234567'], rtp: true }), { mayWrite: false }));
    assert.deepEqual(new Set(journal.refs.toArray().map((x) => (x.sec - T0) * 1e9 + x.nsec)), sealed);
    // Garbage over the index: rebuilt from the segment.
    const fd = openSync(idxPath, 'r+');
    writeSync(fd, Buffer.alloc(64, 0xee), 0, 64, 0);
    closeSync(fd);
    const r = closedWithRefs(runQuery(ring, buildQuerySpec({ number: ['1234567'], rtp: true })));
    assert.ok(r.notes.some((n) => /corrupt/.test(n) && /rebuilt/.test(n)), r.notes.join('; '));
    assert.deepEqual(new Set(r.refs.toArray().map((x) => (x.sec - T0) * 1e9 + x.nsec)), sealed);
  });
});

test('queries without a selective key, and bad values, are refused with what to do', () => {
  assert.throws(() => buildQuerySpec({}), (e: Error) => e instanceof TracefleetError && e.code === 'TF_QUERY_NOT_SELECTIVE' && /--all/.test(e.message));
  assert.throws(() => buildQuerySpec({ method: ['INVITE'] }), /no selective key/);
  assert.throws(() => buildQuerySpec({ ip: ['300.1.1.1'] }), /bad IP address/);
  assert.throws(() => buildQuerySpec({ port: ['70000'] }), /bad port/);
  assert.throws(() => buildQuerySpec({ number: ['12'] }), (e: Error) => e instanceof TracefleetError && e.code === 'TF_QUERY_BAD_NUMBER');
  assert.throws(() => buildQuerySpec({ callId: ['x'], status: ['99'] }), /bad status/);
  assert.throws(() => buildQuerySpec({ callId: ['x'], since: 'yesterday' }), /bad --since/);
  assert.throws(() => buildQuerySpec({ callId: ['x'], since: '1m', until: '2h' }), /--since is after --until/);
});

test('segments overlapping in time (two link types, several segments each, a packet out of order) are merged into one time order, and a limit cuts that order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-query-'));
  try {
    const cookedIp = (src: string, dst: string, payload: Buffer) => sll(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, payload)));
    // eth0 at even seconds, `any` at odd ones: each stream's segments overlap the other's. Two eth0 packets swapped.
    const eth: Pkt[] = Array.from({ length: 12 }, (_, i) => ({ sec: T0 + 2 * i, nsec: 7, frame: udpFrame(P, GW, 5060, 5060, sipInvite(A)) }));
    [eth[4], eth[5]] = [eth[5], eth[4]];
    const any: Pkt[] = Array.from({ length: 12 }, (_, i) => ({ sec: T0 + 2 * i + 1, nsec: 0, frame: cookedIp(GW, P, sipResponse(100, 'Trying', A)) }));
    const f1 = join(dir, 'eth0.pcap');
    const f2 = join(dir, 'any.pcap');
    writePcap(f1, eth);
    writePcap(f2, any, LINKTYPE.LINUX_SLL);
    const ring = join(dir, 'ring');
    const imported = await importCaptures(ring, [f1, f2], { maxSegmentBytes: 1500 });
    assert.ok(imported.segments.length >= 6, `${imported.segments.length} segments; the test needs several per stream`);
    const want = [...eth, ...any].map((p) => p.sec - T0).sort((a, b) => a - b);

    const whole = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [A] }, new Date((T0 + 100) * 1000))));
    assert.deepEqual(whole.refs.toArray().map((r) => r.sec - T0), want);
    assert.equal(whole.packets, 24);
    assert.equal(whole.truncated, false);

    const cut = runQuery(ring, buildQuerySpec({ callId: [A], maxPackets: 7 }, new Date((T0 + 100) * 1000)));
    const out = join(dir, 'cut.pcapng');
    let w;
    try {
      assert.deepEqual(resultRefs(cut).toArray().map((r) => r.sec - T0), want.slice(0, 7));
      w = await writeResultPcap(cut, createWriteStream(out));
    } finally {
      closeResult(cut);
    }
    assert.equal(cut.truncated, true);
    assert.equal(w.packets, 7);
    assert.equal(w.format, 'pcapng');
    const got = [];
    for await (const rec of readCaptureFile(out)) got.push([rec.tsSec - T0, rec.linkType]);
    assert.deepEqual(got, want.slice(0, 7).map((s) => [s, s % 2 === 0 ? LINKTYPE.ETHERNET : LINKTYPE.LINUX_SLL]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('past maxCallIds a broad query selects the same dialogs, packets and messages from its filter, and counts the same dialogs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-query-'));
  try {
    // Eight dialogs over many small segments: the even ones end with a BYE on port 5080 seconds after their INVITE.
    const pkts: Pkt[] = [];
    for (let k = 0; k < 8; k++) {
      const id = `spread-${k}@pc33`;
      pkts.push({ sec: T0 + k, nsec: 0, frame: udpFrame(P, GW, 5060, 5060, sipInvite(id)) });
      pkts.push({ sec: T0 + k, nsec: 500, frame: udpFrame(GW, P, 5060, 5060, sipResponse(200, 'OK', id)) });
      const port = k % 2 === 0 ? 5080 : 5060;
      pkts.push({ sec: T0 + k + 5, nsec: 0, frame: udpFrame(P, GW, port, port, bye(id)) });
    }
    pkts.sort((a, b) => a.sec - b.sec || a.nsec - b.nsec);
    const file = join(dir, 'spread.pcap');
    writePcap(file, pkts);
    const ring = join(dir, 'ring');
    const imported = await importCaptures(ring, [file], { maxSegmentBytes: 1500 });
    assert.ok(imported.segments.length >= 6, `${imported.segments.length} segments; the test needs dialogs across several`);
    const now = new Date((T0 + 100) * 1000);
    const cases: TraceQuery[] = [
      { port: ['5080'] },
      { port: ['5060'] },
      { port: ['5080'], method: ['BYE'] },
      { all: true, since: String(T0 + 6), until: String(T0 + 8) },
    ];
    for (const raw of cases) {
      const spec = buildQuerySpec(raw, now);
      const whole = closedWithRefs(runQuery(ring, spec));
      assert.ok(whole.dialogs > 1, `${JSON.stringify(raw)} selects several dialogs`);
      for (const maxCallIds of [0, 1]) {
        const kept = closedWithRefs(runQuery(ring, spec, { maxCallIds }));
        const what = `${JSON.stringify(raw)} with maxCallIds ${maxCallIds}`;
        assert.deepEqual(kept.refs.toArray(), whole.refs.toArray(), what);
        assert.deepEqual(kept.messages, whole.messages, what);
        assert.equal(kept.messagesMatched, whole.messagesMatched, what);
        assert.equal(kept.dialogs, whole.dialogs, what);
        assert.equal(kept.callIds.length, Math.min(maxCallIds, whole.dialogs), what);
        for (const c of kept.callIds) assert.ok(whole.callIds.includes(c), what);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
