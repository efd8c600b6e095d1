// A sanitizer fuzz of the batch walk (scanRecords) and the frame scan under it, outside Node:
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -o /tmp/tfindex-fuzz agent/index/native/fuzz-batch.cc
//   /tmp/tfindex-fuzz 300000
// Buffers of records (either byte order; SIP over UDP frames with bytes flipped, cut records, lying caplens,
// the buffer cut anywhere), each in a heap block of exactly its size, walked with outputs of random sizes
// so that most take several calls; bytes flipped inside the messages too, the correlation name passed or not (the
// value decoding, decodeFields), and every decoded extent checked to lie in its message; the journal records the
// batch writes (writeRecord, its SDP too) into a buffer of random size, each checked to lie in it and to read
// back whole. Not
// built by node-gyp (binding.gyp lists scan.cc and seal-deflate.cc).
#define TFINDEX_STANDALONE 1
#include "scan.cc"
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <string>
static uint64_t s = 88172645463325252ULL;
static uint32_t rnd() { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
static const char* MSGS[] = {
  "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9\r\nCall-ID: abc@x\r\nFrom: <sip:+15551234@x>;tag=1\r\nTo: <sip:2@y>\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n",
  "SIP/2.0 200 OK\r\nCall-ID: c\r\nxref: 1\r\nX: a\r\n folded\r\nl: 0\r\n\r\n",
  "BYE sip:a@b SIP/2.0\nCall-ID: q\n\n",
  // The value decoding's forms (decodeFields): compact names, quoted names, bare and tel: URIs, PAI lists, folds.
  "SIP/2.0 180 Ringing\r\ni: c1\r\nf: \"A \\\"b\" <sip:1%41@x>;tag=1\r\nt: sip:2@y;tag=2\r\nCSeq: 007 INVITE\r\n"
  "P-Asserted-Identity: <sip:+1555@x>, <tel:+1555;p=1>,sip:9@z\r\nX-CID: corr\r\nSession-ID: abababababababababababababababab;remote=x\r\n"
  "P-Charging-Vector: icid-value=7\r\nc: application/sdp\r\nl: 4\r\n\r\nv=0\n",
  "invite tel:+15551234;npdi SIP/2.0\nCALL-ID:\tq \nFrom: Bob <sips:b:pw@x>\nTo:\n <sip:c@d>\nCSeq: 4294967296 bye\nx-cid: 1\nX-CID: 2\n\n",
  "SIP/2.0 200 OK\r\ni: c1\r\nf: \"A b\" <sip:1@x>;tag=1\r\nt: sip:2@y;tag=2\r\nCSeq: 7 INVITE\r\n"
  "P-Asserted-Identity: <sip:+1555@x>, <tel:+1555;p=1>,sip:9@z\r\nX-CID: corr\r\nSession-ID: abababababababababababababababab;remote=x\r\n"
  "P-Charging-Vector: icid-value=7\r\nc: application/sdp\r\nl: 4\r\n\r\nv=0\n",
  // Records the scan writes itself (writeRecord): no Session-ID, P-Charging-Vector or body; a Call-ID past 127 bytes.
  "SUBSCRIBE sip:+15550001@x SIP/2.0\r\nCall-ID: 0123456789012345678901234567890123456789012345678901234567890123456789"
  "0123456789012345678901234567890123456789012345678901234567890123456789@h\r\nFrom: \"A\" <sip:+1555@x>;tag=1\r\n"
  "To: <tel:+1666>\r\nCSeq: 12 SUBSCRIBE\r\nP-Asserted-Identity: <sip:+1777@x>, <sip:+1888@y>\r\nX-CID: k1\r\nContent-Length: 0\r\n\r\n",
  "SIP/2.0 486 Busy Here\r\ni: c9\r\nf: <sip:1@x>;tag=1\r\nt: <sip:2@y>;tag=2\r\nCSeq: 3 INVITE\r\nP-Asserted-Identity: \"x\" <sip:a.b@x>\r\nl: 0\r\n\r\n",
  // SDP the scan reads itself (sdpRead, putSdp): media with and without their own c=, rtcp, rtpmap, IPv6.
  "INVITE sip:+1555@b SIP/2.0\r\nCall-ID: s1\r\nFrom: <sip:1@x>;tag=1\r\nTo: <sip:2@y>\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
  "Content-Length: 196\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1/127\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n"
  "a=rtpmap:0 PCMU/8000\r\na=rtcp:4009 IN IP4 10.0.0.9\r\nm=video 4002/2 RTP/AVP 96\r\nc=IN IP6 2001:db8::1\r\na=rtpmap:96 H264/90000\r\n",
  "SIP/2.0 200 OK\nCall-ID: s2\nf: <sip:1@x>;tag=1\nt: <sip:2@y>;tag=2\nCSeq: 1 INVITE\nc: Application/SDP ; x=1\nl: 83\n\n"
  "v=0\nm=audio 0 RTP/AVP 0\nm=audio 5000 RTP/AVP 0\n c=in ip4 \t10.1.1.1 \na=RTCP:5001\na=rtpmap:0 X/1\na=rtcp:7\n",
};
constexpr int NMSGS = sizeof(MSGS) / sizeof(MSGS[0]);
static const uint8_t CORR[] = {'x', '-', 'c', 'i', 'd'};

static uint32_t rdVarint(const uint8_t*& p, const uint8_t* end, bool* ok) {
  uint32_t v = 0;
  for (int sh = 0; sh < 35; sh += 7) {
    if (p >= end) { *ok = false; return 0; }
    uint8_t b = *p++;
    v |= static_cast<uint32_t>(b & 0x7f) << sh;
    if (b < 0x80) return v;
  }
  *ok = false;
  return 0;
}

// A record writeRecord wrote (prefix, fixed fields, varints, strings) reads back to exactly its length, its
// strings ASCII (readBinaryRecord's reading, without its objects).
static bool recordReads(const uint8_t* r, int len) {
  if (len < REC_PREFIX + BIN_FIXED + 2) return false;
  uint32_t body = r[0] | (r[1] << 8) | (r[2] << 16) | (static_cast<uint32_t>(r[3]) << 24);
  if (body != static_cast<uint32_t>(len - 4) || r[4] != REC_MESSAGE_BIN) return false;
  const uint8_t* b = r + REC_PREFIX;
  const uint8_t* end = r + len;
  const uint8_t flags = b[17];
  const unsigned present = b[20] | (b[21] << 8);
  if (present & ~0x7fu || (flags & ~(BIN_HEP | BIN_STATUS | BIN_PU | BIN_SDP | BIN_RTCP | BIN_RTPMAP))) return false;
  const uint8_t* p = b + BIN_FIXED;
  bool ok = true;
  if (rdVarint(p, end, &ok) != 1 || !ok) return false;
  rdVarint(p, end, &ok);
  uint32_t strs = 3;
  for (unsigned k = 0; k < 7; k++) strs += (present >> k) & 1;
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < strs && ok; i++) {
      uint32_t n = rdVarint(p, end, &ok);
      if (!ok || n > static_cast<uint32_t>(end - p)) return false;
      for (uint32_t j = 0; j < n; j++) if (p[j] >= 0x80) return false;
      p += n;
    }
    // Then, with BIN_PU, the users of P-Asserted-Identity: a count and as many strings.
    if (pass == 1 || !(flags & BIN_PU)) break;
    strs = rdVarint(p, end, &ok);
    if (!ok || strs > MAX_PUSERS) return false;
  }
  // The SDP's endpoints and RTCP endpoints (string, port), its payload types (type, string); none empty.
  for (int k = 0; k < 3 && ok; k++) {
    if (!(flags & (k == 0 ? BIN_SDP : k == 1 ? BIN_RTCP : BIN_RTPMAP))) continue;
    const uint32_t n = rdVarint(p, end, &ok);
    if (!ok || n == 0 || n > (k == 2 ? 128u : static_cast<uint32_t>(SDP_MAX_MEDIA))) return false;
    for (uint32_t i = 0; i < n && ok; i++) {
      if (k == 2 && rdVarint(p, end, &ok) > 127) return false;
      const uint32_t len = rdVarint(p, end, &ok);
      if (!ok || len == 0 || len > static_cast<uint32_t>(end - p)) return false;
      for (uint32_t j = 0; j < len; j++) if (p[j] >= 0x80) return false;
      p += len;
      if (k < 2 && rdVarint(p, end, &ok) > 65535) return false;
    }
  }
  return ok && p == end;
}
int main(int argc, char** argv) {
  long iters = argc > 1 ? atol(argv[1]) : 100000;
  long fast = 0, recs = 0, corrupt = 0, full = 0, decoded = 0, written = 0, withSdp = 0;
  for (long it = 0; it < iters; it++) {
    std::vector<uint8_t> v;
    int n = 1 + rnd() % 12;
    bool le = rnd() & 1;
    for (int i = 0; i < n; i++) {
      std::string m = MSGS[rnd() % NMSGS];
      for (int k = 0, kn = rnd() % 3; k < kn && !m.empty(); k++) m[rnd() % m.size()] = rnd() % 2 ? rnd() : " ;:<>,\"@%\t\r\n"[rnd() % 12];
      std::vector<uint8_t> f(14 + 20 + 8 + m.size());
      f[12] = 0x08; f[13] = 0x00; f[14] = 0x45;
      int tl = 28 + (int)m.size(); f[16] = tl >> 8; f[17] = tl & 255; f[23] = 17;
      int ul = 8 + (int)m.size(); f[34] = 0x13; f[35] = 0xc4; f[36] = 0x13; f[37] = 0xc4; f[38] = ul >> 8; f[39] = ul & 255;
      memcpy(f.data() + 42, m.data(), m.size());
      for (int k = 0, kn = rnd() % 4; k < kn; k++) f[rnd() % f.size()] = rnd();
      uint32_t cap = f.size(), orig = f.size();
      if (rnd() % 8 == 0) cap = rnd() % (f.size() + 1);
      uint32_t hdr[4] = {rnd(), rnd() % 3 == 0 ? rnd() : rnd() % 1000000, cap, orig};
      if (rnd() % 20 == 0) hdr[2] = rnd();
      uint8_t hb[16];
      for (int k = 0; k < 4; k++) for (int j = 0; j < 4; j++) hb[4 * k + j] = le ? (hdr[k] >> (8 * j)) & 255 : (hdr[k] >> (8 * (3 - j))) & 255;
      v.insert(v.end(), hb, hb + 16);
      v.insert(v.end(), f.begin(), f.begin() + cap);
    }
    if (rnd() % 4 == 0 && !v.empty()) v.resize(rnd() % v.size());
    for (int k = 0, kn = rnd() % 3; k < kn && !v.empty(); k++) v[rnd() % v.size()] = rnd();
    // Exactly sized heap blocks: ASan catches a read one past either.
    uint8_t* buf = (uint8_t*)malloc(v.size() ? v.size() : 1);
    memcpy(buf, v.data(), v.size());
    size_t outLen = B_HEAD + E_SCAN + MAX_SCAN_LEN + rnd() % 3000;
    int32_t* out = (int32_t*)malloc(outLen * 4);
    size_t from = 0;
    // The records' buffer: none, or an exactly sized block, often too small for them all.
    const size_t recSize = rnd() % 4 == 0 ? 0 : rnd() % 2 ? rnd() % 600 : rnd() % 20000;
    uint8_t* recBuf = (uint8_t*)malloc(recSize ? recSize : 1);
    for (int round = 0; round < 10000; round++) {
      const bool withCorr = rnd() % 4 != 0;
      RecordOut ro;
      ro.buf = recBuf;
      ro.size = recSize;
      ro.ordinal = rnd() % 2 ? rnd() : rnd() % 300;
      ro.hep = rnd() & 1;
      scanRecords(buf, v.size(), from, le, rnd() & 1, 65535, 1, out, outLen, withCorr ? CORR : nullptr, withCorr ? 5 : 0,
                  recSize ? &ro : nullptr);
      recs += out[B_RECORDS];
      size_t recNext = 0;
      for (int32_t i = 0, e = B_HEAD; i < out[B_RECORDS]; i++) {
        if (out[e + E_REC] >= 0) {
          // Written only for a decoded message, back to back from the buffer's start, inside it, and readable.
          const int32_t at = out[e + E_REC], n = out[e + E_REC_LEN];
          if (!out[e + E_FAST] || out[e + E_SCAN + O_DEC + D_OK] != 1 || static_cast<size_t>(at) != recNext || n <= 0 ||
              static_cast<size_t>(at) + n > recSize || !recordReads(recBuf + at, n)) { fprintf(stderr, "bad record\n"); return 1; }
          recNext += n;
          written++;
          if (recBuf[at + REC_PREFIX + 17] & BIN_SDP) withSdp++;
        } else if (out[e + E_REC_LEN] != 0) { fprintf(stderr, "record length without a record\n"); return 1; }
        if (out[e + E_FAST]) {
          fast++;
          const int32_t* sc = out + e + E_SCAN;
          if (sc[O_DEC + D_OK] == 1) {
            decoded++;
            // Every decoded extent lies in the message (a start of -1: absent).
            static const int PAIRS[] = {D_CID, D_CSEQ, D_RUSER, D_FUSER, D_TUSER, D_REASON, D_CORR, D_SESSION, D_PCV, D_CTYPE,
                                        D_PUSER, D_PUSER + 2, D_PUSER + 4, D_PUSER + 6};
            if (sc[O_DEC + D_PUSER_N] > MAX_PUSERS || sc[O_DEC + D_BODY_END] > sc[O_LEN] || sc[O_DEC + D_BODY_END] < sc[O_HEADER_LEN]) { fprintf(stderr, "bad counts\n"); return 1; }
            for (int k : PAIRS) {
              if (sc[O_DEC + k] >= 0 && !(sc[O_DEC + k] <= sc[O_DEC + k + 1] && sc[O_DEC + k + 1] <= sc[O_LEN])) { fprintf(stderr, "extent %d out of the message\n", k); return 1; }
            }
          }
          e += E_SCAN + O_LINES + 4 * out[e + E_SCAN + O_LINE_COUNT];
        } else e += E_SCAN;
        if ((size_t)e > outLen) { fprintf(stderr, "entry past out\n"); return 1; }
      }
      if (out[B_STOP] != B_FULL) { if (out[B_STOP] == B_CORRUPT) corrupt++; break; }
      full++;
      from = out[B_USED];
    }
    free(buf); free(out); free(recBuf);
  }
  printf("iters %ld records %ld fast %ld decoded %ld written %ld (with SDP %ld) corrupt %ld full %ld\n", iters, recs, fast, decoded, written, withSdp, corrupt, full);
}
