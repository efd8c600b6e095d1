import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LINKTYPE } from '../pcap/types';
import { Dissector } from './dissector';
import { decodePacket } from './packet';
import type { TransportMessage } from './types';
import {
  ETH_IPV4, ETH_IPV6, ethernet, fragmentIpv4, fragmentIpv6, ipv4, ipv6, nullLink, prng, sipInvite, sipResponse, sll, sll2,
  tcp, TCP_FLAG, udp, v6Options,
} from '../../test/support/packets';

const A = { src: '192.0.2.10', dst: '198.51.100.20' };
const A6 = { src: '2001:db8:0:1::10', dst: '2001:db8:0:2::20' };
const INV = sipInvite();

function udp4(payload: Buffer, sport = 5060, dport = 5060): Buffer {
  return ethernet(ETH_IPV4, ipv4({ ...A, proto: 17 }, udp(sport, dport, payload)));
}

test('a SIP datagram is one message; other UDP is not', () => {
  const d = new Dissector();
  const r = d.push(0, LINKTYPE.ETHERNET, udp4(INV), 1);
  assert.equal(r.failure, null);
  assert.equal(r.decoded?.sport, 5060);
  assert.equal(r.messages.length, 1);
  const m = r.messages[0];
  assert.deepEqual(m.bytes, INV);
  assert.deepEqual(m.packets, [0]);
  assert.deepEqual([m.src, m.dst, m.sport, m.dport, m.proto], [A.src, A.dst, 5060, 5060, 17]);

  const rtp = Buffer.concat([Buffer.from([0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1]), Buffer.from('INVITE sip:x SIP/2.0\r\n')]);
  assert.equal(d.push(1, LINKTYPE.ETHERNET, udp4(rtp, 20000, 30000), 1).messages.length, 0);
  const text = Buffer.from('Please call 5551234567 re: SIP/2.0 trunk 200 OK\r\n\r\n');
  assert.equal(d.push(2, LINKTYPE.ETHERNET, udp4(text), 1).messages.length, 0);
  const ka = d.push(3, LINKTYPE.ETHERNET, udp4(Buffer.from('\r\n\r\n')), 1);
  assert.equal(ka.messages.length, 0);
  assert.equal(ka.decoded?.payload.length, 4);
  const st = d.stats();
  assert.equal(st.packets, 4);
  assert.equal(st.decoded, 4);
  assert.equal(st.sipMessages, 1);
  assert.equal(st.keepalives, 1);
});

test('a datagram is trimmed to Content-Length; Ethernet padding never reaches it', () => {
  const d = new Dissector();
  const bye = Buffer.from('BYE sip:b@c SIP/2.0\r\nCall-ID: 1\r\nl: 0\r\n\r\n');
  const trailing = d.push(0, LINKTYPE.ETHERNET, udp4(Buffer.concat([bye, Buffer.from('\0\0junk')])), 1);
  assert.deepEqual(trailing.messages[0].bytes, bye);
  // A short datagram in a padded frame.
  const ok = Buffer.from('SIP/2.0 200 OK\r\n\r\n');
  const frame = ethernet(ETH_IPV4, ipv4({ ...A, proto: 17 }, udp(5060, 5060, ok)), { padTo: 80 });
  frame.fill(0x41, frame.length - 20);
  const padded = d.push(1, LINKTYPE.ETHERNET, frame, 1);
  assert.deepEqual(padded.decoded?.payload, ok);
  assert.deepEqual(padded.messages[0].bytes, ok);
  // Without Content-Length the datagram's end is the message's end.
  const noCl = Buffer.from('MESSAGE sip:b@c SIP/2.0\r\nCall-ID: 1\r\n\r\nbody');
  assert.deepEqual(d.push(2, LINKTYPE.ETHERNET, udp4(noCl), 1).messages[0].bytes, noCl);
});

