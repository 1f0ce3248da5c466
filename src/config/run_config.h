// A run's whole configuration: what `switchyard train --config run.toml --set k=v` produces.
//
// Plain structs with defaults; load_run_config() parses TOML, applies --set overrides, and
// validates every field (errors name the key, the value and what is allowed; unknown keys are
// rejected with the closest valid name). Every key is documented in docs/config.md.
// Values only: safe to copy and to read from several threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/model_config.h"

namespace sy {

struct RouterConfig {
  // "topk" | "bip" | "sinkhorn" | "hash" | "optimal" | "expert_choice"
  std::string type = "topk";
  // "auto" | "softmax" | "sigmoid". auto: sigmoid with the loss-free bias (its paper's finding,
  // ALGORITHMS.md §3), softmax otherwise; resolved by resolve_defaults.
  std::string score = "auto";
  std::string gate = "renorm";            // "renorm" | "raw" | "uniform"
  double gate_scale = 1.0;                // > 0
  double capacity_factor = 0.0;           // 0 = dropless; else C = ceil(cf·N·K/E) per micro-batch
  std::string drop_policy = "probs";      // "probs" | "position" (only with capacity)
  double z_loss_coef = 0.0;               // router z-loss coefficient; 0 = off (1e-3 typical)
  int64_t bip_iterations = 2;             // BIP: coordinate-minimisation iterations per call (T)
  std::string bip_mode = "as-published";  // BIP: "as-published" | "causal"
  int64_t sinkhorn_iterations = 8;        // S-BASE: Sinkhorn iterations
  uint64_t hash_seed = 0;                 // hash routing: which hash of the family
  double ec_capacity_factor = 0.0;        // Expert Choice: experts per token on average; 0 = top_k
  int64_t ec_chunk = 0;  // Expert Choice: tokens per routing group; 0 = micro-batch
  std::string ec_group_order = "sequential";  // Expert Choice: "sequential" | "shuffled" groups
  double ec_threshold_decay = 0.99;           // Expert Choice: EMA decay of the causal thresholds
  double sinkhorn_eval_decay = 0.99;  // Sinkhorn: EMA decay of the causal evaluation's potentials
  int64_t oracle_every = 0;           // every N steps, the optimality gap of the routing; 0 = off
  // Device-limited routing: each token's experts on at most this many ranks (groups of E/G
  // experts, G = rank_groups or parallel.ep); 0 = off. top-K and BIP only.
  int64_t max_ranks_per_token = 0;
  int64_t rank_groups = 0;  // G without expert parallelism; 0 = parallel.ep
};

// One balancing term: (type, scope, coefficient). Issue 2 implements type "lbl", scope "micro".
struct BalanceTerm {
  std::string type = "lbl";
  std::string scope = "micro";
  double coef = 0.01;  // α
  // global / global-exact: f over groups of this many consecutive micro-batches of the step
  // (on every rank), so the balance BSZ is micro_batch·group·ranks at a fixed global batch;
  // 0 = the whole step (grad_accum).
  int64_t group = 0;
  // The term applies in steps [from_step, until_step) (0-based: steps completed before it);
  // until_step = 0: to the end. Two terms with adjoining ranges switch scope mid-run.
  int64_t from_step = 0;
  int64_t until_step = 0;
};

struct BalanceConfig {
  std::vector<BalanceTerm> terms = {BalanceTerm{}};  // empty = no balancing loss
};

// The auxiliary-loss-free balancer (Wang et al. 2024): a per-expert selection bias moved toward
// balance after every optimizer step. ALGORITHMS.md §3, docs/routing.md.
struct LossFreeConfig {
  std::string update = "off";   // "off" | "sign" | "proportional"
  double rate = 1e-3;           // u, the update rate
  std::string center = "none";  // "none" | "mean" (subtract the mean of each update)
  int64_t freeze_after = 0;     // no updates after this many steps; 0 = never
};

struct TrainConfig {
  int64_t micro_batch = 8;    // B, sequences per micro-batch
  int64_t grad_accum = 1;     // micro-batches per optimizer step
  int64_t steps = 100;        // optimizer steps
  double lr = 1e-3;           // peak learning rate
  double min_lr_ratio = 0.1;  // cosine floor as a fraction of lr
  int64_t warmup_steps = 10;  // linear warmup from 0
  double weight_decay = 0.1;  // decoupled (AdamW); never applied to norm weights
  double beta1 = 0.9;
  double beta2 = 0.95;
  double adam_eps = 1e-8;
  double grad_clip = 1.0;        // global-norm clip; 0 = off
  uint64_t seed = 1234;          // initialisation and data order
  int64_t eval_every = 50;       // steps between evaluations; 0 = only at the end
  int64_t eval_batches = 4;      // micro-batches per evaluation
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0 = only at the end
  // "async": a periodic checkpoint's files are written at its step and reach the disk (fsync,
  // checksums, commit, `latest`) while training goes on; "sync": training waits for all of it.
  // The last checkpoint of a run (its end, a stop signal, --stop-after) always waits.
  std::string checkpoint_mode = "async";
  int64_t log_every = 1;  // steps between terminal progress lines
};

struct DataConfig {
  std::string source = "synthetic";  // "synthetic" | "tokens" | "blend"
  std::string train_tokens;          // raw little-endian int32 token file (source = "tokens")
  std::string valid_tokens;          // same format; empty = hold out from the synthetic stream
  uint64_t synthetic_seed = 42;      // the synthetic generator's seed (see docs/data.md)
  // source = "blend": Megatron-LM indexed datasets, one per domain.
  std::string blend;                  // "w1 prefix1 w2 prefix2 ..." (Megatron's --data-path)
  std::string valid;                  // "prefix1 prefix2 ...": validation datasets, one per domain
  std::string composition = "mixed";  // "mixed" | "domain-pure" micro-batches
  int64_t eos_id = 2;                 // appended after every document (SentencePiece's </s>)
};

struct SystemConfig {
  int64_t threads = 2;        // OpenMP threads (kernels and BLAS share one pool)
  std::string gemm = "auto";  // "auto" | "onednn" | "openblas" | "mixed" (core/gemm.h)
  // "fp32" | "bf16": the weight GEMMs in bf16 with fp32 accumulation (core/gemm_bf16.h,
  // docs/model.md); needs AVX512-BF16.
  std::string precision = "fp32";
};

// How ranks share the work besides data parallelism (docs/distributed.md).
struct ParallelConfig {
  // Expert parallelism: groups of ep ranks each hold E/ep of every MoE layer's experts; ep must
  // divide model.n_experts and the number of ranks. 1 = every rank holds every expert.
  int64_t ep = 1;
};

struct RunConfig {
  std::string out_dir = "runs/default";  // metrics.jsonl, checkpoints/, config.toml (resolved)
  ModelConfig model;
  RouterConfig router;
  BalanceConfig balance;
  LossFreeConfig loss_free;
  TrainConfig train;
  DataConfig data;
  SystemConfig system;
  ParallelConfig parallel;
};

// Parses a TOML file (path), applies overrides of the form "section.key=value" in order, and
// validates. Throws sy::Error naming the file, key, value and what is allowed.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same, from TOML text (tests; `origin` names the source in messages).
RunConfig parse_run_config(const std::string& toml_text,
                           const std::vector<std::string>& overrides = {},
                           const std::string& origin = "<string>");
// Validates cross-field constraints (K ≤ E, D % H, capacity ≥ 1 token, K=1 with renorm, ...).
void validate(const RunConfig& cfg);

// The config with its context-dependent defaults made explicit (router.score = "auto" →
// "sigmoid" when loss_free.update is not "off", else "softmax"). parse_run_config and train()
// apply it, so every written config.toml holds the values the run used. Idempotent.
RunConfig resolve_defaults(RunConfig cfg);
// The resolved config as TOML (written beside every run so it can be re-run exactly).
std::string to_toml(const RunConfig& cfg);
// `s` as a TOML basic string: quoted, with '"', '\' and control characters escaped, so that
// "key=" + toml_quote(s) is an override that sets the string key to exactly s.
std::string toml_quote(std::string_view s);

// The keys that define the trained model and how it routes and balances: every key of [model],
// [router], [loss_free] and [balance] (terms as "balance.terms.<i>.<key>"), in file order, from the
// schema, so a key added there is guarded here with no second list. A resumed run must keep all
// of them (docs/training.md, "Resuming"); checkpoints record them in config.json.
using ConfigValue = std::variant<int64_t, uint64_t, double, std::string>;
struct ConfigEntry {
  std::string key;  // dotted: "router.ec_group_order"
  ConfigValue value;
};
std::vector<ConfigEntry> model_entries(const RunConfig& cfg);
// One line per model entry that differs between a checkpoint's config and the given one, e.g.
// `router.ec_group_order: "sequential" in the checkpoint, "shuffled" given`; empty if none.
std::vector<std::string> resume_conflicts(const RunConfig& saved, const RunConfig& given);

}  // namespace sy
