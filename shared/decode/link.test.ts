import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LINKTYPE } from '../pcap/types';
import { decodePacket } from './packet';
import type { DecodedPacket, DecodeFailure } from './types';
import {
  ETH_ARP, ETH_IPV4, ETH_IPV6, ethernet, ipv4, ipv6, loopLink, nullLink, sll, sll2, udp,
} from '../../test/support/packets';

const sipText = Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n');
const v4 = ipv4({ src: '10.0.0.1', dst: '10.0.0.2', proto: 17 }, udp(5060, 5080, sipText));
const v6 = ipv6({ src: '2001:db8::1', dst: '2001:db8::2', nextHeader: 17 }, udp(5060, 5080, sipText));

function ok(r: DecodedPacket | DecodeFailure): DecodedPacket {
  if (typeof r === 'string') assert.fail(`decode failed: ${r}`);
  return r;
}

function checkV4(p: DecodedPacket): void {
  assert.equal(p.ipVersion, 4);
  assert.equal(p.src, '10.0.0.1');
  assert.equal(p.dst, '10.0.0.2');
  assert.equal(p.proto, 17);
  assert.equal(p.sport, 5060);
  assert.equal(p.dport, 5080);
  assert.deepEqual(p.payload, sipText);
}

function checkV6(p: DecodedPacket): void {
  assert.equal(p.ipVersion, 6);
  assert.equal(p.src, '2001:db8::1');
  assert.equal(p.dst, '2001:db8::2');
  assert.equal(p.sport, 5060);
  assert.deepEqual(p.payload, sipText);
}

test('Ethernet II', () => {
  const p = ok(decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, v4)));
  checkV4(p);
  assert.deepEqual(p.vlans, []);
  checkV6(ok(decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV6, v6))));
});

test('802.1Q, 802.1ad and 0x9100 QinQ tag stacks', () => {
  const one = ok(decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, v4, { vlans: [{ vid: 100, pcp: 5 }] })));
  checkV4(one);
  assert.deepEqual(one.vlans, [100]);
  const qinq = ok(decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV6, v6, { vlans: [{ tpid: 0x88a8, vid: 4000 }, { vid: 7 }] })));
  checkV6(qinq);
  assert.deepEqual(qinq.vlans, [4000, 7]);
  const old = ok(
    decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, v4, { vlans: [{ tpid: 0x9100, vid: 1 }, { tpid: 0x9100, vid: 2 }, { vid: 4095 }] })),
  );
  checkV4(old);
  assert.deepEqual(old.vlans, [1, 2, 4095]);
  // A tag stack cut short.
  const cut = ethernet(ETH_IPV4, Buffer.alloc(0), { vlans: [{ vid: 1 }, { vid: 2 }] }).subarray(0, 20);
  assert.equal(decodePacket(LINKTYPE.ETHERNET, cut), 'truncated');
});

test('non-IP frames decode with ipVersion 0', () => {
  const arp = Buffer.alloc(28, 1);
  const p = ok(decodePacket(LINKTYPE.ETHERNET, ethernet(ETH_ARP, arp, { vlans: [{ vid: 9 }] })));
  assert.equal(p.ipVersion, 0);
  assert.equal(p.proto, 0);
  assert.equal(p.src, '');
  assert.deepEqual(p.vlans, [9]);
  assert.deepEqual(p.payload, arp);
  // 802.3 frame: a length where the ethertype would be.
  assert.equal(ok(decodePacket(LINKTYPE.ETHERNET, ethernet(46, Buffer.alloc(46)))).ipVersion, 0);
});

test('Linux cooked SLL and SLL2, with and without a VLAN tag', () => {
  checkV4(ok(decodePacket(LINKTYPE.LINUX_SLL, sll(ETH_IPV4, v4))));
  checkV6(ok(decodePacket(LINKTYPE.LINUX_SLL, sll(ETH_IPV6, v6))));
  checkV4(ok(decodePacket(LINKTYPE.LINUX_SLL2, sll2(ETH_IPV4, v4))));
  checkV6(ok(decodePacket(LINKTYPE.LINUX_SLL2, sll2(ETH_IPV6, v6))));
  const tag = Buffer.from([0x00, 0x2a, 0x08, 0x00]);
  const tagged = ok(decodePacket(LINKTYPE.LINUX_SLL, sll(0x8100, Buffer.concat([tag, v4]))));
  checkV4(tagged);
  assert.deepEqual(tagged.vlans, [42]);
  assert.equal(decodePacket(LINKTYPE.LINUX_SLL, sll(ETH_IPV4, v4).subarray(0, 15)), 'truncated');
  assert.equal(decodePacket(LINKTYPE.LINUX_SLL2, sll2(ETH_IPV4, v4).subarray(0, 19)), 'truncated');
});

test('RAW, IPV4 and IPV6 link types', () => {
  checkV4(ok(decodePacket(LINKTYPE.RAW, v4)));
  checkV6(ok(decodePacket(LINKTYPE.RAW, v6)));
  checkV4(ok(decodePacket(LINKTYPE.IPV4, v4)));
  checkV6(ok(decodePacket(LINKTYPE.IPV6, v6)));
  assert.equal(decodePacket(LINKTYPE.RAW, Buffer.from([0x50, 0, 0, 0])), 'bad-ip-header');
  assert.equal(decodePacket(LINKTYPE.IPV4, v6), 'bad-ip-header');
  assert.equal(decodePacket(LINKTYPE.IPV6, v4), 'bad-ip-header');
  assert.equal(decodePacket(LINKTYPE.RAW, Buffer.alloc(0)), 'truncated');
});

test('NULL in either byte order and LOOP, with every AF_INET6 value', () => {
  checkV4(ok(decodePacket(LINKTYPE.NULL, nullLink(2, v4, true))));
  checkV4(ok(decodePacket(LINKTYPE.NULL, nullLink(2, v4, false))));
  for (const af of [10, 24, 28, 30]) {
    checkV6(ok(decodePacket(LINKTYPE.NULL, nullLink(af, v6, true))));
    checkV6(ok(decodePacket(LINKTYPE.NULL, nullLink(af, v6, false))));
    checkV6(ok(decodePacket(LINKTYPE.LOOP, loopLink(af, v6))));
  }
  checkV4(ok(decodePacket(LINKTYPE.LOOP, loopLink(2, v4))));
  // An unknown family is not IP.
  assert.equal(ok(decodePacket(LINKTYPE.NULL, nullLink(7, v4))).ipVersion, 0);
  // LOOP is network order only: a little-endian 2 is not AF_INET.
  assert.equal(ok(decodePacket(LINKTYPE.LOOP, nullLink(2, v4, true))).ipVersion, 0);
  assert.equal(decodePacket(LINKTYPE.NULL, Buffer.from([2, 0, 0])), 'truncated');
  assert.equal(decodePacket(LINKTYPE.LOOP, Buffer.from([0, 0, 0])), 'truncated');
});

test('unknown link types fail as unsupported-link', () => {
  assert.equal(decodePacket(105, ethernet(ETH_IPV4, v4)), 'unsupported-link');
  assert.equal(decodePacket(-1, Buffer.alloc(0)), 'unsupported-link');
});
