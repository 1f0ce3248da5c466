// Experiments: one file, one paper claim. An experiment file names a base run config, overrides
// shared by all its runs, and the runs — the arms — each a name and its own overrides;
// `switchyard experiment FILE` trains every arm with N seeds (each run resumes from its
// checkpoint, a finished run is skipped) and writes one report comparing them, with statistics
// over the seeds and a verdict for each of the file's claims. Format (docs/experiments.md):
//
//   description = "what the experiment shows"
//   claim = "the paper's claim, with the reference"
//   base = "../demo.toml"              # relative to this file
//   out_dir = "runs/exp/global-vs-micro"  # runs go to out_dir/<name>, the report to out_dir/report
//   set = ["train.steps=600"]          # overrides for every run
//   seeds = 3                          # optional (default 1); --seeds wins
//   reference = "micro"                # optional: the arm others are compared with (default:
//   first) target_loss = 5.4                  # optional: validation loss for steps/seconds to
//   target
//   [[runs]]
//   name = "micro"
//   set = ["balance.terms.0.scope=micro"]
//   [[claims]]                         # optional, repeatable: checkable statements
//   metric = "final_loss"              # kClaimMetrics, domain.<d>.<m> or specialisation.layer<l>
//   better = "lower"                   # "lower" | "higher"
//   arm = "global"
//   reference = "micro"                # optional (default: the experiment's reference) ...
//   # value = 0.0                      # ... or a constant instead of a reference arm
//   text = "global-batch LBL lowers perplexity"   # optional
//
// Seeds: with N = 1, arm <name> trains in out_dir/<name> (as before seeds existed). With N > 1,
// seed k (1..N) of every arm trains in out_dir/<name>/seed-<k> with train.seed = s + k - 1 and,
// when the data source is synthetic, data.synthetic_seed = d + k - 1 (s, d: the arm's resolved
// values), so seed k of every arm sees the same data order and, where the parameter table is the
// same, the same initial weights (the paired design).
//
// Every run's config is resolved and validated, and every claim checked, when the file is loaded,
// before any training. Not thread-safe; no global state.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/run_config.h"

namespace sy {

// The per-run metrics a claim may name besides the families domain.<d>.<m> (m one of
// kDomainMetrics) and specialisation.layer<l>. scripts/stats.py computes them; docs/experiments.md
// defines them.
inline constexpr std::string_view kClaimMetrics[] = {"final_loss",
                                                     "final_perplexity",
                                                     "best_loss",
                                                     "best_perplexity",
                                                     "final_loss_causal",
                                                     "causal_gap",
                                                     "specialisation",
                                                     "avg_maxvio",
                                                     "avg_maxvio_first100",
                                                     "avg_maxvio_last_third",
                                                     "sup_maxvio",
                                                     "sup_maxvio_first100",
                                                     "sup_maxvio_last_third",
                                                     "maxvio_global",
                                                     "dead_experts",
                                                     "steps_to_target",
                                                     "seconds_to_target",
                                                     "steps_to_target_causal",
                                                     "seconds_to_target_causal",
                                                     "tokens_per_s",
                                                     "wall_seconds",
                                                     "oracle_objective_gap",
                                                     "oracle_dual_gap"};
inline constexpr std::string_view kDomainMetrics[] = {"final_loss", "final_perplexity", "best_loss",
                                                      "best_perplexity"};

// One checkable statement: `metric` of arm `arm` is `better` than that of arm `reference`, seed by
// seed (a paired difference), or than the constant `value`. The verdict rule is the report's
// (docs/experiments.md).
struct ExperimentClaim {
  std::string metric;
  std::string better;  // "lower" | "higher"
  std::string arm;
  std::string reference;  // empty when value is set
  std::optional<double> value;
  std::string text;  // what the claim says, shown with its verdict
};

struct ExperimentRun {
  std::string name;  // the arm: a [[runs]] name
  int seed = 0;      // 1..N with N > 1 seeds; 0 with one seed (no seed-<k> directory)
  std::vector<std::string> overrides;  // base file's, then the experiment's, run's, caller's
  RunConfig config;                    // resolved and validated; out_dir as above
  // "name", or "name/seed-k" with several seeds: the run's directory below out_dir.
  std::string label() const;
};

struct ExperimentOptions {
  std::vector<std::string> overrides = {};  // every run, after the file's own (--set)
  std::vector<std::string> only = {};       // arm names to keep (empty = all; unknown: an error)
  std::string out_dir = {};                 // replaces the file's out_dir (empty = keep)
  int seeds = 0;                            // > 0 replaces the file's `seeds` (--seeds)
  // --quick: a smoke configuration (kQuickOverrides after the file's overrides, before the
  // caller's); out_dir defaults to the file's out_dir + "-quick"; the file's target_loss is
  // ignored; claims naming a domain the quick data lacks are dropped with a note.
  bool quick = false;
};

// The overrides --quick applies: the synthetic corpus (no data files needed), a narrow model
// (layers, experts and top-K kept, so every arm's routing stays as designed) and 30 steps with
// an evaluation every 5, on one thread (at this size more threads only synchronise, and a
// loaded machine makes them wait).
inline constexpr std::string_view kQuickOverrides[] = {
    "data.source=\"synthetic\"", "model.vocab_size=512", "model.d_model=64",
    "model.n_heads=2",           "model.d_expert=64",    "model.d_shared=0",
    "model.d_dense=128",         "model.seq_len=64",     "train.steps=30",
    "train.warmup_steps=3",      "train.eval_every=5",   "train.eval_batches=4",
    "train.checkpoint_every=0",  "train.log_every=10",   "system.threads=1"};

struct Experiment {
  std::string path, description, claim, base, out_dir;
  int seeds = 1;
  bool quick = false;
  std::string reference;              // the reference arm (present in `arms`, or empty)
  std::optional<double> target_loss;  // none: the report derives it from the reference arm
  std::vector<std::string> arms;      // arm names in file order (after --only)
  std::vector<ExperimentClaim> claims;
  std::vector<std::string> notes;   // what was left out (claims dropped by --only or --quick)
  std::vector<ExperimentRun> runs;  // seed-major: every arm of seed 1, then of seed 2, ...
};

// Loads and validates an experiment file. Errors name the file, the run or claim and the key.
Experiment load_experiment(const std::string& path, const ExperimentOptions& options);
// The same with (--set overrides, --only names, --out directory) and one seed unless the file
// says otherwise.
Experiment load_experiment(const std::string& path,
                           const std::vector<std::string>& extra_overrides = {},
                           const std::vector<std::string>& only = {},
                           const std::string& out_dir = {});

// The experiment as JSON for scripts/report.py and scripts/stats.py (written to
// <out_dir>/experiment.json): the file, seeds, reference, target, claims and every run's
// directory and seeds. `command` is recorded as given.
std::string experiment_manifest_json(const Experiment& x, const std::string& command);

}  // namespace sy
