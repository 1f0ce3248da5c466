#include "config/run_config.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "config/config_schema.h"
#include "core/error.h"

namespace sy {
namespace {

using config_schema::Field;
using config_schema::Section;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tiny_text() { return read_text(std::string(SY_SOURCE_DIR) + "/configs/tiny.toml"); }

RunConfig tiny(const std::vector<std::string>& overrides = {}) {
  return parse_run_config(tiny_text(), overrides, "tiny.toml");
}

// The sy::Error message parsing `text` with `overrides` raises ("" if none).
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {},
                     const std::string& origin = "run.toml") {
  try {
    parse_run_config(text, overrides, origin);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string tiny_error(const std::vector<std::string>& overrides) {
  return error_of(tiny_text(), overrides, "tiny.toml");
}

// Field-by-field equality through the schema, so a new key is compared without touching this
// test; doubles compare bitwise (round trips must be exact, and -0.0 is not 0.0).
void expect_same_fields(std::vector<Field> a, std::vector<Field> b, std::string_view section) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    std::string key = config_schema::full_key(section, a[i].name);
    std::visit(
        [&](auto* pa) {
          auto* pb = std::get<std::remove_reference_t<decltype(pa)>>(b[i].ptr);
          if constexpr (std::is_same_v<decltype(pa), double*>) {
            EXPECT_EQ(std::bit_cast<uint64_t>(*pa), std::bit_cast<uint64_t>(*pb))
                << key << ": " << *pa << " vs " << *pb;
          } else {
            EXPECT_EQ(*pa, *pb) << key;
          }
        },
        a[i].ptr);
  }
}

void expect_same(RunConfig a, RunConfig b) {
  std::vector<Section> sa = config_schema::sections(a), sb = config_schema::sections(b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) expect_same_fields(sa[i].fields, sb[i].fields, sa[i].name);
  ASSERT_EQ(a.balance.terms.size(), b.balance.terms.size());
  for (size_t i = 0; i < a.balance.terms.size(); ++i) {
    expect_same_fields(config_schema::term_fields(a.balance.terms[i]),
                       config_schema::term_fields(b.balance.terms[i]),
                       fmt::format("balance.terms.{}", i));
  }
}

// --- defaults and shipped configs ---

TEST(RunConfigTest, EmptyFileGivesHeaderDefaults) {
  RunConfig c = parse_run_config("");
  expect_same(c, resolve_defaults(RunConfig{}));
  ASSERT_EQ(c.balance.terms.size(), 1u);
  EXPECT_EQ(c.balance.terms[0].type, "lbl");
  EXPECT_EQ(c.balance.terms[0].scope, "micro");
  EXPECT_EQ(c.balance.terms[0].coef, 0.01);
  EXPECT_NO_THROW(validate(RunConfig{}));
}

TEST(RunConfigTest, TinyConfigLoads) {
  RunConfig c = load_run_config(std::string(SY_SOURCE_DIR) + "/configs/tiny.toml");
  EXPECT_EQ(c.model.vocab_size, 256);
  EXPECT_EQ(c.model.d_model, 32);
  EXPECT_EQ(c.model.n_layers, 2);
  EXPECT_EQ(c.model.n_heads, 2);
  EXPECT_EQ(c.model.seq_len, 16);
  EXPECT_EQ(c.model.n_experts, 4);
  EXPECT_EQ(c.model.top_k, 2);
  EXPECT_EQ(c.model.d_expert, 32);
  EXPECT_EQ(c.train.micro_batch, 4);
  EXPECT_EQ(c.train.steps, 20);
  EXPECT_EQ(c.train.eval_every, 10);
  EXPECT_EQ(c.data.source, "synthetic");
  EXPECT_EQ(c.system.threads, 2);
}

TEST(RunConfigTest, SmallConfigLoads) {
  RunConfig c = load_run_config(std::string(SY_SOURCE_DIR) + "/configs/small.toml");
  EXPECT_EQ(c.model.vocab_size, 8192);
  EXPECT_EQ(c.model.d_model, 256);
  EXPECT_EQ(c.model.n_layers, 4);
  EXPECT_EQ(c.model.n_heads, 4);
  EXPECT_EQ(c.model.n_experts, 16);
  EXPECT_EQ(c.model.top_k, 4);
  EXPECT_EQ(c.model.d_expert, 256);
  EXPECT_EQ(c.model.seq_len, 256);
  EXPECT_EQ(c.train.micro_batch, 8);
  EXPECT_EQ(c.train.steps, 300);
  EXPECT_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.system.threads, 2);
}

