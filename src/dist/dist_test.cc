// The MPI communicator and the balancer across ranks. Run under mpirun with 2 or more ranks
// (CTest does: sy_dist_test_2ranks, sy_dist_test_3ranks); every rank runs every test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/gradcheck.h"
#include "core/rng.h"
#include "dist/mpi_communicator.h"
#include "model/transformer.h"
#include "routing/balancer_test_util.h"
#include "switchyard/balancer.h"

namespace sy {
namespace {

using testing_util::balancer_opts;
using testing_util::routed_micro_batches;

MpiCommunicator* g_comm = nullptr;

// True when x holds the same value on every rank.
bool same_on_all_ranks(uint64_t x) { return ranks_disagreeing(*g_comm, x) == 0; }

template <typename T>
uint64_t digest(const std::vector<T>& v) {
  uint64_t h = 0;
  for (const T& x : v) {
    uint64_t w = 0;
    std::memcpy(&w, &x, sizeof(T));
    h = mix64(h ^ w);
  }
  return h;
}

TEST(MpiCommunicator, IntegerSumsAreExact) {
  const int R = g_comm->size(), me = g_comm->rank();
  std::vector<int64_t> x(1001);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (int64_t{1} << 40) * me + static_cast<int64_t>(i);
  g_comm->allreduce_sum(x.data(), static_cast<int64_t>(x.size()));
  const int64_t ranks_sum = static_cast<int64_t>(R) * (R - 1) / 2;
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(x[i], (int64_t{1} << 40) * ranks_sum + static_cast<int64_t>(i) * R);
}

template <typename T>
void check_real_sum(int64_t n) {
  const int R = g_comm->size(), me = g_comm->rank();
  auto values = [n](int rank) {
    std::vector<T> v(n);
    Rng r(1234 + static_cast<uint64_t>(rank));
    for (T& x : v) x = static_cast<T>(r.uniform() * 2 - 1);
    return v;
  };
  std::vector<T> x = values(me);
  g_comm->allreduce_sum(x.data(), n);
  // The same bits on every rank (replicas must never drift).
  EXPECT_TRUE(same_on_all_ranks(digest(x)));
  // The right values: in rank order, exact for 2 ranks (a + b = b + a), else within rounding.
  std::vector<T> expect(n, T(0));
  for (int r = 0; r < R; ++r) {
    const std::vector<T> v = values(r);
    for (int64_t i = 0; i < n; ++i) expect[i] += v[i];
  }
  for (int64_t i = 0; i < n; ++i) {
    if (R == 2)
      ASSERT_EQ(x[i], expect[i]) << i;
    else
      ASSERT_NEAR(x[i], expect[i], 8 * R * std::numeric_limits<T>::epsilon()) << i;
  }
}

// Sizes with and without a remainder of fewer than R elements, and below R.
TEST(MpiCommunicator, FloatSumsGiveTheSameBitsOnEveryRank) {
  for (int64_t n : {1, 2, 7, 1000, 100003}) check_real_sum<float>(n);
}
TEST(MpiCommunicator, DoubleSumsGiveTheSameBitsOnEveryRank) {
  for (int64_t n : {1, 5, 4096, 10007}) check_real_sum<double>(n);
}

// global-exact over R ranks = global-exact of one process over all R·M micro-batches; and the
// global scope's buffer at the last micro-batch equals it (sync over ranks + buffer).
// Rank i sends (i + 1)·(j + 1) + t, t < n, to rank j.
TEST(MpiCommunicator, AlltoallDeliversEachRanksBlock) {
  const int R = g_comm->size(), me = g_comm->rank();
  const int64_t n = 3;
  std::vector<int64_t> send(R * n), recv(R * n, -1);
  for (int j = 0; j < R; ++j)
    for (int64_t t = 0; t < n; ++t) send[j * n + t] = (me + 1) * (j + 1) * 100 + t;
  g_comm->alltoall(send.data(), recv.data(), n);
  for (int i = 0; i < R; ++i)
    for (int64_t t = 0; t < n; ++t) EXPECT_EQ(recv[i * n + t], (i + 1) * (me + 1) * 100 + t);
}

// Blocks of different lengths (rank i sends i + j values to rank j, some empty), received at
// offsets that leave gaps: values land where the offsets say, the gaps stay untouched.
TEST(MpiCommunicator, AlltoallvDeliversBlocksOfAnyLength) {
  const int R = g_comm->size(), me = g_comm->rank();
  std::vector<int64_t> sc(R), so(R), rc(R), ro(R);
  int64_t s_total = 0, r_total = 0;
  for (int j = 0; j < R; ++j) {
    sc[j] = me + j, so[j] = s_total, s_total += sc[j];
    rc[j] = j + me, ro[j] = r_total + 1, r_total += rc[j] + 1;  // one gap value before each
  }
  std::vector<double> send(s_total), recv(r_total, -7.0);
  for (int j = 0; j < R; ++j)
    for (int64_t t = 0; t < sc[j]; ++t) send[so[j] + t] = me * 1000.0 + j * 10.0 + t + 0.5;
  g_comm->alltoallv(send.data(), sc.data(), so.data(), recv.data(), rc.data(), ro.data());
  for (int i = 0; i < R; ++i) {
    EXPECT_EQ(recv[ro[i] - 1], -7.0);
    for (int64_t t = 0; t < rc[i]; ++t)
      EXPECT_EQ(recv[ro[i] + t], i * 1000.0 + me * 10.0 + t + 0.5);
  }
  // Integers (the MoE layer's token indices) the same way.
  std::vector<int64_t> isend(s_total), irecv(r_total, -7);
  for (int j = 0; j < R; ++j)
    for (int64_t t = 0; t < sc[j]; ++t) isend[so[j] + t] = (int64_t{me} << 40) + j * 1000 + t;
  g_comm->alltoallv(isend.data(), sc.data(), so.data(), irecv.data(), rc.data(), ro.data());
  for (int i = 0; i < R; ++i) {
    EXPECT_EQ(irecv[ro[i] - 1], -7);
    for (int64_t t = 0; t < rc[i]; ++t)
      EXPECT_EQ(irecv[ro[i] + t], (int64_t{i} << 40) + me * 1000 + t);
  }
}

// Sub-groups by rank parity: each sums and exchanges only among its own ranks.
TEST(MpiCommunicator, SplitMakesIndependentGroups) {
  const int R = g_comm->size(), me = g_comm->rank();
  std::unique_ptr<Communicator> group = g_comm->split(me % 2, me);
  int expect_size = 0;
  for (int r = 0; r < R; ++r) expect_size += r % 2 == me % 2;
  EXPECT_EQ(group->size(), expect_size);
  EXPECT_EQ(group->rank(), me / 2);
  int64_t x = me;
  group->allreduce_sum(&x, 1);
  int64_t want = 0;
  for (int r = me % 2; r < R; r += 2) want += r;
  EXPECT_EQ(x, want);
  std::vector<int64_t> send(group->size(), me), recv(group->size(), -1);
  group->alltoall(send.data(), recv.data(), 1);
  for (int i = 0; i < group->size(); ++i) EXPECT_EQ(recv[i], 2 * i + me % 2);
}

TEST(BalancerAcrossRanks, GlobalScopesSeeEveryRanksCounts) {
  const int64_t B = 2, S = 8, M = 3, n = B * S, R = g_comm->size(), me = g_comm->rank();
  auto all = routed_micro_batches(n, R * M, 21);
  Balancer<double> exact(balancer_opts(B, S, M, {{LblScope::kGlobalExact, 1.0}}), g_comm);
  Balancer<double> global(balancer_opts(B, S, M, {{LblScope::kGlobal, 1.0}}), g_comm);
  Balancer<double> one(balancer_opts(B, S, R * M, {{LblScope::kGlobalExact, 1.0}}), nullptr);
  for (auto* b : {&exact, &global, &one}) b->begin_step(0);
  for (int64_t m = 0; m < M; ++m) exact.record_prepass(0, m, all[me * M + m]);
  exact.finish_prepass();
  for (int64_t g = 0; g < R * M; ++g) one.record_prepass(0, g, all[g]);
  one.finish_prepass();
  for (int64_t m = 0; m < M; ++m) {
    RoutingBuffers<double>& buf = all[me * M + m];
    const double l_exact = exact.apply_lbl(0, m, buf);
    const std::vector<double> g_exact(buf.lbl_grad.begin(), buf.lbl_grad.begin() + 6);
    const double l_one = one.apply_lbl(0, me * M + m, buf);
    const std::vector<double> g_one(buf.lbl_grad.begin(), buf.lbl_grad.begin() + 6);
    const double l_global = global.apply_lbl(0, m, buf);
    const std::vector<double> g_global(buf.lbl_grad.begin(), buf.lbl_grad.begin() + 6);
    EXPECT_EQ(l_exact, l_one);
    EXPECT_EQ(g_exact, g_one);
    if (m == M - 1) {
      EXPECT_EQ(l_global, l_exact);
      EXPECT_EQ(g_global, g_exact);
    }
  }
  EXPECT_EQ(exact.balance_bsz(0), B * M * R);
}

// The shuffle scope samples the global batch: f·K·n are integer counts summing to K·n, each at
// most the global step load, and the same draw on every rank for a given (rank, micro-batch).
TEST(BalancerAcrossRanks, ShuffleSamplesTheGlobalBatch) {
  const int64_t B = 2, S = 8, M = 2, n = B * S, R = g_comm->size(), me = g_comm->rank();
  auto all = routed_micro_batches(n, R * M, 33);
  Balancer<double> shuf(balancer_opts(B, S, M, {{LblScope::kShuffle, 1.0}}), g_comm);
  shuf.begin_step(5);
  for (int64_t m = 0; m < M; ++m) shuf.record_prepass(0, m, all[me * M + m]);
  shuf.finish_prepass();
  for (int64_t m = 0; m < M; ++m) {
    RoutingBuffers<double>& buf = all[me * M + m];
    shuf.apply_lbl(0, m, buf);
    double sum = 0;
    for (int i = 0; i < 6; ++i) {
      const double c = buf.lbl_grad[i] * n * n / 6.0 * 2;  // α·E·f/n with α = 1 → f·K·n
      ASSERT_NEAR(c, std::round(c), 1e-9);
      int64_t global_load = 0;
      for (const auto& b : all) global_load += b.load[i];
      EXPECT_LE(std::round(c), global_load);
      sum += c;
    }
    EXPECT_NEAR(sum, 2.0 * n, 1e-9);
  }
}

// Router state that each rank moves from its own micro-batches (BIP's prices, Expert Choice's
// thresholds, Sinkhorn's potentials): replaced by the mean over ranks after each step
// (Transformer::end_step).
TEST(RoutingStateAcrossRanks, IsAveragedAfterEachStep) {
  const int64_t R = g_comm->size(), me = g_comm->rank();
  ModelConfig m;
  m.vocab_size = 16;
  m.d_model = 8;
  m.n_layers = 2;
  m.n_heads = 1;
  m.seq_len = 4;
  m.n_experts = 6;
  m.top_k = 2;
  m.d_expert = 4;
  for (const char* type : {"bip", "expert_choice", "sinkhorn"}) {
    RouterOptions ro;
    ro.type = type;
    TopKOptions to;
    to.n_experts = 6;
    to.top_k = 2;
    BalancerOptions bo = balancer_opts(1, 4, 1, {});
    bo.n_layers = 2;
    Transformer<float> model(m, to, bo, 1, g_comm, ro);
    for (int64_t l = 0; l < 2; ++l) {
      ASSERT_EQ(model.layer_state(l).size(), 1u) << type;
      float* x = model.layer_state(l)[0].data;
      for (int i = 0; i < 6; ++i) x[i] = static_cast<float>((l + 1) * me + i);
    }
    model.balancer().begin_step(0);
    model.end_step({std::vector<int64_t>(6, 1), std::vector<int64_t>(6, 1)});
    const float mean_rank = static_cast<float>(R - 1) / 2;
    for (int64_t l = 0; l < 2; ++l)
      for (int i = 0; i < 6; ++i)
        EXPECT_FLOAT_EQ(model.layer_state(l)[0].data[i], (l + 1) * mean_rank + i) << type;
  }
}

// Expert parallelism over every rank (E = 6 experts, E/R on each): each rank's forward and
// backward on its own tokens equal a model holding every expert — the same loss and loads, the
// same replicated-parameter gradients, and each local expert's gradient the sum over ranks of
// the full model's (its rows came from every rank). Double precision: only the summation order
// differs (the experts' GEMMs; a token's results are summed per rank first). Not BIP here: its
// thresholds sit exactly on a token's score, so a last-bit difference in the layer below can
// move a token (tests/mpi_test.sh compares BIP's runs as "close").
TEST(ExpertParallelAcrossRanks, EqualsTheModelWithEveryExpert) {
  const int64_t R = g_comm->size(), me = g_comm->rank();
  ModelConfig m;
  m.vocab_size = 16;
  m.d_model = 8;
  m.n_layers = 2;
  m.n_heads = 2;
  m.seq_len = 5;
  m.n_experts = 6;
  m.top_k = 2;
  m.d_expert = 4;
  m.n_shared_experts = 1;
  m.d_shared = 3;
  m.init_std = 0.5;
  const int64_t B = 2;
  for (const char* type : {"topk", "expert_choice"}) {
    RouterOptions ro;
    ro.type = type;
    TopKOptions to;
    to.n_experts = 6;
    to.top_k = 2;
    to.z_loss_coef = 0.01;
    BalancerOptions bo = balancer_opts(B, m.seq_len, 1, {});
    bo.n_layers = 2;
    if (std::string(type) == "topk") bo.lbl = {{LblScope::kMicro, 0.1}};
    if (std::string(type) == "expert_choice") to.z_loss_coef = 0;
    Transformer<double> full(m, to, bo, B, nullptr, ro);
    Transformer<double> shard(m, to, bo, B, nullptr, ro, g_comm);
    full.init(3);
    shard.init(3);
    // Each rank holds 1/R of the experts' parameters (and so of their gradients and moments).
    int64_t shard_experts = 0, full_experts = 0;
    for (const ParamRange& r : shard.expert_ranges()) shard_experts += r.numel;
    for (const ParamRange& r : full.expert_ranges()) full_experts += r.numel;
    ASSERT_EQ(shard_experts * R, full_experts);
    ASSERT_LT(shard.num_params(), full.num_params());
    // The shard's tensors are the full model's of the same name.
    std::vector<int64_t> full_offset_of(shard.param_table().size(), -1);
    for (size_t i = 0; i < shard.param_table().size(); ++i)
      for (const ParamInfo& f : full.param_table())
        if (f.name == shard.param_table()[i].name) full_offset_of[i] = f.offset;
    for (size_t i = 0; i < shard.param_table().size(); ++i) {
      const ParamInfo& p = shard.param_table()[i];
      ASSERT_GE(full_offset_of[i], 0) << p.name;
      for (int64_t j = 0; j < p.numel; ++j)
        ASSERT_EQ(shard.params()[p.offset + j], full.params()[full_offset_of[i] + j]) << p.name;
    }
    std::vector<int32_t> tokens(B * (m.seq_len + 1));
    Rng rng(100 + static_cast<uint64_t>(me));
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(16));
    full.balancer().begin_step(0);
    shard.balancer().begin_step(0);
    const ForwardStats a = full.forward(tokens.data(), B);
    const ForwardStats b = shard.forward(tokens.data(), B);
    EXPECT_NEAR(a.ce_sum, b.ce_sum, 1e-9 * std::abs(a.ce_sum)) << type;
    EXPECT_NEAR(a.lbl + a.z_loss, b.lbl + b.z_loss, 1e-12) << type;
    for (int64_t l = 0; l < 2; ++l) EXPECT_EQ(full.layer_plan(l).load, shard.layer_plan(l).load);
    // A token travels once to each rank holding any of its experts: from the full model's plans,
    // the (token, rank) pairs and rows each rank sends each rank, summed over senders.
    int64_t saved = 0;  // rows that did not travel: the test must exercise it
    for (int64_t l = 0; l < 2; ++l) {
      const RoutingPlan<double>& p = full.layer_plan(l);
      const int64_t El = 6 / R;
      std::vector<int64_t> sent(2 * R, 0);  // [tokens to rank j..., rows to rank j...]
      for (int64_t t = 0; t < p.n; ++t) {
        std::vector<bool> reached(R, false);
        for (int64_t q = p.token_offsets[t]; q < p.token_offsets[t + 1]; ++q) {
          const int64_t row = p.token_rows[q];
          int64_t e = 0;
          while (row >= p.expert_offsets[e + 1]) ++e;
          reached[e / El] = true;
          ++sent[R + e / El];
        }
        for (int64_t j = 0; j < R; ++j) sent[j] += reached[j];
      }
      g_comm->allreduce_sum(sent.data(), 2 * R);
      const ExchangeStats& x = shard.layer_acts(l).exchange;
      EXPECT_EQ(x.tokens, sent[me]) << type << " layer " << l;
      EXPECT_EQ(x.rows, sent[R + me]) << type << " layer " << l;
      saved += x.rows - x.tokens;
    }
    g_comm->allreduce_sum(&saved, 1);
    EXPECT_GT(saved, 0) << type << ": no token had 2 experts on one rank";
    full.zero_grad();
    shard.zero_grad();
    full.backward(0.1, 1.0);
    shard.backward(0.1, 1.0);
    // The full model's expert gradients summed over ranks: what each shard's experts saw.
    std::vector<double> summed(full.grads(), full.grads() + full.num_params());
    g_comm->allreduce_sum(summed.data(), full.num_params());
    double worst = 0;
    for (size_t i = 0; i < shard.param_table().size(); ++i) {
      const ParamInfo& p = shard.param_table()[i];
      const double* want = (p.expert ? summed.data() : full.grads()) + full_offset_of[i];
      for (int64_t j = 0; j < p.numel; ++j)
        worst = std::max(
            worst, std::abs(shard.grads()[p.offset + j] - want[j]) / (1e-6 + std::abs(want[j])));
    }
    EXPECT_LT(worst, 1e-9) << type << " on " << R << " ranks";
  }
}

// Loss-free biases move from the loads summed over ranks: the same update on every rank.
TEST(BalancerAcrossRanks, LossFreeBiasUsesEveryRanksLoads) {
  const int64_t me = g_comm->rank();
  BalancerOptions o = balancer_opts(1, 4, 1, {});
  o.bias_update = BiasUpdate::kSign;
  o.bias_rate = 0.5;
  Balancer<float> b(o, g_comm);
  b.begin_step(0);
  // Only rank 0 sees expert 0 overloaded; the sum over ranks still does.
  std::vector<int64_t> load(6, 10);
  if (me == 0) load[0] += 100;
  b.end_step({load});
  EXPECT_LT(b.bias(0)[0], 0.f);  // overloaded in the global sum, whichever rank saw it
  EXPECT_TRUE(same_on_all_ranks(digest(b.bias_state())));
}

}  // namespace
}  // namespace sy

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  sy::MpiCommunicator comm;
  sy::g_comm = &comm;
  if (comm.size() < 2) {
    std::fprintf(stderr, "sy_dist_test: run under mpirun with 2 or more ranks\n");
    return 1;
  }
  if (comm.rank() != 0) {  // one report: rank 0's (a failure elsewhere still fails the job)
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}
