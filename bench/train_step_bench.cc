// Training-step throughput of switchyard on a config (SMALL by default): the trainer's step
// (train/train_step.h: forward + backward over one micro-batch, the balancer's updates, AdamW) on
// the synthetic corpus, timed after a warm-up. Also
// measures the sgemm peak of both BLAS backends in the same process (and, with --precision bf16,
// the bf16 GEMM peak), the MFU denominator, and reports where the forward and backward passes
// spend their time (per step, by phase) and each phase's loss budget (its ms beside what its model
// FLOPs take at the peak).
// Prints one JSON line on stdout (scripts/bench.sh compares it with the PyTorch peer).
//   train_step_bench [--config configs/small.toml] [--steps 20] [--warmup 3] [--threads 2]
//                    [--gemm auto|onednn|openblas|mixed] [--precision fp32|bf16]
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "config/run_config.h"
#include "core/error.h"
#include "core/gemm.h"
#include "data/batch_source.h"
#include "model/transformer.h"
#include "train/optimizer.h"
#include "train/run_options.h"
#include "train/train_step.h"

// NOLINTNEXTLINE(bugprone-exception-escape): only sy::Error is expected; others abort loudly
int main(int argc, char** argv) {
  CLI::App app{"switchyard training-step benchmark"};
  std::string config = "configs/small.toml", gemm_name = "auto", precision = "fp32";
  int steps = 20, warmup = 3, threads = 2;
  app.add_option("--config", config, "run config (TOML)")->check(CLI::ExistingFile);
  app.add_option("--steps", steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--gemm", gemm_name, "fp32 GEMM backend: auto | onednn | openblas | mixed");
  app.add_option("--precision", precision, "weight GEMMs: fp32 | bf16 (system.precision)");
  CLI11_PARSE(app, argc, argv);
  try {
    sy::RunConfig cfg = sy::load_run_config(config, {"train.grad_accum=1"});
    omp_set_num_threads(threads);
    nlohmann::json peak;
    double best_peak = 0;
    for (auto be : {sy::GemmBackend::kOneDnn, sy::GemmBackend::kOpenBlas}) {
      sy::set_gemm_backend(be);
      double g = sy::measure_sgemm_peak();
      peak[sy::gemm_backend_name(be)] = g;
      best_peak = std::max(best_peak, g);
    }
    sy::set_gemm_backend(sy::parse_gemm_backend(gemm_name));
    double bf16_peak = 0;
    const sy::Precision prec = sy::parse_precision(precision);
    if (prec == sy::Precision::kBf16) {
      SY_CHECK(sy::cpu_has_bf16(), "--precision bf16: {}", sy::bf16_unsupported_reason());
      bf16_peak = sy::measure_bf16_gemm_peak();
    }
    const auto& m = cfg.model;
    const int64_t B = cfg.train.micro_batch, S = m.seq_len;
    sy::Transformer<float> model(m, sy::topk_options(cfg), sy::balancer_options(cfg), B, nullptr,
                                 sy::make_router_options(cfg.router));
    model.init(cfg.train.seed);
    model.set_precision(prec);
    sy::AdamW opt(model.param_table(), model.num_params());
    sy::SyntheticSource src(m.vocab_size, S, cfg.data.synthetic_seed);
    sy::SingleProcessCommunicator comm;
    sy::StepMetrics metrics(model.n_moe_layers(), m.n_experts);
    sy::Buffer<int32_t> tokens(B * (S + 1)), domains(B);
    // The trainer's own step (train/train_step.h): the balancer's pre-pass and end-of-step
    // update, the metrics and the divergence check included.
    const sy::StepContext ctx{.model = &model,
                              .opt = &opt,
                              .source = &src,
                              .comm = &comm,
                              .train = &cfg.train,
                              .metrics = &metrics,
                              .tokens = &tokens,
                              .domains = &domains};
    std::vector<double> secs, fwd, bwd, optim, read;
    sy::PhaseTimes fwd_phases, bwd_phases;  // summed over the measured steps
    for (int i = 0; i < warmup + steps; ++i) {
      model.reset_phase_times();
      const sy::StepResult r = sy::train_step(ctx, i, "(benchmark)");
      const sy::StepTimes& t = r.times;
      if (i >= warmup) {
        fwd_phases += model.forward_times();
        bwd_phases += model.backward_times();
        secs.push_back(t.read + t.prepass + t.forward + t.backward + t.reduce + t.update);
        fwd.push_back(t.prepass + t.forward);
        bwd.push_back(t.backward);
        optim.push_back(t.update);
        read.push_back(t.read);
      }
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::sort(secs.begin(), secs.end());
    const double med = secs[secs.size() / 2];
    const double tps = static_cast<double>(B * S) / med;
    const double flops = model.flops_per_token();
    // Per step, ms: where the passes' time goes (model/transformer.h, PhaseTimes); "other" is
    // the norms, residual adds and embedding.
    const double k = 1e3 / steps;              // summed seconds → ms per step
    auto rest = [](const sy::PhaseTimes& p) {  // what the named phases leave of the pass
      return p.total_s - (p.attention_s + p.router_s + p.experts_s + p.shared_s + p.moe_rest_s +
                          p.dense_s + p.head_s);
    };
    auto phases = [&](const sy::PhaseTimes& p) {
      return nlohmann::json{{"attention", p.attention_s * k},
                            {"router", p.router_s * k},
                            {"experts", p.experts_s * k},
                            {"shared_experts", p.shared_s * k},
                            {"moe_dispatch_combine", p.moe_rest_s * k},
                            {"dense_ffn", p.dense_s * k},
                            {"head", p.head_s * k},
                            {"other", rest(p) * k},
                            {"total", p.total_s * k}};
    };
    // The loss budget: each phase's measured ms per step (forward + backward) beside what its
    // model FLOPs would take at the measured peak; the excesses (plus the update phase, which
    // has no model FLOPs) add up to the step's distance from MFU 1.
    const double peak_used = bf16_peak > 0 ? bf16_peak : best_peak;
    const sy::PhaseFlops pf = model.flops_per_token_by_phase();
    const double at_peak_ms = static_cast<double>(B * S) / (peak_used * 1e9) * 1e3;
    nlohmann::json budget;
    auto budget_row = [&](const char* name, double fwd_s, double bwd_s, double phase_flops) {
      const double ms = (fwd_s + bwd_s) * k, ideal = phase_flops * at_peak_ms;
      budget[name] = {{"ms", ms}, {"at_peak_ms", ideal}, {"excess_ms", ms - ideal}};
    };
    budget_row("attention", fwd_phases.attention_s, bwd_phases.attention_s, pf.attention);
    budget_row("router", fwd_phases.router_s, bwd_phases.router_s, pf.router);
    budget_row("experts", fwd_phases.experts_s, bwd_phases.experts_s, pf.experts);
    budget_row("shared_experts", fwd_phases.shared_s, bwd_phases.shared_s, pf.shared);
    budget_row("dense_ffn", fwd_phases.dense_s, bwd_phases.dense_s, pf.dense);
    budget_row("head", fwd_phases.head_s, bwd_phases.head_s, pf.head);
    budget_row("dispatch_combine", fwd_phases.moe_rest_s, bwd_phases.moe_rest_s, 0);
    budget_row("other", rest(fwd_phases), rest(bwd_phases), 0);
    budget["update"] = {
        {"ms", median(optim) * 1e3}, {"at_peak_ms", 0}, {"excess_ms", median(optim) * 1e3}};
    nlohmann::json out = {{"engine", "switchyard"},
                          {"config", config},
                          {"threads", threads},
                          {"gemm", sy::gemm_backend_name(sy::gemm_backend())},
                          {"precision", sy::precision_name(prec)},
                          {"tokens_per_s", tps},
                          {"step_ms_median", med * 1e3},
                          {"step_ms_min", secs.front() * 1e3},
                          {"forward_ms", median(fwd) * 1e3},
                          {"backward_ms", median(bwd) * 1e3},
                          {"optimizer_ms", median(optim) * 1e3},
                          {"read_ms", median(read) * 1e3},
                          {"forward_phases_ms", phases(fwd_phases)},
                          {"backward_phases_ms", phases(bwd_phases)},
                          {"budget_ms", budget},
                          {"flops_per_token", flops},
                          {"model_gflops", tps * flops / 1e9},
                          {"sgemm_peak_gflops", peak},
                          {"bf16_peak_gflops", bf16_peak},
                          // against the peak of the precision the weight GEMMs run in
                          {"mfu", tps * flops / ((bf16_peak > 0 ? bf16_peak : best_peak) * 1e9)}};
    std::cout << out.dump() << std::endl;
    return 0;
  } catch (const sy::Error& e) {
    std::cerr << "train_step_bench: error: " << e.what() << "\n";
    return 1;
  }
}
