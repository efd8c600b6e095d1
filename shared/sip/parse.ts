import type { NameAddr, SdpInfo, SipMessage } from './types';
import { parseSdp } from './sdp';

export { sipDigits } from './number';

export interface ParseSipOptions {
  /** Header whose value is the correlation id; case-insensitive. Default 'X-CID'. */
  correlationHeader?: string;
  /**
   * The bytes are only the start of the message (the capture cut it): a last
   * header or SDP line without its line end may have lost bytes and is left
   * out rather than read as a shorter value (a cut Call-ID is another call's).
   */
  truncated?: boolean;
  /**
   * Fill `headers` with every header (default). The indexer passes false: it
   * reads only the fields parseSip returns, and decoding every header's name
   * and value into strings would be most of what a parse costs.
   */
  allHeaders?: boolean;
  /** Also return the start line and the header names as written (shared/sip/message shows them). */
  asWritten?: boolean;
}

/*
 * The parser sees every SIP message a capture indexer reads, including
 * truncated, corrupted and hostile ones, so it is written to be linear in the
 * input and never to throw: the start line decides whether the bytes are SIP
 * at all (null if not), and a header that cannot be understood only leaves its
 * field null. Nothing here catches exceptions; the robustness test relies on
 * that to find real crashes.
 */

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;


