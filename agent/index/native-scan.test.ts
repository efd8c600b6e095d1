import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSipCapture } from '../../bench/common/sipgen';
import { Dissector } from '../../shared/decode/dissector';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { correlationForScan, parseSip, parseSipScanned } from '../../shared/sip/parse';
import {
  ethernet, ETH_IPV4, ETH_IPV6, fragmentIpv4, ipv4, ipv6, prng, sipInvite, sipResponse, sll, sll2, tcp, udp,
} from '../../test/support/packets';
import { FUZZ_CORPUS, INVITE, mutate, sip } from '../../test/support/sip-corpus';
import { SegmentIndexer } from './builder';
import {
  BATCH_CORRUPT, BATCH_END, BATCH_FULL, BATCH_HEAD, BATCH_OUT_LEN, BATCH_RECORDS, BATCH_STOP, BATCH_USED, ENTRY_CAPLEN, ENTRY_FAST, ENTRY_NSEC,
  ENTRY_OFF, ENTRY_ORIGLEN, ENTRY_SCAN, ENTRY_SEC, indexAddon, SCAN_DPORT, SCAN_LENGTH, SCAN_LINE_COUNT, SCAN_LINES, SCAN_OUT_LEN, SCAN_PAYLOAD,
  SCAN_SIP, SCAN_SPORT, SCAN_DEC, DEC_OK, DEC_CALL_ID, DEC_CSEQ, DEC_RURI_USER, DEC_FROM_USER, DEC_TO_USER, DEC_REASON, DEC_STATUS,
  DEC_CORRELATION, DEC_SESSION_ID, DEC_CHARGING_VECTOR, DEC_CONTENT_TYPE, DEC_BODY_END, DEC_PAI_COUNT, DEC_PAI_USER_COUNT, DEC_PAI_USERS,
  DEC_METHOD_END, SCAN_START, SCAN_HEADER_LEN,
} from './native-scan';
import { CaptureFormatError } from '../../shared/pcap/errors';
import { parsePcapHeader, PCAP_HEADER_LEN, pcapCapLenLimit, scanPcapRecords } from '../../shared/pcap/pcap';
import type { PacketRecord } from '../../shared/pcap/types';
import { SealedIndex } from './reader';

const addon = indexAddon();

/**
 * Messages of every header form the scan's value decoding (scan.cc decodeFields) takes or refuses, built from
 * random choices of each header's form: compact and long names in any case, folded lines, tabs, tags in odd
 * places, name-addr and bare URIs, tel: URIs, quoted display names (escapes too), %-escapes, two Call-IDs,
 * empty values, P-Asserted-Identity lists, CSeq forms, correlation, Session-ID and P-Charging-Vector headers.
 */
/**
 * An SDP body from random choices of what parseSdp and the record's sdp/rc/pm read (scan.cc sdpRead, putSdp):
 * several m= lines, usable or not, port 0, c= at session and media level or missing, IPv6, multicast TTLs,
 * odd spacing and case, a=rtcp with and without an address (port + 1 or not), rtpmap repeated across media or
 * past 32, bytes past ASCII in an address or elsewhere, no v= line, more m= lines than the scan takes.
 */
function sdpBody(rnd: () => number, i: number): string {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
  const eol = pick(['\r\n', '\r\n', '\n', ' \r\n', '\t\r\n']);
  const addr = () => pick(['10.0.0.1', '10.0.0.2', '2001:db8::7', '224.2.1.1/127/3', '10.0.0.1/', '/1', 'h\xe9st', 'fe80::1%eth0']);
  const conn = () => pick(['IN IP4 ', 'IN IP6 ', 'in ip4 ', 'IN  IP4\t', 'IN IP5 ', 'IN IP4', 'ATM NSAP ']) + addr() + pick(['', '', ' extra']);
  const lines: string[] = [];
  if (rnd() < 0.95) lines.push(pick(['v=0', ' v=0', 'v=1']));
  lines.push('o=- 1 1 IN IP4 10.0.0.1', pick(['s=-', 's=\xe9t\xe9', 's=']));
  if (rnd() < 0.6) lines.push('c=' + conn());
  if (rnd() < 0.1) lines.push('c=' + conn());
  lines.push('t=0 0');
  const nm = rnd() < 0.03 ? 40 : 1 + Math.floor(rnd() * 4);
  for (let k = 0; k < nm; k++) {
    const port = pick([String(4000 + 2 * i + k), '0', '5004/2', '65536', 'x', '49170']);
    lines.push('m=' + pick(['audio', 'video', 'application']) + pick([' ', '  ', '\t']) + port + ' ' + pick(['RTP/AVP', 'RTP/SAVP', 'udp']) + pick([' 0 8 101', ' 0', '']));
    if (rnd() < 0.5) lines.push('c=' + conn());
    if (rnd() < 0.15) lines.push('c=' + conn());
    const nr = rnd() < 0.05 ? 40 : Math.floor(rnd() * 4);
    for (let r = 0; r < nr; r++) lines.push('a=' + pick(['rtpmap', 'RTPMAP', 'rtpmap', 'rtpMap']) + ':' + pick(['0 PCMU/8000', '8 PCMA/8000', '101 telephone-event/8000', '128 X/1', '9  G722/8000', '0', '18 G\xe929/8000', `${r % 120} C${r}/8000`]));
    // Up to two a=rtcp lines: the second's port replaces the first's, its address too when it has one (usable or not).
    for (let r = 0, nr2 = rnd() < 0.4 ? 1 + Math.floor(rnd() * 2) : 0; r < nr2; r++) {
      lines.push('a=' + pick(['rtcp', 'RTCP', 'rtcp']) + ':' + pick([String(4001 + 2 * i + k), '5001', '0', 'x', '53020 IN IP4 10.0.0.9', '53020 IN IP6 2001:db8::9', '5001 IN IP4', '5001 in ip4 10.0.0.1', '5003 IN IP5 10.0.0.9', '5005 IN IP4 10.0.0.9 x']));
    }
    if (rnd() < 0.2) lines.push(pick(['a=sendrecv', 'a=ptime:20', 'a=fmtp:101 0-15', 'a=rtcp-mux', 'b=AS:64', 'x']));
  }
  return lines.join(eol) + eol;
}

