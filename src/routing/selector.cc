#include "routing/selector.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/error.h"
#include "core/vec_math.h"
#include "routing/hash_router.h"
#include "routing/optimal.h"
#include "routing/select.h"
#include "routing/softmax.h"
#include "routing/transposed.h"

namespace sy {

RouterType parse_router_type(const std::string& s) {
  if (s == "topk") return RouterType::kTopK;
  if (s == "bip") return RouterType::kBip;
  if (s == "sinkhorn") return RouterType::kSinkhorn;
  if (s == "hash") return RouterType::kHash;
  if (s == "optimal") return RouterType::kOptimal;
  if (s == "expert_choice") return RouterType::kExpertChoice;
  fail(
      fmt::format("router.type must be one of \"topk\", \"bip\", \"sinkhorn\", \"hash\", "
                  "\"optimal\", \"expert_choice\", got \"{}\"",
                  s));
}

template <typename T>
void Selector<T>::resize(const SelectorOptions& so, const TopKOptions& o, int64_t n_max) {
  const int64_t E = o.n_experts, K = o.top_k;
  bias_.assign(E, T(0));
  if (so.type == RouterType::kOptimal) scores_.assign(n_max * E, T(0));
  // BIP: [N,E], or transposed [E, bip_transposed_ld(N)] (float on AVX-512); ld grows with N.
  if (so.type == RouterType::kBip)
    scores_.assign(E * bip_transposed_ld(n_max) + detail::kAlignSlack, T(0));
  if (so.type == RouterType::kBip) {
    p_.assign(n_max, T(0));
    q_prev_.assign(E, T(0));
    routed_q_.assign(E, T(0));
    scratch_.assign(bip_scratch_size(n_max, E, omp_get_max_threads()), T(0));
  }
  if (so.type == RouterType::kSinkhorn || so.type == RouterType::kHash ||
      so.type == RouterType::kOptimal)
    forced_.assign(n_max * K, 0);
  if (so.type == RouterType::kHash) hash_scratch_.assign(2 * K, 0);
  if (so.type == RouterType::kOptimal) loads_.assign(E, 0);
  if (so.type == RouterType::kSinkhorn) {
    SinkhornOptions sk{E, K, so.sinkhorn_iterations, GateFn::kRaw};
    sinkhorn_.resize(sk, n_max);
  }
}

namespace {
template <typename T>
void scores_of(const TopKOptions& o, const T* z, int64_t n, T* s) {
  const int64_t E = o.n_experts;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* zt = z + t * E;
    T* st = s + t * E;
    if (o.score == ScoreFn::kSigmoid) {
      for (int64_t i = 0; i < E; ++i) st[i] = T(1) / (T(1) + detail::fast_exp(-zt[i]));
    } else {
      detail::softmax_row(zt, E, st);
    }
  }
}

#if defined(__AVX512F__)
// scores_of for float, written transposed into sT[E, bip_transposed_ld(N)]: the same floats
// (routing/transposed.h), in the layout BIP's passes stream.
void scores_transposed(const TopKOptions& o, const float* z, int64_t n, float* sT) {
  const int64_t blocks = (n + 15) / 16, ld = bip_transposed_ld(n);
  const bool sigmoid = o.score == ScoreFn::kSigmoid;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b)
    detail::scores_block_transposed(z, n, o.n_experts, sigmoid, b * 16, ld, sT);
}
#endif
}  // namespace

