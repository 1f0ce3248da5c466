#include "train/run_options.h"

#include <omp.h>

#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"

namespace sy {

// "auto" is resolved with the loss-free setting by resolve_defaults (config/run_config.h), which
// train() and parse_run_config apply; a config that skipped it routes with softmax scores, in
// the router and the balancer alike.
ScoreFn router_score(const RouterConfig& r) {
  return parse_score_fn(r.score == "auto" ? "softmax" : r.score);
}

TopKOptions topk_options(const RunConfig& cfg) {
  const ModelConfig& m = cfg.model;
  const RouterConfig& r = cfg.router;
  TopKOptions o;
  o.n_experts = m.n_experts;
  o.top_k = m.top_k;
  o.score = router_score(r);
  o.gate = parse_gate_fn(r.gate);
  o.gate_scale = r.gate_scale;
  o.capacity_factor = r.capacity_factor;
  o.drop = parse_drop_policy(r.drop_policy);
  o.z_loss_coef = r.z_loss_coef;
  o.max_groups = r.max_ranks_per_token;
  o.groups = r.max_ranks_per_token == 0 ? 0 : r.rank_groups > 0 ? r.rank_groups : cfg.parallel.ep;
  return o;
}

RouterOptions make_router_options(const RouterConfig& r) {
  RouterOptions o;
  o.type = r.type;
  o.bip_iterations = static_cast<int>(r.bip_iterations);
  o.bip_mode = parse_bip_mode(r.bip_mode);
  o.sinkhorn_iterations = static_cast<int>(r.sinkhorn_iterations);
  o.sinkhorn_decay = r.sinkhorn_eval_decay;
  o.hash_seed = r.hash_seed;
  o.ec_capacity_factor = r.ec_capacity_factor;
  o.ec_chunk = r.ec_chunk;
  o.ec_shuffle = r.ec_group_order == "shuffled";
  o.ec_decay = r.ec_threshold_decay;
  return o;
}

BalancerOptions balancer_options(const RunConfig& cfg) {
  const ModelConfig& m = cfg.model;
  BalancerOptions b;
  b.n_layers = m.n_layers - m.n_dense_layers;
  b.n_experts = m.n_experts;
  b.top_k = m.top_k;
  b.seq_len = m.seq_len;
  b.micro_batch = cfg.train.micro_batch;
  b.grad_accum = cfg.train.grad_accum;
  b.score = router_score(cfg.router);
  for (const auto& t : cfg.balance.terms) {
    SY_CHECK(t.type == "lbl", "balance.terms: type must be \"lbl\", got \"{}\"", t.type);
    b.lbl.push_back(LblTerm{.scope = parse_lbl_scope(t.scope),
                            .coef = t.coef,
                            .group = t.group,
                            .from_step = t.from_step,
                            .until_step = t.until_step});
  }
  b.bias_update = parse_bias_update(cfg.loss_free.update);
  b.bias_rate = cfg.loss_free.rate;
  b.bias_center = cfg.loss_free.center == "mean";
  b.bias_freeze_after = cfg.loss_free.freeze_after;
  b.seed = cfg.train.seed;
  return b;
}

void apply_system(const SystemConfig& s) {
  omp_set_num_threads(static_cast<int>(s.threads));
  set_gemm_backend(parse_gemm_backend(s.gemm));
  if (parse_precision(s.precision) == Precision::kBf16)
    SY_CHECK(cpu_has_bf16(), "system.precision = \"bf16\": {}", bf16_unsupported_reason());
}

}  // namespace sy
