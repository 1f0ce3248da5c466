#include "train/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "core/console.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "core/rng.h"
#include "data/batch_source.h"
#include "io/atomic_file.h"
#include "io/checkpoint_dir.h"
#include "io/run_lock.h"
#include "model/transformer.h"
#include "routing/optimal.h"
#include "train/checkpoint.h"
#include "train/evaluation.h"
#include "train/metrics.h"
#include "train/metrics_log.h"
#include "train/optimizer.h"
#include "train/run_options.h"
#include "train/train_step.h"

namespace sy {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The newest checkpoints a run keeps (docs/training.md, "Retention").
constexpr int kKeepCheckpoints = 3;

// The bytes of the regular files directly in `dir` (a checkpoint's temp directory).
int64_t directory_bytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += static_cast<int64_t>(e.file_size(ec));
  return total;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  // NOLINTNEXTLINE(bugprone-incorrect-roundings): s >= 0 here, so +0.5 then truncate rounds
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// MFU's denominator: the job's GEMM peak in the precision the weight GEMMs run in, the sum of
// every rank's measurement (each measures its own at the same time). Measured at start-up, where
// other load on the machine during those 0.4 s makes it too low and every MFU too high; so the
// first step whose MFU exceeds 100% on any rank measures it again, once, and keeps the larger.
class JobPeak {
 public:
  JobPeak(Communicator& comm, Precision precision, std::function<double()> measure)
      : comm_(comm), measure_(std::move(measure)) {
    if (!measure_)
      measure_ = [precision] {
        return precision == Precision::kBf16 ? measure_bf16_gemm_peak() : measure_sgemm_peak();
      };
    gflops_ = measure_job();
  }
  double gflops() const { return gflops_; }
  double mfu(double flops_per_s) const { return flops_per_s / (gflops_ * 1e9); }

  // Called by every rank after each step with its own MFU. Returns true when it measured again
  // (every rank agrees: the decision is taken on the largest MFU over ranks).
  bool remeasure_if_implausible(double mfu) {
    if (remeasured_) return false;
    const std::vector<double> all = per_rank(comm_, mfu);
    if (*std::max_element(all.begin(), all.end()) <= 1.0) return false;
    remeasured_ = true;
    gflops_ = std::max(gflops_, measure_job());
    return true;
  }

 private:
  double measure_job() {
    double peak = measure_();
    comm_.allreduce_sum(&peak, 1);
    return peak;
  }

  Communicator& comm_;
  std::function<double()> measure_;
  double gflops_ = 0;
  bool remeasured_ = false;
};

// A 64-bit digest of bytes, chained from h (the same on every rank for the same bytes).
uint64_t digest_bytes(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i + 8 <= bytes; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = mix64(h ^ w);
  }
  for (size_t i = bytes / 8 * 8; i < bytes; ++i) h = mix64(h ^ p[i]);
  return h;
}

// Data parallelism keeps one model on every rank; a checkpoint (written by rank 0) is only true
// for all of them if their weights and routing state are the same bits. Checked before each save.
// Under expert parallelism the replicated part is compared over every rank and the experts over
// the ranks that hold the same ones (expert_replicas).
void check_replicas_agree(Transformer<float>& model, Communicator& comm,
                          Communicator* expert_replicas, int64_t step) {
  uint64_t h = 0, he = 0;
  auto add = [](uint64_t& d, const void* data, int64_t n) {
    d = digest_bytes(d, data, sizeof(float) * static_cast<size_t>(n));
  };
  if (expert_replicas == nullptr) {
    add(h, model.params(), model.num_params());
  } else {
    for (const ParamRange& r : model.replicated_ranges())
      add(h, model.params() + r.offset, r.numel);
    for (const ParamRange& r : model.expert_ranges()) add(he, model.params() + r.offset, r.numel);
  }
  for (int64_t l = 0; l < model.n_moe_layers(); ++l)
    for (const StateTensor<const float>& s : std::as_const(model).layer_state(l))
      add(h, s.data, s.size);
  int64_t bad = ranks_disagreeing(comm, h);
  if (expert_replicas != nullptr) {  // a group's count, made the same on every rank
    int64_t groups_bad = ranks_disagreeing(*expert_replicas, he) > 0 ? 1 : 0;
    comm.allreduce_sum(&groups_bad, 1);
    bad += groups_bad;
  }
  SY_CHECK(bad == 0,
           "step {}: the data-parallel replicas differ ({} of {} ranks see weights or routing "
           "state unlike the others'); this is a bug in switchyard, please report it",
           step, bad, comm.size());
}

