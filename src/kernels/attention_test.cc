#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

// q, k, v side by side in one qkv buffer [B, S, 3·D], as the model stores them.
struct Shape {
  int64_t B, S, H, hd;
  int64_t D() const { return H * hd; }
  int64_t ld() const { return 3 * D(); }
  int64_t qkv_size() const { return B * S * ld(); }
  int64_t out_size() const { return B * S * D(); }
  int64_t att_size() const { return B * H * S * S; }
};

// S = 70 crosses the kernel's 64-row GEMM blocks, with a partial last block.
constexpr Shape kSmall{2, 5, 2, 4};
constexpr Shape kBlocked{1, 70, 2, 4};

template <typename T>
void forward(const Shape& s, std::vector<T>& out, std::vector<T>& att, const std::vector<T>& qkv) {
  out.assign(s.out_size(), T(0));
  att.assign(s.att_size(), T(0));
  attention_forward(out.data(), att.data(), qkv.data(), qkv.data() + s.D(), qkv.data() + 2 * s.D(),
                    s.B, s.S, s.H, s.hd, s.ld());
}

// Accumulates into dqkv.
template <typename T>
void backward(const Shape& s, std::vector<T>& dqkv, const std::vector<T>& dout,
              const std::vector<T>& qkv, const std::vector<T>& att) {
  std::vector<T> scratch(attention_scratch_size(s.S, omp_get_max_threads()));
  attention_backward(dqkv.data(), dqkv.data() + s.D(), dqkv.data() + 2 * s.D(), scratch.data(),
                     dout.data(), qkv.data(), qkv.data() + s.D(), qkv.data() + 2 * s.D(),
                     att.data(), s.B, s.S, s.H, s.hd, s.ld());
}

std::vector<double> naive_attention(const Shape& s, const std::vector<double>& qkv) {
  std::vector<double> out(s.out_size());
  const int64_t D = s.D(), ld = s.ld();
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t t = 0; t < s.S; ++t) {
        const double* q = &qkv[(b * s.S + t) * ld + h * s.hd];
        std::vector<double> p(t + 1);
        double m = -1e300, z = 0;
        for (int64_t j = 0; j <= t; ++j) {
          const double* k = &qkv[(b * s.S + j) * ld + D + h * s.hd];
          for (int64_t i = 0; i < s.hd; ++i) p[j] += q[i] * k[i] / std::sqrt(double(s.hd));
          m = std::max(m, p[j]);
        }
        for (auto& x : p) z += (x = std::exp(x - m));
        for (int64_t j = 0; j <= t; ++j) {
          const double* v = &qkv[(b * s.S + j) * ld + 2 * D + h * s.hd];
          for (int64_t i = 0; i < s.hd; ++i)
            out[(b * s.S + t) * D + h * s.hd + i] += p[j] / z * v[i];
        }
      }
  return out;
}

TEST(AttentionTest, ForwardMatchesNaiveReference) {
  for (const Shape& s : {kSmall, kBlocked}) {
    auto qkv = randn(s.qkv_size(), 1);
    std::vector<float> out, att;
    forward(s, out, att, to_float(qkv));
    EXPECT_LT(testing::rel_error(out, naive_attention(s, qkv)), 1e-5) << "S=" << s.S;
    for (int64_t bh = 0; bh < s.B * s.H; ++bh)
      for (int64_t t = 0; t < s.S; ++t) {
        double row = 0;
        for (int64_t j = 0; j < s.S; ++j) {
          const float p = att[(bh * s.S + t) * s.S + j];
          if (j > t) {
            ASSERT_EQ(p, 0.f) << "above the diagonal at t=" << t << " j=" << j;
          }
          row += p;
        }
        ASSERT_NEAR(row, 1.0, 1e-5);
      }
  }
}

TEST(AttentionTest, GradientMatchesFiniteDifferences) {
  for (const Shape& s : {kSmall, kBlocked}) {
    SCOPED_TRACE("S=" + std::to_string(s.S));
    auto qkv = randn(s.qkv_size(), 1), r = randn(s.out_size(), 2);
    std::vector<double> out, att;
    auto loss = [&] {
      forward(s, out, att, qkv);
      return testing::dot(out, r);
    };
    loss();
    std::vector<double> dqkv(qkv.size());
    backward(s, dqkv, r, qkv, att);
    testing::expect_gradient("dqkv", loss, qkv, dqkv, 800);
  }
}

