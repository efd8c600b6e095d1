/*
 * The dispatcher's storage: traces, per-host results and users in CouchDB,
 * always through nano over HTTP, whether the server is Apache CouchDB
 * (COUCHDB_URL) or the embedded one (embedded.ts). The document layout is
 * described in layout.ts.
 *
 * TraceStore is the one object the rest of the dispatcher holds; each job is
 * in its own module (client.ts: HTTP, errors and conflict retries; traces.ts,
 * results.ts, users.ts, config.ts, attachments.ts) and is only named here.
 */

import type { Readable } from 'node:stream';
import { Mutation, OpenOptions, StoreClient } from './client';
import type { StoreError } from './errors';
import type { AlertRuleDoc, AttachmentStub, ConfigDoc, JsonValue, ResultDoc, TraceDoc, UserDoc } from './layout';
import * as attachments from './attachments';
import * as config from './config';
import * as results from './results';
import * as traces from './traces';
import * as users from './users';
import * as alerts from './alerts';
import type { AlertEvent, AlertRule } from '../../shared/alerts/rule';

export { StoreError, StoreUnreachableError, redactUrl } from './errors';
export type { Mutation, OpenOptions } from './client';
export { newTraceId } from './traces';
export type { ListTracesOptions, NewTrace, TracePage } from './traces';
export type { NewResult } from './results';
export type { NewUser } from './users';

export class TraceStore {
  private readonly c: StoreClient;

  private constructor(opts: OpenOptions) {
    this.c = new StoreClient(opts);
  }

  /**
   * Connects and makes sure the database and design document exist; safe to
   * run from several dispatchers at once.
   */
  static async open(opts: OpenOptions): Promise<TraceStore> {
    const store = new TraceStore(opts);
    await store.c.setUp();
    return store;
  }

  /** Redacted: fit for logs. */
  get url(): string {
    return this.c.url;
  }

  get dbName(): string {
    return this.c.dbName;
  }

  /** Counted here, exposed by the dispatcher's /metrics. */
  get metrics(): { conflictRetries: StoreClient['conflictRetries'] } {
    return { conflictRetries: this.c.conflictRetries };
  }

  /** For /healthz: the server answers and the database is there. */
  ping(): ReturnType<StoreClient['ping']> {
    return this.c.ping();
  }

  // ---- traces.ts -----------------------------------------------------------

  createTrace(input: traces.NewTrace): Promise<TraceDoc> {
    return traces.createTrace(this.c, input);
  }

  getTrace(id: string): Promise<TraceDoc | null> {
    return traces.getTrace(this.c, id);
  }

  updateTrace(id: string, mutate: Mutation<TraceDoc>): Promise<TraceDoc> {
    return traces.updateTrace(this.c, id, mutate);
  }

  /** Newest first; pass the returned bookmark back for the next page. */
  listTraces(opts: traces.ListTracesOptions = {}): Promise<traces.TracePage> {
    return traces.listTraces(this.c, opts);
  }

  /** The trace document and every result document of it. */
  deleteTrace(id: string): Promise<{ trace: boolean; results: number }> {
    return traces.deleteTrace(this.c, id);
  }

  /** See traces.ts purgeOlderThan. */
  purgeOlderThan(days: number, now = new Date()): Promise<number> {
    return traces.purgeOlderThan(this.c, days, now);
  }

  // ---- results.ts ----------------------------------------------------------

  putResult(input: results.NewResult): Promise<ResultDoc> {
    return results.putResult(this.c, input);
  }

  /** The revisions of the documents it made, by id. */
  createResults(inputs: results.NewResult[]): Promise<Map<string, string>> {
    return results.createResults(this.c, inputs);
  }

  writeResults(items: Array<{ result: results.NewResult; pcap?: Buffer; rev?: string }>): Promise<Array<StoreError | null>> {
    return results.writeResults(this.c, items);
  }

  getResult(traceId: string, host: string): Promise<ResultDoc | null> {
    return results.getResult(this.c, traceId, host);
  }

  updateResult(traceId: string, host: string, mutate: Mutation<ResultDoc>): Promise<ResultDoc> {
    return results.updateResult(this.c, traceId, host, mutate);
  }

  listResults(traceId: string): Promise<ResultDoc[]> {
    return results.listResults(this.c, traceId);
  }

  /** The results of `hosts` by id, no view (see results.resultsOf). */
  resultsOf(traceId: string, hosts: readonly string[]): Promise<ResultDoc[]> {
    return results.resultsOf(this.c, traceId, hosts);
  }

  /** listResults, with each of `hosts` whose row may be behind read again by id (see results.settledResults). */
  settledResults(traceId: string, hosts: readonly string[], listed?: readonly ResultDoc[]): Promise<ResultDoc[]> {
    return results.settledResults(this.c, traceId, hosts, listed);
  }

  // ---- attachments.ts ------------------------------------------------------

  putAttachmentStream(docId: string, name: string, contentType: string, readable: Readable): Promise<{ bytes: number; rev: string }> {
    return attachments.putAttachmentStream(this.c, docId, name, contentType, readable);
  }

  getAttachmentInfo(docId: string, name: string): Promise<AttachmentStub | null> {
    return attachments.getAttachmentInfo(this.c, docId, name);
  }

  getAttachmentStream(docId: string, name: string): Readable {
    return attachments.getAttachmentStream(this.c, docId, name);
  }

  // ---- users.ts ------------------------------------------------------------

  getUser(name: string): Promise<UserDoc | null> {
    return users.getUser(this.c, name);
  }

  putUser(user: users.NewUser): Promise<UserDoc> {
    return users.putUser(this.c, user);
  }

  createUser(user: users.NewUser): Promise<UserDoc> {
    return users.createUser(this.c, user);
  }

  listUsers(): Promise<UserDoc[]> {
    return users.listUsers(this.c);
  }

  deleteUser(name: string): Promise<boolean> {
    return users.deleteUser(this.c, name);
  }

  updateUser(name: string, mutate: Mutation<UserDoc>): Promise<UserDoc> {
    return users.updateUser(this.c, name, mutate);
  }

  findUserByTokenId(tokenId: string): Promise<UserDoc | null> {
    return users.findUserByTokenId(this.c, tokenId);
  }

  // ---- alerts.ts -----------------------------------------------------------

  putAlertRule(rule: AlertRule, user: string): Promise<AlertRuleDoc> {
    return alerts.putAlertRule(this.c, rule, user);
  }

  listAlertRules(): Promise<AlertRuleDoc[]> {
    return alerts.listAlertRules(this.c);
  }

  deleteAlertRule(name: string): Promise<boolean> {
    return alerts.deleteAlertRule(this.c, name);
  }

  putAlert(e: AlertEvent): Promise<void> {
    return alerts.putAlert(this.c, e);
  }

  listAlerts(limit = 100): Promise<AlertEvent[]> {
    return alerts.listAlerts(this.c, limit);
  }

  // ---- config.ts -----------------------------------------------------------

  ensureConfig(name: string, initial: { [key: string]: JsonValue }): Promise<ConfigDoc> {
    return config.ensureConfig(this.c, name, initial);
  }
}
