// tfcapture: the small libpcap surface the capture worker needs and the npm
// package `cap` lacks: kernel timestamps at nanosecond precision, pcap_stats
// drop counters, promiscuous mode off by default, and packets handed to JS in
// batches of ready-made PCAP records instead of one callback per packet.
//
// read() blocks (poll on the capture fd) on purpose: it runs in a
// worker_threads Worker, one per interface, never on the main thread.

#include <napi.h>
#include <pcap/pcap.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

#include <string>
#include <vector>

namespace {

// Lets read()/close() refuse any External that is not one of our handles,
// instead of dereferencing a foreign pointer.
const napi_type_tag kHandleTag = {0x74726163ef1ee7caULL, 0x7066636170747572ULL};

constexpr size_t kRecordHeader = 16;
constexpr int kMaxSnaplen = 262144;  // libpcap's own ceiling for Linux
constexpr int kBlockTimeoutMs = 10;

struct Capture {
  pcap_t* p = nullptr;
  std::string device;
  int fd = -1;
  bool nanos = false;
  std::vector<std::string> warnings;
  // A whole record that did not fit in the caller's buffer; it goes out
  // first on the next read() so records are never split or dropped.
  std::vector<uint8_t> stash;
  // An error met after some packets were already copied out: those are
  // returned first and the error is thrown by the next read().
  std::string pendingError;
};

void FinalizeCapture(Napi::Env, Capture* c) {
  if (c->p != nullptr) pcap_close(c->p);
  delete c;
}

Napi::Value Throw(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  if (code != nullptr) e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

void PutLE32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

// pcap_datalink() gives a DLT_ value, but capture files carry LINKTYPE_
// values; they differ for a handful of historical link types whose DLT
// numbers were never portable. Same table as libpcap's dlt_to_linktype().
int DltToLinktype(int dlt) {
  switch (dlt) {
    case DLT_ATM_RFC1483: return 100;
#ifdef DLT_RAW
    case DLT_RAW: return 101;
#endif
    case DLT_SLIP_BSDOS: return 102;
    case DLT_PPP_BSDOS: return 103;
    case DLT_ATM_CLIP: return 106;
#if defined(DLT_PFSYNC) && DLT_PFSYNC != 246
    case DLT_PFSYNC: return 246;
#endif
    default: return dlt;
  }
}

int LinktypeToDlt(int lt) {
  switch (lt) {
    case 100: return DLT_ATM_RFC1483;
    case 101: return DLT_RAW;
    case 102: return DLT_SLIP_BSDOS;
    case 103: return DLT_PPP_BSDOS;
    case 106: return DLT_ATM_CLIP;
    default: return lt;
  }
}

Capture* GetHandle(const Napi::CallbackInfo& info, bool mustBeOpen) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal() || !info[0].As<Napi::External<Capture>>().CheckTypeTag(&kHandleTag)) {
    ThrowType(env, "expected a capture handle returned by open()");
    return nullptr;
  }
  Capture* c = info[0].As<Napi::External<Capture>>().Data();
  if (mustBeOpen && c->p == nullptr) {
    Throw(env, "capture on " + c->device + " is closed", "ECLOSED");
    return nullptr;
  }
  return c;
}

// Option `key` of open()'s options if `isType` accepts it; otherwise an
// empty Value with a JS exception pending (reading it threw, or a TypeError
// saying it must be `typeName`).
Napi::Value GetTypedOpt(Napi::Env env, Napi::Object o, const char* key, bool (Napi::Value::*isType)() const,
                        const char* typeName) {
  Napi::Value v = o.Get(key);
  if (env.IsExceptionPending()) return Napi::Value();
  if (!(v.*isType)()) {
    ThrowType(env, std::string("open(): option ") + key + " must be " + typeName);
    return Napi::Value();
  }
  return v;
}

bool GetNumberOpt(Napi::Env env, Napi::Object o, const char* key, double* out) {
  Napi::Value v = GetTypedOpt(env, o, key, &Napi::Value::IsNumber, "a number");
  if (v.IsEmpty()) return false;
  *out = v.As<Napi::Number>().DoubleValue();
  return true;
}