function decodeCorpus(n: number, seed: number): Buffer[] {
  const rnd = prng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
  const starts = [
    'INVITE sip:+15551234@b.example SIP/2.0', 'BYE sips:bob;user=phone@b:5061 SIP/2.0', 'ACK tel:+1-555-0100;phone-context=x SIP/2.0',
    'OPTIONS sip:b.example SIP/2.0', 'invite sip:a@b SIP/2.0', 'REGISTER sip:%41lice@b SIP/2.0', 'MESSAGE SIP:Alice:pw@b SIP/2.0',
    'NOTIFY urn:x:y SIP/2.0', 'SIP/2.0 200 OK', 'SIP/2.0 180  Ringing ', 'SIP/2.0 486 Busy Here', 'SIP/2.0 100', 'SIP/2.0 603\t',
  ];
  const users = ['+15551234', 'alice', '1000', '', 'a%40b', 'bob;npdi', 'carol:secret', '+1 555'];
  const uri = (): string => {
    const u = pick(users);
    return pick([`sip:${u}@h.example`, `sips:${u}@h`, `tel:${u};npdi`, `tel:${u}?x`, `SIP:${u}@H`, `mailto:${u}@x`, `sip:h.example`, `x:`, `s:y`]);
  };
  const tag = () => pick(['', ';tag=abc', ';TAG=1;x=2', ' ;tag = q', ';tag=', ';tag="quoted"']);
  const nameAddr = (): string => {
    const u = uri();
    return pick([
      `<${u}>${tag()}`, `${u}${tag()}`, `"Al B" <${u}>${tag()}`, `"A\\"q" <${u}>`, `Bob <${u}>`, `< ${u} >`, `"unterminated <${u}>`,
      `${u}>`, `<${u}`, '', '"" <' + u + '>', `\t<${u}>`, `"x" ${u}`,
    ]);
  };
  const name = (long: string, compact: string | null): string => {
    const forms = [long, long.toUpperCase(), long.toLowerCase(), ...(compact ? [compact, compact.toUpperCase()] : [])];
    return pick(forms) + pick([': ', ':', ' : ', ':\t', '\t:  ']);
  };
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const lines = [pick(starts)];
    const h: string[] = [];
    h.push(name('Via', 'v') + 'SIP/2.0/UDP a;branch=z9hG4bK' + i);
    if (rnd() < 0.95) h.push(name('Call-ID', 'i') + pick([`c${i}@x`, `c${i}`, '', ` c${i} `]));
    if (rnd() < 0.05) h.push(name('Call-ID', 'i') + pick(['second@x', '']));
    if (rnd() < 0.9) h.push(name('From', 'f') + nameAddr());
    if (rnd() < 0.9) h.push(name('To', 't') + nameAddr());
    if (rnd() < 0.04) h.push(name('To', 't') + nameAddr());
    if (rnd() < 0.9) h.push(name('CSeq', null) + pick(['1 INVITE', '42 BYE', '007 ACK', '1\tINVITE', '2  BYE', '3 invite', '4294967295 X', '4294967296 X', '12345678901 X', 'x INVITE', '5', '6 IN VITE', '0 A']));
    if (rnd() < 0.03) h.push(name('CSeq', null) + '9 OPTIONS');
    if (rnd() < 0.4) {
      const k = Math.floor(rnd() * 4);
      h.push(name('P-Asserted-Identity', null) + Array.from({ length: 1 + k }, nameAddr).join(pick([', ', ',', ' ,\t'])));
      if (rnd() < 0.2) h.push(name('P-Asserted-Identity', null) + nameAddr());
    }
    if (rnd() < 0.2) h.push(name('X-CID', null) + pick(['corr-1', '', 'a b']));
    if (rnd() < 0.03) h.push(name('X-CID', null) + 'corr-2');
    if (rnd() < 0.15) h.push(name('Session-ID', null) + pick(['ab'.repeat(16), 'AB'.repeat(16) + ';remote=' + 'cd'.repeat(16), '0'.repeat(32), 'x', 'ab'.repeat(16) + ' ;Remote="' + 'ef'.repeat(16) + '"']));
    if (rnd() < 0.15) h.push(name('P-Charging-Vector', null) + pick(['icid-value=1234;orig-ioi=x', 'icid-value="q;v"', 'orig-ioi=y', 'ICID-VALUE = z']));
    if (rnd() < 0.05) h.push(name('P-Charging-Vector', null) + 'icid-value=second');
    if (rnd() < 0.05) h.push('Subject: xref=1');
    const body = rnd() < 0.5 ? (rnd() < 0.3 ? 'v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio ' + (4000 + i) + ' RTP/AVP 0 8\r\na=rtcp:5001\r\n' : sdpBody(rnd, i)) : '';
    if (body || rnd() < 0.3) h.push(name('Content-Type', 'c') + pick(['application/sdp', 'application/sdp', 'Application/SDP; x=1', ' application/sdp ;v=2', 'text/plain', 'multipart/mixed;boundary=b1', '']));
    if (rnd() < 0.1) h.push(name('Content-Type', 'c') + 'application/sdp');
    if (rnd() < 0.8) h.push(name('Content-Length', 'l') + pick(['[len]', '[len]', '0', '3', '99999', 'x']));
    if (rnd() < 0.1) h.push('X-Odd: \xe9t\xe9');
    // Some lines folded, some with tabs around the value.
    for (const line of h) {
      const r = rnd();
      if (r < 0.05) {
        const cut = line.indexOf(':') + 1 + Math.floor(rnd() * 4);
        lines.push(line.slice(0, cut), pick([' ', '\t', '  ']) + line.slice(cut));
      } else if (r < 0.1) lines.push(line + pick([' ', '\t', ' \t']));
      else lines.push(line);
    }
    out.push(Buffer.from(sip(lines, body, rnd() < 0.1 ? '\n' : '\r\n').toString('utf8'), 'latin1'));
  }
  return out;
}

