// validate(): every field's range, then the rules that tie fields together.
//
// Single-field ranges run first so that the cross-field rules may divide by n_heads and read
// n_experts knowing they are positive. The first violation throws.
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "config/config_schema.h"
#include "config/run_config.h"
#include "core/error.h"
#include "switchyard/router.h"

namespace sy::config_schema {
namespace {

// The accepted names of each enumerated key (router.type: the router registry's,
// switchyard/router.h). A new gate or balancing scope means adding its name here (one line) and
// its row in docs/config.md.
constexpr std::string_view kBipModes[] = {"as-published", "causal"};
constexpr std::string_view kEcGroupOrders[] = {"sequential", "shuffled"};
constexpr std::string_view kScoreFns[] = {"auto", "softmax", "sigmoid"};
constexpr std::string_view kGates[] = {"renorm", "raw", "uniform"};
constexpr std::string_view kDropPolicies[] = {"probs", "position"};
constexpr std::string_view kBalanceTypes[] = {"lbl"};
constexpr std::string_view kBalanceScopes[] = {"sequence", "micro", "global", "global-exact",
                                               "shuffle"};
constexpr std::string_view kBiasUpdates[] = {"off", "sign", "proportional"};
constexpr std::string_view kBiasCenters[] = {"none", "mean"};
constexpr std::string_view kDataSources[] = {"synthetic", "tokens", "blend"};
constexpr std::string_view kCompositions[] = {"mixed", "domain-pure"};
constexpr std::string_view kCheckpointModes[] = {"async", "sync"};
constexpr std::string_view kGemmBackends[] = {"auto", "onednn", "openblas", "mixed"};
constexpr std::string_view kPrecisions[] = {"fp32", "bf16"};

// Seeds are uint64 in memory but TOML integers are signed 64-bit; beyond this to_toml() could not
// write the run back out.
constexpr uint64_t kMaxSeed = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

std::string num(double x) { return fmt::format("{}", x); }

// Whether s is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
// as TOML requires: a string read from a TOML file always is, but a --set value is taken
// verbatim from the command line.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(n) >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

// s with every byte outside printable ASCII as \xNN, for a message about invalid text.
std::string escaped(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += ch;
    } else {
      out += fmt::format("\\x{:02X}", c);
    }
  }
  return out;
}

class Checker {
 public:
  explicit Checker(std::string_view origin) : origin_(origin) {}

  void require(bool ok, std::string_view key, std::string_view constraint, std::string_view got,
               std::string_view hint = {}) const {
    if (!ok) fail_key(origin_, key, constraint, got, hint);
  }
  void at_least(std::string_view key, int64_t v, int64_t lo, std::string_view hint = {}) const {
    require(v >= lo, key, fmt::format(">= {}", lo), fmt::format("{}", v), hint);
  }
  void positive(std::string_view key, double v, std::string_view hint = {}) const {
    require(v > 0, key, "> 0", num(v), hint);
  }
  void non_negative(std::string_view key, double v, std::string_view hint = {}) const {
    require(v >= 0, key, ">= 0", num(v), hint);
  }
  void seed(std::string_view key, uint64_t v) const {
    require(v <= kMaxSeed, key, fmt::format("<= {} (TOML integers are signed 64-bit)", kMaxSeed),
            fmt::format("{}", v));
  }
  void one_of(std::string_view key, const std::string& v,
              std::span<const std::string_view> allowed) const {
    for (std::string_view a : allowed) {
      if (v == a) return;
    }
    std::vector<std::string> names(allowed.begin(), allowed.end());
    std::string list;
    for (std::string_view a : allowed) list += fmt::format("{}\"{}\"", list.empty() ? "" : ", ", a);
    std::string best = closest(v, names);
    std::string hint = best.empty() ? "" : fmt::format("did you mean \"{}\"?", best);
    require(false, key, fmt::format("one of {}", list), fmt::format("\"{}\"", v), hint);
  }

 private:
  std::string_view origin_;
};

