import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CELL, safeText, table } from './format';

test('bidirectional overrides and zero-width characters are escaped like ESC', () => {
  for (const c of ['\u202a', '\u202e', '\u2066', '\u2069', '\u200b', '\u200f', '\u2060', '\ufeff']) {
    const out = safeText(`a${c}b`);
    assert.equal(out, `a\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}b`);
  }
  assert.equal(safeText('\x1b[2J'), '\\x1b[2J');
  assert.equal(safeText('Décliné ☎'), 'Décliné ☎', 'other non-ASCII text stays');
});

test('a long cell is cut with an ellipsis, so the columns after it stay on screen', () => {
  const reason = 'x'.repeat(5000);
  const lines = table([{ title: 'STATUS' }, { title: 'REASON' }, { title: 'FROM' }], [['486', reason, 'alice']]);
  assert.ok(lines[1].length < MAX_CELL + 30, `line of ${lines[1].length}`);
  assert.ok(lines[1].includes('…') && lines[1].endsWith('alice'));
});
