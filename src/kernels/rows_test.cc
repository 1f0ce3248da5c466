#include <gtest/gtest.h>

#include <vector>

#include "core/buffer.h"
#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

const std::vector<int32_t> kIndex = {4, 0, 4, 2, 1, 3, 0, 4};
const int64_t kRows = static_cast<int64_t>(kIndex.size());

// Streaming (D a multiple of 16, out 64-byte aligned) and plain (D = 70; out one float off its
// alignment) paths give the copy; so does double.
TEST(RowsTest, GatherCopiesTheIndexedRows) {
  for (int64_t D : {int64_t{32}, int64_t{70}}) {
    for (int64_t shift : {int64_t{0}, int64_t{1}}) {
      const auto src = to_float(randn(5 * D, 1));
      Buffer<float> out;
      out.reset(kRows * D + 1);
      gather_rows(out.data() + shift, src.data(), kIndex.data(), kRows, D);
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t j = 0; j < D; ++j)
          ASSERT_EQ(out.data()[shift + r * D + j], src[kIndex[r] * D + j])
              << "D=" << D << " shift=" << shift << " row " << r;
    }
  }
  const auto src = randn(5 * 24, 2);
  std::vector<double> out(kRows * 24);
  gather_rows(out.data(), src.data(), kIndex.data(), kRows, 24);
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t j = 0; j < 24; ++j) ASSERT_EQ(out[r * 24 + j], src[kIndex[r] * 24 + j]);
}

// dy_row = g·dy_t exactly; the returned dot product against fp64, both paths.
TEST(RowsTest, GatedRowBackwardScalesAndReturnsTheDot) {
  for (int64_t D : {int64_t{48}, int64_t{19}}) {
    const auto dyt = randn(D, 3), yr = randn(D, 4);
    const auto dyt_f = to_float(dyt), yr_f = to_float(yr);
    Buffer<float> dyr;
    dyr.reset(D);
    const float g = 0.375f;
    const float dot = gated_row_backward(dyt_f.data(), g, yr_f.data(), dyr.data(), D);
    double want = 0;
    for (int64_t j = 0; j < D; ++j) {
      want += static_cast<double>(dyt_f[j]) * yr_f[j];
      ASSERT_EQ(dyr.data()[j], g * dyt_f[j]) << "D=" << D << " j=" << j;
    }
    EXPECT_NEAR(dot, want, 1e-5 * (1 + std::abs(want))) << "D=" << D;
    std::vector<double> dyr_d(D);
    const double dot_d = gated_row_backward(dyt.data(), 0.375, yr.data(), dyr_d.data(), D);
    double want_d = 0;
    for (int64_t j = 0; j < D; ++j) want_d += dyt[j] * yr[j];
    EXPECT_NEAR(dot_d, want_d, 1e-12 * (1 + std::abs(want_d)));
  }
}

}  // namespace
}  // namespace sy
