/*
 * How the embedded store keeps an attachment bigger than one part: in parts
 * of PART_BYTES, so that neither an upload nor a download holds more than a
 * part in its memory (PouchDB stores an attachment as one LevelDB value and
 * copies it several times on the way: one 200 MB attachment cost about
 * 1.8 GiB). Apache CouchDB streams attachments to disk itself and never
 * sees this layout.
 *
 *   <doc>                          _attachments[name]: the first PART_BYTES (a real attachment)
 *                                  attachmentParts[name]: { upload, parts, length, content_type }
 *   <doc>~<name>~<upload>~<k>      k = 1 .. parts-1: type 'attachment-part', _attachments.part: the next bytes
 *
 * The document is written last, in one write, so it names only parts that
 * are all stored: a reader sees the old attachment or the whole new one.
 * GET and HEAD of <doc>/<name> on the embedded server answer the whole
 * attachment, parts in order, with its full length: a direct reader of the
 * store gets one file, as from CouchDB. The stub in _attachments has the
 * first part's length and digest; attachmentParts holds the whole length
 * (storedAttachment() gives the stub as the dispatcher must see it).
 *
 * A trace whose merged PCAP is its one host's packets.pcap names that
 * attachment (mergedAttachment, see mergedPcap()) on this store as on
 * Apache CouchDB; GET and HEAD of the trace's merged.pcap on the embedded
 * server answer the named attachment (embedded-server.ts), so a direct
 * reader still finds it there.
 */

import { type AttachmentStub, type CouchMeta, MERGED_ATTACHMENT, type TraceDoc, traceDocId } from './layout';

/**
 * Bytes per part: what one upload or download holds at once (PouchDB copies
 * it a few times). 4 MiB rather than 1: every document written costs each
 * view of the database a map call in a fresh vm context when it is next
 * queried (PouchDB's sandbox), about 1 ms each; a 200 MiB attachment in
 * 1 MiB parts cost the store 1.0-2.5 s of CPU to bring the five views up to
 * date, 0.3-1.0 s in 4 MiB parts, with the same CPU for the upload itself.
 * Readers follow the `parts` count, so attachments stored in 1 MiB parts
 * read as before.
 */
export const PART_BYTES = 4 * 1024 * 1024;

export interface AttachmentParts {
  /** Names this upload's part documents; a new upload of the attachment has a new one. */
  upload: string;
  /** Parts in all, the first (in the document itself) included. */
  parts: number;
  /** Bytes of the whole attachment. */
  length: number;
  content_type: string;
}

export type PartedDoc = CouchMeta;

/** Part k (1 and up) of an upload of `name` on `docId`. */
export function partDocId(docId: string, name: string, upload: string, k: number): string {
  return `${docId}~${name}~${upload}~${String(k).padStart(6, '0')}`;
}

/** The _all_docs range holding every part document of `docId` (its attachments, any upload). */
export function partRange(docId: string): { startkey: string; endkey: string } {
  return { startkey: `${docId}~`, endkey: `${docId}~\ufff0` };
}

/** The attachment's stub as a reader must see it: the whole length when it is kept in parts. */
export function storedAttachment(doc: PartedDoc | null | undefined, name: string): AttachmentStub | null {
  const stub = doc?._attachments?.[name];
  if (!stub) return null;
  const parts = doc?.attachmentParts?.[name];
  return parts ? { ...stub, length: parts.length, content_type: parts.content_type } : stub;
}

/**
 * Where a trace's merged PCAP is read: its own merged.pcap, or else the
 * attachment its mergedAttachment names (a one-host trace on Apache CouchDB
 * whose merge is that host's packets.pcap, byte for byte: not uploaded a
 * second time), with the stub a reader sees. Null when it has neither.
 */
export function mergedPcap(trace: TraceDoc): { docId: string; name: string; stub: AttachmentStub } | null {
  const own = storedAttachment(trace, MERGED_ATTACHMENT);
  if (own) return { docId: traceDocId(trace.id), name: MERGED_ATTACHMENT, stub: own };
  const ref = trace.mergedAttachment;
  // Only one of this trace's own host results: a document edited by hand cannot make a download serve another trace's bytes.
  if (!ref || !ref.doc.startsWith(`${traceDocId(trace.id)}:`)) return null;
  return { docId: ref.doc, name: ref.name, stub: { content_type: ref.content_type, length: ref.length, digest: ref.digest } };
}

/**
 * The one byte range a GET's `Range` header asks of an attachment of
 * `length` bytes, inclusive, as RFC 9110 reads it: `bytes=a-b`, `bytes=a-`
 * (to the end), `bytes=-n` (the last n), the end cut to the length.
 * 'unsatisfiable' when it starts past the end (416); null when the whole
 * attachment is to be sent: no header, a unit other than bytes, several
 * ranges or one that does not parse (a server may ignore those).
 */
export function byteRange(header: string | undefined, length: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const m = /^\s*bytes\s*=\s*(\d{0,15})\s*-\s*(\d{0,15})\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || length === 0) return 'unsatisfiable';
    return { start: Math.max(0, length - n), end: length - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= length) return 'unsatisfiable';
  return { start, end: m[2] === '' ? length - 1 : Math.min(Number(m[2]), length - 1) };
}
