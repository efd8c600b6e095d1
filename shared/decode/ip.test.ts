import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LINKTYPE } from '../pcap/types';
import { decodeReassembled, formatIPv4, formatIPv6 } from './ip';
import { decodePacket } from './packet';
import type { DecodedPacket, DecodeFailure } from './types';
import {
  ETH_IPV4, ETH_IPV6, ethernet, ipv4, ipv6, ipv6Bytes, prng, sll, tcp, TCP_FLAG, udp, v6Auth, v6Fragment, v6Options,
} from '../../test/support/packets';

function ok(r: DecodedPacket | DecodeFailure): DecodedPacket {
  if (typeof r === 'string') assert.fail(`decode failed: ${r}`);
  return r;
}

const A = { src: '192.0.2.1', dst: '198.51.100.2' };
const A6 = { src: '2001:db8::1', dst: 'fe80::2' };

test('IPv4 dotted quad', () => {
  assert.equal(formatIPv4(Buffer.from([0, 0, 0, 0]), 0), '0.0.0.0');
  assert.equal(formatIPv4(Buffer.from([9, 255, 10, 1, 100]), 1), '255.10.1.100');
});

test('IPv6 text follows RFC 5952', () => {
  const cases: Array<[string, string]> = [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    // A single zero group is not compressed.
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    // The longest run wins; on a tie, the first.
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['ABCD:EF01:2345:6789:ABCD:EF01:2345:6789', 'abcd:ef01:2345:6789:abcd:ef01:2345:6789'],
    ['fe80:0:0:0:0200:5eff:fe00:0001', 'fe80::200:5eff:fe00:1'],
    ['0:0:0:0:0:ffff:c000:0280', '::ffff:192.0.2.128'],
    ['0:0:0:0:ffff:ffff:c000:0280', '::ffff:ffff:c000:280'],
    ['0:0:0:0:0:0:c000:0280', '::c000:280'],
    ['00f0:0f00:0:0:0:0:0:0', 'f0:f00::'],
  ];
  for (const [input, want] of cases) {
    const b = Buffer.concat([Buffer.from([0xaa]), ipv6Bytes(input)]);
    assert.equal(formatIPv6(b, 1), want, input);
  }
});

test('IPv6 text agrees with the WHATWG URL serializer on random addresses', () => {
  const rnd = prng(6);
  const b = Buffer.alloc(16);
  for (let i = 0; i < 3000; i++) {
    // Mostly zero groups, so runs of every length and position come up.
    for (let g = 0; g < 8; g++) b.writeUInt16BE(rnd() < 0.5 ? 0 : Math.floor(rnd() * 65536) >> Math.floor(rnd() * 16), 2 * g);
    const text = formatIPv6(b, 0);
    if (text.startsWith('::ffff:') && text.includes('.')) continue;
    assert.equal(text, new URL(`http://[${text}]/`).hostname.slice(1, -1));
    assert.deepEqual(ipv6Bytes(text), b);
  }
});

test('IPv4 with options; UDP length and total length trim Ethernet padding', () => {
  const data = Buffer.from('hi');
  const frame = ethernet(ETH_IPV4, ipv4({ ...A, proto: 17, options: Buffer.from([1, 1, 1, 0]) }, udp(1, 2, data)), { padTo: 60 });
  assert.equal(frame.length, 60);
  const p = ok(decodePacket(LINKTYPE.ETHERNET, frame));
  assert.equal(p.src, A.src);
  assert.equal(p.dst, A.dst);
  assert.deepEqual(p.payload, data);
  assert.equal(p.fragment, null);
  // UDP length shorter than the IP payload: the rest is not data.
  const q = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 17 }, udp(1, 2, Buffer.from('hello'), 10))));
  assert.deepEqual(q.payload, Buffer.from('he'));
});

test('IPv4 header errors', () => {
  const good = ipv4({ ...A, proto: 17 }, udp(1, 2, Buffer.from('x')));
  const bad = (f: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    f(b);
    return decodePacket(LINKTYPE.RAW, b);
  };
  assert.equal(bad((b) => (b[0] = 0x44)), 'bad-ip-header'); // IHL 16
  assert.equal(bad((b) => (b[0] = 0x4f)), 'bad-ip-header'); // IHL 60 > total length
  assert.equal(bad((b) => b.writeUInt16BE(19, 2)), 'bad-ip-header');
  const v6in4 = Buffer.from(good);
  v6in4[0] = 0x65;
  assert.equal(decodePacket(LINKTYPE.IPV4, v6in4), 'bad-ip-header');
  assert.equal(decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, v6in4)), 'bad-ip-header');
  assert.equal(bad((b) => b.writeUInt16BE(good.length + 1, 2)), 'truncated');
  assert.equal(bad((b) => b.writeUInt16BE(3, 24)), 'bad-transport-header'); // UDP length < 8
  assert.equal(bad((b) => b.writeUInt16BE(100, 24)), 'bad-transport-header'); // UDP length > IP payload
  assert.equal(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 17 }, Buffer.alloc(7))), 'bad-transport-header');
  assert.equal(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 6 }, Buffer.alloc(19))), 'bad-transport-header');
  const badOff = tcp({ sport: 1, dport: 2, seq: 1 }, Buffer.alloc(4));
  badOff[12] = 0x40; // data offset 16
  assert.equal(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 6 }, badOff)), 'bad-transport-header');
  badOff[12] = 0x70; // data offset 28 > 24 bytes
  assert.equal(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 6 }, badOff)), 'bad-transport-header');
});

