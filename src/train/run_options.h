// The options of the layers below train, built from a run's config in one place.
//
// The model, the MoE layer and routing take typed options (enums, numbers), never the run
// config: the strings of [router], [balance] and [loss_free] become options here, after
// validate() has checked them (config/run_config.h), so a value that reaches these functions is
// one the schema allows. Values only; safe from several threads.
#pragma once

#include "config/run_config.h"
#include "switchyard/balancer.h"
#include "switchyard/router.h"
#include "switchyard/routing.h"

namespace sy {

// router.score as a ScoreFn: "auto" (not resolved by resolve_defaults) is softmax.
ScoreFn router_score(const RouterConfig& r);
// The top-K options every router family starts from (scores, gates, capacity, z-loss, the
// device limit).
TopKOptions topk_options(const RunConfig& cfg);
// The router family (router.type) and every family's options.
RouterOptions make_router_options(const RouterConfig& r);
// Balancer options (LBL terms, loss-free bias, batch geometry).
BalancerOptions balancer_options(const RunConfig& cfg);

// Applies [system] to this process: the OpenMP thread count and the GEMM backend (both
// process-wide); precision bf16 on a CPU without AVX512-BF16 is an error naming what is missing.
// Call before any model work, from one thread.
void apply_system(const SystemConfig& s);

}  // namespace sy