const DECODE = decodeCorpus(600, 0xdec0de);

// Messages the JS parser reads in odd ways: the native scan must agree or step aside.
const ODD: Buffer[] = [
  ...DECODE,
  ...FUZZ_CORPUS,
  sipInvite('odd-1@x', 'P-Asserted-Identity: <sip:+15550001@x>, "B" <tel:+15550002>\r\n'),
  sipResponse(486, 'Busy Here', 'odd-2@x'),
  Buffer.from('BYE sip:a@b SIP/2.0\r\xc7To: <sip:b@c>\r\nCall-ID: c2\rX: 1\r\n\r\n', 'latin1'),
  Buffer.from('INVITE sip:a@b SIP/2.0\nCall-ID: bare-lf\nFrom: <sip:1@x>\nTo:\n  <sip:2@y>\n folded\nCSeq: 1 INVITE\n\n', 'latin1'),
  Buffer.from('SIP/2.0 200\r\ni: compact\r\nf: <sip:a@b>\r\nt: <sip:c@d>\r\nl: 0\r\n\r\n', 'latin1'),
  Buffer.from('sip/2.0 200 OK\r\nCall-ID: lower-version\r\n\r\n', 'latin1'),
  Buffer.from('IN(VITE 1sip:x SIP/2.0\r\nCall-ID: lax\r\n\r\n', 'latin1'),
  Buffer.from('INVITE sip:x@y;XREF=abc SIP/2.0\r\nCall-ID: xref-1\r\nVia: a;xRef=q\r\n\r\n', 'latin1'),
  Buffer.from('MESSAGE sip:a@b SIP/2.0\r\nCall-ID: utf8-\xc3\xa9\r\nFrom: "\xe4\xb8\xad" <sip:1@x>\r\nContent-Length: 3\r\n\r\nabcTRAILER', 'latin1'),
  Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\ncontent-length: 6\r\nCall-ID: two-lengths\r\n\r\nabcdef', 'latin1'),
  Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: no-blank-line\r\nX: y', 'latin1'),
  sip(['NOTIFY sip:a@b SIP/2.0', 'Call-ID: many', ...Array.from({ length: 300 }, (_, i) => `X-H${i}: ${i}`)]),
  // The scan's facts: "xref" in the start line only; a byte past ASCII in one header value only, or in the body only.
  Buffer.from('INVITE sip:xref@b SIP/2.0\r\nCall-ID: x-start\r\nFrom: <sip:1@x>;tag=\xe9\r\nTo: <sip:2@y>\r\n\r\n', 'latin1'),
  Buffer.from('SIP/2.0 200 OK\r\nCall-ID: body-utf8\r\nContent-Type: application/sdp\r\nContent-Length: 9\r\n\r\ns=\xc3\xa9\r\nv=0', 'latin1'),
  Buffer.from('INVITE sip:a@b SIP/2.0\r\nCall-ID: c\xc3\xa9\r\nX: ;XREF=q\r\n\r\n', 'latin1'),
  Buffer.from('\r\n\r\n', 'latin1'),
  Buffer.from('SIP/2.0 200 OK\r\n', 'latin1'),
  // Values of 128 bytes or more (their record lengths take two varint bytes), a record written by the scan.
  sip([`OPTIONS sip:${'7'.repeat(140)}@b SIP/2.0`, `Call-ID: ${'L'.repeat(200)}@x`, 'From: <sip:1@x>;tag=1', 'To: <sip:2@y>', 'CSeq: 1 OPTIONS', `X-CID: ${'c'.repeat(130)}`, 'Content-Length: 0']),
];

function frame(payload: Buffer, i: number): Buffer {
  return ethernet(ETH_IPV4, ipv4({ src: `10.0.${i & 7}.1`, dst: '10.9.0.2', proto: 17 }, udp(5060 + (i & 3), 5080, payload)));
}

const VLAN_TAGS = [[{ vid: 7 }], [{ vid: 100, tpid: 0x88a8 }, { vid: 7 }], [{ vid: 3, tpid: 0x9100 }]];