// MEDIUM as the speed issue defines it (d 512, 8 layers, 8 heads, 64 experts, top-6, F 256,
// seq 256, micro-batch 8): 218,374,656 parameters, 31.7 M active per token.
TEST(RunConfigTest, MediumConfigLoads) {
  RunConfig c = load_run_config(std::string(SY_SOURCE_DIR) + "/configs/medium.toml");
  EXPECT_EQ(c.model.d_model, 512);
  EXPECT_EQ(c.model.n_layers, 8);
  EXPECT_EQ(c.model.n_heads, 8);
  EXPECT_EQ(c.model.n_experts, 64);
  EXPECT_EQ(c.model.top_k, 6);
  EXPECT_EQ(c.model.d_expert, 256);
  EXPECT_EQ(c.model.seq_len, 256);
  EXPECT_EQ(c.train.micro_batch, 8);
  const int64_t D = 512, V = 8192, L = 8, E = 64, F = 256;
  EXPECT_EQ(2 * V * D + D + L * (2 * D + 4 * D * D + E * D + 3 * E * F * D), 218374656);
}

TEST(RunConfigTest, DemoConfigIsSmallOnTheEightDomainCorpus) {
  RunConfig demo = load_run_config(std::string(SY_SOURCE_DIR) + "/configs/demo.toml");
  RunConfig small = load_run_config(std::string(SY_SOURCE_DIR) + "/configs/small.toml");
  EXPECT_EQ(demo.data.source, "blend");
  for (const char* d :
       {"literature", "news", "dictionary", "code_python", "code_c", "techdoc", "math", "email"}) {
    EXPECT_NE(demo.data.blend.find(std::string("data/demo/data/") + d + "_train"),
              std::string::npos);
    EXPECT_NE(demo.data.valid.find(std::string("data/demo/data/") + d + "_valid"),
              std::string::npos);
  }
  // Same model, router and balancing as SMALL: only the run length differs.
  RunConfig a, b;
  a.model = demo.model;
  a.router = demo.router;
  a.balance = demo.balance;
  b.model = small.model;
  b.router = small.router;
  b.balance = small.balance;
  expect_same(a, b);
}

TEST(RunConfigTest, LoadRejectsMissingFile) {
  try {
    load_run_config("/nonexistent/run.toml");
    FAIL() << "expected sy::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "/nonexistent/run.toml: the config file must be a regular file, got no such "
                 "file; check the path, or start from configs/tiny.toml");
  }
}

// --- balance terms ---

TEST(RunConfigTest, EmptyBalanceTermsMeansNoBalancingLoss) {
  RunConfig c = parse_run_config("[balance]\nterms = []\n");
  EXPECT_TRUE(c.balance.terms.empty());
}

TEST(RunConfigTest, BalanceTermsReadAsArrayOfTablesWithDefaultsForMissingKeys) {
  RunConfig c = parse_run_config(
      "[[balance.terms]]\ncoef = 0.5\n"
      "[[balance.terms]]\ntype = \"lbl\"\nscope = \"micro\"\ncoef = 0.001\n");
  ASSERT_EQ(c.balance.terms.size(), 2u);
  EXPECT_EQ(c.balance.terms[0].type, "lbl");
  EXPECT_EQ(c.balance.terms[0].coef, 0.5);
  EXPECT_EQ(c.balance.terms[1].coef, 0.001);
}

TEST(RunConfigTest, RejectsUnknownBalanceScopeNamingTheTerm) {
  std::string msg = error_of("[[balance.terms]]\nscope = \"globl\"\n");
  EXPECT_EQ(msg,
            "run.toml: balance.terms.0.scope must be one of \"sequence\", \"micro\", \"global\", "
            "\"global-exact\", \"shuffle\", got \"globl\"; did you mean \"global\"?");
}

// --- overrides ---

TEST(RunConfigTest, OverridesParseTomlValuesAndBareStrings) {
  RunConfig c = tiny({"router.score=sigmoid", "router.gate=\"raw\"", "train.lr=3e-4",
                      "model.rope_theta=500000", "out_dir = runs/x y", "train.seed=7"});
  EXPECT_EQ(c.router.score, "sigmoid");
  EXPECT_EQ(c.router.gate, "raw");
  EXPECT_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.rope_theta, 500000.0);
  EXPECT_EQ(c.out_dir, "runs/x y");
  EXPECT_EQ(c.train.seed, 7u);
}