bool GetBoolOpt(Napi::Env env, Napi::Object o, const char* key, bool* out) {
  Napi::Value v = GetTypedOpt(env, o, key, &Napi::Value::IsBoolean, "a boolean");
  if (v.IsEmpty()) return false;
  *out = v.As<Napi::Boolean>().Value();
  return true;
}

std::string PcapErr(pcap_t* p, int status) {
  std::string e = pcap_geterr(p);
  if (e.empty()) e = pcap_statustostr(status);
  return e;
}

// open(device, filter, {snaplen, bufferBytes, promisc, nanos, immediate?}) -> handle
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsObject()) {
    return ThrowType(env, "open(device: string, filter: string, {snaplen, bufferBytes, promisc, nanos})");
  }
  const std::string device = info[0].As<Napi::String>().Utf8Value();
  const std::string filter = info[1].As<Napi::String>().Utf8Value();
  Napi::Object opts = info[2].As<Napi::Object>();
  double snaplen = 0, bufferBytes = 0;
  bool promisc = false, nanos = false;
  if (!GetNumberOpt(env, opts, "snaplen", &snaplen) || !GetNumberOpt(env, opts, "bufferBytes", &bufferBytes) ||
      !GetBoolOpt(env, opts, "promisc", &promisc) || !GetBoolOpt(env, opts, "nanos", &nanos)) {
    return env.Undefined();
  }
  bool immediate = false;
  if (opts.Has("immediate") && !opts.Get("immediate").IsUndefined() && !GetBoolOpt(env, opts, "immediate", &immediate)) {
    return env.Undefined();
  }
  if (!(snaplen >= 64 && snaplen <= kMaxSnaplen)) {
    return Throw(env, "snaplen must be between 64 and 262144 bytes", "EINVAL");
  }
  if (!(bufferBytes >= 65536 && bufferBytes <= 2147483647.0)) {
    return Throw(env, "bufferBytes must be between 64 KiB and 2 GiB", "EINVAL");
  }
  if (device.empty()) return Throw(env, "no capture interface given", "EINVAL");

  char errbuf[PCAP_ERRBUF_SIZE];
  errbuf[0] = '\0';
  pcap_t* p = pcap_create(device.c_str(), errbuf);
  if (p == nullptr) {
    return Throw(env, "cannot capture on " + device + ": " + errbuf, "ECAPTURE");
  }
  auto fail = [&](const std::string& msg, const char* code) {
    pcap_close(p);
    return Throw(env, msg, code);
  };

  std::vector<std::string> warnings;
  // Not immediate mode by default: on Linux it makes libpcap fall back from
  // TPACKET_V3 to TPACKET_V2, whose ring has fixed slots sized for the
  // largest frame (64 KiB with offloads or on lo), so a 32 MiB buffer holds
  // only a few hundred packets and a short stall of the writer drops them.
  // TPACKET_V3 packs packets into blocks and hands over a block when it is
  // full or kBlockTimeoutMs old, which bounds the delay instead.
  if (pcap_set_snaplen(p, static_cast<int>(snaplen)) != 0 || pcap_set_promisc(p, promisc ? 1 : 0) != 0 ||
      pcap_set_buffer_size(p, static_cast<int>(bufferBytes)) != 0 || pcap_set_immediate_mode(p, immediate ? 1 : 0) != 0 ||
      pcap_set_timeout(p, kBlockTimeoutMs) != 0) {
    return fail("cannot configure capture on " + device + ": " + pcap_geterr(p), "ECAPTURE");
  }
  if (nanos && pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO) != 0) {
    warnings.push_back("nanosecond timestamps are not supported on " + device + "; capturing with microsecond precision");
  }

  int rc = pcap_activate(p);
  if (rc < 0) {
    const std::string why = PcapErr(p, rc);
    switch (rc) {
      case PCAP_ERROR_PERM_DENIED:
        return fail("permission denied capturing on " + device + " (" + why +
                        "): run as root or give CAP_NET_RAW and CAP_NET_ADMIN",
                    "EPERM");
      case PCAP_ERROR_PROMISC_PERM_DENIED:
        return fail("permission denied putting " + device + " into promiscuous mode (" + why +
                        "): run as root or give CAP_NET_ADMIN, or capture without promisc",
                    "EPERM");
      case PCAP_ERROR_NO_SUCH_DEVICE:
        return fail("no such capture interface \"" + device + "\" (" + why +
                        "): check the name with `ip link` (names are case-sensitive)",
                    "ENODEV");
      case PCAP_ERROR_IFACE_NOT_UP:
        return fail("interface " + device + " is down (" + why + "): bring it up with `ip link set " + device + " up`",
                    "ENETDOWN");
      default:
        return fail("cannot capture on " + device + ": " + why +
                        " (if this is about memory, lower bufferBytes; it is " +
                        std::to_string(static_cast<long long>(bufferBytes)) + ")",
                    "ECAPTURE");
    }
  }
  if (rc > 0) {
    const std::string why = PcapErr(p, rc);
    if (rc == PCAP_WARNING_PROMISC_NOTSUP) {
      warnings.push_back("promiscuous mode is not supported on " + device + " (" + why + ")");
    } else if (rc == PCAP_WARNING_TSTAMP_TYPE_NOTSUP) {
      warnings.push_back("requested timestamp type not supported on " + device + " (" + why + ")");
    } else {
      warnings.push_back("capture on " + device + ": " + why);
    }
  }
  const bool gotNanos = pcap_get_tstamp_precision(p) == PCAP_TSTAMP_PRECISION_NANO;
  if (nanos && !gotNanos && warnings.empty()) {
    warnings.push_back("libpcap gave microsecond timestamps on " + device + " although nanoseconds were asked for");
  }

  struct bpf_program prog;
  if (pcap_compile(p, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    return fail("invalid capture filter \"" + filter + "\" on " + device + ": " + pcap_geterr(p) +
                    " (fix the expression; `tcpdump -d '<filter>'` shows what libpcap makes of it)",
                "EFILTER");
  }
  if (pcap_setfilter(p, &prog) != 0) {
    const std::string why = pcap_geterr(p);
    pcap_freecode(&prog);
    return fail("cannot install capture filter \"" + filter + "\" on " + device + ": " + why, "EFILTER");
  }
  pcap_freecode(&prog);

  if (pcap_setnonblock(p, 1, errbuf) != 0) {
    return fail("cannot make capture on " + device + " non-blocking: " + errbuf, "ECAPTURE");
  }
  const int fd = pcap_get_selectable_fd(p);
  if (fd < 0) {
    return fail("capture on " + device + " has no pollable descriptor; this platform is not supported", "ECAPTURE");
  }

  Capture* c = new Capture();
  c->p = p;
  c->device = device;
  c->fd = fd;
  c->nanos = gotNanos;
  c->warnings = std::move(warnings);
  auto ext = Napi::External<Capture>::New(env, c, FinalizeCapture);
  ext.TypeTag(&kHandleTag);
  return ext;
}

