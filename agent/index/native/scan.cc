// The indexer's per-packet fast path (agent/index/native-scan.ts): for a whole
// (uncut) IPv4/UDP frame (Ethernet or Linux cooked, VLAN tags or not) carrying one SIP message, finds in one call
// what shared/decode, shared/sip/framing.ts and the first half of parseSip
// (shared/sip/parse.ts) find in JS: the UDP ports, the message's extent, its
// start line and header block, and the header lines. Nothing here allocates.
//
// It claims a packet only where it is sure the JS path reads it the same way;
// anything else (other link types, IPv6, fragments, TCP, keepalives, lax start lines,
// more header lines than fit) returns SLOW and the JS path dissects the packet.
// Every read is bounds-checked against the frame's length.
#ifndef TFINDEX_STANDALONE
#include <napi.h>
#endif
#include <cstdint>
#include <cstring>

namespace {

constexpr int32_t SLOW = 0;
constexpr int32_t FAST_SIP = 1;

// Output layout (Int32Array), kept in step with agent/index/native-scan.ts.
enum Out : int {
  O_IP = 0,        // offset of the IPv4 header in the frame
  O_SPORT = 1,
  O_DPORT = 2,
  O_PAY = 3,       // offset of the UDP payload (the message's first byte)
  O_LEN = 4,       // the message's length (what the JS dissector's udp() keeps)
  O_START = 5,     // parseSip's locals, relative to the message
  O_LINE_END = 6,
  O_FIRST_LF = 7,
  O_FIRST_CR = 8,
  O_KIND = 9,
  O_HEADER_LEN = 10,
  O_BLOCK_END = 11,
  O_HEADERS_FROM = 12,
  O_XREF = 13,
  O_LINE_COUNT = 14,
  O_FACTS = 15,    // F_*: what the JS parse would otherwise check byte by byte
  O_DEC = 16,      // the decoded values (D_*, decodeFields), relative to the message
  O_LINES = 16 + 34,  // 4 per kept line: name start, name end, value start, value end (name start -1: continuation)
};

// The decoded values, from O_DEC; kept in step with agent/index/native-scan.ts. Extents are [start, end) in
// the message, start -1 when absent. D_OK 0: something the JS parse would read otherwise, JS parses the
// message from the lines as before.
enum Dec : int {
  D_OK = 0,
  D_CID = 1,       // Call-ID (the first non-empty)
  D_CSEQ = 3,      // the CSeq value, already "<n> <METHOD>" as the record keeps it; -1: none or malformed
  D_RUSER = 5,     // the Request-URI's user
  D_FUSER = 7,     // From's user
  D_TUSER = 9,     // To's user
  D_REASON = 11,   // a response's reason phrase, -1 when empty
  D_STATUS = 13,
  D_CORR = 14,     // the correlation header's value (the first non-empty)
  D_SESSION = 16,  // the Session-ID value
  D_PCV = 18,      // the P-Charging-Vector value
  D_CTYPE = 20,    // the Content-Type value
  D_BODY_END = 22, // the body's end (Content-Length's)
  D_PAI_N = 23,    // P-Asserted-Identity entries with a URI
  D_PUSER_N = 24,  // their users (D_PUSER, 2 each)
  D_PUSER = 25,
  D_METHOD_END = 33,  // a request's method ends there (it starts at O_START)
  D_LEN = 34,
};
constexpr int MAX_PUSERS = 4;
static_assert(D_PUSER + 2 * MAX_PUSERS == D_METHOD_END, "decode layout");
static_assert(O_DEC + D_LEN == O_LINES, "decode layout");

constexpr uint8_t CR = 0x0d, LF = 0x0a, SP = 0x20, HT = 0x09, COLON = 0x3a;
constexpr int MAX_START_LINE = 8192;
constexpr int MAX_SIP_HEADER = 64 * 1024;
constexpr int MAX_SCHEME = 16;
constexpr int MAX_CL_DIGITS = 9;
constexpr int NEED_MORE = -2;

// O_FACTS bits. F_ASCII: bytes [0, block end) are all below 0x80 (the start line and header values decode as
// latin1, no UTF-8 check); F_XREF_START: [start, first header byte) holds "xref" (parse.ts hasXrefBytes there).
constexpr int32_t F_ASCII = 1, F_XREF_START = 2;

inline bool isAlpha(uint32_t c) { return ((c | 0x20) - 97) < 26; }
inline bool isDigit(uint32_t c) { return (c - 48) < 10; }

struct Tables {
  uint8_t token[256];
  Tables() {
    const char* extra = "-.!%*_+`'~";
    for (int c = 0; c < 256; c++) token[c] = (isAlpha(c) || isDigit(c) || (c != 0 && std::strchr(extra, c) != nullptr)) ? 1 : 0;
  }
};
const Tables T;

inline uint16_t be16(const uint8_t* b, size_t at) { return static_cast<uint16_t>((b[at] << 8) | b[at + 1]); }

// ---- shared/sip/framing.ts, for a datagram (end = the payload's length) ----

const uint8_t VERSION[7] = {'S', 'I', 'P', '/', '2', '.', '0'};

int lineEndF(const uint8_t* b, int p, int end) {
  if (p >= end) return NEED_MORE;
  uint8_t c = b[p];
  if (c == LF) return p + 1;
  if (c != CR) return -1;
  if (p + 1 >= end) return NEED_MORE;
  return b[p + 1] == LF ? p + 2 : p + 1;
}

int versionF(const uint8_t* b, int p, int end) {
  for (int i = 0; i < 7; i++) {
    if (p + i >= end) return NEED_MORE;
    if (b[p + i] != VERSION[i]) return 0;
  }
  return 1;
}

int statusLineF(const uint8_t* b, int off, int end) {
  int p = off + 7;
  if (p >= end) return NEED_MORE;
  if (b[p++] != SP) return -1;
  for (int i = 0; i < 3; i++, p++) {
    if (p >= end) return NEED_MORE;
    if (!isDigit(b[p])) return -1;
  }
  if (p >= end) return NEED_MORE;
  if (b[p] != SP) return lineEndF(b, p, end);
  p++;
  int max = end < off + MAX_START_LINE ? end : off + MAX_START_LINE;
  for (; p < max; p++) {
    uint8_t c = b[p];
    if (c == CR || c == LF) return lineEndF(b, p, end);
  }
  return p >= off + MAX_START_LINE ? -1 : NEED_MORE;
}

int requestLineF(const uint8_t* b, int off, int end) {
  int p = off;
  int methodMax = end < off + MAX_START_LINE ? end : off + MAX_START_LINE;
  while (p < methodMax && T.token[b[p]]) p++;
  if (p >= off + MAX_START_LINE) return -1;
  if (p >= end) return NEED_MORE;
  if (p == off || b[p] != SP) return -1;
  p++;
  int schemeStart = p;
  if (p >= end) return NEED_MORE;
  if (!isAlpha(b[p])) return -1;
  for (;;) {
    if (++p >= end) return NEED_MORE;
    uint8_t c = b[p];
    if (c == COLON) break;
    if (!(isAlpha(c) || isDigit(c) || c == 43 || c == 45 || c == 46) || p - schemeStart >= MAX_SCHEME) return -1;
  }
  int colon = p++;
  int max = end < off + MAX_START_LINE ? end : off + MAX_START_LINE;
  for (; p < max; p++) {
    uint8_t c = b[p];
    if (c == SP) break;
    if (c < 33 || c == 127) return -1;
  }
  if (p >= max) return p >= off + MAX_START_LINE ? -1 : NEED_MORE;
  if (p == colon + 1) return -1;
  int v = versionF(b, p + 1, end);
  if (v != 1) return v == 0 ? -1 : NEED_MORE;
  return lineEndF(b, p + 1 + 7, end);
}

// framing.ts startLine, but only where its answer does not come from
// laxRequestLine: -3 says "ask JS".
constexpr int ASK_JS = -3;
int startLineF(const uint8_t* b, int off, int end) {
  if (off >= end) return NEED_MORE;
  uint8_t c = b[off];
  if (c == 'S') {
    int v = versionF(b, off, end);
    if (v == 1) return statusLineF(b, off, end);
    if (v == NEED_MORE) return NEED_MORE;
  }
  if (T.token[c]) {
    int r = requestLineF(b, off, end);
    if (r != -1) return r;
  }
  return ASK_JS;
}

bool contentLengthName(const uint8_t* b, int p, int nameEnd) {
  static const char CL[] = "content-length";
  int n = nameEnd - p;
  if (n == 1) return (b[p] | 0x20) == 108;
  if (n != 14) return false;
  for (int i = 0; i < n; i++) if ((b[p + i] | 0x20) != CL[i]) return false;
  return true;
}

int indexOfByte(const uint8_t* b, uint8_t v, int from, int end) {
  if (from >= end) return -1;
  const void* f = std::memchr(b + from, v, static_cast<size_t>(end - from));
  return f ? static_cast<int>(static_cast<const uint8_t*>(f) - b) : -1;
}

// sipFrame(buf, 0, end, true) with the start line already found to end at p.
int frameDatagram(const uint8_t* b, int p, int end) {
  const int off = 0;
  int contentLength = -1;
  bool first = true;
  for (;;) {
    if (p - off > MAX_SIP_HEADER) return -1;
    if (p >= end) return 0;
    uint8_t c = b[p];
    if (c == CR || c == LF) {
      int e = lineEndF(b, p, end);
      if (e == NEED_MORE) return 0;
      if (e < 0) return -1;
      p = e;
      break;
    }
    int lf = indexOfByte(b, LF, p, end);
    if (lf < 0) return end - off > MAX_SIP_HEADER ? -1 : 0;
    // buf[lf - 1]: lf > p >= 0 here, so in bounds.
    int lineStop = b[lf - 1] == CR ? lf - 1 : lf;
    if (c == SP || c == HT) {
      if (first) return -1;
      p = lf + 1;
      continue;
    }
    first = false;
    int q = p;
    while (q < lineStop && T.token[b[q]]) q++;
    int nameEnd = q;
    if (nameEnd == p) return -1;
    while (q < lineStop && (b[q] == SP || b[q] == HT)) q++;
    if (q >= lineStop || b[q] != COLON) return -1;
    if (contentLengthName(b, p, nameEnd)) {
      q++;
      while (q < lineStop && (b[q] == SP || b[q] == HT)) q++;
      int digits = q;
      int v = 0;
      while (q < lineStop && isDigit(b[q])) {
        if (q - digits >= MAX_CL_DIGITS) return -1;
        v = v * 10 + b[q] - 48;
        q++;
      }
      if (q == digits) return -1;
      while (q < lineStop && (b[q] == SP || b[q] == HT)) q++;
      if (q != lineStop) return -1;
      if (contentLength >= 0 && contentLength != v) return -1;
      contentLength = v;
    }
    p = lf + 1;
  }
  if (p - off > MAX_SIP_HEADER) return -1;
  if (contentLength < 0) return end - off;
  return p - off + contentLength;  // at most 64 KiB + 999,999,999: fits an int
}

// ---- shared/sip/parse.ts, the part of parseSip before the header values ----

constexpr int NOT_SIP = 0, REQUEST = 1, RESPONSE = 2;

inline bool isVersionAt(const uint8_t* b, int i, int len) {
  if (i < 0 || i + 7 > len) return false;
  return (b[i] | 0x20) == 0x73 && (b[i + 1] | 0x20) == 0x69 && (b[i + 2] | 0x20) == 0x70 && b[i + 3] == 0x2f && b[i + 4] == 0x32 &&
         b[i + 5] == 0x2e && b[i + 6] == 0x30;
}

bool strictRequestLineP(const uint8_t* b, int s, int e) {
  int i = s;
  while (i < e && T.token[b[i]]) i++;
  if (i == s || i >= e || b[i] != SP) return false;
  i++;
  int uriStart = i;
  if (i >= e || !isAlpha(b[i])) return false;
  i++;
  while (i < e) {
    uint8_t c = b[i];
    if (isAlpha(c) || isDigit(c) || c == 0x2b || c == 0x2d || c == 0x2e) i++;
    else break;
  }
  if (i >= e || b[i] != COLON) return false;
  i++;
  while (i < e && b[i] > SP && b[i] != 0x7f) i++;
  if (i == uriStart || i >= e || b[i] != SP) return false;
  i++;
  return e - i == 7 && isVersionAt(b, i, e);
}

// parse.ts startLineKind where it does not need laxRequestLine; -1: ask JS.
int startLineKindP(const uint8_t* b, int s, int e) {
  if (e - s >= 11 && isVersionAt(b, s, e) && b[s + 7] == SP) {
    if (!isDigit(b[s + 8]) || !isDigit(b[s + 9]) || !isDigit(b[s + 10])) return NOT_SIP;
    if (e - s == 11 || b[s + 11] == SP) return RESPONSE;
    return NOT_SIP;
  }
  return strictRequestLineP(b, s, e) ? REQUEST : -1;
}

inline bool isLws(uint8_t c) { return c == SP || c == HT; }

// Whether "xref" in any case starts in b[s, e - 3): parse.ts hasXrefBytes(b, s, e). The x or X by memchr, most
// messages have a few.
bool hasXrefBytes(const uint8_t* b, int s, int e) {
  static const uint8_t XS[2] = {0x78, 0x58};
  for (uint8_t x : XS) {
    for (int i = indexOfByte(b, x, s, e - 3); i >= 0; i = indexOfByte(b, x, i + 1, e - 3)) {
      if ((b[i + 1] | 0x20) == 0x72 && (b[i + 2] | 0x20) == 0x65 && (b[i + 3] | 0x20) == 0x66) return true;
    }
  }
  return false;
}

// Returns false when the lines do not fit in `out` (the JS path then reads the message).
bool scanHeaderLines(const uint8_t* b, int pos, int n, int len, int32_t* out, size_t outLen) {
  int32_t count = 0;
  // JS tests every byte of the lines (CR and LF apart) for an "xref" starting there, its 4 bytes within the
  // message: the same as one test of the block ("xref" holds no CR or LF), which may end 3 bytes past it.
  const bool xref = hasXrefBytes(b, pos, n + 3 < len ? n + 3 : len);
  bool named = false;
  const size_t maxLines = (outLen - O_LINES) / 4;
  auto push = [&](int ns, int ne, int vs, int ve) -> bool {
    if (static_cast<size_t>(count) >= maxLines) return false;
    int32_t* l = out + O_LINES + 4 * count++;
    l[0] = ns;
    l[1] = ne;
    l[2] = vs;
    l[3] = ve;
    return true;
  };
  while (pos < n) {
    // The line's end: its first CR or LF (memchr for each, rather than a test a byte).
    int end = indexOfByte(b, LF, pos, n);
    if (end < 0) end = n;
    int cr = indexOfByte(b, CR, pos, end);
    if (cr >= 0) end = cr;
    int next = end < n && b[end] == CR && end + 1 < n && b[end + 1] == LF ? end + 2 : end + 1;
    if (isLws(b[pos])) {
      if (named) {
        int s = pos, e = end;
        while (s < e && isLws(b[s])) s++;
        while (e > s && isLws(b[e - 1])) e--;
        if (e > s && !push(-1, -1, s, e)) return false;
      }
    } else {
      named = false;
      int i = pos;
      while (i < end && T.token[b[i]]) i++;
      int nameEnd = i;
      while (i < n && isLws(b[i])) i++;
      if (nameEnd > pos && i < end && b[i] == COLON) {
        int s = i + 1, e = end;
        while (s < e && isLws(b[s])) s++;
        while (e > s && isLws(b[e - 1])) e--;
        if (!push(pos, nameEnd, s, e)) return false;
        named = true;
      }
    }
    pos = next;
  }
  out[O_LINE_COUNT] = count;
  out[O_XREF] = xref ? 1 : 0;
  return true;
}

// Whether b[0, n) are all below 0x80: eight bytes a step (-O2 does not vectorise a loop of unknown count).
bool isAscii(const uint8_t* b, int n) {
  uint64_t high = 0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, b + i, 8);
    high |= w;
  }
  for (; i < n; i++) high |= b[i];
  return (high & 0x8080808080808080ULL) == 0;
}

