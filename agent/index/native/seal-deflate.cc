// The sealed index's dialog blocks, assembled from the message arena and raw-deflated (agent/index/builder.ts seal(),
// MessageArena.dialogSection).
//
// With libdeflate (Debian's libdeflate-dev, linked statically: binding.gyp finds it) a block is compressed by
// libdeflate at level 1: about twice as fast as Node's zlib at level 1 on a 64 MiB bench segment's blocks, in the
// seal (45-49 against 90-97 ms CPU), the index the same size to 0.02%. Its output is a plain raw deflate
// stream, which every reader (node:zlib's inflateRawSync, this build's and older ones) inflates to the same
// block; only the compressed bytes differ from zlib's (format.ts, FOOTER_FLAG.DIALOG_BLOCKS).
//
// Without it, zlib's level 1 (Node's own zlib, its headers and exported symbols, as node:zlib's is): the bytes
// zlib.deflateRawSync(block, { level: 1 }) gives.
#ifndef TFINDEX_STANDALONE
#include <napi.h>
#endif
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>
#ifdef TF_LIBDEFLATE
#include <libdeflate.h>
#else
#include <zlib.h>
#endif

namespace tfseal {

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

// The compressed length in s.out, or 0 with *err set.
size_t Compress(Stream& s, const uint8_t* in, size_t len, const char** err) {
  if (s.c == nullptr) {
    s.c = libdeflate_alloc_compressor(LEVEL);
    if (s.c == nullptr) {
      *err = "libdeflate could not allocate a compressor";
      return 0;
    }
  }
  const size_t bound = libdeflate_deflate_compress_bound(s.c, len);
  if (s.out.size() < bound) s.out.resize(bound);
  // The bound is room for any input, so 0 (no room) cannot happen; it is still an error, never an empty block.
  const size_t n = libdeflate_deflate_compress(s.c, in, len, s.out.data(), s.out.size());
  if (n == 0) *err = "libdeflate did not finish the block";
  return n;
}
#else
// Node's defaults for deflateRawSync: windowBits 15 (raw: -15), memLevel 8, the default strategy.
constexpr int WINDOW_BITS = -15;
constexpr int MEM_LEVEL = 8;

struct Stream {
  std::vector<uint8_t> out;
};

size_t Compress(Stream& s, const uint8_t* in, size_t len, const char** err) {
  // A stream of its own a block, as deflateRawSync's: one reused through deflateReset gave other bytes for about 1
  // block in 70 (some state survives the reset: apparently the window Node's zlib matches into), so a segment's sealed
  // bytes depended on what the thread had sealed before.
  z_stream z{};
  if (deflateInit2(&z, LEVEL, Z_DEFLATED, WINDOW_BITS, MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
    *err = "zlib could not set up a stream";
    return 0;
  }
  const uLong bound = deflateBound(&z, static_cast<uLong>(len));
  if (s.out.size() < bound) s.out.resize(bound);
  z.next_in = const_cast<Bytef*>(in);
  z.avail_in = static_cast<uInt>(len);
  z.next_out = s.out.data();
  z.avail_out = static_cast<uInt>(s.out.size());
  // deflateBound's room takes the whole block in one call with Z_FINISH.
  const int rc = deflate(&z, Z_FINISH);
  const size_t n = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    *err = "zlib did not finish the block";
    return 0;
  }
  return n;
}
#endif

// One a thread: the indexer's threads (live, import pool) each load the addon and seal on their own.
thread_local Stream stream;

struct Bytes {
  const uint8_t* data;
  size_t len;
};

// The message arena's records: record i is chunks[chunkOf[i]][startOf[i] + skip, startOf[i] + lenOf[i]), i < count.
struct Arena {
  std::vector<Bytes> chunks;
  const uint32_t* chunkOf;
  const uint32_t* startOf;
  const uint32_t* lenOf;
  uint32_t count;
  uint32_t skip;
};

struct SealError {
  const char* what;
  bool range;  // a wrong index or size (RangeError), else the compressor failed
};

// The DIALOGS section's blocks (format.ts): dialog d's messages are order[ends[d - 1], ends[d]) (ends[-1] = 0); each
// block of perBlock dialogs is, per dialog, u32 its message count, then per message u32 the record's length and the
// record, raw-deflated at level 1. The blocks go back to back into `all`; blockEnds[b] (nBlocks slots) gets where
// block b ends. Every index is checked against the arena and order before it is read.
SealError SealDialogs(const Arena& a, const uint32_t* ord, size_t orderLen, const uint32_t* en, size_t dialogs, size_t perBlock,
                      uint32_t* blockEnds, std::vector<uint8_t>& all) {
  Stream& s = stream;
  std::vector<uint8_t> block;
  auto put32 = [&](uint32_t v) {
    uint8_t b[4] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v >> 16), static_cast<uint8_t>(v >> 24)};
    block.insert(block.end(), b, b + 4);
  };
  const size_t nBlocks = (dialogs + perBlock - 1) / perBlock;
  size_t from = 0;  // into order
  for (size_t b = 0; b < nBlocks; b++) {
    block.clear();
    const size_t dEnd = std::min(dialogs, (b + 1) * perBlock);
    for (size_t d = b * perBlock; d < dEnd; d++) {
      const size_t to = en[d];
      if (to < from || to > orderLen) return {"ends are not increasing within order", true};
      put32(static_cast<uint32_t>(to - from));
      for (size_t k = from; k < to; k++) {
        const uint32_t i = ord[k];
        if (i >= a.count) return {"order names a record past count", true};
        const uint32_t c = a.chunkOf[i];
        if (c >= a.chunks.size() || a.lenOf[i] < a.skip || static_cast<size_t>(a.startOf[i]) + a.lenOf[i] > a.chunks[c].len)
          return {"a record lies outside its chunk", true};
        const uint8_t* rec = a.chunks[c].data + a.startOf[i] + a.skip;
        const uint32_t len = a.lenOf[i] - a.skip;
        put32(len);
        block.insert(block.end(), rec, rec + len);
      }
      from = to;
    }
    // zlib counts in uInt: refused alike by both builds.
    if (block.size() > 0x7fffffffu) return {"block over 2 GiB", true};
    const char* err = nullptr;
    const size_t n = Compress(s, block.data(), block.size(), &err);
    if (n == 0) return {err, false};
    if (all.size() + n > 0xffffffffu) return {"dialog blocks over 4 GiB", true};
    all.insert(all.end(), s.out.data(), s.out.data() + n);
    blockEnds[b] = static_cast<uint32_t>(all.size());
  }
  // A block is a few hundred KiB; one of a dialog with very many messages is not kept room for afterwards.
  if (s.out.size() > KEEP_OUT) std::vector<uint8_t>().swap(s.out);
  return {nullptr, false};
}

}  // namespace tfseal

