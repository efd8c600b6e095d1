/*
 * The dispatcher's CouchDB layout. One database (default `tracefleet`), three
 * kinds of document (and the alerts' two), one design document. Everything is plain JSON so that a
 * developer can script against CouchDB directly.
 *
 *   trace:<id>            type 'trace'
 *     id, request (the trace's filters, as validated), user, createdAt (ISO),
 *     hosts (agents expected to answer), state
 *     ('running' | 'done' | 'partial' | 'failed' | 'cancelled' | 'interrupted'),
 *     finishedAt? (ISO), merged? { packets, bytes }, clocks? (each host's clock
 *     offset, shared/trace/vantage.ts), hops? (per RTP stream seen on several
 *     hosts, what each hop lost, delayed and jittered)
 *     attachment merged.pcap: every host's packets, time-ordered, de-duplicated;
 *     or, on a store that cannot copy an attachment (Apache CouchDB), for a
 *     trace whose merged PCAP is byte for byte its one host's packets.pcap:
 *     no attachment but mergedAttachment { doc, name, content_type, length,
 *     digest }, that host's attachment (mergedPcap() in parts.ts resolves both)
 *
 *   trace:<id>:<host>     type 'result', one per host asked
 *     traceId, host, state
 *     ('queued' | 'started' | 'done' | 'error' | 'unreachable' | 'lost' | 'cancelled'),
 *     packets, bytes, truncated, error?, messages (SIP summaries for the
 *     ladder), streams? (RTP figures per stream, shared/rtp/figures.ts), updatedAt (ISO)
 *     attachment packets.pcap: that host's PCAP as the agent sent it
 *
 *   user:<name>           type 'user'
 *     name, roles, passwordHash (salted scrypt, encoded by the auth code),
 *     tokens [{ id, hash, createdAt }]
 *
 *   config:<name>         type 'config', settings every dispatcher on the
 *                         database shares; written once, first writer wins
 *     name, data (config:secrets: sessionKey, the key session tokens are
 *     signed with)
 *
 *   alertrule:<name>      type 'alertrule', an alert rule (shared/alerts/rule.ts)
 *     rule (as validated), user (the admin who wrote it last), updatedAt (ISO)
 *
 *   alert:<startsAt>:<key>  type 'alert', one per alert raised, rewritten when cleared
 *     alert (AlertEvent: rule, status firing/resolved, scope, host, peer,
 *     value, startsAt, endsAt, the trace request behind it); ids sort by time
 *
 *   _design/tracefleet    views (keys end with the trace id so that every key
 *                         is unique and a page boundary is just a key):
 *     traces_by_time      [createdAt, id]             → null
 *     traces_by_user      [user, createdAt, id]       → null
 *     results_by_trace    [traceId, host]             → null
 *     results_by_updated  updatedAt                   → traceId
 *     users_by_token      token id                    → user name
 *
 * Trace ids are restricted to [A-Za-z0-9_-] so `trace:<id>:<host>` can never
 * collide with another trace's id; hosts are free text (agent names).
 * Map functions are ES5 strings: CouchDB 3.x may still run SpiderMonkey 1.8.5.
 */

import type { MessageSummary } from '../../agent/query/engine';
import type { RtpStreamFigures } from '../../shared/rtp/figures';
import type { AttachmentParts } from './parts';
import type { RtpHop, TraceClocks } from '../../shared/trace/vantage';
import { type AlertEvent, type AlertRule, RULE_NAME_PATTERN } from '../../shared/alerts/rule';

import { RESULT_STATES, TRACE_STATES } from '../../shared/protocol/client';
import { traceId as traceIdRule } from '../../shared/protocol/common';

export { RESULT_STATES, TRACE_STATES };
export type TraceState = (typeof TRACE_STATES)[number];
export type ResultState = (typeof RESULT_STATES)[number];

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** What CouchDB adds to every document it returns. */
export interface CouchMeta {
  _id: string;
  _rev?: string;
  _attachments?: Record<string, AttachmentStub>;
  /** The embedded store's attachments kept in parts (parts.ts): read stubs through storedAttachment(). */
  attachmentParts?: Record<string, AttachmentParts>;
}

export interface AttachmentStub {
  content_type: string;
  length: number;
  digest: string;
  revpos?: number;
  stub?: boolean;
}

/** An attachment of another document that is a trace's merged PCAP, with its stub as that document has it. */
export interface MergedReference {
  doc: string;
  name: string;
  content_type: string;
  length: number;
  digest: string;
}

