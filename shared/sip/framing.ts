// Framing of SIP messages in byte streams and datagrams (RFC 3261 7, 18.3).
// Runs on every TCP segment and UDP datagram a capture holds, most of them
// RTP or other binary data, so the first bytes decide quickly and nothing
// here allocates.

const LF = 10;
const CR = 13;
const SP = 32;
const HT = 9;
const COLON = 58;

/** Longest start line accepted; real ones are a few hundred bytes. */
const MAX_START_LINE = 8192;
/** Longest start line plus headers accepted. */
export const MAX_SIP_HEADER = 64 * 1024;
const MAX_SCHEME = 16;
/** Content-Length digits parsed; more is not a SIP message this code frames. */
const MAX_CL_DIGITS = 9;

const NEED_MORE = -2;

/**
 * Set by the start-line check once the bytes went past what plain words can
 * look like: the Request-URI's scheme colon, or "SIP/2.0 " and a digit.
 */
let pastPrefix = false;

function isAlpha(c: number): boolean {
  return ((c | 0x20) - 97) >>> 0 < 26;
}

function isDigit(c: number): boolean {
  return (c - 48) >>> 0 < 10;
}

// RFC 3261 token characters: header names and methods.
const TOKEN = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  if (isAlpha(c) || isDigit(c) || '-.!%*_+`\'~'.includes(String.fromCharCode(c))) TOKEN[c] = 1;
}

/** "SIP/2.0" */
const VERSION = [83, 73, 80, 47, 50, 46, 48];
const CONTENT_LENGTH = Buffer.from('content-length', 'latin1');

/**
 * End of a line terminator at p (CRLF, bare LF or lone CR) given that the line's
 * content has ended: returns the offset past it, NEED_MORE, or -1.
 */
function lineEnd(buf: Buffer, p: number, end: number): number {
  if (p >= end) return NEED_MORE;
  const c = buf[p];
  if (c === LF) return p + 1;
  if (c !== CR) return -1;
  if (p + 1 >= end) return NEED_MORE;
  // A lone CR ends the line as tshark reads it; RFC 3261 wants CRLF, but a
  // message a viewer shows must not be one the index drops.
  return buf[p + 1] === LF ? p + 2 : p + 1;
}

/** Matches "SIP/2.0" at p: 1 when it is there, 0 when it cannot be, NEED_MORE when the bytes so far agree. */
function version(buf: Buffer, p: number, end: number): number {
  for (let i = 0; i < VERSION.length; i++) {
    if (p + i >= end) return NEED_MORE;
    if (buf[p + i] !== VERSION[i]) return 0;
  }
  return 1;
}

function statusLine(buf: Buffer, off: number, end: number): number {
  let p = off + VERSION.length;
  if (p >= end) return NEED_MORE;
  if (buf[p++] !== SP) return -1;
  for (let i = 0; i < 3; i++, p++) {
    if (p >= end) return NEED_MORE;
    const c = buf[p];
    // Any three digits: RFC 3261's extension-code, and what tshark takes.
    if (!isDigit(c)) return -1;
    pastPrefix = true;
  }
  if (p >= end) return NEED_MORE;
  // Some stacks drop the space before an empty reason phrase.
  if (buf[p] !== SP) return lineEnd(buf, p, end);
  p++;
  // The reason phrase is opaque text to the line end, as tshark reads it: a
  // control byte in it does not make the message something else (a sender
  // could otherwise hide a response from its dialog's trace).
  const max = Math.min(end, off + MAX_START_LINE);
  for (; p < max; p++) {
    const c = buf[p];
    if (c === CR || c === LF) return lineEnd(buf, p, end);
  }
  return p >= off + MAX_START_LINE ? -1 : NEED_MORE;
}

