// Hash routing (Roller et al. 2021; routing/hash_router.h): a token's K experts are a fixed hash
// of its id — balanced by the token distribution, learning nothing. Usually with gate "uniform".
#include <memory>
#include <vector>

#include "core/error.h"
#include "routing/hash_router.h"
#include "routing/slot_router.h"

namespace sy {
namespace {

template <typename T>
class HashRouter final : public SlotRouter<T> {
 public:
  HashRouter(const RouterOptions& ro, const TopKOptions& o, int64_t n_max)
      : SlotRouter<T>(o, n_max), seed_(ro.hash_seed) {
    forced_.assign(n_max * o.top_k, 0);
    scratch_.assign(2 * o.top_k, 0);
  }

 private:
  typename SlotRouter<T>::Choice choose(const T* /*z*/, int64_t n,
                                        const RouteCall<T>& call) override {
    const int64_t E = this->o_.n_experts, K = this->o_.top_k;
    SY_CHECK(call.token_ids != nullptr, "hash router: the call must give the tokens' ids");
    for (int64_t t = 0; t < n; ++t)
      hash_experts(call.token_ids[t], seed_, E, K, forced_.data() + t * K, scratch_.data());
    return {nullptr, forced_.data()};
  }

  uint64_t seed_;
  std::vector<int32_t> forced_;   // [N,K]
  std::vector<int32_t> scratch_;  // [2K]
};

}  // namespace

template <typename T>
std::unique_ptr<Router<T>> make_hash_router(const RouterOptions& ro, const TopKOptions& o,
                                            int64_t n_max) {
  return std::make_unique<HashRouter<T>>(ro, o, n_max);
}
template std::unique_ptr<Router<float>> make_hash_router(const RouterOptions&, const TopKOptions&,
                                                         int64_t);
template std::unique_ptr<Router<double>> make_hash_router(const RouterOptions&, const TopKOptions&,
                                                          int64_t);

}  // namespace sy
