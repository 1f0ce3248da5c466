// Hash routing: the documented splitmix64 + partial Fisher–Yates hash of hash_router.h.
#include "routing/hash_router.h"

#include <algorithm>

#include "core/error.h"
#include "routing/plan.h"

namespace sy {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t r = (x += 0x9E3779B97F4A7C15ull);
  r = (r ^ (r >> 30)) * 0xBF58476D1CE4E5B9ull;
  r = (r ^ (r >> 27)) * 0x94D049BB133111EBull;
  return r ^ (r >> 31);
}

}  // namespace

void hash_validate(const HashRouterOptions& o) {
  SY_CHECK(o.n_experts >= 1 && o.n_experts < (int64_t(1) << 31),
           "hash_router: n_experts must be in [1, 2^31), got {}", o.n_experts);
  SY_CHECK(o.top_k >= 1 && o.top_k <= o.n_experts,
           "hash_router: top_k must be in [1, n_experts = {}], got {}", o.n_experts, o.top_k);
}

void hash_experts(int32_t token_id, uint64_t seed, int64_t n_experts, int64_t top_k, int32_t* out,
                  int32_t* scratch) {
  uint64_t state = seed;
  state = splitmix64(state) ^ static_cast<uint64_t>(static_cast<uint32_t>(token_id));
  // Sparse Fisher–Yates: a[p] = p except at the positions listed in (pos, val); positions < j are
  // final (in out) and never read again, so at most j entries are live at step j.
  int32_t* pos = scratch;
  int32_t* val = scratch + top_k;
  int64_t moved = 0;
  auto get = [&](int64_t p) {
    for (int64_t q = 0; q < moved; ++q)
      if (pos[q] == p) return val[q];
    return static_cast<int32_t>(p);
  };
  for (int64_t j = 0; j < top_k; ++j) {
    const auto span = static_cast<uint64_t>(n_experts - j);
    const int64_t m = j + static_cast<int64_t>(splitmix64(state) % span);
    const int32_t vj = get(j), vm = get(m);
    out[j] = vm;
    if (m == j) continue;
    int64_t q = 0;
    while (q < moved && pos[q] != m) ++q;
    if (q == moved) {
      // Reuse a stale entry (position < j + 1) before growing the list.
      q = 0;
      while (q < moved && pos[q] > j) ++q;
      if (q == moved) ++moved;
      pos[q] = static_cast<int32_t>(m);
    }
    val[q] = vj;
  }
}

template <typename T>
void HashRouterBuffers<T>::resize(const HashRouterOptions& o, int64_t n_max_tokens) {
  hash_validate(o);
  SY_CHECK(n_max_tokens >= 0 && n_max_tokens * o.top_k < (int64_t(1) << 31),
           "hash_router: n_max·top_k must be in [0, 2^31), got {}", n_max_tokens * o.top_k);
  n_max = n_max_tokens;
  e = o.n_experts;
  k = o.top_k;
  n = 0;
  expert.assign(n_max * k, 0);
  gate.assign(n_max * k, T(0));
  offsets.assign(e + 1, 0);
  slot_of_row.assign(n_max * k, 0);
  load.assign(e, 0);
  scratch.assign(n_max * 2 * k, 0);
}

template <typename T>
void hash_route_forward(const HashRouterOptions& o, const int32_t* token_ids, int64_t n,
                        HashRouterBuffers<T>& buf) {
  SY_CHECK(o.n_experts == buf.e && o.top_k == buf.k,
           "hash_route_forward: options (E = {}, K = {}) must match the buffers' (E = {}, K = {})",
           o.n_experts, o.top_k, buf.e, buf.k);
  SY_CHECK(n >= 0 && n <= buf.n_max,
           "hash_route_forward: n must be in [0, {}] (the size buffers were made for), got {}",
           buf.n_max, n);
  const int64_t E = o.n_experts, K = o.top_k;
  buf.n = n;
  const T g = o.gate == HashGate::kUniform ? T(1) / static_cast<T>(K) : T(1);
  int32_t* expert = buf.expert.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    hash_experts(token_ids[t], o.seed, E, K, expert + t * K, buf.scratch.data() + t * 2 * K);
    for (int64_t k = 0; k < K; ++k) buf.gate[t * K + k] = g;
  }
  detail::plan_by_expert(expert, n * K, E, buf.load.data(), buf.offsets.data(),
                         buf.slot_of_row.data());
}

#define SY_INSTANTIATE(T)                                                                \
  template struct HashRouterBuffers<T>;                                                  \
  template void hash_route_forward<T>(const HashRouterOptions&, const int32_t*, int64_t, \
                                      HashRouterBuffers<T>&);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)

}  // namespace sy