function requestLine(buf: Buffer, off: number, end: number): number {
  // Method = token (RFC 3261 25.1): extension methods may hold digits and -.!%*_+`'~.
  let p = off;
  const methodMax = Math.min(end, off + MAX_START_LINE);
  while (p < methodMax && TOKEN[buf[p]] === 1) p++;
  if (p >= off + MAX_START_LINE) return -1;
  if (p >= end) return NEED_MORE;
  if (p === off || buf[p] !== SP) return -1;
  p++;
  // Request-URI: an absolute URI, so a scheme (sip, sips, tel, urn, ...) and a colon.
  const schemeStart = p;
  if (p >= end) return NEED_MORE;
  if (!isAlpha(buf[p])) return -1;
  for (;;) {
    if (++p >= end) return NEED_MORE;
    const c = buf[p];
    if (c === COLON) break;
    if (!(isAlpha(c) || isDigit(c) || c === 43 || c === 45 || c === 46) || p - schemeStart >= MAX_SCHEME) return -1;
  }
  const colon = p++;
  pastPrefix = true;
  const max = Math.min(end, off + MAX_START_LINE);
  for (; p < max; p++) {
    const c = buf[p];
    if (c === SP) break;
    if (c < 33 || c === 127) return -1;
  }
  if (p >= max) return p >= off + MAX_START_LINE ? -1 : NEED_MORE;
  if (p === colon + 1) return -1;
  const v = version(buf, p + 1, end);
  if (v !== 1) return v === 0 ? -1 : NEED_MORE;
  return lineEnd(buf, p + 1 + VERSION.length, end);
}

/**
 * A request line whose method or Request-URI RFC 3261 does not allow but
 * tshark still shows as a request: method = any bytes up to the first space,
 * Request-URI = any bytes up to the next with a ':' after its first, then
 * "SIP/2.0", no NUL. Kept so a sender cannot hide a request from its dialog
 * with a method byte a trace viewer displays anyway. Only whole lines count (never
 * NEED_MORE), so binary streams are not held back waiting for more.
 */
function laxRequestLine(buf: Buffer, off: number, end: number): number {
  let stop = buf.indexOf(LF, off);
  const cr = buf.indexOf(CR, off);
  if (cr >= 0 && (stop < 0 || cr < stop)) stop = cr;
  if (stop < 0 || stop >= end || stop - off > MAX_START_LINE) return -1;
  const after = lineEnd(buf, stop, end);
  if (after < 0) return -1;
  const v = stop - VERSION.length;
  if (v - 1 <= off || buf[v - 1] !== SP || version(buf, v, stop) !== 1) return -1;
  let p = off;
  while (p < stop && buf[p] !== SP) {
    if (buf[p] === 0) return -1;
    p++;
  }
  if (p === off || p >= v - 1) return -1;
  const uri = ++p;
  let colon = -1;
  while (p < v - 1) {
    const c = buf[p];
    if (c === SP || c === 0) return -1;
    if (c === COLON && p > uri && colon < 0) colon = p;
    p++;
  }
  return colon < 0 ? -1 : after;
}

/**
 * The start line at off: offset past its line end, -1 when the bytes cannot
 * be one, or NEED_MORE (-2) when they agree with one so far but it is not
 * complete before `end`.
 */
function startLine(buf: Buffer, off: number, end: number): number {
  pastPrefix = false;
  if (off >= end) return NEED_MORE;
  const c = buf[off];
  if (c === 83 /* S */) {
    const v = version(buf, off, end);
    if (v === 1) return statusLine(buf, off, end);
    // "SIP/2" cut short could still be a status line; "SIP" plus a letter is a method.
    if (v === NEED_MORE) return NEED_MORE;
  }
  if (TOKEN[c] === 1) {
    const r = requestLine(buf, off, end);
    if (r !== -1) return r;
  }
  // tshark wants a printable first byte (so RTP, TLS and other binary never get here).
  return c > SP && c < 127 ? laxRequestLine(buf, off, end) : -1;
}

/**
 * If buf at off begins with a whole, syntactically valid SIP start line
 * (request or status line), the offset just past its CRLF or LF; else -1.
 */
export function sipStartLineEnd(buf: Buffer, off: number): number {
  const r = startLine(buf, off, buf.length);
  return r < 0 ? -1 : r;
}

/**
 * Whether buf[off, end) could begin a SIP message: it begins with a whole
 * valid start line, or with the part of one that words cannot pass for
 * ("METHOD scheme:" or "SIP/2.0 " and a digit) and nothing wrong after it.
 * For stream segments, which may cut the start line.
 */
export function sipStartLikely(buf: Buffer, off: number, end: number): boolean {
  if (end > buf.length) end = buf.length;
  const r = startLine(buf, off, end);
  return r >= 0 || (r === NEED_MORE && pastPrefix);
}

/** Whether the header name buf[p, nameEnd) is "l" or "Content-Length", in any case. */
function contentLengthName(buf: Buffer, p: number, nameEnd: number): boolean {
  const n = nameEnd - p;
  if (n === 1) return (buf[p] | 0x20) === 108;
  if (n !== CONTENT_LENGTH.length) return false;
  for (let i = 0; i < n; i++) if ((buf[p + i] | 0x20) !== CONTENT_LENGTH[i]) return false;
  return true;
}

