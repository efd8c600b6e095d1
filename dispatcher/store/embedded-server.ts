/*
 * Child-process entry of the embedded store (see embedded.ts): express-pouchdb
 * over PouchDB's LevelDB adapter, listening on loopback. It talks to its
 * parent over the IPC channel only: `ready`/`error` out, `stop` in.
 */

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { IncomingMessage, RequestListener, Server, ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sep } from 'node:path';
import { type LogSettings, initProcessLogger } from '../../shared/log/log';
import { type AttachmentParts, PART_BYTES, type PartedDoc, byteRange, mergedPcap, partDocId, storedAttachment } from './parts';
import { MERGED_ATTACHMENT, type TraceDoc } from './layout';

export interface EmbeddedServerArgs {
  dataDir: string;
  /** Read here, not passed on the command line, where any local user could read it in ps. */
  credentialsFile: string;
  host: string;
  port: number;
  /** Log like the dispatcher that started this process. */
  log: LogSettings;
}

export type ChildMessage = { type: 'ready'; port: number } | { type: 'error'; message: string };
export type ParentMessage = { type: 'stop' };

interface PouchDb {
  get(docId: string): Promise<PartedDoc & { _rev: string } & Record<string, unknown>>;
  allDocs(opts: { keys: string[] }): Promise<{ rows: Array<{ id?: string; value?: { rev: string; deleted?: boolean } }> }>;
  put(doc: object): Promise<{ ok: boolean; id: string; rev: string }>;
  bulkDocs(docs: object[]): Promise<Array<{ id?: string; rev?: string; error?: string; reason?: string }>>;
  getAttachment(docId: string, name: string): Promise<Buffer>;
}

interface PouchStatic {
  new (name: string): PouchDb;
  defaults(opts: Record<string, unknown>): PouchStatic;
  allDbs(): Promise<string[]>;
}

interface PouchError {
  status?: number;
  name?: string;
  message?: string;
}

function sendJson(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** `/db/doc/attachment` for an ordinary document, or null. */
function attachmentPath(url: string): { db: string; docId: string; name: string; rev?: string } | null {
  const u = new URL(url, 'http://x');
  const parts = u.pathname.split('/').slice(1);
  if (parts.length < 3 || parts.some((p) => p === '')) return null;
  let decoded: string[];
  try {
    decoded = parts.map((p) => decodeURIComponent(p));
  } catch {
    return null; // malformed escapes: express-pouchdb answers those
  }
  const [db, docId, ...rest] = decoded;
  // Design and local documents, and _-prefixed endpoints, stay with express-pouchdb.
  if (db.startsWith('_') || docId.startsWith('_')) return null;
  return { db, docId, name: rest.join('/'), rev: u.searchParams.get('rev') ?? undefined };
}

const DB_MISSING = { error: 'not_found', reason: 'Database does not exist.' };

function sendError(res: ServerResponse, err: PouchError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status ?? 500, { error: err.name ?? 'error', reason: err.message ?? String(err) });
}

async function openDb(PouchDB: PouchStatic, name: string): Promise<PouchDb | null> {
  return (await PouchDB.allDbs()).includes(name) ? new PouchDB(name) : null;
}

/** The document, or null when it does not exist (deleted counts as not existing). */
async function getDoc(db: PouchDb, docId: string): Promise<(PartedDoc & { _rev: string } & Record<string, unknown>) | null> {
  try {
    return await db.get(docId);
  } catch (err) {
    if ((err as PouchError).status === 404) return null;
    throw err;
  }
}

/** Deletes part documents, as far as it can: what is left is deleted with its trace (see parts.ts). */
async function dropParts(db: PouchDb, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 1000) {
    const { rows } = await db.allDocs({ keys: ids.slice(i, i + 1000) });
    const docs = rows.filter((r) => r.id && r.value && !r.value.deleted).map((r) => ({ _id: r.id, _rev: r.value!.rev, _deleted: true }));
    if (docs.length) await db.bulkDocs(docs);
  }
}

/**
 * Writes `doc` with its attachment `name` given (bytes or a stub) and its
 * parts entry (null: not in parts), in one write: the last step of an
 * upload. The parts of the upload it replaced, which nobody can
 * reach any more, are deleted before the answer, so what the client sees
 * next is clean. Empties `written` once the document names those parts.
 */