TEST(RunConfigTest, StringKeyTakesOverrideTextEvenWhenItParsesAsAnotherType) {
  RunConfig c = tiny({"out_dir=2024", "data.train_tokens=1.5"});
  EXPECT_EQ(c.out_dir, "2024");
  EXPECT_EQ(c.data.train_tokens, "1.5");
}

// Found by fuzz/set_override_fuzz (fuzz/regressions/set_override/invalid-utf8-string): a --set
// value that does not parse as TOML is taken verbatim, bytes that are not UTF-8 included; the
// config.toml written from it then failed to parse ("invalid utf-8 sequence"), so the run's
// checkpoints could not be evaluated or resumed.
TEST(RunConfigTest, RejectsTextThatIsNotUtf8OrHoldsNul) {
  EXPECT_EQ(tiny_error({"out_dir=\xA2runs/exp\""}),
            "tiny.toml: out_dir must be valid UTF-8 text without NUL characters, got "
            "\"\\xA2runs/exp\"\"; config.toml is written as UTF-8 TOML, and a path ends at a NUL");
  EXPECT_NE(tiny_error({"data.valid=a\xC0\xAF"}).find("data.valid must be valid UTF-8"),
            std::string::npos);  // an overlong '/'
  EXPECT_NE(tiny_error({"balance.terms.0.scope=\xED\xA0\x80"})
                .find("balance.terms.0.scope must be valid UTF-8"),
            std::string::npos);  // a surrogate
  // Found by fuzz/experiment_fuzz: "\u0000" in a TOML string is a NUL, at which a path ends.
  EXPECT_NE(error_of("out_dir = \"runs/a\\u0000b\"\n").find("got \"runs/a\\x00b\""),
            std::string::npos);
  RunConfig c = tiny({"out_dir=runs/caf\xC3\xA9-\xF0\x9F\x98\x80"});  // é and an emoji
  expect_same(c, parse_run_config(to_toml(c), {}, "config.toml"));
}

TEST(RunConfigTest, OverridesApplyInOrder) {
  RunConfig c = tiny({"train.steps=50", "train.steps=60"});
  EXPECT_EQ(c.train.steps, 60);
}

TEST(RunConfigTest, OverrideAddressesBalanceTermElement) {
  RunConfig c = tiny({"balance.terms.0.coef=0.02"});
  ASSERT_EQ(c.balance.terms.size(), 1u);
  EXPECT_EQ(c.balance.terms[0].coef, 0.02);
}

TEST(RunConfigTest, OverrideAtIndexEqualToSizeAppendsDefaultTerm) {
  RunConfig c = tiny({"balance.terms.1.coef=0.0001"});
  ASSERT_EQ(c.balance.terms.size(), 2u);
  EXPECT_EQ(c.balance.terms[1].type, "lbl");
  EXPECT_EQ(c.balance.terms[1].scope, "micro");
  EXPECT_EQ(c.balance.terms[1].coef, 0.0001);
}

TEST(RunConfigTest, OverrideSetsWholeTermFromInlineTable) {
  RunConfig c = tiny({"balance.terms.1={scope=\"micro\", coef=0.5}"});
  ASSERT_EQ(c.balance.terms.size(), 2u);
  EXPECT_EQ(c.balance.terms[1].coef, 0.5);
}

TEST(RunConfigTest, OverrideReplacesTermListWithArray) {
  EXPECT_TRUE(tiny({"balance.terms=[]"}).balance.terms.empty());
  RunConfig c = tiny({"balance.terms=[{coef=0.1}, {coef=0.2}]"});
  ASSERT_EQ(c.balance.terms.size(), 2u);
  EXPECT_EQ(c.balance.terms[1].coef, 0.2);
}

TEST(RunConfigTest, RejectsBalanceTermIndexPastTheEnd) {
  EXPECT_EQ(tiny_error({"balance.terms.2.coef=0.1"}),
            "--set balance.terms.2.coef=0.1: the index in balance.terms.<index> must be an integer "
            "in [0, 1] (1 appends a term), got \"2\"");
  EXPECT_NE(tiny_error({"balance.terms.x.coef=0.1"}), "");
}

TEST(RunConfigTest, RejectsOverrideWithoutEquals) {
  EXPECT_EQ(tiny_error({"model.top_k"}),
            "--set model.top_k: an override must be section.key=value, got \"model.top_k\"; "
            "e.g. --set model.top_k=2 or --set router.score=sigmoid");
}

