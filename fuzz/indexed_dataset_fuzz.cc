// Megatron indexed datasets (src/data/indexed_dataset.h): IndexedDataset's validation of the
// .idx against the .bin, every accessor, then the loader's packing (PackedDataset) and a
// shuffled blend (BlendedSource) over the same files, as training reads them.
// Input: a u32 (little-endian) n, then n bytes of .idx, then the .bin; fewer than 4 bytes or an n
// past the end means the whole rest is the .idx and the .bin is empty. scripts/fuzz-seeds.sh
// packs real datasets this way.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/indexed_dataset.h"
#include "data/loader.h"
#include "fuzz_util.h"

namespace {

template <typename T>
void read_typed(const sy::IndexedDataset& ds, int64_t i) {
  const std::vector<T> v = ds.sequence<T>(i);
  SY_FUZZ_ASSERT(static_cast<int64_t>(v.size()) == ds.sequence_length(i), "sequence %lld",
                 static_cast<long long>(i));
}

void exercise(const std::string& prefix) {
  const sy::IndexedDataset ds(prefix);
  int64_t tokens = 0;
  const int64_t n = std::min<int64_t>(ds.num_sequences(), 512);
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<int32_t> t = ds.read(i);
    tokens += static_cast<int64_t>(t.size());
    switch (ds.dtype()) {
      case sy::TokenDtype::kU8:
        read_typed<uint8_t>(ds, i);
        break;
      case sy::TokenDtype::kI8:
        read_typed<int8_t>(ds, i);
        break;
      case sy::TokenDtype::kI16:
        read_typed<int16_t>(ds, i);
        break;
      case sy::TokenDtype::kI32:
        read_typed<int32_t>(ds, i);
        break;
      case sy::TokenDtype::kI64:
        read_typed<int64_t>(ds, i);
        break;
      case sy::TokenDtype::kU16:
        read_typed<uint16_t>(ds, i);
        break;
      default:
        SY_FUZZ_ASSERT(false, "validated a non-integer dtype %d", static_cast<int>(ds.dtype()));
    }
  }
  SY_FUZZ_ASSERT(n < ds.num_sequences() || tokens == ds.num_tokens(),
                 "sequence lengths sum to %lld, num_tokens() is %lld",
                 static_cast<long long>(tokens), static_cast<long long>(ds.num_tokens()));
  for (int64_t d = 0; d < std::min<int64_t>(ds.num_documents(), 512); ++d) {
    const auto [first, last] = ds.document_range(d);
    SY_FUZZ_ASSERT(0 <= first && first <= last && last <= ds.num_sequences(), "document %lld",
                   static_cast<long long>(d));
  }
}

void exercise_loader(const std::string& prefix) {
  constexpr int64_t kSeqLen = 3, kVocab = 1 << 16;
  const sy::PackedDataset packed(prefix, kSeqLen, /*eos_id=*/0, kVocab);
  std::vector<int32_t> sample(kSeqLen + 1);
  for (int64_t i = 0; i < std::min<int64_t>(packed.num_samples(), 64); ++i) {
    packed.sample(i, sample.data());
    for (int32_t t : sample) SY_FUZZ_ASSERT(t >= 0 && t < kVocab, "token %d", t);
  }
  sy::LoaderOptions o;
  o.seq_len = kSeqLen;
  o.micro_batch = 2;
  o.vocab_size = kVocab;
  o.eos_id = 0;
  o.seed = 7;
  o.composition = sy::Composition::kDomainPure;
  sy::BlendedSource blend({sy::BlendEntry{1.0, prefix, "fuzz"}}, o);
  std::vector<int32_t> tokens(2 * (kSeqLen + 1)), domains(2);
  for (int k = 0; k < 8; ++k) blend.next(tokens.data(), domains.data(), 2);
  blend.set_position(blend.sequences_per_epoch() * 3 + 2);
  blend.next(tokens.data(), domains.data(), 2);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string prefix = sy::fuzz::scratch_dir() + "/dataset";
  size_t idx_size = size;
  size_t at = 0;
  if (size >= 4) {
    uint32_t n = 0;
    std::memcpy(&n, data, 4);
    at = 4;
    idx_size = std::min<size_t>(n, size - 4);
  }
  sy::fuzz::write_file(prefix + ".idx", data + at, idx_size);
  sy::fuzz::write_file(prefix + ".bin", data + at + idx_size, size - at - idx_size);
  try {
    exercise(prefix);
  } catch (const sy::Error&) {
    return 0;
  }
  try {
    exercise_loader(prefix);
  } catch (const sy::Error&) {
  }
  return 0;
}
