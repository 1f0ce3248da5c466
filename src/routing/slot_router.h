// Internal to src/routing: what the slot routers share beyond their public base
// (switchyard/slot_router.h).
#pragma once

#include <cstdint>

#include "switchyard/slot_router.h"

namespace sy {

namespace detail {
// s[N,E] = the scores (softmax or sigmoid, o.score) of z[N,E], as topk_route_forward computes
// them (BIP's scalar path and the optimal router score with it).
template <typename T>
void scores_of(const TopKOptions& o, const T* z, int64_t n, T* s);
}  // namespace detail

}  // namespace sy
