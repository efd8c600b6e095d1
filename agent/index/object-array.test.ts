import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { DialogKeys } from './dialog-keys';
import { MessageArena } from './message-arena';
import { objectArray } from './object-array';
import { IndexState } from './state';

// V8's own test of an array's element kind; the flag is read when the function is compiled.
setFlagsFromString('--allow-natives-syntax');
const hasObjectElements = new Function('a', 'return %HasObjectElements(a)') as (a: unknown[]) => boolean;

test('objectArray: empty, and an array of objects before its first push, as the per-segment arrays are', () => {
  assert.equal(hasObjectElements([]), false, 'a fresh [] starts as small integers (else this test proves nothing)');
  const a = objectArray<string>();
  assert.equal(a.length, 0);
  assert.equal(hasObjectElements(a), true);
  a.push('x', 'y');
  assert.deepEqual(a, ['x', 'y']);
  assert.equal(hasObjectElements(new IndexState().addresses), true, 'IndexState.addresses');
  assert.equal(hasObjectElements(new DialogKeys().ids), true, 'DialogKeys.ids');
  assert.equal(hasObjectElements((new DialogKeys() as unknown as { numTexts: string[] }).numTexts), true, 'DialogKeys.numTexts');
  assert.equal(hasObjectElements((new MessageArena() as unknown as { chunks: Buffer[] }).chunks), true, 'MessageArena.chunks');
});
