/* Per-host result documents of a trace: one at a time, or many in one request for a fleet-wide trace. */

import type nano from 'nano';
import type { StoreClient, Mutation } from './client';
import { isConflict, StoreError } from './errors';
import { FINAL_RESULT_STATES } from '../../shared/protocol/client';
import { HOST_ATTACHMENT, PCAP_CONTENT_TYPE, ResultDoc, ResultState, checkTraceId, resultDocId } from './layout';

export interface NewResult {
  traceId: string;
  host: string;
  state?: ResultState;
  packets?: number;
  bytes?: number;
  truncated?: boolean;
  error?: string;
  messages?: ResultDoc['messages'];
  streams?: ResultDoc['streams'];
}

export async function resultIds(c: StoreClient, traceId: string): Promise<string[]> {
  checkTraceId(traceId);
  const res = await c.queryView('results_by_trace', { startkey: [traceId], endkey: [traceId, {}] });
  return res.rows.map((r) => r.id);
}

/**
 * Creates the host's result (missing fields: queued, no packets, no
 * messages), or, when it exists, overwrites just the fields given here and
 * keeps the rest and the attachment.
 */
export async function putResult(c: StoreClient, input: NewResult): Promise<ResultDoc> {
  const id = resultDocId(input.traceId, input.host);
  const given: Partial<ResultDoc> = {};
  for (const key of ['state', 'packets', 'bytes', 'truncated', 'error', 'messages', 'streams'] as const) {
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
  const created = await c.serial(id, async () => {
    try {
      return await c.create(doc, `creating result ${id}`);
    } catch (err) {
      if (isConflict(err)) return null;
      throw err;
    }
  });
  return created ?? updateResult(c, input.traceId, input.host, (d) => ({ ...d, ...given }));
}

/**
 * Creates many hosts' results of one trace in one request (a fleet-wide
 * trace asks hundreds of agents at once); results that already exist are
 * left as they are. Returns the revision of each document it created, by
 * id, for writeResults.
 */
export async function createResults(c: StoreClient, inputs: NewResult[]): Promise<Map<string, string>> {
  const made = new Map<string, string>();
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
      ...(input.streams?.length ? { streams: input.streams } : {}),
      updatedAt: now,
    }));
    const res = await c.call(`creating ${docs.length} results`, () => c.db.bulk({ docs }));
    for (const r of res) {
      if (r.error && r.error !== 'conflict') throw new StoreError(`creating ${r.id}: the store at ${c.url} answered ${r.error} ${r.reason ?? ''}`, undefined, r.error);
      if (!r.error && r.id && r.rev) made.set(r.id, r.rev);
    }
  }
  return made;
}

/**
 * Writes many hosts' final results in two requests (their current
 * revisions, then one _bulk_docs), each with its PCAP inline: for the
 * small results of a fleet-wide trace, where a request per host would
 * swamp the store. The caller bounds the inline bytes (they are in
 * memory); large results go through putResult + putAttachmentStream.
 * An item's `rev`, when the caller knows it (createResults made the
 * document), is written on without reading it: PouchDB answers _all_docs
 * with keys with a LevelDB iterator per key, about 1.3 s of the embedded
 * store's CPU per 10,000 results unloaded; a stale one is a conflict like
 * any other. Returns, per input, null or the error for that document (a
 * conflict is StoreError 409: try it again, without the rev).
 */
export async function writeResults(c: StoreClient, items: Array<{ result: NewResult; pcap?: Buffer; rev?: string }>): Promise<Array<StoreError | null>> {
  if (items.length === 0) return [];
  const ids = items.map((i) => resultDocId(i.result.traceId, i.result.host));
  const revOf = new Map<string, string>();
  items.forEach((it, n) => it.rev && revOf.set(ids[n], it.rev));
  const unknown = ids.filter((id) => !revOf.has(id));
  if (unknown.length) {
    const revs = await c.call('reading revisions', () => c.db.fetchRevs({ keys: unknown }));
    for (const row of revs.rows as { id?: string; key?: string; value?: { rev: string; deleted?: boolean } }[]) {
      if (row.id && row.value && !row.value.deleted) revOf.set(row.id, row.value.rev);
    }
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
      ...(r.streams?.length ? { streams: r.streams } : {}),
      updatedAt: now,
    };
    const rev = revOf.get(ids[n]);
    if (rev) doc._rev = rev;
    if (pcap) (doc as unknown as { _attachments: object })._attachments = { [HOST_ATTACHMENT]: { content_type: PCAP_CONTENT_TYPE, data: pcap.toString('base64') } };
    return doc;
  });
  const res = await c.call(`writing ${docs.length} results`, () => c.db.bulk({ docs: docs as nano.MaybeDocument[] }));
  const byId = new Map(res.map((r) => [r.id, r]));
  return ids.map((id) => {
    const r = byId.get(id);
    if (!r) return new StoreError(`writing ${id}: the store at ${c.url} did not answer for it`);
    if (!r.error) return null;
    return new StoreError(`writing ${id}: the store at ${c.url} answered ${r.error} ${r.reason ?? ''}`, r.error === 'conflict' ? 409 : undefined, r.error);
  });
}

