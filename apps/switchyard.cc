// The switchyard command line: train and evaluate MoE language models.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "config/run_config.h"
#include "core/error.h"
#include "train/trainer.h"

namespace {

int run(int argc, char** argv) {
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
      "with a checkpoint.");
  train->add_option("--config,-c", config_path, "run config (TOML); see docs/config.md")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option(
      "--set,-s", overrides,
      "override a config key, e.g. --set model.n_experts=8 --set router.score=sigmoid "
      "(repeatable)");
  train->add_flag("--quiet,-q", quiet, "no progress lines");

  std::string ckpt, tokens;
  int64_t max_sequences = 0, threads = 2;
  CLI::App* eval = app.add_subcommand(
      "eval",
      "Evaluate a checkpoint on a token file; prints JSON with the mean loss, perplexity and "
      "per-layer MaxVio over the whole file.");
  eval->add_option("--checkpoint", ckpt,
                   "checkpoint directory (e.g. runs/x/checkpoints/step_00000100)")
      ->required()
      ->check(CLI::ExistingDirectory);
  eval->add_option("--tokens", tokens,
                   "raw little-endian int32 token ids, read as consecutive sequences of seq_len+1")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--max-sequences", max_sequences,
                   "evaluate at most this many sequences (0 = all)")
      ->check(CLI::NonNegativeNumber);
  eval->add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*train) {
    sy::RunConfig cfg = sy::load_run_config(config_path, overrides);
    sy::TrainResult r = sy::train(cfg, {.quiet = quiet});
    return r.interrupted ? 130 : 0;
  }
  if (*eval) {
    sy::EvalResult r = sy::evaluate_checkpoint(ckpt, tokens, max_sequences, threads);
    nlohmann::json j = {{"checkpoint", ckpt},
                        {"tokens_file", tokens},
                        {"loss", r.loss},
                        {"perplexity", r.perplexity},
                        {"tokens", r.tokens},
                        {"sequences", r.sequences},
                        {"maxvio_global", r.maxvio_global},
                        {"load", r.load}};
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const sy::Error& e) {
    std::fprintf(stderr, "switchyard: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switchyard: internal error: %s\n", e.what());
    return 2;
  }
}
