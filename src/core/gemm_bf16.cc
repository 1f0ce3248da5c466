#include "core/gemm_bf16.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <dnnl.hpp>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/onednn_matmul.h"

namespace sy {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  fail(fmt::format("precision must be \"fp32\" or \"bf16\", got \"{}\"", name));
}

const char* precision_name(Precision p) { return p == Precision::kBf16 ? "bf16" : "fp32"; }

bool cpu_has_bf16() { return __builtin_cpu_supports("avx512bf16") != 0; }

std::string bf16_unsupported_reason() {
  if (cpu_has_bf16()) return "";
  return "this CPU lacks the AVX512-BF16 instructions (flag avx512_bf16 in /proc/cpuinfo) that "
         "bf16 training runs on; use precision \"fp32\" here (the default), or a CPU that has "
         "them (Intel Cooper Lake / Sapphire Rapids or later, AMD Zen 4 or later)";
}

namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elements below which rounding stays on one thread

void round_rows(const float* src, int64_t ld, uint16_t* dst, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && rows * cols >= kParallelMin)
  for (int64_t i = 0; i < rows; ++i) {
    const float* s = src + i * ld;
    uint16_t* d = dst + i * cols;
    for (int64_t j = 0; j < cols; ++j) d[j] = to_bf16(s[j]);
  }
}

}  // namespace

void to_bf16(const float* src, uint16_t* dst, int64_t n) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

struct Bf16Gemm::Impl {
  const float* weights;
  int64_t size;  // of the block
  Buffer<uint16_t> copy;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  // Per thread slot (omp_get_thread_num() inside a parallel region, 0 outside).
  mutable std::vector<dnnl::stream> streams;
  mutable std::vector<Buffer<uint16_t>> scratch_a, scratch_b;
  mutable std::vector<Buffer<uint16_t>> kept;  // round_once's, per slot
  // Whether dimensions that change every step may be left to run time (run()): not with AMX,
  // whose tile kernels exist only in oneDNN's fixed-shape brgemm.
  const bool runtime_dims = dnnl::get_effective_cpu_isa() != dnnl::cpu_isa::avx512_core_amx;

  int slot() const {
    const int t = omp_in_parallel() ? omp_get_thread_num() : 0;
    SY_CHECK(t < static_cast<int>(streams.size()),
             "bf16 GEMM: thread {} has no slot ({} made for the threads at construction)", t,
             streams.size());
    return t;
  }

  bool in_block(const float* p) const { return p >= weights && p < weights + size; }

  // x [rows, cols] (row stride ld) in bf16: the copy where x is a weight, else rounded into
  // `scratch` followed by zero rows up to `rows_out` (≥ rows); *ld16 is the row stride of what is
  // returned.
  const uint16_t* operand(const float* x, int64_t rows, int64_t cols, int64_t ld,
                          Buffer<uint16_t>& scratch, int64_t* ld16, int64_t rows_out = 0) const {
    if (in_block(x)) {
      *ld16 = ld;
      return copy.data() + (x - weights);
    }
    rows_out = std::max(rows, rows_out);
    if (static_cast<int64_t>(scratch.size()) < rows_out * cols)
      scratch.reset(static_cast<std::size_t>(rows_out * cols));
    round_rows(x, ld, scratch.data(), rows, cols);
    std::fill(scratch.data() + rows * cols, scratch.data() + rows_out * cols, uint16_t{0});
    *ld16 = cols;
    return scratch.data();
  }

  // What a GEMM's k is: a fixed dimension (of a weight), or the rows a weight gradient sums over
  // (Aᵀ·B of two activations; a different count every step), with both operands holding zero
  // rows past k up to a multiple of 32 (padded) or not.
  enum class KRows { kFixed, kSummedPadded, kSummed };
  static KRows summed_rows(bool summed, bool padded) {
    return !summed ? KRows::kFixed : padded ? KRows::kSummedPadded : KRows::kSummed;
  }

  // The products C = alpha · op(A) · op(B) + beta · C on operands in bf16 (row strides lda16,
  // ldb16), k as `k_rows` says.
  void run(int slot, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, KRows k_rows,
           float alpha, const uint16_t* a16, int64_t lda16, const uint16_t* b16, int64_t ldb16,
           float beta, float* c, int64_t ldc) const;
};