TEST(RunConfigTest, RejectsOverrideOfWholeSection) {
  EXPECT_NE(tiny_error({"model=3"}).find("\"model\" is a section"), std::string::npos);
}

// --- unknown keys and wrong types ---

TEST(RunConfigTest, RejectsUnknownKeyWithClosestName) {
  EXPECT_EQ(error_of("[model]\nn_expert = 8\n"),
            "run.toml: unknown key \"model.n_expert\"; did you mean \"model.n_experts\"?");
}

TEST(RunConfigTest, RejectsUnknownOverrideKeyWithClosestName) {
  EXPECT_EQ(tiny_error({"router.scor=sigmoid"}),
            "--set router.scor=sigmoid: unknown key \"router.scor\"; did you mean "
            "\"router.score\"?");
  EXPECT_EQ(tiny_error({"balance.terms.0.cof=0.1"}),
            "--set balance.terms.0.cof=0.1: unknown key \"balance.terms.0.cof\"; did you mean "
            "\"balance.terms.0.coef\"?");
}

TEST(RunConfigTest, RejectsKeyInWrongSectionSuggestingTheRightOne) {
  EXPECT_EQ(error_of("[train]\ntop_k = 2\n"),
            "run.toml: unknown key \"train.top_k\"; did you mean \"model.top_k\"?");
}

TEST(RunConfigTest, RejectsUnknownSectionWithClosestName) {
  EXPECT_EQ(error_of("[modle]\nd_model = 8\n"),
            "run.toml: unknown key \"modle\"; did you mean \"model\"?");
  EXPECT_EQ(error_of("[balance]\nterm = []\n"),
            "run.toml: unknown key \"balance.term\"; did you mean \"balance.terms\"?");
}

TEST(RunConfigTest, UnknownKeyFarFromAnyNamePointsToDocs) {
  EXPECT_EQ(error_of("[model]\nflux_capacitor = 1\n"),
            "run.toml: unknown key \"model.flux_capacitor\"; every key is listed in "
            "docs/config.md");
}

TEST(RunConfigTest, RejectsStringWhereIntegerExpected) {
  EXPECT_EQ(error_of("[model]\nd_model = \"abc\"\n"),
            "run.toml: model.d_model must be an integer, got \"abc\" (a string); write a whole "
            "number without quotes, e.g. d_model = 4");
  EXPECT_EQ(tiny_error({"model.d_model=abc"}),
            "--set model.d_model=abc: model.d_model must be an integer, got \"abc\" (a string); "
            "write a whole number without quotes, e.g. d_model = 4");
}

TEST(RunConfigTest, RejectsFloatWhereIntegerExpectedAndNegativeSeed) {
  EXPECT_NE(error_of("[train]\nsteps = 2.5\n")
                .find("train.steps must be an integer, got 2.5 (a "
                      "float)"),
            std::string::npos);
  EXPECT_NE(tiny_error({"train.seed=-1"}).find("train.seed must be a non-negative integer, got -1"),
            std::string::npos);
}

TEST(RunConfigTest, RejectsNonStringForStringKeyInFile) {
  EXPECT_NE(error_of("[router]\nscore = 1\n")
                .find("router.score must be a string, got 1 (an "
                      "integer)"),
            std::string::npos);
  EXPECT_NE(error_of("model = 3\n").find("model must be a table, got 3 (an integer)"),
            std::string::npos);
}

TEST(RunConfigTest, AcceptsIntegerWhereFloatExpected) {
  EXPECT_EQ(parse_run_config("[model]\nrope_theta = 10000\n").model.rope_theta, 10000.0);
}

TEST(RunConfigTest, RejectsInvalidTomlWithLocation) {
  std::string msg = error_of("[model]\nd_model = = 3\n");
  EXPECT_EQ(msg.rfind("run.toml:2:", 0), 0u) << msg;
  EXPECT_NE(msg.find("invalid TOML"), std::string::npos) << msg;
}

// --- single-field ranges ---

