#include "train/experiment.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

// An experiment file over configs/tiny.toml, written to a temporary directory.
std::string write_experiment(const std::string& name, const std::string& body) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("sy_experiment_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string base = std::string(SY_SOURCE_DIR) + "/configs/tiny.toml";
  const fs::path file = dir / "exp.toml";
  std::ofstream(file) << "base = \"" << fs::relative(base, dir).string() << "\"\n" << body;
  return file.string();
}

std::string error_of(const std::string& path, const std::vector<std::string>& extra = {},
                     const std::vector<std::string>& only = {}) {
  try {
    load_experiment(path, extra, only);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ExperimentTest, ResolvesEveryRunWithOverridesInOrder) {
  const std::string path = write_experiment("ok", R"(
description = "two scopes"
out_dir = "runs/x"
set = ["train.steps=7", "model.n_experts=8"]
[[runs]]
name = "micro"
[[runs]]
name = "global"
set = ["balance.terms.0.scope=global", "train.steps=9"]
)");
  Experiment x = load_experiment(path, {"train.grad_accum=3"});
  EXPECT_EQ(x.description, "two scopes");
  ASSERT_EQ(x.runs.size(), 2u);
  EXPECT_EQ(x.runs[0].name, "micro");
  EXPECT_EQ(x.runs[0].config.out_dir, "runs/x/micro");
  EXPECT_EQ(x.runs[0].config.train.steps, 7);
  EXPECT_EQ(x.runs[0].config.model.n_experts, 8);
  EXPECT_EQ(x.runs[0].config.balance.terms[0].scope, "micro");
  EXPECT_EQ(x.runs[1].config.balance.terms[0].scope, "global");
  EXPECT_EQ(x.runs[1].config.train.steps, 9);  // the run's own setting wins over the common one
  for (const auto& r : x.runs) EXPECT_EQ(r.config.train.grad_accum, 3);  // the caller's last
  Experiment one = load_experiment(path, {}, {"global"}, "runs/quick");
  ASSERT_EQ(one.runs.size(), 1u);
  EXPECT_EQ(one.runs[0].name, "global");
  EXPECT_EQ(one.runs[0].config.out_dir, "runs/quick/global");
}

TEST(ExperimentTest, BadFilesAreRefusedNamingTheProblem) {
  const std::string head = "out_dir = \"runs/x\"\n";
  EXPECT_NE(error_of(write_experiment("norun", head)).find("needs at least one [[runs]]"),
            std::string::npos);
  EXPECT_NE(
      error_of(write_experiment("key", head + "colour = 1\n[[runs]]\nname = \"a\"\n"))
          .find("unknown key `colour`; allowed: description, claim, base, out_dir, set, runs"),
      std::string::npos);
  EXPECT_NE(error_of(write_experiment("dup", head + "[[runs]]\nname = \"a\"\n[[runs]]\nname = "
                                                    "\"a\"\n"))
                .find("the run name \"a\" is used twice"),
            std::string::npos);
  EXPECT_NE(error_of(write_experiment("slash", head + "[[runs]]\nname = \"a/b\"\n"))
                .find("must be letters, digits"),
            std::string::npos);
  // A bad override names the run, the key and what is allowed.
  const std::string msg = error_of(
      write_experiment("bad", head + "[[runs]]\nname = \"b\"\nset = [\"router.score=tanh\"]\n"));
  EXPECT_NE(msg.find("run \"b\": "), std::string::npos) << msg;
  EXPECT_NE(msg.find("router.score must be one of"), std::string::npos) << msg;
  EXPECT_NE(error_of(write_experiment("only", head + "[[runs]]\nname = \"a\"\n"), {}, {"z"})
                .find("--only z: no such run; the runs are: a"),
            std::string::npos);
  EXPECT_NE(error_of("/nonexistent/exp.toml").find("must be a regular file"), std::string::npos);
}

// Every experiment shipped in configs/experiments/ resolves and validates.
TEST(ExperimentTest, ShippedExperimentsAreValid) {
  const fs::path dir = fs::path(SY_SOURCE_DIR) / "configs" / "experiments";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".toml") continue;
    Experiment x = load_experiment(e.path().string());
    EXPECT_GE(x.runs.size(), 2u) << e.path();
    EXPECT_FALSE(x.claim.empty()) << e.path();
    ++n;
  }
  EXPECT_GE(n, 4);
}

}  // namespace
}  // namespace sy
