import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpSipReassembler, TcpSipReassemblerOptions } from './tcp';
import type { TransportMessage } from './types';
import { prng, sipInvite, sipResponse, TCP_FLAG } from '../../test/support/packets';

const ACK = TCP_FLAG.ACK | TCP_FLAG.PSH;

/** One direction of a connection, fed by hand. */
class Stream {
  readonly r: TcpSipReassembler;
  ord = 0;
  ts = 1000;
  constructor(
    readonly isn: number,
    opts: TcpSipReassemblerOptions = {},
    readonly src = '10.0.0.1',
    readonly sport = 40000,
    readonly dst = '10.0.0.2',
    readonly dport = 5060,
    r?: TcpSipReassembler,
  ) {
    this.r = r ?? new TcpSipReassembler(opts);
  }
  syn(): readonly TransportMessage[] {
    return this.r.push(this.ord++, this.ts, this.src, this.sport, this.dst, this.dport, { seq: this.isn, ack: 0, flags: TCP_FLAG.SYN }, Buffer.alloc(0));
  }
  /** Sends bytes at stream offset `at` (0 = first byte after the SYN). */
  send(at: number, data: Buffer | string, flags = ACK): readonly TransportMessage[] {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    const seq = (this.isn + 1 + at) >>> 0;
    return this.r.push(this.ord++, this.ts, this.src, this.sport, this.dst, this.dport, { seq, ack: 1, flags }, b);
  }
}

function texts(ms: readonly TransportMessage[]): string[] {
  return ms.map((m) => m.bytes.toString('latin1'));
}

const INV = sipInvite();
const OK = sipResponse();
const BYE = Buffer.from('BYE sip:bob@example.com SIP/2.0\r\nCall-ID: z\r\nl: 0\r\n\r\n');

test('one message in three segments', () => {
  const s = new Stream(1000);
  s.syn();
  assert.deepEqual(s.send(0, INV.subarray(0, 100)), []);
  assert.deepEqual(s.send(100, INV.subarray(100, 400)), []);
  const out = s.send(400, INV.subarray(400));
  assert.equal(out.length, 1);
  assert.deepEqual(out[0].bytes, INV);
  assert.deepEqual(out[0].packets, [1, 2, 3]);
  assert.equal(out[0].proto, 6);
  assert.equal(out[0].src, '10.0.0.1');
  assert.equal(out[0].sport, 40000);
  assert.equal(out[0].dst, '10.0.0.2');
  assert.equal(out[0].dport, 5060);
});

test('three messages in one segment, keepalives between them', () => {
  const s = new Stream(5);
  s.syn();
  const out = s.send(0, Buffer.concat([INV, Buffer.from('\r\n\r\n'), OK, BYE]));
  assert.deepEqual(texts(out), [INV, OK, BYE].map((b) => b.toString('latin1')));
  for (const m of out) assert.deepEqual(m.packets, [1]);
  // A keepalive on its own is not a message.
  assert.deepEqual(s.send(INV.length + 4 + OK.length + BYE.length, '\r\n\r\n'), []);
  assert.equal(s.send(INV.length + 8 + OK.length + BYE.length, BYE).length, 1);
});

test('message and a half, then the rest: the shared segment belongs to both', () => {
  const s = new Stream(77);
  s.syn();
  const both = Buffer.concat([OK, INV]);
  const a = s.send(0, both.subarray(0, OK.length + 50));
  assert.deepEqual(texts(a), [OK.toString('latin1')]);
  assert.deepEqual(a[0].packets, [1]);
  const b = s.send(OK.length + 50, both.subarray(OK.length + 50));
  assert.deepEqual(b[0].bytes, INV);
  assert.deepEqual(b[0].packets, [1, 2]);
});

test('a body waits for Content-Length bytes, long or compact form', () => {
  for (const h of ['Content-Length: 11', 'l: 11', 'content-length :11']) {
    const msg = `MESSAGE sip:bob@example.com SIP/2.0\r\nCall-ID: q\r\n${h}\r\n\r\nhello world`;
    const s = new Stream(9);
    s.syn();
    const head = msg.indexOf('\r\n\r\n') + 4;
    assert.deepEqual(s.send(0, msg.slice(0, head)), [], h);
    assert.deepEqual(s.send(head, msg.slice(head, head + 5)), [], h);
    const out = s.send(head + 5, msg.slice(head + 5) + 'OPTIONS sip:x SIP/2.0\r\n');
    assert.deepEqual(texts(out), [msg], h);
    assert.deepEqual(out[0].packets, [1, 2, 3]);
  }
});