export async function getResult(c: StoreClient, traceId: string, host: string): Promise<ResultDoc | null> {
  return c.getRaw<ResultDoc>(resultDocId(traceId, host));
}

/** Like updateTrace; `updatedAt` is set on every write. */
export async function updateResult(c: StoreClient, traceId: string, host: string, mutate: Mutation<ResultDoc>): Promise<ResultDoc> {
  return c.update(resultDocId(traceId, host), mutate, (d) => {
    d.updatedAt = new Date().toISOString();
  });
}

/** Every host's result of a trace, by host name. */
export async function listResults(c: StoreClient, traceId: string): Promise<ResultDoc[]> {
  checkTraceId(traceId);
  const res = await c.queryView('results_by_trace', { startkey: [traceId], endkey: [traceId, {}], include_docs: true });
  return res.rows.filter((r) => r.doc).map((r) => r.doc as ResultDoc);
}

/** Documents one _bulk_get asks for at most (a 10,000-host trace's in ten requests). */
const IDS_PER_READ = 1000;

/** What _bulk_get answers per id asked: the document, or an error (missing, deleted). */
interface BulkGetAnswer {
  results: Array<{ id: string; docs: Array<{ ok?: ResultDoc & { _deleted?: boolean } }> }>;
}

/**
 * The results of `hosts` read by id (_bulk_get), in the order listResults
 * gives on the embedded store: by host, code unit by code unit. No view is
 * brought up to date first: on the embedded store that was most of a fleet
 * trace's merge start (PouchDB maps each of 10,000 new result documents,
 * then reads the rows and each document again). _bulk_get rather than
 * _all_docs with keys: PouchDB answers the latter with a range read (a
 * LevelDB iterator) per key; store alone, 10,000 results, unloaded: view
 * 3.1 s, _all_docs 1.8 s, _bulk_get 0.6 s of CPU. On a CouchDB cluster a
 * read by id is a quorum read. Hosts without a result document are left
 * out, as listResults leaves them.
 */
export async function resultsOf(c: StoreClient, traceId: string, hosts: readonly string[]): Promise<ResultDoc[]> {
  checkTraceId(traceId);
  const out: ResultDoc[] = [];
  const ids = [...new Set(hosts)].map((h) => resultDocId(traceId, h));
  for (let i = 0; i < ids.length; i += IDS_PER_READ) {
    const body = { docs: ids.slice(i, i + IDS_PER_READ).map((id) => ({ id })) };
    const res = (await c.call('reading results', () => c.server.relax({ db: c.dbName, path: '_bulk_get', method: 'POST', body }))) as BulkGetAnswer;
    for (const r of res.results) {
      const doc = r.docs[0]?.ok;
      if (doc && !doc._deleted) out.push(doc);
    }
  }
  return out.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
}

/**
 * The results of `hosts` once every write to them has been acknowledged:
 * for the merge, which must not miss a host's packets.pcap. A view row
 * (and its include_docs) comes from one copy of each shard, and on a CouchDB
 * cluster that copy may not have a write the others acknowledged yet
 * (apache/couchdb#1342); a read by id is a quorum read and has it. So a host
 * whose row is missing, not final, or final with bytes but no packets.pcap
 * is read again by id. On one node (or the embedded store) nothing is read
 * twice: its rows are never behind. `listed`: the view's rows when the
 * caller already read them.
 */
export async function settledResults(c: StoreClient, traceId: string, hosts: readonly string[], listed?: readonly ResultDoc[]): Promise<ResultDoc[]> {
  const byHost = new Map((listed ?? (await listResults(c, traceId))).map((r) => [r.host, r]));
  const final: ReadonlySet<string> = new Set(FINAL_RESULT_STATES);
  const behind = (r: ResultDoc | undefined): boolean => !r || !final.has(r.state) || (r.bytes > 0 && !r._attachments?.[HOST_ATTACHMENT]);
  for (const host of hosts) {
    if (!behind(byHost.get(host))) continue;
    const fresh = await getResult(c, traceId, host);
    if (fresh) byHost.set(host, fresh);
  }
  return [...byHost.values()];
}
