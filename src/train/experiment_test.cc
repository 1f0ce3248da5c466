#include "train/experiment.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

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

// Found by fuzz/experiment_fuzz (fuzz/regressions/experiment/): each run's out_dir went through
// the override `out_dir="<out_dir>/<name>"` unescaped, so a '"' in out_dir made the override
// fail to parse and the quotes became part of the path, and a '\' started an escape
// ('runs\u0041' became "runsA").
TEST(ExperimentTest, RunOutDirIsExactlyOutDirSlashNameWhateverItsCharacters) {
  for (const std::string out_dir :
       {R"(runs/a"b)", R"(runs\x)", R"(runs\u0041)", "runs/tab\tend", R"(C:\runs\"q"\)"}) {
    const std::string path =
        write_experiment("quote", "out_dir = '''" + out_dir + "'''\n[[runs]]\nname = \"r\"\n");
    const Experiment x = load_experiment(path);
    ASSERT_EQ(x.runs.size(), 1u);
    EXPECT_EQ(x.out_dir, out_dir);
    EXPECT_EQ(x.runs[0].config.out_dir, out_dir + "/r");
  }
}

TEST(ExperimentTest, BadFilesAreRefusedNamingTheProblem) {
  const std::string head = "out_dir = \"runs/x\"\n";
  EXPECT_NE(error_of(write_experiment("norun", head)).find("needs at least one [[runs]]"),
            std::string::npos);
  EXPECT_NE(
      error_of(write_experiment("key", head + "colour = 1\n[[runs]]\nname = \"a\"\n"))
          .find("unknown key `colour`; allowed: description, claim, base, out_dir, set, seeds, "
                "reference, target_loss, runs, claims"),
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

const char* kTwoArms = R"(
out_dir = "runs/x"
[[runs]]
name = "micro"
[[runs]]
name = "global"
set = ["balance.terms.0.scope=global"]
)";

TEST(ExperimentTest, OneSeedKeepsTheRunDirectoriesAndSeedsOfBefore) {
  const Experiment x = load_experiment(write_experiment("one_seed", kTwoArms));
  EXPECT_EQ(x.seeds, 1);
  ASSERT_EQ(x.runs.size(), 2u);
  EXPECT_EQ(x.runs[0].seed, 0);
  EXPECT_EQ(x.runs[0].label(), "micro");
  EXPECT_EQ(x.runs[0].config.out_dir, "runs/x/micro");
  EXPECT_EQ(x.runs[0].config.train.seed, 1234u);  // the base file's
  EXPECT_EQ(x.runs[0].config.data.synthetic_seed, 42u);
  EXPECT_EQ(x.reference, "micro");  // the first run by default
  EXPECT_EQ(x.arms, (std::vector<std::string>{"micro", "global"}));
}

// Seed k of every arm: the same seeds (paired), its own directory; seed-major order so that an
// interrupted experiment has whole seeds done.
TEST(ExperimentTest, SeedsPairArmsSeedBySeed) {
  const std::string path = write_experiment("seeds", std::string("seeds = 2\n") + kTwoArms);
  const Experiment x = load_experiment(path, ExperimentOptions{.overrides = {"train.seed=100"}});
  EXPECT_EQ(x.seeds, 2);
  ASSERT_EQ(x.runs.size(), 4u);
  const char* labels[] = {"micro/seed-1", "global/seed-1", "micro/seed-2", "global/seed-2"};
  for (size_t i = 0; i < 4; ++i) {
    const ExperimentRun& r = x.runs[i];
    EXPECT_EQ(r.label(), labels[i]);
    EXPECT_EQ(r.seed, static_cast<int>(i / 2 + 1));
    EXPECT_EQ(r.config.out_dir, std::string("runs/x/") + labels[i]);
    EXPECT_EQ(r.config.train.seed, 100u + i / 2);          // the caller's seed + k - 1
    EXPECT_EQ(r.config.data.synthetic_seed, 42u + i / 2);  // synthetic data: its order too
  }
  EXPECT_EQ(x.runs[1].config.balance.terms[0].scope, "global");
  // --seeds wins over the file's.
  EXPECT_EQ(load_experiment(path, ExperimentOptions{.seeds = 3}).runs.size(), 6u);
  EXPECT_EQ(load_experiment(path, ExperimentOptions{.seeds = 1}).runs[0].config.out_dir,
            "runs/x/micro");
}

TEST(ExperimentTest, QuickIsASmallSyntheticRunInItsOwnDirectory) {
  const std::string path = write_experiment(
      "quick",
      std::string("target_loss = 3.5\nset = [\"data.source=\\\"tokens\\\"\", "
                  "\"data.train_tokens=\\\"/nonexistent.bin\\\"\", \"train.steps=900\"]\n") +
          kTwoArms);
  const Experiment x =
      load_experiment(path, ExperimentOptions{.overrides = {"train.steps=12"}, .quick = true});
  EXPECT_TRUE(x.quick);
  EXPECT_EQ(x.out_dir, "runs/x-quick");
  EXPECT_FALSE(x.target_loss.has_value());  // the full runs' target means nothing here
  ASSERT_EQ(x.notes.size(), 1u);
  EXPECT_NE(x.notes[0].find("target_loss = 3.5 ignored"), std::string::npos);
  for (const ExperimentRun& r : x.runs) {
    EXPECT_EQ(r.config.data.source, "synthetic");
    EXPECT_EQ(r.config.model.d_model, 64);
    EXPECT_EQ(r.config.train.steps, 12);  // the caller's --set comes after --quick's
    EXPECT_EQ(r.config.train.eval_every, 5);
    EXPECT_EQ(r.config.out_dir, "runs/x-quick/" + r.name);
  }
  EXPECT_EQ(load_experiment(path, ExperimentOptions{.out_dir = "q", .quick = true})
                .runs[0]
                .config.out_dir,
            "q/micro");
  const std::string slash =
      write_experiment("quick_slash", "out_dir = \"runs/y/\"\n[[runs]]\nname = \"a\"\n");
  EXPECT_EQ(load_experiment(slash, ExperimentOptions{.quick = true}).out_dir, "runs/y-quick");
}

const char* kClaims = R"(
[[claims]]
metric = "final_loss"
better = "lower"
arm = "global"
text = "global lowers the loss"
[[claims]]
metric = "causal_gap"
better = "higher"
arm = "micro"
value = 0
[[claims]]
metric = "specialisation.layer1"
better = "higher"
arm = "micro"
reference = "global"
[[claims]]
metric = "domain.synthetic_2.best_perplexity"
better = "lower"
arm = "global"
)";