test('an INVITE in three IPv4 fragments, in and out of order, lists the three packets', () => {
  const seg = udp(5060, 5080, INV);
  const frags = fragmentIpv4({ ...A, proto: 17, id: 0x4242 }, seg, [200, 200, 0]).map((f) => ethernet(ETH_IPV4, f));
  assert.equal(frags.length, 3);
  for (const order of [[0, 1, 2], [2, 0, 1], [1, 2, 0]]) {
    const d = new Dissector();
    const seen: TransportMessage[] = [];
    order.forEach((i, k) => {
      const r = d.push(100 + k, LINKTYPE.ETHERNET, frags[i], 10);
      assert.notEqual(r.decoded?.fragment, null);
      seen.push(...r.messages);
      if (k < 2) assert.equal(r.messages.length, 0);
    });
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0].bytes, INV);
    assert.deepEqual(seen[0].packets, [100, 101, 102]);
    assert.equal(seen[0].sport, 5060);
    assert.equal(seen[0].dport, 5080);
    const st = d.stats();
    assert.equal(st.fragmentsReassembled, 1);
    assert.equal(st.fragmentsPending, 0);
  }
});

test('an INVITE in IPv6 fragments behind hop-by-hop and destination options', () => {
  const fragmentable = Buffer.concat([v6Options(17), udp(5060, 5060, INV)]);
  const pk = fragmentIpv6(A6, 60, 99, fragmentable, [256, 256, 0], true).map((f) => sll2(ETH_IPV6, f));
  const d = new Dissector();
  assert.equal(d.push(0, LINKTYPE.LINUX_SLL2, pk[1], 5).messages.length, 0);
  assert.equal(d.push(1, LINKTYPE.LINUX_SLL2, pk[2], 5).messages.length, 0);
  const r = d.push(2, LINKTYPE.LINUX_SLL2, pk[0], 5);
  assert.equal(r.messages.length, 1);
  assert.deepEqual(r.messages[0].bytes, INV);
  assert.deepEqual(r.messages[0].packets, [0, 1, 2]);
  assert.equal(r.messages[0].src, '2001:db8:0:1::10');
});

test('SIP over TCP through the dissector, including a segment rebuilt from IP fragments', () => {
  const d = new Dissector();
  const c = { sport: 40001, dport: 5060 };
  const seg = (seq: number, data: Buffer, flags: number = TCP_FLAG.ACK | TCP_FLAG.PSH) =>
    ethernet(ETH_IPV4, ipv4({ ...A, proto: 6 }, tcp({ ...c, seq, flags }, data)), { vlans: [{ vid: 10 }] });
  d.push(0, LINKTYPE.ETHERNET, seg(1000, Buffer.alloc(0), TCP_FLAG.SYN), 1);
  // Pure ACKs cost nothing and appear nowhere.
  d.push(1, LINKTYPE.ETHERNET, seg(1001, Buffer.alloc(0), TCP_FLAG.ACK), 1);
  assert.equal(d.push(2, LINKTYPE.ETHERNET, seg(1001, INV.subarray(0, 300)), 1).messages.length, 0);
  // The rest of the INVITE plus a whole 200 OK, fragmented at the IP layer.
  const okMsg = sipResponse();
  const big = tcp({ ...c, seq: 1301, flags: TCP_FLAG.ACK }, Buffer.concat([INV.subarray(300), okMsg]));
  const frags = fragmentIpv4({ ...A, proto: 6, id: 7 }, big, [400, 0]).map((f) => ethernet(ETH_IPV4, f));
  assert.equal(d.push(3, LINKTYPE.ETHERNET, frags[1], 1).messages.length, 0);
  const r = d.push(4, LINKTYPE.ETHERNET, frags[0], 1);
  assert.deepEqual(r.messages.map((m) => m.bytes), [INV, okMsg]);
  assert.deepEqual(r.messages[0].packets, [2, 3, 4]);
  assert.deepEqual(r.messages[1].packets, [3, 4]);
  assert.equal(r.messages[0].proto, 6);
  assert.equal(d.stats().sipMessages, 2);
  assert.equal(d.stats().tcpFlows, 1);
});

test('text with a phone number on port 5060 is not a message, over UDP or TCP', () => {
  const d = new Dissector();
  const text = Buffer.from('Call +1 (555) 123-4567 to reach SIP/2.0 support 24x7\r\n\r\n');
  assert.equal(d.push(0, LINKTYPE.ETHERNET, udp4(text, 5060, 5060), 1).messages.length, 0);
  const t = ethernet(ETH_IPV4, ipv4({ ...A, proto: 6 }, tcp({ sport: 5060, dport: 5060, seq: 1 }, text)));
  assert.equal(d.push(1, LINKTYPE.ETHERNET, t, 1).messages.length, 0);
  assert.equal(d.stats().sipMessages, 0);
});

