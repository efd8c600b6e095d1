import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import nano from 'nano';
import { DESIGN_DOC, HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId, traceDocId } from './layout';
import { storedAttachment } from './parts';
import { StoreError, StoreUnreachableError, TraceStore } from './store';
import { TestCouch, closedPort, openTestStore, startRelay, startTestCouch, uniqueDbName } from '../../test/support/couch';

const DAY = 86_400_000;

/** Deterministic bytes without holding them: xorshift32 into 64 KiB chunks. */
function* pseudoRandomChunks(total: number, seed: number): Generator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let left = total; left > 0; ) {
    const n = Math.min(65536, left);
    const buf = Buffer.allocUnsafe(n);
    for (let i = 0; i + 4 <= n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeUInt32LE(x >>> 0, i);
    }
    for (let i = n - (n % 4); i < n; i++) buf[i] = i & 0xff;
    left -= n;
    yield buf;
  }
}

/**
 * V8 frees spent Buffers lazily, after tens of MB of them, so RSS sampled
 * during a transfer measures the collector's laziness as much as what the
 * transfer holds. Collecting every MB makes it measure the latter.
 */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

async function drain(stream: Readable, everyMb?: () => void): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  let mark = 0;
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
    if (everyMb && bytes - mark >= 1 << 20) {
      mark = bytes;
      everyMb();
    }
  }
  return { bytes, sha256: hash.digest('hex') };
}

async function rejectsWith(p: Promise<unknown>, check: (err: unknown) => boolean, what: string): Promise<void> {
  await assert.rejects(p, (err) => {
    assert.ok(check(err), `${what}: unexpected ${String(err)}`);
    return true;
  });
}