// parseSip's prefix over the message b[0, len): false when it must be left to JS.
bool prescanSip(const uint8_t* b, int len, int32_t* out, size_t outLen) {
  int start = 0;
  while (start < len && (b[start] == CR || b[start] == LF)) start++;
  if (start >= len) return false;
  int firstLf = indexOfByte(b, LF, start, len);
  int lineEnd = firstLf < 0 ? len : firstLf;
  if (lineEnd > start && b[lineEnd - 1] == CR) lineEnd--;
  int firstCr = indexOfByte(b, CR, start, len);
  if (firstCr >= 0 && firstCr < lineEnd) lineEnd = firstCr;
  int kind = startLineKindP(b, start, lineEnd);
  if (kind != REQUEST && kind != RESPONSE) return false;
  int headerLength = len, blockEnd = len;
  if (firstLf >= 0) {
    // From LF to LF (memchr), not byte by byte: the header block is most of a message.
    for (int i = firstLf; i >= 0 && i < len; i = indexOfByte(b, LF, i + 1, len)) {
      // bytes[i + 1], bytes[i + 2] past the end are undefined in JS: never LF or CR.
      int next = i + 1 < len ? b[i + 1] : -1;
      if (next == LF) {
        blockEnd = i;
        headerLength = i + 2;
        break;
      }
      if (next == CR && i + 2 < len && b[i + 2] == LF) {
        blockEnd = i;
        headerLength = i + 3;
        break;
      }
    }
  }
  int nlAt = firstLf < 0 ? blockEnd : firstLf;
  int headersFrom = firstCr >= 0 && firstCr < nlAt - 1 ? firstCr + 1 : nlAt + 1;
  out[O_START] = start;
  out[O_LINE_END] = lineEnd;
  out[O_FIRST_LF] = firstLf;
  out[O_FIRST_CR] = firstCr;
  out[O_KIND] = kind;
  out[O_HEADER_LEN] = headerLength;
  out[O_BLOCK_END] = blockEnd;
  out[O_HEADERS_FROM] = headersFrom;
  out[O_FACTS] = (isAscii(b, blockEnd) ? F_ASCII : 0) | (hasXrefBytes(b, start, headersFrom) ? F_XREF_START : 0);
  return scanHeaderLines(b, headersFrom, blockEnd, len, out, outLen);
}

