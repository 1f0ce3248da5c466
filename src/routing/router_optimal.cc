// The optimal router (routing/optimal.h): the exact balanced assignment of the call's tokens
// (maximum total score, every expert at most ceil(K·N/E) tokens) by min-cost flow — an oracle
// for small N·E, the reference BIP approximates.
#include <memory>
#include <vector>

#include "routing/optimal.h"
#include "routing/slot_router.h"

namespace sy {
namespace {

template <typename T>
class OptimalRouter final : public SlotRouter<T> {
 public:
  OptimalRouter(const TopKOptions& o, int64_t n_max) : SlotRouter<T>(o, n_max) {
    scores_.assign(n_max * o.n_experts, T(0));
    forced_.assign(n_max * o.top_k, 0);
    loads_.assign(o.n_experts, 0);
  }

 private:
  typename SlotRouter<T>::Choice choose(const T* z, int64_t n,
                                        const RouteCall<T>& /*call*/) override {
    detail::scores_of(this->o_, z, n, scores_.data());
    optimal_assign(bip_shape(n, this->o_.n_experts, this->o_.top_k), scores_.data(), forced_.data(),
                   loads_.data());
    return {nullptr, forced_.data()};
  }

  std::vector<T> scores_;        // [N,E]
  std::vector<int32_t> forced_;  // [N,K]
  std::vector<int64_t> loads_;   // [E]
};

}  // namespace

template <typename T>
std::unique_ptr<Router<T>> make_optimal_router(const RouterOptions& /*ro*/, const TopKOptions& o,
                                               int64_t n_max) {
  return std::make_unique<OptimalRouter<T>>(o, n_max);
}
template std::unique_ptr<Router<float>> make_optimal_router(const RouterOptions&,
                                                            const TopKOptions&, int64_t);
template std::unique_ptr<Router<double>> make_optimal_router(const RouterOptions&,
                                                             const TopKOptions&, int64_t);

}  // namespace sy
