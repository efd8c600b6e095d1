/*
 * Downloads: one stored attachment, or a whole trace as a tar archive. Both
 * stream from the store as the client reads (backpressure end to end): a
 * trace of a few GB never sits in the dispatcher's memory.
 */

import type { Request, Response } from 'express';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import type { TraceView } from '../../shared/protocol/client';
import { AttachmentStub, HOST_ATTACHMENT, PCAP_CONTENT_TYPE, ResultDoc, resultDocId, TraceDoc } from '../store/layout';
import { mergedPcap, storedAttachment } from '../store/parts';
import type { TraceStore } from '../store/store';
import type { HostMessage, HostStream } from './messages';
import { callFiguresOf } from '../../shared/query/call-figures';
import type { Logger } from '../../shared/log/log';

/** A name safe inside a Content-Disposition filename and a tar path. */
export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_');
}

/** The selective filter a download's file name says it holds, in the order people search by. */
const NAMED_FILTERS: Array<[key: 'number' | 'callId' | 'ip' | 'port' | 'correlation', label: string]> = [
  ['number', 'number'],
  ['callId', 'callid'],
  ['ip', 'ip'],
  ['port', 'port'],
  ['correlation', 'corr'],
];

/**
 * A download's file name that says what it is: `trace-<id>-<filter>[-<host>].<ext>`,
 * e.g. trace-20240612T104233-3f9a1c-number-5550100123.pcap. Generated ids
 * start with the creation time; any other id gets it appended (YYYYMMDDTHHMM, UTC).
 */
export function downloadName(trace: { id: string; request: unknown; createdAt: string }, ext: 'pcap' | 'tar', host?: string): string {
  const req = (trace.request ?? {}) as Record<string, unknown>;
  let filter = req.all === true ? 'all' : '';
  for (const [key, label] of NAMED_FILTERS) {
    const v = req[key];
    if (Array.isArray(v) && v.length > 0) {
      filter = `${label}-${String(v[0]).slice(0, 40)}${v.length > 1 ? '-etc' : ''}`;
      break;
    }
  }
  const parts = [`trace-${trace.id}`];
  if (filter) parts.push(filter);
  if (!/^\d{8}T\d{4}/.test(trace.id)) {
    const t = new Date(trace.createdAt);
    if (!Number.isNaN(t.getTime())) parts.push(t.toISOString().replace(/[-:]/g, '').slice(0, 13));
  }
  if (host !== undefined) parts.push(host);
  return `${parts.map(safeName).join('-')}.${ext}`;
}

export interface AttachmentDownload {
  store: Pick<TraceStore, 'getAttachmentStream'>;
  docId: string;
  name: string;
  /** From the document just read (same facts as getAttachmentInfo, without a second request). */
  stub: AttachmentStub;
  filename: string;
  log: Logger;
}

/**
 * Sends one attachment with its length. Rejects (so the caller can answer in
 * JSON) only while nothing has been sent; a failure after the first byte cuts
 * the connection, which the client sees as a short download against
 * Content-Length rather than as a complete file.
 */
export function sendAttachment(req: Request, res: Response, d: AttachmentDownload): Promise<void> {
  res.status(200);
  res.setHeader('content-type', d.stub.content_type || PCAP_CONTENT_TYPE);
  res.setHeader('content-length', String(d.stub.length));
  res.setHeader('content-disposition', `attachment; filename="${d.filename}"`);
  if (req.method === 'HEAD') {
    res.end();
    return Promise.resolve();
  }
  const src = d.store.getAttachmentStream(d.docId, d.name);
  return new Promise<void>((resolve, reject) => {
    src.once('error', (err) => {
      src.unpipe(res);
      if (!res.headersSent) {
        for (const h of ['content-type', 'content-length', 'content-disposition']) res.removeHeader(h);
        reject(err);
        return;
      }
      d.log.warn({ attachment: d.name, docId: d.docId, err }, 'download broke off');
      res.destroy(err);
      resolve();
    });
    // The client went away (or the download ended): stop reading from the store.
    res.once('close', () => {
      if (!src.destroyed) src.destroy();
      resolve();
    });
    src.pipe(res);
  });
}

export interface TarDownload {
  store: Pick<TraceStore, 'getAttachmentStream'>;
  trace: TraceDoc;
  results: ResultDoc[];
  view: TraceView;
  messages: HostMessage[];
  streams: HostStream[];
  log: Logger;
}

interface TarPart {
  path: string;
  docId: string;
  name: string;
  size: number;
}

/** Pipes one attachment into one tar entry; the entry's size is the stored length, so a short read fails the entry. */
function addStreamEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, src: Readable): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const entry = pack.entry(header, (err) => (err ? fail(err) : resolve()));
    src.once('error', (err) => {
      src.unpipe(entry);
      fail(err);
    });
    src.pipe(entry);
  });
}

/**
 * trace-<id>/summary.json (the trace, its dialogs' figures, its SIP messages and RTP stream figures), then
 * trace-<id>/merged.pcap and trace-<id>/hosts/<host>.pcap for whatever is
 * stored. Entries are written one after another, each read from the store
 * only when the client has taken the previous one.
 */
export async function sendTraceTar(req: Request, res: Response, d: TarDownload): Promise<void> {
  const id = d.trace.id;
  const dir = `trace-${safeName(id)}`;
  const mtime = new Date(d.trace.finishedAt ?? d.trace.createdAt);
  res.status(200);
  res.setHeader('content-type', 'application/x-tar');
  res.setHeader('content-disposition', `attachment; filename="${downloadName(d.trace, 'tar')}"`);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const parts: TarPart[] = [];
  const merged = mergedPcap(d.trace);
  if (merged) parts.push({ path: `${dir}/merged.pcap`, docId: merged.docId, name: merged.name, size: merged.stub.length });
  for (const r of [...d.results].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0))) {
    const stub = storedAttachment(r, HOST_ATTACHMENT);
    if (stub) parts.push({ path: `${dir}/hosts/${safeName(r.host)}.pcap`, docId: resultDocId(id, r.host), name: HOST_ATTACHMENT, size: stub.length });
  }

  const pack = tar.pack();
  let gone = false;
  let current: Readable | null = null;
  res.once('close', () => {
    gone = true;
    current?.destroy();
    pack.destroy();
  });
  pack.on('error', () => {
    /* reported where it happens; the response is cut below */
  });
  pack.pipe(res);
  try {
    const summary = Buffer.from(`${JSON.stringify({ trace: d.view, calls: callFiguresOf(d.messages), messages: d.messages, streams: d.streams }, null, 2)}\n`);
    await new Promise<void>((resolve, reject) => pack.entry({ name: `${dir}/summary.json`, size: summary.length, mtime, mode: 0o644 }, summary, (err) => (err ? reject(err) : resolve())));
    for (const p of parts) {
      if (gone) return;
      current = d.store.getAttachmentStream(p.docId, p.name);
      await addStreamEntry(pack, { name: p.path, size: p.size, mtime, mode: 0o644 }, current);
      current = null;
    }
    if (!gone) pack.finalize();
  } catch (err) {
    if (gone) return;
    d.log.warn({ traceId: id, err }, 'the tar of a trace broke off');
    // Headers are out: cutting the connection is the only way to say the archive is incomplete.
    res.destroy(err as Error);
  }
}