test('failures are returned and counted by reason; the empty messages array is shared and frozen', () => {
  const d = new Dissector();
  const a = d.push(0, 9999, Buffer.alloc(20), 1);
  assert.deepEqual([a.decoded, a.failure], [null, 'unsupported-link']);
  const b = d.push(1, LINKTYPE.ETHERNET, udp4(INV).subarray(0, 30), 1);
  assert.equal(b.failure, 'truncated');
  const c = d.push(2, LINKTYPE.RAW, Buffer.from([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]), 1);
  assert.equal(c.failure, 'bad-transport-header');
  assert.equal(a.messages, b.messages);
  assert.ok(Object.isFrozen(a.messages));
  const st = d.stats();
  assert.deepEqual(st.failures, { truncated: 1, 'unsupported-link': 1, 'bad-ip-header': 0, 'bad-transport-header': 1 });
  assert.equal(st.decoded, 0);
  assert.equal(st.packets, 3);
});

test('stats count pending and expired fragments and TCP gaps', () => {
  const d = new Dissector({ tcp: { holeTimeoutSec: 1 } });
  const f = fragmentIpv4({ ...A, proto: 17, id: 1 }, udp(1, 2, Buffer.alloc(64)), [32, 0]).map((x) => ethernet(ETH_IPV4, x));
  d.push(0, LINKTYPE.ETHERNET, f[0], 100);
  assert.equal(d.stats().fragmentsPending, 1);
  const t = (seq: number, data: Buffer) => nullLink(2, ipv4({ ...A, proto: 6 }, tcp({ sport: 9, dport: 5060, seq }, data)));
  d.push(1, LINKTYPE.NULL, t(1, INV.subarray(0, 100)), 200);
  d.push(2, LINKTYPE.NULL, t(1 + INV.length, sipResponse()), 200);
  const r = d.push(3, LINKTYPE.NULL, t(1 + INV.length + sipResponse().length, sipResponse()), 202);
  assert.equal(r.messages.length, 2);
  const st = d.stats();
  assert.equal(st.fragmentsPending, 0);
  assert.equal(st.fragmentsExpired, 1);
  assert.equal(st.tcpGaps, 1);
  assert.equal(st.sipMessages, 2);
});

test('every link type carries SIP through the dissector', () => {
  const ip4 = ipv4({ ...A, proto: 17 }, udp(5060, 5060, INV));
  const ip6 = ipv6({ ...A6, nextHeader: 17 }, udp(5060, 5060, INV));
  const frames: Array<[number, Buffer]> = [
    [LINKTYPE.ETHERNET, ethernet(ETH_IPV6, ip6, { vlans: [{ tpid: 0x88a8, vid: 5 }, { vid: 6 }] })],
    [LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ip4)],
    [LINKTYPE.LINUX_SLL2, sll2(ETH_IPV6, ip6)],
    [LINKTYPE.RAW, ip4],
    [LINKTYPE.IPV4, ip4],
    [LINKTYPE.IPV6, ip6],
    [LINKTYPE.NULL, nullLink(30, ip6, false)],
    [LINKTYPE.LOOP, Buffer.concat([Buffer.from([0, 0, 0, 24]), ip6])],
  ];
  const d = new Dissector();
  frames.forEach(([lt, f], i) => assert.deepEqual(d.push(i, lt, f, 1).messages.map((m) => m.bytes), [INV], `link ${lt}`));
});

