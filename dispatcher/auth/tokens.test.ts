import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FailureLimiter } from './ratelimit';
import { API_TOKEN_LENGTH, hashSecret, isApiTokenId, newApiToken, parseApiToken, secretMatches } from './tokens';

describe('API tokens', () => {
  test('tf_<id>_<secret>: parsed back by position, only the hash of the secret is kept', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = newApiToken();
      // Letters and digits in the id: one starting with '-' would read as options on the command line.
      assert.match(t.token, /^tf_[A-Za-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
      assert.equal(t.token.length, API_TOKEN_LENGTH);
      const p = parseApiToken(t.token);
      assert.ok(p, t.token);
      assert.equal(p.id, t.id);
      assert.ok(isApiTokenId(p.id));
      assert.equal(Buffer.from(p.secret, 'base64url').length, 32);
      assert.equal(t.hash, hashSecret(p.secret));
      assert.ok(!t.hash.includes(p.secret));
      assert.ok(secretMatches(p.secret, t.hash));
      seen.add(t.id);
    }
    assert.equal(seen.size, 2000, 'ids do not repeat');
  });

  test('an id holding the separator character still parses', () => {
    const token = `tf_ab_cd-ef_gh__${'A'.repeat(43)}`;
    assert.deepEqual(parseApiToken(token), { id: 'ab_cd-ef_gh_', secret: 'A'.repeat(43) });
  });

  test('anything else is not a token; a wrong secret does not match', () => {
    const t = newApiToken();
    for (const bad of ['', 'tf_', t.token.slice(1), `${t.token}x`, t.token.replace('tf_', 'tx_'), `${t.token.slice(0, 15)}.${t.token.slice(16)}`, t.token.replace(/.$/, '=')]) {
      assert.equal(parseApiToken(bad), null, bad);
    }
    const other = parseApiToken(newApiToken().token)!;
    assert.equal(secretMatches(other.secret, t.hash), false);
    assert.equal(secretMatches(parseApiToken(t.token)!.secret, 'not a hash'), false);
  });
});

describe('failure limiter', () => {
  test('refuses a key past its failures in the window, until the oldest ages out', () => {
    const l = new FailureLimiter({ maxFailures: 3, windowMs: 1000 });
    const t0 = 1_000_000;
    assert.equal(l.retryAfter('a', t0), 0);
    l.fail('a', t0);
    l.fail('a', t0 + 100);
    assert.equal(l.retryAfter('a', t0 + 200), 0);
    l.fail('a', t0 + 200);
    assert.equal(l.retryAfter('a', t0 + 300), 700);
    assert.equal(l.retryAfter('b', t0 + 300), 0, 'other keys are not affected');
    assert.equal(l.retryAfter('a', t0 + 1000), 0, 'the first failure aged out');
    assert.equal(l.retryAfter('a', t0 + 999), 1);
  });

  test('a success forgets the failures; memory stays bounded', () => {
    const l = new FailureLimiter({ maxFailures: 2, windowMs: 60_000, maxKeys: 100 });
    l.fail('a', 1);
    l.succeed('a');
    l.fail('a', 2);
    assert.equal(l.retryAfter('a', 3), 0);
    for (let i = 0; i < 1000; i++) l.fail(`k${i}`, 10);
    assert.equal(l.size, 100);
  });
});