Bf16Gemm::Bf16Gemm(const float* weights, int64_t n) : impl_(std::make_unique<Impl>()) {
  const std::string why = bf16_unsupported_reason();
  SY_CHECK(why.empty(), "bf16 GEMMs: {}", why);
  impl_->weights = weights;
  impl_->size = n;
  impl_->copy.reset(static_cast<std::size_t>(n));
  const int slots = std::max(omp_get_max_threads(), omp_get_num_procs());
  for (int s = 0; s < slots; ++s) impl_->streams.emplace_back(impl_->engine);
  impl_->scratch_a.resize(static_cast<std::size_t>(slots));
  impl_->scratch_b.resize(static_cast<std::size_t>(slots));
  impl_->kept.resize(static_cast<std::size_t>(slots));
}

Bf16Gemm::~Bf16Gemm() = default;

uint16_t* Bf16Gemm::copy() { return impl_->copy.data(); }

void Bf16Gemm::refresh() { to_bf16(impl_->weights, impl_->copy.data(), impl_->size); }

namespace {
int64_t padded_k(int64_t k) { return (k + 31) / 32 * 32; }
}  // namespace

// A weight gradient (Aᵀ·B summed over rows, both activations) takes k up to a multiple of 32 in
// zero rows of both operands, one GEMM: split instead, each piece of k would read and write all
// of C (the size of a weight) again.
void Bf16Gemm::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) const {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // as sy::gemm: C = beta·C
    sy::gemm(false, false, m, n, 0, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const Impl& s = *impl_;
  const int slot = s.slot();
  // A and B in bf16 as stored: A [m, k] (strides {ld, 1}) or, transposed, [k, m] (strides
  // {1, ld}); B likewise [k, n] or [n, k].
  const bool pad_k = trans_a && !trans_b && !s.in_block(a) && !s.in_block(b);
  const int64_t kk = pad_k ? padded_k(k) : k;  // both rounded below with the zero rows
  int64_t lda16 = 0, ldb16 = 0;
  const uint16_t* a16 =
      s.operand(a, trans_a ? k : m, trans_a ? m : k, lda, s.scratch_a[slot], &lda16, kk);
  const uint16_t* b16 =
      s.operand(b, trans_b ? n : k, trans_b ? k : n, ldb, s.scratch_b[slot], &ldb16, kk);
  s.run(slot, trans_a, trans_b, m, n, k, Impl::summed_rows(pad_k, true), alpha, a16, lda16, b16,
        ldb16, beta, c, ldc);
}

Bf16Gemm::Rounded Bf16Gemm::round_once(const float* x, int64_t rows, int64_t cols,
                                       int64_t ld) const {
  const Impl& s = *impl_;
  SY_CHECK(!s.in_block(x), "bf16 round_once: a weight of the block is read from the copy");
  Buffer<uint16_t>& buf = s.kept[static_cast<std::size_t>(s.slot())];
  int64_t ld16 = 0;
  const uint16_t* data = s.operand(x, rows, cols, ld, buf, &ld16, padded_k(rows));
  return Rounded{data, rows, cols};
}

uint16_t* Bf16Gemm::rounded_buffer(int64_t rows, int64_t cols) const {
  const Impl& s = *impl_;
  Buffer<uint16_t>& buf = s.kept[static_cast<std::size_t>(s.slot())];
  const int64_t rows_out = padded_k(rows);
  if (static_cast<int64_t>(buf.size()) < rows_out * cols)
    buf.reset(static_cast<std::size_t>(rows_out * cols));
  std::fill(buf.data() + rows * cols, buf.data() + rows_out * cols, uint16_t{0});
  return buf.data();
}

void Bf16Gemm::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const Rounded& a, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc) const {
  SY_CHECK(a.rows == (trans_a ? k : m) && a.cols == (trans_a ? m : k),
           "bf16 GEMM: the rounded A is [{}, {}], the GEMM reads [{}, {}]", a.rows, a.cols,
           trans_a ? k : m, trans_a ? m : k);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // as sy::gemm: C = beta·C
    sy::gemm(false, false, m, n, 0, alpha, b, ldb, b, ldb, beta, c, ldc);
    return;
  }
  const Impl& s = *impl_;
  const int slot = s.slot();
  // B is rounded with zero rows past k where A has them (round_once's).
  const bool summed = trans_a && !trans_b && !s.in_block(b);
  const int64_t kk = summed && a.zero_padded ? padded_k(k) : k;
  int64_t ldb16 = 0;
  const uint16_t* b16 =
      s.operand(b, trans_b ? n : k, trans_b ? k : n, ldb, s.scratch_b[slot], &ldb16, kk);
  s.run(slot, trans_a, trans_b, m, n, k, Impl::summed_rows(summed, a.zero_padded), alpha, a.data,
        a.cols, b16, ldb16, beta, c, ldc);
}

