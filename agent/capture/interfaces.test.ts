import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listInterfaces } from './interfaces';

test('lists lo as a loopback interface with its addresses', () => {
  const all = listInterfaces();
  const lo = all.find((i) => i.name === 'lo');
  assert.ok(lo, `lo missing from ${all.map((i) => i.name).join(', ')}`);
  assert.equal(lo.loopback, true);
  assert.ok(lo.addresses.some((a) => a.addr === '127.0.0.1'));
  const any = all.find((i) => i.name === 'any');
  if (any) assert.equal(any.loopback, false, 'the "any" pseudo-device is not loopback');
  assert.equal(new Set(all.map((i) => i.name)).size, all.length);
});
