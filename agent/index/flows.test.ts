import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FLOW_KIND, FlowTable, FlowTableBuilder, decodeOrdinals, flowEntriesLength, payloadKind, payloadSsrc } from './flows';

test('flow table: entries and ordinal lists round-trip, large gaps included; a cut or lying list reads as corrupt', () => {
  const b = new FlowTableBuilder();
  const big = [0, 1, 127, 128, 16_383, 16_384, 2 ** 28 + 5, 2 ** 32 - 2];
  for (const ord of big) b.add(ord, 3, 4000, 7, 6000, FLOW_KIND.RTP, 0xdeadbeef, 100 + (ord % 7), ord % 1000);
  b.add(2, 7, 6000, 3, 4000, FLOW_KIND.RTCP, 0x01020304, 99, 5);
  b.add(3, 3, 4000, 7, 6000, FLOW_KIND.RTP, 0x0badf00d, 101, 0); // same 5-tuple, another SSRC: another flow
  const body = b.encode()!;
  const t = new FlowTable(body.subarray(0, flowEntriesLength(body)));
  assert.equal(t.length, 3);
  const list = (i: number) => body.subarray(t.list(i).offset, t.list(i).offset + t.list(i).length);
  assert.deepEqual([t.src(0), t.sport(0), t.dst(0), t.dport(0), t.kind(0), t.ssrc(0), t.packets(0)], [3, 4000, 7, 6000, FLOW_KIND.RTP, 0xdeadbeef, big.length]);
  assert.deepEqual([...decodeOrdinals(list(0), t.packets(0), 2 ** 32)!], big);
  assert.deepEqual(t.first(0), [100, 0]);
  assert.deepEqual(t.last(0), [104, 384], "ordinal 16384: 100 + 16384 % 7 s, 384 ns");
  assert.deepEqual([t.src(1), t.kind(1), t.ssrc(1), [...decodeOrdinals(list(1), 1, 10)!]], [7, FLOW_KIND.RTCP, 0x01020304, [2]]);
  assert.deepEqual([t.ssrc(2), [...decodeOrdinals(list(2), 1, 10)!]], [0x0badf00d, [3]]);

  assert.equal(decodeOrdinals(list(0).subarray(0, list(0).length - 1), big.length, 2 ** 32), null, 'cut list');
  assert.equal(decodeOrdinals(list(0), big.length, 2 ** 28), null, 'ordinal past the packet count');
  assert.equal(decodeOrdinals(list(0), big.length - 1, 2 ** 32), null, 'bytes left over');
  assert.equal(decodeOrdinals(Buffer.from([1, 0]), 2, 10), null, 'an ordinal twice');
  assert.equal(decodeOrdinals(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 1, 2 ** 32), null, 'a varint longer than 32 bits');
});

test('payload kinds: RTP and RTCP SSRCs, anything else none', () => {
  const rtp = Buffer.alloc(20);
  rtp[0] = 0x80;
  rtp[1] = 8;
  rtp.writeUInt32BE(0x11223344, 8);
  assert.equal(payloadKind(rtp), FLOW_KIND.RTP);
  assert.equal(payloadSsrc(rtp, FLOW_KIND.RTP), 0x11223344);
  const sr = Buffer.alloc(28);
  sr[0] = 0x80;
  sr[1] = 200;
  sr.writeUInt16BE(6, 2);
  sr.writeUInt32BE(0x55667788, 4);
  assert.equal(payloadKind(sr), FLOW_KIND.RTCP);
  assert.equal(payloadSsrc(sr, FLOW_KIND.RTCP), 0x55667788);
  assert.equal(payloadKind(Buffer.from('not rtp at all, just text')), FLOW_KIND.OTHER);
  assert.equal(payloadKind(Buffer.from([0x80, 0, 0, 1])), FLOW_KIND.OTHER, 'shorter than an RTP header');
});
