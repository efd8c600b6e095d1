import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultCaptureFilter } from './filter';
import { loadNative, PcapCapture } from './pcap-native';
import { isRoot, NEEDS_ROOT } from '../../test/support/capture';

const ETHERNET = 1;

function eth(type: number, payload: Buffer, vlan?: number): Buffer {
  const tag = vlan === undefined ? Buffer.alloc(0) : Buffer.from([0x81, 0x00, (vlan >> 8) & 0x0f, vlan & 0xff]);
  const t = Buffer.alloc(2);
  t.writeUInt16BE(type);
  return Buffer.concat([Buffer.alloc(12, 0x02), tag, t, payload]);
}

function ipv4(proto: number, payload: Buffer, frag: { offset8?: number; more?: boolean } = {}): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE((frag.more ? 0x2000 : 0) | (frag.offset8 ?? 0), 6);
  h[8] = 64;
  h[9] = proto;
  h.writeUInt32BE(0x0a000001, 12);
  h.writeUInt32BE(0x0a000002, 16);
  return Buffer.concat([h, payload]);
}

function ipv6(next: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = 64;
  h[23] = 1;
  h[39] = 2;
  return Buffer.concat([h, payload]);
}

function udp(src: number, dst: number, body = 'OPTIONS sip:a SIP/2.0\r\n\r\n'): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(src, 0);
  h.writeUInt16BE(dst, 2);
  h.writeUInt16BE(8 + body.length, 4);
  return Buffer.concat([h, Buffer.from(body)]);
}

function tcp(src: number, dst: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(src, 0);
  h.writeUInt16BE(dst, 2);
  h[12] = 0x50;
  h[13] = 0x18;
  return Buffer.concat([h, Buffer.from('INVITE sip:b SIP/2.0\r\n')]);
}

const v4 = (proto: number, p: Buffer, frag?: { offset8?: number; more?: boolean }, vlan?: number) => eth(0x0800, ipv4(proto, p, frag), vlan);
const v6 = (next: number, p: Buffer) => eth(0x86dd, ipv6(next, p));

const CASES: Array<[string, Buffer, boolean]> = [
  ['UDP to 5060', v4(17, udp(40000, 5060)), true],
  ['UDP to 5299, top of the range', v4(17, udp(40000, 5299)), true],
  ['UDP to 5300', v4(17, udp(40000, 5300)), false],
  ['UDP from 15060 (replies)', v4(17, udp(15060, 40000)), true],
  ['UDP to 15300', v4(17, udp(40000, 15300)), false],
  ['TCP to 5061', v4(6, tcp(40000, 5061)), true],
  ['TCP to 80', v4(6, tcp(40000, 80)), false],
  ['UDP between high ports', v4(17, udp(40000, 40001)), false],
  ['IPv6 UDP to 5060', v6(17, udp(40000, 5060)), true],
  ['IPv6 TCP to 15299', v6(6, tcp(40000, 15299)), true],
  ['IPv6 UDP to 8000', v6(17, udp(40000, 8000)), false],
  ['ICMP port unreachable', v4(1, Buffer.from([3, 3, 0, 0, 0, 0, 0, 0])), true],
  ['ICMPv6 packet too big', v6(58, Buffer.from([2, 0, 0, 0, 0, 0, 5, 0x78])), true],
  ['first fragment of an INVITE to 5060', v4(17, udp(40000, 5060), { more: true }), true],
  ['first fragment of UDP to 9999', v4(17, udp(40000, 9999), { more: true }), false],
  ['non-first IPv4 fragment (no ports in it)', v4(17, Buffer.from('tail of a big INVITE'), { offset8: 185 }), true],
  ['last IPv4 fragment', v4(17, Buffer.from('end'), { offset8: 370, more: false }), true],
  ['IPv6 fragment', v6(44, Buffer.concat([Buffer.from([17, 0, 0x05, 0xc8, 0, 0, 0, 1]), Buffer.from('tail')])), true],
  ['802.1Q UDP to 5060', v4(17, udp(40000, 5060), undefined, 100), true],
  ['802.1Q UDP to 9999', v4(17, udp(40000, 9999), undefined, 100), false],
  ['802.1Q non-first fragment', v4(17, Buffer.from('tail'), { offset8: 185 }, 100), true],
  ['RTP-looking UDP to 20000 without RTP ranges', v4(17, udp(40000, 20000)), false],
  ['ARP', eth(0x0806, Buffer.alloc(28)), false],
];

test('the default filter keeps SIP, ICMP and every fragment, on plain and 802.1Q Ethernet, and nothing else', () => {
  const n = loadNative();
  const f = defaultCaptureFilter();
  const got = n.filterMatches(f, ETHERNET, CASES.map((c) => c[1]));
  const wrong = CASES.filter((c, i) => got[i] !== c[2]).map((c) => `${c[0]}: expected ${c[2] ? 'kept' : 'dropped'}`);
  assert.deepEqual(wrong, []);
});

test('RTP ranges add UDP (not TCP) on those ports; bad ranges are refused', () => {
  const n = loadNative();
  const f = defaultCaptureFilter({ rtpPortRanges: [[20000, 20999], [31000, 31000]] });
  assert.deepEqual(
    n.filterMatches(f, ETHERNET, [
      v4(17, udp(40000, 20000)),
      v4(17, udp(20999, 40000)),
      v4(17, udp(40000, 31000)),
      v4(17, udp(40000, 31001)),
      v4(6, tcp(40000, 20000)),
      v4(17, udp(40000, 5060)),
    ]),
    [true, true, true, false, false, true],
  );
  assert.throws(() => defaultCaptureFilter({ rtpPortRanges: [[30000, 20000]] }), /invalid RTP port range \[30000, 20000\]/);
  assert.throws(() => defaultCaptureFilter({ rtpPortRanges: [[0, 10]] }), /invalid RTP port range/);
  assert.throws(() => defaultCaptureFilter({ rtpPortRanges: [[1.5, 10]] }), /invalid RTP port range/);
});

test('without 802.1Q the filter compiles for Linux cooked and raw-IP links, where libpcap has no vlan', () => {
  const n = loadNative();
  assert.throws(() => n.compileFilter(defaultCaptureFilter(), 113), /no VLAN support/);
  const plain = defaultCaptureFilter({ vlan: false });
  for (const lt of [1, 113, 276, 101]) assert.ok(n.compileFilter(plain, lt) > 0, `link type ${lt}`);
  assert.ok(!plain.includes('vlan'));
});

test('the default filter installs on lo', (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const cap = new PcapCapture('lo', defaultCaptureFilter(), { snaplen: 65535, bufferBytes: 1 << 20, promisc: false, nanos: true });
  try {
    assert.equal(cap.linkType, ETHERNET);
    assert.equal(cap.linkTypeName, 'EN10MB');
    assert.deepEqual(cap.warnings, []);
  } finally {
    cap.close();
  }
});
