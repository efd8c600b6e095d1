/*
 * The one way the store talks to CouchDB: nano over HTTP, every failure
 * turned into a StoreError that says what to do, read-modify-write retried
 * on 409 conflicts, and writes to one document from this process kept in
 * order. The store's parts (traces.ts, results.ts, users.ts, config.ts,
 * attachments.ts) are built on it.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import nano from 'nano';
import { Counter } from 'prom-client';
import { AlertDoc, AlertRuleDoc, ConfigDoc, DESIGN_DOC, DESIGN_NAME, ResultDoc, TraceDoc, UserDoc, ViewName } from './layout';
import { isConflict, isNotFound, NanoError, redactUrl, StoreError, StoreUnreachableError } from './errors';

export interface OpenOptions {
  url: string;
  db?: string;
  /** Attempts for a read-modify-write that keeps hitting 409 conflicts. */
  maxConflictRetries?: number;
}

/**
 * A read-modify-write step: change `doc` in place (return nothing) or return
 * a replacement; return `null` to write nothing. May be called several times
 * (once per 409 conflict), each time with the newest stored version, so it
 * must derive everything from `doc`.
 */
export type Mutation<T> = (doc: T) => T | void | null | Promise<T | void | null>;

type Stored = TraceDoc | ResultDoc | UserDoc | ConfigDoc | AlertRuleDoc | AlertDoc;

const DB_NAME = /^[a-z][a-z0-9_$()+/-]*$/;

export class StoreClient {
  /** Redacted: fit for logs. */
  readonly url: string;
  readonly dbName: string;
  /** Registered by the dispatcher's /metrics (api/metrics.ts); one per store, so no global registry. */
  readonly conflictRetries = new Counter({ name: 'tracefleet_store_conflict_retries_total', help: 'Store writes repeated after a 409 conflict.', registers: [] });

  readonly server: nano.ServerScope;
  readonly db: nano.DocumentScope<unknown>;
  readonly maxConflictRetries: number;
  /** For the one request made without nano (getAttachmentStream). */
  readonly dbUrl: string;
  readonly authHeaders: Record<string, string>;
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(opts: OpenOptions) {
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

  // ---- errors --------------------------------------------------------------

  fail(what: string, err: unknown): StoreError {
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

  unreachable(reason: string): StoreUnreachableError {
    return new StoreUnreachableError(
      `the CouchDB store at ${this.url} is unreachable (${reason}): start CouchDB, or point COUCHDB_URL (--couchdb) at a running one, or unset it to use the embedded store`,
    );
  }

  /** Every nano call goes through here so that every failure reads the same way. */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
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
  serial<T>(docId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(docId) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    this.queues.set(docId, run);
    const done = (): void => {
      if (this.queues.get(docId) === run) this.queues.delete(docId);
    };
    run.then(done, done);
    return run;
  }

  /**
   * Makes sure the database and design document exist; safe to run from
   * several dispatchers at once.
   */
  async setUp(): Promise<void> {
    await this.ensureDatabase();
    await this.ensureDesign();
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
        this.conflictRetries.inc();
      }
    }
    throw new StoreError(`writing ${id}: still conflicting after ${this.maxConflictRetries} attempts`, 409, 'conflict');
  }

  // ---- generic documents ---------------------------------------------------

  async getRaw<T>(id: string): Promise<T | null> {
    try {
      return (await this.call(`reading ${id}`, () => this.db.get(id))) as T;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async create<T extends Stored>(doc: T, what: string): Promise<T> {
    const res = await this.call(what, () => this.db.insert(doc as nano.MaybeDocument));
    return { ...doc, _rev: res.rev };
  }

  /** Read, mutate, write; on 409 read the newer version and mutate again. */
  update<T extends Stored>(id: string, mutate: Mutation<T>, stamp?: (doc: T) => void): Promise<T> {
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
        if (current.attachmentParts && next.attachmentParts === undefined) next.attachmentParts = current.attachmentParts;
        stamp?.(next);
        try {
          const res = await this.call(`updating ${id}`, () => this.db.insert(next as nano.MaybeDocument));
          return { ...next, _rev: res.rev };
        } catch (err) {
          if (!isConflict(err)) throw err;
          this.conflictRetries.inc();
          // Spread the retries of competing writers apart.
          await sleep(Math.random() * Math.min(50, 5 * (attempt + 1)));
        }
      }
      throw new StoreError(`updating ${id}: still conflicting after ${this.maxConflictRetries} attempts`, 409, 'conflict');
    });
  }

  async queryView(view: ViewName, params: nano.DocumentViewParams): Promise<nano.DocumentViewResponse<unknown, unknown>> {
    return this.call(`querying view ${view}`, () => this.db.view(DESIGN_NAME, view, params));
  }

  /** Ids of the live documents from startkey to endkey (_all_docs), at most `limit`. */
  async idsInRange(range: { startkey: string; endkey: string }, limit = 10_000): Promise<string[]> {
    const res = await this.call('listing documents', () => this.db.list({ ...range, limit }));
    return res.rows.map((r) => r.id);
  }

  /** Deletes whatever of `ids` still exists; returns how many were deleted. */
  async deleteDocs(ids: string[]): Promise<number> {
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
      if (pending.length > 0) this.conflictRetries.inc();
    }
    return deleted;
  }

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
