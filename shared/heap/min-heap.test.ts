import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MinHeap } from './min-heap';

test('MinHeap pops in order, through interleaved pushes and pops, with duplicates', () => {
  // A fixed pseudo-random sequence, so a failure can be replayed.
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 100;
  const heap = new MinHeap<number>((a, b) => a < b);
  const model: number[] = [];
  for (let round = 0; round < 2000; round++) {
    if (model.length === 0 || next() < 60) {
      const x = next();
      heap.push(x);
      model.push(x);
    } else {
      model.sort((a, b) => a - b);
      assert.equal(heap.peek(), model[0]);
      assert.equal(heap.pop(), model.shift());
    }
    assert.equal(heap.size, model.length);
  }
  const rest: number[] = [];
  while (heap.size > 0) rest.push(heap.pop()!);
  assert.deepEqual(rest, model.sort((a, b) => a - b));
  assert.equal(heap.pop(), undefined);
  assert.equal(heap.peek(), undefined);
});
