import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callFiguresOf } from './call-figures';

const A = '192.0.2.1:5060';
const B = '198.51.100.7:5060';
/** A summary at `ms` milliseconds after 1795000000 s. */
function m(ms: number, src: string, dst: string, what: string | number, cseq: string, callId = 'c1', host = 'h'): { ts: string; src: string; dst: string; method: string | null; status: number | null; reason: string | null; callId: string; cseq: string; host: string } {
  const ns = BigInt(ms * 1_000_000);
  const ts = `${1_795_000_000n + ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
  return typeof what === 'number'
    ? { ts, src, dst, method: null, status: what, reason: what === 200 ? 'OK' : 'x', callId, cseq, host }
    : { ts, src, dst, method: what, status: null, reason: null, callId, cseq, host };
}

test('an answered call: SRD to the 180, answer, duration to the BYE, ended by the callee, retransmissions counted', () => {
  const [f] = callFiguresOf([
    m(0, A, B, 'INVITE', '1 INVITE'),
    m(500, A, B, 'INVITE', '1 INVITE'), // retransmitted
    m(520, B, A, 100, '1 INVITE'),
    m(1520, B, A, 180, '1 INVITE'),
    m(4000, B, A, 200, '1 INVITE'),
    m(4500, B, A, 200, '1 INVITE'), // retransmitted before the ACK
    m(4510, A, B, 'ACK', '1 ACK'),
    m(64000, B, A, 'BYE', '1 BYE'),
    m(64010, A, B, 200, '1 BYE'),
  ]);
  assert.deepEqual(f, {
    callId: 'c1', host: 'h', caller: A, callee: B, finalStatus: 200, finalReason: 'OK', endedBy: 'callee', endedWith: 'BYE',
    srdMs: 1520, answerMs: 4000, durationMs: 60000, retransmissions: 2, messages: 9,
  });
});

test('a challenged call is followed to its second attempt; a cancelled one is ended by the caller; a busy one by the callee', () => {
  const [auth, cancelled, busy] = callFiguresOf([
    m(0, A, B, 'INVITE', '1 INVITE', 'auth'),
    m(10, B, A, 407, '1 INVITE', 'auth'),
    m(20, A, B, 'ACK', '1 ACK', 'auth'),
    m(30, A, B, 'INVITE', '2 INVITE', 'auth'),
    m(2030, B, A, 183, '2 INVITE', 'auth'),
    m(3030, B, A, 200, '2 INVITE', 'auth'),
    m(5030, '192.0.2.1:40000', B, 'BYE', '3 BYE', 'auth'),
    m(100, A, B, 'INVITE', '1 INVITE', 'cancel'),
    m(300, B, A, 180, '1 INVITE', 'cancel'),
    m(900, A, B, 'CANCEL', '1 CANCEL', 'cancel'),
    m(910, B, A, 487, '1 INVITE', 'cancel'),
    m(200, A, B, 'INVITE', '1 INVITE', 'busy'),
    m(700, B, A, 486, '1 INVITE', 'busy'),
  ]);
  assert.equal(auth.finalStatus, 200);
  assert.equal(auth.srdMs, 2030, 'from the first INVITE, as the caller waits');
  assert.equal(auth.answerMs, 3030);
  assert.equal(auth.durationMs, 2000);
  assert.equal(auth.endedBy, 'caller', 'a BYE from another port of the caller');
  assert.equal(auth.retransmissions, 0);
  assert.deepEqual([cancelled.finalStatus, cancelled.endedBy, cancelled.endedWith, cancelled.srdMs, cancelled.answerMs, cancelled.durationMs], [487, 'caller', 'CANCEL', 200, null, null]);
  assert.deepEqual([busy.finalStatus, busy.endedBy, busy.endedWith, busy.srdMs, busy.answerMs], [486, 'callee', '486', 500, null]);
});

test('per host, and dialogs without an INVITE have no figures', () => {
  const f = callFiguresOf([m(0, A, B, 'INVITE', '1 INVITE', 'c', 'x'), m(1, A, B, 'INVITE', '1 INVITE', 'c', 'y'), m(2, A, B, 'OPTIONS', '1 OPTIONS', 'o', 'x')]);
  assert.deepEqual(f.map((x) => [x.host, x.retransmissions, x.endedBy]), [['x', 0, null], ['y', 0, null]]);
});
