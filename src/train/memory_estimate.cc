#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "model/transformer.h"
#include "train/trainer.h"

namespace sy {

// Counts what Transformer, AdamW and the MoE layers allocate (model/transformer.cc,
// moe/moe_layer.cc), in elements, without allocating. Routing plans and per-thread scratch are
// small next to these; kOverhead covers them and the libraries.
MemoryEstimate estimate_training_memory(const RunConfig& cfg) {
  const ModelConfig& m = cfg.model;
  const double D = static_cast<double>(m.d_model), V = static_cast<double>(m.vocab_size);
  const double E = static_cast<double>(m.n_experts), K = static_cast<double>(m.top_k);
  const double F = static_cast<double>(m.d_expert), Fd = static_cast<double>(m.d_dense);
  const double ns = static_cast<double>(m.n_shared_experts);
  const double Fs = m.d_shared > 0 ? static_cast<double>(m.d_shared) : F;
  const double S = static_cast<double>(m.seq_len), H = static_cast<double>(m.n_heads);
  const double B = static_cast<double>(cfg.train.micro_batch), N = B * S;
  const double L = static_cast<double>(m.n_layers);
  const double Lm = static_cast<double>(m.n_layers - m.n_dense_layers), Ld = L - Lm;
  const bool ec = cfg.router.type == "expert_choice";
  const double per_token =
      ec ? (cfg.router.ec_capacity_factor > 0 ? cfg.router.ec_capacity_factor : K) : K;
  const double rows = std::ceil(N * per_token);  // expert rows per micro-batch (upper bound)

  // Expert parallelism: E/ep experts here; the rows this rank's experts receive (Ml, in place
  // of the gathered rows xs) and the exchange's buffers at balanced routing, one rank's share
  // (they grow under imbalance, up to ep times: moe_layer.cc): token rows out and in (a token
  // goes to at most min(K, ep) ranks), and per row its gate, token index and place (4 + 8 + 8 B).
  const double ep = static_cast<double>(cfg.parallel.ep), El = E / ep;
  const double Ml = rows;
  const double exchange = ep > 1 ? 2 * N * std::min(per_token, ep) * D + 5 * Ml : 0;
  const double params = 2 * V * D + D + L * (2 * D + 4 * D * D) +
                        Lm * (E * D + 3 * El * F * D + ns * 3 * Fs * D) + Ld * 3 * Fd * D;
  const double moe_fwd = E * N * 4 + N * K * 4 + rows * 2 * D + Ml * 3 * F + ns * N * 3 * Fs;
  const double acts = (L + 1) * N * D +                          // residual stream
                      L * (7 * N * D + 2 * N + B * H * S * S) +  // norms, q|k|v, attention
                      Lm * moe_fwd + Ld * 3 * N * Fd +           // FFNs
                      2 * N * D + N * V + 2 * N +                // final norm, logits
                      7 * N * D +                                // backward scratch
                      rows * (2 * D + 1) + Ml * 3 * F + exchange + N * (K + E + 3 * ns * Fs) +
                      (Ld > 0 ? 3 * N * Fd : 0);
  // precision bf16: the weights' bf16 copy (2 B each), the rounded GEMM operands of the
  // largest GEMM (the LM head's backward: the logits' gradient and the final norm's output),
  // and on several threads each thread's block of the LM head's logits (head_forward).
  // The routed experts' inputs, SwiGLU outputs and output gradients exist in bf16 only, half an
  // element each, and their fp32 gate|up gradient not at all (MoeDims::bf16_activations): per
  // MoE layer half of rows·D and Ml·F less, once (the backward's scratch) half of rows·D and
  // Ml·2F less.
  const bool bf16 = cfg.system.precision == "bf16";
  const double bf16_experts = bf16 ? Lm * (rows * D + Ml * F) / 2 + rows * D / 2 + Ml * 2 * F : 0;
  MemoryEstimate e;
  e.params_bytes = (bf16 ? 6 : 4) * params;
  e.grads_bytes = 4 * params;
  e.moments_bytes = 8 * params;
  const double threads = static_cast<double>(cfg.system.threads);
  const double head_blocks =
      bf16 && threads > 1
          ? threads * static_cast<double>(Transformer<float>::head_block_rows(m.d_model)) * V
          : 0;
  e.activations_bytes = 4 * (acts - bf16_experts + head_blocks) + (bf16 ? 2 * (N * V + N * D) : 0);
  e.total_bytes = e.params_bytes + e.grads_bytes + e.moments_bytes + e.activations_bytes +
                  MemoryEstimate::kOverhead;
  return e;
}

double available_memory_bytes() {
  double avail = -1;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit)
    if (key == "MemAvailable:") avail = kb * 1024;
  // A cgroup (container, systemd slice) may allow less than the machine has free.
  std::ifstream cg_max("/sys/fs/cgroup/memory.max"), cg_cur("/sys/fs/cgroup/memory.current");
  std::string max_text;
  double cur = 0;
  if (cg_max >> max_text && max_text != "max" && cg_cur >> cur) {
    try {
      const double room = std::stod(max_text) - cur;
      avail = avail < 0 ? room : std::min(avail, room);
    } catch (const std::exception&) {
    }
  }
  return avail;
}

double peak_rss_bytes() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return -1;
  return static_cast<double>(u.ru_maxrss) * 1024;  // Linux: kilobytes
}

}  // namespace sy
