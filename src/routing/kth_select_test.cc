#include "routing/kth_select.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "routing/transposed.h"

namespace sy::detail {
namespace {

// Data sets that stress the selection: distinct values, heavy ties, both signs, ±0, a single
// repeated value, values one ulp apart, infinities.
std::vector<float> make_data(int kind, int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (int64_t j = 0; j < n; ++j) {
    const auto u = static_cast<float>(rng.uniform());
    const auto g = static_cast<float>(rng.normal());
    switch (kind) {
      case 0:
        v[j] = g;
        break;  // distinct, both signs
      case 1:
        v[j] = std::floor(u * 5.f) / 4.f - 0.5f;
        break;  // 5 values, many ties
      case 2:
        v[j] = (rng.below(2) != 0u ? -0.f : 0.f) + (u < 0.3f ? g : 0.f);
        break;  // ±0
      case 3:
        v[j] = 0.125f;
        break;  // all equal
      case 4:
        v[j] = std::bit_cast<float>(0x3F800000u + static_cast<uint32_t>(rng.below(3)));
        break;
      case 5:
        v[j] = u < 0.1f ? std::numeric_limits<float>::infinity() * (u < 0.05f ? -1 : 1)
                        : std::exp(8 * g);  // many octaves, ±∞
        break;
      case 6:
        v[j] = u * 1e-3f;
        break;  // one octave crowd (softmax-like)
      default:  // adversarial for the sampled bracket: the sampled positions hold the maximum
        v[j] = n >= 128 && j % (n / 64) == n / 128 ? 100.f : g;
        break;
    }
  }
  return v;
}

TEST(KthSelectTest, RadixSelectMatchesNthElementValueAndCountAbove) {
  alignas(64) uint32_t hist[kRadixBins];
  for (int kind = 0; kind <= 7; ++kind) {
    for (int64_t n : {1, 2, 17, 31, 32, 33, 100, 1000, 1024, 2048, 4099, 8192}) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        const std::vector<float> v = make_data(kind, n, seed * 101 + kind);
        Rng rng(seed);
        for (int64_t r : {int64_t(0), n - 1, n / 2, static_cast<int64_t>(rng.below(n)), n / 4}) {
          SCOPED_TRACE(::testing::Message() << "kind " << kind << " n " << n << " r " << r);
          std::vector<float> ref = v, work = v;
          std::nth_element(ref.begin(), ref.begin() + r, ref.end(), std::greater<>());
          const KthResult got = rth_largest_radix(work.data(), n, r, hist);
          EXPECT_EQ(got.value, ref[r]);
          // Out of place: the source is left as it was.
          std::vector<float> scratch(n, -7.f);
          const KthResult got2 = rth_largest_radix(v.data(), n, r, scratch.data(), hist);
          EXPECT_EQ(got2.value, ref[r]);
          EXPECT_EQ(got2.above, got.above);
          if (got.value == 0.f) {
            EXPECT_FALSE(std::signbit(got.value)) << "a zero is +0";
          }
          int64_t above = 0;
          for (float x : v) above += x > ref[r];
          EXPECT_EQ(got.above, above);
        }
      }
    }
  }
}

// top_candidates keeps, in position order, every element at or above the r-th largest (so the
// selection among them is the selection among all), or declines; it applies, and usually does
// not decline, for the few largest of a large array.
TEST(KthSelectTest, TopCandidatesHoldTheRthLargestAndEverythingAbove) {
  alignas(64) uint32_t hist[kRadixBins];
  int used = 0;
  for (int kind = 0; kind <= 7; ++kind) {
    for (int64_t n : {1000, 1024, 2048, 4099, 8192}) {
      for (int64_t r : {int64_t(0), int64_t(5), n / 32, n / 16, n / 4}) {
        SCOPED_TRACE(::testing::Message() << "kind " << kind << " n " << n << " r " << r);
        const std::vector<float> v = make_data(kind, n, 7 * n + kind);
        std::vector<float> vals(n, -7.f), work(n);
        std::vector<int32_t> pos(n, -1);
        const int64_t c = top_candidates(v.data(), n, r, vals.data(), pos.data());
        if (c < 0) continue;
        ++used;
        EXPECT_TRUE(top_candidates_apply(n, r));
        ASSERT_GT(c, r);
        std::vector<float> ref = v;
        std::nth_element(ref.begin(), ref.begin() + r, ref.end(), std::greater<>());
        int64_t at_or_above = 0;
        for (float x : v) at_or_above += float_key(x) >= float_key(ref[r]);
        int64_t kept = 0;
        for (int64_t j = 0; j < c; ++j) {
          ASSERT_EQ(float_key(vals[j]), float_key(v[pos[j]])) << j;
          if (j > 0) {
            ASSERT_LT(pos[j - 1], pos[j]);
          }
          kept += float_key(vals[j]) >= float_key(ref[r]);
        }
        EXPECT_EQ(kept, at_or_above);
        const KthResult got = rth_largest_radix(vals.data(), c, r, work.data(), hist);
        EXPECT_EQ(float_key(got.value), float_key(ref[r]));
      }
    }
  }
  EXPECT_GE(used, 30);
  EXPECT_FALSE(top_candidates_apply(1000, 5));    // no sample below kSampleMin
  EXPECT_FALSE(top_candidates_apply(2048, 512));  // the bracket is closed above
}

TEST(KthSelectTest, FloatKeyPreservesOrderAndMergesTheZeros) {
  const float xs[] = {
      -std::numeric_limits<float>::infinity(), -3.f, -1e-30f, -0.f, 0.f, 1e-38f, 0.5f, 7.f,
      std::numeric_limits<float>::infinity()};
  for (size_t a = 0; a + 1 < std::size(xs); ++a) {
    EXPECT_EQ(key_float(float_key(xs[a])), xs[a]);
    if (xs[a] < xs[a + 1]) {
      EXPECT_LT(float_key(xs[a]), float_key(xs[a + 1])) << xs[a];
    }
  }
  EXPECT_EQ(float_key(-0.f), float_key(0.f));
}

TEST(KthSelectTest, TransposeMatchesTheScalarLoop) {
  for (int64_t rows : {1, 15, 16, 37, 64}) {
    for (int64_t cols : {1, 5, 16, 20, 64}) {
      const int64_t ld = padded_ld(rows);
      ASSERT_GE(ld, rows);
      ASSERT_EQ(ld % 32, 16) << "an odd number of 64-byte lines";
      std::vector<float> src(rows * cols), got(cols * ld, -1.f), want(cols * ld, -1.f);
      for (int64_t j = 0; j < rows * cols; ++j) src[j] = static_cast<float>(j);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) want[c * ld + r] = src[r * cols + c];
      // In two row ranges, as two threads would.
      const int64_t mid = rows / 32 * 16;
      transpose_rows(src.data(), ld, cols, 0, mid, got.data());
      transpose_rows(src.data(), ld, cols, mid, rows, got.data());
      EXPECT_EQ(got, want) << rows << "x" << cols;
    }
  }
}

}  // namespace
}  // namespace sy::detail
