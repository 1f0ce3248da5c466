// A new router written against the public interface alone, in this one file: it trains end to
// end through train_step, checkpoints its state and resumes exactly — with no change to the
// registry, the model, the MoE layer, checkpoints or the trainer (docs/routing.md, "Adding a
// router"). It is a deliberately simple family: round-robin, each token gets the K experts after
// a cursor that advances with every training call, so its whole state is the cursor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "switchyard/router.h"
#include "switchyard/slot_router.h"
#include "train/checkpoint.h"
#include "train/run_options.h"
#include "train/train_step.h"

namespace sy {
namespace {

template <typename T>
class RoundRobinRouter final : public SlotRouter<T> {
 public:
  RoundRobinRouter(const TopKOptions& o, int64_t n_max)
      : SlotRouter<T>(o, n_max), forced_(n_max * o.top_k) {}

  std::vector<StateTensor<T>> state() override {
    return {{.name = "round_robin_cursor", .data = &cursor_, .size = 1}};
  }

 private:
  typename SlotRouter<T>::Choice choose(const T* /*z*/, int64_t n,
                                        const RouteCall<T>& call) override {
    const int64_t E = this->o_.n_experts, K = this->o_.top_k;
    const auto c = static_cast<int64_t>(cursor_);
    for (int64_t i = 0; i < n * K; ++i) forced_[i] = static_cast<int32_t>((c + i) % E);
    if (call.update) cursor_ = static_cast<T>((c + n * K) % E);
    return {nullptr, forced_.data()};
  }

  T cursor_ = 0;                 // the next expert to hand out
  std::vector<int32_t> forced_;  // [N,K] scratch
};

template <typename T>
std::unique_ptr<Router<T>> make_round_robin(const RouterOptions& /*ro*/, const TopKOptions& o,
                                            int64_t n_max) {
  return std::make_unique<RoundRobinRouter<T>>(o, n_max);
}
const RouterFamily kRoundRobin{"round_robin", &make_round_robin<float>, &make_round_robin<double>};

RunConfig round_robin_config() {
  RunConfig c;
  c.model.vocab_size = 64;
  c.model.d_model = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.seq_len = 15;  // micro-batches of 45 tokens, 90 slots: the cursor moves by 2 (mod 8)
  c.model.n_experts = 8;
  c.model.top_k = 2;
  c.model.d_expert = 16;
  c.train.micro_batch = 3;
  c.train.grad_accum = 2;
  c.train.warmup_steps = 1;
  c.router.type = "round_robin";
  c.balance.terms.clear();
  return c;
}

// Everything one training run holds, built as train() builds it but with our router family.
struct TrainingRun {
  explicit TrainingRun(const RunConfig& c)
      : cfg(c), model(make_model(c)), opt(model.param_table(), model.num_params()) {
    model.init(c.train.seed);
  }
  static RouterOptions routing() {
    RouterOptions o;
    o.type = kRoundRobin.name;
    o.family = &kRoundRobin;
    return o;
  }
  static Transformer<float> make_model(const RunConfig& c) {
    return Transformer<float>(c.model, topk_options(c), balancer_options(c), c.train.micro_batch,
                              nullptr, routing());
  }
  void train(int64_t from, int64_t to) {
    SyntheticSource src(cfg.model.vocab_size, cfg.model.seq_len, 7);
    src.set_position(static_cast<uint64_t>(from * cfg.train.grad_accum * cfg.train.micro_batch));
    StepMetrics metrics(model.n_moe_layers(), cfg.model.n_experts);
    Buffer<int32_t> tokens(cfg.train.micro_batch * (cfg.model.seq_len + 1));
    Buffer<int32_t> domains(cfg.train.micro_batch);
    SingleProcessCommunicator comm;
    const StepContext ctx{.model = &model,
                          .opt = &opt,
                          .source = &src,
                          .comm = &comm,
                          .train = &cfg.train,
                          .metrics = &metrics,
                          .tokens = &tokens,
                          .domains = &domains};
    for (int64_t step = from; step < to; ++step) train_step(ctx, step, "");
  }
  float cursor(int64_t layer) const { return model.layer_state(layer)[0].data[0]; }
  std::vector<float> params() const {
    return {model.params(), model.params() + model.num_params()};
  }
  RunConfig cfg;
  Transformer<float> model;
  AdamW opt;
};

TEST(CustomRouterTest, RoutesByItsOwnRule) {
  TrainingRun run(round_robin_config());
  run.train(0, 1);
  // 2 micro-batches of 45 tokens × K = 2 per layer: the cursor stands at 180 mod 8 = 4, and the
  // last call handed out 90 consecutive slots, so the loads differ by at most one.
  for (int64_t l = 0; l < run.model.n_moe_layers(); ++l) {
    EXPECT_EQ(run.cursor(l), 4.0f);
    const std::vector<int64_t>& load = run.model.layer_plan(l).load;
    int64_t lo = load[0], hi = load[0], sum = 0;
    for (int64_t x : load) lo = std::min(lo, x), hi = std::max(hi, x), sum += x;
    EXPECT_EQ(sum, 90);
    EXPECT_LE(hi - lo, 1);
  }
}

// 6 steps straight = 3 steps, a checkpoint, a fresh model loaded from it, 3 more steps: the
// weights agree to the bit, and so does the router's state. Without its state the run differs.
TEST(CustomRouterTest, CheckpointsItsStateAndResumesExactly) {
  const RunConfig c = round_robin_config();
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("sy_custom_router_" + std::to_string(getpid())))
          .string();
  std::filesystem::remove_all(dir);

  TrainingRun straight(c);
  straight.train(0, 6);

  TrainingRun first(c);
  first.train(0, 3);
  ASSERT_NE(first.cursor(0), 0.0f);  // else the test would not see a lost state
  const TrainerState st{.step = 3, .data_position = 3 * 2 * 3, .tokens_seen = 0};
  save_checkpoint(dir, c, first.model, &first.opt, st);

  TrainingRun resumed(c);
  TrainerState loaded;
  load_checkpoint(dir, resumed.model, &resumed.opt, &loaded);
  EXPECT_EQ(loaded.step, 3);
  EXPECT_EQ(resumed.cursor(0), first.cursor(0));
  resumed.train(3, 6);
  EXPECT_EQ(resumed.params(), straight.params());
  for (int64_t l = 0; l < straight.model.n_moe_layers(); ++l)
    EXPECT_EQ(resumed.cursor(l), straight.cursor(l));

  TrainingRun forgetful(c);  // the same checkpoint, the router's state then lost
  load_checkpoint(dir, forgetful.model, &forgetful.opt, nullptr);
  for (int64_t l = 0; l < forgetful.model.n_moe_layers(); ++l)
    forgetful.model.layer_state(l)[0].data[0] = 0.0f;
  forgetful.train(3, 6);
  EXPECT_NE(forgetful.params(), straight.params());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sy