test('out-of-order segments are put back in order', () => {
  const s = new Stream(123456);
  s.syn();
  assert.deepEqual(s.send(400, INV.subarray(400)), []);
  assert.deepEqual(s.send(100, INV.subarray(100, 400)), []);
  const out = s.send(0, INV.subarray(0, 100));
  assert.equal(out.length, 1);
  assert.deepEqual(out[0].bytes, INV);
  assert.deepEqual(out[0].packets, [1, 2, 3]);
});

test('a retransmission is listed in the message it overlaps, its bytes used once', () => {
  const s = new Stream(1);
  s.syn();
  s.send(0, INV.subarray(0, 200)); // 1
  s.send(0, INV.subarray(0, 200)); // 2: same segment again
  s.send(150, INV.subarray(150, 300)); // 3: repacketized, half old
  s.send(250, Buffer.concat([INV.subarray(250), OK.subarray(0, 10)])); // 4
  const out = s.send(INV.length + 10, OK.subarray(10)); // 5
  assert.equal(out.length, 1);
  assert.deepEqual(out[0].bytes, OK);
  assert.deepEqual(out[0].packets, [4, 5]);
  // The INVITE came out with segment 4.
  const s2 = new Stream(1);
  s2.syn();
  s2.send(0, INV.subarray(0, 200));
  s2.send(0, INV.subarray(0, 200));
  s2.send(150, INV.subarray(150, 300));
  const inv = s2.send(250, INV.subarray(250));
  assert.deepEqual(inv[0].bytes, INV);
  assert.deepEqual(inv[0].packets, [1, 2, 3, 4]);
  // A retransmission of a message already delivered changes nothing.
  assert.deepEqual(s2.send(0, INV.subarray(0, 200)), []);
  assert.equal(s2.send(INV.length, OK).length, 1);
});

test('a held segment that overlaps a message is listed in it', () => {
  const s = new Stream(50);
  s.syn();
  s.send(100, INV.subarray(100, 300)); // 1, held
  const out = s.send(0, INV.subarray(0, 150)); // 2 fills the hole, overlaps 1
  assert.deepEqual(out, []);
  const done = s.send(300, INV.subarray(300)); // 3
  assert.deepEqual(done[0].bytes, INV);
  assert.deepEqual(done[0].packets, [1, 2, 3]);
});

test('a hole that times out: buffered bytes dropped, resync at the next SIP start line', () => {
  const s = new Stream(900, { holeTimeoutSec: 5 });
  s.syn();
  s.send(0, INV.subarray(0, 100)); // 1; bytes 100..INV.length never come
  const at = INV.length;
  assert.deepEqual(s.send(at + 10, OK.subarray(10)), []); // 2: tail of OK, held
  assert.deepEqual(s.send(at + OK.length, BYE), []); // 3: BYE, held behind the hole
  s.ts += 6;
  const out = s.send(at + OK.length + BYE.length, OK); // 4
  assert.deepEqual(texts(out), [BYE, OK].map((b) => b.toString('latin1')));
  assert.deepEqual(out[0].packets, [3]);
  assert.deepEqual(out[1].packets, [4]);
  assert.equal(s.r.counters.gaps, 1);
});

test('a hole filled by a late retransmission, just as it would time out, is no gap', () => {
  const s = new Stream(900, { holeTimeoutSec: 5 });
  s.syn();
  s.send(0, INV.subarray(0, 100));
  s.send(200, INV.subarray(200));
  s.ts += 6;
  const out = s.send(100, INV.subarray(100, 200));
  assert.deepEqual(out.map((m) => m.bytes), [INV]);
  assert.deepEqual(out[0].packets, [1, 2, 3]);
  assert.equal(s.r.counters.gaps, 0);
});

test('a hole beyond the held-bytes bound: resync at a held segment, or a later one', () => {
  const s = new Stream(0, { maxFlowBytes: 4096 });
  s.syn();
  s.send(0, INV.subarray(0, 100));
  let at = INV.length + 5000; // far past a lost stretch
  const junk = Buffer.alloc(1500, 0x41);
  assert.deepEqual(s.send(at, junk), []);
  assert.deepEqual(s.send(at + 1500, junk), []);
  assert.deepEqual(s.send(at + 3000, junk), []); // over the bound: gap, nothing held starts a message
  assert.equal(s.r.counters.gaps, 1);
  at += 4500;
  assert.deepEqual(s.send(at, junk), []); // not a start line: still waiting
  const out = s.send(at + 1500, Buffer.concat([BYE, OK]));
  assert.deepEqual(texts(out), [BYE, OK].map((b) => b.toString('latin1')));
  const more = s.send(at + 1500 + BYE.length + OK.length, BYE);
  assert.equal(more.length, 1);
});

