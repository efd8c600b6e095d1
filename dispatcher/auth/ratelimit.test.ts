import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailureDelay, LOGIN_MAX_DELAY_MS } from './ratelimit';

test('the per-user delay grows with failures from any address up to its maximum, ages out, and remembers a bounded number of users', () => {
  const d = new FailureDelay({ windowMs: 60_000, maxKeys: 100 });
  const t0 = 1_000_000;
  const seen: number[] = [];
  for (let i = 0; i < 12; i++) {
    seen.push(d.delayFor('tom', t0 + i));
    d.fail('tom', t0 + i);
  }
  assert.deepEqual(seen, [0, 0, 0, 0, 0, 250, 500, 1000, 2000, LOGIN_MAX_DELAY_MS, LOGIN_MAX_DELAY_MS, LOGIN_MAX_DELAY_MS]);
  assert.equal(d.delayFor('ada', t0 + 20), 0, 'another user waits nothing');
  assert.equal(d.delayFor('tom', t0 + 60_011), 0, 'the failures aged out');
  // A flood of made-up names keeps at most maxKeys of them; the user being guessed at, failing last, is kept.
  for (let i = 0; i < 1000; i++) d.fail(`made-up-${i}`, t0 + 100);
  for (let i = 0; i < 10; i++) d.fail('tom', t0 + 200);
  assert.ok(d.size <= 100, `${d.size} users remembered`);
  assert.equal(d.delayFor('tom', t0 + 300), LOGIN_MAX_DELAY_MS);
});