void check_model(const Checker& c, const ModelConfig& m) {
  c.at_least("model.vocab_size", m.vocab_size, 1);
  c.at_least("model.d_model", m.d_model, 1);
  c.at_least("model.n_layers", m.n_layers, 1);
  c.at_least("model.n_heads", m.n_heads, 1);
  c.at_least("model.seq_len", m.seq_len, 1);
  c.at_least("model.n_experts", m.n_experts, 1);
  c.require(m.n_experts <= 1024, "model.n_experts", "<= 1024", fmt::format("{}", m.n_experts),
            "the router's per-token scratch is sized for at most 1024 experts");
  c.at_least("model.top_k", m.top_k, 1);
  c.at_least("model.d_expert", m.d_expert, 1);
  c.at_least("model.n_shared_experts", m.n_shared_experts, 0);
  c.at_least("model.d_shared", m.d_shared, 0, "0 means the same as model.d_expert");
  c.at_least("model.n_dense_layers", m.n_dense_layers, 0);
  c.at_least("model.d_dense", m.d_dense, 1);
  c.positive("model.rope_theta", m.rope_theta);
  c.positive("model.norm_eps", m.norm_eps);
  c.positive("model.init_std", m.init_std);
}

void check_router(const Checker& c, const RouterConfig& r) {
  const std::vector<std::string_view> router_types(router_names().begin(), router_names().end());
  c.one_of("router.type", r.type, router_types);
  c.one_of("router.score", r.score, kScoreFns);
  c.one_of("router.gate", r.gate, kGates);
  c.positive("router.gate_scale", r.gate_scale);
  c.non_negative("router.capacity_factor", r.capacity_factor, "0 means dropless (no capacity)");
  c.one_of("router.drop_policy", r.drop_policy, kDropPolicies);
  c.non_negative("router.z_loss_coef", r.z_loss_coef, "0 turns the z-loss off; 1e-3 is typical");
  c.at_least("router.bip_iterations", r.bip_iterations, 0,
             "0 iterates until the prices q stop changing up to rounding (at most 1000 times)");
  c.one_of("router.bip_mode", r.bip_mode, kBipModes);
  c.at_least("router.sinkhorn_iterations", r.sinkhorn_iterations, 0);
  c.seed("router.hash_seed", r.hash_seed);
  c.non_negative("router.ec_capacity_factor", r.ec_capacity_factor, "0 means model.top_k");
  c.at_least("router.ec_chunk", r.ec_chunk, 0);
  c.one_of("router.ec_group_order", r.ec_group_order, kEcGroupOrders);
  c.at_least("router.oracle_every", r.oracle_every, 0, "0 turns the oracle off");
  c.at_least("router.max_ranks_per_token", r.max_ranks_per_token, 0, "0 turns the limit off");
  c.at_least("router.rank_groups", r.rank_groups, 0, "0 means parallel.ep");
  c.require(r.ec_threshold_decay >= 0 && r.ec_threshold_decay < 1, "router.ec_threshold_decay",
            "in [0, 1)", num(r.ec_threshold_decay));
  c.require(r.sinkhorn_eval_decay >= 0 && r.sinkhorn_eval_decay < 1, "router.sinkhorn_eval_decay",
            "in [0, 1)", num(r.sinkhorn_eval_decay));
}

void check_balance(const Checker& c, const BalanceConfig& b) {
  for (size_t i = 0; i < b.terms.size(); ++i) {
    const BalanceTerm& t = b.terms[i];
    c.one_of(fmt::format("balance.terms.{}.type", i), t.type, kBalanceTypes);
    c.one_of(fmt::format("balance.terms.{}.scope", i), t.scope, kBalanceScopes);
    c.non_negative(fmt::format("balance.terms.{}.coef", i), t.coef);
    c.at_least(fmt::format("balance.terms.{}.group", i), t.group, 0,
               "0 counts f over all of the step's micro-batches");
    c.at_least(fmt::format("balance.terms.{}.from_step", i), t.from_step, 0);
    c.at_least(fmt::format("balance.terms.{}.until_step", i), t.until_step, 0,
               "0 applies the term to the end of the run");
  }
}