export interface TraceDoc extends CouchMeta {
  type: 'trace';
  id: string;
  request: { [key: string]: JsonValue };
  user: string;
  createdAt: string;
  hosts: string[];
  state: TraceState;
  finishedAt?: string;
  merged?: { packets: number; bytes: number; duplicates: number };
  /** The merged PCAP is this attachment of another document, byte for byte (see mergedPcap()); an own merged.pcap wins. */
  mergedAttachment?: MergedReference;
  /** Hosts' clock offsets, from packets two hosts both captured; set by the merge when any were. */
  clocks?: TraceClocks;
  /** Per RTP stream seen on several hosts, each hop between two of them; set by the merge. */
  hops?: RtpHop[];
}

export interface ResultDoc extends CouchMeta {
  type: 'result';
  traceId: string;
  host: string;
  state: ResultState;
  packets: number;
  bytes: number;
  truncated: boolean;
  error?: string;
  messages: MessageSummary[];
  /** RTP figures per stream of the traced calls; absent in results stored before they existed. */
  streams?: RtpStreamFigures[];
  updatedAt: string;
}

export interface UserToken {
  id: string;
  hash: string;
  createdAt: string;
}

export interface UserDoc extends CouchMeta {
  type: 'user';
  name: string;
  roles: string[];
  passwordHash: string;
  tokens: UserToken[];
}

export interface ConfigDoc extends CouchMeta {
  type: 'config';
  name: string;
  data: { [key: string]: JsonValue };
}

export interface AlertRuleDoc extends CouchMeta {
  type: 'alertrule';
  rule: AlertRule;
  user: string;
  updatedAt: string;
}

export interface AlertDoc extends CouchMeta {
  type: 'alert';
  alert: AlertEvent;
}

export const MERGED_ATTACHMENT = 'merged.pcap';
export const HOST_ATTACHMENT = 'packets.pcap';
export const PCAP_CONTENT_TYPE = 'application/vnd.tcpdump.pcap';


export function checkTraceId(id: string): string {
  const r = traceIdRule.safeParse(id);
  if (!r.success) throw new Error(`trace id ${JSON.stringify(id)} is not valid: ${r.error.issues[0].message}`);
  return id;
}

export function checkHost(host: string): string {
  if (host.length === 0 || host.length > 253) {
    throw new Error(`host name ${JSON.stringify(host)} is not valid: it must have 1-253 characters`);
  }
  return host;
}

export function traceDocId(id: string): string {
  return `trace:${checkTraceId(id)}`;
}

export function resultDocId(traceId: string, host: string): string {
  return `trace:${checkTraceId(traceId)}:${checkHost(host)}`;
}

export function userDocId(name: string): string {
  if (name.length === 0 || name.length > 200) {
    throw new Error(`user name ${JSON.stringify(name)} is not valid: it must have 1-200 characters`);
  }
  return `user:${name}`;
}

export function configDocId(name: string): string {
  if (!/^[a-z][a-z0-9_-]{0,63}$/.test(name)) {
    throw new Error(`config name ${JSON.stringify(name)} is not valid: use 1-64 of a-z, 0-9, '_' or '-', starting with a letter`);
  }
  return `config:${name}`;
}

export function alertRuleDocId(name: string): string {
  if (!new RegExp(RULE_NAME_PATTERN).test(name)) throw new Error(`alert rule name ${JSON.stringify(name)} is not valid`);
  return `alertrule:${name}`;
}

/** Alert keys are a rule name and a host or peer (printable, no spaces): ids stay plain. */
export function alertDocId(startsAt: string, key: string): string {
  return `alert:${startsAt}:${key}`;
}

export const DESIGN_NAME = 'tracefleet';

/**
 * `version` lets a newer dispatcher replace the views of an older one on
 * start; bump it whenever a map function changes.
 */
export const DESIGN_DOC = {
  _id: `_design/${DESIGN_NAME}`,
  language: 'javascript',
  version: 1,
  views: {
    traces_by_time: {
      map: "function (doc) { if (doc.type === 'trace') { emit([doc.createdAt, doc.id], null); } }",
    },
    traces_by_user: {
      map: "function (doc) { if (doc.type === 'trace') { emit([doc.user, doc.createdAt, doc.id], null); } }",
    },
    results_by_trace: {
      map: "function (doc) { if (doc.type === 'result') { emit([doc.traceId, doc.host], null); } }",
    },
    results_by_updated: {
      map: "function (doc) { if (doc.type === 'result') { emit(doc.updatedAt, doc.traceId); } }",
    },
    users_by_token: {
      map:
        "function (doc) { if (doc.type === 'user' && doc.tokens) { for (var i = 0; i < doc.tokens.length; i++) { emit(doc.tokens[i].id, doc.name); } } }",
    },
  },
} as const;

export type ViewName = keyof typeof DESIGN_DOC.views;