std::string step_dir_name(int64_t step) { return fmt::format("step_{:08}", step); }

// ---- Start-up checks: a run fails before its first step, not after hours of training ----------

// Every rank must train the same resolved config: ranks started with different files or --set
// overrides (mpirun app contexts) would otherwise wait forever in a collective of another size, or
// train different models. This is the first collective of a run, the same on every rank.
void check_ranks_agree_on_config(const RunConfig& cfg, Communicator& comm) {
  if (comm.size() == 1) return;
  const std::string text = to_toml(cfg);
  const int64_t bad = ranks_disagreeing(comm, digest_bytes(0, text.data(), text.size()));
  SY_CHECK(bad == 0,
           "the ranks must all train the same config, got {} of {} ranks with a resolved config "
           "unlike the others' (rank {} has out_dir {}); start every rank with the same --config "
           "and --set overrides",
           bad, comm.size(), comm.rank(), cfg.out_dir);
}

// out_dir is written into config.toml and every checkpoint: it must be text TOML can hold, and
// the longest file a checkpoint writes below it must fit the system's path limit.
void check_out_dir_path(const std::string& out) {
  try {
    (void)json(out).dump();  // throws on invalid UTF-8
  } catch (const json::exception&) {
    fail(fmt::format("out_dir must be valid UTF-8 (it is stored in config.toml), got {:?}", out));
  }
  // "/checkpoints/step_00000000.tmp-<pid>/optimizer.safetensors" and its kin.
  constexpr size_t kLongestBelow = 80;
  SY_CHECK(out.size() + kLongestBelow < PATH_MAX,
           "out_dir must be shorter than {} characters (checkpoint files below it must fit the "
           "system's {}-byte path limit), got {} characters",
           PATH_MAX - kLongestBelow, PATH_MAX, out.size());
}

// Refuses a config that cannot fit in memory before allocating it (with R ranks on this host,
// each needs its own copy).
void check_memory(const RunConfig& cfg) {
  const MemoryEstimate e = estimate_training_memory(cfg);
  const double avail = available_memory_bytes();
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const double here = local ? std::max(1.0, std::atof(local)) : 1.0;
  SY_CHECK(avail < 0 || e.total_bytes * here <= avail,
           "this config needs about {:.1f} GB per process (parameters {:.2f}, gradients {:.2f}, "
           "AdamW moments {:.2f}, activations {:.2f} GB){}, but {:.1f} GB are available; lower "
           "train.micro_batch (activations grow with micro_batch x seq_len) or the model size",
           e.total_bytes / 1e9, e.params_bytes / 1e9, e.grads_bytes / 1e9, e.moments_bytes / 1e9,
           e.activations_bytes / 1e9, here > 1 ? fmt::format(" x {} ranks on this host", here) : "",
           avail / 1e9);
}

// Rank 0 writes the run directory; the others read it on resume: all must see the same one.
void check_ranks_share_run_dir(const std::string& out, uint64_t lead_token, Communicator& comm) {
  if (comm.size() == 1) return;
  int64_t token = static_cast<int64_t>(lead_token);  // 0 except on rank 0: the sum is its token
  comm.allreduce_sum(&token, 1);
  int64_t blind = io::read_run_lock_token(out) != static_cast<uint64_t>(token);
  comm.allreduce_sum(&blind, 1);
  SY_CHECK(blind == 0,
           "{}: every rank must see the run directory rank 0 writes, got {} of {} ranks that do "
           "not (a local directory on each machine?); put out_dir on a file system all ranks "
           "share",
           out, blind, comm.size());
}

// A resume continues the same model: every key of [model], [router], [loss_free] and [balance]
// (run_config.h, model_entries) must equal the checkpoint's; the error lists each that differs.
void check_resume_config(const std::string& out, const std::string& checkpoint,
                         const RunConfig& saved, const RunConfig& given) {
  const std::vector<std::string> conflicts = resume_conflicts(saved, given);
  if (conflicts.empty()) return;
  std::string list;
  for (const std::string& c : conflicts) list += "\n  " + c;
  fail(
      fmt::format("{}: resuming from {} needs the same [model], [router], [loss_free] and "
                  "[balance] keys as the checkpoint; {} differ:{}\nUse a new out_dir to start a "
                  "fresh run with these settings.",
                  out, checkpoint, conflicts.size(), list));
}