void Bf16Gemm::gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const Rounded& a, const Rounded& b, float beta, float* c, int64_t ldc) const {
  SY_CHECK(a.rows == (trans_a ? k : m) && a.cols == (trans_a ? m : k),
           "bf16 GEMM: the rounded A is [{}, {}], the GEMM reads [{}, {}]", a.rows, a.cols,
           trans_a ? k : m, trans_a ? m : k);
  SY_CHECK(b.rows == (trans_b ? n : k) && b.cols == (trans_b ? k : n),
           "bf16 GEMM: the rounded B is [{}, {}], the GEMM reads [{}, {}]", b.rows, b.cols,
           trans_b ? n : k, trans_b ? k : n);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // as sy::gemm: C = beta·C
    sy::gemm(false, false, m, n, 0, alpha, c, ldc, c, ldc, beta, c, ldc);
    return;
  }
  const Impl& s = *impl_;
  const bool summed = trans_a && !trans_b;
  s.run(s.slot(), trans_a, trans_b, m, n, k,
        Impl::summed_rows(summed, a.zero_padded && b.zero_padded), alpha, a.data, a.cols, b.data,
        b.cols, beta, c, ldc);
}

void Bf16Gemm::Impl::run(int slot, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         KRows k_rows, float alpha, const uint16_t* a16, int64_t lda16,
                         const uint16_t* b16, int64_t ldb16, float beta, float* c,
                         int64_t ldc) const {
  using dt = dnnl::memory::data_type;
  // Summed rows run as one GEMM over k rounded up to a multiple of 32 — which needs no zero rows
  // when k is a multiple already.
  const bool pad_k = k_rows == KRows::kSummedPadded || (k_rows == KRows::kSummed && k % 32 == 0);
  const int64_t kk = pad_k ? padded_k(k) : k;
  dnnl::stream& st = streams[static_cast<std::size_t>(slot)];
  // Without AMX, a dimension that changes every step and is not a multiple of 32 — an expert's
  // rows m (A not transposed), or the rows k a weight gradient sums over — is left to run time
  // instead (one GEMM through oneDNN's gemm:jit, one kernel for every value): measured on one
  // Zen 5 thread at MEDIUM's expert shapes (docs/benchmarks.md), 14–20% faster than the pieces
  // for 190–300 rows, whose tail of < 32 rows runs at half the rate, and 6–16% faster than k
  // padded with zeros. Multiples of 32 (and ≤ 32) stay on the fixed shapes, faster there.
  const bool any_m = runtime_dims && !trans_a && m > 32 && m % 32 != 0;
  const bool any_k = runtime_dims && k_rows != KRows::kFixed && k > 32 && k % 32 != 0;
  if (any_m || any_k) {
    constexpr int64_t kAny = DNNL_RUNTIME_DIM_VAL;
    const int64_t m_any = any_m ? kAny : m, k_any = any_k ? kAny : kk;
    const int64_t k_run = any_k ? k : kk;  // the padded rows are zeros: either is exact
    onednn::matmul_compiled_for(engine, st, onednn::matrix(m_any, k_any, dt::bf16, trans_a, lda16),
                                onednn::matrix(m, k_run, dt::bf16, trans_a, lda16), a16,
                                onednn::matrix(k_any, n, dt::bf16, trans_b, ldb16),
                                onednn::matrix(k_run, n, dt::bf16, trans_b, ldb16), b16,
                                onednn::matrix(m_any, n, dt::f32, false, ldc),
                                onednn::matrix(m, n, dt::f32, false, ldc), c, alpha, beta);
    st.wait();
    return;
  }
  // Otherwise the products as a few GEMMs of bounded shapes. An expert's row count changes every
  // step, and oneDNN compiles a kernel per shape (strides included): m — and k where A is
  // transposed and k was not padded above — is split into a multiple of 256, then of 32, then the
  // rest (< 32), so a dimension of up to x takes at most x/256 + 7 + 31 shapes (a padded k,
  // x/32); the pieces are views of the same operands (fixed strides), each still large enough for
  // the matrix units. The split depends on the shape only: the same call gives the same bits.
  const auto pieces = [](int64_t x) {
    return std::array<int64_t, 3>{x / 256 * 256, x % 256 / 32 * 32, x % 32};
  };
  const std::array<int64_t, 3> k_pieces =
      trans_a && !pad_k ? pieces(k) : std::array<int64_t, 3>{kk, 0, 0};
  int64_t m0 = 0;
  for (const int64_t mp : pieces(m)) {
    if (mp == 0) continue;
    int64_t k0 = 0;
    bool first = true;
    for (const int64_t kp : k_pieces) {
      if (kp == 0) continue;
      const float piece_beta = first ? beta : 1.f;  // later k pieces add to the first's
      first = false;
      // oneDNN's primitive cache returns the compiled kernel of a shape seen before (≈ 2 µs).
      const uint16_t* ap = a16 + (trans_a ? k0 * lda16 + m0 : m0 * lda16 + k0);
      const uint16_t* bp = b16 + (trans_b ? k0 : k0 * ldb16);
      onednn::matmul(engine, st, onednn::matrix(mp, kp, dt::bf16, trans_a, lda16), ap,
                     onednn::matrix(kp, n, dt::bf16, trans_b, ldb16), bp,
                     onednn::matrix(mp, n, dt::f32, false, ldc), c + m0 * ldc, alpha, piece_beta);
      k0 += kp;
    }
    m0 += mp;
  }
  st.wait();
}