TEST(RunConfigTest, RejectsOutOfRangeValues) {
  const std::pair<const char*, const char*> cases[] = {
      {"model.vocab_size=0", "model.vocab_size must be >= 1, got 0"},
      {"model.n_shared_experts=-1", "model.n_shared_experts must be >= 0, got -1"},
      {"model.norm_eps=0", "model.norm_eps must be > 0, got 0"},
      {"router.gate_scale=-1", "router.gate_scale must be > 0, got -1"},
      {"router.z_loss_coef=-0.1", "router.z_loss_coef must be >= 0, got -0.1"},
      {"router.capacity_factor=-1", "router.capacity_factor must be >= 0, got -1"},
      {"balance.terms.0.coef=-0.01", "balance.terms.0.coef must be >= 0, got -0.01"},
      {"train.lr=0", "train.lr must be > 0, got 0"},
      {"train.lr=nan", "train.lr must be a finite number, got nan"},
      {"train.lr=inf", "train.lr must be a finite number, got inf"},
      {"train.beta1=1", "train.beta1 must be in [0, 1), got 1"},
      {"train.beta2=-0.5", "train.beta2 must be in [0, 1), got -0.5"},
      {"train.adam_eps=0", "train.adam_eps must be > 0, got 0"},
      {"train.min_lr_ratio=1.5", "train.min_lr_ratio must be in [0, 1], got 1.5"},
      {"train.grad_accum=0", "train.grad_accum must be >= 1, got 0"},
      {"train.eval_every=-1", "train.eval_every must be >= 0, got -1"},
      {"train.checkpoint_every=-5", "train.checkpoint_every must be >= 0, got -5"},
      {"train.checkpoint_mode=background",
       "train.checkpoint_mode must be one of \"async\", \"sync\", got \"background\""},
      {"system.threads=0", "system.threads must be >= 1, got 0"},
      {"system.gemm=mkl",
       "system.gemm must be one of \"auto\", \"onednn\", \"openblas\", \"mixed\", got \"mkl\""},
      {"router.type=expert_choise", "got \"expert_choise\"; did you mean \"expert_choice\"?"},
      {"router.drop_policy=random", "router.drop_policy must be one of \"probs\", \"position\""},
      {"data.source=web",
       "data.source must be one of \"synthetic\", \"tokens\", \"blend\", got \"web\""},
      {"out_dir=\"\"", "out_dir must be a directory path, got \"\""},
  };
  for (const auto& [override_text, expected] : cases) {
    std::string msg = tiny_error({override_text});
    EXPECT_NE(msg.find(expected), std::string::npos) << override_text << " gave: " << msg;
    EXPECT_EQ(msg.rfind("tiny.toml: ", 0), 0u) << msg;
  }
}

TEST(RunConfigTest, RejectsUnknownEnumValueWithSuggestion) {
  EXPECT_EQ(tiny_error({"router.score=softmx"}),
            "tiny.toml: router.score must be one of \"auto\", \"softmax\", \"sigmoid\", got "
            "\"softmx\"; "
            "did you mean \"softmax\"?");
}

TEST(RunConfigTest, PublicValidateNamesConfigAsOrigin) {
  RunConfig c;
  c.system.threads = 0;
  try {
    validate(c);
    FAIL() << "expected sy::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "config: system.threads must be >= 1, got 0");
  }
}

// --- cross-field rules ---

// router.score = "auto" (the default): sigmoid with the loss-free bias (ALGORITHMS.md §3: the
// balancer's paper default), softmax otherwise; an explicit choice is kept either way.
TEST(RunConfigTest, AutoScoreIsSigmoidWithTheLossFreeBiasElseSoftmax) {
  EXPECT_EQ(RunConfig{}.router.score, "auto");
  EXPECT_EQ(parse_run_config("").router.score, "softmax");
  EXPECT_EQ(parse_run_config("", {"loss_free.update=sign"}).router.score, "sigmoid");
  EXPECT_EQ(parse_run_config("", {"loss_free.update=proportional"}).router.score, "sigmoid");
  EXPECT_EQ(parse_run_config("", {"loss_free.update=sign", "router.score=softmax"}).router.score,
            "softmax");
  EXPECT_EQ(parse_run_config("", {"router.score=sigmoid"}).router.score, "sigmoid");
  const RunConfig r = resolve_defaults(parse_run_config("", {"loss_free.update=sign"}));
  EXPECT_EQ(r.router.score, "sigmoid");  // idempotent
  // The resolved value is what a run's config.toml records.
  EXPECT_NE(to_toml(parse_run_config("", {"loss_free.update=sign"})).find("score = \"sigmoid\""),
            std::string::npos);
}

