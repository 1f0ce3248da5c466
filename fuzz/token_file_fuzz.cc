// Raw int32 token files (TokenFileSource, src/data/batch_source.h): data.train_tokens and
// data.valid_tokens. Input: the file. The first byte also picks the model's seq_len (1..16), so
// that one file is read with several sequence lengths, as different configs would.
#include <string>
#include <vector>

#include "core/error.h"
#include "data/batch_source.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = sy::fuzz::scratch_dir() + "/tokens.bin";
  sy::fuzz::write_file(path, data, size);
  const int64_t seq_len = size ? 1 + data[0] % 16 : 1;
  constexpr int64_t kVocab = 1 << 16;
  try {
    for (const bool shuffle : {true, false}) {
      sy::TokenFileSource src(path, kVocab, seq_len, shuffle, /*seed=*/3);
      SY_FUZZ_ASSERT(
          src.sequences_per_epoch() >= 1 &&
              static_cast<int64_t>(src.sequences_per_epoch()) * (seq_len + 1) <= src.n_tokens(),
          "%llu sequences of %lld from %lld tokens",
          static_cast<unsigned long long>(src.sequences_per_epoch()),
          static_cast<long long>(seq_len + 1), static_cast<long long>(src.n_tokens()));
      constexpr int64_t B = 3;
      std::vector<int32_t> tokens(B * (seq_len + 1)), domains(B);
      for (int k = 0; k < 4; ++k) {
        src.next(tokens.data(), domains.data(), B);
        for (int32_t t : tokens) SY_FUZZ_ASSERT(t >= 0 && t < kVocab, "token %d", t);
      }
      src.set_position(src.sequences_per_epoch() * 5 + 1);  // a resume in a later epoch
      src.next(tokens.data(), domains.data(), B);
      (void)src.describe();
    }
  } catch (const sy::Error&) {
  }
  return 0;
}
