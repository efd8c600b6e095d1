import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TracefleetError } from '../errors/catalogue';
import { buildQuerySpec, checkQuery, normalizeIp, parseTime, QUERY_RULES, traceQuery, traceRequest } from './query';

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

test('one schema for the query as it travels: unknown keys and oversized lists are refused', () => {
  assert.equal(traceRequest.safeParse({ callId: ['x'], bogus: 1 }).success, false);
  assert.equal(traceQuery.safeParse({ callId: ['x'], hosts: ['a'] }).success, false, 'hosts belong to the request, not to what an agent runs');
  const tooMany = Array.from({ length: QUERY_RULES.lists.method.maxValues + 1 }, () => 'INVITE');
  assert.equal(traceQuery.safeParse({ callId: ['x'], method: tooMany }).success, false);
  assert.equal(traceQuery.safeParse({ callId: ['x'.repeat(QUERY_RULES.lists.callId.maxLength + 1)] }).success, false);
  assert.equal(traceRequest.safeParse({ callId: ['x'], hosts: ['bad/name'] }).success, false);
});

test('values are checked and normalized for the engine; "a,b" is two values', () => {
  const spec = buildQuerySpec({ callId: ['a@x, b@x'], ip: ['2001:DB8::10'], method: ['invite'], status: ['4xx', '200'], port: ['5060'] });
  assert.deepEqual(spec.callIds, ['a@x', 'b@x']);
  assert.deepEqual(spec.ips, ['2001:db8::10']);
  assert.deepEqual(spec.methods, ['INVITE']);
  assert.deepEqual(spec.statuses, [{ cls: 4 }, { code: 200 }]);
  assert.deepEqual(spec.ports, [5060]);
  assert.throws(() => checkQuery({ method: ['INVITE'] }), (e: Error) => e instanceof TracefleetError && e.code === 'TF_QUERY_NOT_SELECTIVE' && e.exit === 2 && /no selective key/.test(e.message));
});

test('the rules the page gets are plain JSON and agree with the checks', () => {
  const rules = JSON.parse(JSON.stringify(QUERY_RULES)) as typeof QUERY_RULES;
  assert.deepEqual(rules, QUERY_RULES);
  const method = new RegExp(rules.patterns.method);
  const status = new RegExp(rules.patterns.status, 'i');
  for (const m of ['INVITE', 'bye']) assert.ok(method.test(m) && buildQuerySpec({ callId: ['x'], method: [m] }));
  for (const s of ['486', '4xx']) assert.ok(status.test(s) && buildQuerySpec({ callId: ['x'], status: [s] }));
  for (const s of ['99', '7xx']) {
    assert.equal(status.test(s), false);
    assert.throws(() => buildQuerySpec({ callId: ['x'], status: [s] }), /bad status/);
  }
  const number = new RegExp(rules.patterns.number);
  assert.ok(number.test('+1 (555) 123-4567') && buildQuerySpec({ number: ['+1 (555) 123-4567'] }));
  assert.equal(number.test('555x1234'), false);
  assert.throws(() => buildQuerySpec({ number: ['555x1234'] }), (e: Error) => e instanceof TracefleetError && e.field === 'number');
  assert.ok(new RegExp(rules.patterns.traceId).test('20240612T104233-3f9a1c'));
  assert.equal(new RegExp(rules.patterns.traceId).test('x'.repeat(65)), false);
});