TEST(RunConfigTest, LossFreeBiasOnlyWithRoutersThatUseIt) {
  for (const char* type : {"sinkhorn", "hash", "optimal"}) {
    const std::string msg =
        tiny_error({fmt::format("router.type={}", type), "loss_free.update=sign"});
    EXPECT_EQ(msg, fmt::format("tiny.toml: loss_free.update must be \"off\" with router.type = "
                               "\"{}\", got \"sign\"; this router chooses experts without the "
                               "loss-free bias, so the bias would have no effect; use router.type "
                               "= \"topk\" or \"bip\" with it",
                               type));
  }
}

TEST(RunConfigTest, ExpertChoiceShuffledGroupsNeedChunks) {
  EXPECT_EQ(tiny_error({"router.type=expert_choice", "balance.terms=[]",
                        "router.ec_group_order=shuffled"}),
            "tiny.toml: router.ec_chunk must be > 0 with router.ec_group_order = \"shuffled\", "
            "got 0; with one routing group (ec_chunk = 0) there is nothing to shuffle");
  EXPECT_NE(tiny_error({"router.ec_group_order=random"})
                .find("router.ec_group_order must be one of \"sequential\", \"shuffled\""),
            std::string::npos);
}

TEST(RunConfigTest, BalanceGroupsAndStepRangesAreChecked) {
  RunConfig ok =
      tiny({"train.grad_accum=4", "balance.terms.0.scope=global-exact", "balance.terms.0.group=2",
            "balance.terms.0.until_step=10", "balance.terms.1={scope=\"global\", from_step=10}"});
  EXPECT_EQ(ok.balance.terms[0].group, 2);
  EXPECT_EQ(ok.balance.terms[1].from_step, 10);
  EXPECT_EQ(tiny_error({"train.grad_accum=4", "balance.terms.0.group=2"}),
            "tiny.toml: balance.terms.0.group must be 0 unless the term's scope is \"global\" or "
            "\"global-exact\", got 2 with scope \"micro\"; a group is a number of micro-batches "
            "that f is counted over");
  EXPECT_EQ(
      tiny_error({"train.grad_accum=4", "balance.terms.0.scope=global", "balance.terms.0.group=3"}),
      "tiny.toml: balance.terms.0.group must be a divisor of train.grad_accum (4), got 3; the "
      "step's micro-batches are split into groups of this size");
  EXPECT_EQ(tiny_error({"balance.terms.0.from_step=5", "balance.terms.0.until_step=5"}),
            "tiny.toml: balance.terms.0.until_step must be 0 (to the end) or > from_step (5), got "
            "5; the term applies in steps [from_step, until_step)");
  EXPECT_NE(tiny_error({"balance.terms.0.group=-1"}).find("balance.terms.0.group must be >= 0"),
            std::string::npos);
}

TEST(RunConfigTest, RejectsHeadCountNotDividingModelDim) {
  EXPECT_EQ(tiny_error({"model.n_heads=3"}),
            "tiny.toml: model.d_model must be divisible by model.n_heads (3), got 32; each head "
            "gets d_model / n_heads dims");
}

TEST(RunConfigTest, RejectsOddHeadDim) {
  EXPECT_EQ(tiny_error({"model.d_model=30", "model.n_heads=2"}),
            "tiny.toml: model.d_model / model.n_heads (the head dim) must be even, got 30 / 2 = "
            "15; RoPE rotates pairs of dims");
}

TEST(RunConfigTest, RejectsTopKAboveExpertCount) {
  EXPECT_EQ(tiny_error({"model.top_k=5"}),
            "tiny.toml: model.top_k must be <= model.n_experts (4), got 5; impossible: K > E; "
            "lower top_k or raise n_experts");
  EXPECT_NO_THROW(tiny({"model.top_k=4"}));
}