/** The same datagram on each link the scan takes: [link type, frame]. */
function framed(payload: Buffer, i: number): Array<[number, Buffer]> {
  const ip = ipv4({ src: `10.0.${i & 7}.1`, dst: '10.9.0.2', proto: 17 }, udp(5060 + (i & 3), 5080, payload));
  const tagged = ethernet(ETH_IPV4, ip, { vlans: VLAN_TAGS[i % VLAN_TAGS.length] });
  return [[1, frame(payload, i)], [1, tagged], [113, sll(ETH_IPV4, ip)], [276, sll2(ETH_IPV4, ip)]];
}

/** Checks one frame: when the native scan claims it, the JS dissector and parser read it the same. */
function checkFrame(f: Buffer, out: Int32Array, what: string, linkType = 1): boolean {
  if (addon!.scan(f, out, linkType) !== 1) return false;
  const r = new Dissector().push(0, linkType, f, 1_795_000_000);
  assert.ok(r.decoded && r.decoded.ipVersion === 4 && r.decoded.fragment === null && r.decoded.proto === 17, `${what}: JS decodes it as IPv4 UDP`);
  assert.equal(r.messages.length, 1, `${what}: JS finds one message`);
  const m = r.messages[0];
  assert.equal(m.sport, out[SCAN_SPORT], `${what}: sport`);
  assert.equal(m.dport, out[SCAN_DPORT], `${what}: dport`);
  assert.equal(m.bytes.byteOffset - f.byteOffset, out[SCAN_PAYLOAD], `${what}: message offset`);
  assert.equal(m.bytes.length, out[SCAN_LENGTH], `${what}: message length`);
  assert.equal(m.truncated, false);
  for (const opts of [{ allHeaders: false, truncated: false }, { allHeaders: true }, { correlationHeader: 'Via', allHeaders: false }]) {
    const js = parseSip(m.bytes, opts);
    const native = parseSipScanned(m.bytes, opts, out, SCAN_SIP);
    assert.deepEqual(native, js, `${what}: parsed the same (${JSON.stringify(opts)})`);
  }
  // Without a correlation name the scan decodes no values; with one, what it decodes is what parseSip reads.
  assert.equal(out[SCAN_DEC + DEC_OK], 0, `${what}: no values decoded without a correlation name`);
  for (const corr of ['X-CID', 'x-corr-id', 'Subject']) {
    assert.equal(addon!.scan(f, out, linkType, correlationForScan(corr)), 1, `${what}: claimed again`);
    if (out[SCAN_DEC + DEC_OK] === 1) {
      decoded++;
      assert.deepEqual(decodedValues(m.bytes, out), parsedValues(m.bytes, corr), `${what}: decoded as parsed (${corr})`);
    }
  }
  return true;
}

let decoded = 0;

/** What the record keeps of a message, from the scan's decoded values (builder.ts indexDecoded reads them so). */
function decodedValues(bytes: Buffer, o: Int32Array): unknown {
  const d = SCAN_DEC;
  const ext = (k: number) => (o[d + k] < 0 ? null : bytes.toString('latin1', o[d + k], o[d + k + 1]));
  const users: string[] = [];
  for (let i = 0; i < o[d + DEC_PAI_USER_COUNT]; i++) users.push(bytes.toString('latin1', o[d + DEC_PAI_USERS + 2 * i], o[d + DEC_PAI_USERS + 2 * i + 1]));
  const req = o[d + DEC_METHOD_END] >= 0;
  return {
    method: req ? bytes.toString('latin1', o[SCAN_START], o[d + DEC_METHOD_END]) : null,
    status: req ? null : o[d + DEC_STATUS],
    reason: req ? null : ext(DEC_REASON) ?? '',
    callId: ext(DEC_CALL_ID), q: ext(DEC_CSEQ), ru: ext(DEC_RURI_USER), fu: ext(DEC_FROM_USER), tu: ext(DEC_TO_USER),
    pai: o[d + DEC_PAI_COUNT], pu: users, x: ext(DEC_CORRELATION), session: ext(DEC_SESSION_ID), pcv: ext(DEC_CHARGING_VECTOR),
    contentType: ext(DEC_CONTENT_TYPE), body: [o[SCAN_HEADER_LEN], o[d + DEC_BODY_END]],
  };
}

/** The same from parseSip (Session-ID and P-Charging-Vector as their raw values: parseSip's own functions read those). */
function parsedValues(bytes: Buffer, correlationHeader: string): unknown {
  const m = parseSip(bytes, { correlationHeader, allHeaders: true })!;
  const raw = (n: string) => m.headers.find(([k]) => k === n)?.[1] ?? null;
  return {
    method: m.method, status: m.status, reason: m.reason,
    callId: m.callId, q: m.cseq ? `${m.cseq.seq} ${m.cseq.method}` : null, ru: m.ruriUser, fu: m.from?.user ?? null, tu: m.to?.user ?? null,
    pai: m.pai.length, pu: m.pai.filter((p) => p.user).map((p) => p.user), x: m.correlation, session: raw('session-id'), pcv: raw('p-charging-vector'),
    contentType: raw('content-type'), body: [m.headerLength, m.headerLength + m.body.length],
  };
}