void check_loss_free(const Checker& c, const LossFreeConfig& l) {
  c.one_of("loss_free.update", l.update, kBiasUpdates);
  c.positive("loss_free.rate", l.rate);
  c.one_of("loss_free.center", l.center, kBiasCenters);
  c.at_least("loss_free.freeze_after", l.freeze_after, 0);
}

void check_train(const Checker& c, const TrainConfig& t) {
  c.at_least("train.micro_batch", t.micro_batch, 1);
  c.at_least("train.grad_accum", t.grad_accum, 1);
  c.at_least("train.steps", t.steps, 1);
  c.positive("train.lr", t.lr);
  c.require(t.min_lr_ratio >= 0 && t.min_lr_ratio <= 1, "train.min_lr_ratio", "in [0, 1]",
            num(t.min_lr_ratio), "it is the cosine schedule's floor as a fraction of train.lr");
  c.at_least("train.warmup_steps", t.warmup_steps, 0);
  c.non_negative("train.weight_decay", t.weight_decay);
  c.require(t.beta1 >= 0 && t.beta1 < 1, "train.beta1", "in [0, 1)", num(t.beta1));
  c.require(t.beta2 >= 0 && t.beta2 < 1, "train.beta2", "in [0, 1)", num(t.beta2));
  c.positive("train.adam_eps", t.adam_eps);
  c.non_negative("train.grad_clip", t.grad_clip, "0 turns clipping off");
  c.seed("train.seed", t.seed);
  c.at_least("train.eval_every", t.eval_every, 0, "0 evaluates only at the end");
  c.at_least("train.eval_batches", t.eval_batches, 1);
  c.at_least("train.checkpoint_every", t.checkpoint_every, 0, "0 checkpoints only at the end");
  c.one_of("train.checkpoint_mode", t.checkpoint_mode, kCheckpointModes);
  c.at_least("train.log_every", t.log_every, 1);
}

void check_data_and_system(const Checker& c, const DataConfig& d, const SystemConfig& s) {
  c.one_of("data.source", d.source, kDataSources);
  c.one_of("data.composition", d.composition, kCompositions);
  c.at_least("data.eos_id", d.eos_id, 0);
  c.seed("data.synthetic_seed", d.synthetic_seed);
  c.at_least("system.threads", s.threads, 1);
  c.one_of("system.gemm", s.gemm, kGemmBackends);
  c.one_of("system.precision", s.precision, kPrecisions);
}

void check_parallel(const Checker& c, const ParallelConfig& p, const ModelConfig& m,
                    const RouterConfig& r) {
  c.at_least("parallel.ep", p.ep, 1, "1 turns expert parallelism off");
  if (p.ep > 1)
    c.require(m.n_experts % p.ep == 0, "parallel.ep",
              fmt::format("a divisor of model.n_experts ({})", m.n_experts),
              fmt::format("{}", p.ep), "each rank of an expert-parallel group holds E/ep experts");
  // Device-limited routing: M of G groups of E/G experts must leave room for K experts.
  const int64_t M = r.max_ranks_per_token, G = r.rank_groups > 0 ? r.rank_groups : p.ep;
  if (M == 0) return;
  c.require(r.type == "topk" || r.type == "bip", "router.max_ranks_per_token",
            fmt::format("0 with router.type = \"{}\"", r.type), fmt::format("{}", M),
            "only top-K and BIP choose by scores; the other routers choose experts themselves");
  c.require(G >= 2 && G <= 64 && m.n_experts % G == 0, "router.rank_groups",
            fmt::format("in [2, 64] and a divisor of model.n_experts ({}) when "
                        "router.max_ranks_per_token > 0 (0 takes parallel.ep)",
                        m.n_experts),
            fmt::format("{} (parallel.ep = {})", r.rank_groups, p.ep));
  c.require(M <= G && M * (m.n_experts / G) >= m.top_k, "router.max_ranks_per_token",
            fmt::format("at most the {} groups, with room for model.top_k = {} experts in M "
                        "groups of {}",
                        G, m.top_k, m.n_experts / G),
            fmt::format("{}", M));
}