/**
 * Frames the SIP message at off within buf[off, end). Returns its total
 * length (which may exceed end - off when the body is not all there yet), 0
 * when the header is not complete yet, -1 when the bytes are not a SIP
 * message or its header is malformed. Without Content-Length the body is
 * empty in a stream, and the rest of the datagram when `datagram`.
 */
export function sipFrame(buf: Buffer, off: number, end: number, datagram: boolean): number {
  if (end > buf.length) end = buf.length;
  let p = startLine(buf, off, end);
  if (p === NEED_MORE) return end - off >= MAX_START_LINE ? -1 : 0;
  if (p < 0) return -1;
  let contentLength = -1;
  let first = true;
  for (;;) {
    if (p - off > MAX_SIP_HEADER) return -1;
    if (p >= end) return 0;
    const c = buf[p];
    if (c === CR || c === LF) {
      const e = lineEnd(buf, p, end);
      if (e === NEED_MORE) return 0;
      if (e < 0) return -1;
      p = e;
      break;
    }
    const lf = buf.indexOf(LF, p);
    if (lf < 0 || lf >= end) return end - off > MAX_SIP_HEADER ? -1 : 0;
    const lineStop = buf[lf - 1] === CR ? lf - 1 : lf;
    if (c === SP || c === HT) {
      // A folded continuation of the previous header.
      if (first) return -1;
      p = lf + 1;
      continue;
    }
    first = false;
    let q = p;
    while (q < lineStop && TOKEN[buf[q]] === 1) q++;
    const nameEnd = q;
    if (nameEnd === p) return -1;
    while (q < lineStop && (buf[q] === SP || buf[q] === HT)) q++;
    if (q >= lineStop || buf[q] !== COLON) return -1;
    if (contentLengthName(buf, p, nameEnd)) {
      q++;
      while (q < lineStop && (buf[q] === SP || buf[q] === HT)) q++;
      const digits = q;
      let v = 0;
      while (q < lineStop && isDigit(buf[q])) {
        if (q - digits >= MAX_CL_DIGITS) return -1;
        v = v * 10 + buf[q] - 48;
        q++;
      }
      if (q === digits) return -1;
      while (q < lineStop && (buf[q] === SP || buf[q] === HT)) q++;
      if (q !== lineStop) return -1;
      // Two different lengths leave the message's end undecidable.
      if (contentLength >= 0 && contentLength !== v) return -1;
      contentLength = v;
    }
    p = lf + 1;
  }
  if (p - off > MAX_SIP_HEADER) return -1;
  if (contentLength < 0) return datagram ? end - off : p - off;
  return p - off + contentLength;
}

/**
 * For bytes at off that start a SIP message in a stream: its total length
 * (start line, headers, blank line, Content-Length bytes of body), 0 when
 * more bytes are needed, -1 when this is not a SIP message or its header is
 * malformed (unparsable Content-Length, header over 64 KiB, ...).
 */
export function sipMessageLength(buf: Buffer, off: number): number {
  const r = sipFrame(buf, off, buf.length, false);
  return r > 0 && off + r > buf.length ? 0 : r;
}

/**
 * For a datagram holding a SIP message at off: the message's length per RFC
 * 3261 18.3 (Content-Length when given, else the rest of the datagram), at
 * most end - off even when Content-Length claims more; -1 when malformed.
 */
export function sipDatagramLength(buf: Buffer, off: number, end: number): number {
  const r = sipFrame(buf, off, end, true);
  if (r === 0) return -1;
  return r > end - off ? end - off : r;
}

/** Whether buf[off, end) is a CRLF keepalive (RFC 5626 3.5.1: CRLF pong, CRLFCRLF ping): nothing but CR and LF. */
export function isSipKeepalive(buf: Buffer, off: number, end: number): boolean {
  if (end > buf.length) end = buf.length;
  if (off >= end) return false;
  for (let i = off; i < end; i++) {
    const c = buf[i];
    if (c !== CR && c !== LF) return false;
  }
  return true;
}

/** Offset of the first byte at or after off that is neither CR nor LF (end when none). */
export function skipCrlf(buf: Buffer, off: number, end: number): number {
  while (off < end && (buf[off] === CR || buf[off] === LF)) off++;
  return off;
}