// The newest committed checkpoint to resume from: the one `latest` names, or a newer complete one
// (a kill between a checkpoint's commit and the pointer's update leaves one).
std::optional<std::string> checkpoint_to_resume(const std::string& ckpt_root, bool quiet) {
  std::optional<std::string> latest = io::read_latest_pointer(ckpt_root);
  std::optional<std::string> newest;
  for (const std::string& name : io::list_checkpoints(ckpt_root))
    if (name.rfind("step_", 0) == 0) newest = name;  // oldest first: the last is the newest
  if (!newest || (latest && *newest <= *latest)) return latest;
  if (!quiet)
    say("{}: resuming from {}, the newest complete checkpoint (latest names {})\n", ckpt_root,
        *newest, latest ? *latest : "none");
  return newest;
}

// What to do after divergence (docs/training.md, "Divergence").
std::string diverged_hint(const std::string& last_saved, const std::string& ckpt_root, double lr) {
  if (last_saved.empty())
    return fmt::format(
        "there is no checkpoint yet: start again with a lower train.lr (now {}), a smaller "
        "model.init_std, or check the data",
        lr);
  return fmt::format(
      "{}/{} is the last checkpoint (its weights are finite): run the same command with a lower "
      "train.lr (now {}), e.g. --set train.lr={}, to resume from it (if it diverges again at once, "
      "that checkpoint's weights were already damaged: delete it to resume from an earlier one, "
      "or start over)",
      ckpt_root, last_saved, lr, lr / 10);
}

// Training must never write non-finite weights: checked before every checkpoint.
int64_t count_non_finite(const float* x, int64_t n) {
  int64_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static)
  for (int64_t i = 0; i < n; ++i) bad += std::isfinite(x[i]) ? 0 : 1;
  return bad;
}

// The oracle (sampled every router.oracle_every steps, rank 0): per MoE layer, the optimality
// gap of the last micro-batch's routing against the exact balanced assignment, and for BIP the
// dual gap of the prices that routed it. Null entries on other steps and ranks.
std::vector<json> oracle_report(const RouterConfig& rc, const Transformer<float>& model,
                                int64_t step, bool lead) {
  std::vector<json> oracle(model.n_moe_layers());
  if (!lead || rc.oracle_every <= 0 || (step + 1) % rc.oracle_every != 0) return oracle;
  for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
    const RoutingBuffers<float>* slots = model.layer_router(l).slots();
    if (slots == nullptr) continue;  // Expert Choice: no fixed K per token to compare
    const RoutingBuffers<float>& r = *slots;
    const BipShape sh = bip_shape(r.n, r.e, r.k);
    std::vector<int32_t> best(r.n * r.k);
    std::vector<int64_t> loads(r.e);
    const double best_obj = optimal_assign(sh, r.scores.data(), best.data(), loads.data());
    // BIP: the dual value its routing prices certify (≥ the optimum by weak duality).
    const float* q = model.layer_router(l).routed_prices();
    const double dual = q != nullptr ? bip_dual_at_prices(sh, r.scores.data(), q)
                                     : std::numeric_limits<double>::quiet_NaN();
    AssignmentReport rep =
        assignment_report(sh, r.scores.data(), r.expert.data(), best_obj, loads.data(), dual);
    oracle[l] = json{{"objective_gap", rep.objective_gap},
                     {"capacity_violation", rep.capacity_violation},
                     {"objective", rep.objective},
                     {"optimal_objective", rep.optimal_objective}};
    if (q != nullptr) oracle[l]["dual_gap"] = rep.dual_gap;
  }
  return oracle;
}

// A router's report (Router::report) as fields of its layer's JSON record.
class JsonRouterMetrics final : public RouterMetrics {
 public:
  explicit JsonRouterMetrics(json& layer) : layer_(layer) {}
  void scalar(const char* name, double v) override { layer_[name] = v; }
  void vector(const char* name, const float* v, int64_t n) override {
    layer_[name] = std::vector<float>(v, v + n);
  }

 private:
  json& layer_;
};

struct StepRecordInfo {  // what the step record holds besides the step's result and routing
  int64_t step = 0;      // 1-based: steps completed
  int64_t tokens_seen = 0;
  int64_t ranks = 1;
  double tokens_per_s = 0, step_ms = 0, mfu = 0;
  double gemm_peak = 0;  // GFLOP/s: MFU's denominator (the job's)
  double peak_rss = 0;   // bytes: the largest over ranks of each process's peak resident set
};