TEST(RunConfigTest, RejectsTopOneWithRenormGateExplainingWhy) {
  std::string msg = tiny_error({"model.top_k=1"});
  EXPECT_EQ(msg.rfind("tiny.toml: router.gate must be \"raw\" when model.top_k = 1, got "
                      "\"renorm\"",
                      0),
            0u)
      << msg;
  EXPECT_NE(msg.find("constant gate of 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("no gradient from the LM loss"), std::string::npos) << msg;
  EXPECT_NO_THROW(tiny({"model.top_k=1", "router.gate=raw"}));
}

TEST(RunConfigTest, RejectsCapacityBelowOneTokenPerExpertAndPrintsMinimum) {
  // tiny: E = 4, N = 4 * 16 = 64, K = 2, so the minimum is 4 / 128 = 0.03125.
  EXPECT_EQ(tiny_error({"router.capacity_factor=0.03"}),
            "tiny.toml: router.capacity_factor must be 0 (dropless) or >= E/(N*K) = 4/(64*2) = "
            "0.03125, so that the capacity C = ceil(cf*N*K/E) is at least one token "
            "(N = train.micro_batch * model.seq_len), got 0.03");
  EXPECT_NO_THROW(tiny({"router.capacity_factor=0.03125"}));
  EXPECT_NO_THROW(tiny({"router.capacity_factor=0"}));
  EXPECT_NO_THROW(tiny({"router.capacity_factor=1.25"}));
}

TEST(RunConfigTest, CapacityMinimumAsPrintedIsAcceptedDespiteRounding) {
  // N·K = 3·7·3 = 63 and E = 5: 5/63 is not exact in binary, and neither is the product back.
  std::vector<std::string> base = {"model.seq_len=7", "train.micro_batch=3", "model.n_experts=5",
                                   "model.top_k=3"};
  std::vector<std::string> with_cf = base;
  with_cf.push_back(fmt::format("router.capacity_factor={}", 5.0 / 63.0));
  EXPECT_NO_THROW(tiny(with_cf));
}

TEST(RunConfigTest, RejectsMoreDenseLayersThanLayers) {
  EXPECT_EQ(tiny_error({"model.n_dense_layers=3"}),
            "tiny.toml: model.n_dense_layers must be <= model.n_layers (2), got 3");
  EXPECT_NO_THROW(tiny({"model.n_dense_layers=2"}));
}

TEST(RunConfigTest, RejectsWarmupLongerThanRun) {
  EXPECT_EQ(tiny_error({"train.warmup_steps=21"}),
            "tiny.toml: train.warmup_steps must be <= train.steps (20), got 21");
  EXPECT_NO_THROW(tiny({"train.warmup_steps=20"}));
}

TEST(RunConfigTest, RejectsTokenSourceWithoutTrainTokens) {
  EXPECT_EQ(tiny_error({"data.source=tokens"}),
            "tiny.toml: data.train_tokens must be a token file path when data.source = "
            "\"tokens\", got \"\"; set data.train_tokens = \"path/to/train.bin\", or "
            "data.source = \"synthetic\"");
  EXPECT_NO_THROW(tiny({"data.source=tokens", "data.train_tokens=data/train.bin"}));
}

TEST(RunConfigTest, RejectsSeedThatTomlCannotHold) {
  RunConfig c;
  c.train.seed = std::numeric_limits<uint64_t>::max();
  EXPECT_THROW(validate(c), Error);
}

// --- round trip ---

TEST(RunConfigTest, RoundTripReproducesConfigExactly) {
  RunConfig c = tiny();
  c.out_dir = "runs/\"quoted\" \\ tab\there \u00e9";
  c.model.rope_theta = 1e6 / 7;
  c.model.norm_eps = 1e-300;
  c.model.init_std = 0.1 + 0.2;  // 0.30000000000000004
  c.router.capacity_factor = 1.0 / 3;
  c.router.z_loss_coef = 5e-324;  // smallest subnormal
  c.train.lr = 3e-4;
  c.train.beta2 = std::nextafter(1.0, 0.0);
  c.train.weight_decay = 1e20;
  c.train.seed = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  c.balance.terms.push_back({"lbl", "micro", 2.0 / 3});
  validate(c);
  RunConfig back = parse_run_config(to_toml(c));
  expect_same(back, c);
  EXPECT_EQ(to_toml(back), to_toml(c));

  c.balance.terms.clear();
  expect_same(parse_run_config(to_toml(c)), c);
}

TEST(RunConfigTest, RoundTripPreservesEveryFieldEvenOutOfRange) {
  // Every field gets a distinct value through the schema, so a key that to_toml forgets, or
  // writes under the wrong name, fails here.
  RunConfig c;
  int i = 0;
  for (const Section& s : config_schema::sections(c)) {
    for (const Field& f : s.fields) {
      ++i;
      std::visit(
          [&](auto* p) {
            using T = std::remove_pointer_t<decltype(p)>;
            if constexpr (std::is_same_v<T, std::string>) {
              *p = fmt::format("value {}", i);
            } else if constexpr (std::is_same_v<T, double>) {
              *p = i / 7.0;
            } else {
              *p = static_cast<T>(1000 + i);  // NOLINT(bugprone-misplaced-widening-cast): small
            }
          },
          f.ptr);
    }
  }
  c.balance.terms = {{"a", "b", 0.125}, {"c", "d", -1.0 / 9}};
  RunConfig back = config_schema::parse_unvalidated(to_toml(c), {}, "<round trip>");
  expect_same(back, c);
}

TEST(RunConfigTest, RoundTripIsBitExactForRandomDoubles) {
  // Seeded random bit patterns cover every exponent, subnormals and long mantissas.
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  RunConfig c;
  for (int i = 0; i < 2000; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    double x = std::bit_cast<double>(state);
    if (!std::isfinite(x)) continue;
    c.train.lr = x;
    RunConfig back = config_schema::parse_unvalidated(to_toml(c), {}, "<round trip>");
    ASSERT_EQ(std::bit_cast<uint64_t>(back.train.lr), std::bit_cast<uint64_t>(x))
        << fmt::format("{}", x);
  }
}

// --- docs ---

TEST(RunConfigTest, DocsListEveryKey) {
  std::string doc = read_text(std::string(SY_SOURCE_DIR) + "/docs/config.md");
  ASSERT_FALSE(doc.empty());
  RunConfig c;
  BalanceTerm term;
  for (const Section& s : config_schema::sections(c)) {
    for (const Field& f : s.fields) {
      std::string key = config_schema::full_key(s.name, f.name);
      EXPECT_NE(doc.find(fmt::format("`{}`", key)), std::string::npos)
          << key << " is missing from docs/config.md";
    }
  }
  for (const Field& f : config_schema::term_fields(term)) {
    EXPECT_NE(doc.find(fmt::format("`{}`", f.name)), std::string::npos)
        << "balance term key " << f.name << " is missing from docs/config.md";
  }
}

// The resume guard is derived from the schema: changing any single key of [model], [router],
// [loss_free] or a balance term is one conflict naming that key; a [train], [data] or [system]
// key is none. (router.ec_group_order was missing from the hand-kept list this replaced, so an
// Expert Choice run resumed with another group order silently.)
TEST(RunConfigTest, ResumeConflictsCoverEveryModelKeyFromTheSchema) {
  const RunConfig base = tiny();
  const std::vector<ConfigEntry> entries = model_entries(base);
  size_t changed = 0, guarded = 0;
  RunConfig probe = base;
  auto perturb = [](Field& f) {
    std::visit(Overloaded{[](int64_t* p) { *p += 1; }, [](uint64_t* p) { *p += 1; },
                          [](double* p) { *p = *p * 2 + 1; }, [](std::string* p) { *p += "x"; }},
               f.ptr);
  };
  std::vector<Section> secs = config_schema::sections(probe);
  for (Section& s : secs) {
    for (Field& f : s.fields) {
      const RunConfig before = probe;
      perturb(f);
      const std::string key = config_schema::full_key(s.name, f.name);
      const std::vector<std::string> c = resume_conflicts(before, probe);
      const bool model_key = s.name == "model" || s.name == "router" || s.name == "loss_free";
      if (model_key) {
        ++guarded;
        ASSERT_EQ(c.size(), 1u) << key;
        EXPECT_EQ(c[0].rfind(key + ": ", 0), 0u) << c[0];
      } else {
        EXPECT_TRUE(c.empty()) << key;
      }
      ++changed;
    }
  }
  for (Field& f : config_schema::term_fields(probe.balance.terms.at(0))) {
    const RunConfig before = probe;
    perturb(f);
    const std::vector<std::string> c = resume_conflicts(before, probe);
    ASSERT_EQ(c.size(), 1u) << f.name;
    EXPECT_EQ(c[0].rfind("balance.terms.0." + std::string(f.name) + ": ", 0), 0u) << c[0];
    ++guarded;
  }
  EXPECT_EQ(guarded, entries.size());  // every guarded key is a model entry, and vice versa
  EXPECT_GT(changed, guarded);
  const RunConfig g = tiny({"router.ec_group_order=\"shuffled\""});
  ASSERT_EQ(resume_conflicts(base, g).size(), 1u);
  EXPECT_EQ(resume_conflicts(base, g)[0],
            "router.ec_group_order: \"sequential\" in the checkpoint, \"shuffled\" given");
  RunConfig two = base;
  two.balance.terms.push_back(two.balance.terms[0]);
  EXPECT_EQ(resume_conflicts(base, two).at(0),
            "balance.terms: 1 term(s) in the checkpoint, 2 given");
}

}  // namespace
}  // namespace sy