// ---- shared/sip/parse.ts parseScanned's values, for the plain common case ----
//
// decodeFields reads, from the lines prescanSip found, what the indexer keeps of a message (parse.ts
// parseScanned, parseCSeq, parseNameAddr, splitList, uriUser, parseUint) and gives their extents (D_*). It
// decodes only where the JS reading is sure to give the same strings, and says D_OK 0 otherwise: bytes of
// 0x80 or more, "xref" anywhere, a header it reads folded or repeated (P-Asserted-Identity apart), a quoted
// string with a backslash or in P-Asserted-Identity, a user with a %-escape, a CSeq that the record would not
// keep as written (leading zeros, a tab, a lower-case method), a lower-case request method, more
// P-Asserted-Identity users than D_PUSER holds.

constexpr int DOUBT = -2;  // decodeFields' answer for "let JS read this message"

enum Kind : int { K_OTHER, K_CALL_ID, K_CSEQ, K_FROM, K_TO, K_PAI, K_CLEN, K_CTYPE, K_SESSION, K_PCV, K_COUNT };

inline uint8_t lowerB(uint8_t c) { return (c >= 65 && c <= 90) ? c + 32 : c; }

bool bytesAreP(const uint8_t* b, int s, int e, const char* word, int n) {
  if (e - s != n) return false;
  for (int i = 0; i < n; i++) if (lowerB(b[s + i]) != static_cast<uint8_t>(word[i])) return false;
  return true;
}

// parse.ts headerKind.
int headerKindP(const uint8_t* b, int s, int e) {
  switch (e - s) {
    case 1:
      switch (lowerB(b[s])) {
        case 'i': return K_CALL_ID;
        case 'f': return K_FROM;
        case 't': return K_TO;
        case 'l': return K_CLEN;
        case 'c': return K_CTYPE;
        default: return K_OTHER;
      }
    case 2: return bytesAreP(b, s, e, "to", 2) ? K_TO : K_OTHER;
    case 4: return bytesAreP(b, s, e, "from", 4) ? K_FROM : bytesAreP(b, s, e, "cseq", 4) ? K_CSEQ : K_OTHER;
    case 7: return bytesAreP(b, s, e, "call-id", 7) ? K_CALL_ID : K_OTHER;
    case 10: return bytesAreP(b, s, e, "session-id", 10) ? K_SESSION : K_OTHER;
    case 12: return bytesAreP(b, s, e, "content-type", 12) ? K_CTYPE : K_OTHER;
    case 14: return bytesAreP(b, s, e, "content-length", 14) ? K_CLEN : K_OTHER;
    case 17: return bytesAreP(b, s, e, "p-charging-vector", 17) ? K_PCV : K_OTHER;
    case 19: return bytesAreP(b, s, e, "p-asserted-identity", 19) ? K_PAI : K_OTHER;
    default: return K_OTHER;
  }
}

// uriUser of the URI b[s, e): the user's extent in *us, *ue (*us -1: none); DOUBT for a %-escape.
int uriUserP(const uint8_t* b, int s, int e, int* us, int* ue) {
  *us = -1;
  *ue = -1;
  int colon = indexOfByte(b, COLON, s, e);
  if (colon < 0 || colon - s < 3 || colon - s > 4) return 0;
  int u0 = colon + 1, u1;
  const int n = colon - s;
  const bool sip = (n == 3 && lowerB(b[s]) == 's' && lowerB(b[s + 1]) == 'i' && lowerB(b[s + 2]) == 'p') ||
                   (n == 4 && lowerB(b[s]) == 's' && lowerB(b[s + 1]) == 'i' && lowerB(b[s + 2]) == 'p' && lowerB(b[s + 3]) == 's');
  const bool tel = n == 3 && lowerB(b[s]) == 't' && lowerB(b[s + 1]) == 'e' && lowerB(b[s + 2]) == 'l';
  if (sip) {
    int at = indexOfByte(b, '@', u0, e);
    if (at < 0) return 0;
    u1 = at;
    int semi = indexOfByte(b, ';', u0, u1);
    if (semi >= 0) u1 = semi;
    int pw = indexOfByte(b, COLON, u0, u1);
    if (pw >= 0) u1 = pw;
  } else if (tel) {
    u1 = e;
    for (int i = u0; i < e; i++) {
      if (b[i] == ';' || b[i] == '?') {
        u1 = i;
        break;
      }
    }
  } else {
    return 0;
  }
  if (u1 <= u0) return 0;
  if (indexOfByte(b, '%', u0, u1) >= 0) return DOUBT;
  *us = u0;
  *ue = u1;
  return 0;
}

// parse.ts hasScheme of b[s, e).
bool hasSchemeP(const uint8_t* b, int s, int e) {
  if (e - s < 3 || !isAlpha(b[s])) return false;
  for (int i = s + 1; i < e; i++) {
    uint8_t c = b[i];
    if (c == COLON) return i + 1 < e;
    if (!(isAlpha(c) || isDigit(c) || c == 43 || c == 45 || c == 46)) return false;
  }
  return false;
}

// parseNameAddr of b[s, e): 1 with the user's extent (-1: none), 0 when it is null, DOUBT.
int nameAddrUserP(const uint8_t* b, int s, int e, int* us, int* ue) {
  *us = -1;
  *ue = -1;
  int i = s;
  while (i < e && isLws(b[i])) i++;
  if (i >= e) return 0;
  int lt;
  if (b[i] == '"') {
    int j = i + 1;
    while (j < e && b[j] != '"') {
      if (b[j] == '\\') return DOUBT;
      j++;
    }
    if (j >= e) return 0;
    i = j + 1;
    while (i < e && isLws(b[i])) i++;
    if (i >= e || b[i] != '<') return 0;
    lt = i;
  } else {
    lt = indexOfByte(b, '<', i, e);
  }
  int u0, u1;
  if (lt >= 0) {
    int gt = indexOfByte(b, '>', lt + 1, e);
    if (gt < 0) return 0;
    u0 = lt + 1;
    u1 = gt;
    while (u0 < u1 && isLws(b[u0])) u0++;
    while (u1 > u0 && isLws(b[u1 - 1])) u1--;
  } else {
    int j = i;
    while (j < e && b[j] != ';' && !isLws(b[j])) j++;
    u0 = i;
    u1 = j;
  }
  if (!hasSchemeP(b, u0, u1)) return 0;
  return uriUserP(b, u0, u1, us, ue) == DOUBT ? DOUBT : 1;
}

