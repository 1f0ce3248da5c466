#include <gtest/gtest.h>
#include <omp.h>

#include "kernels/kernels.h"
#include "kernels/test_util.h"

namespace sy {
namespace {

using testing::randn;
using testing::to_float;

// D > 64 spans two column blocks; repeated tokens exercise the scatter-add.
constexpr int64_t kV = 6, kD = 70;
const std::vector<int32_t> kTokens = {3, 0, 3, 5, 3, 1, 0};
const int64_t kN = static_cast<int64_t>(kTokens.size());

TEST(EmbeddingTest, ForwardGathersRows) {
  auto wte = to_float(randn(kV * kD, 1));
  std::vector<float> out(kN * kD);
  embedding_forward(out.data(), kTokens.data(), wte.data(), kN, kD);
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t i = 0; i < kD; ++i) ASSERT_EQ(out[n * kD + i], wte[kTokens[n] * kD + i]);
}

TEST(EmbeddingTest, GradientMatchesFiniteDifferences) {
  auto wte = randn(kV * kD, 1), r = randn(kN * kD, 2);
  std::vector<double> out(kN * kD);
  auto loss = [&] {
    embedding_forward(out.data(), kTokens.data(), wte.data(), kN, kD);
    return testing::dot(out, r);
  };
  std::vector<double> dwte(wte.size());
  embedding_backward(dwte.data(), r.data(), kTokens.data(), kN, kD);
  testing::expect_gradient("dwte", loss, wte, dwte);

  auto dwte2 = dwte;
  embedding_backward(dwte2.data(), r.data(), kTokens.data(), kN, kD);
  testing::expect_doubled("dwte", dwte, dwte2);

  std::vector<float> dwte_f(wte.size());
  embedding_backward(dwte_f.data(), to_float(r).data(), kTokens.data(), kN, kD);
  EXPECT_LT(testing::rel_error(dwte_f, dwte), 1e-6);
}

TEST(EmbeddingTest, BackwardIndependentOfThreadCount) {
  constexpr int64_t N = 1000, D = 256, V = 7;  // few distinct tokens: many collisions
  std::vector<int32_t> tokens(N);
  for (int64_t n = 0; n < N; ++n) tokens[n] = static_cast<int32_t>((n * 5 + n / 3) % V);
  auto dout = to_float(randn(N * D, 1));
  const int threads = omp_get_max_threads();
  std::vector<float> d1(V * D), d2(V * D);
  omp_set_num_threads(1);
  embedding_backward(d1.data(), dout.data(), tokens.data(), N, D);
  omp_set_num_threads(std::max(2, threads));
  embedding_backward(d2.data(), dout.data(), tokens.data(), N, D);
  omp_set_num_threads(threads);
  EXPECT_EQ(d1, d2);
}

}  // namespace
}  // namespace sy
