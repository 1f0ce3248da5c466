#include "routing/select_lanes.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace sy::detail {
namespace {

#if defined(__AVX512F__)
// store_token_major against the scalar loop it replaces, for every K and every token count of a
// partial block; nothing past the last token's slots is written.
template <int K>
void check_store_token_major() {
  alignas(64) int32_t rows_mem[K * 16];
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < 16; ++l) rows_mem[k * 16 + l] = 1000 * k + l + 1;
  __m512i rows[K];
  for (int k = 0; k < K; ++k) rows[k] = _mm512_load_si512(rows_mem + 16 * k);
  for (int64_t cnt = 0; cnt <= 16; ++cnt) {
    std::vector<int32_t> out(16 * K + 16, -7);
    store_token_major<K>(rows, cnt, out.data());
    for (int64_t s = 0; s < static_cast<int64_t>(out.size()); ++s) {
      const int32_t want = s < cnt * K ? rows_mem[(s % K) * 16 + s / K] : -7;
      ASSERT_EQ(out[s], want) << "K=" << K << " cnt=" << cnt << " s=" << s;
    }
  }
}

TEST(SelectLanesTest, StoreTokenMajorTransposesEveryK) {
  check_store_token_major<1>();
  check_store_token_major<2>();
  check_store_token_major<3>();
  check_store_token_major<4>();
  check_store_token_major<5>();
  check_store_token_major<6>();
  check_store_token_major<7>();
  check_store_token_major<8>();
}
#endif

}  // namespace
}  // namespace sy::detail