// The step's {"type": "train", ...} record (docs/training.md, "Metrics"): the losses, schedule
// and speed, then per MoE layer the loads and balance of the global batch, the balancers' state
// after the step's update and the oracle's gaps.
json step_record(const RunConfig& cfg, const Transformer<float>& model, const StepMetrics& sm,
                 const StepResult& r, const std::vector<json>& oracle, const StepRecordInfo& info) {
  const ModelConfig& m = cfg.model;
  const Balancer<float>& balancer = model.balancer();
  json balance_bsz = json::object();
  for (size_t j = 0; j < cfg.balance.terms.size(); ++j)
    balance_bsz[cfg.balance.terms[j].scope] = balancer.balance_bsz(j);
  double avg_mv = 0, sup_mv = 0;
  json layers = json::array();
  for (int64_t l = 0; l < model.n_moe_layers(); ++l) {
    LayerSummary s = sm.summary(l);
    avg_mv += s.maxvio;
    sup_mv = std::max(sup_mv, s.maxvio);
    json ep = json::object();
    for (int64_t rk = 2; rk < m.n_experts; rk *= 2)
      if (m.n_experts % rk == 0)
        ep[std::to_string(rk)] = ep_imbalance(sm.load(l).data(), m.n_experts, rk);
    layers.push_back({{"layer", m.n_dense_layers + l},
                      {"load", sm.load(l)},
                      {"maxvio", s.maxvio},
                      {"maxvio_micro", s.maxvio_micro},
                      {"dead_experts", s.dead},
                      {"drop_rate", s.drop_rate},
                      {"router_entropy", s.entropy},
                      {"topk_score_sum", s.topk_score},
                      {"lbl", s.lbl},
                      {"z_loss", s.z_loss},
                      {"ep_imbalance", ep},
                      {"experts_per_token", sm.experts_per_token(l)}});
    if (!oracle[l].is_null()) layers.back()["oracle"] = oracle[l];
    if (sm.expert_parallel()) {
      const LayerExchange& x = sm.exchange(l);
      layers.back()["ep"] = {{"rows", x.rows},
                             {"tokens", x.tokens},
                             {"bytes_sent", x.bytes_sent},
                             {"exchange_ms", x.exchange_ms},
                             {"experts_ms", x.experts_ms},
                             {"wait_ms", x.wait_ms}};
    }
    // The balancers' state after this step's update, and what the router family reports (BIP's
    // prices, Sinkhorn's residual imbalance).
    const int64_t E = m.n_experts;
    if (const float* b = balancer.bias(l); b != nullptr)
      layers.back()["bias"] = std::vector<float>(b, b + E);
    JsonRouterMetrics out(layers.back());
    model.layer_router(l).report(out);
  }
  if (model.n_moe_layers() > 0) avg_mv /= model.n_moe_layers();
  return json{{"type", "train"},
              {"step", info.step},
              {"loss", r.loss},
              {"ce", r.ce},
              {"lbl", r.lbl},
              {"z_loss", r.z_loss},
              {"lr", r.lr},
              {"grad_norm", r.grad_norm},
              {"clip_scale", r.clip_scale},
              {"tokens", info.tokens_seen},
              {"ranks", info.ranks},
              {"tokens_per_s", info.tokens_per_s},
              {"step_ms", info.step_ms},
              {"mfu", info.mfu},
              {"gemm_peak_gflops", info.gemm_peak},
              {"precision", precision_name(model.precision())},
              {"peak_rss_mb", std::round(info.peak_rss / 1e6)},
              {"balance_bsz", balance_bsz},
              {"avg_maxvio", avg_mv},
              {"sup_maxvio", sup_mv},
              {"layers", layers}};
}

// ---- The run: what one training process holds, and the stages of train() ---------------------

