// A sanitizer fuzz of the seal's dialog blocks (seal-deflate.cc SealDialogs, what deflateDialogs runs), outside Node:
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -DTF_LIBDEFLATE \
//     -o /tmp/tfseal-fuzz agent/index/native/fuzz-seal.cc -l:libdeflate.a -lz
//   /tmp/tfseal-fuzz 20000
// (without -DTF_LIBDEFLATE and -l:libdeflate.a: the zlib build). Arenas of random chunks, each in a heap block of
// exactly its size, with record indexes mostly right and sometimes wrong anywhere (chunk, start, length, prefix,
// order past count, ends decreasing or past order); every array in a heap block of exactly its length. Each run
// must fail exactly when some record or dialog it reaches is wrong, and otherwise inflate (zlib) to the blocks
// assembled here independently. Not built by node-gyp.
#define TFINDEX_STANDALONE 1
#include "seal-deflate.cc"

#include <zlib.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>

namespace {

std::mt19937_64 rng(20261205);
size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); }
bool Chance(int percent) { return Below(100) < static_cast<size_t>(percent); }

template <typename T>
std::unique_ptr<T[]> Exact(size_t n) {
  return std::unique_ptr<T[]>(new T[n == 0 ? 0 : n]);
}

void Put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int i = 0; i < 4; i++) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}

}  // namespace