// parse.ts parseCSeq of b[s, e) where the record's "<n> <METHOD>" is those very bytes: 1; 0 when parseCSeq
// gives null; DOUBT when the record would differ from the bytes.
int cseqP(const uint8_t* b, int s, int e) {
  int i = s;
  uint64_t v = 0;
  while (i < e && isDigit(b[i])) {
    if (i - s >= 10) return 0;
    v = v * 10 + (b[i] - 48);
    i++;
  }
  if (i == s || v > 0xffffffffULL) return 0;
  int ms = i;
  while (ms < e && isLws(b[ms])) ms++;
  if (ms == i) return 0;
  int j = ms;
  while (j < e && T.token[b[j]]) j++;
  int k = j;
  while (k < e && isLws(b[k])) k++;
  if (j == ms || k != e) return 0;
  if ((b[s] == '0' && i - s > 1) || ms != i + 1 || b[i] != SP || j != e) return DOUBT;
  for (int q = ms; q < j; q++) if (b[q] >= 'a' && b[q] <= 'z') return DOUBT;
  return 1;
}

// parse.ts parseUint of b[s, e).
int64_t uintP(const uint8_t* b, int s, int e) {
  int n = e - s;
  if (n == 0 || n > 10) return -1;
  int64_t v = 0;
  for (int i = s; i < e; i++) {
    if (!isDigit(b[i])) return -1;
    v = v * 10 + (b[i] - 48);
  }
  return v;
}

// The values of the message b[0, len) that prescanSip laid out in `out`; false: D_OK 0.
bool decodeFieldsOr(const uint8_t* b, int len, int32_t* out, const uint8_t* corr, int corrLen) {
  int32_t* d = out + O_DEC;
  if (!(out[O_FACTS] & F_ASCII) || (out[O_FACTS] & F_XREF_START) || out[O_XREF] != 0) return false;
  const int start = out[O_START], lineEnd = out[O_LINE_END];
  if (out[O_KIND] == REQUEST) {
    // strictRequestLineP: method token SP uri SP version; the method and the URI hold no space.
    int sp1 = indexOfByte(b, SP, start, lineEnd);
    if (sp1 < 0) return false;
    int sp2 = indexOfByte(b, SP, sp1 + 1, lineEnd);
    if (sp2 < 0) return false;
    for (int i = start; i < sp1; i++) if (b[i] >= 'a' && b[i] <= 'z') return false;
    d[D_METHOD_END] = sp1;
    int us, ue;
    if (uriUserP(b, sp1 + 1, sp2, &us, &ue) == DOUBT) return false;
    d[D_RUSER] = us;
    d[D_RUSER + 1] = ue;
  } else {
    d[D_STATUS] = (b[start + 8] - 48) * 100 + (b[start + 9] - 48) * 10 + (b[start + 10] - 48);
    if (lineEnd - start > 12) {
      int rs = start + 12, re = lineEnd;
      while (rs < re && isLws(b[rs])) rs++;
      while (re > rs && isLws(b[re - 1])) re--;
      if (re > rs) {
        d[D_REASON] = rs;
        d[D_REASON + 1] = re;
      }
    }
  }
  const int n = out[O_LINE_COUNT];
  const int32_t* L = out + O_LINES;
  int seen[K_COUNT] = {0};
  bool corrSeen = false;
  int paiN = 0, puN = 0;
  for (int k = 0; k < n; k++) {
    const int32_t* l = L + 4 * k;
    if (l[0] < 0) continue;
    const int ns = l[0], ne = l[1], vs = l[2], ve = l[3];
    const bool folded = k + 1 < n && L[4 * (k + 1)] < 0;
    const bool isCorr = bytesAreP(b, ns, ne, reinterpret_cast<const char*>(corr), corrLen);
    const int kind = headerKindP(b, ns, ne);
    if (kind == K_OTHER && !isCorr) continue;
    // A folded value is joined with spaces by JS; a repeated one is read by rules of each header's own.
    if (folded) return false;
    if (isCorr) {
      if (corrSeen) return false;
      corrSeen = true;
      if (ve > vs) {
        d[D_CORR] = vs;
        d[D_CORR + 1] = ve;
      }
    }
    if (kind == K_OTHER) continue;
    if (kind != K_PAI && seen[kind]++ > 0) return false;
    int us, ue, r;
    switch (kind) {
      case K_CALL_ID:
        if (ve > vs) {
          d[D_CID] = vs;
          d[D_CID + 1] = ve;
        }
        break;
      case K_CSEQ:
        r = cseqP(b, vs, ve);
        if (r == DOUBT) return false;
        if (r == 1) {
          d[D_CSEQ] = vs;
          d[D_CSEQ + 1] = ve;
        }
        break;
      case K_FROM:
      case K_TO:
        r = nameAddrUserP(b, vs, ve, &us, &ue);
        if (r == DOUBT) return false;
        d[kind == K_FROM ? D_FUSER : D_TUSER] = us;
        d[(kind == K_FROM ? D_FUSER : D_TUSER) + 1] = ue;
        break;
      case K_PAI: {
        // splitList without quoted strings: commas outside <> split.
        if (indexOfByte(b, '"', vs, ve) >= 0) return false;
        int es = vs;
        bool inAngle = false;
        for (int i = vs; i <= ve; i++) {
          if (i < ve) {
            uint8_t c = b[i];
            if (c == '<') inAngle = true;
            else if (c == '>') inAngle = false;
            if (c != ',' || inAngle) continue;
          }
          r = nameAddrUserP(b, es, i, &us, &ue);
          if (r == DOUBT) return false;
          if (r == 1) {
            paiN++;
            if (us >= 0) {
              if (puN == MAX_PUSERS) return false;
              d[D_PUSER + 2 * puN] = us;
              d[D_PUSER + 2 * puN + 1] = ue;
              puN++;
            }
          }
          es = i + 1;
        }
        break;
      }
      case K_CLEN: {
        int64_t cl = uintP(b, vs, ve);
        const int headerLength = out[O_HEADER_LEN];
        if (cl >= 0 && headerLength + cl < len) d[D_BODY_END] = static_cast<int32_t>(headerLength + cl);
        break;
      }
      case K_CTYPE:
        d[D_CTYPE] = vs;
        d[D_CTYPE + 1] = ve;
        break;
      case K_SESSION:
        d[D_SESSION] = vs;
        d[D_SESSION + 1] = ve;
        break;
      case K_PCV:
        d[D_PCV] = vs;
        d[D_PCV + 1] = ve;
        break;
      default:
        break;
    }
  }
  if (d[D_BODY_END] < 0) d[D_BODY_END] = len;
  d[D_PAI_N] = paiN;
  d[D_PUSER_N] = puN;
  return true;
}

void decodeFields(const uint8_t* b, int len, int32_t* out, const uint8_t* corr, int corrLen) {
  // Every slot set, whatever the answer: the layout is the same for the same bytes (the batch and scan() agree).
  for (int k = 0; k < D_LEN; k++) out[O_DEC + k] = -1;
  out[O_DEC + D_OK] = corr != nullptr && decodeFieldsOr(b, len, out, corr, corrLen) ? 1 : 0;
}