// Built by the set-up stage (the model, optimizer and data; a fresh start or the newest
// checkpoint), then used by the step loop, evaluation and checkpoints. Rank 0 (`lead`) alone
// writes the run directory.
struct Run {
  // The sub-group of the ranks of the same color (a collective), or null when !on.
  static std::unique_ptr<Communicator> split_if(bool on, Communicator& cm, int64_t color) {
    return on ? cm.split(static_cast<int>(color), cm.rank()) : nullptr;
  }
  Run(const RunConfig& c, Communicator& cm, bool quiet_)
      : cfg(c),
        comm(cm),
        lead(cm.rank() == 0),
        quiet(quiet_ || cm.rank() != 0),
        out(c.out_dir),
        ckpt_root(c.out_dir + "/checkpoints"),
        metrics_path(c.out_dir + "/metrics.jsonl"),
        ep_group(split_if(c.parallel.ep > 1, cm, cm.rank() / c.parallel.ep)),
        expert_replicas(split_if(c.parallel.ep > 1, cm, cm.rank() % c.parallel.ep)),
        model(c.model, topk_options(c), balancer_options(c), c.train.micro_batch, &cm,
              make_router_options(c.router), ep_group.get()),
        opt(model.param_table(), model.num_params()),
        train_src(make_train_source(c)),
        valid_sets(make_valid_sources(c, &domain_list)),
        tokens(c.train.micro_batch * (c.model.seq_len + 1)),
        domains(c.train.micro_batch),
        sm(model.n_moe_layers(), c.model.n_experts),
        committer(ckpt_root, kKeepCheckpoints) {
    model.set_precision(parse_precision(c.system.precision));
  }

  const RunConfig& cfg;
  Communicator& comm;
  const bool lead, quiet;
  const std::string out, ckpt_root, metrics_path;
  // Expert parallelism (parallel.ep > 1): this rank's group of ep consecutive ranks, which share
  // out the experts, and the ranks that hold the same experts as this one. Null without it.
  std::unique_ptr<Communicator> ep_group, expert_replicas;
  Transformer<float> model;
  AdamW opt;
  TrainerState state;
  std::unique_ptr<BatchSource> train_src;
  std::vector<std::string> domain_list;  // filled by make_valid_sources (declared before it)
  std::vector<ValidSet> valid_sets;
  std::optional<MetricsLog> log;  // rank 0 only
  std::string last_saved;         // the newest checkpoint on disk ("" if none)
  Buffer<int32_t> tokens, domains;
  StepMetrics sm;
  // Rank 0's checkpoint commits (train.checkpoint_mode "async": on a thread of their own). Last
  // member, so destroyed first: a pending commit ends while the run directory is still locked.
  io::BackgroundCommitter committer;

  std::string diverged() const { return diverged_hint(last_saved, ckpt_root, cfg.train.lr); }
};

// Stage 1: checks that would otherwise fail late (after a collective hang, at the first
// checkpoint, or as bad_alloc after minutes), then the run directory, locked for this process
// (rank 0 writes it; one writer at a time: `lock` holds it on rank 0 until it is destroyed).
void open_run_dir(const RunConfig& cfg, Communicator& comm, std::optional<io::RunDirLock>& lock) {
  check_ranks_agree_on_config(cfg, comm);
  SY_CHECK(comm.size() % cfg.parallel.ep == 0,
           "parallel.ep must divide the number of ranks ({}), got {}: the ranks form groups of "
           "parallel.ep that share out the experts; run with a multiple of {} ranks or set "
           "parallel.ep to a divisor of {}",
           comm.size(), cfg.parallel.ep, cfg.parallel.ep, comm.size());
  check_out_dir_path(cfg.out_dir);
  check_memory(cfg);
  if (comm.rank() == 0) {
    lock.emplace(cfg.out_dir, "training");
    const std::string ckpt_root = cfg.out_dir + "/checkpoints";
    std::error_code ec;
    fs::create_directories(ckpt_root, ec);
    SY_CHECK(!ec, "{}: must be creatable, got: {}", ckpt_root, ec.message());
  }
  check_ranks_share_run_dir(cfg.out_dir, lock ? lock->token() : 0, comm);
}

// Stage 2: resume from the newest checkpoint (same model keys; metrics after it dropped) or
// initialise; then open the metrics log and write config.toml.
void resume_or_init(Run& r) {
  const std::optional<std::string> latest = checkpoint_to_resume(r.ckpt_root, r.quiet);
  if (latest) {
    const std::string dir = r.ckpt_root + "/" + *latest;
    check_resume_config(r.out, *latest, read_checkpoint_config(dir), r.cfg);
    load_checkpoint(dir, r.model, &r.opt, &r.state);
    r.train_src->set_position(r.state.data_position);
    if (r.lead) truncate_metrics(r.metrics_path, r.state.step);
    if (!r.quiet) say("resuming {} from {} (step {})\n", r.out, *latest, r.state.step);
    r.last_saved = *latest;
  } else {
    r.model.init(r.cfg.train.seed);
  }
  if (r.lead) {
    r.log.emplace(r.metrics_path, /*fresh=*/!latest);
    io::write_file_atomic(r.out + "/config.toml", to_toml(r.cfg));
  }
}