void WriteRecord(uint8_t* dst, const struct pcap_pkthdr* h, const u_char* data) {
  PutLE32(dst, static_cast<uint32_t>(h->ts.tv_sec));
  // With nanosecond precision libpcap stores nanoseconds in tv_usec.
  PutLE32(dst + 4, static_cast<uint32_t>(h->ts.tv_usec));
  PutLE32(dst + 8, h->caplen);
  PutLE32(dst + 12, h->len);
  memcpy(dst + kRecordHeader, data, h->caplen);
}

// read(handle, out, timeoutMs) -> {bytes, packets}
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Capture* c = GetHandle(info, true);
  if (c == nullptr) return env.Undefined();
  if (info.Length() < 3 || !info[1].IsBuffer() || !info[2].IsNumber()) {
    return ThrowType(env, "read(handle, out: Buffer, timeoutMs: number)");
  }
  auto out = info[1].As<Napi::Buffer<uint8_t>>();
  double t = info[2].As<Napi::Number>().DoubleValue();
  const int timeoutMs = t > 0 ? (t > 60000 ? 60000 : static_cast<int>(t)) : 0;
  uint8_t* dst = out.Data();
  const size_t cap = out.Length();
  size_t used = 0;
  uint32_t packets = 0;

  if (!c->pendingError.empty()) {
    std::string e = c->pendingError;
    c->pendingError.clear();
    return Throw(env, e, "ECAPTURE");
  }
  if (!c->stash.empty()) {
    if (c->stash.size() > cap) {
      return Throw(env,
                   "read buffer of " + std::to_string(cap) + " bytes cannot hold a record of " +
                       std::to_string(c->stash.size()) + " bytes; pass at least 16 + snaplen bytes",
                   "ERANGE");
    }
    memcpy(dst, c->stash.data(), c->stash.size());
    used = c->stash.size();
    packets = 1;
    c->stash.clear();
  }

  // Ends when the kernel has nothing more, the next record does not fit, or
  // the one wait has timed out; every other pass adds >= 16 bytes to `used`,
  // so the buffer size bounds the number of passes.
  bool waited = false;
  for (;;) {
    struct pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(c->p, &h, &data);
    if (rc == 1) {
      const size_t rec = kRecordHeader + h->caplen;
      if (used + rec <= cap) {
        WriteRecord(dst + used, h, data);
        used += rec;
        packets++;
        continue;
      }
      c->stash.resize(rec);
      WriteRecord(c->stash.data(), h, data);
      break;
    }
    if (rc == 0) {
      if (used > 0 || waited || timeoutMs == 0) break;
      struct pollfd pfd;
      pfd.fd = c->fd;
      pfd.events = POLLIN;
      pfd.revents = 0;
      const int pr = poll(&pfd, 1, timeoutMs);
      waited = true;
      if (pr < 0 && errno != EINTR) {
        return Throw(env, "waiting for packets on " + c->device + " failed: " + strerror(errno), "ECAPTURE");
      }
      continue;
    }
    if (rc == PCAP_ERROR_BREAK) break;
    std::string why = "capture on " + c->device + " failed: " + PcapErr(c->p, rc);
    if (used == 0) return Throw(env, why, "ECAPTURE");
    c->pendingError = why;
    break;
  }

  Napi::Object r = Napi::Object::New(env);
  r.Set("bytes", Napi::Number::New(env, static_cast<double>(used)));
  r.Set("packets", Napi::Number::New(env, packets));
  return r;
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Capture* c = GetHandle(info, true);
  if (c == nullptr) return env.Undefined();
  struct pcap_stat st;
  memset(&st, 0, sizeof st);
  if (pcap_stats(c->p, &st) != 0) {
    return Throw(env, "cannot read capture statistics on " + c->device + ": " + pcap_geterr(c->p), "ECAPTURE");
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("received", Napi::Number::New(env, st.ps_recv));
  r.Set("dropped", Napi::Number::New(env, st.ps_drop));
  r.Set("ifDropped", Napi::Number::New(env, st.ps_ifdrop));
  return r;
}