template <typename T>
typename Selector<T>::Choice Selector<T>::select(const SelectorOptions& so, const TopKOptions& o,
                                                 const T* z, const int32_t* token_ids, int64_t n,
                                                 T* q, const T* loss_free_bias, bool update) {
  const int64_t E = o.n_experts, K = o.top_k;
  Choice c;
  routed_q_valid_ = false;
  sinkhorn_col_error_ = std::numeric_limits<double>::quiet_NaN();
  switch (so.type) {
    case RouterType::kTopK:
    case RouterType::kExpertChoice:  // routed by the MoE layer itself
      c.bias = loss_free_bias;
      break;
    case RouterType::kBip: {
      const BipShape sh = bip_shape(n, E, K);
      bool transposed = false;
      T* s = scores_.data();
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        s = detail::align64(s);
        scores_transposed(o, z, n, s);  // sT[E, bip_transposed_ld(n)]
        transposed = true;
      }
#endif
      if (!transposed) scores_of(o, z, n, s);
      auto iterate_n = [&](int t) {
        const auto size = static_cast<int64_t>(scratch_.size());
        if (transposed) {
          bip_iterate_transposed(sh, s, t, q, p_.data(), scratch_.data(), size);
        } else {
          bip_iterate(sh, s, t, q, p_.data(), scratch_.data(), size);
        }
      };
      auto iterate = [&] {
        if (so.bip_iterations > 0) return iterate_n(so.bip_iterations);
        // 0: until no price moves by more than rounding (8 ulp of 1; scores are in [0, 1]) in
        // one iteration — in floating point the exact iteration can cycle between neighbouring
        // values — at most kBipMaxIterations.
        const T tol = 8 * std::numeric_limits<T>::epsilon();
        for (int it = 0; it < kBipMaxIterations; ++it) {
          std::copy(q, q + E, q_prev_.begin());
          iterate_n(1);
          T moved = 0;
          for (int64_t i = 0; i < E; ++i) moved = std::max(moved, std::abs(q[i] - q_prev_[i]));
          if (moved <= tol) break;
        }
      };
      if (update && so.bip_mode == BipMode::kAsPublished) iterate();
      for (int64_t i = 0; i < E; ++i)
        bias_[i] = -q[i] + (loss_free_bias ? loss_free_bias[i] : T(0));
      std::copy(q, q + E, routed_q_.begin());
      routed_q_valid_ = true;
      if (update && so.bip_mode == BipMode::kCausal) iterate();
      c.bias = bias_.data();
      break;
    }
    case RouterType::kSinkhorn: {
      SinkhornOptions sk{E, K, so.sinkhorn_iterations, GateFn::kRaw};
      sinkhorn_col_error_ = sinkhorn_route_forward(sk, z, n, sinkhorn_).max_col_error;
      std::copy(sinkhorn_.expert.begin(), sinkhorn_.expert.begin() + n * K, forced_.begin());
      c.forced = forced_.data();
      break;
    }
    case RouterType::kHash:
      for (int64_t t = 0; t < n; ++t)
        hash_experts(token_ids[t], so.hash_seed, E, K, forced_.data() + t * K,
                     hash_scratch_.data());
      c.forced = forced_.data();
      break;
    case RouterType::kOptimal:
      scores_of(o, z, n, scores_.data());
      optimal_assign(bip_shape(n, E, K), scores_.data(), forced_.data(), loads_.data());
      c.forced = forced_.data();
      break;
  }
  return c;
}

template <typename T>
typename Selector<T>::Choice Selector<T>::select_sinkhorn_causal(const TopKOptions& o, const T* z,
                                                                 int64_t n, const T* b) {
  const int64_t E = o.n_experts, K = o.top_k;
  SY_CHECK(static_cast<int64_t>(forced_.size()) >= n * K,
           "Selector::select_sinkhorn_causal: resize with router type sinkhorn for {} tokens first",
           n);
  sinkhorn_col_error_ = std::numeric_limits<double>::quiet_NaN();
  routed_q_valid_ = false;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    const T* zt = z + t * E;
    detail::select_top_k<double>(
        E, K, [&](int64_t i) { return static_cast<double>(zt[i]) + static_cast<double>(b[i]); },
        forced_.data() + t * K);
  }
  Choice c;
  c.forced = forced_.data();
  return c;
}

template class Selector<float>;
template class Selector<double>;

}  // namespace sy
