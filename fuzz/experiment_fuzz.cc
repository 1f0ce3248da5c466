// Experiment files (src/train/experiment.h): `switchyard experiment FILE`. Input: the file,
// loaded from configs/experiments/ of a scratch copy of the repository's configs/, so that
// `base = "../demo.toml"` and the other bases the shipped experiments name resolve. Every run of
// an accepted experiment must hold a valid config whose out_dir is <out_dir>/<run label>, and
// the experiment must convert to its experiment.json.
#include <nlohmann/json.hpp>
#include <string>

#include "config_check.h"
#include "core/error.h"
#include "fuzz_util.h"
#include "train/experiment.h"

namespace {

const std::string& experiment_path() {
  static const std::string path = [] {
    namespace fs = std::filesystem;
    const fs::path configs = fs::path(sy::fuzz::scratch_dir()) / "configs";
    fs::create_directories(configs / "experiments");
    for (const auto& e : fs::directory_iterator(SY_SOURCE_DIR "/configs"))
      if (e.is_regular_file()) fs::copy_file(e.path(), configs / e.path().filename());
    return (configs / "experiments" / "fuzz.toml").string();
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = experiment_path();
  sy::fuzz::write_file(path, data, size);
  sy::Experiment x;
  try {
    x = sy::load_experiment(path);
  } catch (const sy::Error&) {
    return 0;
  }
  SY_FUZZ_ASSERT(!x.runs.empty(), "an experiment without runs was accepted");
  for (const sy::ExperimentRun& r : x.runs) {
    const std::string label = r.label();
    SY_FUZZ_ASSERT(r.config.out_dir == x.out_dir + "/" + label,
                   "run %s: out_dir must be '%s/%s', got '%s'", label.c_str(), x.out_dir.c_str(),
                   label.c_str(), r.config.out_dir.c_str());
    sy::fuzz::check_config(r.config);
  }
  std::string manifest;
  try {
    manifest = sy::experiment_manifest_json(x, "switchyard experiment fuzz.toml");
  } catch (const sy::Error&) {
    return 0;
  }
  // scripts/report.py and scripts/stats.py read it with Python's json module.
  SY_FUZZ_ASSERT(nlohmann::json::accept(manifest), "experiment.json is not JSON:\n%s",
                 manifest.c_str());
  return 0;
}
