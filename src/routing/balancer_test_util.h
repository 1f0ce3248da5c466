// Shared by the balancer's tests (routing/balancer_test.cc, and dist/dist_test.cc across ranks):
// balancer options for a one-layer, 6-expert, top-2 model, and routed micro-batches of random
// logits. Test code only.
#pragma once

#include <cstdint>
#include <vector>

#include "core/gradcheck.h"
#include "switchyard/balancer.h"

namespace sy::testing_util {

inline BalancerOptions balancer_opts(int64_t B, int64_t S, int64_t M, std::vector<LblTerm> terms) {
  BalancerOptions o;
  o.n_layers = 1;
  o.n_experts = 6;
  o.top_k = 2;
  o.seq_len = S;
  o.micro_batch = B;
  o.grad_accum = M;
  o.lbl = std::move(terms);
  return o;
}

// `count` micro-batches of n tokens, routed top-2 of 6 from standard-normal logits (seed + index).
inline std::vector<RoutingBuffers<double>> routed_micro_batches(int64_t n, int64_t count,
                                                                uint64_t seed) {
  TopKOptions t;
  t.n_experts = 6;
  t.top_k = 2;
  std::vector<RoutingBuffers<double>> bufs(count);
  for (int64_t m = 0; m < count; ++m) {
    std::vector<double> z(n * 6);
    fill_normal(z, seed + m);
    bufs[m].resize(n, 6, 2);
    topk_route_forward(t, z.data(), n, bufs[m]);
  }
  return bufs;
}

}  // namespace sy::testing_util