// The link (Ethernet, Linux cooked v1 and v2, VLAN tags), IPv4 and UDP headers as
// shared/decode reads them, for an uncut frame.
int32_t scanFrame(const uint8_t* d, size_t size, int linkType, int32_t* out, size_t outLen, const uint8_t* corr, int corrLen) {
  if (size > 0x7fffffff) return SLOW;
  const int len = static_cast<int>(size);
  int off;
  int et;
  switch (linkType) {
    case 1:  // LINKTYPE_ETHERNET
      if (len < 14) return SLOW;
      et = be16(d, 12);
      off = 14;
      break;
    case 113:  // LINKTYPE_LINUX_SLL
      if (len < 16) return SLOW;
      et = be16(d, 14);
      off = 16;
      break;
    case 276:  // LINKTYPE_LINUX_SLL2
      if (len < 20) return SLOW;
      et = be16(d, 0);
      off = 20;
      break;
    default:
      return SLOW;
  }
  // VLAN tags (802.1Q, 802.1ad, the old QinQ), as link.ts's vlanTags skips them; the index keeps no VLAN id.
  while (et == 0x8100 || et == 0x88a8 || et == 0x9100) {
    if (off + 4 > len) return SLOW;
    et = be16(d, off + 2);
    off += 4;
  }
  if (et != 0x0800) return SLOW;  // IPv6, ARP...: JS
  const int avail = len - off;
  if (avail < 20) return SLOW;
  uint8_t vihl = d[off];
  if ((vihl >> 4) != 4) return SLOW;
  int ihl = (vihl & 0x0f) * 4;
  if (ihl < 20) return SLOW;
  int tl = be16(d, off + 2);
  if (tl == 0 || tl < ihl || tl > avail) return SLOW;  // offload lengths and lies: JS
  uint16_t ff = be16(d, off + 6);
  if ((ff & 0x2000) || (ff & 0x1fff)) return SLOW;  // fragments: JS reassembles
  if (d[off + 9] != 17) return SLOW;
  const int seg = off + ihl;
  const int segLen = tl - ihl;
  if (segLen < 8) return SLOW;
  int ulen = be16(d, seg + 4);
  if (ulen < 8 || ulen > segLen) return SLOW;
  const uint8_t* pay = d + seg + 8;
  const int n = ulen - 8;
  if (n == 0) return SLOW;
  // A keepalive (only CR and LF) is counted by the JS dissector.
  bool keepalive = true;
  for (int i = 0; i < n && keepalive; i++) keepalive = pay[i] == CR || pay[i] == LF;
  if (keepalive) return SLOW;
  int sl = startLineF(pay, 0, n);
  if (sl < 0) return SLOW;  // not SIP, or a lax start line: JS decides
  int r = frameDatagram(pay, sl, n);
  int dlen = r == 0 ? -1 : (r > n ? n : r);  // sipDatagramLength
  int msgLen = dlen > 0 && dlen < n ? dlen : n;
  if (!prescanSip(pay, msgLen, out, outLen)) return SLOW;
  decodeFields(pay, msgLen, out, corr, corrLen);
  out[O_IP] = off;
  out[O_SPORT] = be16(d, seg);
  out[O_DPORT] = be16(d, seg + 2);
  out[O_PAY] = seg + 8;
  out[O_LEN] = msgLen;
  return FAST_SIP;
}


// ---- a batch: the PCAP record walk of shared/pcap/pcap.ts scanPcapRecords, scanFrame for each record ----

// Batch output layout (Int32Array), kept in step with agent/index/native-scan.ts.
enum Batch : int {
  B_USED = 0,      // bytes of the buffer walked (whole records from `from` on)
  B_RECORDS = 1,   // entries written
  B_STOP = 2,      // why the walk stopped: B_END, B_CORRUPT (the header at B_USED), B_FULL (call again from B_USED)
  B_REC_BYTES = 3, // bytes of journal records written into the records buffer (writeRecord), from its start
  B_HEAD = 4,      // the first entry
};
constexpr int32_t B_END = 0, B_CORRUPT = 1, B_FULL = 2;
// Per entry: the record's offset in the buffer, capLen, origLen, seconds, nanoseconds, 1 when scanned (then the
// scanFrame layout follows, from O_IP on), 0 when the JS path reads the record.
// E_REC, E_REC_LEN: the message's journal record, written into the batch's record buffer (writeRecord), its
// offset and length there; E_REC -1 when JS writes the record.
constexpr int E_OFF = 0, E_CAPLEN = 1, E_ORIGLEN = 2, E_SEC = 3, E_NSEC = 4, E_FAST = 5, E_REC = 6, E_REC_LEN = 7, E_SCAN = 8;
constexpr int MAX_SCAN_LEN = O_LINES + 4 * 256;  // SCAN_OUT_LEN: one message's lines at most, as the one-packet scan

inline uint32_t rd32(const uint8_t* b, bool le) {
  return le ? (static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) | (static_cast<uint32_t>(b[2]) << 16) | (static_cast<uint32_t>(b[3]) << 24))
            : ((static_cast<uint32_t>(b[0]) << 24) | (static_cast<uint32_t>(b[1]) << 16) | (static_cast<uint32_t>(b[2]) << 8) | static_cast<uint32_t>(b[3]));
}

// ---- the message's journal record (agent/index/message-binary.ts writeBinaryRecord, behind message-arena.ts's prefix) ----

// Where the batch writes the records of the messages it decoded; null: JS writes every record.
struct RecordOut {
  uint8_t* buf = nullptr;
  size_t size = 0;
  size_t used = 0;
  uint32_t ordinal = 0;  // the packet ordinal of the batch's first record (one packet a record)
  bool hep = false;      // the HEP stream's segment: BIN_FLAG.HEP
};

constexpr uint8_t REC_MESSAGE_BIN = 0x6d;  // format.ts REC.MESSAGE_BIN
constexpr int REC_PREFIX = 5;
constexpr int BIN_FIXED = 22;
// writeRecord's room but for the message's bytes (twice the message bounds its strings): the batch stops rather
// than pass a record it could write for want of room.
constexpr int REC_ROOM = 256;
constexpr uint8_t BIN_STATUS = 0x04, BIN_HEP = 0x02, BIN_PU = 0x08;