test('the native scan is built (setup.sh and npm run build make it)', () => {
  assert.ok(addon, 'agent/index/native/build/Release/tfindex.node is missing: run scripts/setup.sh');
  assert.throws(() => addon.scan(Buffer.alloc(10), new Int32Array(4), 1), TypeError);
  assert.throws(() => (addon as unknown as { scan(a: unknown, b: unknown, c: unknown): number }).scan('x', new Int32Array(SCAN_OUT_LEN), 1), TypeError);
  assert.throws(() => (addon as unknown as { scan(a: unknown, b: unknown): number }).scan(Buffer.alloc(10), new Int32Array(SCAN_OUT_LEN)), TypeError);
  // Link types it does not read are the JS path's.
  const out = new Int32Array(SCAN_OUT_LEN);
  const ip = ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: 17 }, udp(5060, 5060, INVITE));
  assert.equal(addon.scan(ip, out, 101), 0);
  assert.equal(addon.scan(ip, out, 228), 0);
  assert.equal(addon.scan(frame(INVITE, 0), out, 1), 1);
});

test('fuzz: whatever the frame, the native scan either steps aside or reads it exactly as the JS path', () => {
  const out = new Int32Array(SCAN_OUT_LEN);
  const rnd = prng(0x1d8a7);
  let fast = 0;
  let slow = 0;
  const count = (f: Buffer, what: string, linkType = 1) => (checkFrame(f, out, what, linkType) ? fast++ : slow++);
  ODD.forEach((m, i) => {
    for (const [lt, f] of framed(m, i)) count(f, `odd ${i} on link type ${lt}`, lt);
  });
  for (let i = 0; i < 12_000; i++) {
    const base = ODD[i % ODD.length];
    switch (i % 4) {
      case 0: // the message mutated, the headers right
        count(frame(mutate(base, rnd), i), `mutated message ${i}`);
        break;
      case 1: { // the whole frame mutated: link (Ethernet, VLAN tags, cooked), IP and UDP headers too
        const [lt, g] = framed(base, i)[(i >> 2) % 4];
        const f = Buffer.from(g);
        for (let k = 0, n = 1 + Math.floor(rnd() * 4); k < n; k++) f[Math.floor(rnd() * Math.min(f.length, 70))] = Math.floor(rnd() * 256);
        count(f, `mutated headers ${i} on link type ${lt}`, lt);
        break;
      }
      case 2: { // cut anywhere, read from inside a bigger buffer (nothing past its end may be read)
        const f = frame(base, i);
        const big = Buffer.concat([f, Buffer.from('\nxref: never read\r\n\r\n')]);
        count(big.subarray(0, Math.floor(rnd() * (f.length + 1))), `cut ${i}`);
        break;
      }
      default: { // random bytes behind real headers, and random bytes alone
        const junk = Buffer.alloc(Math.floor(rnd() * 200));
        for (let k = 0; k < junk.length; k++) junk[k] = Math.floor(rnd() * 256);
        count(frame(junk, i), `junk payload ${i}`);
        for (const lt of [1, 113, 276]) count(junk, `junk frame ${i} on link type ${lt}`, lt);
      }
    }
  }
  // Both outcomes must occur, or the fuzz does not exercise the scan.
  assert.ok(fast > 1000, `only ${fast} frames taken by the native scan`);
  assert.ok(decoded > 1000 && decoded < 2 * fast - 1000, `${decoded} decodes of ${fast} frames claimed (two names each): both ways used`);
  assert.ok(slow > 2000, `only ${slow} frames left to the JS path`);
});

interface Pkt { frame: Buffer; cut?: number }

function writeSegment(path: string, pkts: Pkt[], linkType = 1): void {
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType, nanos: true });
  pkts.forEach((p, i) => {
    const data = p.cut !== undefined ? p.frame.subarray(0, p.cut) : p.frame;
    w.write({ tsSec: 1_795_000_000 + Math.floor(i / 10), tsNsec: (i % 10) * 1000, origLen: p.frame.length, data });
  });
  w.flush();
  closeSync(fd);
}

/** Indexes the segment both ways; the journals, the sealed indexes and what lookups find must be the same. */
function indexBothWays(dir: string, seg: string): { packets: number; messages: number; scanned: number; decoded: number; records: number } {
  const files: Record<string, { journal: Buffer; sealed: Buffer }> = {};
  let packets = 0;
  let messages = 0;
  let scanned = 0;
  let decoded = 0;
  let records = 0;
  // What onMessage is told (the live counters, follows, HEP out): the same records both ways, SDP included.
  const told: Record<string, unknown[]> = { false: [], true: [] };
  for (const nativeScan of [false, true]) {
    const idx = join(dir, `${nativeScan ? 'native' : 'js'}.idx`);
    const ix = new SegmentIndexer(seg, idx, { nativeScan, onMessage: (m) => told[String(nativeScan)].push(m) });
    ix.catchUp();
    const journal = readFileSync(idx);
    ix.seal();
    packets = ix.state.packetCount;
    messages = ix.state.messages.count;
    scanned = ix.stats().nativeScanned;
    decoded = ix.stats().nativeDecoded;
    records = ix.stats().nativeRecords;
    if (!nativeScan) assert.equal(scanned, 0);
    files[String(nativeScan)] = { journal, sealed: readFileSync(idx) };
    if (nativeScan) {
      // What a query finds: every dialog, by its Call-ID too.
      const js = SealedIndex.open(join(dir, 'js.idx'))!;
      const nat = SealedIndex.open(idx)!;
      const all = js.allDialogs();
      assert.deepEqual(nat.allDialogs(), all);
      for (const d of all.slice(0, 200)) assert.deepEqual(nat.dialogsByCallId(d.c), js.dialogsByCallId(d.c), d.c);
      js.close();
      nat.close();
    }
  }
  assert.deepEqual(told.true, told.false, 'onMessage told the same records');
  assert.ok(files.false.journal.equals(files.true.journal), 'journals byte-identical');
  assert.ok(files.false.sealed.equals(files.true.sealed), 'sealed indexes byte-identical');
  return { packets, messages, scanned, decoded, records };
}