// The start-up lines: parameters, data, layout, threads, GEMM peak, memory estimate, warnings.
void print_start(const Run& r, double peak) {
  const ModelConfig& m = r.cfg.model;
  const TrainConfig& tc = r.cfg.train;
  const int64_t R = r.comm.size();
  const double flops_tok = r.model.flops_per_token();
  const MemoryEstimate mem = estimate_training_memory(r.cfg);
  say("switchyard: {} parameters ({:.2f} M active/token), data: {}\n"
      "            {}, {} threads{}, gemm {}, precision {}, {} peak {:.0f} GFLOP/s (MFU "
      "denominator)\n"
      "            memory estimate {:.2f} GB{} (weights, gradients, AdamW moments {:.2f}; "
      "activations {:.2f})\n",
      r.model.num_params(), (flops_tok - 12.0 * m.n_layers * m.d_model * m.seq_len) / 6e6,
      r.train_src->describe(), r.comm.describe(), r.cfg.system.threads, R > 1 ? " per rank" : "",
      gemm_backend_name(gemm_backend()), precision_name(r.model.precision()),
      r.model.precision() == Precision::kBf16 ? "bf16 GEMM" : "sgemm", peak, mem.total_bytes / 1e9,
      R > 1 ? " per rank" : "", (mem.params_bytes + mem.grads_bytes + mem.moments_bytes) / 1e9,
      mem.activations_bytes / 1e9);
  const int64_t hw = static_cast<int64_t>(std::thread::hardware_concurrency());
  if (R * r.cfg.system.threads > hw && hw > 0)
    say("warning: {} ranks x {} threads (system.threads) > {} hardware threads: the ranks' "
        "threads compete for cores; set system.threads = {}\n",
        R, r.cfg.system.threads, hw, std::max<int64_t>(1, hw / R));
  if (R > 1)
    say("            data parallel: global batch {} sequences = {} ranks x {} micro-batches x "
        "{}\n",
        R * tc.grad_accum * tc.micro_batch, R, tc.grad_accum, tc.micro_batch);
  if (r.ep_group)
    say("            expert parallel: {} groups of {} ranks, each rank holding {} of the {} "
        "experts of every MoE layer ({} parameters here)\n",
        R / r.ep_group->size(), r.ep_group->size(), r.model.moe_dims().e_local(), m.n_experts,
        r.model.num_params());
}

// Rank 0's part of a checkpoint: after the previous commit, write the files (over the
// checkpoint pruning would remove next, when there is one), then commit them in the background
// or, when `wait` or train.checkpoint_mode is "sync", before returning. Returns its
// {"type": "checkpoint"} record: how long training paused, and for what.
json write_and_commit(Run& r, int64_t step, const OtherExperts* others, bool wait) {
  const auto t0 = Clock::now();
  r.committer.wait();  // the previous commit (and its pruning) first; its error is thrown here
  const std::string name = step_dir_name(step);
  const std::string recycle = io::recyclable_checkpoint(r.ckpt_root, kKeepCheckpoints, name);
  const auto t_write = Clock::now();
  auto w = std::make_unique<io::CheckpointWriter>(r.ckpt_root + "/" + name, recycle);
  write_checkpoint_files(*w, r.cfg, r.model, &r.opt, r.state, others);
  const double write_s = seconds_since(t_write);
  const int64_t bytes = directory_bytes(w->temp_dir());
  r.committer.start(std::move(w));
  const bool background = !wait && r.cfg.train.checkpoint_mode == "async";
  if (!background) r.committer.wait();
  return {{"type", "checkpoint"},     {"step", step},       {"name", name},
          {"bytes", bytes},           {"write_s", write_s}, {"stall_s", seconds_since(t0)},
          {"background", background}, {"recycled", recycle}};
}

// The console line of a periodic checkpoint, from its record.
void say_checkpoint(const json& rec) {
  const auto bytes = rec["bytes"].get<double>();
  const auto stall_s = rec["stall_s"].get<double>();
  say("checkpoint {}: {} written in {:.1f} s{}\n", rec["name"].get<std::string>(),
      bytes >= 1e9 ? fmt::format("{:.2f} GB", bytes / 1e9) : fmt::format("{:.1f} MB", bytes / 1e6),
      rec["write_s"].get<double>(),
      rec["background"].get<bool>()
          ? fmt::format(", training paused {:.1f} s; committing in the background", stall_s)
          : fmt::format(", committed; training paused {:.1f} s", stall_s));
}

