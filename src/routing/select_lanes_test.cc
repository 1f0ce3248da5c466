#include "routing/select_lanes.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "routing/select.h"

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

// LaneTopKeys16 against select_top_k, for lanes of distinct random values (of both signs and of
// very different magnitudes), lanes with exact ties, and lanes of values one unit in the last
// place apart: every lane exact() accepts holds the reference's experts in its order, and a lane
// with a tie among its K + 1 largest is never accepted.
template <int K>
void check_lane_top_keys(int64_t E, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int> kind(0, 3);
  for (int rep = 0; rep < 50; ++rep) {
    alignas(64) float vT[128 * 16];  // [E, 16]
    for (int l = 0; l < 16; ++l) {
      const int k = kind(rng);
      for (int64_t i = 0; i < E; ++i) {
        float v = normal(rng);
        if (k == 1) v = std::ldexp(v, static_cast<int>(i % 40) - 20);          // wide magnitudes
        if (k == 2) v = static_cast<float>(static_cast<int>(4 * v)) / 4;       // many exact ties
        if (k == 3) v = std::nextafter(1.f, 2.f * static_cast<float>(i % 3));  // 1 ulp apart
        vT[i * 16 + l] = v + 0.f;                                              // no −0
      }
    }
    LaneTopKeys16<K + 1> sel(E);
    for (int64_t i = 0; i < E; ++i)
      sel.insert(_mm512_load_ps(vT + 16 * i), static_cast<int32_t>(i));
    const int64_t kk = std::min<int64_t>(E, K + 1);
    const __mmask16 exact = sel.exact(static_cast<int>(kk));
    alignas(64) int32_t got[(K + 1) * 16];
    for (int k = 0; k <= K; ++k) _mm512_store_si512(got + 16 * k, sel.index(k));
    for (int l = 0; l < 16; ++l) {
      int32_t want[K + 1] = {};
      select_top_k<float>(
          E, kk, [&](int64_t i) { return vT[i * 16 + l]; }, want);
      bool tie = false;
      for (int64_t k = 0; k + 1 < kk; ++k) tie |= vT[want[k] * 16 + l] == vT[want[k + 1] * 16 + l];
      if (tie) {
        EXPECT_FALSE((exact >> l) & 1) << "E=" << E << " K=" << K << " lane " << l;
      }
      if (!((exact >> l) & 1)) continue;
      for (int64_t k = 0; k < std::min<int64_t>(E, K); ++k)
        ASSERT_EQ(got[16 * k + l], want[k]) << "E=" << E << " K=" << K << " lane " << l;
    }
  }
}

TEST(SelectLanesTest, PackedKeysAgreeWithSelectTopKWhereExact) {
  for (const int64_t E : {1, 2, 5, 8, 16, 33, 64, 100, 128}) {
    check_lane_top_keys<1>(E, 1);
    check_lane_top_keys<2>(E, 2);
    check_lane_top_keys<4>(E, 3);
    check_lane_top_keys<6>(E, 4);
    check_lane_top_keys<8>(E, 5);
  }
}

// Distinct random values are accepted: the fallback is for near-ties, not the common case.
TEST(SelectLanesTest, PackedKeysAcceptDistinctValues) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 1.f);
  int accepted = 0, lanes = 0;
  for (int rep = 0; rep < 100; ++rep) {
    alignas(64) float vT[64 * 16];
    for (float& v : vT) v = normal(rng);
    LaneTopKeys16<7> sel(64);
    for (int64_t i = 0; i < 64; ++i)
      sel.insert(_mm512_load_ps(vT + 16 * i), static_cast<int32_t>(i));
    accepted += __builtin_popcount(sel.exact(7));
    lanes += 16;
  }
  EXPECT_GE(accepted, lanes - 16);  // near-ties (within 2^6 ulp) are rare: ~1 lane in 1600 here
}
#endif

}  // namespace
}  // namespace sy::detail
