#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "core/buffer.h"
#include "core/gemm_bf16.h"
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

// The bf16 gather is to_bf16 of the gathered rows, bit for bit: streamed (D a multiple of 32,
// out aligned), and through masked stores (D = 40, and out off its alignment); NaN stays NaN.
TEST(RowsTest, GatherBf16RoundsTheIndexedRows) {
  for (int64_t D : {int64_t{64}, int64_t{40}}) {
    for (int64_t shift : {int64_t{0}, int64_t{1}}) {
      auto src = to_float(randn(5 * D, 5));
      src[3] = std::numeric_limits<float>::quiet_NaN();
      src[2 * D + 1] = 1e-39f;  // a denormal: rounded, not flushed
      Buffer<uint16_t> out;
      out.reset(kRows * D + 1);
      gather_rows_bf16(out.data() + shift, src.data(), kIndex.data(), kRows, D);
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t j = 0; j < D; ++j)
          ASSERT_EQ(out.data()[shift + r * D + j], to_bf16(src[kIndex[r] * D + j]))
              << "D=" << D << " shift=" << shift << " row " << r;
    }
  }
}

// The bf16 version writes to_bf16(g·dy_t) and returns the fp32 version's dot bit for bit:
// streamed (D = 64), 16 at a time (D = 48), and scalar (D = 19).
TEST(RowsTest, GatedRowBackwardBf16RoundsTheGradientAndKeepsTheDot) {
  for (int64_t D : {int64_t{64}, int64_t{48}, int64_t{19}}) {
    const auto dyt = to_float(randn(D, 6)), yr = to_float(randn(D, 7));
    Buffer<float> dyr;
    Buffer<uint16_t> dyr16;
    dyr.reset(D);
    dyr16.reset(D);
    const float g = 0.6f;
    const float want = gated_row_backward(dyt.data(), g, yr.data(), dyr.data(), D);
    EXPECT_EQ(gated_row_backward_bf16(dyt.data(), g, yr.data(), dyr16.data(), D), want)
        << "D=" << D;
    for (int64_t j = 0; j < D; ++j)
      ASSERT_EQ(dyr16.data()[j], to_bf16(dyr.data()[j])) << "D=" << D << " j=" << j;
  }
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