describe('TraceStore against a real CouchDB-compatible server', { timeout: 180_000 }, () => {
  let couch: TestCouch;
  let store: TraceStore;
  let drop: () => Promise<void>;

  before(async () => {
    couch = await startTestCouch();
    ({ store, drop } = await openTestStore(couch.url));
  });
  after(async () => {
    await drop?.();
    await couch?.stop();
  });

  test('open() twice at once on a new database, then again: one design doc, both usable', async () => {
    const db = uniqueDbName();
    try {
      const [a, b] = await Promise.all([TraceStore.open({ url: couch.url, db }), TraceStore.open({ url: couch.url, db })]);
      const c = await TraceStore.open({ url: couch.url, db });
      const ddoc = await nano(couch.url).use(db).get(DESIGN_DOC._id);
      assert.equal((ddoc as unknown as { version: number }).version, DESIGN_DOC.version);
      assert.ok(ddoc._rev.startsWith('1-'), `design doc rewritten: ${ddoc._rev}`);
      for (const s of [a, b, c]) assert.equal((await s.ping()).db, db);
      const t = await a.createTrace({ request: {}, user: 'u', hosts: [] });
      assert.equal((await b.getTrace(t.id))?.id, t.id);
    } finally {
      await nano(couch.url).db.destroy(db).catch(() => {});
    }
  });

  test('an older design doc is replaced by the current one', async () => {
    const db = uniqueDbName();
    try {
      await nano(couch.url).db.create(db);
      await nano(couch.url).use(db).insert({ _id: DESIGN_DOC._id, language: 'javascript', version: 0, views: {} } as nano.MaybeDocument);
      const s = await TraceStore.open({ url: couch.url, db });
      const ddoc = (await nano(couch.url).use(db).get(DESIGN_DOC._id)) as unknown as { version: number; views: object };
      assert.equal(ddoc.version, DESIGN_DOC.version);
      assert.deepEqual(Object.keys(ddoc.views).sort(), Object.keys(DESIGN_DOC.views).sort());
      assert.deepEqual((await s.listTraces()).traces, []);
    } finally {
      await nano(couch.url).db.destroy(db).catch(() => {});
    }
  });

  test('traces: create, get, update, list newest first in pages, by user', async () => {
    const { store: s, drop: dropLocal } = await openTestStore(couch.url);
    try {
      const base = Date.parse('2024-03-01T10:00:00Z');
      const made = [];
      for (let i = 0; i < 7; i++) {
        made.push(
          await s.createTrace({
            id: `t${i}`,
            request: { number: `555000${i}`, rtp: i % 2 === 0 },
            user: i % 3 === 0 ? 'ann' : 'bob',
            hosts: ['h1', 'h2'],
            // t5 and t6 share a time: pages must neither repeat nor skip one.
            createdAt: new Date(base + Math.min(i, 5) * 60_000),
          }),
        );
      }
      const got = await s.getTrace('t3');
      assert.equal(got?._id, traceDocId('t3'));
      assert.deepEqual(got?.request, { number: '5550003', rtp: false });
      assert.equal(got?.state, 'running');
      assert.equal(got?.createdAt, new Date(base + 3 * 60_000).toISOString());
      assert.equal(await s.getTrace('nope'), null);
      await rejectsWith(s.createTrace({ id: 't3', request: {}, user: 'x', hosts: [] }), (e) => e instanceof StoreError && e.statusCode === 409 && /already exists/.test(e.message), 'duplicate');
      await assert.rejects(s.getTrace('bad:id'), /not valid/);

      const updated = await s.updateTrace('t3', (d) => {
        d.state = 'done';
        d.finishedAt = new Date(base + 4 * 60_000).toISOString();
        d.merged = { packets: 12, bytes: 3400, duplicates: 1 };
      });
      assert.equal(updated.state, 'done');
      assert.ok(updated._rev?.startsWith('2-'));
      assert.deepEqual((await s.getTrace('t3'))?.merged, { packets: 12, bytes: 3400, duplicates: 1 });
      const untouched = await s.updateTrace('t3', () => null);
      assert.equal(untouched._rev, updated._rev);
      await rejectsWith(s.updateTrace('nope', (d) => d), (e) => e instanceof StoreError && e.statusCode === 404, 'update of missing');

      const seen: string[] = [];
      let bookmark: string | undefined;
      let pages = 0;
      do {
        const page = await s.listTraces({ limit: 3, bookmark });
        assert.ok(page.traces.length <= 3);
        seen.push(...page.traces.map((t) => t.id));
        bookmark = page.bookmark;
        pages++;
      } while (bookmark);
      assert.equal(pages, 3);
      assert.deepEqual(seen, ['t6', 't5', 't4', 't3', 't2', 't1', 't0']);

      const ann = await s.listTraces({ user: 'ann', limit: 2 });
      assert.deepEqual(ann.traces.map((t) => t.id), ['t6', 't3']);
      assert.ok(ann.bookmark);
      const ann2 = await s.listTraces({ user: 'ann', limit: 2, bookmark: ann.bookmark });
      assert.deepEqual(ann2.traces.map((t) => t.id), ['t0']);
      assert.equal(ann2.bookmark, undefined);
      assert.deepEqual((await s.listTraces({ user: 'bob' })).traces.map((t) => t.id), ['t5', 't4', 't2', 't1']);
      assert.deepEqual((await s.listTraces({ user: 'nobody' })).traces, []);
      await rejectsWith(s.listTraces({ user: 'bob', bookmark: ann.bookmark }), (e) => e instanceof StoreError && e.statusCode === 400, 'foreign bookmark');
      await rejectsWith(s.listTraces({ bookmark: 'garbage' }), (e) => e instanceof StoreError && /bookmark/.test(e.message), 'bad bookmark');
    } finally {
      await dropLocal();
    }
  });

  test('results: one per host, listed per trace, updated in place, attachment kept', async () => {
    const a = await store.createTrace({ request: { callId: 'x@y' }, user: 'ann', hosts: ['edge-1', 'core-1'] });
    const b = await store.createTrace({ request: { callId: 'z@y' }, user: 'ann', hosts: ['edge-1'] });
    const q = await store.putResult({ traceId: a.id, host: 'edge-1' });
    assert.equal(q._id, resultDocId(a.id, 'edge-1'));
    assert.equal(q.state, 'queued');
    assert.equal(q.packets, 0);
    await store.putResult({ traceId: a.id, host: 'core-1', state: 'started' });
    await store.putResult({ traceId: b.id, host: 'edge-1', state: 'started' });

    const messages = [
      {
        ts: '1709287200.000000001', time: '2024-03-01T10:00:00.000000001Z', src: '10.0.0.1:5060', dst: '10.0.0.2:5060',
        transport: 'udp' as const, method: 'INVITE', status: null, reason: null, callId: 'x@y', cseq: '1 INVITE',
        from: '5551000', to: '5551234', ruri: '5551234', correlation: null, bytes: 900, packets: 1,
      },
    ];
    const before = (await store.getResult(a.id, 'edge-1'))!;
    await new Promise((r) => setTimeout(r, 5));
    const done = await store.updateResult(a.id, 'edge-1', (d) => ({ ...d, state: 'done', packets: 4, bytes: 2100, truncated: true, messages }));
    assert.equal(done.state, 'done');
    assert.ok(done.updatedAt > before.updatedAt, 'updatedAt moves on');
    const { bytes } = await store.putAttachmentStream(done._id, HOST_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.from('pcap bytes')]));
    assert.equal(bytes, 10);

    // A later putResult overwrites the fields given, keeps the rest and the attachment.
    const again = await store.putResult({ traceId: a.id, host: 'edge-1', state: 'error', error: 'ring gone' });
    assert.equal(again.state, 'error');
    assert.equal(again.error, 'ring gone');
    assert.equal(again.packets, 4);
    assert.deepEqual(again.messages, messages);
    assert.equal((await store.getAttachmentInfo(again._id, HOST_ATTACHMENT))?.length, 10);
    // And so does an update that returns a document without _attachments.
    await store.updateResult(a.id, 'edge-1', (d) => {
      const { _attachments, ...rest } = d;
      void _attachments;
      return { ...rest, state: 'done', truncated: false };
    });
    assert.equal((await drain(store.getAttachmentStream(again._id, HOST_ATTACHMENT))).bytes, 10);

    const listed = await store.listResults(a.id);
    assert.deepEqual(listed.map((r) => [r.host, r.state]), [['core-1', 'started'], ['edge-1', 'done']]);
    assert.deepEqual(listed[1].messages, messages);
    assert.equal(listed[1].truncated, false);
    assert.deepEqual((await store.listResults(b.id)).map((r) => r.host), ['edge-1']);
    assert.deepEqual(await store.listResults('no-such-trace'), []);
    // By id, as listed (the hosts in any order, one named twice, one without a document, one deleted).
    const gone = await store.putResult({ traceId: a.id, host: 'gone-1' });
    await nano(couch.url).use(store.dbName).destroy(gone._id, gone._rev!);
    const byId = await store.resultsOf(a.id, ['edge-1', 'gone-1', 'none-1', 'core-1', 'edge-1']);
    assert.deepEqual(byId.map((r) => [r.host, r.state, r._rev]), (await store.listResults(a.id)).filter((r) => r.host !== 'gone-1').map((r) => [r.host, r.state, r._rev]));
    assert.deepEqual(byId[1].messages, messages);
    assert.equal(byId[1]._attachments?.[HOST_ATTACHMENT]?.length, 10);
    assert.deepEqual(await store.resultsOf(b.id, []), []);
  });

  test('results in bulk: created queued with their revisions, written final with or without them, a stale one a conflict', async () => {
    const t = await store.createTrace({ request: {}, user: 'ann', hosts: ['h1', 'h2', 'h3', 'h4'] });
    await store.putResult({ traceId: t.id, host: 'h4', state: 'done' });
    const revs = await store.createResults(['h1', 'h2', 'h3', 'h4'].map((host) => ({ traceId: t.id, host })));
    // h4 existed: left as it was, and no revision of ours for it.
    assert.deepEqual([...revs.keys()].sort(), ['h1', 'h2', 'h3'].map((h) => resultDocId(t.id, h)));
    for (const [id, rev] of revs) assert.equal((await store.getResult(t.id, id.slice(id.lastIndexOf(':') + 1)))?._rev, rev);
    assert.equal((await store.getResult(t.id, 'h4'))?.state, 'done');
    const pcap = Buffer.from('small pcap');
    const final = (host: string) => ({ traceId: t.id, host, state: 'done' as const, packets: 1, bytes: pcap.length });
    const errors = await store.writeResults([
      { result: final('h1'), pcap, rev: revs.get(resultDocId(t.id, 'h1')) },
      { result: final('h2'), pcap },
      { result: final('h3'), pcap, rev: '1-00000000000000000000000000000000' },
    ]);
    assert.deepEqual(errors.map((e) => e?.statusCode ?? null), [null, null, 409]);
    for (const h of ['h1', 'h2']) {
      const r = (await store.getResult(t.id, h))!;
      assert.equal(r.state, 'done');
      assert.equal(r._attachments?.[HOST_ATTACHMENT]?.length, pcap.length);
      assert.match(r._rev!, /^2-/);
    }
    assert.equal((await store.getResult(t.id, 'h3'))?.state, 'queued');
    // Written again without the stale revision (as ResultBatch does after a conflict).
    assert.deepEqual(await store.writeResults([{ result: final('h3'), pcap }]), [null]);
    assert.equal((await store.getResult(t.id, 'h3'))?.state, 'done');
  });

  test('a 20 MB attachment streams in and out byte-identical without growing this process by its size', async (t) => {
    const size = 20 * 1024 * 1024;
    const trace = await store.createTrace({ request: {}, user: 'ann', hosts: [] });
    const source = createHash('sha256');
    const chunks = pseudoRandomChunks(size, 0x5eed);
    const gc = collector();
    const input = Readable.from(
      (function* () {
        let n = 0;
        for (const c of chunks) {
          source.update(c);
          if (++n % 16 === 0) gc();
          yield c;
        }
      })(),
    );
    gc();

    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    try {
      const up = await store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, input);
      assert.equal(up.bytes, size);
      const info = await store.getAttachmentInfo(trace._id, MERGED_ATTACHMENT);
      assert.equal(info?.length, size);
      assert.equal(info?.content_type, PCAP_CONTENT_TYPE);
      const down = await drain(store.getAttachmentStream(trace._id, MERGED_ATTACHMENT), gc);
      assert.equal(down.bytes, size);
      assert.equal(down.sha256, source.digest('hex'));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    const growthMb = (peak - rss0) / 2 ** 20;
    t.diagnostic(`RSS growth during the 20 MB round trip: ${growthMb.toFixed(1)} MB`);
    assert.ok(growthMb < 40, `RSS grew by ${growthMb.toFixed(1)} MB during a 20 MB transfer`);
    assert.equal(storedAttachment(await store.getTrace(trace.id), MERGED_ATTACHMENT)?.length, size);
  });

  test('attachment errors: missing doc or attachment, a failing source stores nothing', async () => {
    const trace = await store.createTrace({ request: {}, user: 'ann', hosts: [] });
    await assert.rejects(drain(store.getAttachmentStream(trace._id, 'nope.pcap')), (e) => {
      assert.ok(e instanceof StoreError && e.statusCode === 404);
      assert.match(e.message, new RegExp(`${trace._id} has no attachment nope.pcap`));
      return true;
    });
    await rejectsWith(drain(store.getAttachmentStream('trace:nope', MERGED_ATTACHMENT)), (e) => e instanceof StoreError && e.statusCode === 404, 'missing doc');
    await rejectsWith(
      store.putAttachmentStream('trace:nope', MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.alloc(10)])),
      (e) => e instanceof StoreError && e.statusCode === 404 && /no such document/.test(e.message),
      'upload to missing doc',
    );

    // A source that fails half-way, one that just stops, one already dead.
    const halfSent = (): Readable => {
      let sent = 0;
      return new Readable({
        read() {
          if (sent++ < 4) this.push(Buffer.alloc(64 * 1024, 1));
        },
      });
    };
    const failing = halfSent();
    failing.once('pause', () => setTimeout(() => failing.destroy(new Error('agent went away')), 20));
    await rejectsWith(store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, failing), (e) => (e as Error).message === 'agent went away', 'source error');
    const stopping = halfSent();
    stopping.once('pause', () => setTimeout(() => stopping.destroy(), 20));
    await rejectsWith(store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, stopping), (e) => /premature close/i.test((e as Error).message), 'early close');
    const dead = halfSent();
    dead.on('error', () => {});
    dead.destroy(new Error('gone before we started'));
    await rejectsWith(store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, dead), (e) => /gone before|closed before/.test((e as Error).message), 'dead source');
    assert.equal(await store.getAttachmentInfo(trace._id, MERGED_ATTACHMENT), null);
    // The document is still writable afterwards.
    assert.equal((await store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.alloc(5)]))).bytes, 5);
  });

  test('deleting a trace removes its results and attachments, and only those', async () => {
    const doomed = await store.createTrace({ request: {}, user: 'ann', hosts: ['a', 'b'] });
    const kept = await store.createTrace({ request: {}, user: 'ann', hosts: ['a'] });
    for (const host of ['a', 'b']) {
      const r = await store.putResult({ traceId: doomed.id, host, state: 'done' });
      await store.putAttachmentStream(r._id, HOST_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.alloc(1000, 7)]));
    }
    await store.putAttachmentStream(doomed._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.alloc(2000, 7)]));
    await store.putResult({ traceId: kept.id, host: 'a' });

    assert.deepEqual(await store.deleteTrace(doomed.id), { trace: true, results: 2 });
    assert.equal(await store.getTrace(doomed.id), null);
    assert.deepEqual(await store.listResults(doomed.id), []);
    assert.equal(await store.getResult(doomed.id, 'a'), null);
    await rejectsWith(drain(store.getAttachmentStream(resultDocId(doomed.id, 'a'), HOST_ATTACHMENT)), (e) => e instanceof StoreError && e.statusCode === 404, 'deleted attachment');
    assert.ok(!(await store.listTraces({ limit: 1000 })).traces.some((t) => t.id === doomed.id));
    assert.equal((await store.listResults(kept.id)).length, 1);
    assert.deepEqual(await store.deleteTrace(doomed.id), { trace: false, results: 0 });
  });

  test('purgeOlderThan deletes old traces with their results, and old orphan results', async () => {
    const { store: s, drop: dropLocal } = await openTestStore(couch.url);
    try {
      const now = new Date();
      const old = await s.createTrace({ id: 'old', request: {}, user: 'ann', hosts: ['a'], createdAt: new Date(now.getTime() - 40 * DAY) });
      const mid = await s.createTrace({ id: 'mid', request: {}, user: 'ann', hosts: ['a'], createdAt: new Date(now.getTime() - 10 * DAY) });
      await s.createTrace({ id: 'new', request: {}, user: 'bob', hosts: ['a'], createdAt: now });
      for (const t of [old, mid]) await s.putResult({ traceId: t.id, host: 'a', state: 'done' });
      // A result whose trace is gone (e.g. written after a delete), written
      // behind the store's back so that its updatedAt can be old.
      await nano(couch.url).use(s.dbName).insert({
        _id: resultDocId('gone', 'a'), type: 'result', traceId: 'gone', host: 'a', state: 'lost',
        packets: 0, bytes: 0, truncated: false, messages: [], updatedAt: new Date(now.getTime() - 35 * DAY).toISOString(),
      } as nano.MaybeDocument);

      assert.equal(await s.purgeOlderThan(30, now), 1);
      assert.deepEqual((await s.listTraces()).traces.map((t) => t.id), ['new', 'mid']);
      assert.deepEqual(await s.listResults('old'), []);
      assert.deepEqual(await s.listResults('gone'), []);
      assert.equal((await s.listResults('mid')).length, 1);
      assert.equal(await s.purgeOlderThan(30, now), 0);
      assert.equal(await s.purgeOlderThan(5, now), 1);
      assert.deepEqual((await s.listTraces()).traces.map((t) => t.id), ['new']);
      await rejectsWith(s.purgeOlderThan(Number.NaN), (e) => e instanceof StoreError, 'NaN days');
    } finally {
      await dropLocal();
    }
  });

  test('concurrent updateTrace calls lose no write (409s are retried)', async () => {
    const t = await store.createTrace({ request: {}, user: 'ann', hosts: [] });
    const bump = (d: { request: Record<string, unknown> }, who: string): void => {
      d.request[who] = ((d.request[who] as number | undefined) ?? 0) + 1;
    };
    // Three stores stand for three dispatchers: their writes really race.
    const stores = [store, await TraceStore.open({ url: couch.url, db: store.dbName }), await TraceStore.open({ url: couch.url, db: store.dbName })];
    await Promise.all(stores.flatMap((s, i) => Array.from({ length: 10 }, () => s.updateTrace(t.id, (d) => bump(d, `s${i}`)))));
    assert.deepEqual((await store.getTrace(t.id))?.request, { s0: 10, s1: 10, s2: 10 });

    // A conflict for certain: A's mutation waits for B's whole update.
    const [a, b] = [stores[1], stores[2]];
    const retriesBefore = (await a.metrics.conflictRetries.get()).values[0]?.value ?? 0;
    let calls = 0;
    await a.updateTrace(t.id, async (d) => {
      if (calls++ === 0) await b.updateTrace(t.id, (x) => bump(x, 'b'));
      bump(d, 'a');
    });
    assert.equal(calls, 2);
    assert.ok(((await a.metrics.conflictRetries.get()).values[0]?.value ?? 0) > retriesBefore);
    const final = await store.getTrace(t.id);
    assert.equal(final?.request.a, 1);
    assert.equal(final?.request.b, 1);
  });

  test('users: put, get, update tokens, find by token, replace', async () => {
    assert.equal(await store.getUser('carol'), null);
    const u = await store.putUser({ name: 'carol', roles: ['tracer'], passwordHash: 'scrypt$salt$hash' });
    assert.equal(u._id, 'user:carol');
    assert.deepEqual(u.tokens, []);
    await store.updateUser('carol', (d) => {
      d.tokens.push({ id: 'tok1', hash: 'h1', createdAt: new Date().toISOString() });
    });
    assert.equal((await store.findUserByTokenId('tok1'))?.name, 'carol');
    assert.equal(await store.findUserByTokenId('tok2'), null);
    const replaced = await store.putUser({ name: 'carol', roles: ['viewer'], passwordHash: 'scrypt$salt2$hash2' });
    assert.deepEqual(replaced.roles, ['viewer']);
    assert.deepEqual(replaced.tokens, []);
    assert.equal((await store.getUser('carol'))?.passwordHash, 'scrypt$salt2$hash2');
    assert.equal(await store.findUserByTokenId('tok1'), null);
  });

  test('a store that goes away: every method rejects saying it is unreachable', async () => {
    const relay = await startRelay(couch.url);
    const s = await TraceStore.open({ url: relay.url, db: store.dbName });
    const t = await s.createTrace({ request: {}, user: 'ann', hosts: ['a'] });
    await s.putResult({ traceId: t.id, host: 'a' });
    assert.equal((await s.ping()).db, store.dbName);
    await relay.stop();

    const unreachable = (e: unknown): boolean =>
      e instanceof StoreUnreachableError && e.message.includes(`${new URL(relay.url).host} is unreachable`) && /is unreachable/.test(e.message) && /COUCHDB_URL/.test(e.message);
    const calls: [string, () => Promise<unknown>][] = [
      ['ping', () => s.ping()],
      ['createTrace', () => s.createTrace({ request: {}, user: 'ann', hosts: [] })],
      ['getTrace', () => s.getTrace(t.id)],
      ['updateTrace', () => s.updateTrace(t.id, (d) => d)],
      ['listTraces', () => s.listTraces()],
      ['putResult', () => s.putResult({ traceId: t.id, host: 'b' })],
      ['updateResult', () => s.updateResult(t.id, 'a', (d) => d)],
      ['listResults', () => s.listResults(t.id)],
      ['resultsOf', () => s.resultsOf(t.id, ['a'])],
      ['putAttachmentStream', () => s.putAttachmentStream(t._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.alloc(10)]))],
      ['getAttachmentStream', () => drain(s.getAttachmentStream(t._id, MERGED_ATTACHMENT))],
      ['deleteTrace', () => s.deleteTrace(t.id)],
      ['purgeOlderThan', () => s.purgeOlderThan(1)],
      ['getUser', () => s.getUser('ann')],
      ['putUser', () => s.putUser({ name: 'ann', roles: [], passwordHash: 'x' })],
    ];
    for (const [name, call] of calls) await rejectsWith(call(), unreachable, name);

    const port = await closedPort();
    await rejectsWith(TraceStore.open({ url: `http://127.0.0.1:${port}` }), unreachableAt(port), 'open');
    // Credentials in the URL never show in the message.
    await rejectsWith(
      TraceStore.open({ url: `http://admin:s3cret@127.0.0.1:${port}` }),
      (e) => e instanceof StoreUnreachableError && !e.message.includes('s3cret'),
      'open with credentials',
    );
  });
});

function unreachableAt(port: number): (e: unknown) => boolean {
  return (e) => e instanceof StoreUnreachableError && e.message.includes(`127.0.0.1:${port}`) && /unreachable/.test(e.message);
}