test('TCP header: options, seq, ack, flags', () => {
  const seg = tcp(
    { sport: 5060, dport: 40000, seq: 0xfffffff0, ack: 0x80000001, flags: TCP_FLAG.PSH | TCP_FLAG.ACK | TCP_FLAG.FIN, options: Buffer.from([1, 1, 1, 1, 2, 4, 5, 0xb4]) },
    Buffer.from('data'),
  );
  const p = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 6 }, seg)));
  assert.equal(p.proto, 6);
  assert.equal(p.sport, 5060);
  assert.equal(p.dport, 40000);
  assert.deepEqual(p.tcp, { seq: 0xfffffff0, ack: 0x80000001, flags: 0x19 });
  assert.deepEqual(p.payload, Buffer.from('data'));
});

test('ICMP and ICMPv6 payload is the ICMP message', () => {
  const echo = Buffer.from([8, 0, 0, 0, 0, 1, 0, 1, 0x61, 0x62]);
  const p = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 1 }, echo)));
  assert.equal(p.proto, 1);
  assert.equal(p.sport, 0);
  assert.deepEqual(p.payload, echo);
  const q = ok(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 0 }, Buffer.concat([v6Options(58), echo]))));
  assert.equal(q.proto, 58);
  assert.deepEqual(q.payload, echo);
});

test('IPv4 fragments: offset, more flag, ports only on the first', () => {
  const first = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 17, id: 777, more: true }, udp(5060, 5061, Buffer.alloc(16), 100))));
  assert.deepEqual(first.fragment, { id: 777, offset: 0, more: true, proto: 17, length: 24 });
  assert.equal(first.sport, 5060);
  assert.equal(first.dport, 5061);
  assert.equal(first.payload.length, 24);
  const middle = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 17, id: 777, more: true, fragOffset: 24 }, Buffer.alloc(40))));
  assert.deepEqual(middle.fragment, { id: 777, offset: 24, more: true, proto: 17, length: 40 });
  assert.equal(middle.sport, 0);
  assert.equal(middle.payload.length, 40);
  const last = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 17, id: 777, fragOffset: 64, dontFragment: false }, Buffer.alloc(36))));
  assert.deepEqual(last.fragment, { id: 777, offset: 64, more: false, proto: 17, length: 36 });
  // DF alone is not a fragment.
  assert.equal(ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 17, dontFragment: true }, udp(1, 2, Buffer.alloc(0))))).fragment, null);
});

test('IPv6 extension headers: hop-by-hop, routing, destination options, AH; ESP and no-next stop', () => {
  const data = Buffer.from('payload');
  const chain = Buffer.concat([v6Options(43), v6Options(60, 2), v6Options(51), v6Auth(17), udp(5060, 5060, data)]);
  const p = ok(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 0 }, chain)));
  assert.equal(p.proto, 17);
  assert.equal(p.sport, 5060);
  assert.deepEqual(p.payload, data);
  assert.equal(p.src, '2001:db8::1');
  assert.equal(p.dst, 'fe80::2');

  const esp = Buffer.concat([v6Options(50), Buffer.from([0, 0, 1, 0, 0, 0, 0, 1, 9, 9])]);
  const e = ok(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 0 }, esp)));
  assert.equal(e.proto, 50);
  assert.equal(e.payload.length, 10);

  const none = ok(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 60 }, Buffer.concat([v6Options(59), Buffer.alloc(4)]))));
  assert.equal(none.proto, 59);
  assert.equal(none.payload.length, 0);

  // An extension header running past the payload length.
  const long = v6Options(17, 2).subarray(0, 8);
  long[1] = 1;
  assert.equal(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 0 }, long)), 'bad-ip-header');
  // Payload length past the capture.
  assert.equal(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 17, payloadLength: 100 }, udp(1, 2, Buffer.alloc(0)))), 'truncated');
  // Payload length shorter than the capture: the rest is trailer.
  const trailer = Buffer.concat([ipv6({ ...A6, nextHeader: 17 }, udp(1, 2, data)), Buffer.alloc(6)]);
  assert.deepEqual(ok(decodePacket(LINKTYPE.RAW, trailer)).payload, data);
});