// The checkpoint of `step` (steps completed): never of non-finite weights (they would become
// `latest` and poison every resume), only when every replica holds the same bits; every expert
// in it whatever the layout. Rank 0 writes it (write_and_commit: `wait` for the run's last) and
// logs its record; every rank waits until its files are written.
void save_step(Run& r, int64_t step, bool wait) {
  const int64_t bad = count_non_finite(r.model.params(), r.model.num_params());
  SY_CHECK(bad == 0,
           "step {}: {} of {} weights are not finite after the optimizer update: training "
           "diverged, and no checkpoint of this step is written; {}",
           step, bad, r.model.num_params(), r.diverged());
  if (r.comm.size() > 1) check_replicas_agree(r.model, r.comm, r.expert_replicas.get(), step);
  r.state.step = step;
  r.state.data_position = r.train_src->position();
  OtherExperts others;
  if (r.ep_group) others = gather_experts(r.model, &r.opt, *r.ep_group);
  if (r.lead) {
    const json rec = write_and_commit(r, step, r.ep_group ? &others : nullptr, wait);
    if (r.log) r.log->append(rec.dump());
    if (!r.quiet && !wait) say_checkpoint(rec);  // the run's last checkpoint has its own line
  }
  r.last_saved = step_dir_name(step);
  r.comm.barrier();  // no rank goes on (or exits) before the checkpoint's files are written
}

// The evaluation after `step`: its {"type": "eval"} record (all validation sets, split over the
// ranks), a finite loss or an error, the console line. Returns the validation loss, or -1 when
// the run has no validation data.
double evaluate_step(Run& r, int64_t step) {
  if (r.valid_sets.empty()) return -1;
  json j = evaluation_record(r.model, r.valid_sets, r.domain_list, r.cfg.train.eval_batches,
                             eval_mixes_domains(r.cfg), r.tokens, r.domains, r.comm);
  j["type"] = "eval";
  j["step"] = step;
  const double loss = j["loss"].get<double>();
  SY_CHECK(std::isfinite(loss),
           "step {}: the validation loss must be finite, got {}: training diverged; {}", step, loss,
           r.diverged());
  if (r.log) r.log->append(j.dump());
  if (!r.quiet && j.contains("loss_causal")) {
    say("eval step {}: loss {:.4f}, perplexity {:.2f}; causal routing {:.4f}, {:.2f}\n", step, loss,
        std::exp(loss), j["loss_causal"].get<double>(), j["perplexity_causal"].get<double>());
  } else if (!r.quiet) {
    say("eval step {}: loss {:.4f}, perplexity {:.2f}\n", step, loss, std::exp(loss));
  }
  return loss;
}

}  // namespace

