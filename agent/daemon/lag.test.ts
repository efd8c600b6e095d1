import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IndexLag } from './lag';

test('index lag: bytes and age of what is written but not indexed, back to 0 when caught up', () => {
  const lag = new IndexLag();
  const t0 = 1_000_000;
  lag.flushed('a.pcap', 1000, t0);
  lag.flushed('a.pcap', 3000, t0 + 1500);
  lag.flushed('b.pcap', 500, t0 + 2000);
  assert.equal(lag.bytes(), 3500);
  assert.equal(lag.seconds(t0 + 4000), 4);
  lag.indexed([['a.pcap', 1000]]);
  assert.equal(lag.bytes(), 2500);
  assert.equal(lag.seconds(t0 + 4000), 2.5, 'the oldest unindexed flush is now a.pcap at 3000');
  lag.indexed([['a.pcap', 3000], ['b.pcap', 500]]);
  assert.equal(lag.bytes(), 0);
  assert.equal(lag.seconds(t0 + 9000), 0);
  // A closed segment is forgotten once indexed to its end; a deleted one at once.
  lag.flushed('a.pcap', 4000, t0 + 9000);
  lag.closed('a.pcap');
  lag.flushed('c.pcap', 10, t0 + 9000);
  lag.deleted('c.pcap');
  assert.equal(lag.bytes(), 1000);
  lag.indexed([['a.pcap', 4000]]);
  assert.equal(lag.bytes(), 0);
  lag.indexed([['a.pcap', 9999]]);
  assert.equal(lag.bytes(), 0, 'a report for a forgotten segment is ignored');
});
