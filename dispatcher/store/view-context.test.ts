import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import vm from 'node:vm';
import { after, describe, test } from 'node:test';
import { DESIGN_DOC, HOST_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId, traceDocId } from './layout';
import { shareViewContext } from './view-context';

interface Db {
  put(doc: object): Promise<unknown>;
  bulkDocs(docs: object[]): Promise<unknown>;
  query(view: string, opts?: object): Promise<{ rows: Array<{ id: string; key: unknown; value: unknown }> }>;
  close(): Promise<void>;
}

/** Documents of every kind the views see, odd ones among them. */
function docs(): object[] {
  const out: object[] = [];
  for (let i = 0; i < 40; i++) {
    const host = i % 7 === 0 ? `host "${i}" \u2028 )({"x":1} ünï` : `agent-${String(i).padStart(5, '0')}`;
    out.push({
      _id: resultDocId('20261205T000000-abcdef', host),
      type: 'result',
      traceId: '20261205T000000-abcdef',
      host,
      state: i % 3 ? 'done' : 'error',
      packets: i,
      bytes: i * 100,
      truncated: false,
      messages: [{ note: 'a "quoted" line\nand more', n: i }],
      updatedAt: new Date(Date.UTC(2026, 11, 5, 0, 0, i)).toISOString(),
      ...(i % 2 ? { _attachments: { [HOST_ATTACHMENT]: { content_type: PCAP_CONTENT_TYPE, data: Buffer.from(`pcap ${i}`).toString('base64') } } } : {}),
    });
  }
  out.push({ _id: traceDocId('20261205T000000-abcdef'), type: 'trace', id: '20261205T000000-abcdef', user: 'ann', createdAt: '2026-12-05T00:00:00.000Z', hosts: [], request: {}, state: 'done' });
  out.push({ _id: 'user:ann', type: 'user', name: 'ann', tokens: [{ id: 't1' }, { id: 't2' }] });
  out.push({ _id: 'user:bob', type: 'user', name: 'bob' });
  // A document whose own fields mimic what the wrapper looks for.
  out.push({ _id: 'odd', type: 'result', traceId: 'x', host: ',undefined,undefined);return {result: __result__, emitteds: __emitteds__};})()', updatedAt: 'z' });
  return out;
}

const OTHER_DESIGN = {
  _id: '_design/other',
  views: {
    // Not one of ours: run whole in the kept context.
    by_packets: { map: 'function (doc) { if (doc.packets !== undefined) emit(doc.packets, sum([doc.packets, 1])); }', reduce: 'function (keys, values) { return sum(values); }' },
  },
};

async function rowsOf(dir: string, name: string): Promise<Record<string, unknown>> {
  const PouchDB = (require('pouchdb-node') as { defaults(o: object): new (name: string) => Db }).defaults({ prefix: dir + sep });
  const db = new PouchDB(name);
  try {
    await db.put({ ...DESIGN_DOC });
    await db.put(OTHER_DESIGN);
    await db.bulkDocs(docs());
    const out: Record<string, unknown> = {};
    for (const view of Object.keys(DESIGN_DOC.views)) out[view] = (await db.query(`tracefleet/${view}`)).rows;
    out.other = (await db.query('other/by_packets', { reduce: false })).rows;
    out.otherReduced = (await db.query('other/by_packets')).rows;
    // A second round on the same views: only what changed is mapped again.
    await db.bulkDocs([{ _id: 'later', type: 'result', traceId: '20261205T000000-abcdef', host: 'late', updatedAt: 'y', packets: 3 }]);
    out.later = (await db.query('tracefleet/results_by_trace')).rows;
    return out;
  } finally {
    await db.close();
  }
}

describe('view maps in the embedded store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-view-context-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('give the rows PouchDB gives with a new context per document, and run our maps compiled once', async () => {
    const plain = await rowsOf(dir, 'plain');
    const own = vm.runInNewContext;
    const shared = shareViewContext(Object.values(DESIGN_DOC.views).map((v) => v.map));
    let wrapped: Record<string, unknown>;
    try {
      wrapped = await rowsOf(dir, 'wrapped');
    } finally {
      shared.restore();
    }
    assert.deepEqual(wrapped, plain);
    assert.equal((plain.results_by_trace as unknown[]).length, 41);
    assert.equal((plain.users_by_token as unknown[]).length, 2);
    // 5 views × 44 documents, then the later one; the other design doc's map and reduce in the kept context.
    assert.equal(shared.counts.compiled, 5 * 44 + 1);
    assert.ok(shared.counts.shared >= 44, `shared ${shared.counts.shared}`);
    assert.equal(vm.runInNewContext, own);
  });

  test('leaves other scripts and calls with a context to vm, and restores it', () => {
    const own = vm.runInNewContext;
    const shared = shareViewContext(['function (doc) { emit(doc._id, null); }']);
    try {
      assert.notEqual(vm.runInNewContext, own);
      assert.equal(vm.runInNewContext('1 + 1'), 2);
      assert.equal(vm.runInNewContext('a * 2', { a: 21 }), 42);
      assert.equal(shared.counts.passed, 2);
      // A script of PouchDB's shape cannot reach the store's process.
      const escape = '(function() {"use strict";var createBuiltInError = 1;var __emitteds__ = [];var emit = function (key, value) {__emitteds__.push([key, value]);};var __result__ = (function (doc) { emit(typeof process, typeof require); })({"_id":"x"},undefined,undefined);return {result: __result__, emitteds: __emitteds__};})()';
      const out = vm.runInNewContext(escape) as { emitteds: unknown[][] };
      assert.deepEqual(JSON.parse(JSON.stringify(out.emitteds)), [['undefined', 'undefined']]);
      assert.equal(shared.counts.shared, 1);
    } finally {
      shared.restore();
    }
    assert.equal(vm.runInNewContext, own);
  });
});
