import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { enforceBudget, ringBytes } from './budget';
import { indexPathFor, segmentBaseName } from './layout';

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0) * 1000;

/** Segments of 1000 bytes (+100-byte index where asked), one second apart, streams interleaved. */
function makeRing(spec: Array<{ stream: string; idx?: boolean }>): { dir: string; paths: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'tf-budget-'));
  const paths = spec.map((s, i) => {
    const p = join(dir, segmentBaseName(s.stream, T0 + i * 1_000_000) + '.pcap');
    writeFileSync(p, Buffer.alloc(1000));
    if (s.idx) writeFileSync(indexPathFor(p), Buffer.alloc(100));
    return p;
  });
  return { dir, paths };
}

test('deletes the oldest segments across streams, each with its index, until the ring fits', () => {
  const { dir, paths } = makeRing([
    { stream: 'eth0', idx: true },
    { stream: 'eth1', idx: true },
    { stream: 'eth0', idx: true },
    { stream: 'eth1' },
    { stream: 'eth0', idx: true },
  ]);
  try {
    writeFileSync(join(dir, 'notes.txt'), Buffer.alloc(5000));
    assert.equal(ringBytes(dir), 5000 + 400, 'segments and indexes count, other files do not');
    const deleted = enforceBudget(dir, { maxBytes: 2300, keep: new Set() });
    assert.deepEqual(deleted, paths.slice(0, 3));
    for (const p of paths.slice(0, 3)) {
      assert.equal(existsSync(p), false);
      assert.equal(existsSync(indexPathFor(p)), false, 'index goes with its segment');
    }
    assert.equal(ringBytes(dir), 2100);
    assert.ok(existsSync(join(dir, 'notes.txt')));
    assert.deepEqual(enforceBudget(dir, { maxBytes: 2100, keep: new Set() }), [], 'within budget: nothing to do');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('never deletes kept segments nor the newest of a protected stream; stops when only they are left', () => {
  const { dir, paths } = makeRing([{ stream: 'eth0' }, { stream: 'eth0' }, { stream: 'eth1' }, { stream: 'eth1' }, { stream: 'eth0' }]);
  try {
    const deleted = enforceBudget(dir, { maxBytes: 0, keep: new Set([paths[0]]), keepNewestOf: ['eth1'] });
    assert.deepEqual(deleted, [paths[1], paths[2], paths[4]]);
    assert.deepEqual(readdirSync(dir).sort(), [paths[0], paths[3]].map((p) => p.slice(dir.length + 1)).sort());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('minFreeBytes beyond what the filesystem can give deletes everything not kept', () => {
  const { dir, paths } = makeRing([{ stream: 'lo', idx: true }, { stream: 'lo', idx: true }, { stream: 'lo' }]);
  try {
    const deleted = enforceBudget(dir, { maxBytes: 1 << 30, minFreeBytes: Number.MAX_SAFE_INTEGER, keep: new Set([paths[2]]) });
    assert.deepEqual(deleted, paths.slice(0, 2));
    assert.deepEqual(readdirSync(dir), [paths[2].slice(dir.length + 1)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a small minFreeBytes on a filesystem with room deletes nothing', () => {
  const { dir } = makeRing([{ stream: 'lo' }, { stream: 'lo' }]);
  try {
    assert.deepEqual(enforceBudget(dir, { maxBytes: 1 << 30, minFreeBytes: 1, keep: new Set() }), []);
    assert.equal(readdirSync(dir).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing ring directory is a clear error', () => {
  assert.throws(() => enforceBudget('/nonexistent/tf-ring', { maxBytes: 1, keep: new Set() }), /ring directory \/nonexistent\/tf-ring does not exist/);
});
