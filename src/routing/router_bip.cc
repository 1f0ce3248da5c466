// BIP-based balancing (ALGORITHMS.md §5; routing/bip.h): each token's K experts are the top-K of
// s − q, with q[E] the layer's dual prices, warm-started across calls and moved by T exact
// coordinate-minimisation iterations per training call — before routing (as published) or after
// (causal, ours). Evaluation never moves q. The loss-free bias, when on, is added to −q.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "routing/bip.h"
#include "routing/slot_router.h"
#include "routing/transposed.h"

namespace sy {
namespace {

template <typename T>
class BipRouter final : public SlotRouter<T> {
 public:
  BipRouter(const RouterOptions& ro, const TopKOptions& o, int64_t n_max)
      : SlotRouter<T>(o, n_max), iterations_(ro.bip_iterations), mode_(ro.bip_mode) {
    const int64_t E = o.n_experts;
    // [N,E], or transposed [E, bip_transposed_ld(N)] (float on AVX-512); ld grows with N.
    scores_.assign(E * bip_transposed_ld(n_max) + detail::kAlignSlack, T(0));
    p_.assign(n_max, T(0));
    scratch_.assign(bip_scratch_size(n_max, E, omp_get_max_threads()), T(0));
    q_.assign(E, T(0));
    q_prev_.assign(E, T(0));
    routed_q_.assign(E, T(0));
    bias_.assign(E, T(0));
  }

  std::vector<StateTensor<T>> state() override {
    return {{.name = "bip_dual", .data = q_.data(), .size = size(q_), .rank_mean = true}};
  }
  const T* routed_prices() const override { return routed_q_.data(); }
  void report(RouterMetrics& out) const override {
    if constexpr (std::is_same_v<T, float>) out.vector("bip_prices", q_.data(), size(q_));
  }

 private:
  static int64_t size(const std::vector<T>& v) { return static_cast<int64_t>(v.size()); }

  typename SlotRouter<T>::Choice choose(const T* z, int64_t n, const RouteCall<T>& call) override {
    const int64_t E = this->o_.n_experts;
    const T* s = compute_scores(z, n);
    if (call.update && mode_ == BipMode::kAsPublished) iterate(s, n);
    for (int64_t i = 0; i < E; ++i) bias_[i] = -q_[i] + (call.bias ? call.bias[i] : T(0));
    std::copy(q_.begin(), q_.end(), routed_q_.begin());
    if (call.update && mode_ == BipMode::kCausal) iterate(s, n);
    return {bias_.data(), nullptr};
  }

  // The scores in the layout the iterations stream: transposed sT[E, ld] for float on AVX-512
  // (routing/transposed.h; the same floats), else s[N,E].
  const T* compute_scores(const T* z, int64_t n) {
    T* s = scores_.data();
    transposed_ = false;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      s = detail::align64(s);
      const int64_t blocks = (n + 15) / 16, ld = bip_transposed_ld(n);
      const bool sigmoid = this->o_.score == ScoreFn::kSigmoid;
#pragma omp parallel for schedule(static)
      for (int64_t b = 0; b < blocks; ++b)
        detail::scores_block_transposed(z, n, this->o_.n_experts, sigmoid, b * 16, ld, s);
      transposed_ = true;
    }
#endif
    if (!transposed_) detail::scores_of(this->o_, z, n, s);
    return s;
  }

  void iterate_n(const T* s, int64_t n, int t) {
    const BipShape sh = bip_shape(n, this->o_.n_experts, this->o_.top_k);
    const auto size = static_cast<int64_t>(scratch_.size());
    if (transposed_) {
      bip_iterate_transposed(sh, s, t, q_.data(), p_.data(), scratch_.data(), size);
    } else {
      bip_iterate(sh, s, t, q_.data(), p_.data(), scratch_.data(), size);
    }
  }

  // T iterations; T = 0: until no price moves by more than rounding (8 ulp of 1; scores are in
  // [0, 1]) in one iteration — in floating point the exact iteration can cycle between
  // neighbouring values — at most kBipMaxIterations.
  void iterate(const T* s, int64_t n) {
    if (iterations_ > 0) return iterate_n(s, n, iterations_);
    const T tol = 8 * std::numeric_limits<T>::epsilon();
    for (int it = 0; it < kBipMaxIterations; ++it) {
      std::copy(q_.begin(), q_.end(), q_prev_.begin());
      iterate_n(s, n, 1);
      T moved = 0;
      for (size_t i = 0; i < q_.size(); ++i) moved = std::max(moved, std::abs(q_[i] - q_prev_[i]));
      if (moved <= tol) break;
    }
  }

  const int iterations_;
  const BipMode mode_;
  bool transposed_ = false;
  std::vector<T> q_;            // [E] the dual prices (state)
  std::vector<T> scores_;       // s [N,E] or sT [E,ld]
  std::vector<T> p_, scratch_;  // token prices [N]; the iterations' scratch
  std::vector<T> q_prev_;       // [E] q before the last iteration (T = 0)
  std::vector<T> routed_q_;     // [E] the q that routed the last call
  std::vector<T> bias_;         // [E] −q (+ loss-free bias)
};

}  // namespace

template <typename T>
std::unique_ptr<Router<T>> make_bip_router(const RouterOptions& ro, const TopKOptions& o,
                                           int64_t n_max) {
  return std::make_unique<BipRouter<T>>(ro, o, n_max);
}
template std::unique_ptr<Router<float>> make_bip_router(const RouterOptions&, const TopKOptions&,
                                                        int64_t);
template std::unique_ptr<Router<double>> make_bip_router(const RouterOptions&, const TopKOptions&,
                                                         int64_t);

}  // namespace sy
