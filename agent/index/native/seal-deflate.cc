// The sealed index's dialog blocks, deflated (agent/index/builder.ts seal()): the bytes that
// zlib.deflateRawSync(block, { level: 1 }) gives, from one z_stream a thread that is reset between
// blocks rather than made and freed a block. deflateRawSync sets a stream up each call, and zlib's
// set-up zeroes its window and tables (about 200 KiB a block, 2% of the live indexer's instructions).
// deflateReset is documented as deflateEnd followed by deflateInit with the same parameters, so the
// output is the same; the zlib is Node's own (its headers and exported symbols), as node:zlib's is.
#include <napi.h>
#include <zlib.h>
#include <cstdint>
#include <vector>

namespace {

// Node's defaults for deflateRawSync: windowBits 15 (raw: -15), memLevel 8, the default strategy.
constexpr int LEVEL = 1;
constexpr int WINDOW_BITS = -15;
constexpr int MEM_LEVEL = 8;
constexpr size_t KEEP_OUT = 4u << 20;

struct Stream {
  z_stream z{};
  bool ready = false;
  std::vector<uint8_t> out;
  ~Stream() {
    if (ready) deflateEnd(&z);
  }
};

// One a thread: the indexer's threads (live, import pool) each load the addon and seal on their own.
thread_local Stream stream;

}  // namespace

// deflateBlock(block: Uint8Array) -> Buffer: raw deflate at level 1, as deflateRawSync(block, { level: 1 }).
Napi::Value DeflateBlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "deflateBlock(block: Uint8Array)").ThrowAsJavaScriptException();
    return env.Null();
  }
  auto in = info[0].As<Napi::Uint8Array>();
  // z_stream counts in uInt: blocks are a few hundred KiB, anything near 4 GiB is refused.
  if (in.ElementLength() > 0x7fffffffu) {
    Napi::RangeError::New(env, "deflateBlock(): block over 2 GiB").ThrowAsJavaScriptException();
    return env.Null();
  }
  Stream& s = stream;
  if (!s.ready) {
    if (deflateInit2(&s.z, LEVEL, Z_DEFLATED, WINDOW_BITS, MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
      Napi::Error::New(env, "deflateBlock(): zlib could not set up a stream").ThrowAsJavaScriptException();
      return env.Null();
    }
    s.ready = true;
  } else if (deflateReset(&s.z) != Z_OK) {
    Napi::Error::New(env, "deflateBlock(): zlib could not reset its stream").ThrowAsJavaScriptException();
    return env.Null();
  }
  const uLong bound = deflateBound(&s.z, static_cast<uLong>(in.ElementLength()));
  if (s.out.size() < bound) s.out.resize(bound);
  s.z.next_in = const_cast<Bytef*>(in.Data());
  s.z.avail_in = static_cast<uInt>(in.ElementLength());
  s.z.next_out = s.out.data();
  s.z.avail_out = static_cast<uInt>(s.out.size());
  // deflateBound's room takes the whole block in one call with Z_FINISH.
  const int rc = deflate(&s.z, Z_FINISH);
  if (rc != Z_STREAM_END) {
    // A stream left mid-way is set up afresh next time.
    deflateEnd(&s.z);
    s.ready = false;
    Napi::Error::New(env, "deflateBlock(): zlib did not finish the block").ThrowAsJavaScriptException();
    return env.Null();
  }
  Napi::Value result = Napi::Buffer<uint8_t>::Copy(env, s.out.data(), s.z.total_out);
  // A block is a few hundred KiB; one of a dialog with very many messages is not kept room for afterwards.
  if (s.out.size() > KEEP_OUT) std::vector<uint8_t>().swap(s.out);
  return result;
}