test('bytes that stop framing as SIP desync the stream until a segment starts a message', () => {
  const s = new Stream(3);
  s.syn();
  assert.equal(s.send(0, OK).length, 1);
  assert.deepEqual(s.send(OK.length, 'garbage that is not SIP\r\n\r\n'), []);
  assert.equal(s.r.counters.desyncs, 1);
  assert.deepEqual(s.send(OK.length + 27, 'more garbage'), []);
  assert.equal(s.send(OK.length + 39, BYE).length, 1);
});

test('sequence numbers wrap around 2^32', () => {
  const isn = 0xffffffff - 150;
  const s = new Stream(isn);
  s.syn();
  const out1 = s.send(0, INV.subarray(0, 100));
  assert.deepEqual(out1, []);
  // Delivered out of order across the wrap.
  assert.deepEqual(s.send(300, INV.subarray(300)), []);
  const out = s.send(100, INV.subarray(100, 300));
  assert.deepEqual(out[0].bytes, INV);
  assert.deepEqual(out[0].packets, [1, 2, 3]);
  assert.equal(s.send(INV.length, OK).length, 1);
  // Same without a SYN, joining mid-stream right before the wrap.
  const t = new Stream(0xfffffff0);
  assert.deepEqual(t.send(0, INV.subarray(0, 20)), []);
  assert.deepEqual(t.send(20, INV.subarray(20)).map((m) => m.bytes), [INV]);
});

test('a flow that starts with something else is not SIP; text with a phone number on 5060 neither', () => {
  const s = new Stream(10);
  s.syn();
  assert.deepEqual(s.send(0, 'Hello, call me back at +1 555 123 4567 or SIP/2.0 200\r\n\r\n'), []);
  // Once decided, even a start line later does not make it SIP.
  assert.deepEqual(s.send(57, OK), []);
  // Joined mid-stream: each segment is checked, none starts a message.
  const t = new Stream(10, {}, '10.9.9.9');
  assert.deepEqual(t.send(0, 'Call 5551234567 now\r\n'), []);
  assert.deepEqual(t.send(21, '18005550199 SIP 2.0\r\n\r\n'), []);
  assert.equal(s.r.counters.messages, 0);
  assert.equal(t.r.counters.messages, 0);
});

test('a message split across many small segments, flows kept apart', () => {
  const r = new TcpSipReassembler();
  const a = new Stream(7, {}, '10.0.0.1', 40000, '10.0.0.2', 5060, r);
  const b = new Stream(7, {}, '10.0.0.2', 5060, '10.0.0.1', 40000, r);
  a.syn();
  b.syn();
  const got: TransportMessage[] = [];
  for (let i = 0; i < INV.length; i += 7) {
    got.push(...a.send(i, INV.subarray(i, i + 7)));
    if (i < OK.length) got.push(...b.send(i, OK.subarray(i, i + 7)));
  }
  assert.equal(got.length, 2);
  const inv = got.find((m) => m.src === '10.0.0.1');
  const ok = got.find((m) => m.src === '10.0.0.2');
  assert.deepEqual(inv?.bytes, INV);
  assert.deepEqual(ok?.bytes, OK);
  assert.equal(inv?.packets.length, Math.ceil(INV.length / 7));
});

test('FIN: bytes beyond a hole are framed from their first start line; RST drops the flow', () => {
  const s = new Stream(400);
  s.syn();
  s.send(0, INV.subarray(0, 50));
  s.send(INV.length, BYE);
  const out = s.send(INV.length + BYE.length, OK, ACK | TCP_FLAG.FIN);
  assert.deepEqual(texts(out), [BYE, OK].map((b) => b.toString('latin1')));
  assert.equal(s.r.counters.gaps, 1);
  assert.equal(s.r.flowCount, 0);

  const t = new Stream(400);
  t.syn();
  t.send(0, INV.subarray(0, 50));
  t.r.push(t.ord++, t.ts, t.src, t.sport, t.dst, t.dport, { seq: 451, ack: 1, flags: TCP_FLAG.RST }, Buffer.alloc(0));
  assert.equal(t.r.flowCount, 0);
  assert.deepEqual(t.send(50, INV.subarray(50)), []);
});

