// Checkpoint manifests (src/io/checkpoint_dir.h): verify_checkpoint over a directory whose
// manifest.json is the input. The directory also holds two files with fixed contents, so a
// manifest naming them with the right sizes and SHA-256 verifies (fuzz/corpus/manifest has such
// seeds; scripts/fuzz-seeds.sh writes them):
//   config.toml          "out_dir = \"runs/fuzz\"\n"
//   trainer_state.json   "{}\n"
#include <string>

#include "core/error.h"
#include "fuzz_util.h"
#include "io/checkpoint_dir.h"

namespace {

const std::string& checkpoint_dir() {
  static const std::string dir = [] {
    const std::string d = sy::fuzz::scratch_dir() + "/step_1";
    std::filesystem::create_directories(d);
    sy::fuzz::write_file(d + "/config.toml", "out_dir = \"runs/fuzz\"\n");
    sy::fuzz::write_file(d + "/trainer_state.json", "{}\n");
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = checkpoint_dir();
  sy::fuzz::write_file(dir + "/" + sy::io::kManifestName, data, size);
  try {
    const auto files = sy::io::verify_checkpoint(dir);
    for (const auto& [name, e] : files) {
      SY_FUZZ_ASSERT(name == "config.toml" || name == "trainer_state.json",
                     "verified a file that does not exist: '%s'", name.c_str());
      SY_FUZZ_ASSERT(e.bytes >= 0 && e.sha256.size() == 64, "entry %s", name.c_str());
    }
  } catch (const sy::Error&) {
  }
  return 0;
}