int main(int argc, char** argv) {
  const long runs = argc > 1 ? std::atol(argv[1]) : 20000;
  long ok = 0, refused = 0, blocks = 0, records = 0;
  for (long r = 0; r < runs; r++) {
    tfseal::Arena a;
    // Most runs all right (the arena's own indexes); the others with a wrong index somewhere, rarely early.
    const bool faulty = Chance(40);
    const int fault = faulty ? 1 : 0;
    const size_t nChunks = Below(5);
    std::vector<std::unique_ptr<uint8_t[]>> chunkMem;
    for (size_t c = 0; c < nChunks; c++) {
      const size_t len = Below(Chance(10) ? 70000 : 3000);
      chunkMem.push_back(Exact<uint8_t>(len));
      const bool repetitive = Chance(50);
      for (size_t k = 0; k < len; k++) chunkMem.back()[k] = repetitive ? static_cast<uint8_t>('A' + k % 13) : static_cast<uint8_t>(rng());
      a.chunks.push_back({chunkMem.back().get(), len});
    }
    const uint32_t count = static_cast<uint32_t>(nChunks == 0 && !faulty ? 0 : Below(200));
    auto chunkOf = Exact<uint32_t>(count), startOf = Exact<uint32_t>(count), lenOf = Exact<uint32_t>(count);
    a.skip = static_cast<uint32_t>(Below(9));
    std::vector<bool> valid(count);
    for (uint32_t i = 0; i < count; i++) {
      if (nChunks > 0 && !Chance(3 * fault)) {
        const size_t c = Below(nChunks);
        const size_t len = a.chunks[c].len;
        const size_t start = Below(len + 1);
        chunkOf[i] = static_cast<uint32_t>(c);
        startOf[i] = static_cast<uint32_t>(start);
        lenOf[i] = static_cast<uint32_t>(std::min(len - start, a.skip + Below(400)));
      } else {
        chunkOf[i] = static_cast<uint32_t>(Chance(50) ? Below(nChunks + 2) : rng());
        startOf[i] = static_cast<uint32_t>(Chance(50) ? Below(4000) : rng());
        lenOf[i] = static_cast<uint32_t>(Chance(50) ? Below(4000) : rng());
      }
      valid[i] = chunkOf[i] < nChunks && lenOf[i] >= a.skip && static_cast<size_t>(startOf[i]) + lenOf[i] <= a.chunks[chunkOf[i]].len;
    }
    a.chunkOf = chunkOf.get();
    a.startOf = startOf.get();
    a.lenOf = lenOf.get();
    a.count = count;
    const size_t orderLen = count == 0 && !faulty ? 0 : Below(300);
    auto order = Exact<uint32_t>(orderLen);
    for (size_t k = 0; k < orderLen; k++) order[k] = static_cast<uint32_t>(Chance(fault) ? rng() : Below(count + (Chance(fault) ? 3 : 0)));
    const size_t dialogs = Below(100);
    auto ends = Exact<uint32_t>(dialogs);
    for (size_t d = 0, at = 0; d < dialogs; d++) {
      at = std::min(orderLen, at + Below(8));
      ends[d] = static_cast<uint32_t>(Chance(fault) ? Below(orderLen + 5) : at);
    }
    const size_t perBlock = 1 + Below(40);
    const size_t nBlocks = (dialogs + perBlock - 1) / perBlock;
    auto blockEnds = Exact<uint32_t>(nBlocks);

    // What the blocks must be, and whether the walk must stop at a wrong index first.
    std::vector<std::vector<uint8_t>> want;
    bool wantFail = false;
    for (size_t b = 0, from = 0; b < nBlocks && !wantFail; b++) {
      std::vector<uint8_t> blk;
      for (size_t d = b * perBlock; d < std::min(dialogs, (b + 1) * perBlock) && !wantFail; d++) {
        const size_t to = ends[d];
        if (to < from || to > orderLen) {
          wantFail = true;
          break;
        }
        Put32(blk, static_cast<uint32_t>(to - from));
        for (size_t k = from; k < to; k++) {
          const uint32_t i = order[k];
          if (i >= count || !valid[i]) {
            wantFail = true;
            break;
          }
          Put32(blk, lenOf[i] - a.skip);
          const uint8_t* p = a.chunks[chunkOf[i]].data + startOf[i] + a.skip;
          blk.insert(blk.end(), p, p + (lenOf[i] - a.skip));
          records++;
        }
        from = to;
      }
      want.push_back(std::move(blk));
    }

    std::vector<uint8_t> all;
    const tfseal::SealError e = tfseal::SealDialogs(a, order.get(), orderLen, ends.get(), dialogs, perBlock, blockEnds.get(), all);
    if ((e.what != nullptr) != wantFail || (e.what != nullptr && !e.range)) {
      std::fprintf(stderr, "run %ld: %s, expected %s\n", r, e.what ? e.what : "success", wantFail ? "a refusal" : "success");
      return 1;
    }
    if (wantFail) {
      refused++;
      continue;
    }
    size_t at = 0;
    for (size_t b = 0; b < nBlocks; b++) {
      if (blockEnds[b] < at || blockEnds[b] > all.size()) {
        std::fprintf(stderr, "run %ld: block %zu ends at %u\n", r, b, blockEnds[b]);
        return 1;
      }
      std::vector<uint8_t> got(want[b].size() + 1);
      z_stream z{};
      inflateInit2(&z, -15);
      z.next_in = all.data() + at;
      z.avail_in = static_cast<uInt>(blockEnds[b] - at);
      z.next_out = got.data();
      z.avail_out = static_cast<uInt>(got.size());
      const int rc = inflate(&z, Z_FINISH);
      const size_t n = z.total_out;
      inflateEnd(&z);
      if (rc != Z_STREAM_END || n != want[b].size() || std::memcmp(got.data(), want[b].data(), n) != 0) {
        std::fprintf(stderr, "run %ld: block %zu inflates to other bytes (rc %d, %zu of %zu)\n", r, b, rc, n, want[b].size());
        return 1;
      }
      at = blockEnds[b];
      blocks++;
    }
    if (at != all.size()) {
      std::fprintf(stderr, "run %ld: %zu bytes after the last block\n", r, all.size() - at);
      return 1;
    }
    ok++;
  }
  std::printf("%ld runs: %ld sealed (%ld blocks, %ld records), %ld refused\n", runs, ok, blocks, records, refused);
  return 0;
}