Napi::Value LinkType(const Napi::CallbackInfo& info) {
  Capture* c = GetHandle(info, true);
  if (c == nullptr) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), DltToLinktype(pcap_datalink(c->p)));
}

Napi::Value LinkTypeName(const Napi::CallbackInfo& info) {
  Capture* c = GetHandle(info, true);
  if (c == nullptr) return info.Env().Undefined();
  const int dlt = pcap_datalink(c->p);
  const char* name = pcap_datalink_val_to_name(dlt);
  return Napi::String::New(info.Env(), name != nullptr ? std::string(name) : "DLT_" + std::to_string(dlt));
}

Napi::Value Precision(const Napi::CallbackInfo& info) {
  Capture* c = GetHandle(info, false);
  if (c == nullptr) return info.Env().Undefined();
  return Napi::String::New(info.Env(), c->nanos ? "nano" : "micro");
}

Napi::Value Snaplen(const Napi::CallbackInfo& info) {
  Capture* c = GetHandle(info, true);
  if (c == nullptr) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), pcap_snapshot(c->p));
}

Napi::Value Warnings(const Napi::CallbackInfo& info) {
  Capture* c = GetHandle(info, false);
  if (c == nullptr) return info.Env().Undefined();
  Napi::Array a = Napi::Array::New(info.Env(), c->warnings.size());
  for (size_t i = 0; i < c->warnings.size(); i++) a.Set(static_cast<uint32_t>(i), c->warnings[i]);
  return a;
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Capture* c = GetHandle(info, false);
  if (c == nullptr) return info.Env().Undefined();
  if (c->p != nullptr) {
    pcap_close(c->p);
    c->p = nullptr;
    c->fd = -1;
  }
  c->stash.clear();
  return info.Env().Undefined();
}