test('differential: the native and the JS path write byte-identical journals and sealed indexes, on hostile and real traffic', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-native-scan-'));
  try {
    const rnd = prng(0xd1ff);
    const pkts: Pkt[] = [];
    ODD.forEach((m, i) => pkts.push({ frame: frame(m, i) }));
    for (let i = 0; i < 3000; i++) {
      const base = ODD[i % ODD.length];
      const f = frame(i % 3 === 0 ? base : mutate(base, rnd), i);
      // Some cut by the snap length, some with a bit flipped in the headers.
      if (i % 7 === 0) pkts.push({ frame: f, cut: Math.floor(rnd() * f.length) });
      else if (i % 11 === 0) {
        const g = Buffer.from(f);
        g[Math.floor(rnd() * 42)] ^= 1 << Math.floor(rnd() * 8);
        pkts.push({ frame: g });
      } else pkts.push({ frame: f });
    }
    // What only the JS path reads: a VLAN tag, IPv6, TCP, IP fragments (interleaved with the rest).
    const inv = sipInvite('js-only@x');
    pkts.push({ frame: ethernet(ETH_IPV4, ipv4({ src: '10.1.0.1', dst: '10.1.0.2', proto: 17 }, udp(5060, 5060, inv)), { vlans: [{ vid: 42 }] }) });
    pkts.push({ frame: ethernet(ETH_IPV6, ipv6({ src: '2001:db8::1', dst: '2001:db8::2', nextHeader: 17 }, udp(5060, 5060, sipResponse(200, 'OK', 'js-only@x')))) });
    pkts.push({ frame: ethernet(ETH_IPV4, ipv4({ src: '10.1.0.1', dst: '10.1.0.2', proto: 6 }, tcp({ sport: 5060, dport: 5070, seq: 1 }, INVITE))) });
    for (const fr of fragmentIpv4({ src: '10.1.0.3', dst: '10.1.0.4', proto: 17, id: 7 }, udp(5060, 5060, sipInvite('frag@x', '', 1500)), [600, 600, 2000])) {
      pkts.push({ frame: ethernet(ETH_IPV4, fr) });
      pkts.push({ frame: frame(sipResponse(180, 'Ringing', 'between@x'), 1) });
    }
    const seg = join(dir, 'hostile.pcap');
    writeSegment(seg, pkts);
    const h = indexBothWays(dir, seg);
    assert.equal(h.packets, pkts.length);
    // The same messages in Linux cooked v2 frames, some VLAN-tagged (a capture on "any").
    const cooked: Pkt[] = [];
    for (let i = 0; i < 1500; i++) {
      const base = ODD[i % ODD.length];
      const ip = ipv4({ src: `10.2.${i & 7}.1`, dst: '10.9.0.2', proto: 17 }, udp(5060, 5080, i % 3 === 0 ? base : mutate(base, rnd)));
      const tag = Buffer.from([0, 7, 0x08, 0x00]);
      cooked.push({ frame: i % 5 === 0 ? sll2(0x8100, Buffer.concat([tag, ip])) : sll2(ETH_IPV4, ip), cut: i % 9 === 0 ? 30 + (i % 200) : undefined });
    }
    const cookedSeg = join(dir, 'cooked.pcap');
    writeSegment(cookedSeg, cooked, 276);
    const c = indexBothWays(dir, cookedSeg);
    assert.ok(c.scanned > 500 && c.scanned < c.packets, `${c.scanned} of ${c.packets} cooked packets read by the native scan`);
    assert.ok(h.messages > 800, `${h.messages} messages indexed`);
    assert.ok(h.scanned > 800 && h.scanned < h.packets - 500, `${h.scanned} of ${h.packets} packets read by the native scan: both paths used`);
    assert.ok(h.decoded > 300 && h.decoded < h.scanned - 300, `${h.decoded} of ${h.scanned} scanned messages decoded natively: both ways used`);
    assert.ok(h.records > 100 && h.records < h.decoded - 100, `${h.records} of ${h.decoded} decoded messages' records written by the scan`);
    // The same packets in the HEP stream's segment: its records are marked so (BIN_FLAG.HEP), by the scan too.
    const hepSeg = join(dir, 'hep-20261205T120000.000000Z.pcap');
    copyFileSync(seg, hepSeg);
    const hh = indexBothWays(dir, hepSeg);
    assert.equal(hh.records, h.records);

    // Generated calls as the bench indexes them (SDP, PAI, numbers), with some RTP.
    const gen = generateSipCapture({ outDir: dir, totalBytes: 3 * 2 ** 20, fileBytes: 8 * 2 ** 20, seed: 77, rtp: { share: 0.2, seconds: 1 } });
    const real = join(dir, 'gen.pcap');
    copyFileSync(gen.files[0], real);
    const g = indexBothWays(dir, real);
    assert.ok(g.messages > 2000, `${g.messages} generated messages indexed`);
    assert.equal(g.scanned, g.messages, 'every generated SIP packet is read by the native scan');
    assert.equal(g.decoded, g.messages, 'every generated SIP message is decoded by the native scan');
    // Their SDP too: every record is written by the scan.
    assert.equal(g.records, g.messages, 'every generated record is written by the scan');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('differential: SDP bodies of every form give the same records whether the scan or JS writes them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-native-sdp-'));
  try {
    const rnd = prng(0x5d9);
    const pkts: Pkt[] = [];
    for (let i = 0; i < 1500; i++) {
      const body = sdpBody(rnd, i);
      const start = i % 2 === 0 ? `INVITE sip:+1555${i}@b SIP/2.0` : 'SIP/2.0 200 OK';
      const ct = ['application/sdp', 'Application/SDP;x=1', '\tapplication/sdp ', 'text/plain', 'multipart/mixed; boundary=q'][i % 5];
      const lines = [start, `Call-ID: sdp-${i % 300}@x`, 'From: <sip:+15550001@x>;tag=1', 'To: <sip:+15550002@y>', `CSeq: ${i} INVITE`, `Content-Type: ${ct}`, 'Content-Length: [len]'];
      // Half of them with their bytes as latin1 (a byte of 0x80 or more as it is, not as UTF-8).
      const msg = i % 4 < 2 ? sip(lines, body) : Buffer.from(sip(lines, body).toString('utf8'), 'latin1');
      pkts.push({ frame: frame(msg, i) });
    }
    const seg = join(dir, 'sdp.pcap');
    writeSegment(seg, pkts);
    const r = indexBothWays(dir, seg);
    assert.equal(r.messages, pkts.length);
    // Most are written by the scan; an address past ASCII, a multipart body, more m= lines than it takes go to JS.
    assert.ok(r.records > r.messages / 2 && r.records < r.messages - 50, `${r.records} of ${r.messages} records written by the scan`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A record header in either byte order. */
function recordHeader(sec: number, sub: number, capLen: number, origLen: number, le: boolean): Buffer {
  const h = Buffer.alloc(16);
  const w = (v: number, at: number) => (le ? h.writeUInt32LE(v >>> 0, at) : h.writeUInt32BE(v >>> 0, at));
  w(sec, 0);
  w(sub, 4);
  w(capLen, 8);
  w(origLen, 12);
  return h;
}

/**
 * The batch walk against scanPcapRecords and scan() of each record: the same records, times and lengths, the
 * same frames claimed with the same layout, and it stops where scanPcapRecords stops or throws.
 */
function checkBatch(buf: Buffer, le: boolean, nanos: boolean, what: string): { records: number; fast: number; full: number } {
  const header = { linkType: 1, nanos, littleEndian: le, snaplen: 65535, versionMajor: 2, versionMinor: 4 };
  const js: PacketRecord[] = [];
  let jsUsed = -1;
  let jsCorrupt = -1;
  try {
    jsUsed = scanPcapRecords(buf, 0, header, (r) => js.push(r));
  } catch (e) {
    assert.ok(e instanceof CaptureFormatError, `${what}: ${String(e)}`);
    jsCorrupt = (e as CaptureFormatError & { offset: number }).offset ?? -2;
  }
  // A small output: the walk is resumed many times (BATCH_FULL).
  const out = new Int32Array(BATCH_HEAD + ENTRY_SCAN + SCAN_OUT_LEN + 200);
  const one = new Int32Array(SCAN_OUT_LEN);
  let off = 0;
  let k = 0;
  let fast = 0;
  let full = 0;
  for (let rounds = 0; rounds < 100_000; rounds++) {
    addon!.scanRecords(buf, off, le, nanos, pcapCapLenLimit(header), 1, out);
    for (let i = 0, e = BATCH_HEAD; i < out[BATCH_RECORDS]; i++, k++) {
      const r = js[k];
      assert.ok(r, `${what}: the batch walked a record scanPcapRecords did not`);
      assert.equal(out[e + ENTRY_OFF], r.fileOffset, `${what}: record ${k} offset`);
      assert.equal(out[e + ENTRY_CAPLEN], r.capLen);
      assert.equal(out[e + ENTRY_ORIGLEN], r.origLen);
      assert.equal(out[e + ENTRY_SEC] >>> 0, r.tsSec >>> 0, `${what}: record ${k} seconds`);
      assert.equal(out[e + ENTRY_NSEC], r.tsNsec, `${what}: record ${k} nanoseconds`);
      const claimed = r.capLen === r.origLen && r.tsSec <= 0xffffffff && addon!.scan(r.data, one, 1) === 1;
      assert.equal(out[e + ENTRY_FAST], claimed ? 1 : 0, `${what}: record ${k} claimed the same`);
      if (claimed) {
        fast++;
        const n = SCAN_LINES + 4 * one[SCAN_LINE_COUNT];
        const got = Array.from(out.subarray(e + ENTRY_SCAN, e + ENTRY_SCAN + n));
        const want = Array.from(one.subarray(0, n));
        assert.deepEqual(got, want, `${what}: record ${k} scan`);
        e += ENTRY_SCAN + n;
      } else e += ENTRY_SCAN;
    }
    off = out[BATCH_USED];
    if (out[BATCH_STOP] === BATCH_FULL) {
      full++;
      continue;
    }
    if (out[BATCH_STOP] === BATCH_CORRUPT) assert.equal(off, jsCorrupt, `${what}: corrupt header at the same offset`);
    else {
      assert.equal(out[BATCH_STOP], BATCH_END);
      assert.equal(jsCorrupt, -1, `${what}: scanPcapRecords found a corrupt header at ${jsCorrupt}, the batch did not`);
      assert.equal(off, jsUsed, `${what}: bytes walked`);
    }
    break;
  }
  assert.equal(k, js.length, `${what}: records walked`);
  return { records: k, fast, full };
}

test('the batch walk reads the records scanPcapRecords reads and scans each as scan() does, whatever the bytes', () => {
  const out = new Int32Array(BATCH_OUT_LEN);
  const bad = addon as unknown as { scanRecords(...a: unknown[]): void };
  assert.throws(() => bad.scanRecords(Buffer.alloc(40), 0, true, true, 65535, 1, new Int32Array(10)), TypeError);
  assert.throws(() => bad.scanRecords(Buffer.alloc(40), 41, true, true, 65535, 1, out), RangeError);
  assert.throws(() => bad.scanRecords(Buffer.alloc(40), -1, true, true, 65535, 1, out), RangeError);
  assert.throws(() => bad.scanRecords('x', 0, true, true, 65535, 1, out), TypeError);
  const rnd = prng(0xba7c);
  let fast = 0;
  let full = 0;
  for (let round = 0; round < 300; round++) {
    const le = round % 3 !== 0;
    const nanos = round % 2 === 0;
    const parts: Buffer[] = [];
    for (let i = 0, n = 5 + Math.floor(rnd() * 60); i < n; i++) {
      const base = ODD[(round * 7 + i) % ODD.length];
      const f = frame(i % 4 === 0 ? mutate(base, rnd) : base, i);
      const cap = i % 9 === 0 ? Math.floor(rnd() * f.length) : f.length;
      // Sub-second fields of a second or more (carried), seconds near the top of 32 bits.
      const sub = i % 13 === 0 ? 0xffffffff - Math.floor(rnd() * 5) : Math.floor(rnd() * (nanos ? 1e9 : 1e6));
      const sec = i % 17 === 0 ? 0xffffffff - Math.floor(rnd() * 3) : 1_795_000_000 + i;
      parts.push(recordHeader(sec, sub, cap, f.length, le), f.subarray(0, cap));
    }
    let buf = Buffer.concat(parts);
    if (round % 4 === 1) {
      // Bytes of the record headers and frames flipped: lengths that lie, corrupt headers.
      buf = Buffer.from(buf);
      for (let k = 0, n = 1 + Math.floor(rnd() * 6); k < n; k++) buf[Math.floor(rnd() * buf.length)] = Math.floor(rnd() * 256);
    }
    // Cut anywhere: a partial record at the end is left for the next call.
    if (round % 5 === 2) buf = buf.subarray(0, Math.floor(rnd() * buf.length));
    const r = checkBatch(buf, le, nanos, `round ${round}`);
    fast += r.fast;
    full += r.full;
  }
  assert.ok(fast > 2000, `only ${fast} records claimed`);
  assert.ok(full > 100, `the batch filled its output only ${full} times`);
});

test('differential: a segment indexed as it grows, in steps that end anywhere, gives the same journal both ways; a corrupt record ends both at the same offset', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-native-batch-'));
  try {
    const gen = generateSipCapture({ outDir: dir, totalBytes: 2 * 2 ** 20, fileBytes: 8 * 2 ** 20, seed: 91, rtp: { share: 0.3, seconds: 1 } });
    const src = readFileSync(gen.files[0]);
    // A corrupt record header two thirds in (caplen past the limit), records after it.
    let at = PCAP_HEADER_LEN;
    const le = parsePcapHeader(src.subarray(0, PCAP_HEADER_LEN)).littleEndian;
    while (at < (src.length * 2) / 3) at += 16 + (le ? src.readUInt32LE(at + 8) : src.readUInt32BE(at + 8));
    const bad = Buffer.from(src);
    bad.writeUInt32LE(0x7fffffff, at + 8);
    for (const [name, bytes] of [['grown', src], ['corrupt', bad]] as const) {
      const journals: Buffer[] = [];
      const corrupt: Array<number | null> = [];
      for (const nativeScan of [false, true]) {
        const seg = join(dir, `${name}-${nativeScan}.pcap`);
        const idx = join(dir, `${name}-${nativeScan}.idx`);
        const fd = openSync(seg, 'w');
        const ix = new SegmentIndexer(seg, idx, { nativeScan });
        const rnd = prng(5);
        for (let p = 0; p < bytes.length; ) {
          const end = Math.min(bytes.length, p + 1 + Math.floor(rnd() * 300_000));
          writeSync(fd, bytes, p, end - p, p);
          p = end;
          ix.catchUp();
        }
        closeSync(fd);
        journals.push(readFileSync(idx));
        corrupt.push(ix.corruptAt);
        ix.close();
      }
      assert.ok(journals[0].equals(journals[1]), `${name}: journals byte-identical`);
      assert.equal(corrupt[1], corrupt[0], `${name}: corrupt at the same offset`);
      if (name === 'corrupt') assert.ok(corrupt[0] !== null && corrupt[0] <= at, `corrupt at ${corrupt[0]}, the record at ${at}`);
      else assert.equal(corrupt[0], null);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
