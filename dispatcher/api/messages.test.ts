import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareTs } from './messages';

describe('compareTs', () => {
  test('orders epoch timestamps exactly, to the nanosecond, whatever the number of decimals', () => {
    assert.equal(compareTs('1718188953.000000001', '1718188953.000000002'), -1);
    assert.equal(compareTs('1718188953.5', '1718188953.500000000'), 0);
    assert.equal(compareTs('999999999.9', '1000000000.0'), -1);
    assert.equal(compareTs('1718188953', '1718188952.999999999'), 1);
    // Malformed ones sort after every real time, among themselves by text.
    assert.equal(compareTs('garbage', '1.0'), 1);
    assert.equal(compareTs('1.0', 'x'), -1);
    assert.equal(compareTs('a', 'b'), -1);
    const sorted = ['3.1', '1.000000002', 'z', '1.000000001', '2'].sort(compareTs);
    assert.deepEqual(sorted, ['1.000000001', '1.000000002', '2', '3.1', 'z']);
  });
});
