import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RtpStreamStats, eModel, parseRtpHeader } from './stats';
import { rtpStreamFigures } from './figures';

function rtp(o: { pt: number; seq: number; ts: number; ssrc?: number; marker?: boolean; payload?: Buffer }): Buffer {
  const h = Buffer.alloc(12);
  h[0] = 0x80;
  h[1] = (o.marker ? 0x80 : 0) | o.pt;
  h.writeUInt16BE(o.seq & 0xffff, 2);
  h.writeUInt32BE(o.ts >>> 0, 4);
  h.writeUInt32BE(o.ssrc ?? 0x1234abcd, 8);
  return Buffer.concat([h, o.payload ?? Buffer.alloc(160, 0xd5)]);
}

const A = '192.0.2.1:4000';
const B = '198.51.100.2:6000';
const T0 = 1_795_000_000;
const at = (ms: number): [number, number] => [T0 + Math.floor(ms / 1000), Math.round((ms % 1000) * 1e6)];

test('sequence numbers: wrap-around, a loss, a duplicate and a late packet', () => {
  const s = new RtpStreamStats();
  const seqs = [65533, 65534, 65535, 0, 2, 2, 1, 3];
  seqs.forEach((seq, i) => s.push(...at(i * 20), A, B, rtp({ pt: 0, seq, ts: 1000 + i * 160 })));
  const [f] = s.figures();
  assert.equal(rtpStreamFigures.safeParse(f).success, true);
  assert.deepEqual(
    { packets: f.packets, expected: f.expected, lost: f.lost, duplicated: f.duplicated, outOfOrder: f.outOfOrder, codec: f.codec, ssrc: f.ssrc },
    { packets: 8, expected: 7, lost: 0, duplicated: 1, outOfOrder: 1, codec: 'PCMU/8000', ssrc: '0x1234abcd' },
  );
  const lossy = new RtpStreamStats();
  [65534, 65535, 3, 4].forEach((seq, i) => lossy.push(...at(i * 20), A, B, rtp({ pt: 8, seq, ts: i * 160 })));
  const [g] = lossy.figures();
  assert.deepEqual([g.expected, g.lost, g.series.points.reduce((n, p) => n + p.lost, 0)], [7, 3, 3]);
});

test('RFC 3550 jitter from arrival against RTP time; the largest gap; streams apart by SSRC and direction', () => {
  const s = new RtpStreamStats();
  // 20 ms apart on the RTP clock; the fourth arrives 10 ms late, the fifth on time again.
  const arrivals = [0, 20, 40, 70, 80];
  arrivals.forEach((ms, i) => s.push(...at(ms), A, B, rtp({ pt: 0, seq: i, ts: i * 160 })));
  s.push(...at(5), B, A, rtp({ pt: 0, seq: 9, ts: 0, ssrc: 7 }));
  const figs = s.figures();
  assert.equal(figs.length, 2);
  const f = figs.find((x) => x.src === A)!;
  // D = 10 then 10: J = 10/16, then J + (10 - J)/16.
  const j1 = 10 / 16;
  const j2 = j1 + (10 - j1) / 16;
  assert.equal(f.jitterMaxMs, Math.round(j2 * 1000) / 1000);
  assert.equal(f.jitterMeanMs, Math.round(((0 + 0 + j1 + j2) / 4) * 1000) / 1000);
  assert.equal(f.maxGapMs, 30);
  assert.equal(figs.find((x) => x.src === B)!.ssrc, '0x00000007');
});

test('RFC 4733 events: one per RTP timestamp, the longest duration, named by the rtpmap', () => {
  const s = new RtpStreamStats();
  const map = (pt: number) => (pt === 101 ? 'telephone-event/8000' : null);
  const ev = (code: number, end: boolean, dur: number) => Buffer.from([code, (end ? 0x80 : 0) | 10, dur >> 8, dur & 0xff]);
  let seq = 100;
  for (const [ms, code, end, dur] of [[0, 5, false, 160], [20, 5, false, 320], [40, 5, true, 800], [41, 5, true, 800], [200, 11, true, 400]] as const) {
    s.push(...at(ms), A, B, rtp({ pt: 101, seq: seq++, ts: ms < 100 ? 8000 : 16000, payload: ev(code, end, dur) }), map);
  }
  const [f] = s.figures();
  assert.equal(f.codec, 'telephone-event/8000');
  assert.deepEqual(f.events.map((e) => [e.event, e.durationMs]), [['5', 100], ['#', 50]]);
  assert.equal(f.eventCount, 2);
  assert.equal(f.rFactor, null, 'no E-model estimate for an events-only stream');
});

test('E-model: a clean G.711 stream near its ceiling, loss and a weaker codec lower it, unknown codecs get none', () => {
  const clean = eModel('PCMA/8000', 0, 0)!;
  assert.ok(clean.rFactor > 92 && clean.rFactor < 93.2 && clean.mos > 4.38 && clean.mos < 4.42, JSON.stringify(clean));
  const lossy = eModel('PCMA/8000', 5, 0)!;
  assert.ok(lossy.mos < clean.mos - 0.4, JSON.stringify(lossy));
  const g729 = eModel('G729/8000', 0, 0)!;
  assert.ok(Math.abs(g729.rFactor - (clean.rFactor - 11)) < 0.01);
  assert.ok(eModel('PCMA/8000', 0, 100)!.rFactor < clean.rFactor - 4, 'a large jitter buffer delays the call');
  assert.equal(eModel('H264/90000', 0, 0), null);
});

test('not RTP: version 1, RTCP on the RTP port, short or with a header extension past its end', () => {
  assert.equal(parseRtpHeader(Buffer.from([0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), null);
  assert.equal(parseRtpHeader(Buffer.from([0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0])), null, 'RTCP SR');
  assert.equal(parseRtpHeader(Buffer.alloc(11, 0x80)), null);
  assert.equal(parseRtpHeader(Buffer.from([0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 9])), null);
  assert.equal(parseRtpHeader(Buffer.from([0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 1, 2, 3, 4]))?.payloadOffset, 20);
});