/** RFC 3261 token characters. */
const TOKEN = new Uint8Array(128);
for (const ch of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`\'~') {
  TOKEN[ch.charCodeAt(0)] = 1;
}
function isToken(c: number): boolean {
  return c < 128 && TOKEN[c] === 1;
}
function isAlpha(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}
function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** RFC 3261 §7.3.3 and the compact forms registered since (RFC 3265, 3515, 3892, 3841, 4028, 4474, 6086). */
const COMPACT = new Map<string, string>([
  ['i', 'call-id'],
  ['f', 'from'],
  ['t', 'to'],
  ['v', 'via'],
  ['m', 'contact'],
  ['l', 'content-length'],
  ['c', 'content-type'],
  ['e', 'content-encoding'],
  ['s', 'subject'],
  ['k', 'supported'],
  ['o', 'event'],
  ['r', 'refer-to'],
  ['b', 'referred-by'],
  ['u', 'allow-events'],
  ['x', 'session-expires'],
  ['j', 'reject-contact'],
  ['a', 'accept-contact'],
  ['d', 'request-disposition'],
  ['y', 'identity'],
  ['n', 'identity-info'],
]);

/** Cheap pre-check so the exact per-header xref search runs only on the rare message that has one. */
const XREF_HINT = /;\s*xref\s*=/i;

/**
 * Parses one SIP message. Returns null when the bytes do not begin with a SIP
 * start line. CRLFs before it are skipped, as RFC 3261 §7.5 asks of stream
 * transports, and counted in headerLength so the body always starts at
 * bytes[headerLength]. `body` is a view into `bytes`, not a copy.
 */
export function parseSip(bytes: Buffer, opts?: ParseSipOptions): SipMessage | null {
  const len = bytes.length;
  let start = 0;
  while (start < len && (bytes[start] === CR || bytes[start] === LF)) start++;
  if (start >= len) return null;

  const firstLf = bytes.indexOf(LF, start);
  let lineEnd = firstLf < 0 ? len : firstLf;
  if (lineEnd > start && bytes[lineEnd - 1] === CR) lineEnd--;
  // A lone CR ends the start line too, as tshark reads it.
  const firstCr = bytes.indexOf(CR, start);
  if (firstCr >= 0 && firstCr < lineEnd) lineEnd = firstCr;
  const kind = startLineKind(bytes, start, lineEnd);
  if (kind === NOT_SIP) return null;

  // The header block ends at the first empty line; bare LF is tolerated, so
  // the first LF followed by CR LF or by LF ends it. One pass over the header
  // bytes: searching for each pattern apart would run the second one through
  // the whole body.
  let headerLength = len;
  let blockEnd = len;
  if (firstLf >= 0) {
    for (let i = firstLf; i < len; i++) {
      if (bytes[i] !== LF) continue;
      const next = bytes[i + 1];
      if (next === LF) {
        blockEnd = i;
        headerLength = i + 2;
        break;
      }
      if (next === CR && bytes[i + 2] === LF) {
        blockEnd = i;
        headerLength = i + 3;
        break;
      }
    }
  }
  if (opts?.truncated === true && headerLength === len && firstLf >= 0) blockEnd = Math.max(firstLf, lastLineEnd(bytes, start, len));

  // The start line ends at the first LF or CR (lineEnd above); a lone CR
  // ends it too, and the header lines start after it.
  const nlAt = firstLf < 0 ? blockEnd : firstLf;
  const headersFrom = firstCr >= 0 && firstCr < nlAt - 1 ? firstCr + 1 : nlAt + 1;
  scanHeaderLines(bytes, headersFrom, blockEnd);
  return parseScanned(bytes, opts, start, lineEnd, kind, headerLength, blockEnd, headersFrom);
}

/**
 * The layout of a message parseSip would find, found elsewhere (the indexer's
 * native scan, agent/index/native/scan.cc), in an Int32Array: from `at`, the
 * start, start line end, first LF, first CR, kind (1 request, 2 response),
 * header length, header block end, first header byte, whether the lines hold
 * "xref", the line count, the scan's facts (SCANNED_*), 34 slots of its decoded values (not read here), then 4 per header line (name start,
 * name end, value start, value end; name start -1 for a continuation).
 * For a whole message only (not `truncated`).
 */
export const SCAN_SLOTS = 11 + 34;
export function parseSipScanned(bytes: Buffer, opts: ParseSipOptions | undefined, scan: Int32Array, at: number): SipMessage {
  if (opts?.truncated === true) throw new Error('parseSipScanned: a cut message is parsed by parseSip');
  const n = scan[at + 9];
  const from = at + SCAN_SLOTS;
  if (lines.length < 4 * n) lines = new Int32Array(Math.max(4 * n, 2 * lines.length));
  // Copied by hand: a subarray for set() would be an object a message.
  for (let i = 0; i < 4 * n; i++) lines[i] = scan[from + i];
  lineCount = n;
  linesHoldXref = scan[at + 8] !== 0;
  const facts = scan[at + 10];
  asciiBytes = facts & SCANNED_ASCII ? bytes : null;
  asciiEnd = scan[at + 6];
  startHoldsXref = (facts & SCANNED_XREF_START) !== 0 ? 1 : 0;
  try {
    return parseScanned(bytes, opts, scan[at], scan[at + 1], scan[at + 4], scan[at + 5], scan[at + 6], scan[at + 7]);
  } finally {
    asciiBytes = null;
    startHoldsXref = -1;
  }
}

/** The scan's facts (slot 10): its bytes to the header block's end are ASCII; its start line holds "xref". */
const SCANNED_ASCII = 1;
const SCANNED_XREF_START = 2;
/**
 * Set while a scanned message is parsed: decodeText() of `asciiBytes` before `asciiEnd` needs no check for
 * bytes of 0x80 or more (the scan found none); startHoldsXref is hasXrefBytes() of its start line (-1: not known).
 */
let asciiBytes: Buffer | null = null;
let asciiEnd = 0;
let startHoldsXref = -1;

/** parseSip from the start line on, its header lines scanned (lines, lineCount, linesHoldXref). */
function parseScanned(
  bytes: Buffer, opts: ParseSipOptions | undefined, start: number, lineEnd: number, kind: number,
  headerLength: number, blockEnd: number, headersFrom: number,
): SipMessage {
  const len = bytes.length;
  const startLine = decodeText(bytes, start, lineEnd);

  let method: string | null = null;
  let requestUri: string | null = null;
  let status: number | null = null;
  let reason: string | null = null;
  if (kind === REQUEST) {
    const sp1 = startLine.indexOf(' ');
    const sp2 = startLine.indexOf(' ', sp1 + 1);
    method = startLine.slice(0, sp1).toUpperCase();
    requestUri = startLine.slice(sp1 + 1, sp2);
  } else {
    status = Number(startLine.slice(8, 11));
    reason = startLine.length > 12 ? trimLws(startLine, 12, startLine.length) : '';
  }

  const all = opts?.allHeaders !== false || opts?.asWritten === true;
  const writtenNames: string[] | null = opts?.asWritten === true ? [] : null;
  let headers: Array<[string, string]> = all ? headerList(bytes, writtenNames) : [];

  const corrName = correlationName(opts?.correlationHeader ?? 'X-CID');
  let callId: string | null = null;
  let cseq: SipMessage['cseq'] = null;
  let from: NameAddr | null = null;
  let to: NameAddr | null = null;
  let seenFrom = false;
  let seenTo = false;
  const pai: NameAddr[] = [];
  let contentLength = -1;
  let seenContentLength = false;
  let contentType: string | null = null;
  let correlation: string | null = null;
  let sessionId: string | null = null;
  let sessionRemote: string | null = null;
  let seenSessionId = false;
  let icid: string | null = null;

  // Names are matched on the bytes; only the values of the headers read here are decoded.
  for (let k = 0, h = -1; k < lineCount; k++) {
    const ns = lines[4 * k];
    if (ns < 0) continue;
    h++;
    const ne = lines[4 * k + 1];
    const isCorr = correlation === null && nameIs(bytes, ns, ne, corrName);
    const id = headerKind(bytes, ns, ne);
    if (id === H_OTHER && !isCorr) continue;
    const value = all ? headers[h][1] : headerValue(bytes, k);
    if (isCorr && value.length > 0) correlation = value;
    // Single-valued headers: the first occurrence wins, as proxies do.
    switch (id) {
      case H_CALL_ID:
        if (callId === null && value.length > 0) callId = value;
        break;
      case H_CSEQ:
        if (cseq === null) cseq = parseCSeq(value);
        break;
      case H_FROM:
        if (!seenFrom) {
          seenFrom = true;
          from = parseNameAddr(value);
        }
        break;
      case H_TO:
        if (!seenTo) {
          seenTo = true;
          to = parseNameAddr(value);
        }
        break;
      case H_PAI:
        for (const entry of splitList(value)) {
          const na = parseNameAddr(entry);
          if (na !== null) pai.push(na);
        }
        break;
      case H_CONTENT_LENGTH:
        if (!seenContentLength) {
          seenContentLength = true;
          contentLength = parseUint(value);
        }
        break;
      case H_CONTENT_TYPE:
        if (contentType === null) contentType = value;
        break;
      case H_SESSION_ID:
        if (!seenSessionId) {
          seenSessionId = true;
          sessionId = sessionIdOf(value);
          sessionRemote = sessionRemoteOf(value);
        }
        break;
      case H_CHARGING_VECTOR:
        // icid-value leads the header's parameters: findParam looks for them after a ';'.
        if (icid === null) icid = icidOf(value);
        break;
      default:
        break;
    }
  }

  // An xref parameter may be in any header: the rare message whose bytes
  // hold "xref" at all gets the exact (text) test and, if it passes, every header.
  const mayHoldXref = linesHoldXref || (startHoldsXref < 0 ? hasXrefBytes(bytes, start, headersFrom) : startHoldsXref === 1);
  if (correlation === null && mayHoldXref && XREF_HINT.test(decodeText(bytes, start, blockEnd))) {
    if (!all) headers = headerList(bytes);
    correlation = findXref(requestUri, headers);
    if (!all) headers = [];
  }

  let bodyEnd = len;
  if (contentLength >= 0 && headerLength + contentLength < len) bodyEnd = headerLength + contentLength;
  const body = bytes.subarray(headerLength, bodyEnd);

  let sdp: SdpInfo | null = null;
  const sdpBody = opts?.truncated === true ? body.subarray(0, Math.max(0, lastLineEnd(body, 0, body.length))) : body;
  if (contentType !== null && sdpBody.length > 0) sdp = sdpFromBody(contentType, sdpBody);

  return {
    method,
    requestUri,
    status,
    reason,
    callId,
    cseq,
    from,
    to,
    pai,
    ruriUser: requestUri === null ? null : uriUser(requestUri),
    correlation,
    sessionId,
    sessionRemote,
    icid,
    headers,
    headerLength,
    body,
    sdp,
    ...(writtenNames ? { asWritten: { startLine, names: writtenNames } } : {}),
  };
}

// The indexer passes the same correlation header with every message: normalise it once.
let corrGiven = '';
let corrNormal = '';
function correlationName(given: string): string {
  if (given !== corrGiven) {
    corrGiven = given;
    corrNormal = given.trim().toLowerCase();
  }
  return corrNormal;
}

/** Offset of the last line terminator (LF, or a CR tshark would end the line at) in bytes[from, to); -1 when none. */
function lastLineEnd(bytes: Buffer, from: number, to: number): number {
  const lf = bytes.lastIndexOf(LF, to - 1);
  const cr = bytes.lastIndexOf(CR, to - 1);
  const e = Math.max(lf, cr);
  return e >= from ? e : -1;
}

const NOT_SIP = 0;
const REQUEST = 1;
const RESPONSE = 2;

/** `SIP/2.0`, case-insensitively, at bytes[i..i+7). */
function isVersionAt(b: Buffer, i: number): boolean {
  return (
    (b[i] | 0x20) === 0x73 &&
    (b[i + 1] | 0x20) === 0x69 &&
    (b[i + 2] | 0x20) === 0x70 &&
    b[i + 3] === 0x2f &&
    b[i + 4] === 0x32 &&
    b[i + 5] === 0x2e &&
    b[i + 6] === 0x30
  );
}

/**
 * Classifies the start line bytes [s, e) (line terminator excluded). Checked on
 * the raw bytes so non-SIP payloads (RTP, TLS, HTTP) are rejected after a few
 * byte comparisons and are never decoded.
 */
function startLineKind(b: Buffer, s: number, e: number): number {
  // Status-Line: SIP/2.0 SP 3DIGIT SP Reason-Phrase. A missing reason phrase is
  // accepted because some UAs send "SIP/2.0 200" and it is unambiguous.
  if (e - s >= 11 && isVersionAt(b, s) && b[s + 7] === SP) {
    // Any three digits (extension-code), as tshark reads them.
    if (!isDigit(b[s + 8]) || !isDigit(b[s + 9]) || !isDigit(b[s + 10])) return NOT_SIP;
    if (e - s === 11 || b[s + 11] === SP) return RESPONSE;
    return NOT_SIP;
  }

  // Request-Line: Method SP Request-URI SP SIP/2.0
  return strictRequestLine(b, s, e) || laxRequestLine(b, s, e) ? REQUEST : NOT_SIP;
}

/**
 * What tshark still shows as a request (framing.ts laxRequestLine): a
 * printable first byte, then any but NUL to the first space, a Request-URI with a ':' after its first
 * byte, then SIP/2.0.
 */
function laxRequestLine(b: Buffer, s: number, e: number): boolean {
  const v = e - 7;
  if (b[s] <= SP || b[s] >= 0x7f) return false;
  if (v - 1 <= s || b[v - 1] !== SP || !isVersionAt(b, v)) return false;
  let i = s;
  while (i < v - 1 && b[i] !== SP) {
    if (b[i] === 0) return false;
    i++;
  }
  if (i === s || i >= v - 1) return false;
  const uri = ++i;
  let colon = false;
  for (; i < v - 1; i++) {
    const c = b[i];
    if (c === SP || c === 0) return false;
    if (c === 0x3a && i > uri) colon = true;
  }
  return colon;
}

function strictRequestLine(b: Buffer, s: number, e: number): boolean {
  let i = s;
  while (i < e && isToken(b[i])) i++;
  if (i === s || i >= e || b[i] !== SP) return false;
  i++;
  // The Request-URI needs a scheme (RFC 3986 §3.1) so "call +1 555 ..." is not a request.
  const uriStart = i;
  if (i >= e || !isAlpha(b[i])) return false;
  i++;
  while (i < e) {
    const c = b[i];
    if (isAlpha(c) || isDigit(c) || c === 0x2b || c === 0x2d || c === 0x2e) i++;
    else break;
  }
  if (i >= e || b[i] !== 0x3a /* : */) return false;
  i++;
  while (i < e && b[i] > SP && b[i] !== 0x7f) i++;
  if (i === uriStart || i >= e || b[i] !== SP) return false;
  i++;
  if (e - i !== 7 || !isVersionAt(b, i)) return false;
  return true;
}

/**
 * Header text is ASCII in practice and latin1 decoding is the fastest exact
 * one; when there are non-ASCII bytes (UTF-8 display names) decode as UTF-8 so
 * they come out right. Malformed UTF-8 becomes U+FFFD, never an exception.
 */
function decodeText(b: Buffer, s: number, e: number): string {
  if (b === asciiBytes && e <= asciiEnd) return b.toString('latin1', s, e);
  for (let i = s; i < e; i++) if (b[i] >= 0x80) return b.toString('utf8', s, e);
  return b.toString('latin1', s, e);
}

function isLws(c: number): boolean {
  return c === SP || c === HTAB;
}

function trimLws(s: string, from: number, to: number): string {
  while (from < to && isLws(s.charCodeAt(from))) from++;
  while (to > from && isLws(s.charCodeAt(to - 1))) to--;
  return s.slice(from, to);
}

function skipLws(s: string, i: number): number {
  while (i < s.length && isLws(s.charCodeAt(i))) i++;
  return i;
}

/*
 * Header lines are found on the bytes. The line rules are RFC 3261 §7.3.1's
 * with tshark's reading of a lone CR as a line end too (otherwise a header
 * after it, a Call-ID say, would be read differently by the trace and by its
 * viewer). Lines that are not `token HCOLON value` are dropped, with any
 * continuation of theirs.
 *
 * The scan leaves, per kept line, [nameStart, nameEnd, valueStart, valueEnd]
 * (value without surrounding LWS) in `lines`; a folded continuation line has
 * nameStart -1. Parsing is synchronous and never re-entered, so one scratch
 * serves every call and a parse allocates nothing per header it does not read.
 */
let lines = new Int32Array(4 * 64);
let lineCount = 0;

function pushLine(ns: number, ne: number, vs: number, ve: number): void {
  if (4 * lineCount + 4 > lines.length) {
    const bigger = new Int32Array(lines.length * 2);
    bigger.set(lines);
    lines = bigger;
  }
  const at = 4 * lineCount++;
  lines[at] = ns;
  lines[at + 1] = ne;
  lines[at + 2] = vs;
  lines[at + 3] = ve;
}

/** Set by scanHeaderLines: the lines hold "xref" in some case (see hasXrefBytes). */
let linesHoldXref = false;

function scanHeaderLines(b: Buffer, pos: number, n: number): void {
  lineCount = 0;
  linesHoldXref = false;
  let named = false;
  while (pos < n) {
    let end = pos;
    // The xref test rides on this pass over every byte rather than making another.
    for (; end < n; end++) {
      const c = b[end];
      if (c === LF || c === CR) break;
      if ((c | 0x20) === 0x78 && !linesHoldXref) linesHoldXref = hasXrefBytes(b, end, end + 4);
    }
    // CR LF is one line end; a lone CR or LF is one too.
    const next = end < n && b[end] === CR && end + 1 < n && b[end + 1] === LF ? end + 2 : end + 1;
    if (isLws(b[pos])) {
      if (named) {
        let s = pos;
        let e = end;
        while (s < e && isLws(b[s])) s++;
        while (e > s && isLws(b[e - 1])) e--;
        if (e > s) pushLine(-1, -1, s, e);
      }
    } else {
      named = false;
      let i = pos;
      while (i < end && isToken(b[i])) i++;
      const nameEnd = i;
      while (i < n && isLws(b[i])) i++;
      if (nameEnd > pos && i < end && b[i] === 0x3a /* : */) {
        let s = i + 1;
        let e = end;
        while (s < e && isLws(b[s])) s++;
        while (e > s && isLws(b[e - 1])) e--;
        pushLine(pos, nameEnd, s, e);
        named = true;
      }
    }
    pos = next;
  }
}

/** Value of the header at scanned line k, its continuation lines joined with a single space. */
function headerValue(b: Buffer, k: number): string {
  let value = decodeText(b, lines[4 * k + 2], lines[4 * k + 3]);
  for (let j = k + 1; j < lineCount && lines[4 * j] < 0; j++) {
    const more = decodeText(b, lines[4 * j + 2], lines[4 * j + 3]);
    value = value.length > 0 ? value + ' ' + more : more;
  }
  return value;
}

/** Every scanned header: [lower-case long-form name, value]; each name as written goes to `written` when given. */
function headerList(b: Buffer, written: string[] | null = null): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let k = 0; k < lineCount; k++) {
    const ns = lines[4 * k];
    if (ns < 0) continue;
    const asWritten = b.toString('latin1', ns, lines[4 * k + 1]);
    written?.push(asWritten);
    let name = asWritten.toLowerCase();
    if (name.length === 1) name = COMPACT.get(name) ?? name;
    out.push([name, headerValue(b, k)]);
  }
  return out;
}

function lowerByte(c: number): number {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

/** Whether bytes [s, e) are `word` (lower-case) in any case. */
function bytesAre(b: Buffer, s: number, e: number, word: string): boolean {
  if (e - s !== word.length) return false;
  for (let i = 0; i < word.length; i++) if (lowerByte(b[s + i]) !== word.charCodeAt(i)) return false;
  return true;
}

/** Whether the header name at [s, e), compact forms expanded, is `name` (lower-case). */
function nameIs(b: Buffer, s: number, e: number, name: string): boolean {
  if (e - s === 1) {
    const letter = String.fromCharCode(lowerByte(b[s]));
    return (COMPACT.get(letter) ?? letter) === name;
  }
  return bytesAre(b, s, e, name);
}

const H_OTHER = 0;
const H_CALL_ID = 1;
const H_CSEQ = 2;
const H_FROM = 3;
const H_TO = 4;
const H_PAI = 5;
const H_CONTENT_LENGTH = 6;
const H_CONTENT_TYPE = 7;
const H_SESSION_ID = 8;
const H_CHARGING_VECTOR = 9;

/** Which of the headers parseSip reads the name at [s, e) is, compact forms included. */
function headerKind(b: Buffer, s: number, e: number): number {
  switch (e - s) {
    case 1:
      switch (lowerByte(b[s])) {
        case 0x69 /* i */: return H_CALL_ID;
        case 0x66 /* f */: return H_FROM;
        case 0x74 /* t */: return H_TO;
        case 0x6c /* l */: return H_CONTENT_LENGTH;
        case 0x63 /* c */: return H_CONTENT_TYPE;
        default: return H_OTHER;
      }
    case 2: return bytesAre(b, s, e, 'to') ? H_TO : H_OTHER;
    case 4: return bytesAre(b, s, e, 'from') ? H_FROM : bytesAre(b, s, e, 'cseq') ? H_CSEQ : H_OTHER;
    case 7: return bytesAre(b, s, e, 'call-id') ? H_CALL_ID : H_OTHER;
    case 10: return bytesAre(b, s, e, 'session-id') ? H_SESSION_ID : H_OTHER;
    case 12: return bytesAre(b, s, e, 'content-type') ? H_CONTENT_TYPE : H_OTHER;
    case 14: return bytesAre(b, s, e, 'content-length') ? H_CONTENT_LENGTH : H_OTHER;
    case 17: return bytesAre(b, s, e, 'p-charging-vector') ? H_CHARGING_VECTOR : H_OTHER;
    case 19: return bytesAre(b, s, e, 'p-asserted-identity') ? H_PAI : H_OTHER;
    default: return H_OTHER;
  }
}

/**
 * Whether bytes [s, e) hold "xref" in any case: XREF_HINT cannot match text
 * without it. `c | 0x20` folds the case of exactly these letters (no other
 * byte maps onto x, r, e or f).
 */
function hasXrefBytes(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i + 4 <= e; i++) {
    if ((b[i] | 0x20) === 0x78 && (b[i + 1] | 0x20) === 0x72 && (b[i + 2] | 0x20) === 0x65 && (b[i + 3] | 0x20) === 0x66) return true;
  }
  return false;
}

/** The sender's UUID of a Session-ID value (SipMessage.sessionId). */
export function sessionIdOf(value: string): string | null {
  const semi = value.indexOf(';');
  return sessionUuid(semi < 0 ? value : value.slice(0, semi));
}

/** The peer's UUID of a Session-ID value, its `remote` parameter (SipMessage.sessionRemote). */
export function sessionRemoteOf(value: string): string | null {
  const semi = value.indexOf(';');
  const remote = semi < 0 ? null : findParam(value, semi, 'remote');
  return remote ? sessionUuid(remote) : null;
}

/** The icid-value of a P-Charging-Vector value (SipMessage.icid); it leads the header's parameters: findParam looks for them after a ';'. */
export function icidOf(value: string): string | null {
  return findParam(';' + value, 0, 'icid-value') || null;
}

/** The names parseSip reads (long forms) and those the compact forms stand for: a correlation header named so is read by parseSip alone. */
const READ_NAMES = new Set(['call-id', 'cseq', 'from', 'to', 'p-asserted-identity', 'content-length', 'content-type', 'session-id', 'p-charging-vector', ...COMPACT.values()]);

/**
 * The correlation header's name (default X-CID) as the indexer's native scan takes it to decode a message's
 * values itself (agent/index/native/scan.cc decodeFields): lower case, 2 to 256 token characters. Null for a
 * name it would read otherwise than parseSip (a single letter, one of the names parseSip reads or a compact
 * form's): the scan then leaves the values to parseSipScanned.
 */
export function correlationForScan(given?: string): Buffer | null {
  const name = correlationName(given ?? 'X-CID');
  if (name.length < 2 || name.length > 256 || READ_NAMES.has(name)) return null;
  for (let i = 0; i < name.length; i++) if (!isToken(name.charCodeAt(i))) return null;
  return Buffer.from(name, 'latin1');
}

const NULL_UUID = '00000000000000000000000000000000';

/**
 * A UUID of an RFC 7989 Session-ID (`<local-uuid>;remote=<uuid>`), lower
 * case. The null UUID (a UA that does not know its peer's yet, RFC 7989
 * section 6) and anything that is not 32 hex digits are no key: an
 * implementation's placeholder would link every call it handled.
 */
function sessionUuid(value: string): string | null {
  const u = value.trim().toLowerCase();
  if (u.length !== 32 || u === NULL_UUID) return null;
  for (let i = 0; i < 32; i++) {
    const c = u.charCodeAt(i);
    if (!(isDigit(c) || (c >= 0x61 && c <= 0x66))) return null;
  }
  return u;
}

/** A non-negative decimal of at most 10 digits (with surrounding LWS); -1 otherwise. */
function parseUint(value: string): number {
  const n = value.length;
  if (n === 0 || n > 10) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** `CSeq: 1*DIGIT LWS Method`; null when malformed. */
function parseCSeq(value: string): { seq: number; method: string } | null {
  const n = value.length;
  let i = 0;
  while (i < n && isDigit(value.charCodeAt(i))) i++;
  // RFC 3261 limits the number to 2**31; allow the full 32 bits some stacks use.
  if (i === 0 || i > 10) return null;
  const seq = Number(value.slice(0, i));
  if (seq > 0xffffffff) return null;
  const ms = skipLws(value, i);
  if (ms === i) return null;
  let j = ms;
  while (j < n && isToken(value.charCodeAt(j))) j++;
  if (j === ms || skipLws(value, j) !== n) return null;
  return { seq, method: value.slice(ms, j).toUpperCase() };
}

/**
 * Reads the quoted-string starting at s[i] === '"', undoing backslash escapes.
 * Returns null when it is not terminated.
 */
function readQuoted(s: string, i: number): { value: string; end: number } | null {
  const n = s.length;
  let j = i + 1;
  let escaped = false;
  while (j < n) {
    const c = s.charCodeAt(j);
    if (c === 0x5c /* \ */) {
      escaped = true;
      j += 2;
    } else if (c === 0x22 /* " */) {
      break;
    } else {
      j++;
    }
  }
  if (j >= n) return null;
  const raw = s.slice(i + 1, j);
  return { value: escaped ? raw.replace(/\\([\s\S])/g, '$1') : raw, end: j + 1 };
}

/** Index just past the quoted-string at s[i] === '"', or s.length when unterminated. */
function skipQuoted(s: string, i: number): number {
  const n = s.length;
  let j = i + 1;
  while (j < n) {
    const c = s.charCodeAt(j);
    if (c === 0x5c) j += 2;
    else if (c === 0x22) return j + 1;
    else j++;
  }
  return n;
}

/**
 * Splits a header value into its comma-separated entries; commas inside
 * quoted strings and <...> do not split.
 */
function splitList(value: string): string[] {
  const out: string[] = [];
  const n = value.length;
  let start = 0;
  let i = 0;
  let inAngle = false;
  while (i < n) {
    const c = value.charCodeAt(i);
    if (c === 0x22 && !inAngle) {
      i = skipQuoted(value, i);
      continue;
    }
    if (c === 0x3c /* < */) inAngle = true;
    else if (c === 0x3e /* > */) inAngle = false;
    else if (c === 0x2c /* , */ && !inAngle) {
      out.push(value.slice(start, i));
      start = i + 1;
    }
    i++;
  }
  out.push(value.slice(start));
  return out;
}

/**
 * Value of the first `;name=value` parameter at or after `from` (name
 * case-insensitive, value unquoted). '' for a parameter without a value, null
 * when absent. Quoted strings are skipped, so a ';' inside one is not a parameter.
 */
function findParam(s: string, from: number, name: string): string | null {
  const n = s.length;
  let i = from;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === 0x22) {
      i = skipQuoted(s, i);
      continue;
    }
    if (c !== 0x3b /* ; */) {
      i++;
      continue;
    }
    const ns = skipLws(s, i + 1);
    let ne = ns;
    while (ne < n && isToken(s.charCodeAt(ne))) ne++;
    i = ne;
    if (ne - ns !== name.length || s.slice(ns, ne).toLowerCase() !== name) continue;
    let j = skipLws(s, ne);
    if (j >= n || s.charCodeAt(j) !== 0x3d /* = */) return '';
    j = skipLws(s, j + 1);
    if (j < n && s.charCodeAt(j) === 0x22) {
      const q = readQuoted(s, j);
      return q === null ? s.slice(j + 1) : q.value;
    }
    let k = j;
    while (k < n) {
      const v = s.charCodeAt(k);
      if (v === 0x3b || v === 0x2c || v === 0x3e || v === 0x3f /* ? */ || v === 0x26 /* & */ || isLws(v) || v === CR || v === LF) break;
      k++;
    }
    return s.slice(j, k);
  }
  return null;
}

/** `scheme ":" 1*char` with an RFC 3986 scheme; the URI forms this parser accepts. */
function hasScheme(uri: string): boolean {
  const n = uri.length;
  if (n < 3 || !isAlpha(uri.charCodeAt(0))) return false;
  for (let i = 1; i < n; i++) {
    const c = uri.charCodeAt(i);
    if (c === 0x3a) return i + 1 < n;
    if (!(isAlpha(c) || isDigit(c) || c === 0x2b || c === 0x2d || c === 0x2e)) return false;
  }
  return false;
}

/**
 * From / To / P-Asserted-Identity value: name-addr (`[display] <uri>;params`)
 * or addr-spec (`uri;params`). In the bracketed form, parameters inside <> are
 * the URI's; in the bare form everything after the first ';' is a header
 * parameter (RFC 3261 §20.10). Null when no URI can be found.
 */
export function parseNameAddr(value: string): NameAddr | null {
  const n = value.length;
  let i = skipLws(value, 0);
  if (i >= n) return null;
  let display: string | null = null;
  let uri: string;
  let paramsFrom: number;

  let lt = -1;
  if (value.charCodeAt(i) === 0x22) {
    const q = readQuoted(value, i);
    if (q === null) return null;
    display = q.value.length > 0 ? q.value : null;
    i = skipLws(value, q.end);
    if (i >= n || value.charCodeAt(i) !== 0x3c) return null;
    lt = i;
  } else {
    lt = value.indexOf('<', i);
    if (lt >= 0) {
      const d = trimLws(value, i, lt);
      display = d.length > 0 ? d : null;
    }
  }

  if (lt >= 0) {
    const gt = value.indexOf('>', lt + 1);
    if (gt < 0) return null;
    uri = trimLws(value, lt + 1, gt);
    paramsFrom = gt + 1;
  } else {
    let j = i;
    while (j < n) {
      const c = value.charCodeAt(j);
      if (c === 0x3b || isLws(c)) break;
      j++;
    }
    uri = value.slice(i, j);
    paramsFrom = j;
  }
  if (!hasScheme(uri)) return null;
  const tag = findParam(value, paramsFrom, 'tag');
  return { uri, user: uriUser(uri), tag: tag === null || tag.length === 0 ? null : tag, display };
}

/**
 * User part of a URI: for sip:/sips: the userinfo before '@' without user
 * parameters or password, %-decoded; for tel: the number before its
 * parameters. Null for other schemes or when there is none.
 */
export function uriUser(uri: string): string | null {
  const colon = uri.indexOf(':');
  if (colon < 3 || colon > 4) return null;
  const scheme = uri.slice(0, colon).toLowerCase();
  let user: string;
  if (scheme === 'sip' || scheme === 'sips') {
    const at = uri.indexOf('@', colon + 1);
    if (at < 0) return null;
    user = uri.slice(colon + 1, at);
    const semi = user.indexOf(';');
    if (semi >= 0) user = user.slice(0, semi);
    const pw = user.indexOf(':');
    if (pw >= 0) user = user.slice(0, pw);
  } else if (scheme === 'tel') {
    let end = uri.length;
    for (let i = colon + 1; i < uri.length; i++) {
      const c = uri.charCodeAt(i);
      if (c === 0x3b || c === 0x3f) {
        end = i;
        break;
      }
    }
    user = uri.slice(colon + 1, end);
  } else {
    return null;
  }
  if (user.length === 0) return null;
  return percentDecode(user);
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 0x20;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * %XX decoding as UTF-8. Unlike decodeURIComponent it never throws: a '%' not
 * followed by two hex digits stays as it is, invalid UTF-8 becomes U+FFFD.
 */
function percentDecode(s: string): string {
  if (s.indexOf('%') < 0) return s;
  const n = s.length;
  let out = '';
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && i + 2 < n && hexVal(s.charCodeAt(i + 1)) >= 0 && hexVal(s.charCodeAt(i + 2)) >= 0) {
      const bytes: number[] = [];
      while (i + 2 < n && s.charCodeAt(i) === 0x25) {
        const h = hexVal(s.charCodeAt(i + 1));
        const l = hexVal(s.charCodeAt(i + 2));
        if (h < 0 || l < 0) break;
        bytes.push(h * 16 + l);
        i += 3;
      }
      out += Buffer.from(bytes).toString('utf8');
    } else {
      out += s[i];
      i++;
    }
  }
  return out;
}

/** The first non-empty `xref` parameter in the Request-URI or any header value. */
function findXref(requestUri: string | null, headers: Array<[string, string]>): string | null {
  if (requestUri !== null) {
    const v = findParam(requestUri, 0, 'xref');
    if (v !== null && v.length > 0) return v;
  }
  for (let h = 0; h < headers.length; h++) {
    const v = findParam(headers[h][1], 0, 'xref');
    if (v !== null && v.length > 0) return v;
  }
  return null;
}

/** Lower-case `type/subtype` of a Content-Type value, without parameters. */
function mediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return trimLws(contentType, 0, semi < 0 ? contentType.length : semi).toLowerCase();
}

/** The SDP of a body of that Content-Type (application/sdp, or its first part of a multipart): SipMessage.sdp. */
export function sdpFromBody(contentType: string, body: Buffer): SdpInfo | null {
  const type = mediaType(contentType);
  if (type === 'application/sdp') return parseSdp(body);
  if (type.startsWith('multipart/')) {
    const boundary = findParam(contentType, 0, 'boundary');
    if (boundary === null || boundary.length === 0) return null;
    return sdpFromMultipart(body.toString('latin1'), boundary);
  }
  return null;
}

/**
 * The first application/sdp part of a MIME multipart body (RFC 2046 §5.1.1),
 * e.g. SDP beside ISUP or a PIDF-LO location. Nested multiparts are not
 * descended into.
 */
function sdpFromMultipart(text: string, boundary: string): SdpInfo | null {
  const delim = '--' + boundary;
  let at = delimiterAt(text, delim, 0);
  while (at >= 0) {
    let p = at + delim.length;
    if (text.startsWith('--', p)) return null;
    const eol = text.indexOf('\n', p);
    if (eol < 0) return null;
    p = eol + 1;
    const next = delimiterAt(text, delim, p);
    // The line break before a delimiter belongs to the delimiter.
    let partEnd = next < 0 ? text.length : next;
    if (next >= 0) {
      if (partEnd > p && text.charCodeAt(partEnd - 1) === LF) partEnd--;
      if (partEnd > p && text.charCodeAt(partEnd - 1) === CR) partEnd--;
    }
    const part = text.slice(p, partEnd);
    let blank: number;
    let contentStart: number;
    if (part.startsWith('\r\n') || part.startsWith('\n')) {
      blank = 0;
      contentStart = part.charCodeAt(0) === CR ? 2 : 1;
    } else {
      const a = part.indexOf('\n\r\n');
      const b = part.indexOf('\n\n');
      if (a >= 0 && (b < 0 || a < b)) {
        blank = a;
        contentStart = a + 3;
      } else if (b >= 0) {
        blank = b;
        contentStart = b + 2;
      } else {
        blank = -1;
        contentStart = -1;
      }
    }
    if (blank >= 0) {
      // The text is the body's latin1 decoding, so this gives back its bytes.
      const head = Buffer.from(part.slice(0, blank), 'latin1');
      scanHeaderLines(head, 0, head.length);
      for (const [name, value] of headerList(head)) {
        if (name === 'content-type') {
          if (mediaType(value) === 'application/sdp') {
            const sdp = parseSdp(part.slice(contentStart));
            if (sdp !== null) return sdp;
          }
          break;
        }
      }
    }
    at = next;
  }
  return null;
}

/** Index of `delim` at the start of a line at or after `from`, or -1. */
function delimiterAt(text: string, delim: string, from: number): number {
  let i = text.indexOf(delim, from);
  while (i >= 0) {
    if (i === 0 || text.charCodeAt(i - 1) === LF) return i;
    i = text.indexOf(delim, i + 1);
  }
  return -1;
}
