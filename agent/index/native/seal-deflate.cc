// The sealed index's dialog blocks, raw-deflated (agent/index/builder.ts seal()).
//
// With libdeflate (Debian's libdeflate-dev, linked statically: binding.gyp finds it) a block is compressed by
// libdeflate at level 1: about 2.2 times faster than zlib's level 1 on the bench capture's blocks (42 against
// 95 ms a 64 MiB segment, most of the seal's CPU) and a little smaller. Its output is a plain raw deflate
// stream, which every reader (node:zlib's inflateRawSync, this build's and older ones) inflates to the same
// block; only the compressed bytes differ from zlib's (format.ts, FOOTER_FLAG.DIALOG_BLOCKS).
//
// Without it, zlib's level 1, the bytes zlib.deflateRawSync(block, { level: 1 }) gives, from one z_stream a
// thread that is reset between blocks rather than made and freed a block (deflateRawSync's set-up zeroes its
// window and tables, about 200 KiB a block). deflateReset is documented as deflateEnd followed by deflateInit
// with the same parameters, so the output is the same; the zlib is Node's own (its headers and exported
// symbols), as node:zlib's is.
#include <napi.h>
#include <cstdint>
#include <vector>
#ifdef TF_LIBDEFLATE
#include <libdeflate.h>
#else
#include <zlib.h>
#endif

namespace {

constexpr int LEVEL = 1;
constexpr size_t KEEP_OUT = 4u << 20;

#ifdef TF_LIBDEFLATE
struct Stream {
  libdeflate_compressor* c = nullptr;
  std::vector<uint8_t> out;
  ~Stream() {
    if (c != nullptr) libdeflate_free_compressor(c);
  }
};
#else
// Node's defaults for deflateRawSync: windowBits 15 (raw: -15), memLevel 8, the default strategy.
constexpr int WINDOW_BITS = -15;
constexpr int MEM_LEVEL = 8;

struct Stream {
  z_stream z{};
  bool ready = false;
  std::vector<uint8_t> out;
  ~Stream() {
    if (ready) deflateEnd(&z);
  }
};
#endif

// One a thread: the indexer's threads (live, import pool) each load the addon and seal on their own.
thread_local Stream stream;

#ifdef TF_LIBDEFLATE
// The compressed length, or 0 after throwing.
size_t Compress(Napi::Env env, Stream& s, const uint8_t* in, size_t len) {
  if (s.c == nullptr) {
    s.c = libdeflate_alloc_compressor(LEVEL);
    if (s.c == nullptr) {
      Napi::Error::New(env, "deflateBlock(): libdeflate could not allocate a compressor").ThrowAsJavaScriptException();
      return 0;
    }
  }
  const size_t bound = libdeflate_deflate_compress_bound(s.c, len);
  if (s.out.size() < bound) s.out.resize(bound);
  // The bound is room for any input, so 0 (no room) cannot happen; it is still an error, never an empty block.
  const size_t n = libdeflate_deflate_compress(s.c, in, len, s.out.data(), s.out.size());
  if (n == 0) Napi::Error::New(env, "deflateBlock(): libdeflate did not finish the block").ThrowAsJavaScriptException();
  return n;
}
#else
size_t Compress(Napi::Env env, Stream& s, const uint8_t* in, size_t len) {
  if (!s.ready) {
    if (deflateInit2(&s.z, LEVEL, Z_DEFLATED, WINDOW_BITS, MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
      Napi::Error::New(env, "deflateBlock(): zlib could not set up a stream").ThrowAsJavaScriptException();
      return 0;
    }
    s.ready = true;
  } else if (deflateReset(&s.z) != Z_OK) {
    Napi::Error::New(env, "deflateBlock(): zlib could not reset its stream").ThrowAsJavaScriptException();
    return 0;
  }
  const uLong bound = deflateBound(&s.z, static_cast<uLong>(len));
  if (s.out.size() < bound) s.out.resize(bound);
  s.z.next_in = const_cast<Bytef*>(in);
  s.z.avail_in = static_cast<uInt>(len);
  s.z.next_out = s.out.data();
  s.z.avail_out = static_cast<uInt>(s.out.size());
  // deflateBound's room takes the whole block in one call with Z_FINISH.
  if (deflate(&s.z, Z_FINISH) != Z_STREAM_END) {
    // A stream left mid-way is set up afresh next time.
    deflateEnd(&s.z);
    s.ready = false;
    Napi::Error::New(env, "deflateBlock(): zlib did not finish the block").ThrowAsJavaScriptException();
    return 0;
  }
  return s.z.total_out;
}
#endif

}  // namespace

// deflateBlock(block: Uint8Array) -> Buffer: the block raw-deflated at level 1 (libdeflate's, else zlib's).
Napi::Value DeflateBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "deflateBlock(block: Uint8Array)").ThrowAsJavaScriptException();
    return env.Null();
  }
  auto in = info[0].As<Napi::Uint8Array>();
  // zlib counts in uInt: blocks are a few hundred KiB, anything near 4 GiB is refused (by both builds alike).
  if (in.ElementLength() > 0x7fffffffu) {
    Napi::RangeError::New(env, "deflateBlock(): block over 2 GiB").ThrowAsJavaScriptException();
    return env.Null();
  }
  Stream& s = stream;
  const size_t n = Compress(env, s, in.Data(), in.ElementLength());
  if (n == 0) return env.Null();
  Napi::Value result = Napi::Buffer<uint8_t>::Copy(env, s.out.data(), n);
  // A block is a few hundred KiB; one of a dialog with very many messages is not kept room for afterwards.
  if (s.out.size() > KEEP_OUT) std::vector<uint8_t>().swap(s.out);
  return result;
}

// deflateKind() -> "libdeflate" | "zlib": which one this build compresses with (tests, bench).
Napi::Value DeflateKind(const Napi::CallbackInfo& info) {
#ifdef TF_LIBDEFLATE
  return Napi::String::New(info.Env(), "libdeflate");
#else
  return Napi::String::New(info.Env(), "zlib");
#endif
}
