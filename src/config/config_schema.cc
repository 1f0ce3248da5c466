#include "config/config_schema.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"

namespace sy::config_schema {

std::vector<Section> sections(RunConfig& c) {
  ModelConfig& m = c.model;
  RouterConfig& r = c.router;
  TrainConfig& t = c.train;
  DataConfig& d = c.data;
  SystemConfig& s = c.system;
  LossFreeConfig& lf = c.loss_free;
  // Order here is the order to_toml() writes and docs/config.md lists; [balance] is written
  // after [router] (see to_toml).
  return {
      {"", {{"out_dir", &c.out_dir}}},
      {"model",
       {{"vocab_size", &m.vocab_size},
        {"d_model", &m.d_model},
        {"n_layers", &m.n_layers},
        {"n_heads", &m.n_heads},
        {"seq_len", &m.seq_len},
        {"n_experts", &m.n_experts},
        {"top_k", &m.top_k},
        {"d_expert", &m.d_expert},
        {"n_shared_experts", &m.n_shared_experts},
        {"d_shared", &m.d_shared},
        {"n_dense_layers", &m.n_dense_layers},
        {"d_dense", &m.d_dense},
        {"rope_theta", &m.rope_theta},
        {"norm_eps", &m.norm_eps},
        {"init_std", &m.init_std}}},
      {"router",
       {{"type", &r.type},
        {"score", &r.score},
        {"gate", &r.gate},
        {"gate_scale", &r.gate_scale},
        {"capacity_factor", &r.capacity_factor},
        {"drop_policy", &r.drop_policy},
        {"z_loss_coef", &r.z_loss_coef},
        {"bip_iterations", &r.bip_iterations},
        {"bip_mode", &r.bip_mode},
        {"sinkhorn_iterations", &r.sinkhorn_iterations},
        {"hash_seed", &r.hash_seed},
        {"ec_capacity_factor", &r.ec_capacity_factor},
        {"ec_chunk", &r.ec_chunk},
        {"ec_group_order", &r.ec_group_order},
        {"ec_threshold_decay", &r.ec_threshold_decay},
        {"sinkhorn_eval_decay", &r.sinkhorn_eval_decay},
        {"oracle_every", &r.oracle_every},
        {"max_ranks_per_token", &r.max_ranks_per_token},
        {"rank_groups", &r.rank_groups}}},
      {"loss_free",
       {{"update", &lf.update},
        {"rate", &lf.rate},
        {"center", &lf.center},
        {"freeze_after", &lf.freeze_after}}},
      {"train",
       {{"micro_batch", &t.micro_batch},
        {"grad_accum", &t.grad_accum},
        {"steps", &t.steps},
        {"lr", &t.lr},
        {"min_lr_ratio", &t.min_lr_ratio},
        {"warmup_steps", &t.warmup_steps},
        {"weight_decay", &t.weight_decay},
        {"beta1", &t.beta1},
        {"beta2", &t.beta2},
        {"adam_eps", &t.adam_eps},
        {"grad_clip", &t.grad_clip},
        {"seed", &t.seed},
        {"eval_every", &t.eval_every},
        {"eval_batches", &t.eval_batches},
        {"checkpoint_every", &t.checkpoint_every},
        {"checkpoint_mode", &t.checkpoint_mode},
        {"log_every", &t.log_every}}},
      {"data",
       {{"source", &d.source},
        {"train_tokens", &d.train_tokens},
        {"valid_tokens", &d.valid_tokens},
        {"synthetic_seed", &d.synthetic_seed},
        {"blend", &d.blend},
        {"valid", &d.valid},
        {"composition", &d.composition},
        {"eos_id", &d.eos_id}}},
      {"system", {{"threads", &s.threads}, {"gemm", &s.gemm}, {"precision", &s.precision}}},
      {"parallel", {{"ep", &c.parallel.ep}}},
  };
}

std::vector<Field> term_fields(BalanceTerm& term) {
  return {{"type", &term.type},   {"scope", &term.scope},         {"coef", &term.coef},
          {"group", &term.group}, {"from_step", &term.from_step}, {"until_step", &term.until_step}};
}

std::string full_key(std::string_view section, std::string_view name) {
  if (section.empty()) return std::string(name);
  return fmt::format("{}.{}", section, name);
}

std::vector<std::string> all_keys(size_t term_index) {
  RunConfig scratch;
  BalanceTerm term;
  std::vector<std::string> keys;
  for (const Section& s : sections(scratch)) {
    if (!s.name.empty()) keys.emplace_back(s.name);
    for (const Field& f : s.fields) keys.push_back(full_key(s.name, f.name));
  }
  keys.emplace_back("balance");
  keys.emplace_back("balance.terms");
  for (const Field& f : term_fields(term)) {
    keys.push_back(fmt::format("balance.terms.{}.{}", term_index, f.name));
  }
  return keys;
}

void fail_key(std::string_view origin, std::string_view key, std::string_view constraint,
              std::string_view got, std::string_view hint) {
  std::string msg = fmt::format("{}: {} must be {}, got {}", origin, key, constraint, got);
  if (!hint.empty()) msg += fmt::format("; {}", hint);
  fail(msg);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  // Levenshtein with two rows: prev[j] is the distance between a[0, i) and b[0, j).
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

namespace {

std::string_view leaf(std::string_view key) {
  size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::string closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_score = SIZE_MAX;
  for (const std::string& c : candidates) {
    // A right key in the wrong section ("train.top_k") is as plausible a slip as a typo, so a leaf
    // match costs 2 whatever the sections' spelling.
    size_t score = edit_distance(word, c);
    if (word.find('.') != std::string_view::npos && c.find('.') != std::string::npos) {
      score = std::min(score, edit_distance(leaf(word), leaf(c)) + 2);
    }
    if (score < best_score) {
      best_score = score;
      best = c;
    }
  }
  // Beyond a third of the word's last component, the "suggestion" is noise rather than a typo fix.
  size_t limit = std::max<size_t>(2, leaf(word).size() / 3);
  return best_score <= limit ? best : std::string();
}

}  // namespace sy::config_schema
