import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { traceDone } from '../../shared/protocol/agent';
import { parseMessage } from '../../shared/protocol/common';
import { percentile } from '../common/dispatcher';
import { agentResult, RESULT_PACKETS } from './result';

test('simulated agent result: a whole PCAP and a trace:done the dispatcher accepts', () => {
  const r = agentResult('bench-agent-00007', 'T1', 7, Date.parse('2026-01-15T10:00:00.999Z'));
  const p = new CaptureStreamParser('result');
  const recs = p.push(r.pcap);
  assert.equal(p.end().tornBytes, 0);
  assert.equal(recs.length, RESULT_PACKETS);
  assert.equal(r.done.bytes, r.pcap.length);
  assert.equal(recs[2].tsSec, Date.parse('2026-01-15T10:00:01Z') / 1000, 'the 200 OK 40 ms later carries into the next second');
  assert.ok(r.pcap.includes(Buffer.from('Call-ID: T1-bench-agent-00007@bench.example.net')));
  const m = parseMessage(traceDone, 'trace:done', { traceId: 'T1', chunks: 1, ...r.done });
  assert.ok(m.ok, m.ok ? '' : m.error);
});

test('two agents never send the same packets (the merge would count duplicates)', () => {
  const a = agentResult('a', 'T1', 0, 1_700_000_000_000);
  const b = agentResult('b', 'T1', 1, 1_700_000_000_000);
  assert.notDeepEqual(a.pcap, b.pcap);
});

test('percentile: nearest rank, a value that was seen', () => {
  const xs = Array.from({ length: 1000 }, (_, i) => 1000 - i);
  assert.equal(percentile(xs, 50), 500);
  assert.equal(percentile(xs, 99), 990);
  assert.equal(percentile(xs, 100), 1000);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});
