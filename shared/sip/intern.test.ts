import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteInterner, latin1 } from './intern';
import { prng } from '../../test/support/packets';

test('ByteInterner gives the latin1 string of any bytes, found again or made afresh', () => {
  const rnd = prng(1305);
  const pick = (n: number) => Math.floor(rnd() * n);
  // Values that agree in length and in their first and last 4 bytes (where a slot is chosen) and differ
  // inside, every byte value (0x80 and up too), lengths 0 to 300 across the 128-byte limit.
  const values: Buffer[] = [];
  for (let i = 0; i < 400; i++) {
    const n = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 33, 127, 128, 129, 300][pick(16)];
    const b = Buffer.alloc(n);
    for (let k = 0; k < n; k++) b[k] = rnd() < 0.8 ? 32 + pick(95) : pick(256);
    values.push(b);
    if (n >= 9) {
      const twin = Buffer.from(b);
      twin[4 + pick(n - 8)] ^= 1 + pick(255);
      values.push(twin);
    }
  }
  for (const slots of [1, 2, 64, 8192]) {
    const it = new ByteInterner(slots);
    // Read from inside a bigger buffer, at an odd offset, and from a chunk that changes under the same object.
    const chunk = Buffer.alloc(4096);
    for (let round = 0; round < 3000; round++) {
      const v = values[pick(values.length)];
      const at = 1 + pick(chunk.length - v.length - 1);
      chunk.fill(pick(256));
      v.copy(chunk, at);
      const got = it.get(chunk, at, at + v.length);
      assert.equal(got, latin1(v, 0, v.length), `slots ${slots}, value ${v.toString('hex')}`);
    }
  }
  const it = new ByteInterner(64);
  const cid = Buffer.from('xa8f3c0ffee12@10.1.2.3x', 'latin1');
  assert.equal(it.get(cid, 1, cid.length - 1), 'a8f3c0ffee12@10.1.2.3');
  assert.equal(it.get(Buffer.from(cid), 1, cid.length - 1), 'a8f3c0ffee12@10.1.2.3');
  // A buffer over 16 MiB, whose view is not kept between calls, read before and after a small one.
  const big = Buffer.alloc(17 * 1024 * 1024, 0x41);
  big.write('15550100999', big.length - 11, 'latin1');
  assert.equal(it.get(big, big.length - 11, big.length), '15550100999');
  assert.equal(it.get(cid, 1, 9), 'a8f3c0ff');
  big.write('15550100998', big.length - 11, 'latin1');
  assert.equal(it.get(big, big.length - 11, big.length), '15550100998');
  assert.equal(it.get(big, 0, 40), 'A'.repeat(40));
  assert.throws(() => new ByteInterner(100), RangeError);
});