test('fuzz: random and mutated frames never throw', () => {
  const rnd = prng(0x5151);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)];
  const sipTcp = (seq: number, data: Buffer, flags: number = TCP_FLAG.ACK) => ipv4({ ...A, proto: 6 }, tcp({ sport: 5060, dport: 5060, seq, flags }, data));
  const corpus: Array<[number, Buffer]> = [
    [LINKTYPE.ETHERNET, udp4(INV)],
    [LINKTYPE.ETHERNET, ethernet(ETH_IPV4, ipv4({ ...A, proto: 17, options: Buffer.alloc(8, 1) }, udp(1, 2, Buffer.alloc(10))), { vlans: [{ vid: 1 }, { tpid: 0x88a8, vid: 2 }] })],
    [LINKTYPE.ETHERNET, ethernet(ETH_IPV6, ipv6({ ...A6, nextHeader: 0 }, Buffer.concat([v6Options(43), v6Options(60, 2), v6Options(6), tcp({ sport: 1, dport: 5060, seq: 5 }, INV)])))],
    ...fragmentIpv4({ ...A, proto: 17, id: 3 }, udp(5060, 5060, INV), [200, 200, 0]).map((f): [number, Buffer] => [LINKTYPE.RAW, f]),
    ...fragmentIpv6(A6, 17, 8, udp(5060, 5060, INV), [256, 0], true).map((f): [number, Buffer] => [LINKTYPE.IPV6, f]),
    ...fragmentIpv4({ ...A, proto: 6, id: 4 }, tcp({ sport: 5060, dport: 5060, seq: 100 }, INV), [296, 0]).map((f): [number, Buffer] => [LINKTYPE.RAW, f]),
    [LINKTYPE.RAW, sipTcp(99, Buffer.alloc(0), TCP_FLAG.SYN)],
    [LINKTYPE.RAW, sipTcp(100, INV.subarray(0, 200))],
    [LINKTYPE.RAW, sipTcp(300, INV.subarray(200))],
    [LINKTYPE.RAW, sipTcp(100 + INV.length, sipResponse(), TCP_FLAG.ACK | TCP_FLAG.FIN)],
    [LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ipv4({ ...A, proto: 1 }, Buffer.alloc(16)))],
    [LINKTYPE.LINUX_SLL2, sll2(ETH_IPV6, ipv6({ ...A6, nextHeader: 58 }, Buffer.alloc(16)))],
    [LINKTYPE.NULL, nullLink(2, ipv4({ ...A, proto: 17 }, udp(5060, 5060, sipResponse())))],
    [LINKTYPE.LOOP, Buffer.concat([Buffer.from([0, 0, 0, 28]), ipv6({ ...A6, nextHeader: 17 }, udp(5060, 5060, INV))])],
  ];
  const linkTypes = [0, 1, 101, 108, 113, 228, 229, 276, 7];
  // Small bounds so the fuzz also drives eviction, expiry and gap handling.
  const d = new Dissector({ fragments: { maxPending: 16, timeoutSec: 2 }, tcp: { maxFlows: 32, maxFlowBytes: 4096, holeTimeoutSec: 1, idleSec: 5 } });
  const reasons = new Set(['truncated', 'unsupported-link', 'bad-ip-header', 'bad-transport-header']);
  let decoded = 0;
  for (let i = 0; i < 20000; i++) {
    let lt: number;
    let frame: Buffer;
    if (i % 10 === 0) {
      lt = pick(linkTypes);
      frame = Buffer.alloc(Math.floor(rnd() * 120));
      for (let j = 0; j < frame.length; j++) frame[j] = Math.floor(rnd() * 256);
    } else {
      const [clt, base] = pick(corpus);
      lt = rnd() < 0.05 ? pick(linkTypes) : clt;
      frame = Buffer.from(base);
      const flips = Math.floor(rnd() * 4);
      for (let j = 0; j < flips; j++) {
        // Mostly the headers, where the lengths and offsets are.
        const p = rnd() < 0.8 ? Math.floor(rnd() * Math.min(frame.length, 80)) : Math.floor(rnd() * frame.length);
        frame[p] = rnd() < 0.3 ? pick([0, 0xff, 0x40, 0x45, 0x60, 0x81, 0x2c, 0x11, 0x06, 0x0d, 0x0a]) : Math.floor(rnd() * 256);
      }
      if (rnd() < 0.2) frame = frame.subarray(0, Math.floor(rnd() * frame.length));
    }
    const r = d.push(i, lt, frame, 1000 + Math.floor(i / 50));
    if (r.decoded === null) assert.ok(r.failure !== null && reasons.has(r.failure));
    else decoded++;
    for (const m of r.messages) {
      assert.ok(m.bytes.length > 0);
      assert.ok(m.packets.length > 0 && m.packets[m.packets.length - 1] <= i);
    }
    const p = decodePacket(lt, frame);
    assert.ok(typeof p === 'string' ? reasons.has(p) : p.payload.length <= frame.length);
  }
  // The mutations left most frames decodable, so the deep paths ran.
  assert.ok(decoded > 10000, `decoded ${decoded}`);
  const st = d.stats();
  assert.equal(st.packets, 20000);
  assert.ok(st.sipMessages > 0);
});

