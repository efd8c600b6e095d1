import assert from 'node:assert/strict';
import { test } from 'node:test';
import { framesPerCall, RTP_CALL_PORTS, RTP_PAYLOAD_BYTES, rtpCall, rtpCallFrames, RtpCallsOptions } from './rtpgen';

const GEN: RtpCallsOptions = { calls: 30, rtpSeconds: 1, spacingNs: 7_000_000, sipA: '198.19.255.1', sipB: '198.19.255.2', media: '198.19.255.3', callerNet: '198.19' };

const ip = (f: Buffer, at: number) => [...f.subarray(at, at + 4)].join('.');

test('RTP calls: time order, every frame of every call, RTP between the ends the SDP announced', () => {
  const frames = [...rtpCallFrames(GEN)];
  const per = framesPerCall(GEN.rtpSeconds);
  assert.equal(frames.length, GEN.calls * (per.sip + per.rtp));
  for (let i = 1; i < frames.length; i++) assert.ok(frames[i].ns >= frames[i - 1].ns, `frame ${i} goes back in time`);
  const seen = new Map<number, { sip: number; rtp: number; last: number }>();
  for (const [i, f] of frames.entries()) {
    const c = rtpCall(GEN, f.call);
    const s = seen.get(f.call) ?? seen.set(f.call, { sip: 0, rtp: 0, last: -1 }).get(f.call)!;
    const sport = f.frame.readUInt16BE(34);
    const dport = f.frame.readUInt16BE(36);
    if (f.sip) {
      s.sip++;
      assert.deepEqual([sport, dport], [5060, 5060]);
      const text = f.frame.subarray(42).toString('latin1');
      assert.match(text, new RegExp(`Call-ID: ${c.callId}\\r\\n`));
      if (text.startsWith('INVITE')) assert.match(text, new RegExp(`c=IN IP4 ${c.caller}\\r\\n[^]*m=audio ${c.callerPort} `));
      if (text.startsWith('SIP/2.0 200 OK') && text.includes('1 INVITE')) assert.match(text, new RegExp(`c=IN IP4 ${c.media}\\r\\n[^]*m=audio ${c.mediaPort} `));
    } else {
      s.rtp++;
      assert.equal(f.frame.length, 42 + RTP_PAYLOAD_BYTES);
      const ends = [`${ip(f.frame, 26)}:${sport}`, `${ip(f.frame, 30)}:${dport}`].sort();
      assert.deepEqual(ends, [`${c.caller}:${c.callerPort}`, `${c.media}:${c.mediaPort}`].sort());
      for (const p of [c.callerPort, c.mediaPort]) assert.ok(RTP_CALL_PORTS.some(([lo, hi]) => p >= lo && p <= hi), `port ${p} outside RTP_CALL_PORTS`);
    }
    if (f.last) s.last = i;
  }
  assert.equal(seen.size, GEN.calls);
  for (const [c, s] of seen) {
    assert.deepEqual([s.sip, s.rtp], [per.sip, per.rtp], `call ${c}`);
    assert.ok(s.last >= 0, `call ${c} has no last frame`);
  }
  // Calls overlap: the 30 calls of 1 s started 7 ms apart are all up at once.
  const lastStart = frames.findIndex((f) => f.call === GEN.calls - 1);
  const firstEnd = frames.findIndex((f) => f.last);
  assert.ok(lastStart < firstEnd);
});
