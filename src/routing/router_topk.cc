// Top-K routing (ALGORITHMS.md §1): each token's K experts are the K largest scores, plus the
// auxiliary-loss-free bias when the balancer keeps one (§3: selection only, gates unbiased).
// The smallest router: everything after the choice is SlotRouter's.
#include <memory>

#include "routing/slot_router.h"

namespace sy {
namespace {

template <typename T>
class TopKRouter final : public SlotRouter<T> {
 public:
  using SlotRouter<T>::SlotRouter;

 private:
  typename SlotRouter<T>::Choice choose(const T* /*z*/, int64_t /*n*/,
                                        const RouteCall<T>& call) override {
    return {call.bias, nullptr};
  }
};

}  // namespace

template <typename T>
std::unique_ptr<Router<T>> make_topk_router(const RouterOptions& /*ro*/, const TopKOptions& o,
                                            int64_t n_max) {
  return std::make_unique<TopKRouter<T>>(o, n_max);
}
template std::unique_ptr<Router<float>> make_topk_router(const RouterOptions&, const TopKOptions&,
                                                         int64_t);
template std::unique_ptr<Router<double>> make_topk_router(const RouterOptions&, const TopKOptions&,
                                                          int64_t);

}  // namespace sy