test('a packet the capture cut decodes to what it holds, marked; the same lengths on an uncut packet are refused', () => {
  const whole = udp4(INV);
  const cut = whole.subarray(0, whole.length - 40);
  assert.equal(decodePacket(LINKTYPE.ETHERNET, cut), 'truncated');
  const p = decodePacket(LINKTYPE.ETHERNET, cut, true);
  assert.ok(typeof p !== 'string');
  assert.equal(p.truncated, true);
  assert.equal(p.sport, 5060);
  assert.deepEqual(p.payload, INV.subarray(0, INV.length - 40));
  // A UDP length past an IP datagram that is all there lies, whatever the record says.
  const udpLies = ethernet(ETH_IPV4, ipv4({ ...A, proto: 17 }, udp(5060, 5060, INV, 8 + INV.length + 100)));
  assert.equal(decodePacket(LINKTYPE.ETHERNET, udpLies), 'bad-transport-header');
  assert.equal(decodePacket(LINKTYPE.ETHERNET, udpLies, true), 'bad-transport-header');
  // A UDP length that ends before the cut: the datagram is whole.
  const w = decodePacket(LINKTYPE.ETHERNET, whole, true);
  assert.equal((w as { truncated: boolean }).truncated, false);
  // IPv6 too; and a cut inside the IP header is still a failure.
  const v6 = ethernet(ETH_IPV6, ipv6({ ...A6, nextHeader: 17 }, udp(5060, 5060, INV)));
  const v6cut = decodePacket(LINKTYPE.ETHERNET, v6.subarray(0, v6.length - 100), true);
  assert.equal((v6cut as { truncated: boolean }).truncated, true);
  assert.equal(decodePacket(LINKTYPE.ETHERNET, whole.subarray(0, 14 + 12), true), 'truncated');

  const d = new Dissector();
  const r = d.push(0, LINKTYPE.ETHERNET, cut, 1, true);
  assert.equal(r.messages.length, 1);
  assert.equal(r.messages[0].truncated, true);
  assert.equal(d.push(1, LINKTYPE.ETHERNET, whole, 1, true).messages[0].truncated, false);
  // A cut fragment still completes its datagram, which is given up to the first byte the capture lost, marked.
  const frags = fragmentIpv4({ ...A, proto: 17, id: 7 }, udp(5060, 5060, INV), [256, INV.length + 8 - 256]).map((f) => ethernet(ETH_IPV4, f));
  assert.equal(d.push(2, LINKTYPE.ETHERNET, frags[0].subarray(0, 100), 1, true).failure, null);
  const m = d.push(3, LINKTYPE.ETHERNET, frags[1], 1).messages;
  assert.equal(m.length, 1);
  assert.equal(m[0].truncated, true);
  assert.deepEqual(m[0].bytes, INV.subarray(0, 100 - 14 - 20 - 8));
  assert.deepEqual(m[0].packets, [2, 3]);
  assert.equal(d.stats().fragmentsCut, 1);
  assert.equal(d.stats().fragmentsPending, 0);
});

test('a cut TCP segment: the message it leaves incomplete is emitted as captured, marked, and the stream resyncs on the next message', () => {
  const d = new Dissector();
  const bye = Buffer.from('BYE sip:bob@example.com SIP/2.0\r\nCall-ID: next@pc33\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n', 'latin1');
  const resp = sipResponse(200, 'OK', 'first@pc33');
  const inv = sipInvite('cut-tcp@pc33');
  const seg = (seq: number, data: Buffer) => ethernet(ETH_IPV4, ipv4({ ...A, proto: 6 }, tcp({ sport: 5060, dport: 5060, seq }, data)));
  // A whole message, then an INVITE the capture cut in its body.
  const first = seg(1000, Buffer.concat([resp, inv]));
  const r = d.push(0, LINKTYPE.ETHERNET, first.subarray(0, first.length - 60), 1, true);
  assert.deepEqual(r.messages.map((m) => [m.truncated, m.bytes.length]), [[false, resp.length], [true, inv.length - 60]]);
  assert.ok(r.messages[1].bytes.toString('latin1').includes('Call-ID: cut-tcp@pc33'));
  const next = d.push(1, LINKTYPE.ETHERNET, seg(1000 + resp.length + inv.length, bye), 2);
  assert.equal(next.messages.length, 1);
  assert.equal(next.messages[0].truncated, false);
  assert.ok(next.messages[0].bytes.equals(bye));
});
