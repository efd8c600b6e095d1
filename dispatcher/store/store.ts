/*
 * The dispatcher's storage: traces, per-host results and users in CouchDB,
 * always through nano over HTTP, whether the server is Apache CouchDB
 * (COUCHDB_URL) or the embedded one (embedded.ts). The document layout is
 * described in layout.ts.
 */

import { randomBytes } from 'node:crypto';
import { PassThrough, Readable, Transform, TransformCallback, pipeline } from 'node:stream';
import nano from 'nano';
import {
  AttachmentStub,
  ConfigDoc,
  DESIGN_DOC,
  DESIGN_NAME,
  HOST_ATTACHMENT,
  JsonValue,
  PCAP_CONTENT_TYPE,
  ResultDoc,
  ResultState,
  TraceDoc,
  TraceState,
  UserDoc,
  UserToken,
  ViewName,
  checkHost,
  checkTraceId,
  configDocId,
  resultDocId,
  traceDocId,
  userDocId,
} from './layout';

/** Any failure of the store, with CouchDB's status and error when it gave them. */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly statusCode?: number,
    readonly error?: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/** The store could not be reached at all: nothing was read or written. */
export class StoreUnreachableError extends StoreError {
  readonly code = 'ESTOREUNREACHABLE';
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnreachableError';
  }
}

export interface OpenOptions {
  url: string;
  db?: string;
  /** Attempts for a read-modify-write that keeps hitting 409 conflicts. */
  maxConflictRetries?: number;
}

export interface NewTrace {
  /** Default: newTraceId(). */
  id?: string;
  request: { [key: string]: JsonValue };
  user: string;
  hosts: string[];
  /** Default: now. */
  createdAt?: Date | string;
  /** Default: 'running'. */
  state?: TraceState;
}

export interface NewResult {
  traceId: string;
  host: string;
  state?: ResultState;
  packets?: number;
  bytes?: number;
  truncated?: boolean;
  error?: string;
  messages?: ResultDoc['messages'];
}

export interface NewUser {
  name: string;
  roles: string[];
  passwordHash: string;
  tokens?: UserToken[];
}

export interface ListTracesOptions {
  /** 1-1000, default 50. */
  limit?: number;
  /** From the previous page's `bookmark`. */
  bookmark?: string;
  user?: string;
}

export interface TracePage {
  traces: TraceDoc[];
  /** Absent on the last page. */
  bookmark?: string;
}

/**
 * A read-modify-write step: change `doc` in place (return nothing) or return
 * a replacement; return `null` to write nothing. May be called several times
 * (once per 409 conflict), each time with the newest stored version, so it
 * must derive everything from `doc`.
 */
export type Mutation<T> = (doc: T) => T | void | null | Promise<T | void | null>;

type Stored = TraceDoc | ResultDoc | UserDoc | ConfigDoc;

const DB_NAME = /^[a-z][a-z0-9_$()+/-]*$/;

/** Sortable by creation time, short enough to type: 20240612T104233-3f9a1c. */
export function newTraceId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