void check_cross_field(const Checker& c, const RunConfig& cfg) {
  const ModelConfig& m = cfg.model;
  const RouterConfig& r = cfg.router;

  c.require(m.d_model % m.n_heads == 0, "model.d_model",
            fmt::format("divisible by model.n_heads ({})", m.n_heads), fmt::format("{}", m.d_model),
            "each head gets d_model / n_heads dims");
  int64_t head_dim = m.d_model / m.n_heads;
  c.require(head_dim % 2 == 0, "model.d_model / model.n_heads (the head dim)", "even",
            fmt::format("{} / {} = {}", m.d_model, m.n_heads, head_dim),
            "RoPE rotates pairs of dims");
  c.require(m.top_k <= m.n_experts, "model.top_k",
            fmt::format("<= model.n_experts ({})", m.n_experts), fmt::format("{}", m.top_k),
            "impossible: K > E; lower top_k or raise n_experts");
  c.require(m.n_dense_layers <= m.n_layers, "model.n_dense_layers",
            fmt::format("<= model.n_layers ({})", m.n_layers), fmt::format("{}", m.n_dense_layers));

  c.require(!(m.top_k == 1 && r.gate == "renorm"), "router.gate", "\"raw\" when model.top_k = 1",
            "\"renorm\"",
            "renormalising one selected score gives a constant gate of 1, so the router would get "
            "no gradient from the LM loss; set router.gate = \"raw\" or model.top_k >= 2");

  if (r.capacity_factor > 0) {
    // C = ceil(cf·N·K/E) must hold at least one token: cf·N·K/E >= 1. The relative slack lets the
    // printed minimum, read back, pass despite rounding in the product.
    double n = static_cast<double>(cfg.train.micro_batch) * static_cast<double>(m.seq_len);
    double slots = n * static_cast<double>(m.top_k);
    double e = static_cast<double>(m.n_experts);
    double min_cf = e / slots;
    c.require(r.capacity_factor * slots >= e * (1 - 1e-12), "router.capacity_factor",
              fmt::format("0 (dropless) or >= E/(N*K) = {}/({}*{}) = {}, so that the capacity "
                          "C = ceil(cf*N*K/E) is at least one token (N = train.micro_batch * "
                          "model.seq_len)",
                          m.n_experts, n, m.top_k, num(min_cf)),
              num(r.capacity_factor));
  }

  if (r.type == "sinkhorn" || r.type == "hash" || r.type == "optimal") {
    c.require(cfg.loss_free.update == "off", "loss_free.update",
              fmt::format("\"off\" with router.type = \"{}\"", r.type),
              fmt::format("\"{}\"", cfg.loss_free.update),
              "this router chooses experts without the loss-free bias, so the bias would have no "
              "effect; use router.type = \"topk\" or \"bip\" with it");
  }

  if (r.type == "expert_choice") {
    const char* why =
        "Expert Choice is balanced by construction (every expert takes exactly k tokens)";
    c.require(cfg.balance.terms.empty(), "balance.terms",
              "empty with router.type = \"expert_choice\"",
              fmt::format("{} term(s)", cfg.balance.terms.size()),
              fmt::format("{}; set balance.terms = []", why));
    c.require(r.z_loss_coef == 0, "router.z_loss_coef", "0 with router.type = \"expert_choice\"",
              num(r.z_loss_coef), "the z-loss is not implemented for Expert Choice");
    c.require(cfg.loss_free.update == "off", "loss_free.update",
              "\"off\" with router.type = \"expert_choice\"",
              fmt::format("\"{}\"", cfg.loss_free.update), why);
    c.require(r.capacity_factor == 0, "router.capacity_factor",
              "0 with router.type = \"expert_choice\"", num(r.capacity_factor),
              "Expert Choice's capacity is router.ec_capacity_factor");
    c.require(r.ec_group_order == "sequential" || r.ec_chunk > 0, "router.ec_chunk",
              "> 0 with router.ec_group_order = \"shuffled\"", fmt::format("{}", r.ec_chunk),
              "with one routing group (ec_chunk = 0) there is nothing to shuffle");
  }

  for (size_t i = 0; i < cfg.balance.terms.size(); ++i) {
    const BalanceTerm& b = cfg.balance.terms[i];
    if (b.group > 0) {
      c.require(b.scope == "global" || b.scope == "global-exact",
                fmt::format("balance.terms.{}.group", i),
                "0 unless the term's scope is \"global\" or \"global-exact\"",
                fmt::format("{} with scope \"{}\"", b.group, b.scope),
                "a group is a number of micro-batches that f is counted over");
      c.require(cfg.train.grad_accum % b.group == 0, fmt::format("balance.terms.{}.group", i),
                fmt::format("a divisor of train.grad_accum ({})", cfg.train.grad_accum),
                fmt::format("{}", b.group),
                "the step's micro-batches are split into groups of this size");
    }
    c.require(b.until_step == 0 || b.until_step > b.from_step,
              fmt::format("balance.terms.{}.until_step", i),
              fmt::format("0 (to the end) or > from_step ({})", b.from_step),
              fmt::format("{}", b.until_step), "the term applies in steps [from_step, until_step)");
  }

  const TrainConfig& t = cfg.train;
  c.require(t.warmup_steps <= t.steps, "train.warmup_steps",
            fmt::format("<= train.steps ({})", t.steps), fmt::format("{}", t.warmup_steps));

  c.require(cfg.data.source != "tokens" || !cfg.data.train_tokens.empty(), "data.train_tokens",
            "a token file path when data.source = \"tokens\"", "\"\"",
            "set data.train_tokens = \"path/to/train.bin\", or data.source = \"synthetic\"");
  c.require(cfg.data.source != "blend" || !cfg.data.blend.empty(), "data.blend",
            "\"w1 prefix1 w2 prefix2 ...\" when data.source = \"blend\"", "\"\"",
            "e.g. data.blend = \"1 data/demo/data/literature_train 1 data/demo/data/news_train\"");
  c.require(cfg.data.eos_id < cfg.model.vocab_size, "data.eos_id",
            fmt::format("< model.vocab_size ({})", cfg.model.vocab_size),
            fmt::format("{}", cfg.data.eos_id));
}

}  // namespace

