// Helper for tests/python/megatron_idx.py, which checks our Megatron indexed datasets against an
// independent numpy implementation of the MMIDIDX format.
//   sy_indexed_dataset_xcheck write <prefix> uint16|int32   writes the reference dataset below
//   sy_indexed_dataset_xcheck check <prefix> uint16|int32   exit 0 iff it holds the reference
// The reference (computed identically in the Python script): 5 documents; document d has
// 1 + d % 3 sequences; sequence s of document d has (3 d + 5 s) % 8 tokens (so some are empty);
// token t is (1009 d + 101 s + 13 t) for uint16 and that times 100003 for int32.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/indexed_dataset.h"

namespace {

using Doc = std::vector<std::vector<int32_t>>;

std::vector<Doc> reference(bool wide) {
  std::vector<Doc> docs(5);
  for (int d = 0; d < 5; ++d) {
    for (int s = 0; s < 1 + d % 3; ++s) {
      std::vector<int32_t> seq;
      for (int t = 0; t < (3 * d + 5 * s) % 8; ++t) {
        const int64_t v = 1009 * d + 101 * s + 13 * t;
        seq.push_back(static_cast<int32_t>(wide ? v * 100003 : v));
      }
      docs[static_cast<size_t>(d)].push_back(seq);
    }
  }
  return docs;
}

int run(int argc, char** argv) {
  if (argc != 4 || (std::strcmp(argv[1], "write") != 0 && std::strcmp(argv[1], "check") != 0) ||
      (std::strcmp(argv[3], "uint16") != 0 && std::strcmp(argv[3], "int32") != 0)) {
    std::fprintf(stderr, "usage: %s write|check <prefix> uint16|int32\n", argv[0]);
    return 2;
  }
  const std::string prefix = argv[2];
  const bool wide = std::strcmp(argv[3], "int32") == 0;
  const auto docs = reference(wide);
  const sy::TokenDtype dtype = wide ? sy::TokenDtype::kI32 : sy::TokenDtype::kU16;
  if (std::strcmp(argv[1], "write") == 0) {
    sy::IndexedDatasetWriter w(prefix, dtype);
    for (const auto& doc : docs) {
      for (const auto& seq : doc) w.add_sequence(seq);
      w.end_document();
    }
    w.finalize();
    return 0;
  }
  const sy::IndexedDataset ds(prefix);
  bool ok = ds.dtype() == dtype && ds.num_documents() == static_cast<int64_t>(docs.size());
  for (int64_t d = 0; ok && d < ds.num_documents(); ++d) {
    const auto [first, last] = ds.document_range(d);
    const auto& doc = docs[static_cast<size_t>(d)];
    ok = last - first == static_cast<int64_t>(doc.size());
    for (int64_t s = first; ok && s < last; ++s)
      ok = ds.read(s) == doc[static_cast<size_t>(s - first)];
  }
  if (!ok) std::fprintf(stderr, "%s: contents differ from the reference\n", prefix.c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const sy::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