namespace {
double bf16_gemm_gflops(int64_t m, int64_t n, int64_t k, int reps) {
  // A and B inside the weight block: the products alone, no per-call rounding.
  Buffer<float> block(static_cast<std::size_t>(m * k + k * n));
  for (int64_t i = 0; i < m * k + k * n; ++i) block[i] = static_cast<float>((i % 17) - 8) * 0.01f;
  Buffer<float> c(static_cast<std::size_t>(m * n));
  Bf16Gemm g(block.data(), m * k + k * n);
  g.refresh();
  const float* a = block.data();
  const float* b = a + m * k;
  g.gemm(false, false, m, n, k, 1.f, a, k, b, n, 0.f, c.data(), n);  // warm-up (and compile)
  std::vector<double> secs;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    g.gemm(false, false, m, n, k, 1.f, a, k, b, n, 0.f, c.data(), n);
    secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(secs.begin(), secs.end());
  return 2.0 * m * n * k / secs[secs.size() / 2] / 1e9;
}
}  // namespace

double measure_bf16_gemm_peak() {
  return std::max(bf16_gemm_gflops(1024, 1024, 1024, 9), bf16_gemm_gflops(2048, 2048, 2048, 5));
}

template <>
void gemm_at<float>(const Bf16Gemm* bf16, bool trans_a, bool trans_b, int64_t m, int64_t n,
                    int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float beta, float* c, int64_t ldc) {
  if (bf16 != nullptr)
    bf16->gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else
    gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <>
void gemm_at<double>(const Bf16Gemm* bf16, bool trans_a, bool trans_b, int64_t m, int64_t n,
                     int64_t k, double alpha, const double* a, int64_t lda, const double* b,
                     int64_t ldb, double beta, double* c, int64_t ldc) {
  SY_CHECK(bf16 == nullptr, "bf16 GEMMs are for fp32 models only (fp64 runs the tests)");
  gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace sy
