// S-BASE (Clark et al. 2022; routing/sinkhorn.h): in training each token's K experts are the
// top-K of the Sinkhorn-balanced matrix of the call, gates from the raw scores. Sinkhorn couples
// the call's tokens, so causal evaluation (ours) routes by the top-K of z + b̄ with b̄[E] an
// exponential moving average of the training calls' column potentials — a token's experts then
// depend only on its own logits.
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "routing/select.h"
#include "routing/sinkhorn.h"
#include "routing/slot_router.h"

namespace sy {
namespace {

template <typename T>
class SinkhornRouter final : public SlotRouter<T> {
 public:
  SinkhornRouter(const RouterOptions& ro, const TopKOptions& o, int64_t n_max)
      : SlotRouter<T>(o, n_max),
        so_{o.n_experts, o.top_k, ro.sinkhorn_iterations, GateFn::kRaw},
        decay_(ro.sinkhorn_decay) {
    buf_.resize(so_, n_max);
    forced_.assign(n_max * o.top_k, 0);
    b_.assign(o.n_experts, T(0));
  }

  bool has_causal_eval() const override { return true; }
  // Not required: checkpoints written before the causal evaluation existed lack it.
  std::vector<StateTensor<T>> state() override {
    return {{.name = "sinkhorn_potentials",
             .data = b_.data(),
             .size = static_cast<int64_t>(b_.size()),
             .required = false,
             .rank_mean = true}};
  }
  // Unknown potentials (zeroed): the next step's training calls copy theirs, not average.
  void restart_state(const std::string& name) override {
    SY_CHECK(name == "sinkhorn_potentials", "sinkhorn router: no state named {}", name);
    restart_ = true;
  }
  void end_step() override { restart_ = false; }
  void report(RouterMetrics& out) const override {
    if (std::isfinite(col_error_)) out.scalar("sinkhorn_col_error", col_error_);
  }

 private:
  typename SlotRouter<T>::Choice choose(const T* z, int64_t n, const RouteCall<T>& call) override {
    const int64_t E = this->o_.n_experts, K = this->o_.top_k;
    col_error_ = std::numeric_limits<double>::quiet_NaN();
    if (call.causal) {
      // Each token's K experts: the K largest z[t,i] + b̄[i] (ties: lower index).
#pragma omp parallel for schedule(static)
      for (int64_t t = 0; t < n; ++t) {
        const T* zt = z + t * E;
        detail::select_top_k<double>(
            E, K,
            [&](int64_t i) { return static_cast<double>(zt[i]) + static_cast<double>(b_[i]); },
            forced_.data() + t * K);
      }
      return {nullptr, forced_.data()};
    }
    col_error_ = sinkhorn_route_forward(so_, z, n, buf_).max_col_error;
    std::copy(buf_.expert.begin(), buf_.expert.begin() + n * K, forced_.begin());
    if (call.update) {  // b̄ ← d·b̄ + (1 − d)·b, d = 0 (copy) on the first batch or after a restart
      const double d = restart_ || call.first_batch ? 0.0 : decay_;
      for (int64_t i = 0; i < E; ++i)
        b_[i] = static_cast<T>(d * static_cast<double>(b_[i]) + (1 - d) * buf_.col_pot[i]);
    }
    return {nullptr, forced_.data()};
  }

  const SinkhornOptions so_;
  const double decay_;
  SinkhornBuffers<T> buf_;
  std::vector<int32_t> forced_;  // [N,K]
  std::vector<T> b_;             // [E] the causal evaluation's potentials (state)
  bool restart_ = false;
  // max_i |Σ_t Π[t,i]·E/N − 1| of the last training-mode call (how far its iterations got from
  // balance); NaN after a causal call.
  double col_error_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace

template <typename T>
std::unique_ptr<Router<T>> make_sinkhorn_router(const RouterOptions& ro, const TopKOptions& o,
                                                int64_t n_max) {
  return std::make_unique<SinkhornRouter<T>>(ro, o, n_max);
}
template std::unique_ptr<Router<float>> make_sinkhorn_router(const RouterOptions&,
                                                             const TopKOptions&, int64_t);
template std::unique_ptr<Router<double>> make_sinkhorn_router(const RouterOptions&,
                                                              const TopKOptions&, int64_t);

}  // namespace sy