inline uint8_t* putVarint(uint8_t* p, uint32_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

inline void put32le(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

// writeStr of an ASCII string (its UTF-8 bytes are its bytes): varint length, bytes.
inline uint8_t* putStr(uint8_t* p, const uint8_t* b, int s, int e) {
  p = putVarint(p, static_cast<uint32_t>(e - s));
  std::memcpy(p, b + s, static_cast<size_t>(e - s));
  return p + (e - s);
}

// ip.ts formatIPv4: dotted decimal, as varint length and bytes.
uint8_t* putIPv4(uint8_t* p, const uint8_t* a) {
  uint8_t* len = p++;
  for (int i = 0; i < 4; i++) {
    if (i) *p++ = '.';
    const unsigned v = a[i];
    if (v >= 100) *p++ = static_cast<uint8_t>('0' + v / 100);
    if (v >= 10) *p++ = static_cast<uint8_t>('0' + v / 10 % 10);
    *p++ = static_cast<uint8_t>('0' + v % 10);
  }
  *len = static_cast<uint8_t>(p - len - 1);
  return p;
}

// ---- the record's SDP: shared/sip/sdp.ts parseSdp and builder.ts addSdp, for an application/sdp body ----

constexpr int SDP_MAX_MEDIA = 32;   // more m= lines: JS reads the body
constexpr int SDP_MAX_RTPMAP = 32;  // sdp.ts keeps at most 32 rtpmap entries a media

struct Span {
  int s = -1, e = -1;  // [s, e) in the body; s -1: none
  bool some() const { return s >= 0; }
};

struct SdpMediaN {
  int port = 0;
  Span addr;
  int rtcpPort = -1;  // -1: none
  Span rtcpAddr;
  int nRtpmap = 0;
  int pt[SDP_MAX_RTPMAP];
  Span enc[SDP_MAX_RTPMAP];
};

struct SdpN {
  bool sawVersion = false;
  Span connection;
  int nMedia = 0;
  SdpMediaN media[SDP_MAX_MEDIA];
};

// sdp.ts fields(): the blank-separated (SP, HT) tokens of b[s, e), at most `max` (the count goes on past it).
int sdpFields(const uint8_t* b, int s, int e, Span* f, int max) {
  int n = 0;
  int i = s;
  while (i < e) {
    while (i < e && isLws(b[i])) i++;
    if (i >= e) break;
    const int st = i;
    while (i < e && !isLws(b[i])) i++;
    if (n < max) f[n] = Span{st, i};
    n++;
  }
  return n;
}

// Whether token b[t) is `up` (upper case ASCII) as JS's toUpperCase compares it: a latin1 byte past ASCII never
// upper-cases to ASCII but for none of I, N, P, 4, 6 ... so any byte of 0x80 or more differs.
bool tokenUpperIs(const uint8_t* b, Span t, const char* up) {
  int n = static_cast<int>(std::strlen(up));
  if (t.e - t.s != n) return false;
  for (int i = 0; i < n; i++) {
    uint8_t c = b[t.s + i];
    if (c >= 'a' && c <= 'z') c = static_cast<uint8_t>(c - 32);
    if (c != static_cast<uint8_t>(up[i])) return false;
  }
  return true;
}

// sdp.ts smallInt: 1 to 5 digits, at most max; -1 otherwise.
int sdpSmallInt(const uint8_t* b, int s, int e, int max) {
  if (e - s == 0 || e - s > 5) return -1;
  int n = 0;
  for (int i = s; i < e; i++) {
    if (!isDigit(b[i])) return -1;
    n = n * 10 + (b[i] - '0');
  }
  return n <= max ? n : -1;
}

// sdp.ts parseConnection of the tokens f[0..2] (at least 3): the address before any '/'; none when unusable.
Span sdpConnection(const uint8_t* b, const Span* f, int n) {
  if (n < 3 || !tokenUpperIs(b, f[0], "IN") || !(tokenUpperIs(b, f[1], "IP4") || tokenUpperIs(b, f[1], "IP6"))) return Span{};
  int slash = indexOfByte(b, '/', f[2].s, f[2].e);
  Span a{f[2].s, slash < 0 ? f[2].e : slash};
  return a.e > a.s ? a : Span{};
}

// parseSdp of body b[0, n) into `out`; false: something this does not take (more media than fit), JS reads it.
bool sdpRead(const uint8_t* b, int n, SdpN* out) {
  bool inMedia = false;
  SdpMediaN* cur = nullptr;
  Span f[4];
  int pos = 0;
  while (pos < n) {
    int nl = indexOfByte(b, LF, pos, n);
    if (nl < 0) nl = n;
    int s = pos, e = nl;
    while (s < e && isLws(b[s])) s++;
    while (e > s && (isLws(b[e - 1]) || b[e - 1] == CR)) e--;
    pos = nl + 1;
    if (e - s < 2 || b[s + 1] != '=') continue;
    switch (b[s]) {
      case 'v':
        out->sawVersion = true;
        break;
      case 'c': {
        const int k = sdpFields(b, s + 2, e, f, 3);
        Span a = sdpConnection(b, f, k);
        if (!a.some()) break;
        if (!inMedia) {
          if (!out->connection.some()) out->connection = a;
        } else if (cur != nullptr && !cur->addr.some()) {
          cur->addr = a;
        }
        break;
      }
      case 'a': {
        if (cur == nullptr) break;
        const int colon = indexOfByte(b, ':', s + 2, e);
        if (colon < 0) break;
        const int ns = s + 2;
        const bool rtcp = colon - ns == 4 && (b[ns] | 0x20) == 'r' && (b[ns + 1] | 0x20) == 't' && (b[ns + 2] | 0x20) == 'c' && (b[ns + 3] | 0x20) == 'p';
        const bool rtpmap = colon - ns == 6 && (b[ns] | 0x20) == 'r' && (b[ns + 1] | 0x20) == 't' && (b[ns + 2] | 0x20) == 'p' &&
                            (b[ns + 3] | 0x20) == 'm' && (b[ns + 4] | 0x20) == 'a' && (b[ns + 5] | 0x20) == 'p';
        if (!rtcp && !rtpmap) break;
        const int k = sdpFields(b, colon + 1, e, f, 4);
        if (k == 0) break;
        if (rtcp) {
          const int port = sdpSmallInt(b, f[0].s, f[0].e, 65535);
          if (port <= 0) break;
          cur->rtcpPort = port;
          // rtcpAddr = parseConnection(f[1..3]): set (to none too) only with 4 fields or more.
          if (k >= 4) cur->rtcpAddr = sdpConnection(b, f + 1, 3);
        } else if (k >= 2 && cur->nRtpmap < SDP_MAX_RTPMAP) {
          const int pt = sdpSmallInt(b, f[0].s, f[0].e, 127);
          if (pt < 0) break;
          // printable(): 1 to 64 bytes of 0x21-0x7e.
          const int len = f[1].e - f[1].s;
          if (len == 0 || len > 64) break;
          bool ok = true;
          for (int i = f[1].s; i < f[1].e; i++) if (b[i] < 0x21 || b[i] > 0x7e) ok = false;
          if (!ok) break;
          cur->pt[cur->nRtpmap] = pt;
          cur->enc[cur->nRtpmap++] = f[1];
        }
        break;
      }
      case 'm': {
        inMedia = true;
        cur = nullptr;
        const int k = sdpFields(b, s + 2, e, f, 3);
        if (k < 3) break;
        const int slash = indexOfByte(b, '/', f[1].s, f[1].e);
        const int port = sdpSmallInt(b, f[1].s, slash < 0 ? f[1].e : slash, 65535);
        if (port < 0) break;
        if (out->nMedia == SDP_MAX_MEDIA) return false;
        cur = &out->media[out->nMedia++];
        // Set field by field: the rtpmap arrays are read only up to nRtpmap.
        cur->port = port;
        cur->addr = Span{};
        cur->rtcpPort = -1;
        cur->rtcpAddr = Span{};
        cur->nRtpmap = 0;
        break;
      }
      default:
        break;
    }
  }
  return true;
}

// Whether b[sp) is ASCII: the record's strings are written as bytes, which is their UTF-8 only then.
bool spanAscii(const uint8_t* b, Span sp) {
  for (int i = sp.s; i < sp.e; i++) if (b[i] >= 0x80) return false;
  return true;
}

bool spanEq(const uint8_t* b, Span x, Span y) {
  return x.e - x.s == y.e - y.s && std::memcmp(b + x.s, b + y.s, static_cast<size_t>(x.e - x.s)) == 0;
}

// A bounded writer: every put checks its room (an SDP's addresses repeat, so the body's length bounds nothing).
struct Put {
  uint8_t* p;
  uint8_t* end;
  bool ok = true;
  void varint(uint32_t v) {
    if (end - p < 5) { ok = false; return; }
    p = putVarint(p, v);
  }
  void str(const uint8_t* b, Span sp) {
    varint(static_cast<uint32_t>(sp.e - sp.s));
    if (!ok || end - p < sp.e - sp.s) { ok = false; return; }
    std::memcpy(p, b + sp.s, static_cast<size_t>(sp.e - sp.s));
    p += sp.e - sp.s;
  }
};

constexpr uint8_t BIN_SDP = 0x10, BIN_RTCP = 0x20, BIN_RTPMAP = 0x40;

// addSdp's sdp, rc and pm of an SDP read by sdpRead (body b), after the record's other fields; the BIN_* flags
// it wrote, or -1 when it cannot (an address past ASCII, no room).
int putSdp(const uint8_t* b, SdpN& sdp, Put& w) {
  if (!sdp.sawVersion || sdp.nMedia == 0) return 0;
  int flags = 0;
  int nEps = 0, nRtcp = 0;
  for (int i = 0; i < sdp.nMedia; i++) {
    SdpMediaN& m = sdp.media[i];
    if (!m.addr.some()) m.addr = sdp.connection;
    if (!m.addr.some() || m.port == 0) continue;
    if (!spanAscii(b, m.addr)) return -1;
    nEps++;
    const Span ra = m.rtcpAddr.some() ? m.rtcpAddr : m.addr;
    if (m.rtcpPort >= 0 && !(spanEq(b, ra, m.addr) && m.rtcpPort == m.port + 1)) {
      if (!spanAscii(b, ra)) return -1;
      nRtcp++;
    }
  }
  if (nEps > 0) {
    flags |= BIN_SDP;
    w.varint(static_cast<uint32_t>(nEps));
    for (int i = 0; i < sdp.nMedia; i++) {
      const SdpMediaN& m = sdp.media[i];
      if (!m.addr.some() || m.port == 0) continue;
      w.str(b, m.addr);
      w.varint(static_cast<uint32_t>(m.port));
    }
  }
  if (nRtcp > 0) {
    flags |= BIN_RTCP;
    w.varint(static_cast<uint32_t>(nRtcp));
    for (int i = 0; i < sdp.nMedia; i++) {
      const SdpMediaN& m = sdp.media[i];
      if (!m.addr.some() || m.port == 0) continue;
      const Span ra = m.rtcpAddr.some() ? m.rtcpAddr : m.addr;
      if (m.rtcpPort >= 0 && !(spanEq(b, ra, m.addr) && m.rtcpPort == m.port + 1)) {
        w.str(b, ra);
        w.varint(static_cast<uint32_t>(m.rtcpPort));
      }
    }
  }
  // pm: each payload type once, the first entry of it in the usable media's order.
  bool seen[128] = {};
  int nMap = 0;
  for (int i = 0; i < sdp.nMedia; i++) {
    const SdpMediaN& m = sdp.media[i];
    if (!m.addr.some() || m.port == 0) continue;
    for (int k = 0; k < m.nRtpmap; k++) if (!seen[m.pt[k]]) { seen[m.pt[k]] = true; nMap++; }
  }
  if (nMap > 0) {
    flags |= BIN_RTPMAP;
    w.varint(static_cast<uint32_t>(nMap));
    bool put[128] = {};
    for (int i = 0; i < sdp.nMedia; i++) {
      const SdpMediaN& m = sdp.media[i];
      if (!m.addr.some() || m.port == 0) continue;
      for (int k = 0; k < m.nRtpmap; k++) {
        if (put[m.pt[k]]) continue;
        put[m.pt[k]] = true;
        w.varint(static_cast<uint32_t>(m.pt[k]));
        w.str(b, m.enc[k]);
      }
    }
  }
  return w.ok ? flags : -1;
}

// The Content-Type value ct (ASCII, the scan checked) is application/sdp as parse.ts mediaType reads it: 1;
// multipart/*: -1 (JS reads it); anything else: 0 (no SDP).
int sdpType(const uint8_t* m, int s, int e) {
  int semi = indexOfByte(m, ';', s, e);
  int te = semi < 0 ? e : semi;
  while (s < te && isLws(m[s])) s++;
  while (te > s && isLws(m[te - 1])) te--;
  static const char SDP[] = "application/sdp";
  static const char MULTI[] = "multipart/";
  auto lowerIs = [&](const char* w, int n, bool prefix) {
    if (prefix ? te - s < n : te - s != n) return false;
    for (int i = 0; i < n; i++) {
      uint8_t c = m[s + i];
      if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c + 32);
      if (c != static_cast<uint8_t>(w[i])) return false;
    }
    return true;
  };
  if (lowerIs(SDP, 15, false)) return 1;
  if (lowerIs(MULTI, 10, true)) return -1;
  return 0;
}

// The journal record builder.ts indexDecoded makes of a message the scan decoded (frame f, scan layout sc),
// when its record needs nothing JS reads its own way: no Session-ID, no P-Charging-Vector, no multipart body,
// an SDP that sdpRead and putSdp take (those take the JS writer). Returns the record's length (prefix
// included) at `at`, or 0.
int writeRecord(const uint8_t* f, const int32_t* sc, uint32_t sec, uint32_t nsec, uint32_t ordinal, bool hep, uint8_t* at, size_t room) {
  const int32_t* d = sc + O_DEC;
  if (d[D_OK] != 1 || !(sc[O_FACTS] & F_ASCII) || d[D_CID] < 0 || d[D_SESSION] >= 0 || d[D_PCV] >= 0) return 0;
  const uint8_t* m = f + sc[O_PAY];
  const int len = sc[O_LEN];
  const int bodyStart = sc[O_HEADER_LEN], bodyEnd = d[D_BODY_END];
  bool withSdp = false;
  if (d[D_CTYPE] >= 0 && bodyEnd > bodyStart) {
    const int type = sdpType(m, d[D_CTYPE], d[D_CTYPE + 1]);
    if (type < 0) return 0;
    withSdp = type == 1;
  }
  // Every string is an extent of the message, each a varint of at most 3 bytes (64 KiB), 13 strings at most
  // but for the users of P-Asserted-Identity (4): the message's length twice over bounds them all.
  if (room < static_cast<size_t>(REC_PREFIX + BIN_FIXED + 10 + 2 * 16 + 17 * 3 + 2 * len)) return 0;
  const int mEnd = d[D_METHOD_END];
  const bool request = mEnd >= 0;
  const bool pu = d[D_PAI_N] > 0;
  uint8_t flags = 0;
  if (hep) flags |= BIN_HEP;
  if (!request) flags |= BIN_STATUS;
  if (pu) flags |= BIN_PU;
  // Presence bits: m r q ru fu tu x (si sr ic never here).
  unsigned present = (request ? 1u : 0u) | (d[D_REASON] >= 0 ? 2u : 0u) | (d[D_CSEQ] >= 0 ? 4u : 0u) | (d[D_RUSER] >= 0 ? 8u : 0u) |
                     (d[D_FUSER] >= 0 ? 16u : 0u) | (d[D_TUSER] >= 0 ? 32u : 0u) | (d[D_CORR] >= 0 ? 64u : 0u);
  uint8_t* b = at + REC_PREFIX;
  put32le(b, sec);
  put32le(b + 4, nsec);
  put32le(b + 8, static_cast<uint32_t>(len));
  b[12] = static_cast<uint8_t>(sc[O_SPORT]);
  b[13] = static_cast<uint8_t>(sc[O_SPORT] >> 8);
  b[14] = static_cast<uint8_t>(sc[O_DPORT]);
  b[15] = static_cast<uint8_t>(sc[O_DPORT] >> 8);
  b[16] = 17;
  b[17] = flags;
  const uint32_t status = request ? 0 : static_cast<uint32_t>(d[D_STATUS]);
  b[18] = static_cast<uint8_t>(status);
  b[19] = static_cast<uint8_t>(status >> 8);
  b[20] = static_cast<uint8_t>(present);
  b[21] = static_cast<uint8_t>(present >> 8);
  uint8_t* p = putVarint(b + BIN_FIXED, 1);
  p = putVarint(p, ordinal);
  const uint8_t* ip = f + sc[O_IP];
  p = putIPv4(p, ip + 12);
  p = putIPv4(p, ip + 16);
  p = putStr(p, m, d[D_CID], d[D_CID + 1]);
  if (request) p = putStr(p, m, sc[O_START], mEnd);
  if (d[D_REASON] >= 0) p = putStr(p, m, d[D_REASON], d[D_REASON + 1]);
  if (d[D_CSEQ] >= 0) p = putStr(p, m, d[D_CSEQ], d[D_CSEQ + 1]);
  if (d[D_RUSER] >= 0) p = putStr(p, m, d[D_RUSER], d[D_RUSER + 1]);
  if (d[D_FUSER] >= 0) p = putStr(p, m, d[D_FUSER], d[D_FUSER + 1]);
  if (d[D_TUSER] >= 0) p = putStr(p, m, d[D_TUSER], d[D_TUSER + 1]);
  if (d[D_CORR] >= 0) p = putStr(p, m, d[D_CORR], d[D_CORR + 1]);
  if (pu) {
    const int n = d[D_PUSER_N];
    p = putVarint(p, static_cast<uint32_t>(n));
    for (int i = 0; i < n; i++) p = putStr(p, m, d[D_PUSER + 2 * i], d[D_PUSER + 2 * i + 1]);
  }
  if (withSdp) {
    // thread_local: about 13 KiB, not on the stack of whoever calls the addon; reset as sdpRead fills it.
    static thread_local SdpN sdp;
    sdp.sawVersion = false;
    sdp.connection = Span{};
    sdp.nMedia = 0;
    if (!sdpRead(m + bodyStart, bodyEnd - bodyStart, &sdp)) return 0;
    Put w{p, at + room};
    const int sf = putSdp(m + bodyStart, sdp, w);
    if (sf < 0) return 0;
    b[17] = static_cast<uint8_t>(b[17] | sf);
    p = w.p;
  }
  const uint32_t total = static_cast<uint32_t>(p - at);
  put32le(at, total - 4);
  at[4] = REC_MESSAGE_BIN;
  return static_cast<int>(total);
}

void scanRecords(const uint8_t* buf, size_t size, size_t from, bool le, bool nanos, uint32_t limit, int linkType, int32_t* out,
                 size_t outLen, const uint8_t* corr, int corrLen, RecordOut* rec) {
  size_t off = from;
  int32_t records = 0;
  size_t e = B_HEAD;
  int32_t stop = B_END;
  while (size - off >= 16) {
    if (outLen - e < static_cast<size_t>(E_SCAN + MAX_SCAN_LEN)) {
      stop = B_FULL;
      break;
    }
    const uint8_t* h = buf + off;
    uint32_t sec = rd32(h, le), sub = rd32(h + 4, le), capLen = rd32(h + 8, le), origLen = rd32(h + 12, le);
    if (capLen > limit || capLen > origLen) {
      stop = B_CORRUPT;
      break;
    }
    if (size - off - 16 < capLen) break;
    // The records buffer too full for this record's (writeRecord's bound): stop, JS calls again with room.
    if (rec != nullptr && records > 0 && rec->size - rec->used < static_cast<size_t>(REC_ROOM) + 2 * static_cast<size_t>(capLen)) {
      stop = B_FULL;
      break;
    }
    // setTimestamp: a sub-second field of a second or more carries into the seconds.
    uint64_t nsec = nanos ? sub : static_cast<uint64_t>(sub) * 1000;
    uint64_t s64 = sec + nsec / 1000000000ULL;
    nsec %= 1000000000ULL;
    int32_t* en = out + e;
    en[E_OFF] = static_cast<int32_t>(off);
    en[E_CAPLEN] = static_cast<int32_t>(capLen);
    en[E_ORIGLEN] = static_cast<int32_t>(origLen);
    en[E_SEC] = static_cast<int32_t>(static_cast<uint32_t>(s64));
    en[E_NSEC] = static_cast<int32_t>(nsec);
    en[E_FAST] = 0;
    en[E_REC] = -1;
    en[E_REC_LEN] = 0;
    // A cut record, or a time past what the packet table holds (the JS path reports it): not scanned.
    if (capLen == origLen && s64 <= 0xffffffffULL && scanFrame(h + 16, capLen, linkType, en + E_SCAN, MAX_SCAN_LEN, corr, corrLen) == FAST_SIP) {
      en[E_FAST] = 1;
      if (rec != nullptr) {
        const int n = writeRecord(h + 16, en + E_SCAN, static_cast<uint32_t>(s64), static_cast<uint32_t>(nsec),
                                  rec->ordinal + static_cast<uint32_t>(records), rec->hep, rec->buf + rec->used, rec->size - rec->used);
        if (n > 0) {
          en[E_REC] = static_cast<int32_t>(rec->used);
          en[E_REC_LEN] = n;
          rec->used += static_cast<size_t>(n);
        }
      }
      e += E_SCAN + O_LINES + 4 * static_cast<size_t>(en[E_SCAN + O_LINE_COUNT]);
    } else {
      e += E_SCAN;
    }
    records++;
    off += 16 + capLen;
  }
  out[B_USED] = static_cast<int32_t>(off);
  out[B_RECORDS] = records;
  out[B_STOP] = stop;
  out[B_REC_BYTES] = rec != nullptr ? static_cast<int32_t>(rec->used) : 0;
}

}  // namespace