void validate(const RunConfig& cfg_in, std::string_view origin) {
  Checker c(origin);
  RunConfig cfg = cfg_in;  // the schema binds mutable pointers
  // NaN slips through every "x > 0" below and inf through most, so reject both once, for all.
  // Text that is not UTF-8 would be written to config.toml, which could then not be read back;
  // a NUL (TOML's "\u0000") would silently cut a path short.
  auto utf8 = [&](std::string_view key, const std::string& v) {
    c.require(valid_utf8(v) && v.find('\0') == std::string::npos, key,
              "valid UTF-8 text without NUL characters", fmt::format("\"{}\"", escaped(v)),
              "config.toml is written as UTF-8 TOML, and a path ends at a NUL");
  };
  for (const Section& s : sections(cfg)) {
    for (const Field& f : s.fields) {
      if (const auto* p = std::get_if<double*>(&f.ptr)) {
        c.require(std::isfinite(**p), full_key(s.name, f.name), "a finite number", num(**p));
      }
      if (const auto* p = std::get_if<std::string*>(&f.ptr)) utf8(full_key(s.name, f.name), **p);
    }
  }
  for (size_t i = 0; i < cfg.balance.terms.size(); ++i) {
    double coef = cfg.balance.terms[i].coef;
    c.require(std::isfinite(coef), fmt::format("balance.terms.{}.coef", i), "a finite number",
              num(coef));
    utf8(fmt::format("balance.terms.{}.type", i), cfg.balance.terms[i].type);
    utf8(fmt::format("balance.terms.{}.scope", i), cfg.balance.terms[i].scope);
  }
  c.require(!cfg.out_dir.empty(), "out_dir", "a directory path", "\"\"",
            "e.g. out_dir = \"runs/tiny\"");
  check_model(c, cfg.model);
  check_router(c, cfg.router);
  check_balance(c, cfg.balance);
  check_loss_free(c, cfg.loss_free);
  check_train(c, cfg.train);
  check_data_and_system(c, cfg.data, cfg.system);
  check_parallel(c, cfg.parallel, cfg.model, cfg.router);
  check_cross_field(c, cfg);
}

}  // namespace sy::config_schema