test('IPv6 fragments: first fragment past hop-by-hop, later fragments, atomic fragments', () => {
  const seg = udp(5060, 5062, Buffer.alloc(100), 108);
  const first = ok(
    decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV6, ipv6({ ...A6, nextHeader: 0 }, Buffer.concat([v6Options(44), v6Fragment(60, 0, true, 0xdeadbeef), v6Options(17), seg.subarray(0, 40)])))),
  );
  assert.deepEqual(first.fragment, { id: 0xdeadbeef, offset: 0, more: true, proto: 60, length: 48 });
  assert.equal(first.proto, 17);
  assert.equal(first.sport, 5060);
  assert.equal(first.dport, 5062);
  assert.equal(first.payload.length, 48);

  const later = ok(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 44 }, Buffer.concat([v6Fragment(60, 48, false, 0xdeadbeef), seg.subarray(40)]))));
  assert.deepEqual(later.fragment, { id: 0xdeadbeef, offset: 48, more: false, proto: 60, length: 68 });
  assert.equal(later.sport, 0);
  assert.equal(later.payload.length, 68);

  const atomic = ok(decodePacket(LINKTYPE.RAW, ipv6({ ...A6, nextHeader: 44 }, Buffer.concat([v6Fragment(17, 0, false, 5), udp(1, 2, Buffer.from('x'))]))));
  assert.equal(atomic.fragment, null);
  assert.equal(atomic.proto, 17);
  assert.deepEqual(atomic.payload, Buffer.from('x'));

  // The reassembled datagram's headers are walked the same way.
  const whole = Buffer.concat([v6Options(17), udp(5060, 5062, Buffer.from('abc'))]);
  const r = ok(decodeReassembled(later, 60, whole));
  assert.equal(r.fragment, null);
  assert.equal(r.proto, 17);
  assert.equal(r.sport, 5060);
  assert.deepEqual(r.payload, Buffer.from('abc'));
  assert.equal(decodeReassembled(later, 60, whole.subarray(0, 4)), 'bad-ip-header');
});

test('reassembled IPv4 datagram decodes its transport header', () => {
  const frag = ok(decodePacket(LINKTYPE.RAW, ipv4({ ...A, proto: 6, more: false, fragOffset: 8 }, Buffer.alloc(8))));
  const seg = tcp({ sport: 5060, dport: 5061, seq: 42, flags: TCP_FLAG.ACK }, Buffer.from('abc'));
  const r = ok(decodeReassembled(frag, 6, seg));
  assert.equal(r.ipVersion, 4);
  assert.equal(r.src, A.src);
  assert.deepEqual(r.tcp, { seq: 42, ack: 0, flags: TCP_FLAG.ACK });
  assert.deepEqual(r.payload, Buffer.from('abc'));
  assert.equal(decodeReassembled(frag, 6, seg.subarray(0, 10)), 'bad-transport-header');
});

test('a prefix of a packet, at every length, fails and never throws', () => {
  const sip = Buffer.from('INVITE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n');
  const frames: Array<[number, Buffer]> = [
    [LINKTYPE.ETHERNET, ethernet(ETH_IPV4, ipv4({ ...A, proto: 17, options: Buffer.alloc(4, 1) }, udp(5060, 5060, sip)))],
    [LINKTYPE.ETHERNET, ethernet(ETH_IPV6, ipv6({ ...A6, nextHeader: 0 }, Buffer.concat([v6Options(6), tcp({ sport: 1, dport: 5060, seq: 9 }, sip)])), { vlans: [{ vid: 3 }, { vid: 4 }] })],
    [LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ipv4({ ...A, proto: 17 }, udp(5060, 5060, Buffer.from('SIP/2.0 200 OK\r\n\r\n'))))],
    [LINKTYPE.LINUX_SLL2, Buffer.concat([Buffer.from([0x86, 0xdd]), Buffer.alloc(18), ipv6({ ...A6, nextHeader: 44 }, Buffer.concat([v6Fragment(17, 8, true, 1), Buffer.alloc(16)]))])],
    [LINKTYPE.RAW, ipv4({ ...A, proto: 6 }, tcp({ sport: 1, dport: 2, seq: 3, options: Buffer.alloc(12) }, sip))],
    [LINKTYPE.NULL, Buffer.concat([Buffer.from([30, 0, 0, 0]), ipv6({ ...A6, nextHeader: 58 }, Buffer.alloc(8))])],
    [LINKTYPE.LOOP, Buffer.concat([Buffer.from([0, 0, 0, 2]), ipv4({ ...A, proto: 1 }, Buffer.alloc(8))])],
  ];
  for (const [lt, frame] of frames) {
    assert.equal(typeof decodePacket(lt, frame), 'object');
    for (let n = 0; n < frame.length; n++) {
      const r = decodePacket(lt, frame.subarray(0, n));
      assert.equal(typeof r, 'string', `link ${lt}, ${n} of ${frame.length} bytes`);
    }
  }
});