// Without N-API (TFINDEX_STANDALONE): scanFrame alone, for a sanitizer build that fuzzes it.
#ifndef TFINDEX_STANDALONE
// seal-deflate.cc
Napi::Value DeflateKind(const Napi::CallbackInfo& info);
Napi::Value DeflateDialogs(const Napi::CallbackInfo& info);

namespace {

// The optional correlation header name (lower case, 2 to 256 bytes) at info[i]: the values are decoded (D_*) only
// with it; without it, or with anything else there, D_OK is 0.
bool correlationArg(const Napi::CallbackInfo& info, size_t i, const uint8_t** corr, int* corrLen) {
  *corr = nullptr;
  *corrLen = 0;
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return true;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return false;
  auto c = info[i].As<Napi::Uint8Array>();
  if (c.ElementLength() < 2 || c.ElementLength() > 256) return false;
  *corr = c.Data();
  *corrLen = static_cast<int>(c.ElementLength());
  return true;
}

// scan(frame: Buffer | Uint8Array, out: Int32Array, linkType: number, correlation?: Uint8Array) -> 0 (JS path) | 1 (out filled)
Napi::Value Scan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "scan(frame: Uint8Array, out: Int32Array, linkType: number)").ThrowAsJavaScriptException();
    return env.Null();
  }
  auto frame = info[0].As<Napi::TypedArray>();
  auto outArr = info[1].As<Napi::TypedArray>();
  if (frame.TypedArrayType() != napi_uint8_array || outArr.TypedArrayType() != napi_int32_array || outArr.ElementLength() < O_LINES + 4) {
    Napi::TypeError::New(env, "scan(frame: Uint8Array, out: Int32Array of at least 20, linkType: number)").ThrowAsJavaScriptException();
    return env.Null();
  }
  auto f = frame.As<Napi::Uint8Array>();
  auto o = outArr.As<Napi::Int32Array>();
  const int linkType = info[2].As<Napi::Number>().Int32Value();
  const uint8_t* corr;
  int corrLen;
  if (!correlationArg(info, 3, &corr, &corrLen)) {
    Napi::TypeError::New(env, "scan(): the correlation name is a Uint8Array of 2 to 256 bytes").ThrowAsJavaScriptException();
    return env.Null();
  }
  return Napi::Number::New(env, scanFrame(f.Data(), f.ElementLength(), linkType, o.Data(), o.ElementLength(), corr, corrLen));
}

