import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMessages } from './remote';
import type { TraceMessage } from '../api-client';

const base = (callId: string, extra: Partial<TraceMessage> = {}): TraceMessage =>
  ({
    ts: '1795200000.000000000', time: '2026-11-19T12:00:00.000000000Z', src: '10.0.0.1:5060', dst: '10.0.0.5:5060', transport: 'udp',
    method: 'INVITE', status: null, reason: null, callId, cseq: '1 INVITE', from: '4930000001', to: '700', ruri: '700', correlation: null,
    bytes: 500, packets: 1, host: 'x', ...extra,
  }) as TraceMessage;

test('the message table names the call each leg belongs to and how it was linked, only when the trace asked for legs', () => {
  const plain = formatMessages([base('a')]);
  assert.ok(!plain[0].includes('LEG OF'));
  const out = formatMessages([base('a', { legGroup: 'a' }), base('b\x1b[2J', { legGroup: 'a', legVia: 'session-id' })]);
  assert.match(out[0], /MESSAGE\s+LEG OF\s+CALL-ID/);
  assert.match(out[1], /\(itself\)\s+a$/);
  assert.match(out[2], /a by session-id\s+b/);
  assert.ok(!out.join('\n').includes('\x1b'), 'a hostile Call-ID is escaped');
});