TEST(ExperimentTest, ClaimsAreReadWithTheirDefaultsAndWrittenToTheManifest) {
  const std::string path = write_experiment(
      "claims",
      std::string("seeds = 2\ntarget_loss = 4\nreference = \"micro\"\n") + kTwoArms + kClaims);
  const Experiment x = load_experiment(path);
  ASSERT_EQ(x.claims.size(), 4u);
  EXPECT_EQ(x.claims[0].metric, "final_loss");
  EXPECT_EQ(x.claims[0].reference, "micro");  // the experiment's reference
  EXPECT_EQ(x.claims[0].text, "global lowers the loss");
  EXPECT_EQ(x.claims[1].value, 0.0);
  EXPECT_TRUE(x.claims[1].reference.empty());
  EXPECT_EQ(x.claims[2].reference, "global");
  EXPECT_EQ(x.target_loss, 4.0);

  const nlohmann::json m =
      nlohmann::json::parse(experiment_manifest_json(x, "switchyard experiment f"));
  EXPECT_EQ(m["seeds"], 2);
  EXPECT_EQ(m["reference"], "micro");
  EXPECT_EQ(m["target_loss"], 4.0);
  EXPECT_EQ(m["command"], "switchyard experiment f");
  ASSERT_EQ(m["arms"].size(), 2u);
  EXPECT_EQ(m["arms"][1]["name"], "global");
  ASSERT_EQ(m["arms"][1]["runs"].size(), 2u);
  EXPECT_EQ(m["arms"][1]["runs"][1]["dir"], "global/seed-2");  // relative to out_dir
  EXPECT_EQ(m["arms"][1]["runs"][1]["seed"], 2);
  EXPECT_EQ(m["arms"][1]["runs"][1]["train_seed"], 1235);
  ASSERT_EQ(m["claims"].size(), 4u);
  EXPECT_EQ(m["claims"][0]["reference"], "micro");
  EXPECT_EQ(m["claims"][1]["value"], 0.0);
  EXPECT_FALSE(m["claims"][1].contains("reference"));

  // With one seed a run's pairing key is seed 1 and its directory the arm's.
  const nlohmann::json one = nlohmann::json::parse(
      experiment_manifest_json(load_experiment(path, ExperimentOptions{.seeds = 1}), ""));
  EXPECT_EQ(one["arms"][0]["runs"][0]["dir"], "micro");
  EXPECT_EQ(one["arms"][0]["runs"][0]["seed"], 1);
}

TEST(ExperimentTest, OnlyAndQuickLeaveOutClaimsTheyCannotCheckWithANote) {
  const std::string path = write_experiment(
      "claims_drop", std::string(kTwoArms) + kClaims +
                         "[[claims]]\nmetric = \"domain.literature.final_loss\"\nbetter = "
                         "\"lower\"\narm = \"global\"\n");
  // tiny.toml's synthetic data has no domain "literature": an error ...
  EXPECT_NE(error_of(path).find("claims[4]: `metric` \"domain.literature.final_loss\" names the "
                                "domain \"literature\"; the run's data has synthetic_0"),
            std::string::npos)
      << error_of(path);
  // ... but --quick replaces a corpus by synthetic data: such claims are dropped, noted.
  const Experiment q = load_experiment(path, ExperimentOptions{.quick = true});
  EXPECT_EQ(q.claims.size(), 4u);
  ASSERT_EQ(q.notes.size(), 1u);
  EXPECT_NE(q.notes[0].find("--quick: claim 4 (domain.literature.final_loss of global) left out"),
            std::string::npos);
  // --only global: the claims involving micro (the reference) go, and there is no reference.
  const Experiment o =
      load_experiment(write_experiment("claims_only", std::string(kTwoArms) + kClaims),
                      ExperimentOptions{.only = {"global"}});
  EXPECT_EQ(o.claims.size(), 0u);
  EXPECT_TRUE(o.reference.empty());
  EXPECT_EQ(o.notes.size(), 5u);  // four claims and the reference
}