// scanRecords(buf: Uint8Array, from: number, littleEndian: boolean, nanos: boolean, capLenLimit: number, linkType: number,
//             out: Int32Array, correlation?: Uint8Array, records?: Uint8Array, ordinal?: number, hep?: boolean) -> undefined;
// out holds the batch (B_*, E_*), records the decoded messages' journal records (E_REC).
Napi::Value ScanRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "scanRecords(buf: Uint8Array, from: number, littleEndian: boolean, nanos: boolean, capLenLimit: number, linkType: number, out: Int32Array, correlation?: Uint8Array of 2 to 256 bytes, records?: Uint8Array, ordinal?: number, hep?: boolean)";
  if (info.Length() < 7 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsBoolean() || !info[3].IsBoolean() ||
      !info[4].IsNumber() || !info[5].IsNumber() || !info[6].IsTypedArray()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Null();
  }
  auto bufArr = info[0].As<Napi::TypedArray>();
  auto outArr = info[6].As<Napi::TypedArray>();
  if (bufArr.TypedArrayType() != napi_uint8_array || outArr.TypedArrayType() != napi_int32_array ||
      outArr.ElementLength() < static_cast<size_t>(B_HEAD + E_SCAN + MAX_SCAN_LEN)) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Null();
  }
  auto b = bufArr.As<Napi::Uint8Array>();
  auto o = outArr.As<Napi::Int32Array>();
  const uint8_t* corr;
  int corrLen;
  if (!correlationArg(info, 7, &corr, &corrLen)) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Null();
  }
  // The decoded messages' records (writeRecord) go to info[8] from its start when it is given, with the
  // first record's packet ordinal info[9] and whether the segment is HEP's info[10].
  RecordOut rec;
  const bool withRecords = info.Length() > 8 && !info[8].IsUndefined() && !info[8].IsNull();
  if (withRecords) {
    if (!info[8].IsTypedArray() || info[8].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info.Length() < 11 ||
        !info[9].IsNumber() || !info[10].IsBoolean()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return env.Null();
    }
    auto r = info[8].As<Napi::Uint8Array>();
    const double ordinal = info[9].As<Napi::Number>().DoubleValue();
    // Record offsets go out as int32, ordinals are u32 (the packet table's).
    if (r.ElementLength() > 0x7fffffff || !(ordinal >= 0) || ordinal > 4294967295.0 || ordinal != static_cast<double>(static_cast<uint32_t>(ordinal))) {
      Napi::RangeError::New(env, usage).ThrowAsJavaScriptException();
      return env.Null();
    }
    rec.buf = r.Data();
    rec.size = r.ElementLength();
    rec.ordinal = static_cast<uint32_t>(ordinal);
    rec.hep = info[10].As<Napi::Boolean>().Value();
  }
  // Offsets go out as int32: a buffer past 2 GiB, or a start outside it, is refused.
  const double from = info[1].As<Napi::Number>().DoubleValue();
  const double limit = info[4].As<Napi::Number>().DoubleValue();
  if (b.ElementLength() > 0x7fffffff || !(from >= 0) || from > static_cast<double>(b.ElementLength()) || !(limit >= 0) || limit > 4294967295.0) {
    Napi::RangeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Null();
  }
  scanRecords(b.Data(), b.ElementLength(), static_cast<size_t>(from), info[2].As<Napi::Boolean>().Value(), info[3].As<Napi::Boolean>().Value(),
              static_cast<uint32_t>(limit), info[5].As<Napi::Number>().Int32Value(), o.Data(), o.ElementLength(), corr, corrLen,
              withRecords ? &rec : nullptr);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("scan", Napi::Function::New(env, Scan));
  exports.Set("scanRecords", Napi::Function::New(env, ScanRecords));
  exports.Set("deflateKind", Napi::Function::New(env, DeflateKind));
  exports.Set("deflateDialogs", Napi::Function::New(env, DeflateDialogs));
  return exports;
}

}  // namespace

NODE_API_MODULE(tfindex, Init)
#endif
