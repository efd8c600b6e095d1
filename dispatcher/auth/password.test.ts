import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuthError } from './errors';
import { DUMMY_HASH, checkPasswordPolicy, hashPassword, verifyPassword } from './password';

describe('password hashing', () => {
  test('scrypt with a fresh salt: the right password verifies, a wrong one does not', async () => {
    const h1 = await hashPassword('correct horse');
    const h2 = await hashPassword('correct horse');
    const parts = h1.split('$');
    assert.equal(parts[0], 'scrypt');
    assert.ok(Number(parts[1]) >= 16384, `N ${parts[1]}`);
    assert.equal(Buffer.from(parts[4], 'base64').length, 16);
    assert.equal(Buffer.from(parts[5], 'base64').length, 32);
    assert.notEqual(h1, h2, 'two hashes of one password differ by their salt');
    assert.ok(!h1.includes('correct horse'));
    assert.equal(await verifyPassword('correct horse', h1), true);
    assert.equal(await verifyPassword('correct horse', h2), true);
    assert.equal(await verifyPassword('correct horsf', h1), false);
    assert.equal(await verifyPassword('', h1), false);
  });

  test('a hash with other (weaker) parameters still verifies: they are read from the string', async () => {
    const { scryptSync } = await import('node:crypto');
    const salt = Buffer.from('0123456789abcdef');
    const key = scryptSync('old password', salt, 64, { N: 1024, r: 4, p: 2 });
    const encoded = `scrypt$1024$4$2$${salt.toString('base64')}$${key.toString('base64')}`;
    assert.equal(await verifyPassword('old password', encoded), true);
    assert.equal(await verifyPassword('old passwore', encoded), false);
  });

  test('the same password typed in another Unicode normal form verifies', async () => {
    const composed = 'caf\u00e9 au lait';
    const decomposed = 'cafe\u0301 au lait';
    assert.equal(await verifyPassword(decomposed, await hashPassword(composed)), true);
  });

  test('unreadable or hostile stored hashes never verify, and cost nothing', async () => {
    const good = await hashPassword('correct horse');
    const [, , , , salt, key] = good.split('$');
    const started = Date.now();
    for (const bad of [
      '',
      'plain',
      good.replace('scrypt', 'bcrypt'),
      `scrypt$${1 << 30}$8$1$${salt}$${key}`, // 1 TiB of memory
      `scrypt$16384$8$1000$${salt}$${key}`,
      `scrypt$1000$8$1$${salt}$${key}`, // N not a power of two
      `scrypt$16384$8$1$$${key}`,
      `scrypt$16384$8$1$${salt}$`,
      `${good}$extra`,
    ]) {
      assert.equal(await verifyPassword('correct horse', bad), false, bad);
    }
    assert.ok(Date.now() - started < 2000, 'no hostile parameter was run');
  });

  test('the dummy hash for unknown users costs a real check and matches nothing', async () => {
    const real = await hashPassword('correct horse');
    assert.deepEqual(DUMMY_HASH.split('$').slice(0, 4), real.split('$').slice(0, 4), 'same parameters, same cost');
    for (const pw of ['', 'correct horse', '\0'.repeat(8)]) assert.equal(await verifyPassword(pw, DUMMY_HASH), false);
  });

  test('policy: at least 8 characters, no surrounding white space, a clear error otherwise', () => {
    assert.doesNotThrow(() => checkPasswordPolicy('12345678'));
    assert.doesNotThrow(() => checkPasswordPolicy('pass with spaces'));
    const refused = (pw: string, re: RegExp) =>
      assert.throws(
        () => checkPasswordPolicy(pw),
        (e: unknown) => e instanceof AuthError && e.kind === 'bad_request' && re.test(e.message),
      );
    refused('1234567', /too short \(7 characters\): use at least 8/);
    refused('', /too short/);
    // Characters, not UTF-16 units: 4 emoji are 8 units but 4 characters.
    refused('\u{1F600}\u{1F600}\u{1F600}\u{1F600}', /too short \(4 characters\)/);
    refused(' 12345678', /white space/);
    refused('12345678\n', /white space/);
    refused('x'.repeat(1025), /too long/);
  });
});