TrainResult train(const RunConfig& cfg_in, const TrainOptions& opts) {
  validate(cfg_in);
  const RunConfig cfg = resolve_defaults(cfg_in);
  apply_system(cfg.system);
  SingleProcessCommunicator single;
  Communicator& comm = opts.comm ? *opts.comm : single;
  auto stop_requested = [&] { return opts.stop != nullptr && opts.stop->load() != 0; };

  // Set-up: checks and the locked run directory; the model, optimizer and data; resume or init.
  std::optional<io::RunDirLock> run_lock;
  open_run_dir(cfg, comm, run_lock);
  Run r(cfg, comm, opts.quiet);
  resume_or_init(r);
  const TrainConfig& tc = cfg.train;
  const bool quiet = r.quiet;
  TrainResult res;
  res.first_step = r.state.step;
  res.last_step = r.state.step;
  if (r.state.step >= tc.steps) {
    if (!quiet)
      say("{}: already trained to step {} (train.steps = {})\n", r.out, r.state.step, tc.steps);
    return res;
  }
  JobPeak peak(comm, r.model.precision(), opts.measure_peak);
  const double flops_tok = r.model.flops_per_token();
  if (!quiet) print_start(r, peak.gflops());

  // The step loop: train_step, its record, the console line, evaluation, checkpoints, stops.
  const auto run_t0 = Clock::now();
  double train_seconds = 0;
  int64_t steps_this_run = 0;
  // A stop requested during start-up: nothing new to save.
  {
    int64_t early = stop_requested();
    comm.allreduce_sum(&early, 1);
    if (early > 0) {
      res.interrupted = true;
      if (!quiet)
        say("stopped before step {}: nothing new to save{}\n", r.state.step + 1,
            r.last_saved.empty() ? "" : fmt::format("; {} is the latest checkpoint", r.last_saved));
      return res;
    }
  }
  const StepContext step_ctx{.model = &r.model,
                             .opt = &r.opt,
                             .source = r.train_src.get(),
                             .comm = &comm,
                             .ep_group = r.ep_group.get(),
                             .expert_replicas = r.expert_replicas.get(),
                             .train = &tc,
                             .metrics = &r.sm,
                             .tokens = &r.tokens,
                             .domains = &r.domains};
  for (int64_t step = r.state.step; step < tc.steps; ++step) {
    const auto t0 = Clock::now();
    const StepResult sr = train_step(step_ctx, step, r.diverged());
    const std::vector<json> oracle = oracle_report(cfg.router, r.model, step, r.lead);
    const double dt = seconds_since(t0);
    train_seconds += dt;
    ++steps_this_run;
    r.state.tokens_seen += sr.tokens;
    const double tps = static_cast<double>(sr.tokens) / dt;
    double mfu = peak.mfu(tps * flops_tok);
    if (const double before = peak.gflops(); peak.remeasure_if_implausible(mfu)) {
      mfu = peak.mfu(tps * flops_tok);
      if (!quiet && !stop_requested())  // as the progress line below: nothing after a stop
        say("step {}: MFU above 100% against the GEMM peak measured at start-up ({:.0f} GFLOP/s): "
            "measured again, {:.0f} GFLOP/s{}\n",
            step + 1, before, peak.gflops(),
            mfu > 1.0 ? "; MFU is still above 100%: the machine's speed varies (other load?), "
                        "so this run's MFU figures are not meaningful"
                      : "");
    }
    const std::vector<double> rss = per_rank(comm, peak_rss_bytes());
    const json rec = step_record(cfg, r.model, r.sm, sr, oracle,
                                 {.step = step + 1,
                                  .tokens_seen = r.state.tokens_seen,
                                  .ranks = comm.size(),
                                  .tokens_per_s = tps,
                                  .step_ms = dt * 1e3,
                                  .mfu = mfu,
                                  .gemm_peak = peak.gflops(),
                                  .peak_rss = *std::max_element(rss.begin(), rss.end())});
    if (r.log) r.log->append(rec.dump());
    res.final_loss = sr.loss;
    res.last_step = step + 1;

    // After a stop request, print nothing until the checkpoint is written: under mpirun the
    // console may no longer be read, and a blocked write would cost the checkpoint.
    if (!quiet && !stop_requested() &&
        (tc.log_every > 0 && ((step + 1) % tc.log_every == 0 || step + 1 == tc.steps))) {
      const double eta = train_seconds / steps_this_run * static_cast<double>(tc.steps - step - 1);
      say("step {:>{}}/{} | loss {:.4f} | lbl {:.4f} | lr {:.2e} | gnorm {:.2f} | {:.0f} tok/s | "
          "MFU {:.0f}% | maxvio {:.2f} | ETA {}\n",
          step + 1, std::to_string(tc.steps).size(), tc.steps, sr.loss, sr.lbl, sr.lr, sr.grad_norm,
          tps, 100 * mfu, rec["avg_maxvio"].get<double>(), format_duration(eta));
    }
    const bool last = step + 1 == tc.steps;
    if ((tc.eval_every > 0 && (step + 1) % tc.eval_every == 0) || last) {
      const double eval_loss = evaluate_step(r, step + 1);
      if (eval_loss >= 0) res.final_eval_loss = eval_loss;
    }
    // Every rank must agree to stop at the same step (a signal may reach one rank first).
    int64_t stop_votes =
        stop_requested() || (opts.stop_after >= 0 && steps_this_run >= opts.stop_after);
    comm.allreduce_sum(&stop_votes, 1);
    const bool stop = stop_votes > 0;
    if ((tc.checkpoint_every > 0 && (step + 1) % tc.checkpoint_every == 0) || last || stop)
      save_step(r, step + 1, /*wait=*/last || stop);
    if (stop && !last) {
      res.interrupted = true;
      if (!quiet)
        say("stopped after step {}; checkpoint saved. Run the same command to resume.\n", step + 1);
      break;
    }
  }
  if (!quiet && !res.interrupted)
    say("done: {} steps in {}, metrics in {}, checkpoint in {}/{}\n", res.last_step,
        format_duration(seconds_since(run_t0)), r.metrics_path, r.ckpt_root,
        step_dir_name(res.last_step));
  return res;
}

}  // namespace sy
