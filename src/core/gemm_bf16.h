// bf16 GEMMs with fp32 accumulation: the weight GEMMs under system.precision = "bf16".
//
// bf16 is fp32 with the low 16 bits of the mantissa dropped (8 significant bits, the same
// exponent range). Operands are rounded to bf16 (round to nearest, ties to even); products
// accumulate in fp32 and C stays fp32. oneDNN's matmul primitive runs the products (AMX or
// AVX512-BF16 kernels, `brg:avx512_core_*bf16` in DNNL_VERBOSE; without AMX, an expert's row
// count, or a weight gradient's summed rows, that is not a multiple of 32 through `gemm:jit`,
// compiled for any count); docs/model.md lists which GEMMs of the model run here and which stay
// fp32.
#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <string>

namespace sy {

// system.precision: what the weight GEMMs compute in (docs/model.md).
enum class Precision { kFp32, kBf16 };
Precision parse_precision(const std::string& name);  // "fp32" | "bf16"; else an error
const char* precision_name(Precision p);

// Whether this CPU has the AVX512-BF16 instructions bf16 training needs; if not, why not, as a
// sentence for an error message (empty when it has them).
bool cpu_has_bf16();
std::string bf16_unsupported_reason();

// Round to nearest even, as the hardware converts (NaN stays NaN, ±inf stays ±inf). Inline: the
// loops that call it (AdamW's pass) vectorise.
inline uint16_t to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // to nearest, ties even
}
inline float from_bf16(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
// dst[i] = to_bf16(src[i]); parallel over the OpenMP threads when called outside a parallel
// region (and n is large), on the calling thread inside one.
void to_bf16(const float* src, uint16_t* dst, int64_t n);
// The same on the calling thread, inline: for a row inside a parallel loop (where to_bf16's own
// parallel region, even one that does not fork, costs more than a short row).
inline void to_bf16_row(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = to_bf16(src[i]);
}

// A bf16 copy of one fp32 weight block, and the GEMMs that read it.
//
// Ownership: holds the bf16 copy (n elements) and per-thread scratch; `weights` stays owned by
// the caller and must outlive this object. An operand pointer that lies inside
// [weights, weights + n) is read from the copy — refresh() must have run since the block last
// changed; any other operand (activations, gradients) is rounded into the calling thread's scratch
// on every call. Scratch grows to the largest operands seen, then stays.
// Results depend only on the operands and the shape: the same call gives the same bits whatever
// ran before (checkpoint resume stays exact), and whatever the OpenMP thread count is for calls
// made inside a parallel region (single-threaded there).
// Threading: gemm() may run on several threads at once (each has its own scratch, by
// omp_get_thread_num()); refresh() must not overlap gemm().
class Bf16Gemm {
 public:
  // Fails with bf16_unsupported_reason() on a CPU without AVX512-BF16.
  Bf16Gemm(const float* weights, int64_t n);
  ~Bf16Gemm();
  Bf16Gemm(const Bf16Gemm&) = delete;
  Bf16Gemm& operator=(const Bf16Gemm&) = delete;

  // Re-rounds the whole weight block into the copy (once per optimizer step).
  void refresh();
  // The copy itself, for a pass that writes every weight's to_bf16 as it updates the block (the
  // optimizer's): refresh() without a second read of the block.
  uint16_t* copy();

  // Row-major C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C, as sy::gemm (core/gemm.h),
  // with A and B rounded to bf16.
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
            int64_t ldc) const;

  // An activation or gradient in bf16, rounded once for several GEMMs that read it (a linear
  // layer's backward reads its output gradient twice), or kept in bf16 (an expert's inputs):
  // `rows` × `cols` as stored, row stride `cols`. zero_padded: followed by zero rows up to a
  // multiple of 32 (a weight gradient's padded k) — what round_once and rounded_buffer give;
  // a caller's own array has none.
  struct Rounded {
    const uint16_t* data = nullptr;
    int64_t rows = 0, cols = 0;
    bool zero_padded = false;
  };
  // Rounds x [rows, cols] (row stride ld; not a weight of the block) into the calling thread's
  // own buffer. Valid until the same thread's next round_once.
  Rounded round_once(const float* x, int64_t rows, int64_t cols, int64_t ld) const;
  // The same buffer for a kernel that writes its output in bf16 itself: [rows, cols] to fill,
  // the zero rows after them already there; then Rounded{buffer, rows, cols, true} reads it.
  // Valid until the same thread's next round_once or rounded_buffer.
  uint16_t* rounded_buffer(int64_t rows, int64_t cols) const;
  // gemm() with A already rounded: op(A) is a.data [m, k] (trans_a false: a.rows = m, a.cols = k)
  // or its transpose (a.rows = k, a.cols = m). The same bits as gemm() on the fp32 A.
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const Rounded& a, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) const;
  // gemm() with both operands already rounded: op(B) is b.data [k, n] (trans_b false: b.rows =
  // k, b.cols = n) or its transpose. The same bits as gemm() on the fp32 operands.
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
            const Rounded& a, const Rounded& b, float beta, float* c, int64_t ldc) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The bf16 counterpart of measure_sgemm_peak (core/gemm.h): the best of 1024³ and 2048³ bf16
// GEMMs (operands already bf16) on the current thread count. REQUIRES: cpu_has_bf16().
double measure_bf16_gemm_peak();

// The GEMM of a kernel that may run in bf16: `bf16` null runs sy::gemm in T (fp32 or fp64);
// otherwise (T = float only) bf16->gemm.
template <typename T>
void gemm_at(const Bf16Gemm* bf16, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
             T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

}  // namespace sy
