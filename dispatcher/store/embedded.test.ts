// The embedded server itself. These tests run whether or not COUCHDB_URL is
// set: they are about the server the dispatcher starts when it is not.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import nano from 'nano';
import { cpuProfileFlags, startEmbeddedCouch } from './embedded';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, traceDocId } from './layout';
import { PART_BYTES, partDocId } from './parts';
import { StoreUnreachableError, TraceStore } from './store';
import { silentLogger } from '../../shared/log/log';
import { memoryLogger } from '../../test/support/log';

const MB = 1024 * 1024;

/** The URL without its credentials. */
function bare(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.toString().replace(/\/$/, '');
}

/** Every file and folder under dir with its permission bits. */
function modes(dir: string): Array<{ path: string; mode: number; isDir: boolean }> {
  const out = [{ path: dir, mode: statSync(dir).mode & 0o777, isDir: true }];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const st = statSync(join(dir, name));
    out.push({ path: join(dir, name), mode: st.mode & 0o777, isDir: st.isDirectory() });
  }
  return out;
}

describe('embedded CouchDB-compatible server', { timeout: 120_000 }, () => {
  let dataDir: string;
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'tracefleet-embedded-'));
  });
  after(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('speaks enough CouchDB for nano, says where its data is, keeps it across restarts', async () => {
    const log = memoryLogger('info');
    const couch = await startEmbeddedCouch({ dataDir, logger: log.logger });
    let traceId: string;
    try {
      assert.match(couch.url, /^http:\/\/tracefleet:[^@]+@127\.0\.0\.1:\d+$/);
      assert.equal(log.records.length, 1);
      assert.match(log.records[0].msg, /embedded/);
      assert.deepEqual([log.records[0].url, log.records[0].dataDir, log.records[0].storePid], [bare(couch.url), dataDir, couch.pid]);
      assert.ok(!log.lines[0].includes(new URL(couch.url).password), 'the password is not logged');

      const server = nano(couch.url);
      await server.db.create('plain');
      const db = server.use<{ kind: string; n: number }>('plain');
      const a = await db.insert({ _id: 'a', kind: 'x', n: 1 });
      await db.insert({ _id: 'b', kind: 'y', n: 2 });
      await assert.rejects(db.insert({ _id: 'a', kind: 'x', n: 9 }), (e: { statusCode?: number }) => e.statusCode === 409);
      const a2 = await db.insert({ _id: 'a', _rev: a.rev, kind: 'x', n: 3 });
      assert.ok(a2.rev.startsWith('2-'));
      assert.deepEqual((await db.list()).rows.map((r) => r.id), ['a', 'b']);
      assert.deepEqual((await db.find({ selector: { kind: 'y' } })).docs.map((d) => d._id), ['b']);
      // Attachments: a stale rev conflicts, a missing database is a 404.
      await assert.rejects(db.attachment.insert('a', 'x.bin', Buffer.from('x'), 'application/octet-stream', { rev: a.rev }), (e: { statusCode?: number }) => e.statusCode === 409);
      const withAtt = await db.attachment.insert('a', 'x.bin', Buffer.from('xyz'), 'application/octet-stream', { rev: a2.rev });
      assert.equal((await db.attachment.get('a', 'x.bin')).toString(), 'xyz');
      assert.equal((await db.get('a'))._rev, (typeof withAtt === 'string' ? JSON.parse(withAtt) : withAtt).rev);
      await assert.rejects(server.use('missing').attachment.insert('a', 'x.bin', Buffer.from('x'), 'application/octet-stream'), (e: { statusCode?: number }) => e.statusCode === 404);
      await db.destroy('b', (await db.get('b'))._rev);
      assert.deepEqual((await db.list()).rows.map((r) => r.id), ['a']);

      const store = await TraceStore.open({ url: couch.url });
      const trace = await store.createTrace({ request: { number: '5551234' }, user: 'ann', hosts: ['h'] });
      traceId = trace.id;
      await store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.from('abc')]));
    } finally {
      await couch.stop();
      await couch.stop();
    }

    const again = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    try {
      const store = await TraceStore.open({ url: again.url });
      assert.deepEqual((await store.listTraces()).traces.map((t) => t.id), [traceId]);
      const chunks: Buffer[] = [];
      for await (const c of store.getAttachmentStream(`trace:${traceId}`, MERGED_ATTACHMENT)) chunks.push(c as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'abc');
      assert.equal((await nano(again.url).use<{ n: number }>('plain').get('a')).n, 3);
    } finally {
      await again.stop();
    }
  });

  test('refuses reads and writes without its credentials; its files are for this user only', async () => {
    const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    try {
      const store = await TraceStore.open({ url: couch.url, db: 'locked' });
      await store.createTrace({ request: { number: '5551234' }, user: 'ann', hosts: ['h'] });
      const open = bare(couch.url);
      for (const [method, path] of [['GET', '/_all_dbs'], ['GET', '/locked/_all_docs'], ['GET', '/locked/config:secrets'], ['PUT', '/intruder'], ['PUT', '/locked/user:eve'], ['PUT', '/locked/x/a.bin']] as const) {
        const res = await fetch(`${open}${path}`, { method, ...(method === 'PUT' ? { body: '{"roles":["admin"]}', headers: { 'content-type': 'application/json' } } : {}) });
        assert.equal(res.status, 401, `${method} ${path} without credentials: ${res.status}`);
        const wrong = await fetch(`${open}${path}`, { method, headers: { authorization: `Basic ${Buffer.from('tracefleet:guess').toString('base64')}` } });
        assert.equal(wrong.status, 401, `${method} ${path} with a wrong password: ${wrong.status}`);
      }
      assert.ok(!(await nano(couch.url).db.list()).includes('intruder'), 'the refused write made nothing');
      assert.equal((await nano(couch.url).use('locked').get('user:eve').catch((e: { statusCode?: number }) => e.statusCode)), 404);
    } finally {
      await couch.stop();
    }
    for (const f of modes(dataDir)) {
      assert.equal(f.mode & 0o077, 0, `${f.path} is ${f.mode.toString(8)}: readable by others`);
      if (f.path === dataDir) assert.equal(f.mode, 0o700);
      if (f.path.endsWith('.credentials.json')) assert.equal(f.mode, 0o600);
    }
  });

  test('a stopped server is unreachable; a second one on the same data refuses to start', async () => {
    const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    const store = await TraceStore.open({ url: couch.url, db: 'second' });
    await assert.rejects(startEmbeddedCouch({ dataDir, logger: silentLogger }), /in use by another process/);
    await couch.stop();
    await assert.rejects(store.listTraces(), (e) => e instanceof StoreUnreachableError && e.message.includes(`:${new URL(couch.url).port} is unreachable`));
  });

  test('stop() when the server died a moment ago (a Ctrl-C to the process group) ends cleanly, with no EPIPE crash', async () => {
    const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    process.kill(couch.pid, 'SIGKILL');
    // Wait, without yielding, until the child is a zombie with no thread left (the last one out closes its
    // files, the IPC pipe among them) but not yet reaped, so the parent still believes it is connected and
    // sends into a closed pipe.
    const until = Date.now() + 10_000;
    const zombie = () => / Z /.test(readFileSync(`/proc/${couch.pid}/stat`, 'utf8').replace(/^.*\)/, '')) && readdirSync(`/proc/${couch.pid}/task`).length === 1;
    while (!zombie()) {
      if (Date.now() > until) assert.fail(`the embedded store (pid ${couch.pid}) did not die within 10 s of SIGKILL`);
    }
    const crashes: Error[] = [];
    const onUncaught = (e: Error) => crashes.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      await couch.stop();
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    assert.deepEqual(crashes.map((e) => e.message), []);
  });

  test('a server that dies is logged; only loopback addresses are accepted', async () => {
    const log = memoryLogger('info');
    const lines = log.records;
    const couch = await startEmbeddedCouch({ dataDir, logger: log.logger });
    const died = new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (lines.length > 1) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
    });
    process.kill(couch.pid, 'SIGKILL');
    await died;
    assert.match(lines[1].msg, /exited unexpectedly/);
    assert.equal(lines[1].level, 60);
    await couch.stop();

    await assert.rejects(startEmbeddedCouch({ dataDir, host: '0.0.0.0', logger: silentLogger }), /loopback only/);
    const v6 = await startEmbeddedCouch({ dataDir, host: '::1', logger: silentLogger }).catch((e: Error) => e);
    if (v6 instanceof Error) {
      // Hosts without IPv6 loopback cannot listen there; say so rather than pass silently.
      assert.match(v6.message, /failed to start|cannot listen/);
    } else {
      assert.match(v6.url, /^http:\/\/tracefleet:[^@]+@\[::1\]:\d+$/);
      assert.ok((await TraceStore.open({ url: v6.url, db: 'v6' })).dbName === 'v6');
      await v6.stop();
    }
  });

  test('a big attachment is stored and read in parts: the store grows by less than 256 MiB, readers get one whole file', { timeout: 600_000 }, async () => {
    const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${couch.pid}/status`, 'utf8'))![1]) * 1024;
    // Before the parts, express-pouchdb grew about 9 bytes per byte stored: 160 MiB would have cost some 1.4 GiB.
    const size = 160 * MB + 12345;
    // Bytes that differ along the file, so a part out of place or twice would show in the digest.
    const source = (upTo: number): Readable =>
      Readable.from(
        (function* () {
          for (let off = 0; off < upTo; off += MB) {
            const b = Buffer.alloc(Math.min(MB, upTo - off), (off / MB) & 0xff);
            if (b.length >= 4) b.writeUInt32BE(off, 0);
            yield b;
          }
        })(),
      );
    const want = createHash('sha256');
    for await (const c of source(size)) want.update(c as Buffer);
    try {
      const store = await TraceStore.open({ url: couch.url, db: 'big' });
      const trace = await store.createTrace({ request: { number: '5551234' }, user: 'ann', hosts: ['h'] });
      const base = rss();
      let peak = base;
      const sampler = setInterval(() => (peak = Math.max(peak, rss())), 25);
      try {
        const put = await store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, source(size));
        assert.equal(put.bytes, size);
        const got = createHash('sha256');
        let n = 0;
        for await (const c of store.getAttachmentStream(trace._id, MERGED_ATTACHMENT)) {
          got.update(c as Buffer);
          n += (c as Buffer).length;
        }
        assert.equal(n, size);
        assert.equal(got.digest('hex'), want.copy().digest('hex'));
      } finally {
        clearInterval(sampler);
      }
      assert.ok(peak - base <= 256 * MB, `the store grew by ${((peak - base) / MB).toFixed(0)} MiB for a ${(size / MB).toFixed(0)} MiB attachment`);

      // What a reader of the document and of the store's HTTP sees.
      assert.equal((await store.getAttachmentInfo(trace._id, MERGED_ATTACHMENT))?.length, size);
      const url = `${bare(couch.url)}/big/${encodeURIComponent(trace._id)}/${MERGED_ATTACHMENT}`;
      const auth = { authorization: `Basic ${Buffer.from(decodeURIComponent(new URL(couch.url).username + ':' + new URL(couch.url).password)).toString('base64')}` };
      const head = await fetch(url, { method: 'HEAD', headers: auth });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('content-length'), String(size));
      const parts = async () => (await nano(couch.url).use('big').list()).rows.filter((r) => r.id.includes('~')).length;
      assert.equal(await parts(), Math.ceil(size / PART_BYTES) - 1);

      // An upload cut off half-way stores nothing and leaves no parts behind.
      const cut = source(3 * PART_BYTES + 7);
      const broken = new Readable({ read() {} });
      void (async () => {
        for await (const c of cut) broken.push(c);
        broken.destroy(new Error('the agent went away'));
      })();
      await assert.rejects(store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, broken), /went away/);
      assert.equal((await store.getAttachmentInfo(trace._id, MERGED_ATTACHMENT))?.length, size);
      const deadline = Date.now() + 10_000;
      while ((await parts()) !== Math.ceil(size / PART_BYTES) - 1 && Date.now() < deadline) await sleep(100);
      assert.equal(await parts(), Math.ceil(size / PART_BYTES) - 1, 'the cut-off upload left parts');

      // A small attachment in its place: stored whole, the old parts gone.
      await store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.from('small')]));
      const small: Buffer[] = [];
      for await (const c of store.getAttachmentStream(trace._id, MERGED_ATTACHMENT)) small.push(c as Buffer);
      assert.equal(Buffer.concat(small).toString(), 'small');
      assert.equal(await parts(), 0);

      // Deleting the trace deletes the parts of its attachments too.
      await store.putAttachmentStream(trace._id, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, source(2 * PART_BYTES + 1));
      assert.equal(await parts(), 2);
      await store.deleteTrace(trace.id);
      assert.equal(await parts(), 0);
    } finally {
      await couch.stop();
    }
  });
  test("a trace that names its host's packets.pcap as its merged PCAP: a direct GET of its merged.pcap answers that attachment, whole or a range", async () => {
    const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    try {
      const store = await TraceStore.open({ url: couch.url, db: 'named' });
      const trace = await store.createTrace({ request: { number: '5551234' }, user: 'ann', hosts: ['h'] });
      const other = await store.createTrace({ request: { number: '5551234' }, user: 'ann', hosts: ['h'] });
      const result = await store.putResult({ traceId: trace.id, host: 'h', state: 'done' });
      const auth = { authorization: `Basic ${Buffer.from(decodeURIComponent(new URL(couch.url).username + ':' + new URL(couch.url).password)).toString('base64')}` };
      const mergedUrl = (id: string) => `${bare(couch.url)}/named/${encodeURIComponent(traceDocId(id))}/${MERGED_ATTACHMENT}`;
      const get = async (id: string, headers: Record<string, string> = {}) => {
        const r = await fetch(mergedUrl(id), { headers: { ...auth, ...headers } });
        return { status: r.status, type: r.headers.get('content-type'), range: r.headers.get('content-range'), body: Buffer.from(await r.arrayBuffer()) };
      };
      const name = async (id: string, doc: string) => {
        const stub = (await store.getAttachmentInfo(doc, HOST_ATTACHMENT))!;
        await store.updateTrace(id, (d) => {
          d.mergedAttachment = { doc, name: HOST_ATTACHMENT, content_type: stub.content_type, length: stub.length, digest: stub.digest };
        });
      };
      // Not named yet: no merged PCAP, as before.
      assert.equal((await get(trace.id)).status, 404);
      // Two parts and a bit (each part different), then a file in one piece.
      const big = Buffer.alloc(2 * PART_BYTES + 99);
      for (let off = 0; off < big.length; off += 4096) big.writeUInt32BE(off, off);
      for (const body of [big, Buffer.from('one part only')]) {
        await store.putAttachmentStream(result._id, HOST_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([body]));
        await name(trace.id, result._id);
        const whole = await get(trace.id);
        assert.deepEqual([whole.status, whole.type], [200, PCAP_CONTENT_TYPE]);
        assert.ok(whole.body.equals(body), `the merged PCAP read directly is packets.pcap (${whole.body.length} bytes of ${body.length})`);
        const head = await fetch(mergedUrl(trace.id), { method: 'HEAD', headers: auth });
        assert.deepEqual([head.status, head.headers.get('content-length')], [200, String(body.length)]);
        const part = await get(trace.id, { range: 'bytes=5-' });
        assert.deepEqual([part.status, part.range], [206, `bytes 5-${body.length - 1}/${body.length}`]);
        assert.ok(part.body.equals(body.subarray(5)));
      }
      // packets.pcap replaced since it was named: not the bytes the trace says, so not served as its merged PCAP.
      await store.putAttachmentStream(result._id, HOST_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.from('replaced, and longer')]));
      assert.equal((await get(trace.id)).status, 404);
      // Only the trace's own host results count: another trace's name for this one's result is no merged PCAP.
      await name(trace.id, result._id);
      await name(other.id, result._id);
      assert.equal((await get(other.id)).status, 404);
      assert.equal((await get(trace.id)).body.toString(), 'replaced, and longer');
      // An own merged.pcap wins over the name.
      await store.putAttachmentStream(traceDocId(trace.id), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([Buffer.from('own')]));
      assert.equal((await get(trace.id)).body.toString(), 'own');
    } finally {
      await couch.stop();
    }
  });
  test('an attachment stored in parts of another size (1 MiB, before parts were 4 MiB) still reads whole', async () => {
    const couch = await startEmbeddedCouch({ dataDir, logger: silentLogger });
    try {
      const store = await TraceStore.open({ url: couch.url, db: 'older' });
      const trace = await store.createTrace({ request: { number: '5551234' }, user: 'ann', hosts: ['h'] });
      // Written as the server wrote it with 1 MiB parts: the first part in the document, the rest in part documents.
      const body = Buffer.alloc(2 * MB + 777);
      for (let off = 0; off < body.length; off += 4096) body.writeUInt32BE(off, off);
      const pieces = [body.subarray(0, MB), body.subarray(MB, 2 * MB), body.subarray(2 * MB)];
      const db = nano(couch.url).use<Record<string, unknown>>('older');
      const upload = 'a1b2c3d4e5f6';
      for (let k = 1; k < pieces.length; k++) {
        const id = partDocId(traceDocId(trace.id), MERGED_ATTACHMENT, upload, k);
        await db.insert({ _id: id, type: 'attachment-part', doc: traceDocId(trace.id), name: MERGED_ATTACHMENT, upload, index: k, _attachments: { part: { content_type: 'application/octet-stream', data: pieces[k].toString('base64') } } } as never);
      }
      const doc = (await db.get(traceDocId(trace.id))) as Record<string, unknown>;
      await db.insert({ ...doc, _attachments: { [MERGED_ATTACHMENT]: { content_type: PCAP_CONTENT_TYPE, data: pieces[0].toString('base64') } }, attachmentParts: { [MERGED_ATTACHMENT]: { upload, parts: 3, length: body.length, content_type: PCAP_CONTENT_TYPE } } } as never);
      assert.equal((await store.getAttachmentInfo(traceDocId(trace.id), MERGED_ATTACHMENT))?.length, body.length);
      assert.deepEqual(Buffer.concat((await store.getAttachmentStream(traceDocId(trace.id), MERGED_ATTACHMENT).toArray()) as Buffer[]), body);
      // A direct reader's byte ranges: 206 with those bytes, across part boundaries; 416 past the end; the whole file otherwise.
      const u = new URL(couch.url);
      const auth = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
      const url = `${bare(couch.url)}/older/${encodeURIComponent(traceDocId(trace.id))}/${MERGED_ATTACHMENT}`;
      const get = async (range?: string, method = 'GET') => {
        const r = await fetch(url, { method, headers: { authorization: auth, ...(range ? { range } : {}) } });
        return { status: r.status, range: r.headers.get('content-range'), length: r.headers.get('content-length'), body: Buffer.from(await r.arrayBuffer()) };
      };
      const cases: Array<[string, number, number]> = [
        [`bytes=${MB - 10}-${2 * MB + 9}`, MB - 10, 2 * MB + 9], // the end of part 0, all of part 1, the start of part 2
        ['bytes=0-0', 0, 0],
        [`bytes=${MB}-`, MB, body.length - 1],
        ['bytes=-777', body.length - 777, body.length - 1],
        [`bytes=5-${10 * MB}`, 5, body.length - 1], // an end past the file is cut to it
      ];
      for (const [range, start, end] of cases) {
        const r = await get(range);
        assert.equal(r.status, 206, range);
        assert.equal(r.range, `bytes ${start}-${end}/${body.length}`, range);
        assert.equal(Number(r.length), end - start + 1, range);
        assert.ok(r.body.equals(body.subarray(start, end + 1)), `${range}: the bytes asked for`);
      }
      const past = await get(`bytes=${body.length}-`);
      assert.deepEqual([past.status, past.range], [416, `bytes */${body.length}`]);
      for (const whole of [undefined, 'bytes=0-1,5-9', 'lines=1-2', 'bytes=9-5']) {
        const r = await get(whole);
        assert.equal(r.status, 200, String(whole));
        assert.ok(r.body.equals(body), `${whole}: the whole attachment`);
      }
      const head = await get(undefined, 'HEAD');
      assert.deepEqual([head.status, Number(head.length), head.body.length], [200, body.length, 0]);
      // And a new upload in its place replaces it in 4 MiB parts, the old parts gone.
      const parts = async () => (await nano(couch.url).use('older').list()).rows.filter((r) => r.id.includes('~')).length;
      const next = Buffer.alloc(PART_BYTES + 5, 7);
      await store.putAttachmentStream(traceDocId(trace.id), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([next]));
      assert.equal(await parts(), 1);
      assert.deepEqual(Buffer.concat((await store.getAttachmentStream(traceDocId(trace.id), MERGED_ATTACHMENT).toArray()) as Buffer[]), next);
    } finally {
      await couch.stop();
    }
  });
});

test("the store's child gets the dispatcher's CPU-profile flags with their values, and no other flag", () => {
  assert.deepEqual(cpuProfileFlags(['--cpu-prof', '--cpu-prof-dir', '/p', '--inspect', '--cpu-prof-name=x.cpuprofile', '--test']), ['--cpu-prof', '--cpu-prof-dir', '/p', '--cpu-prof-name=x.cpuprofile']);
  assert.deepEqual(cpuProfileFlags(['--cpu-prof-interval', '100', '--max-old-space-size=512']), ['--cpu-prof-interval', '100']);
  assert.deepEqual(cpuProfileFlags(['--enable-source-maps']), []);
});