TEST(ExperimentTest, BadClaimsAndSeedsAreRefusedNamingTheProblem) {
  const auto err = [&](const std::string& name, const std::string& body) {
    return error_of(write_experiment(name, std::string(kTwoArms) + body));
  };
  const auto claim = [](const std::string& fields) { return "[[claims]]\n" + fields; };
  const std::string ok = "metric = \"final_loss\"\nbetter = \"lower\"\narm = \"global\"\n";
  struct Case {
    std::string body, expected;
  };
  const Case cases[] = {
      {claim(ok + "colour = 1\n"),
       "claims[0]: unknown key `colour`; allowed: metric, better, arm, reference, value, text"},
      {claim("better = \"lower\"\narm = \"global\"\n"), "claims[0]: `metric` is required"},
      {claim("metric = \"loss\"\nbetter = \"lower\"\narm = \"global\"\n"),
       "claims[0]: `metric` must be one of final_loss, final_perplexity"},
      {claim("metric = \"final_loss\"\nbetter = \"less\"\narm = \"global\"\n"),
       "claims[0]: `better` must be \"lower\" or \"higher\""},
      {claim("metric = \"final_loss\"\nbetter = \"lower\"\narm = \"globl\"\n"),
       "claims[0]: `arm` must name one of the runs (global, micro), got \"globl\""},
      {claim(ok + "reference = \"nothing\"\n"),
       "claims[0]: `reference` must name one of the runs (global, micro), got \"nothing\""},
      {claim(ok + "reference = \"global\"\n"), "claims[0]: `reference` must differ from `arm`"},
      {claim(ok + "reference = \"micro\"\nvalue = 0.5\n"),
       "claims[0]: `reference` and `value` must not both be given"},
      {claim(ok + "value = \"zero\"\n"), "claims[0]: `value` must be a finite number"},
      {claim("metric = \"specialisation.layer2\"\nbetter = \"higher\"\narm = \"global\"\n"),
       "`metric` \"specialisation.layer2\" must name an MoE layer, 0..1"},
      {claim("metric = \"specialisation.layerX\"\nbetter = \"higher\"\narm = \"global\"\n"),
       "must end in a layer number"},
      {claim("metric = \"domain.synthetic_1.loss\"\nbetter = \"lower\"\narm = \"global\"\n"),
       "must be domain.<domain>.<m> with m one of final_loss"},
  };
  for (const Case& c : cases) {
    const std::string msg = err("bad_claim", c.body);
    EXPECT_NE(msg.find(c.expected), std::string::npos) << c.body << "\n -> " << msg;
  }
  EXPECT_NE(error_of(write_experiment("bad_claims", std::string("claims = 3\n") + kTwoArms))
                .find("`claims` must be an array of tables"),
            std::string::npos);
  EXPECT_NE(error_of(write_experiment("bad_seeds", std::string("seeds = 0\n") + kTwoArms))
                .find("`seeds` must be a whole number in 1..100, got 0"),
            std::string::npos);
  EXPECT_NE(error_of(write_experiment("bad_seeds2", std::string("seeds = 1.5\n") + kTwoArms))
                .find("`seeds` must be a whole number in 1..100, got a non-integer"),
            std::string::npos);
  EXPECT_NE(error_of(write_experiment("bad_target", std::string("target_loss = -1\n") + kTwoArms))
                .find("`target_loss` must be a validation loss > 0"),
            std::string::npos);
  EXPECT_NE(error_of(write_experiment("bad_ref", std::string("reference = \"z\"\n") + kTwoArms))
                .find("`reference` must name one of the runs (global, micro), got \"z\""),
            std::string::npos);
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
    EXPECT_FALSE(x.claims.empty()) << e.path() << ": states no checkable claim";
    EXPECT_FALSE(x.reference.empty()) << e.path();
    // --quick --seeds 2 (the smoke run, CI) resolves too, keeping every claim.
    Experiment q = load_experiment(e.path().string(), ExperimentOptions{.seeds = 2, .quick = true});
    EXPECT_EQ(q.runs.size(), 2 * x.runs.size()) << e.path();
    EXPECT_EQ(q.claims.size(), x.claims.size()) << e.path();
    for (const ExperimentRun& r : q.runs) EXPECT_EQ(r.config.data.source, "synthetic") << e.path();
    ++n;
  }
  EXPECT_GE(n, 6);
}

}  // namespace
}  // namespace sy
