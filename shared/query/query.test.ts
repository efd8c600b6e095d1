import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeIp, parseTime } from './query';

test('times: durations back from now, epoch with nanoseconds, ISO 8601', () => {
  const now = new Date('2026-11-23T10:42:00.000Z');
  const nowSec = now.getTime() / 1000;
  assert.deepEqual(parseTime('15m', now), [nowSec - 900, 0]);
  assert.deepEqual(parseTime('2h', now), [nowSec - 7200, 0]);
  assert.deepEqual(parseTime('1.5s', now), [nowSec - 2, 500_000_000]);
  assert.deepEqual(parseTime('now', now), [nowSec, 0]);
  assert.deepEqual(parseTime('1795453397.111020441'), [1795453397, 111020441]);
  assert.deepEqual(parseTime('2026-11-23T10:42:00.123456789Z'), [nowSec, 123456789]);
  assert.deepEqual(parseTime('2026-11-23 11:42:00+01:00'), [nowSec, 0]);
  assert.throws(() => parseTime('10:42'), /bad time/);
});

test('addresses are normalized to the decoders\' text form', () => {
  assert.equal(normalizeIp('2001:DB8:0:0:0:0:0:10'), '2001:db8::10');
  assert.equal(normalizeIp('::ffff:192.0.2.1'), '::ffff:c000:201');
  assert.equal(normalizeIp('192.0.2.1'), '192.0.2.1');
  assert.throws(() => normalizeIp('example.com'), /bad IP address/);
});
