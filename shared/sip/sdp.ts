import type { SdpInfo, SdpMedia } from './types';
import { Interner } from './intern';

// Kept by the indexer in every record of a message with SDP: shared, never slices of the body.
const kept = new Interner(4096);

/**
 * Media endpoints of an SDP body (RFC 8866): the session-level c= address and
 * every m= line with its effective address. Only what RTP correlation needs is
 * read; everything else in the body is skipped. Never throws: a body that is
 * not SDP (no v= line, or no usable m= line) yields null.
 */
export function parseSdp(body: Buffer | string): SdpInfo | null {
  // SDP is ASCII apart from free-text fields we never read, so latin1 is exact for
  // everything used here and cannot fail on stray bytes.
  const text = typeof body === 'string' ? body : body.toString('latin1');
  const n = text.length;
  let sawVersion = false;
  let connection: string | null = null;
  const media: SdpMedia[] = [];
  // Once the first m= line is seen, c= lines belong to a media section, even when
  // that m= line was unusable; otherwise its c= would be taken for the session's.
  let inMedia = false;
  let current: SdpMedia | null = null;

  let pos = 0;
  while (pos < n) {
    let nl = text.indexOf('\n', pos);
    if (nl < 0) nl = n;
    let s = pos;
    let e = nl;
    while (s < e && isBlank(text.charCodeAt(s))) s++;
    while (e > s && (isBlank(text.charCodeAt(e - 1)) || text.charCodeAt(e - 1) === 13)) e--;
    pos = nl + 1;
    if (e - s < 2 || text.charCodeAt(s + 1) !== 61 /* = */) continue;

    switch (text.charCodeAt(s)) {
      case 118 /* v */:
        sawVersion = true;
        break;
      case 99 /* c */: {
        const addr = parseConnection(text.slice(s + 2, e));
        if (addr === null) break;
        if (!inMedia) {
          if (connection === null) connection = addr;
        } else if (current !== null && current.addr === null) {
          current.addr = addr;
        }
        break;
      }
      case 97 /* a */:
        if (current !== null) parseAttribute(text, s + 2, e, current);
        break;
      case 109 /* m */:
        inMedia = true;
        current = parseMediaLine(text.slice(s + 2, e));
        if (current !== null) media.push(current);
        break;
      default:
        break;
    }
  }

  if (!sawVersion || media.length === 0) return null;
  for (const m of media) if (m.addr === null) m.addr = connection;
  return { connection, media };
}

function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

function fields(s: string): string[] {
  const out: string[] = [];
  const n = s.length;
  let i = 0;
  while (i < n) {
    while (i < n && isBlank(s.charCodeAt(i))) i++;
    if (i >= n) break;
    const start = i;
    while (i < n && !isBlank(s.charCodeAt(i))) i++;
    out.push(s.slice(start, i));
  }
  return out;
}

/** `IN IP4 224.2.1.1/127/3` -> `224.2.1.1`; null when unusable. */
function parseConnection(value: string): string | null {
  const f = fields(value);
  if (f.length < 3) return null;
  if (f[0].toUpperCase() !== 'IN') return null;
  const type = f[1].toUpperCase();
  if (type !== 'IP4' && type !== 'IP6') return null;
  // A multicast TTL and/or address count follows the address after '/'.
  const slash = f[2].indexOf('/');
  const addr = slash < 0 ? f[2] : f[2].slice(0, slash);
  return addr.length > 0 ? kept.get(addr) : null;
}

/** `audio 49170/2 RTP/AVP 0 8` -> media; null when type, port or proto is unusable. */
function parseMediaLine(value: string): SdpMedia | null {
  const f = fields(value);
  if (f.length < 3) return null;
  const slash = f[1].indexOf('/');
  const portText = slash < 0 ? f[1] : f[1].slice(0, slash);
  const port = smallInt(portText, 65535);
  if (port === null) return null;
  return { type: f[0], port, addr: null, proto: f[2], rtcpPort: null, rtcpAddr: null, rtpmap: [] };
}

/** Whether text[s, s + word.length) is `word` (lower case letters) in any case: `c | 0x20` folds only a letter onto one. */
function lettersAre(text: string, s: number, word: string): boolean {
  for (let i = 0; i < word.length; i++) if ((text.charCodeAt(s + i) | 0x20) !== word.charCodeAt(i)) return false;
  return true;
}

/**
 * The media attributes RTP needs, from the a= line's value text[s, e): `rtcp:53020 [IN IP4 192.0.2.4]` and
 * `rtpmap:0 PCMU/8000`. The name is matched in place: most attributes (fmtp, ptime, sendrecv, ...) are
 * skipped without a string of their own.
 */
function parseAttribute(text: string, s: number, e: number, m: SdpMedia): void {
  const colon = text.indexOf(':', s);
  if (colon < 0 || colon >= e) return;
  const rtcp = colon - s === 4 && lettersAre(text, s, 'rtcp');
  if (!rtcp && !(colon - s === 6 && lettersAre(text, s, 'rtpmap'))) return;
  const f = fields(text.slice(colon + 1, e));
  if (f.length === 0) return;
  if (rtcp) {
    const port = smallInt(f[0], 65535);
    if (port === null || port === 0) return;
    m.rtcpPort = port;
    if (f.length >= 4) m.rtcpAddr = parseConnection(f.slice(1, 4).join(' '));
  } else if (f.length >= 2 && m.rtpmap.length < 32) {
    const pt = smallInt(f[0], 127);
    // The encoding is shown to people: printable ASCII only, bounded.
    if (pt !== null && printable(f[1])) m.rtpmap.push([pt, kept.get(f[1])]);
  }
}

/** 1 to 64 characters, each printable ASCII (0x21-0x7e). */
function printable(text: string): boolean {
  if (text.length === 0 || text.length > 64) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/** 1 to 5 decimal digits, at most max; null otherwise. */
function smallInt(text: string, max: number): number | null {
  if (text.length === 0 || text.length > 5) return null;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return null;
    n = n * 10 + d;
  }
  return n <= max ? n : null;
}
