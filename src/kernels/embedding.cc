#include <algorithm>

#include "kernels/kernels.h"

namespace sy {

namespace {
// Columns of dwte each backward task owns (4 cache lines of floats).
constexpr int64_t kColumnBlock = 64;
}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int64_t N, int64_t D) {
  gather_rows(out, wte, tokens, N, D);  // rows of wte by token
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int64_t N, int64_t D) {
  // Repeated tokens make a scatter by token racy; instead each task owns a block of columns and
  // walks the tokens in order, so every dwte element sums its rows in token order whatever the
  // thread count.
  const int64_t num_blocks = (D + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < num_blocks; ++blk) {
    const int64_t c0 = blk * kColumnBlock;
    const int64_t w = std::min(kColumnBlock, D - c0);
    for (int64_t n = 0; n < N; ++n) {
      T* dst = dwte + static_cast<int64_t>(tokens[n]) * D + c0;  // [w]
      const T* src = dout + n * D + c0;                          // [w]
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) dst[i] += src[i];
    }
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int64_t, int64_t);
template void embedding_forward<double>(double*, const int32_t*, const double*, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t);

}  // namespace sy
