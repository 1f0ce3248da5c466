// Experiments: one file, one paper claim. An experiment file names a base run config, overrides
// shared by all its runs, and the runs (each a name and its own overrides); `switchyard
// experiment FILE` trains every run in turn (each resumes from its checkpoint, a finished run is
// skipped) and writes one report comparing them. Format (docs/experiments.md):
//
//   description = "what the experiment shows"
//   claim = "the paper's claim, with the reference"
//   base = "../demo.toml"              # relative to this file
//   out_dir = "runs/exp/global-vs-micro"  # runs go to out_dir/<name>, the report to out_dir/report
//   set = ["train.steps=600"]          # overrides for every run
//   [[runs]]
//   name = "micro"
//   set = ["balance.terms.0.scope=micro"]
//
// Every run's config is resolved and validated when the file is loaded, before any training.
// Not thread-safe; no global state.
#pragma once

#include <string>
#include <vector>

#include "config/run_config.h"

namespace sy {

struct ExperimentRun {
  std::string name;
  std::vector<std::string> overrides;  // base file's, then the experiment's, run's, caller's
  RunConfig config;                    // resolved and validated; out_dir = <out_dir>/<name>
};

struct Experiment {
  std::string path, description, claim, base, out_dir;
  std::vector<ExperimentRun> runs;
};

// Loads and validates an experiment file. extra_overrides apply to every run after the file's
// own (e.g. {"train.steps=50"} for a quick look). only: run names to keep (empty = all; an
// unknown name is an error listing the runs). out_dir: replaces the file's out_dir (empty =
// keep). Errors name the file, the run and the key.
Experiment load_experiment(const std::string& path,
                           const std::vector<std::string>& extra_overrides = {},
                           const std::vector<std::string>& only = {},
                           const std::string& out_dir = {});

}  // namespace sy