// Compiles `filter` for link type `lt` on a dead handle (no interface). On
// success the caller owns both: pcap_freecode(prog), then pcap_close(). On
// failure nullptr, with a JS exception pending and nothing left to free.
pcap_t* CompileOffline(Napi::Env env, const std::string& filter, int lt, int snaplen, struct bpf_program* prog) {
  pcap_t* p = pcap_open_dead(LinktypeToDlt(lt), snaplen);
  if (p == nullptr) {
    Throw(env, "libpcap cannot compile filters for link type " + std::to_string(lt), "EFILTER");
    return nullptr;
  }
  if (pcap_compile(p, prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    const std::string why = pcap_geterr(p);
    pcap_close(p);
    Throw(env, "invalid capture filter \"" + filter + "\": " + why, "EFILTER");
    return nullptr;
  }
  return p;
}

// compileFilter(filter, linkType, snaplen) checks a filter without opening
// an interface, so it needs no privileges.
Napi::Value CompileFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    return ThrowType(env, "compileFilter(filter: string, linkType: number, snaplen?: number)");
  }
  const std::string filter = info[0].As<Napi::String>().Utf8Value();
  const int lt = info[1].As<Napi::Number>().Int32Value();
  int snaplen = kMaxSnaplen;
  if (info.Length() >= 3 && info[2].IsNumber()) snaplen = info[2].As<Napi::Number>().Int32Value();
  struct bpf_program prog;
  pcap_t* p = CompileOffline(env, filter, lt, snaplen, &prog);
  if (p == nullptr) return env.Undefined();
  const uint32_t insns = prog.bf_len;
  pcap_freecode(&prog);
  pcap_close(p);
  return Napi::Number::New(env, insns);
}

// filterMatches(filter, linkType, packets: Buffer[]) -> boolean[]: runs the
// compiled filter over given frames, so what a filter keeps can be checked
// on hand-made packets (fragments, 802.1Q, IPv6) without a live interface.
Napi::Value FilterMatches(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsArray()) {
    return ThrowType(env, "filterMatches(filter: string, linkType: number, packets: Buffer[])");
  }
  const std::string filter = info[0].As<Napi::String>().Utf8Value();
  const int lt = info[1].As<Napi::Number>().Int32Value();
  Napi::Array packets = info[2].As<Napi::Array>();
  struct bpf_program prog;
  pcap_t* p = CompileOffline(env, filter, lt, kMaxSnaplen, &prog);
  if (p == nullptr) return env.Undefined();
  Napi::Array out = Napi::Array::New(env, packets.Length());
  for (uint32_t i = 0; i < packets.Length(); i++) {
    Napi::Value v = packets.Get(i);
    if (env.IsExceptionPending() || !v.IsBuffer()) {
      pcap_freecode(&prog);
      pcap_close(p);
      if (env.IsExceptionPending()) return env.Undefined();
      return ThrowType(env, "filterMatches(): packets must be Buffers");
    }
    auto b = v.As<Napi::Buffer<uint8_t>>();
    struct pcap_pkthdr h;
    memset(&h, 0, sizeof h);
    h.caplen = static_cast<bpf_u_int32>(b.Length());
    h.len = h.caplen;
    out.Set(i, Napi::Boolean::New(env, pcap_offline_filter(&prog, &h, b.Data()) != 0));
  }
  pcap_freecode(&prog);
  pcap_close(p);
  return out;
}

Napi::Value LibVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), pcap_lib_version());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("read", Napi::Function::New(env, Read, "read"));
  exports.Set("stats", Napi::Function::New(env, Stats, "stats"));
  exports.Set("linkType", Napi::Function::New(env, LinkType, "linkType"));
  exports.Set("linkTypeName", Napi::Function::New(env, LinkTypeName, "linkTypeName"));
  exports.Set("precision", Napi::Function::New(env, Precision, "precision"));
  exports.Set("snaplen", Napi::Function::New(env, Snaplen, "snaplen"));
  exports.Set("warnings", Napi::Function::New(env, Warnings, "warnings"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("compileFilter", Napi::Function::New(env, CompileFilter, "compileFilter"));
  exports.Set("filterMatches", Napi::Function::New(env, FilterMatches, "filterMatches"));
  exports.Set("libVersion", Napi::Function::New(env, LibVersion, "libVersion"));
  return exports;
}

}  // namespace

NODE_API_MODULE(tfcapture, Init)
