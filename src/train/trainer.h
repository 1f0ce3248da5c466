// The training loop: micro-batches with gradient accumulation, clipping, AdamW, the schedule,
// periodic evaluation and checkpoints, one JSON Lines record per step, a progress line.
//
// Layout of a run directory (cfg.out_dir):
//   config.toml     the resolved config of the run
//   metrics.jsonl   one {"type": "train", ...} record per step, {"type": "eval", ...} per
//   evaluation checkpoints/    step_NNNNNNNN/ directories (see train/checkpoint.h) and `latest`
// A run whose out_dir already holds a checkpoint resumes from it (bit-exactly: same weights,
// losses and data order as an uninterrupted run); metrics after that step are discarded.
// A stop request (TrainOptions::stop; SIGINT/SIGTERM/SIGHUP in the CLI) finishes the current
// step, writes a checkpoint and returns.
// One Trainer per process; not thread-safe; uses the OpenMP pool.
//
// Data parallelism (R ranks, `mpirun -np R switchyard train ...`): every rank holds the whole
// model. A step's global batch is R·M micro-batches of B sequences: rank r's micro-batch m is
// the stream's micro-batch m·R + r after the step's start, so R ranks with train.grad_accum = M
// read the same sequences as one process with M·R. Gradients are summed over ranks (the same bits
// on every rank), the loss is the mean over the global batch, the loss-free update and the
// global scopes see every rank's counts, and the BIP duals / Expert Choice thresholds are
// averaged over ranks after each step. Evaluation batches are split over the ranks and summed.
// Rank 0 alone writes the metrics, config.toml and checkpoints; the others read them on resume
// (out_dir must be on a file system every rank sees).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "config/run_config.h"
#include "dist/communicator.h"

namespace sy {

struct TrainOptions {
  bool quiet = false;       // no progress lines on stderr
  int64_t stop_after = -1;  // stop (with a checkpoint) after this many steps of this process;
                            // -1 = run to train.steps (tests use it to simulate interruption)
  // Data parallelism (borrowed; null = one process). Every rank calls train() with the same
  // config; see "Data parallelism" below.
  Communicator* comm = nullptr;
  // A stop request (borrowed; null = none): nonzero (the signal number, from StopSignals) makes
  // training finish the current step, save a checkpoint and return with interrupted = true.
  // Polled before the first step and after each step; may be set from any thread.
  const std::atomic<int>* stop = nullptr;
  // This rank's GEMM peak in GFLOP/s, MFU's denominator (null = measure it: core/gemm.h's
  // measure_sgemm_peak, or measure_bf16_gemm_peak under precision bf16). Called once at start-up
  // and at most once more (see "MFU" in docs/training.md); tests pass a stand-in.
  std::function<double()> measure_peak = nullptr;
};

struct TrainResult {
  int64_t first_step = 0;       // step the run started (or resumed) from
  int64_t last_step = 0;        // steps completed
  double final_loss = 0;        // training loss of the last step
  double final_eval_loss = -1;  // -1 when there was no evaluation
  bool interrupted = false;
};

TrainResult train(const RunConfig& cfg, const TrainOptions& opts = {});

// What one training process allocates for a config, estimated from the shapes before anything
// is allocated (train() refuses a config whose estimate exceeds the memory available).
struct MemoryEstimate {
  static constexpr double kOverhead = 80e6;  // libraries, thread stacks, GEMM and routing scratch
  // params_bytes holds the weights' bf16 copy too under precision bf16, activations_bytes the
  // bf16 GEMMs' rounded operands.
  double params_bytes = 0, grads_bytes = 0, moments_bytes = 0, activations_bytes = 0;
  double total_bytes = 0;  // all of the above + kOverhead
};
MemoryEstimate estimate_training_memory(const RunConfig& cfg);
// MemAvailable, or less if a cgroup limit leaves less room; -1 if unknown.
double available_memory_bytes();
// This process's peak resident set size so far (getrusage), bytes.
double peak_rss_bytes();

}  // namespace sy