async function commitAttachment(db: PouchDb, doc: PartedDoc & { _rev?: string } & Record<string, unknown>, name: string, attachment: object, parts: AttachmentParts | null, written: string[]): Promise<{ id: string; rev: string }> {
  const old = doc.attachmentParts?.[name];
  // The other attachments stay as their stubs.
  const next: Record<string, unknown> = { ...doc, _attachments: { ...(doc._attachments ?? {}), [name]: attachment } };
  const map = { ...(doc.attachmentParts ?? {}) };
  if (parts) map[name] = parts;
  else delete map[name];
  if (Object.keys(map).length) next.attachmentParts = map;
  else delete next.attachmentParts;
  const out = await db.put(next);
  written.length = 0;
  if (old && old.upload !== parts?.upload) {
    await dropParts(db, Array.from({ length: old.parts - 1 }, (_, i) => partDocId(doc._id, name, old.upload, i + 1))).catch(() => undefined);
  }
  return out;
}

/**
 * PUT /db/doc/attachment, in place of express-pouchdb's handler, which
 * reads the whole body into memory and has PouchDB copy it several times
 * more (about 9 bytes of memory per byte stored), and stores whatever it
 * received when the upload is cut off. Here the body is read a part at a
 * time: an attachment up to PART_BYTES is stored as it was, a bigger one in
 * parts (see parts.ts), each part written before more of the body is read.
 * The document is written last: an upload that does not arrive whole
 * stores nothing (its parts are deleted).
 */
function putAttachment(PouchDB: PouchStatic, req: IncomingMessage, res: ServerResponse, target: NonNullable<ReturnType<typeof attachmentPath>>): void {
  const written: string[] = [];
  let db: PouchDb | null = null;
  void (async () => {
    db = await openDb(PouchDB, target.db);
    if (!db) {
      req.resume();
      return sendJson(res, 404, DB_MISSING);
    }
    const type = req.headers['content-type'] ?? 'application/octet-stream';
    const upload = randomBytes(6).toString('hex');
    let first: Buffer | null = null;
    let part = Buffer.allocUnsafe(PART_BYTES);
    let used = 0;
    let total = 0;
    let parts = 0;
    const store = async (b: Buffer): Promise<void> => {
      if (parts === 0) first = b;
      else {
        const id = partDocId(target.docId, target.name, upload, parts);
        written.push(id);
        await db!.put({ _id: id, type: 'attachment-part', doc: target.docId, name: target.name, upload, index: parts, _attachments: { part: { content_type: 'application/octet-stream', data: b } } });
      }
      parts++;
    };
    // Async iteration reads the next chunk only when the last part is stored: the socket's backpressure bounds the rest.
    for await (const chunk of req as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        if (used === PART_BYTES) {
          await store(part);
          // The first part is kept for the document, written last; every later one is in LevelDB once put()
          // resolves (PouchDB stores a clone of it), so its buffer takes the next part: a fresh 4 MiB per part
          // was a third of this process's allocation per byte stored, and V8 runs a full collection every
          // few tens of MB of buffers allocated.
          if (parts === 1) part = Buffer.allocUnsafe(PART_BYTES);
          used = 0;
        }
        const n = Math.min(chunk.length - off, PART_BYTES - used);
        chunk.copy(part, used, off, off + n);
        used += n;
        off += n;
      }
      total += chunk.length;
    }
    if (!req.complete) throw Object.assign(new Error('the upload was cut off before its end'), { status: 400, name: 'bad_request' });
    await store(part.subarray(0, used));
    const doc: PartedDoc & { _rev?: string } & Record<string, unknown> = (await getDoc(db, target.docId)) ?? { _id: target.docId };
    const rev = doc._rev;
    if (target.rev !== undefined && target.rev !== rev) {
      throw Object.assign(new Error('Document update conflict.'), { status: 409, name: 'conflict' });
    }
    // This one is given whole (its first part).
    const out = await commitAttachment(db, doc, target.name, { content_type: type, data: first! }, parts > 1 ? { upload, parts, length: total, content_type: type } : null, written);
    sendJson(res, 201, { ok: true, id: out.id, rev: out.rev });
  })().catch(async (err: PouchError) => {
    req.resume();
    sendError(res, err);
    if (db && written.length) await dropParts(db, written).catch(() => undefined);
  });
}

/**
 * The trace's merged.pcap when the trace document names another
 * attachment as its merged PCAP instead of holding one (mergedPcap() in
 * parts.ts: a one-host trace whose merge is its host's packets.pcap, byte
 * for byte): that attachment's document, so that a direct reader of the
 * store gets the whole merged PCAP at the trace's merged.pcap, as from a
 * store that holds a copy. Null for anything else, and when the named
 * attachment is not the length the trace says (replaced since): a 404
 * rather than other bytes.
 */
async function namedSource(db: PouchDb, doc: PartedDoc & Record<string, unknown>, name: string): Promise<{ docId: string; name: string; doc: PartedDoc & Record<string, unknown> } | null> {
  if (name !== MERGED_ATTACHMENT || doc.type !== 'trace' || doc._attachments?.[name]) return null;
  const m = mergedPcap(doc as unknown as TraceDoc);
  if (!m || m.docId === doc._id) return null;
  const src = await getDoc(db, m.docId);
  return src && storedAttachment(src, m.name)?.length === m.stub.length ? { docId: m.docId, name: m.name, doc: src } : null;
}

/**
 * GET and HEAD /db/doc/attachment of an attachment kept in parts: the whole
 * attachment, a part at a time (see parts.ts), or the one byte range a GET
 * asks with `Range` (206, across part boundaries; 416 past the end), as
 * Apache CouchDB answers for an attachment it keeps uncompressed. Anything
 * else is express-pouchdb's; `next` hands the request to it.
 */
function getAttachment(PouchDB: PouchStatic, req: IncomingMessage, res: ServerResponse, target: NonNullable<ReturnType<typeof attachmentPath>>, next: () => void): void {
  void (async () => {
    const db = await openDb(PouchDB, target.db);
    const asked = db ? await getDoc(db, target.docId) : null;
    const source = db && asked ? await namedSource(db, asked, target.name) : null;
    const { docId, name, doc } = source ?? { docId: target.docId, name: target.name, doc: asked };
    const first = doc?._attachments?.[name];
    // An attachment in one piece is express-pouchdb's to send, unless it is another document's (one part, then).
    const p = doc?.attachmentParts?.[name] ?? (source && first ? { upload: '', parts: 1, length: first.length, content_type: first.content_type } : undefined);
    if (!db || !doc || !p || !first) return next();
    // Every part but the last is as long as the first (1 MiB or 4 MiB, whatever the server wrote then).
    const partBytes = first.length;
    // If-Range names a version we do not check: the whole attachment, as RFC 9110 allows.
    const range = req.method === 'GET' && req.headers['if-range'] === undefined ? byteRange(req.headers.range, p.length) : null;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${p.length}`, 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: 'requested_range_not_satisfiable', reason: `the attachment has ${p.length} bytes` }) + '\n');
    }
    const { start, end } = range ?? { start: 0, end: p.length - 1 };
    const headers: Record<string, string | number> = { 'content-type': p.content_type, 'content-length': end - start + 1, 'accept-ranges': 'bytes' };
    if (range) headers['content-range'] = `bytes ${start}-${end}/${p.length}`;
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || p.length === 0) return res.end();
    let gone = false;
    res.once('close', () => {
      gone = true;
    });
    for (let k = Math.floor(start / partBytes); k <= Math.floor(end / partBytes) && !gone; k++) {
      const b = k === 0 ? await db.getAttachment(docId, name) : await db.getAttachment(partDocId(docId, name, p.upload, k), 'part');
      const at = k * partBytes;
      // A part of another length than its place says would shift every byte after it: stop rather than send wrong bytes.
      if (b.length !== (k < p.parts - 1 ? partBytes : p.length - at)) throw Object.assign(new Error(`part ${k} of ${docId}/${name} has ${b.length} bytes, not what its place needs`), { status: 500, name: 'error' });
      const slice = b.subarray(Math.max(0, start - at), Math.min(b.length, end + 1 - at));
      if (!res.write(slice) && !gone) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
    }
    res.end();
  })().catch((err: PouchError) => sendError(res, err));
}

/** Whether the request carries the store's Basic credentials (compared in constant time). */
function authorised(req: IncomingMessage, expected: Buffer): boolean {
  const m = /^Basic\s+([A-Za-z0-9+/=]{1,400})\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1], 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

function describeStartError(err: unknown, args: EmbeddedServerArgs): string {
  const e = err as NodeJS.ErrnoException;
  const msg = e?.message ?? String(err);
  if (/lock .*LOCK/.test(msg)) {
    return `the embedded store's data directory ${args.dataDir} is in use by another process (LevelDB lock): stop that dispatcher or give this one its own data directory`;
  }
  if (e?.code === 'EADDRINUSE') {
    return `the embedded store cannot listen on ${args.host}:${args.port}: the port is in use; pick another port or 0`;
  }
  if (e?.code === 'EACCES' || e?.code === 'EROFS') {
    return `the embedded store cannot write its data directory ${args.dataDir} (${e.code}): fix its permissions or choose another`;
  }
  return `the embedded store failed to start: ${msg}`;
}

async function start(args: EmbeddedServerArgs): Promise<Server> {
  // LevelDB's files, the attachments among them, readable by this user only.
  process.umask(0o077);
  const creds = JSON.parse(readFileSync(args.credentialsFile, 'utf8')) as { user: string; password: string };
  const expected = Buffer.from(`${creds.user}:${creds.password}`, 'utf8');
  // Required here, not at the top, so that a missing native LevelDB build is
  // reported through `error` like any other start failure.
  const PouchDB = (require('pouchdb-node') as PouchStatic).defaults({
    prefix: args.dataDir.endsWith(sep) ? args.dataDir : args.dataDir + sep,
    // Result docs are rewritten on every progress report; without this
    // every old revision's body stays on disk until someone compacts.
    auto_compaction: true,
    // A deterministic rev is an MD5 of JSON.stringify(doc), attachment bytes
    // included as a JSON array of numbers: a 40 MB upload took 9 s and
    // hundreds of MB. Random revs are as good for everything we do.
    deterministic_revs: false,
    // LevelDB's memtable (leveldown's default 4 MiB): attachment parts
    // filled it every few MiB, and each flush fed compactions that rewrote
    // the parts again. 32 MiB cut the store's CPU for bench:stream's 200 MiB
    // from 6.4-7.6 s to 5.1 s (paired runs, load 15-20); it costs up to two
    // such buffers of memory per database written.
    writeBufferSize: 32 * 1024 * 1024,
  });
  const expressPouchDB = require('express-pouchdb') as (o: object) => RequestListener & { setPouchDB(p: PouchStatic): Promise<void> };
  // The minimal mode leaves out Fauxton, the config/log files it would
  // write into the working directory, and the _users/_session machinery we
  // do not use; _find is added because CouchDB has it.
  const app = expressPouchDB({ mode: 'minimumForPouchDB', overrideMode: { include: ['routes/find'] } });
  // Given here rather than to the constructor, which would not let us wait
  // for its set-up (it installs PouchDB.allDbs).
  await app.setPouchDB(PouchDB);
  // Opening the all-dbs registry takes the LevelDB lock now, so a second
  // process on the same directory fails at start rather than on first use.
  // pouchdb-all-dbs console.error()s the lock failure with its stack before
  // rejecting; the parent gets one clear line instead.
  const consoleError = console.error;
  console.error = () => {};
  try {
    await PouchDB.allDbs();
  } finally {
    console.error = consoleError;
  }
  const srv = createServer((req, res) => {
    if (!authorised(req, expected)) {
      // As CouchDB answers; no challenge header, so a browser shows no login box.
      req.resume();
      return sendJson(res, 401, { error: 'unauthorized', reason: 'Name or password is incorrect.' });
    }
    const target = req.method === 'PUT' || req.method === 'GET' || req.method === 'HEAD' ? attachmentPath(req.url ?? '/') : null;
    if (!target) app(req, res);
    else if (req.method === 'PUT') putAttachment(PouchDB, req, res, target);
    // An old revision's attachment (?rev=) is express-pouchdb's to find.
    else if (target.rev === undefined) getAttachment(PouchDB, req, res, target, () => app(req, res));
    else app(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(args.port, args.host, () => {
      srv.off('error', reject);
      resolve();
    });
  });
  return srv;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as EmbeddedServerArgs;
  const log = initProcessLogger({ ...args.log, base: { process: 'store' } }).child({ component: 'dispatcher.store.embedded' });
  let srv: Server;
  try {
    srv = await start(args);
  } catch (err) {
    log.debug({ err }, 'cannot start');
    send({ type: 'error', message: describeStartError(err, args) });
    process.exit(1);
  }
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    srv.close(() => process.exit(0));
    srv.closeIdleConnections();
    // In-flight requests get a moment to finish their LevelDB writes.
    setTimeout(() => {
      srv.closeAllConnections();
      process.exit(0);
    }, 3000).unref();
  };
  process.on('message', (msg: ParentMessage) => {
    if (msg?.type === 'stop') stop();
  });
  // The parent owns our lifetime: a Ctrl-C reaching the whole process group
  // must not cut writes short before the parent asks us to stop.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', stop);
  // Parent gone (crashed or killed): nobody can reach us through it any more.
  process.on('disconnect', stop);
  log.debug({ port: (srv.address() as AddressInfo).port, dataDir: args.dataDir }, 'ready');
  send({ type: 'ready', port: (srv.address() as AddressInfo).port });
}

void main();
