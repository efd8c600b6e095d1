/* Trace documents: create, read, update, list newest first by page, delete with their results, purge by age. */

import { randomBytes } from 'node:crypto';
import type nano from 'nano';
import type { StoreClient, Mutation } from './client';
import { isConflict, StoreError } from './errors';
import { JsonValue, TraceDoc, TraceState, checkHost, checkTraceId, traceDocId } from './layout';
import { partRange } from './parts';
import { resultIds } from './results';

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

/** Sortable by creation time, short enough to type: 20240612T104233-3f9a1c. */
export function newTraceId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  return `${t}-${randomBytes(3).toString('hex')}`;
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

export async function createTrace(c: StoreClient, input: NewTrace): Promise<TraceDoc> {
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
    return await c.create(doc, `creating trace ${id}`);
  } catch (err) {
    if (isConflict(err)) throw new StoreError(`trace ${id} already exists`, 409, 'conflict');
    throw err;
  }
}

export async function getTrace(c: StoreClient, id: string): Promise<TraceDoc | null> {
  return c.getRaw<TraceDoc>(traceDocId(id));
}

export async function updateTrace(c: StoreClient, id: string, mutate: Mutation<TraceDoc>): Promise<TraceDoc> {
  return c.update(traceDocId(id), mutate);
}

/** Newest first; pass the returned bookmark back for the next page. */
export async function listTraces(c: StoreClient, opts: ListTracesOptions = {}): Promise<TracePage> {
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
  const res = await c.queryView(user === undefined ? 'traces_by_time' : 'traces_by_user', params);
  const rows = res.rows;
  const page: TracePage = { traces: [] };
  if (rows.length > limit) page.bookmark = encodeBookmark(rows[limit].key);
  for (const row of rows.slice(0, limit)) if (row.doc) page.traces.push(row.doc as TraceDoc);
  return page;
}

/** The trace document and every result document of it. */
export async function deleteTrace(c: StoreClient, id: string): Promise<{ trace: boolean; results: number }> {
  const ids = await resultIds(c, id);
  // Parts, then results: if we stop half-way the trace is still listed, and
  // deleting it again finishes the job.
  await deleteTraceParts(c, id);
  const results = await c.deleteDocs(ids);
  const trace = (await c.deleteDocs([traceDocId(id)])) === 1;
  return { trace, results };
}

/**
 * The part documents of the trace's attachments and its results' (the
 * embedded store's big attachments, see parts.ts): two listings, whatever
 * the number of hosts.
 */
async function deleteTraceParts(c: StoreClient, id: string): Promise<void> {
  const doc = traceDocId(id);
  // Bounded: each turn deletes what it listed, or stops.
  for (;;) {
    const own = await c.idsInRange(partRange(doc), 1000);
    // Results are `${doc}:<host>`, their parts `${doc}:<host>~...`; host names have no '~'.
    const hosts = (await c.idsInRange({ startkey: `${doc}:`, endkey: `${doc}:\ufff0` }, 100_000)).filter((x) => x.includes('~'));
    const parts = [...own, ...hosts.slice(0, 10_000)];
    if (parts.length === 0 || (await c.deleteDocs(parts)) === 0) break;
  }
}

/** The part documents of these documents' attachments (see parts.ts). */
async function deleteParts(c: StoreClient, docIds: string[]): Promise<void> {
  for (const docId of docIds) {
    // Bounded: each turn deletes what it listed, or stops.
    for (;;) {
      const parts = await c.idsInRange(partRange(docId), 1000);
      if (parts.length === 0 || (await c.deleteDocs(parts)) === 0) break;
    }
  }
}

/**
 * Deletes traces created more than `days` days before `now`, with their
 * results, and results last updated before then whatever their trace.
 * Returns the number of traces deleted.
 */
export async function purgeOlderThan(c: StoreClient, days: number, now = new Date()): Promise<number> {
  if (!(days >= 0)) throw new StoreError(`purge: ${days} is not a number of days`);
  const cutoff = new Date(now.getTime() - days * 86_400_000).toISOString();
  let traces = 0;
  for (;;) {
    // [cutoff] sorts before every [cutoff, id], so exactly older traces.
    const res = await c.queryView('traces_by_time', { endkey: [cutoff], limit: 100 });
    if (res.rows.length === 0) break;
    let progress = 0;
    for (const row of res.rows) {
      const traceId = (row.key as unknown as [string, string])[1];
      const { trace, results } = await deleteTrace(c, traceId);
      if (trace) traces++;
      progress += results + (trace ? 1 : 0);
    }
    if (progress === 0) break;
  }
  for (;;) {
    const res = await c.queryView('results_by_updated', { endkey: cutoff, inclusive_end: false, limit: 500 });
    if (res.rows.length === 0) break;
    await deleteParts(c, res.rows.map((r) => r.id));
    if ((await c.deleteDocs(res.rows.map((r) => r.id))) === 0) break;
  }
  return traces;
}