/** The URL as it may appear in logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid URL)';
  }
}

interface NanoError {
  statusCode?: number;
  error?: string;
  reason?: string;
  message?: string;
}

function isConflict(err: unknown): boolean {
  return err instanceof StoreError && err.statusCode === 409;
}

function isNotFound(err: unknown): boolean {
  return err instanceof StoreError && err.statusCode === 404;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Counts what flows through, so an upload can report its size without a second read. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

function encodeBookmark(key: unknown): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

function decodeBookmark(bookmark: string, user: string | undefined): JsonValue[] {
  let key: unknown;
  try {
    key = JSON.parse(Buffer.from(bookmark, 'base64url').toString());
  } catch {
    key = undefined;
  }
  const ok = Array.isArray(key) && key.length === (user === undefined ? 2 : 3) && (user === undefined || key[0] === user);
  if (!ok) throw new StoreError('the bookmark is not one this listing returned: start again without it', 400, 'bad_request');
  return key as JsonValue[];
}

export class TraceStore {
  /** Redacted: fit for logs. */
  readonly url: string;
  readonly dbName: string;
  /** Read-modify-write attempts repeated after a 409; for /metrics. */
  readonly stats = { conflictRetries: 0 };

  private readonly server: nano.ServerScope;
  private readonly db: nano.DocumentScope<unknown>;
  private readonly maxConflictRetries: number;
  /** For the one request made without nano (getAttachmentStream). */
  private readonly dbUrl: string;
  private readonly authHeaders: Record<string, string>;
  private readonly queues = new Map<string, Promise<unknown>>();

  private constructor(opts: OpenOptions) {
    this.url = redactUrl(opts.url);
    this.dbName = opts.db ?? 'tracefleet';
    if (!DB_NAME.test(this.dbName)) {
      throw new StoreError(`database name ${JSON.stringify(this.dbName)} is not valid for CouchDB: start with a-z, then a-z 0-9 _ $ ( ) + - /`);
    }
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      u = new URL('invalid:');
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new StoreError(`the store URL ${this.url} is not an http(s) URL: give one like http://user:password@127.0.0.1:5984 in COUCHDB_URL`);
    }
    this.server = nano({ url: opts.url });
    this.authHeaders = u.username || u.password ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` } : {};
    u.username = '';
    u.password = '';
    this.dbUrl = `${u.origin}${u.pathname.replace(/\/+$/, '')}/${encodeURIComponent(this.dbName)}`;
    this.db = this.server.use(this.dbName);
    this.maxConflictRetries = opts.maxConflictRetries ?? 50;
  }

  /**
   * Connects and makes sure the database and design document exist; safe to
   * run from several dispatchers at once.
   */
  static async open(opts: OpenOptions): Promise<TraceStore> {
    const store = new TraceStore(opts);
    await store.ensureDatabase();
    await store.ensureDesign();
    return store;
  }

  // ---- errors --------------------------------------------------------------

  private fail(what: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const e = (err ?? {}) as NanoError;
    const message = e.message ?? String(err);
    if (e.statusCode === undefined && /error happened in your connection/.test(message)) {
      const reason = message.replace(/^.*Reason:\s*/, '').replace(/^\w*Error:\s*/, '');
      return this.unreachable(reason);
    }
    const status = e.statusCode;
    if (status === 401 || status === 403) {
      return new StoreError(
        `${what}: the store at ${this.url} refused access (${status} ${e.reason ?? e.error ?? ''}): give an admin user and password in COUCHDB_URL (http://user:password@host:5984)`,
        status,
        e.error,
      );
    }
    if (status === 413) {
      return new StoreError(`${what}: the document is too large for the store at ${this.url} (CouchDB's max_document_size)`, status, e.error);
    }
    const detail = e.reason ?? e.error ?? message;
    return new StoreError(`${what}: the store at ${this.url} answered ${status ?? '?'} ${detail}`, status, e.error);
  }

  private unreachable(reason: string): StoreUnreachableError {
    return new StoreUnreachableError(
      `the CouchDB store at ${this.url} is unreachable (${reason}): start CouchDB, or point COUCHDB_URL (--couchdb) at a running one, or unset it to use the embedded store`,
    );
  }

  /** Every nano call goes through here so that every failure reads the same way. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.fail(what, err);
    }
  }

  /**
   * Runs writes to one document from this process one after another: an
   * attachment upload cannot be retried after a 409 (its stream is spent), so
   * it must not race this process's own updates of the same document.
   */
  private serial<T>(docId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(docId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    this.queues.set(docId, run);
    const done = (): void => {
      if (this.queues.get(docId) === run) this.queues.delete(docId);
    };
    run.then(done, done);
    return run;
  }

  // ---- set-up --------------------------------------------------------------

  private async ensureDatabase(): Promise<void> {
    try {
      await this.call(`creating database ${this.dbName}`, () => this.server.db.create(this.dbName));
    } catch (err) {
      // 412: it exists (maybe another dispatcher made it a moment ago).
      if (err instanceof StoreError && err.statusCode === 412) return;
      // A user who may not create databases may still use an existing one.
      if (err instanceof StoreError && (err.statusCode === 401 || err.statusCode === 403)) {
        const exists = await this.call(`reading database ${this.dbName}`, () => this.server.db.get(this.dbName)).then(
          () => true,
          () => false,
        );
        if (exists) return;
      }
      throw err;
    }
  }

  private async ensureDesign(): Promise<void> {
    const id = DESIGN_DOC._id;
    for (let attempt = 0; attempt < this.maxConflictRetries; attempt++) {
      const current = await this.getRaw<{ _rev: string; version?: number }>(id);
      if (current && (current.version ?? 0) >= DESIGN_DOC.version) return;
      const doc = current ? { ...DESIGN_DOC, _rev: current._rev } : { ...DESIGN_DOC };
      try {
        await this.call(`writing ${id}`, () => this.db.insert(doc as nano.MaybeDocument));
        return;
      } catch (err) {
        if (!isConflict(err)) throw err;
        this.stats.conflictRetries++;
      }
    }
    throw new StoreError(`writing ${id}: still conflicting after ${this.maxConflictRetries} attempts`, 409, 'conflict');
  }

  // ---- generic documents ---------------------------------------------------

  private async getRaw<T>(id: string): Promise<T | null> {
    try {
      return (await this.call(`reading ${id}`, () => this.db.get(id))) as T;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  private async create<T extends Stored>(doc: T, what: string): Promise<T> {
    const res = await this.call(what, () => this.db.insert(doc as nano.MaybeDocument));
    return { ...doc, _rev: res.rev };
  }

  /** Read, mutate, write; on 409 read the newer version and mutate again. */
  private update<T extends Stored>(id: string, mutate: Mutation<T>, stamp?: (doc: T) => void): Promise<T> {
    return this.serial(id, async () => {
      for (let attempt = 0; attempt < this.maxConflictRetries; attempt++) {
        const current = await this.getRaw<T>(id);
        if (!current) throw new StoreError(`updating ${id}: no such document in the store at ${this.url}`, 404, 'not_found');
        const draft = structuredClone(current);
        const out = await mutate(draft);
        if (out === null) return current;
        const next = out ?? draft;
        // Whatever the mutation did, these identify the revision being
        // replaced and must survive it, or the attachment would be dropped.
        next._id = id;
        next._rev = current._rev;
        next.type = current.type;
        if (current._attachments && next._attachments === undefined) next._attachments = current._attachments;
        stamp?.(next);
        try {
          const res = await this.call(`updating ${id}`, () => this.db.insert(next as nano.MaybeDocument));
          return { ...next, _rev: res.rev };
        } catch (err) {
          if (!isConflict(err)) throw err;
          this.stats.conflictRetries++;
          // Spread the retries of competing writers apart.
          await sleep(Math.random() * Math.min(50, 5 * (attempt + 1)));
        }
      }
      throw new StoreError(`updating ${id}: still conflicting after ${this.maxConflictRetries} attempts`, 409, 'conflict');
    });
  }

  private async queryView(view: ViewName, params: nano.DocumentViewParams): Promise<nano.DocumentViewResponse<unknown, unknown>> {
    return this.call(`querying view ${view}`, () => this.db.view(DESIGN_NAME, view, params));
  }

  /** Deletes whatever of `ids` still exists; returns how many were deleted. */
  private async deleteDocs(ids: string[]): Promise<number> {
    let pending = [...new Set(ids)];
    let deleted = 0;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt === this.maxConflictRetries) {
        throw new StoreError(`deleting ${pending.join(', ')}: still conflicting after ${this.maxConflictRetries} attempts`, 409, 'conflict');
      }
      const revs = await this.call('reading revisions', () => this.db.fetchRevs({ keys: pending }));
      const docs: { _id: string; _rev: string; _deleted: true }[] = [];
      for (const row of revs.rows as { id?: string; value?: { rev: string; deleted?: boolean } }[]) {
        if (row.id && row.value && !row.value.deleted) docs.push({ _id: row.id, _rev: row.value.rev, _deleted: true });
      }
      if (docs.length === 0) break;
      const res = await this.call('deleting documents', () => this.db.bulk({ docs }));
      pending = [];
      for (const r of res) {
        if (!r.error) deleted++;
        else if (r.error === 'conflict' && r.id) pending.push(r.id);
        else throw new StoreError(`deleting ${r.id}: the store at ${this.url} answered ${r.error} ${r.reason ?? ''}`, undefined, r.error);
      }
      if (pending.length > 0) this.stats.conflictRetries++;
    }
    return deleted;
  }

  // ---- traces --------------------------------------------------------------

  async createTrace(input: NewTrace): Promise<TraceDoc> {
    const id = checkTraceId(input.id ?? newTraceId());
    const createdAt = input.createdAt === undefined ? new Date() : new Date(input.createdAt);
    if (Number.isNaN(createdAt.getTime())) throw new StoreError(`trace ${id}: createdAt ${String(input.createdAt)} is not a date`);
    const doc: TraceDoc = {
      _id: traceDocId(id),
      type: 'trace',
      id,
      request: input.request,
      user: input.user,
      createdAt: createdAt.toISOString(),
      hosts: input.hosts.map(checkHost),
      state: input.state ?? 'running',
    };
    try {
      return await this.create(doc, `creating trace ${id}`);
    } catch (err) {
      if (isConflict(err)) throw new StoreError(`trace ${id} already exists`, 409, 'conflict');
      throw err;
    }
  }

  async getTrace(id: string): Promise<TraceDoc | null> {
    return this.getRaw<TraceDoc>(traceDocId(id));
  }

  async updateTrace(id: string, mutate: Mutation<TraceDoc>): Promise<TraceDoc> {
    return this.update(traceDocId(id), mutate);
  }

  /** Newest first; pass the returned bookmark back for the next page. */
  async listTraces(opts: ListTracesOptions = {}): Promise<TracePage> {
    const limit = Math.max(1, Math.min(1000, Math.floor(opts.limit ?? 50)));
    const { user } = opts;
    const start = opts.bookmark !== undefined ? decodeBookmark(opts.bookmark, user) : undefined;
    const params: nano.DocumentViewParams = { descending: true, include_docs: true, limit: limit + 1 };
    if (user === undefined) {
      if (start) params.startkey = start;
    } else {
      // {} collates after every string, so [user, {}] is past the user's newest.
      params.startkey = start ?? [user, {}];
      params.endkey = [user];
    }
    const res = await this.queryView(user === undefined ? 'traces_by_time' : 'traces_by_user', params);
    const rows = res.rows;
    const page: TracePage = { traces: [] };
    if (rows.length > limit) page.bookmark = encodeBookmark(rows[limit].key);
    for (const row of rows.slice(0, limit)) if (row.doc) page.traces.push(row.doc as TraceDoc);
    return page;
  }

  /** The trace document and every result document of it. */
  async deleteTrace(id: string): Promise<{ trace: boolean; results: number }> {
    const resultIds = await this.resultIds(id);
    // Results first: if we stop half-way the trace is still listed, and
    // deleting it again finishes the job.
    const results = await this.deleteDocs(resultIds);
    const trace = (await this.deleteDocs([traceDocId(id)])) === 1;
    return { trace, results };
  }

  /**
   * Deletes traces created more than `days` days before `now`, with their
   * results, and results last updated before then whatever their trace.
   * Returns the number of traces deleted.
   */
  async purgeOlderThan(days: number, now = new Date()): Promise<number> {
    if (!(days >= 0)) throw new StoreError(`purge: ${days} is not a number of days`);
    const cutoff = new Date(now.getTime() - days * 86_400_000).toISOString();
    let traces = 0;
    for (;;) {
      // [cutoff] sorts before every [cutoff, id], so exactly older traces.
      const res = await this.queryView('traces_by_time', { endkey: [cutoff], limit: 100 });
      if (res.rows.length === 0) break;
      let progress = 0;
      for (const row of res.rows) {
        const traceId = (row.key as unknown as [string, string])[1];
        const { trace, results } = await this.deleteTrace(traceId);
        if (trace) traces++;
        progress += results + (trace ? 1 : 0);
      }
      if (progress === 0) break;
    }
    for (;;) {
      const res = await this.queryView('results_by_updated', { endkey: cutoff, inclusive_end: false, limit: 500 });
      if (res.rows.length === 0) break;
      if ((await this.deleteDocs(res.rows.map((r) => r.id))) === 0) break;
    }
    return traces;
  }

  // ---- results -------------------------------------------------------------

  private async resultIds(traceId: string): Promise<string[]> {
    checkTraceId(traceId);
    const res = await this.queryView('results_by_trace', { startkey: [traceId], endkey: [traceId, {}] });
    return res.rows.map((r) => r.id);
  }

  /**
   * Creates the host's result (missing fields: queued, no packets, no
   * messages), or, when it exists, overwrites just the fields given here and
   * keeps the rest and the attachment.
   */
  async putResult(input: NewResult): Promise<ResultDoc> {
    const id = resultDocId(input.traceId, input.host);
    const given: Partial<ResultDoc> = {};
    for (const key of ['state', 'packets', 'bytes', 'truncated', 'error', 'messages'] as const) {
      if (input[key] !== undefined) (given as Record<string, unknown>)[key] = input[key];
    }
    const doc: ResultDoc = {
      _id: id,
      type: 'result',
      traceId: input.traceId,
      host: input.host,
      state: 'queued',
      packets: 0,
      bytes: 0,
      truncated: false,
      messages: [],
      ...given,
      updatedAt: new Date().toISOString(),
    };
    const created = await this.serial(id, async () => {
      try {
        return await this.create(doc, `creating result ${id}`);
      } catch (err) {
        if (isConflict(err)) return null;
        throw err;
      }
    });
    return created ?? this.updateResult(input.traceId, input.host, (d) => ({ ...d, ...given }));
  }

  /**
   * Creates many hosts' results of one trace in one request (a fleet-wide
   * trace asks hundreds of agents at once); results that already exist are
   * left as they are.
   */
  async createResults(inputs: NewResult[]): Promise<void> {
    const now = new Date().toISOString();
    for (let i = 0; i < inputs.length; i += 1000) {
      const docs: ResultDoc[] = inputs.slice(i, i + 1000).map((input) => ({
        _id: resultDocId(input.traceId, input.host),
        type: 'result',
        traceId: input.traceId,
        host: input.host,
        state: input.state ?? 'queued',
        packets: input.packets ?? 0,
        bytes: input.bytes ?? 0,
        truncated: input.truncated ?? false,
        ...(input.error !== undefined ? { error: input.error } : {}),
        messages: input.messages ?? [],
        updatedAt: now,
      }));
      const res = await this.call(`creating ${docs.length} results`, () => this.db.bulk({ docs }));
      for (const r of res) {
        if (r.error && r.error !== 'conflict') throw new StoreError(`creating ${r.id}: the store at ${this.url} answered ${r.error} ${r.reason ?? ''}`, undefined, r.error);
      }
    }
  }

  /**
   * Writes many hosts' final results in two requests (their current
   * revisions, then one _bulk_docs), each with its PCAP inline: for the
   * small results of a fleet-wide trace, where a request per host would
   * swamp the store. The caller bounds the inline bytes (they are in
   * memory); large results go through putResult + putAttachmentStream.
   * Returns, per input, null or the error for that document (a conflict is
   * StoreError 409: try it again).
   */
  async writeResults(items: Array<{ result: NewResult; pcap?: Buffer }>): Promise<Array<StoreError | null>> {
    if (items.length === 0) return [];
    const ids = items.map((i) => resultDocId(i.result.traceId, i.result.host));
    const revs = await this.call('reading revisions', () => this.db.fetchRevs({ keys: ids }));
    const revOf = new Map<string, string>();
    for (const row of revs.rows as { id?: string; key?: string; value?: { rev: string; deleted?: boolean } }[]) {
      if (row.id && row.value && !row.value.deleted) revOf.set(row.id, row.value.rev);
    }
    const now = new Date().toISOString();
    const docs = items.map(({ result: r, pcap }, n) => {
      const doc: ResultDoc & { _rev?: string } = {
        _id: ids[n],
        type: 'result',
        traceId: r.traceId,
        host: r.host,
        state: r.state ?? 'queued',
        packets: r.packets ?? 0,
        bytes: r.bytes ?? 0,
        truncated: r.truncated ?? false,
        ...(r.error !== undefined ? { error: r.error } : {}),
        messages: r.messages ?? [],
        updatedAt: now,
      };
      const rev = revOf.get(ids[n]);
      if (rev) doc._rev = rev;
      if (pcap) (doc as unknown as { _attachments: object })._attachments = { [HOST_ATTACHMENT]: { content_type: PCAP_CONTENT_TYPE, data: pcap.toString('base64') } };
      return doc;
    });
    const res = await this.call(`writing ${docs.length} results`, () => this.db.bulk({ docs: docs as nano.MaybeDocument[] }));
    const byId = new Map(res.map((r) => [r.id, r]));
    return ids.map((id) => {
      const r = byId.get(id);
      if (!r) return new StoreError(`writing ${id}: the store at ${this.url} did not answer for it`);
      if (!r.error) return null;
      return new StoreError(`writing ${id}: the store at ${this.url} answered ${r.error} ${r.reason ?? ''}`, r.error === 'conflict' ? 409 : undefined, r.error);
    });
  }

  async getResult(traceId: string, host: string): Promise<ResultDoc | null> {
    return this.getRaw<ResultDoc>(resultDocId(traceId, host));
  }

  /** Like updateTrace; `updatedAt` is set on every write. */
  async updateResult(traceId: string, host: string, mutate: Mutation<ResultDoc>): Promise<ResultDoc> {
    return this.update(resultDocId(traceId, host), mutate, (d) => {
      d.updatedAt = new Date().toISOString();
    });
  }

  /** Every host's result of a trace, by host name. */
  async listResults(traceId: string): Promise<ResultDoc[]> {
    checkTraceId(traceId);
    const res = await this.queryView('results_by_trace', { startkey: [traceId], endkey: [traceId, {}], include_docs: true });
    return res.rows.filter((r) => r.doc).map((r) => r.doc as ResultDoc);
  }

  // ---- attachments ---------------------------------------------------------

  /**
   * Streams `readable` into the document's attachment `name` (replacing it)
   * as the bytes arrive: the body is never held whole in this process. The
   * document must exist. If `readable` fails or closes before its end, the
   * upload is aborted, nothing is stored, and the promise rejects with the
   * stream's error.
   */
  async putAttachmentStream(docId: string, name: string, contentType: string, readable: Readable): Promise<{ bytes: number; rev: string }> {
    const what = `storing ${name} on ${docId}`;
    // Listening at once: the source may fail while we wait for the document's
    // queue, and an 'error' nobody listens to would crash the process.
    let sourceError: Error | undefined;
    const onSourceError = (err: Error): void => {
      sourceError ??= err;
    };
    readable.on('error', onSourceError);
    try {
      return await this.serial(docId, async () => {
        if (sourceError) throw sourceError;
        if (readable.destroyed || readable.readableEnded) {
          throw new StoreError(`${what}: the source stream was closed before the upload began`);
        }
        const doc = await this.getRaw<{ _rev: string }>(docId);
        if (!doc) throw new StoreError(`${what}: no such document in the store at ${this.url}`, 404, 'not_found');
        const counter = new ByteCounter();
        // pipeline turns a source that closes early into an error too, so a
        // half-sent result is aborted instead of being stored as complete.
        pipeline(readable, counter, (err) => {
          if (err && !counter.writableFinished) sourceError ??= err;
        });
        try {
          const res: unknown = await this.call(what, () => this.db.attachment.insert(docId, name, counter, contentType, { rev: doc._rev }));
          // nano sends no Accept header with a content type, so CouchDB
          // answers text/plain and nano hands back the JSON unparsed.
          const parsed = (typeof res === 'string' ? JSON.parse(res) : res) as { rev: string };
          return { bytes: counter.bytes, rev: parsed.rev };
        } catch (err) {
          // An upload aborted because the source failed looks to nano like a
          // broken connection; an answer from the server is the real story.
          if (sourceError && err instanceof StoreUnreachableError) throw sourceError;
          throw err;
        }
      });
    } catch (err) {
      readable.destroy();
      throw err;
    } finally {
      readable.off('error', onSourceError);
    }
  }

  /** Name, type, length and digest of an attachment, or null when it is not there. */
  async getAttachmentInfo(docId: string, name: string): Promise<AttachmentStub | null> {
    const doc = await this.getRaw<{ _attachments?: Record<string, AttachmentStub> }>(docId);
    return doc?._attachments?.[name] ?? null;
  }

  /**
   * The attachment as a stream, fetched as it is read. A missing document or
   * attachment, an unreachable store, or a download that stops short of the
   * stored length each make the stream emit a StoreError.
   *
   * The one call not made through nano: nano 11's attachment.getAsStream
   * pipes an internal stream that has no 'error' listener, so a store that
   * goes away mid-download throws an uncaught exception and takes the whole
   * dispatcher down (seen with the embedded store killed mid-transfer). The
   * same HTTP request made with fetch lets us handle that error.
   */
  getAttachmentStream(docId: string, name: string): Readable {
    const out = new PassThrough();
    const abort = new AbortController();
    out.once('close', () => abort.abort());
    const notFound = (): StoreError => new StoreError(`${docId} has no attachment ${name} in the store at ${this.url}`, 404, 'not_found');
    void (async () => {
      const info = await this.getAttachmentInfo(docId, name);
      if (!info) throw notFound();
      let res: Response;
      try {
        const url = `${this.dbUrl}/${encodeURIComponent(docId)}/${encodeURIComponent(name)}`;
        res = await fetch(url, { headers: this.authHeaders, signal: abort.signal });
      } catch (err) {
        if (out.destroyed) return;
        throw this.unreachable(String((err as { cause?: unknown }).cause ?? err));
      }
      if (res.status === 404) throw notFound();
      if (!res.ok || !res.body) {
        const body = (await res.json().catch(() => ({}))) as NanoError;
        throw this.fail(`reading ${name} of ${docId}`, { ...body, statusCode: res.status });
      }
      const src = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
      let received = 0;
      const counter = new Transform({
        transform: (chunk: Buffer, _enc, cb) => {
          received += chunk.length;
          cb(null, chunk);
        },
        flush: (cb) => {
          if (received === info.length) return cb();
          cb(new StoreError(`${docId}/${name}: got ${received} bytes from the store at ${this.url}, not the ${info.length} stored (was it replaced meanwhile?)`));
        },
      });
      src.once('error', (err) => {
        if (!out.destroyed) out.destroy(this.unreachable(`the download of ${name} of ${docId} broke off: ${String(err.cause ?? err.message)}`));
      });
      counter.once('error', (err) => out.destroy(err));
      src.pipe(counter).pipe(out);
    })().catch((err: unknown) => out.destroy(this.fail(`reading ${name} of ${docId}`, err)));
    return out;
  }

  // ---- users ---------------------------------------------------------------

  async getUser(name: string): Promise<UserDoc | null> {
    return this.getRaw<UserDoc>(userDocId(name));
  }

  /** Creates the user or replaces every field of it. */
  async putUser(user: NewUser): Promise<UserDoc> {
    const id = userDocId(user.name);
    const fields = { name: user.name, roles: user.roles, passwordHash: user.passwordHash, tokens: user.tokens ?? [] };
    const created = await this.serial(id, async () => {
      try {
        return await this.create<UserDoc>({ _id: id, type: 'user', ...fields }, `creating user ${user.name}`);
      } catch (err) {
        if (isConflict(err)) return null;
        throw err;
      }
    });
    return created ?? this.update<UserDoc>(id, (d) => ({ ...d, ...fields }));
  }

  /** Creates the user; a StoreError 409 'conflict' when the name is taken. */
  async createUser(user: NewUser): Promise<UserDoc> {
    const fields = { name: user.name, roles: user.roles, passwordHash: user.passwordHash, tokens: user.tokens ?? [] };
    try {
      return await this.create<UserDoc>({ _id: userDocId(user.name), type: 'user', ...fields }, `creating user ${user.name}`);
    } catch (err) {
      if (isConflict(err)) throw new StoreError(`user ${user.name} already exists`, 409, 'conflict');
      throw err;
    }
  }

  /** Every user, by name. */
  async listUsers(): Promise<UserDoc[]> {
    // Document ids sort by name after the prefix; ';' is the character after ':'.
    const res = await this.call('listing users', () => this.db.list({ startkey: 'user:', endkey: 'user;', inclusive_end: false, include_docs: true }));
    return res.rows.filter((r) => r.doc && (r.doc as UserDoc).type === 'user').map((r) => r.doc as UserDoc);
  }

  /** True when the user existed and was deleted. */
  async deleteUser(name: string): Promise<boolean> {
    return (await this.deleteDocs([userDocId(name)])) === 1;
  }

  async updateUser(name: string, mutate: Mutation<UserDoc>): Promise<UserDoc> {
    return this.update(userDocId(name), mutate);
  }

  /** The user holding the API token with this id, if any. */
  async findUserByTokenId(tokenId: string): Promise<UserDoc | null> {
    const res = await this.queryView('users_by_token', { key: tokenId, include_docs: true, limit: 1 });
    return (res.rows[0]?.doc as UserDoc | undefined) ?? null;
  }

  // ---- config --------------------------------------------------------------

  /**
   * The config document `name`, created with `initial` when missing. Several
   * dispatchers starting at once all get the one stored first, so a value
   * drawn at random (a signing key) ends up the same everywhere.
   */
  async ensureConfig(name: string, initial: { [key: string]: JsonValue }): Promise<ConfigDoc> {
    const id = configDocId(name);
    for (let attempt = 0; attempt < this.maxConflictRetries; attempt++) {
      const current = await this.getRaw<ConfigDoc>(id);
      if (current) return current;
      try {
        return await this.create<ConfigDoc>({ _id: id, type: 'config', name, data: initial }, `creating ${id}`);
      } catch (err) {
        // Someone else created it (or created and deleted it): read theirs.
        if (!isConflict(err)) throw err;
        this.stats.conflictRetries++;
      }
    }
    throw new StoreError(`creating ${id}: still conflicting after ${this.maxConflictRetries} attempts`, 409, 'conflict');
  }

  // ---- health --------------------------------------------------------------

  /** For /healthz: the server answers and the database is there. */
  async ping(): Promise<{ url: string; db: string; version: string; vendor: string; docCount: number }> {
    const info = (await this.call('ping', () => this.server.info())) as { version?: string; vendor?: { name?: string } };
    const db = await this.call(`reading database ${this.dbName}`, () => this.server.db.get(this.dbName));
    return {
      url: this.url,
      db: this.dbName,
      version: info.version ?? 'unknown',
      vendor: info.vendor?.name ?? 'unknown',
      docCount: db.doc_count,
    };
  }
}