test('flows are bounded in number (least recently used go first) and expire by packet time', () => {
  const r = new TcpSipReassembler({ maxFlows: 2 });
  const mk = (port: number) => new Stream(0, {}, '10.0.0.1', port, '10.0.0.2', 5060, r);
  const [a, b, c] = [mk(1), mk(2), mk(3)];
  a.send(0, INV.subarray(0, 20));
  b.send(0, INV.subarray(0, 20));
  a.send(20, INV.subarray(20, 30)); // a is now more recent than b
  c.send(0, INV.subarray(0, 20)); // evicts b
  assert.equal(r.counters.flowsEvicted, 1);
  assert.equal(r.flowCount, 2);
  assert.deepEqual(a.send(30, INV.subarray(30)).map((m) => m.bytes), [INV]);
  assert.deepEqual(c.send(20, INV.subarray(20)).map((m) => m.bytes), [INV]);
  // b's start went with its state.
  assert.deepEqual(b.send(20, INV.subarray(20)), []);

  for (const [wait, expired] of [[59, false], [61, true]] as const) {
    const d = new Stream(0, { idleSec: 60 });
    d.send(0, INV.subarray(0, 20));
    d.ts += wait;
    assert.equal(d.send(20, INV.subarray(20)).length, expired ? 0 : 1);
    assert.equal(d.r.counters.flowsExpired, expired ? 1 : 0);
  }
});

test('randomized segmentation, reordering and retransmission give back every message exactly', () => {
  const rnd = prng(42);
  const msgs = [INV, OK, BYE, sipInvite('x@y', 'Subject: s\r\n', 3000), OK, BYE, sipInvite('z@y'), OK];
  const stream = Buffer.concat(msgs);
  const bounds: number[] = [];
  let acc = 0;
  for (const m of msgs) bounds.push((acc += m.length));
  for (let round = 0; round < 60; round++) {
    // Cut the stream into segments.
    const segs: Array<{ at: number; end: number }> = [];
    for (let at = 0; at < stream.length; ) {
      const end = Math.min(stream.length, at + 1 + Math.floor(rnd() * 900));
      segs.push({ at, end });
      at = end;
    }
    // Swap some neighbours, retransmit some segments (whole or repacketized) later on.
    const order = segs.map((s) => ({ ...s, orig: true }));
    for (let i = 0; i + 1 < order.length; i++) if (rnd() < 0.2) [order[i], order[i + 1]] = [order[i + 1], order[i]];
    for (let i = 0; i < order.length; i++) {
      if (rnd() < 0.15) {
        const s = order[i];
        const at = s.at + Math.floor(rnd() * (s.end - s.at));
        const end = Math.min(stream.length, s.end + Math.floor(rnd() * 300));
        order.splice(i + 1 + Math.floor(rnd() * 3), 0, { at, end, orig: false });
      }
    }
    const isn = Math.floor(rnd() * 2 ** 32);
    const s = new Stream(isn);
    s.syn();
    const got: TransportMessage[] = [];
    const doneAt: number[] = [];
    const sent: Array<{ at: number; end: number; orig: boolean; ord: number }> = [];
    for (const seg of order) {
      const ord = s.ord;
      sent.push({ ...seg, ord });
      for (const m of s.send(seg.at, stream.subarray(seg.at, seg.end))) {
        got.push(m);
        doneAt.push(ord);
      }
    }
    assert.deepEqual(texts(got), msgs.map((b) => b.toString('latin1')), `round ${round}`);
    got.forEach((m, i) => {
      const ms = i === 0 ? 0 : bounds[i - 1];
      const me = bounds[i];
      const carriers = sent.filter((x) => x.at < me && x.end > ms);
      // Every first transmission that came before the message was whole is in it.
      const must = carriers.filter((x) => x.orig && x.ord <= doneAt[i]).map((x) => x.ord);
      const may = new Set(carriers.map((x) => x.ord));
      for (const o of must) assert.ok(m.packets.includes(o), `round ${round} msg ${i} lacks ${o}`);
      for (const o of m.packets) assert.ok(may.has(o), `round ${round} msg ${i} lists ${o}`);
      assert.deepEqual(m.packets, [...new Set(m.packets)].sort((x, y) => x - y));
    });
  }
});