#ifndef TFINDEX_STANDALONE
namespace {

bool IsU32(const Napi::Value& v) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint32_array;
}

}  // namespace

// deflateDialogs(chunks: Uint8Array[], chunkOf, startOf, lenOf: Uint32Array, count, skip, order, ends: Uint32Array,
//   perBlock, blockEnds: Uint32Array) -> Buffer
// The DIALOGS section's blocks from the message arena's records (SealDialogs), assembled and compressed here rather
// than copied record by record into a JS buffer (Buffer.copy's checks were a call each message). A wrong index
// throws a RangeError, never reads outside the arena.
Napi::Value DeflateDialogs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage =
      "deflateDialogs(chunks: Uint8Array[], chunkOf: Uint32Array, startOf: Uint32Array, lenOf: Uint32Array, count: number, "
      "skip: number, order: Uint32Array, ends: Uint32Array, perBlock: number, blockEnds: Uint32Array)";
  if (info.Length() < 10 || !info[0].IsArray() || !IsU32(info[1]) || !IsU32(info[2]) || !IsU32(info[3]) || !info[4].IsNumber() ||
      !info[5].IsNumber() || !IsU32(info[6]) || !IsU32(info[7]) || !info[8].IsNumber() || !IsU32(info[9])) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Null();
  }
  auto range = [&](const char* what) {
    Napi::RangeError::New(env, std::string("deflateDialogs(): ") + what).ThrowAsJavaScriptException();
    return env.Null();
  };
  tfseal::Arena a;
  Napi::Array chunkArr = info[0].As<Napi::Array>();
  a.chunks.resize(chunkArr.Length());
  for (uint32_t c = 0; c < a.chunks.size(); c++) {
    Napi::Value v = chunkArr.Get(c);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) return range("a chunk is not a Uint8Array");
    auto u = v.As<Napi::Uint8Array>();
    a.chunks[c] = {u.Data(), u.ElementLength()};
  }
  auto chunkOf = info[1].As<Napi::Uint32Array>();
  auto startOf = info[2].As<Napi::Uint32Array>();
  auto lenOf = info[3].As<Napi::Uint32Array>();
  const double countD = info[4].As<Napi::Number>().DoubleValue();
  const double skipD = info[5].As<Napi::Number>().DoubleValue();
  auto order = info[6].As<Napi::Uint32Array>();
  auto ends = info[7].As<Napi::Uint32Array>();
  const double perBlockD = info[8].As<Napi::Number>().DoubleValue();
  auto blockEnds = info[9].As<Napi::Uint32Array>();
  if (!(countD >= 0) || countD > chunkOf.ElementLength() || countD > startOf.ElementLength() || countD > lenOf.ElementLength() ||
      countD != static_cast<double>(static_cast<uint32_t>(countD)))
    return range("count is not a record count of the arena's arrays");
  if (!(skipD >= 0 && skipD <= 64) || skipD != static_cast<double>(static_cast<uint32_t>(skipD))) return range("skip out of range");
  if (!(perBlockD >= 1 && perBlockD <= 65536) || perBlockD != static_cast<double>(static_cast<uint32_t>(perBlockD)))
    return range("perBlock out of range");
  a.chunkOf = chunkOf.Data();
  a.startOf = startOf.Data();
  a.lenOf = lenOf.Data();
  a.count = static_cast<uint32_t>(countD);
  a.skip = static_cast<uint32_t>(skipD);
  const size_t perBlock = static_cast<size_t>(perBlockD);
  const size_t dialogs = ends.ElementLength();
  if (blockEnds.ElementLength() != (dialogs + perBlock - 1) / perBlock) return range("blockEnds is not one slot a block");
  std::vector<uint8_t> all;
  const tfseal::SealError e = tfseal::SealDialogs(a, order.Data(), order.ElementLength(), ends.Data(), dialogs, perBlock, blockEnds.Data(), all);
  if (e.what != nullptr) {
    if (e.range) return range(e.what);
    Napi::Error::New(env, std::string("deflateDialogs(): ") + e.what).ThrowAsJavaScriptException();
    return env.Null();
  }
  return Napi::Buffer<uint8_t>::Copy(env, all.data(), all.size());
}

// deflateKind() -> "libdeflate" | "zlib": which one this build compresses with (tests, setup.sh).
Napi::Value DeflateKind(const Napi::CallbackInfo& info) {
#ifdef TF_LIBDEFLATE
  return Napi::String::New(info.Env(), "libdeflate");
#else
  return Napi::String::New(info.Env(), "zlib");
#endif
}
#endif  // TFINDEX_STANDALONE
