import { test } from 'node:test';
import assert from 'node:assert/strict';
import { followLine } from './follow-run';

const base = {
  ts: '1795464748.953080829', time: '2026-11-23T20:12:28.953080829Z', src: '127.0.0.1:25091', dst: '127.0.0.1:25090', transport: 'udp' as const,
  method: null, status: 486, reason: 'Busy Here', callId: 'c1@h', cseq: '1 INVITE', from: null, to: null, ruri: null, correlation: null, bytes: 400, packets: 1, host: 'edge1',
};

test('a follow line holds time, host, src -> dst, status or method, Call-ID', () => {
  const l = followLine(base);
  assert.match(l, /edge1 127\.0\.0\.1:25091 -> 127\.0\.0\.1:25090 486 Busy Here c1@h$/);
  assert.match(followLine({ ...base, method: 'INVITE', status: null, reason: null }), / INVITE c1@h$/);
});

test('a follow line escapes what a hostile packet put in it', () => {
  const l = followLine({ ...base, callId: 'evil\x1b[2J\u202eid', reason: 'Busy\rHere' });
  assert.doesNotMatch(l, /[\x00-\x1f\x7f\u202e]/);
  assert.match(l, /evil\\x1b\[2J\\u202eid/);
  assert.match(l, /Busy\\x0dHere/);
});
