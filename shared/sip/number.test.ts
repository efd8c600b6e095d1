import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeNumberQuery, numberMatches, sipDigits } from './number';

test('normalizeNumberQuery strips visual separators', () => {
  assert.equal(normalizeNumberQuery('+1 (555) 123-4567'), '15551234567');
  assert.equal(normalizeNumberQuery('555.123.4567'), '5551234567');
  assert.equal(normalizeNumberQuery('\t+49 30-1234 '), '49301234');
  assert.equal(normalizeNumberQuery('1234'), '1234');
});

test('normalizeNumberQuery rejects short queries and foreign characters with a clear message', () => {
  assert.throws(() => normalizeNumberQuery('+1 23'), /has 3 digit\(s\), at least 4 are needed/);
  assert.throws(() => normalizeNumberQuery(''), /has 0 digit\(s\)/);
  assert.throws(() => normalizeNumberQuery('555-CALL-NOW'), /unexpected character "C" at position 4/);
  assert.throws(() => normalizeNumberQuery('sip:5551234567@x'), /unexpected character "s"/);
  assert.throws(() => normalizeNumberQuery('5551234567#'), /only digits, '\+', spaces/);
});

test('sipDigits keeps digits only', () => {
  assert.equal(sipDigits('+1-555-123-4567'), '15551234567');
  assert.equal(sipDigits('0015551234567'), '0015551234567');
  assert.equal(sipDigits('alice'), '');
  assert.equal(sipDigits('a1b22c333'), '122333');
  assert.equal(sipDigits(null), '');
});

test('numberMatches is a suffix match on digits', () => {
  const q = normalizeNumberQuery('+1 (555) 123-4567');
  assert.equal(numberMatches(sipDigits('+15551234567'), q), true);
  assert.equal(numberMatches(sipDigits('0015551234567'), q), true);
  assert.equal(numberMatches(sipDigits('5551234567'), q), false);
  assert.equal(numberMatches(sipDigits('5551234567'), normalizeNumberQuery('555 123 4567')), true);
  assert.equal(numberMatches(sipDigits('+15551234567'), '4567'), true);
  assert.equal(numberMatches(sipDigits('+15551234567'), '4568'), false);
  assert.equal(numberMatches(sipDigits('+15551234567'), '567'), false);
  assert.equal(numberMatches('', '1234'), false);
});