TEST(AttentionTest, BackwardAccumulatesAndSkipsNullGradients) {
  const Shape s = kBlocked;
  auto qkv = randn(s.qkv_size(), 1), r = randn(s.out_size(), 2);
  std::vector<double> out, att;
  forward(s, out, att, qkv);
  std::vector<double> dqkv(qkv.size());
  backward(s, dqkv, r, qkv, att);
  auto dqkv2 = dqkv;
  backward(s, dqkv2, r, qkv, att);
  testing::expect_doubled("dqkv", dqkv, dqkv2);

  // accumulate = false overwrites whatever was there: the values of accumulating into zeros.
  std::vector<double> written(qkv.size(), 123.0);
  {
    std::vector<double> scratch(attention_scratch_size(s.S, omp_get_max_threads()));
    attention_backward(written.data(), written.data() + s.D(), written.data() + 2 * s.D(),
                       scratch.data(), r.data(), qkv.data(), qkv.data() + s.D(),
                       qkv.data() + 2 * s.D(), att.data(), s.B, s.S, s.H, s.hd, s.ld(),
                       /*accumulate=*/false);
  }
  EXPECT_EQ(written, dqkv);

  // Only dk requested: dq and dv columns stay zero, dk is the same.
  std::vector<double> dk_only(qkv.size());
  std::vector<double> scratch(attention_scratch_size(s.S, omp_get_max_threads()));
  attention_backward<double>(nullptr, dk_only.data() + s.D(), nullptr, scratch.data(), r.data(),
                             qkv.data(), qkv.data() + s.D(), qkv.data() + 2 * s.D(), att.data(),
                             s.B, s.S, s.H, s.hd, s.ld());
  for (int64_t row = 0; row < s.B * s.S; ++row)
    for (int64_t c = 0; c < s.ld(); ++c) {
      const bool is_k = c >= s.D() && c < 2 * s.D();
      const double want = is_k ? dqkv[row * s.ld() + c] : 0.0;
      ASSERT_NEAR(dk_only[row * s.ld() + c], want, 1e-12) << "row " << row << " col " << c;
    }
}

TEST(AttentionTest, FloatBackwardMatchesDouble) {
  const Shape s{2, 70, 2, 8};
  auto qkv = randn(s.qkv_size(), 1), r = randn(s.out_size(), 2);
  std::vector<double> out, att, dqkv(qkv.size());
  forward(s, out, att, qkv);
  backward(s, dqkv, r, qkv, att);
  auto qkv_f = to_float(qkv);
  std::vector<float> out_f, att_f, dqkv_f(qkv.size());
  forward(s, out_f, att_f, qkv_f);
  backward(s, dqkv_f, to_float(r), qkv_f, att_f);
  EXPECT_LT(testing::rel_error(dqkv_f, dqkv), 1e-5);
}

// A NaN query makes its rows of probabilities and output NaN (a diverged model's loss is NaN),
// and leaves the other rows as they were. Row 37 of S = 70: two 16-wide blocks and a tail.
TEST(AttentionTest, NanQueryPoisonsOnlyItsRows) {
  const Shape s = kBlocked;
  auto qkv = to_float(randn(s.qkv_size(), 1));
  std::vector<float> out, att, out_nan, att_nan;
  forward(s, out, att, qkv);
  const int64_t t = 37;
  qkv[t * s.ld() + 1] = std::nanf("");  // head 0's query at position t
  forward(s, out_nan, att_nan, qkv);
  for (int64_t r = 0; r < s.S; ++r)
    for (int64_t j = 0; j <= r; ++j) {
      const float a = att_nan[r * s.S + j];  // head 0
      if (r == t)
        ASSERT_TRUE(std::isnan(a)) << j;
      else
        ASSERT_EQ(a, att[r * s.S + j]) << r << "," << j;
    }
  for (int64_t i = 0; i < s.hd; ++i) EXPECT_TRUE(std::isnan(out_nan[t * s.D() + i])) << i;
}

TEST(AttentionTest, OutputIsCausal) {
  const Shape s = kBlocked;
  const int64_t t = 40;
  auto qkv = to_float(randn(s.qkv_size(), 1));
  std::vector<float> out, att;
  forward(s, out, att, qkv);
  auto changed = qkv;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t j = t + 1; j < s.S; ++j)
      for (int64_t c = s.D(); c < 3 * s.D(); ++c) changed[(b * s.S + j) * s.ld() + c] += 3.f;
  std::vector<float> out2, att2;
  forward(s, out2, att2, changed);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t j = 0; j < s.S; ++j)
      for (int64_t c = 0; c < s.D(); ++c) {
        const int64_t i = (b * s.S + j) * s.D() + c;
        if (j <= t) {
          ASSERT_EQ(out[i], out2[i]) << "position " << j << " saw the future";
        }
      }
  // Sanity: the change is visible after t.
  EXPECT_NE(out[(s.S - 1) * s.D()], out2[(s.S - 1) * s.D()]);
}

}  // namespace
}  // namespace sy
