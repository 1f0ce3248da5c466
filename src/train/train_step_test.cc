#include "train/train_step.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/run_options.h"

namespace sy {
namespace {

// A small MoE with a global-exact LBL (so the step runs the balancer's pre-pass) and the
// loss-free bias (so it runs the end-of-step update).
RunConfig small_moe() {
  RunConfig c;
  c.model.vocab_size = 64;
  c.model.d_model = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.seq_len = 16;
  c.model.n_experts = 4;
  c.model.top_k = 2;
  c.model.d_expert = 32;
  c.train.micro_batch = 4;
  c.train.grad_accum = 3;
  c.train.warmup_steps = 2;
  c.balance.terms = {{.type = "lbl", .scope = "global-exact", .coef = 0.01}};
  c.loss_free.update = "sign";
  return resolve_defaults(c);
}

struct Rig {
  explicit Rig(const RunConfig& c)
      : cfg(c),
        model(c.model, topk_options(c), balancer_options(c), c.train.micro_batch, nullptr,
              make_router_options(c.router)),
        opt(model.param_table(), model.num_params()),
        src(c.model.vocab_size, c.model.seq_len, 7),
        metrics(model.n_moe_layers(), c.model.n_experts),
        tokens(c.train.micro_batch * (c.model.seq_len + 1)),
        domains(c.train.micro_batch) {
    model.init(c.train.seed);
  }
  StepContext ctx() {
    return {.model = &model,
            .opt = &opt,
            .source = &src,
            .comm = &comm,
            .train = &cfg.train,
            .metrics = &metrics,
            .tokens = &tokens,
            .domains = &domains};
  }
  RunConfig cfg;
  Transformer<float> model;
  AdamW opt;
  SyntheticSource src;
  SingleProcessCommunicator comm;
  StepMetrics metrics;
  Buffer<int32_t> tokens, domains;
};

TEST(TrainStepTest, OneStepReadsTheGlobalBatchUpdatesWeightsAndBalancerState) {
  const RunConfig c = small_moe();
  Rig rig(c);
  const std::vector<float> before(rig.model.params(), rig.model.params() + rig.model.num_params());
  const std::vector<float> bias0(rig.model.balancer().bias(0),
                                 rig.model.balancer().bias(0) + c.model.n_experts);
  const StepResult r = train_step(rig.ctx(), 0, "hint");
  EXPECT_EQ(rig.src.position(), static_cast<uint64_t>(c.train.grad_accum * c.train.micro_batch));
  EXPECT_EQ(r.tokens, c.train.grad_accum * c.train.micro_batch * c.model.seq_len);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_NEAR(r.loss, r.ce + r.lbl + r.z_loss, 1e-12);
  EXPECT_NEAR(r.ce, std::log(64.0), 0.5);  // an untrained model is close to uniform
  EXPECT_GT(r.lbl, 0);
  EXPECT_EQ(r.lr, lr_at(c.train, 0));
  EXPECT_GT(r.grad_norm, 0);
  EXPECT_GT(r.times.forward, 0);
  EXPECT_GT(r.times.prepass, 0);  // global-exact needs the pre-pass
  EXPECT_GT(r.times.backward, 0);
  // The metrics hold the step's loads: every token's K experts, over the M micro-batches.
  int64_t sum = 0;
  for (int64_t x : rig.metrics.load(0)) sum += x;
  EXPECT_EQ(sum, r.tokens * c.model.top_k);
  EXPECT_EQ(rig.metrics.micro_batches(), c.train.grad_accum);
  EXPECT_NE(std::vector<float>(rig.model.params(), rig.model.params() + rig.model.num_params()),
            before);
  // The loss-free bias moved after the step (sign update: ±u per expert).
  const float* bias1 = rig.model.balancer().bias(0);
  for (int64_t i = 0; i < c.model.n_experts; ++i)
    EXPECT_NEAR(std::abs(bias1[i] - bias0[i]), c.loss_free.rate, 1e-7) << i;
}

TEST(TrainStepTest, SameStartSameStep) {
  const RunConfig c = small_moe();
  Rig a(c), b(c);
  for (int64_t step = 0; step < 3; ++step) {
    const StepResult ra = train_step(a.ctx(), step, "");
    const StepResult rb = train_step(b.ctx(), step, "");
    EXPECT_EQ(ra.loss, rb.loss);
    EXPECT_EQ(ra.grad_norm, rb.grad_norm);
  }
  EXPECT_EQ(std::vector<float>(a.model.params(), a.model.params() + a.model.num_params()),
            std::vector<float>(b.model.params(), b.model.params() + b.model.num_params()));
}

// The update zeroes the gradients as it reads them (no zeroing pass at the next step's start);
// gradients written outside train_step make the next step zero them itself: the same step.
TEST(TrainStepTest, LeavesTheGradientsZeroAndStartsFromZero) {
  const RunConfig c = small_moe();
  Rig a(c), b(c);
  train_step(a.ctx(), 0, "");
  train_step(b.ctx(), 0, "");
  const float* g = a.model.grads();
  EXPECT_EQ(std::vector<float>(g, g + a.model.num_params()),
            std::vector<float>(a.model.num_params(), 0.f));
  // b: something writes its gradients between the steps.
  std::fill(b.model.grads(), b.model.grads() + b.model.num_params(), 1.f);
  const StepResult ra = train_step(a.ctx(), 1, ""), rb = train_step(b.ctx(), 1, "");
  EXPECT_EQ(ra.loss, rb.loss);
  EXPECT_EQ(ra.grad_norm, rb.grad_norm);
  EXPECT_EQ(std::vector<float>(a.model.params(), a.model.params() + a.model.num_params()),
            std::vector<float>(b.model.params(), b.model.params() + b.model.num_params()));
}

// A non-finite loss or gradient norm stops the step before the update: the weights are the
// ones it started from, and the message carries the caller's advice.
TEST(TrainStepTest, DivergenceThrowsBeforeTheUpdate) {
  RunConfig c = small_moe();
  c.model.init_std = 1e30;
  Rig rig(c);
  const std::vector<float> before(rig.model.params(), rig.model.params() + rig.model.num_params());
  try {
    train_step(rig.ctx(), 4, "resume from X");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("step 5: the training loss"), std::string::npos) << what;
    EXPECT_NE(what.find("the weights were not updated by this step; resume from X"),
              std::string::npos)
        << what;
  }
  EXPECT_EQ(std::vector<float>(rig.model.params(), rig.model.params() + rig.model.num_params()),
            before);
}

}  // namespace
}  // namespace sy
