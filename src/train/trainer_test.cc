#include "train/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"
#include "core/gemm_bf16.h"
#include "core/rng.h"
#include "data/indexed_dataset.h"
#include "io/checkpoint_dir.h"
#include "io/safetensors.h"
#include "model/transformer.h"
#include "routing/sinkhorn.h"
#include "train/checkpoint.h"
#include "train/evaluation.h"
#include "train/run_options.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

RunConfig tiny(const std::string& name) {
  RunConfig c;
  c.out_dir = ::testing::TempDir() + "sy_trainer_" + name;
  fs::remove_all(c.out_dir);
  c.model.vocab_size = 64;
  c.model.d_model = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.seq_len = 16;
  c.model.n_experts = 4;
  c.model.top_k = 2;
  c.model.d_expert = 32;
  c.router.z_loss_coef = 1e-3;
  c.train.micro_batch = 4;
  c.train.grad_accum = 2;
  c.train.steps = 20;
  c.train.warmup_steps = 2;
  c.train.lr = 3e-3;
  c.train.eval_every = 10;
  c.train.eval_batches = 2;
  c.train.log_every = 1;
  return c;
}

std::vector<nlohmann::json> records(const std::string& out, const std::string& type) {
  std::vector<nlohmann::json> r;
  std::ifstream in(out + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == type) r.push_back(j);
  }
  return r;
}

std::vector<float> weights(const std::string& out, int64_t step) {
  std::string dir = out + "/checkpoints/" + fmt::format("step_{:08}", step);
  io::SafetensorsReader r(dir + "/model.safetensors");
  std::vector<float> all;
  for (const auto& name : r.names()) {
    const auto& info = r.info(name);
    std::vector<float> t(info.numel());
    r.read(name, info.shape, t.data());
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

TEST(TrainerTest, LossDecreasesAndEveryStepIsLogged) {
  RunConfig c = tiny("learns");
  c.train.steps = 30;
  c.train.lr = 1e-2;
  TrainResult r = train(c, {.quiet = true});
  EXPECT_EQ(r.last_step, 30);
  auto recs = records(c.out_dir, "train");
  ASSERT_EQ(recs.size(), 30u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += recs[i]["loss"].get<double>() / 5;
    last += recs[25 + i]["loss"].get<double>() / 5;
  }
  EXPECT_LT(last, first - 0.3);
  auto& l0 = recs[0]["layers"][0];
  int64_t total = 0;
  for (auto& x : l0["load"]) total += x.get<int64_t>();
  EXPECT_EQ(total, 4 * 16 * 2 * 2);  // B·S·M·K assignments, dropless
  EXPECT_GE(records(c.out_dir, "eval").size(), 3u);
}

// A start-up peak measured too low (other load on the machine) gives an MFU above 100%: the first
// such step measures the peak again, once, and the records show the denominator each step used.
TEST(TrainerTest, ImplausibleMfuMeasuresThePeakAgainOnce) {
  RunConfig c = tiny("mfu_peak");
  c.train.steps = 4;
  std::vector<double> answers = {1e-9, 1e6, 1e-9};  // GFLOP/s: start-up, again, (never asked)
  int calls = 0;
  TrainResult r = train(c, {.quiet = true, .measure_peak = [&] { return answers.at(calls++); }});
  EXPECT_EQ(r.last_step, 4);
  EXPECT_EQ(calls, 2);
  auto recs = records(c.out_dir, "train");
  ASSERT_EQ(recs.size(), 4u);
  for (const auto& rec : recs) {
    EXPECT_EQ(rec["gemm_peak_gflops"].get<double>(), 1e6);  // step 1 re-measured before logging
    EXPECT_GT(rec["mfu"].get<double>(), 0.0);
    EXPECT_LT(rec["mfu"].get<double>(), 1.0);
  }

  // Still implausible after measuring again: no third measurement, the records keep the larger.
  RunConfig c2 = tiny("mfu_peak_twice");
  c2.train.steps = 3;
  answers = {1e-9, 2e-9, 1e6};
  calls = 0;
  testing::internal::CaptureStderr();
  train(c2, {.measure_peak = [&] { return answers.at(calls++); }});
  const std::string console = testing::internal::GetCapturedStderr();
  EXPECT_EQ(calls, 2);
  EXPECT_NE(console.find("step 1: MFU above 100% against the GEMM peak measured at start-up"),
            std::string::npos)
      << console;
  EXPECT_NE(console.find("this run's MFU figures are not meaningful"), std::string::npos);
  for (const auto& rec : records(c2.out_dir, "train")) {
    EXPECT_EQ(rec["gemm_peak_gflops"].get<double>(), 2e-9);
    EXPECT_GT(rec["mfu"].get<double>(), 1.0);
  }
}

TEST(TrainerTest, ResumeIsBitExact) {
  RunConfig straight = tiny("straight");
  train(straight, {.quiet = true});
  RunConfig split = tiny("split");
  TrainResult first = train(split, {.quiet = true, .stop_after = 10});
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(first.last_step, 10);
  TrainResult second = train(split, {.quiet = true});
  EXPECT_EQ(second.first_step, 10);
  EXPECT_EQ(second.last_step, 20);
  EXPECT_EQ(weights(straight.out_dir, 20), weights(split.out_dir, 20));
  auto a = records(straight.out_dir, "train"), b = records(split.out_dir, "train");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>());
    EXPECT_EQ(a[i]["layers"][0]["load"], b[i]["layers"][0]["load"]);
  }
}

// train.checkpoint_mode "async" commits periodic checkpoints on a thread of its own: they hold
// the same bits as "sync" ones, `latest` and pruning follow them, and a run resumed from one
// (as after a kill -9 before the checkpoints that follow it) continues bit-exactly. A checkpoint
// written over a recycled one's files holds the bits of one written afresh.
TEST(TrainerTest, AsyncCheckpointsHoldTheBitsOfSyncOnesAndResumeBitExactly) {
  auto file_sums = [](const std::string& out, int64_t step) {
    const std::string dir = out + "/checkpoints/" + fmt::format("step_{:08}", step);
    std::map<std::string, std::string> sums;
    for (const auto& [name, e] : io::verify_checkpoint(dir))
      if (name != "config.toml") sums[name] = e.sha256;  // config.toml names out_dir and mode
    return sums;
  };
  RunConfig sync = tiny("ckpt_sync");
  sync.train.checkpoint_every = 5;
  sync.train.checkpoint_mode = "sync";
  train(sync, {.quiet = true});
  RunConfig async = tiny("ckpt_async");
  async.train.checkpoint_every = 5;
  ASSERT_EQ(async.train.checkpoint_mode, "async");  // the default
  train(async, {.quiet = true});
  EXPECT_EQ(io::list_checkpoints(async.out_dir + "/checkpoints"),
            (std::vector<std::string>{"step_00000010", "step_00000015", "step_00000020"}));
  EXPECT_EQ(io::read_latest_pointer(async.out_dir + "/checkpoints"), "step_00000020");
  // Each checkpoint's record: periodic ones committed in the background, the last one waited for.
  const auto async_records = records(async.out_dir, "checkpoint");
  const auto sync_records = records(sync.out_dir, "checkpoint");
  ASSERT_EQ(async_records.size(), 4u);
  ASSERT_EQ(sync_records.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(async_records[i]["step"], 5 * (i + 1));
    EXPECT_EQ(async_records[i]["name"], fmt::format("step_{:08}", 5 * (i + 1)));
    EXPECT_EQ(async_records[i]["background"], i < 3);
    EXPECT_EQ(sync_records[i]["background"], false);
    EXPECT_GE(async_records[i]["stall_s"].get<double>(), async_records[i]["write_s"].get<double>());
  }
  // The fourth checkpoint overwrote the first's files (pruning would have removed it next).
  EXPECT_EQ(async_records[2]["recycled"], "");
  EXPECT_EQ(async_records[3]["recycled"], "step_00000005");
  RunConfig fresh = tiny("ckpt_fresh");  // no periodic checkpoints: step 20's files are new
  train(fresh, {.quiet = true});
  EXPECT_EQ(weights(async.out_dir, 20), weights(fresh.out_dir, 20));
  int64_t bytes_20 = 0;
  for (const auto& [name, e] : io::verify_checkpoint(async.out_dir + "/checkpoints/step_00000020"))
    bytes_20 += e.bytes;  // every file but manifest.json, which the commit writes
  EXPECT_EQ(async_records[3]["bytes"].get<int64_t>(), bytes_20);
  for (int64_t step : {10, 15, 20}) {
    const auto a = file_sums(async.out_dir, step);
    EXPECT_EQ(a.size(), 4u) << "step " << step;  // weights, moments, state, config.json
    EXPECT_EQ(a, file_sums(sync.out_dir, step)) << "step " << step;
  }

  // Resume from the periodic step-10 checkpoint, written in the background.
  RunConfig resumed = tiny("ckpt_async_resumed");
  resumed.train.checkpoint_every = 5;
  EXPECT_EQ(train(resumed, {.quiet = true, .stop_after = 12}).last_step, 12);
  const std::string root = resumed.out_dir + "/checkpoints";
  fs::remove_all(root + "/step_00000012");
  io::write_latest_pointer(root, "step_00000010");
  EXPECT_EQ(train(resumed, {.quiet = true}).first_step, 10);
  EXPECT_EQ(weights(resumed.out_dir, 20), weights(sync.out_dir, 20));
  EXPECT_EQ(records(resumed.out_dir, "train").size(), 20u);
  std::vector<int64_t> checkpoint_steps;  // step 12's record went with its checkpoint
  for (const auto& c : records(resumed.out_dir, "checkpoint"))
    checkpoint_steps.push_back(c["step"]);
  EXPECT_EQ(checkpoint_steps, (std::vector<int64_t>{5, 10, 15, 20}));
}

// precision bf16 (the short version of scripts/bf16_parity.sh): a resume continues bit-exactly,
// every record names the precision, and after 40 steps the loss and the balance are those of the
// fp32 run within bf16's noise (loss within 1%, AvgMaxVio within 0.1). Without AVX512-BF16 the
// run must fail at start-up with an error naming the instruction set and the key.
TEST(TrainerTest, Bf16TrainsLikeFp32AndResumesBitExactly) {
  RunConfig fp32 = tiny("bf16-ref");
  fp32.train.steps = 40;
  fp32.train.eval_every = 40;
  RunConfig straight = fp32, split = fp32;
  straight.out_dir = tiny("bf16-straight").out_dir;  // (tiny() empties the directory)
  split.out_dir = tiny("bf16-split").out_dir;
  straight.system.precision = split.system.precision = "bf16";
  if (!cpu_has_bf16()) {
    try {
      train(straight, {.quiet = true});
      FAIL() << "bf16 trained without AVX512-BF16";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("system.precision"), std::string::npos) << m;
      EXPECT_NE(m.find("AVX512-BF16"), std::string::npos) << m;
    }
    return;
  }
  train(fp32, {.quiet = true});
  train(straight, {.quiet = true});
  EXPECT_TRUE(train(split, {.quiet = true, .stop_after = 15}).interrupted);
  train(split, {.quiet = true});
  EXPECT_EQ(weights(straight.out_dir, 40), weights(split.out_dir, 40));
  const auto a = records(straight.out_dir, "train"), b = records(split.out_dir, "train"),
             ref = records(fp32.out_dir, "train");
  ASSERT_EQ(a.size(), 40u);
  ASSERT_EQ(b.size(), 40u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["layers"][0]["load"], b[i]["layers"][0]["load"]) << "step " << i + 1;
    EXPECT_EQ(a[i]["precision"], "bf16");
    EXPECT_EQ(ref[i]["precision"], "fp32");
  }
  const double l16 = records(straight.out_dir, "eval").back()["loss"].get<double>();
  const double l32 = records(fp32.out_dir, "eval").back()["loss"].get<double>();
  EXPECT_NEAR(l16, l32, 0.01 * l32);
  EXPECT_NE(l16, l32);  // bf16 really ran
  double mv16 = 0, mv32 = 0;
  for (size_t i = 20; i < 40; ++i) {
    mv16 += a[i]["avg_maxvio"].get<double>() / 20;
    mv32 += ref[i]["avg_maxvio"].get<double>() / 20;
  }
  EXPECT_NEAR(mv16, mv32, 0.1);
}

TEST(TrainerTest, EveryLblScopeTrainsAndLogsItsBalanceBsz) {
  const std::pair<const char*, int64_t> scopes[] = {
      {"sequence", 1}, {"micro", 4}, {"global", 8}, {"global-exact", 8}, {"shuffle", 4}};
  for (auto [scope, bsz] : scopes) {
    RunConfig c = tiny(std::string("scope_") + scope);
    c.train.steps = 3;
    c.train.eval_every = 0;
    c.balance.terms = {BalanceTerm{"lbl", scope, 0.01}};
    TrainResult r = train(c, {.quiet = true});
    EXPECT_TRUE(std::isfinite(r.final_loss)) << scope;
    auto recs = records(c.out_dir, "train");
    ASSERT_EQ(recs.size(), 3u) << scope;
    EXPECT_EQ(recs[0]["balance_bsz"][scope].get<int64_t>(), bsz) << scope;
    // α = 0.01 per layer, 2 layers: the LBL is near 0.02 (0.02 at perfect balance).
    EXPECT_NEAR(recs[0]["lbl"].get<double>(), 0.02, 0.01) << scope;
  }
}

TEST(TrainerTest, LossFreeBiasResumesBitExactly) {
  RunConfig straight = tiny("lf_straight");
  straight.balance.terms.clear();
  straight.router.score = "sigmoid";
  straight.loss_free.update = "sign";
  straight.train.steps = 10;
  RunConfig split = straight;
  split.out_dir = tiny("lf_split").out_dir;
  train(straight, {.quiet = true});
  train(split, {.quiet = true, .stop_after = 5});
  train(split, {.quiet = true});
  EXPECT_EQ(weights(straight.out_dir, 10), weights(split.out_dir, 10));
  auto a = records(straight.out_dir, "train"), b = records(split.out_dir, "train");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i]["layers"][1]["load"], b[i]["layers"][1]["load"]);
  EXPECT_EQ(a.back()["loss"].get<double>(), b.back()["loss"].get<double>());
  // The bias is logged after each step's update: the sign update moves every entry by ±u (or 0).
  ASSERT_TRUE(a[0]["layers"][0].contains("bias"));
  ASSERT_EQ(a[0]["layers"][0]["bias"].size(), 4u);
  EXPECT_NE(a[0]["layers"][0]["bias"], a[1]["layers"][0]["bias"]);
  EXPECT_EQ(a.back()["layers"][1]["bias"], b.back()["layers"][1]["bias"]);
  EXPECT_FALSE(a[0]["layers"][0].contains("bip_prices"));
}

TEST(TrainerTest, EveryRouterFamilyTrains) {
  for (const char* type : {"bip", "sinkhorn", "hash", "optimal"}) {
    RunConfig c = tiny(std::string("router_") + type);
    c.router.type = type;
    if (std::string(type) == "hash") c.router.gate = "uniform";
    c.balance.terms.clear();
    c.train.steps = 3;
    c.train.eval_every = 0;
    TrainResult r = train(c, {.quiet = true});
    EXPECT_TRUE(std::isfinite(r.final_loss)) << type;
    auto recs = records(c.out_dir, "train");
    ASSERT_EQ(recs.size(), 3u) << type;
    // The router's own state and residuals in the step records.
    const auto& last = recs.back()["layers"][0];
    EXPECT_EQ(last.contains("bip_prices"), std::string(type) == "bip") << type;
    if (last.contains("bip_prices")) {
      ASSERT_EQ(last["bip_prices"].size(), 4u);
      for (const auto& q : last["bip_prices"]) EXPECT_GE(q.get<double>(), 0.0);
    }
    EXPECT_EQ(last.contains("sinkhorn_col_error"), std::string(type) == "sinkhorn") << type;
    if (last.contains("sinkhorn_col_error")) {
      EXPECT_GE(last["sinkhorn_col_error"].get<double>(), 0.0);
      EXPECT_LT(last["sinkhorn_col_error"].get<double>(), 0.5);
    }
    EXPECT_FALSE(last.contains("bias")) << type;
    if (std::string(type) == "optimal") {
      // Exact balanced assignment: no expert above capacity ceil(K·N/E) = 32 per micro-batch.
      for (auto& rec : recs)
        for (auto& layer : rec["layers"])
          for (auto& load : layer["load"]) EXPECT_LE(load.get<int64_t>(), 2 * 32);
    }
  }
}

// The defining property of BIP: balanced routing from the first step, without any loss.
TEST(TrainerTest, BipIsBetterBalancedThanTopKAtStepOne) {
  double maxvio[2] = {0, 0};
  int i = 0;
  for (const char* type : {"topk", "bip"}) {
    RunConfig c = tiny(std::string("bip_vs_") + type);
    c.router.type = type;
    c.router.bip_iterations = 4;
    c.model.init_std = 0.2;  // a skewed router at initialisation
    c.balance.terms.clear();
    c.train.steps = 1;
    c.train.warmup_steps = 0;
    train(c, {.quiet = true});
    maxvio[i++] = records(c.out_dir, "train")[0]["avg_maxvio"].get<double>();
  }
  EXPECT_LT(maxvio[1], 0.5 * maxvio[0]) << "topk " << maxvio[0] << ", bip " << maxvio[1];
}

TEST(TrainerTest, BipPricesResumeBitExactly) {
  RunConfig straight = tiny("bip_straight");
  straight.router.type = "bip";
  straight.train.steps = 8;
  RunConfig split = straight;
  split.out_dir = tiny("bip_split").out_dir;
  train(straight, {.quiet = true});
  train(split, {.quiet = true, .stop_after = 4});
  train(split, {.quiet = true});
  EXPECT_EQ(weights(straight.out_dir, 8), weights(split.out_dir, 8));
  auto a = records(straight.out_dir, "train"), b = records(split.out_dir, "train");
  EXPECT_EQ(a.back()["layers"][0]["load"], b.back()["layers"][0]["load"]);
}

TEST(TrainerTest, ExpertChoiceHasExactLoadsReportsBothEvaluationsAndResumes) {
  RunConfig straight = tiny("ec_straight");
  straight.router.type = "expert_choice";
  straight.router.z_loss_coef = 0;
  straight.balance.terms.clear();
  straight.train.steps = 6;
  straight.train.eval_every = 3;
  RunConfig split = straight;
  split.out_dir = tiny("ec_split").out_dir;
  train(straight, {.quiet = true});
  train(split, {.quiet = true, .stop_after = 3});
  train(split, {.quiet = true});
  auto recs = records(straight.out_dir, "train");
  ASSERT_EQ(recs.size(), 6u);
  // k = ceil(N·c/E) = ceil(64·2/4) = 32 per expert and micro-batch; 2 micro-batches per step.
  for (auto& layer : recs[0]["layers"])
    for (auto& load : layer["load"]) EXPECT_EQ(load.get<int64_t>(), 64);
  auto evals = records(straight.out_dir, "eval");
  ASSERT_FALSE(evals.empty());
  EXPECT_TRUE(evals.back().contains("loss_causal"));
  EXPECT_EQ(weights(straight.out_dir, 6), weights(split.out_dir, 6));
  EXPECT_EQ(records(split.out_dir, "eval").back()["loss_causal"], evals.back()["loss_causal"]);
}

// Sinkhorn's causal evaluation: every eval record has both losses, the causal one from the EMA
// potentials, which a resume restores bit-exactly (the resumed run's causal loss is the same).
TEST(TrainerTest, SinkhornReportsBothEvaluationsAndResumesItsPotentials) {
  RunConfig straight = tiny("sk_straight");
  straight.router.type = "sinkhorn";
  straight.balance.terms.clear();
  straight.train.steps = 6;
  straight.train.eval_every = 3;
  RunConfig split = straight;
  split.out_dir = tiny("sk_split").out_dir;
  train(straight, {.quiet = true});
  train(split, {.quiet = true, .stop_after = 3});
  train(split, {.quiet = true});
  auto evals = records(straight.out_dir, "eval");
  ASSERT_FALSE(evals.empty());
  ASSERT_TRUE(evals.back().contains("loss_causal"));
  EXPECT_TRUE(std::isfinite(evals.back()["loss_causal"].get<double>()));
  // Per domain under the causal routing too, with the same domains as the other evaluation.
  ASSERT_TRUE(evals.back().contains("domains_causal"));
  EXPECT_GE(evals.back()["domains"].size(), 1u);
  EXPECT_EQ(evals.back()["domains_causal"].size(), evals.back()["domains"].size());
  for (const auto& [name, d] : evals.back()["domains_causal"].items()) {
    EXPECT_TRUE(evals.back()["domains"].contains(name)) << name;
    EXPECT_TRUE(d.contains("specialisation")) << name;
  }
  EXPECT_NE(evals.back()["loss_causal"], evals.back()["loss"]);
  EXPECT_EQ(weights(straight.out_dir, 6), weights(split.out_dir, 6));
  EXPECT_EQ(records(split.out_dir, "eval").back()["loss_causal"], evals.back()["loss_causal"]);
}

// A Sinkhorn checkpoint written before the causal-evaluation potentials existed (no
// balancer.safetensors; written here by a model whose router keeps no state) still loads: the
// potentials restart at zero, and the next step's training calls copy theirs, not average them.
TEST(TrainerTest, SinkhornCheckpointWithoutPotentialsLoadsAndRestartsThem) {
  RunConfig c = tiny("sk_old");
  c.router.type = "sinkhorn";
  c.balance.terms.clear();
  RouterConfig stateless = c.router;
  stateless.type = "topk";
  Transformer<float> old_model(c.model, topk_options(c), balancer_options(c), 4, nullptr,
                               make_router_options(stateless));
  old_model.init(1);
  const std::string dir = c.out_dir + "/ckpt";
  save_checkpoint(dir, c, old_model, nullptr, TrainerState{});
  ASSERT_FALSE(fs::exists(dir + "/balancer.safetensors"));
  Transformer<float> model(c.model, topk_options(c), balancer_options(c), 4, nullptr,
                           make_router_options(c.router));
  const StateTensor<float> pot = model.layer_state(0).at(0);
  ASSERT_STREQ(pot.name, "sinkhorn_potentials");
  std::fill(pot.data, pot.data + pot.size, 7.f);
  model.balancer().begin_step(5);
  ASSERT_NO_THROW(load_checkpoint(dir, model, nullptr, nullptr));
  for (int64_t i = 0; i < pot.size; ++i) EXPECT_EQ(pot.data[i], 0.f);
  // A training call in the middle of a step (micro-batch 1 of step 5) copies its potentials.
  const int64_t S = c.model.seq_len, B = 4, n = B * S, E = c.model.n_experts;
  std::vector<int32_t> tokens(B * (S + 1));
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<int32_t>((i * 37) % static_cast<size_t>(c.model.vocab_size));
  model.forward(tokens.data(), B, ForwardMode::kTrain, 1);
  const SinkhornOptions so{E, c.model.top_k, static_cast<int>(c.router.sinkhorn_iterations),
                           GateFn::kRaw};
  SinkhornBuffers<float> sb;
  sb.resize(so, n);
  sinkhorn_route_forward(so, model.layer_acts(0).logits.data(), n, sb);
  for (int64_t i = 0; i < E; ++i) EXPECT_EQ(pot.data[i], static_cast<float>(sb.col_pot[i]));
  // After the step, the next call averages with the configured decay.
  model.end_step(
      std::vector<std::vector<int64_t>>(model.n_moe_layers(), std::vector<int64_t>(E, 0)));
  model.balancer().begin_step(6);
  const std::vector<float> before(pot.data, pot.data + E);
  model.forward(tokens.data(), B, ForwardMode::kTrain, 0);
  sinkhorn_route_forward(so, model.layer_acts(0).logits.data(), n, sb);
  const double d = c.router.sinkhorn_eval_decay;
  for (int64_t i = 0; i < E; ++i)
    EXPECT_EQ(pot.data[i],
              static_cast<float>(d * static_cast<double>(before[i]) + (1 - d) * sb.col_pot[i]));
}

// Routing groups of 16 of the micro-batch's 64 tokens, shuffled across the micro-batch: loads stay
// exact, the groups differ from consecutive ones, and a resumed run draws the same permutations.
TEST(TrainerTest, ExpertChoiceShuffledGroupsKeepExactLoadsAndResume) {
  auto ec = [](const std::string& name, const char* order) {
    RunConfig c = tiny(name);
    c.router.type = "expert_choice";
    c.router.z_loss_coef = 0;
    c.router.ec_chunk = 16;
    c.router.ec_group_order = order;
    c.balance.terms.clear();
    c.train.steps = 4;
    c.train.eval_every = 0;
    return c;
  };
  RunConfig sequential = ec("ec_seq", "sequential"), shuffled = ec("ec_shuf", "shuffled");
  RunConfig split = ec("ec_shuf_split", "shuffled");
  train(sequential, {.quiet = true});
  train(shuffled, {.quiet = true});
  train(split, {.quiet = true, .stop_after = 2});
  train(split, {.quiet = true});
  // Named, not `for (... : records(...)[0]["layers"])`: a range-for keeps only the reference that
  // operator[] returns alive, not the temporary vector it points into (heap-use-after-free).
  auto recs = records(shuffled.out_dir, "train");
  for (auto& layer : recs[0]["layers"])
    for (auto& load : layer["load"]) EXPECT_EQ(load.get<int64_t>(), 64);  // 4 groups × 8 × 2
  EXPECT_NE(weights(sequential.out_dir, 4), weights(shuffled.out_dir, 4));
  EXPECT_EQ(weights(shuffled.out_dir, 4), weights(split.out_dir, 4));
}

TEST(TrainerTest, OracleReportsTheOptimalityGapOfEveryRouter) {
  for (const char* type : {"topk", "bip", "optimal"}) {
    RunConfig c = tiny(std::string("oracle_") + type);
    c.router.type = type;
    c.router.oracle_every = 2;
    c.train.steps = 2;
    c.train.eval_every = 0;
    train(c, {.quiet = true});
    auto recs = records(c.out_dir, "train");
    ASSERT_FALSE(recs[0]["layers"][0].contains("oracle"));
    const auto& o = recs[1]["layers"][0]["oracle"];
    const double gap = o["objective_gap"].get<double>();
    if (std::string(type) == "optimal") {
      EXPECT_NEAR(gap, 0.0, 1e-6);
      EXPECT_LE(o["capacity_violation"].get<int64_t>(), 0);
    } else if (std::string(type) == "topk") {
      // Unconstrained top-K scores at least the optimum (gap ≤ 0) by exceeding capacity.
      EXPECT_LE(gap, 1e-6);
    } else {
      EXPECT_TRUE(std::isfinite(gap));
    }
    // BIP also reports the dual gap of its routing prices: ≥ 0 by weak duality.
    if (std::string(type) == "bip") {
      EXPECT_GE(o["dual_gap"].get<double>(), -1e-9);
      EXPECT_LT(o["dual_gap"].get<double>(), 1.0);
    } else {
      EXPECT_FALSE(o.contains("dual_gap"));
    }
  }
}

// Balance groups and step ranges end to end: global-exact over groups of one micro-batch trains
// exactly as the micro scope (one process), and a micro → global switch logs each term's balance
// BSZ only in its steps.
TEST(TrainerTest, BalanceGroupOfOneIsMicroAndTermsSwitchMidRun) {
  auto base = [](const std::string& name) {
    RunConfig c = tiny(name);
    c.train.steps = 4;
    c.train.eval_every = 0;
    return c;
  };
  RunConfig micro = base("group-micro");
  RunConfig group1 = base("group-one");
  group1.balance.terms = {{.scope = "global-exact", .coef = 0.01, .group = 1}};
  train(micro, {.quiet = true});
  train(group1, {.quiet = true});
  auto micro_recs = records(micro.out_dir, "train");
  auto group_recs = records(group1.out_dir, "train");
  for (size_t i = 0; i < micro_recs.size(); ++i) {
    EXPECT_EQ(micro_recs[i]["loss"], group_recs[i]["loss"]) << i;
    EXPECT_EQ(group_recs[i]["balance_bsz"]["global-exact"], micro.train.micro_batch);
  }
  EXPECT_EQ(weights(micro.out_dir, 4), weights(group1.out_dir, 4));

  RunConfig sw = base("switch");
  sw.balance.terms = {{.scope = "micro", .coef = 0.01, .until_step = 2},
                      {.scope = "global", .coef = 0.01, .from_step = 2}};
  train(sw, {.quiet = true});
  auto recs = records(sw.out_dir, "train");
  ASSERT_EQ(recs.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const int64_t want_micro = i < 2 ? sw.train.micro_batch : 0;
    const int64_t want_global = i < 2 ? 0 : sw.train.micro_batch * sw.train.grad_accum;
    EXPECT_EQ(recs[i]["balance_bsz"]["micro"], want_micro) << i;
    EXPECT_EQ(recs[i]["balance_bsz"]["global"], want_global) << i;
  }
}

TEST(TrainerTest, RefusesToResumeADifferentModel) {
  RunConfig c = tiny("mismatch");
  c.train.steps = 2;
  train(c, {.quiet = true});
  c.model.n_experts = 8;
  c.train.steps = 4;
  try {
    train(c, {.quiet = true});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.n_experts: 4 in the checkpoint, 8 given"),
              std::string::npos)
        << e.what();
  }
  // Every [router] key, not only those a hand-kept list named: an Expert Choice run resumed with
  // another group order was accepted silently.
  RunConfig ec = tiny("mismatch-ec");
  ec.router.type = "expert_choice";
  ec.router.z_loss_coef = 0;
  ec.router.ec_chunk = 16;
  ec.balance.terms.clear();
  ec.train.steps = 2;
  train(ec, {.quiet = true});
  ec.router.ec_group_order = "shuffled";
  ec.train.steps = 4;
  try {
    train(ec, {.quiet = true});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "router.ec_group_order: \"sequential\" in the checkpoint, \"shuffled\" given"),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainerTest, TruncatedCheckpointFailsClearly) {
  RunConfig c = tiny("truncated");
  c.train.steps = 2;
  train(c, {.quiet = true});
  const std::string f = c.out_dir + "/checkpoints/step_00000002/model.safetensors";
  fs::resize_file(f, fs::file_size(f) / 2);
  c.train.steps = 4;
  try {
    train(c, {.quiet = true});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
}

TEST(TrainerTest, EvaluateCheckpointOnATokenFile) {
  RunConfig c = tiny("eval");
  c.train.steps = 3;
  train(c, {.quiet = true});
  std::vector<int32_t> toks(17 * 5);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = static_cast<int32_t>((i * 7) % 64);
  std::string path = c.out_dir + "/valid.bin";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(toks.data()), toks.size() * 4);
  EvalResult r = evaluate_checkpoint(c.out_dir + "/checkpoints/step_00000003", path, 0, 2);
  EXPECT_EQ(r.sequences, 5);
  EXPECT_EQ(r.tokens, 5 * 16);
  EXPECT_GT(r.loss, 0);
  EXPECT_NEAR(r.perplexity, std::exp(r.loss), 1e-9);
  ASSERT_EQ(r.maxvio_global.size(), 2u);
}

// A blend of three domains (alpha, beta, gamma), each a train and a valid dataset of seeded
// documents over its own token range, as the run's data (data.composition stays "mixed").
void use_blend(RunConfig& c) {
  const std::string dir = c.out_dir + "_data";
  fs::create_directories(dir);
  const char* names[] = {"alpha", "beta", "gamma"};
  std::string blend, valid;
  for (int d = 0; d < 3; ++d)
    for (const char* split : {"train", "valid"}) {
      const std::string prefix = fmt::format("{}/{}_{}", dir, names[d], split);
      IndexedDatasetWriter w(prefix, TokenDtype::kU16);
      Rng r(mix64(static_cast<uint64_t>(d * 2 + (split[0] == 'v'))));
      for (int doc = 0; doc < 40; ++doc) {
        std::vector<int32_t> t(4 + r.below(12));
        for (auto& x : t) x = 3 + 20 * d + static_cast<int32_t>(r.below(20));
        w.add_document(t);
      }
      w.finalize();
      if (split[0] == 't')
        blend += fmt::format("{}1 {}", blend.empty() ? "" : " ", prefix);
      else
        valid += fmt::format("{}{}", valid.empty() ? "" : " ", prefix);
    }
  c.data.source = "blend";
  c.data.blend = blend;
  c.data.valid = valid;
}

// Evaluation composes its micro-batches as training does: with mixed training micro-batches, the
// per-domain validation sets are dealt out in turn (the same sequences as set by set). Top-K's
// losses do not depend on it; Expert Choice's do, since it fills each expert from the whole
// micro-batch.
TEST(TrainerTest, EvaluationMixesDomainsAsTrainingDoes) {
  for (const char* router : {"topk", "expert_choice"}) {
    SCOPED_TRACE(router);
    RunConfig c = tiny(fmt::format("evalmix_{}", router));
    use_blend(c);
    c.router.type = router;
    if (c.router.type == "expert_choice") {
      c.router.z_loss_coef = 0;
      c.balance.terms.clear();
    }
    c.train.steps = 4;
    c.train.eval_every = 4;
    train(c, {.quiet = true});
    auto evals = records(c.out_dir, "eval");
    ASSERT_EQ(evals.size(), 1u);
    EXPECT_EQ(evals[0]["batches"], "mixed");
    EXPECT_EQ(evals[0]["domains"].size(), 3u);
    const std::string ckpt = c.out_dir + "/checkpoints/step_00000004";
    // eval_batches (2) micro-batches of 4 sequences per domain, as the run's evaluation
    EvalResult as_trained = evaluate_checkpoint(ckpt, "", 8, 2);
    EvalResult mixed = evaluate_checkpoint(ckpt, "", 8, 2, EvalBatches::kMixed);
    EvalResult per = evaluate_checkpoint(ckpt, "", 8, 2, EvalBatches::kPerDomain);
    EXPECT_EQ(as_trained.loss, evals[0]["loss"].get<double>());
    EXPECT_EQ(mixed.loss, as_trained.loss);
    EXPECT_EQ(per.sequences, 24);
    EXPECT_EQ(mixed.sequences, 24);
    EXPECT_EQ(per.tokens, mixed.tokens);
    EXPECT_EQ(nlohmann::json::parse(per.record_json)["batches"], "per-domain");
    if (c.router.type == "topk") {
      // The same tokens, routed token by token: equal up to the order of float sums.
      EXPECT_NEAR(mixed.loss, per.loss, 1e-5 * per.loss);
      auto dm = nlohmann::json::parse(mixed.record_json)["domains"];
      auto dp = nlohmann::json::parse(per.record_json)["domains"];
      for (const char* d : {"alpha", "beta", "gamma"})
        EXPECT_NEAR(dm[d]["loss"].get<double>(), dp[d]["loss"].get<double>(), 1e-4) << d;
    } else {
      EXPECT_GT(std::abs(mixed.loss - per.loss), 1e-5 * per.loss) << "EC's groups did not change";
      // A one-domain group gives every expert exactly its capacity of that domain's tokens: the
      // domain's expert fractions are uniform (specialisation 0). Mixed groups let experts take
      // different shares of each domain.
      auto spec = [](const EvalResult& r, const char* d) {
        const auto rec = nlohmann::json::parse(r.record_json);  // outlives the loop
        double s = 0;
        for (const auto& v : rec["domains"][d]["specialisation"]) s += v.get<double>();
        return s;
      };
      double mixed_spec = 0;
      for (const char* d : {"alpha", "beta", "gamma"}) {
        EXPECT_NEAR(spec(per, d), 0.0, 1e-9) << d;
        mixed_spec += spec(mixed, d);
      }
      EXPECT_GT(mixed_spec, 1e-3);
    }
  }
}

}  // namespace
}  // namespace sy
