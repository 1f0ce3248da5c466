// The SwiGLU feed-forward as one forward/backward pair: the chain every FFN of the model runs
// (a dense layer's, each routed expert's on its rows, each shared expert's).
#include <algorithm>

#include "core/gemm_bf16.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void swiglu_ffn_forward(T* y, T beta, T* hu, T* act, const T* x, const T* w_gate_up,
                        const T* w_down, int64_t N, int64_t D, int64_t F, const Bf16Gemm* bf16) {
  gemm_at(bf16, false, true, N, 2 * F, D, T(1), x, D, w_gate_up, D, T(0), hu, 2 * F);  // [N,2F]
  swiglu_forward(act, hu, N, F);                                                       // [N,F]
  gemm_at(bf16, false, true, N, D, F, T(1), act, F, w_down, F, beta, y, D);            // [N,D]
}

template <typename T>
void swiglu_ffn_backward(T* dx, T beta, T* dw_gate_up, T* dw_down, T* dhu, T* dact, const T* dy,
                         const T* x, const T* hu, const T* act, const T* w_gate_up, const T* w_down,
                         int64_t N, int64_t D, int64_t F, const Bf16Gemm* bf16) {
  gemm_at(bf16, false, false, N, F, D, T(1), dy, D, w_down, F, T(0), dact, F);  // dact [N,F]
  gemm_at(bf16, true, false, D, F, N, T(1), dy, D, act, F, T(1), dw_down, F);   // [D,F] +=
  std::fill(dhu, dhu + N * 2 * F, T(0));
  swiglu_backward(dhu, dact, hu, N, F);  // dhu [N,2F]
  gemm_at(bf16, false, false, N, D, 2 * F, T(1), dhu, 2 * F, w_gate_up, D, beta, dx,
          D);  // dx [N,D]
  gemm_at(bf16, true, false, 2 * F, D, N, T(1), dhu, 2 * F, x, D, T(1), dw_gate_up,
          D);  // [2F,D] +=
}

#define SY_INSTANTIATE(T)                                                                       \
  template void swiglu_ffn_forward<T>(T*, T, T*, T*, const T*, const T*, const T*, int64_t,     \
                                      int64_t, int64_t, const Bf16Gemm*);                       \
  template void swiglu_ffn_backward<T>(T*, T, T*, T*, T*, T*, const T*, const T*, const T*,     \
                                       const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                       const Bf16Gemm*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy
