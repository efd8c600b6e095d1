/*
 * Child-process entry of the embedded store (see embedded.ts): express-pouchdb
 * over PouchDB's LevelDB adapter, listening on loopback. It talks to its
 * parent over the IPC channel only: `ready`/`error` out, `stop` in.
 */

import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { IncomingMessage, RequestListener, Server, ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sep } from 'node:path';
import { type LogSettings, initProcessLogger } from '../../shared/log/log';

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
  putAttachment(docId: string, name: string, rev: string | undefined, body: Buffer, type: string): Promise<{ ok: boolean; id: string; rev: string }>;
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

/**
 * PUT /db/doc/attachment, in place of express-pouchdb's handler, which
 * stores whatever it received when the upload is cut off (an empty or
 * partial attachment saved as if complete) and copies the body twice more.
 * Here an upload that does not arrive whole stores nothing.
 */
function putAttachment(PouchDB: PouchStatic, req: IncomingMessage, res: ServerResponse, target: NonNullable<ReturnType<typeof attachmentPath>>): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('error', () => {});
  req.on('close', () => {
    if (!req.complete) chunks.length = 0;
  });
  req.on('end', () => {
    void (async () => {
      if (!(await PouchDB.allDbs()).includes(target.db)) {
        return sendJson(res, 404, { error: 'not_found', reason: 'Database does not exist.' });
      }
      const body = Buffer.concat(chunks);
      chunks.length = 0;
      const type = req.headers['content-type'] ?? 'application/octet-stream';
      const out = await new PouchDB(target.db).putAttachment(target.docId, target.name, target.rev, body, type);
      sendJson(res, 201, { ok: true, id: out.id, rev: out.rev });
    })().catch((err: PouchError) => {
      sendJson(res, err.status ?? 500, { error: err.name ?? 'error', reason: err.message ?? String(err) });
    });
  });
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
    const target = req.method === 'PUT' ? attachmentPath(req.url ?? '/') : null;
    if (target) putAttachment(PouchDB, req, res, target);
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
