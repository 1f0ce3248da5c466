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
void swiglu_ffn_backward(T* dx, T beta, T* dw_gate_up, T* dw_down, T dw_beta, T* dhu, T* dact,
                         const T* dy, const T* x, const T* hu, const T* act, const T* w_gate_up,
                         const T* w_down, int64_t N, int64_t D, int64_t F, const Bf16Gemm* bf16) {
  linear_backward(dact, T(0), dw_down, dw_beta, dy, act, w_down, N, F, D, bf16);  // dact [N,F]
  swiglu_backward(dhu, dact, hu, N, F, /*accumulate=*/false);                     // dhu [N,2F]
  linear_backward(dx, beta, dw_gate_up, dw_beta, dhu, x, w_gate_up, N, D, 2 * F,
                  bf16);  // dx [N,D]
}

void swiglu_ffn_forward_bf16(float* y, float beta, float* hu, uint16_t* act16, const uint16_t* x16,
                             const float* w_gate_up, const float* w_down, int64_t N, int64_t D,
                             int64_t F, const Bf16Gemm& bf16) {
  bf16.gemm(false, true, N, 2 * F, D, 1.f, Bf16Gemm::Rounded{x16, N, D}, w_gate_up, D, 0.f, hu,
            2 * F);                      // [N,2F]
  swiglu_forward_bf16(act16, hu, N, F);  // [N,F]
  bf16.gemm(false, true, N, D, F, 1.f, Bf16Gemm::Rounded{act16, N, F}, w_down, F, beta, y, D);
}

void swiglu_ffn_backward_bf16(float* dx, float beta, float* dw_gate_up, float* dw_down,
                              float dw_beta, float* dact, const uint16_t* dy16, const uint16_t* x16,
                              const float* hu, const uint16_t* act16, const float* w_gate_up,
                              const float* w_down, int64_t N, int64_t D, int64_t F,
                              const Bf16Gemm& bf16) {
  // down_proj: dact = dy·W_d, dW_d = dyᵀ·act
  const Bf16Gemm::Rounded dy{dy16, N, D};
  bf16.gemm(false, false, N, F, D, 1.f, dy, w_down, F, 0.f, dact, F);  // [N,F]
  bf16.gemm(true, false, D, F, N, 1.f, dy, Bf16Gemm::Rounded{act16, N, F}, dw_beta, dw_down,
            F);  // [D,F]
  // SwiGLU, its gradient written in bf16
  uint16_t* dhu_buffer = bf16.rounded_buffer(N, 2 * F);
  swiglu_backward_bf16(dhu_buffer, dact, hu, N, F);
  const Bf16Gemm::Rounded dhu16{dhu_buffer, N, 2 * F, /*zero_padded=*/true};
  // gate|up_proj: dx = dhu·W_gu, dW_gu = dhuᵀ·x
  bf16.gemm(false, false, N, D, 2 * F, 1.f, dhu16, w_gate_up, D, beta, dx, D);  // [N,D]
  bf16.gemm(true, false, 2 * F, D, N, 1.f, dhu16, Bf16Gemm::Rounded{x16, N, D}, dw_beta, dw_gate_up,
            D);  // [2F,D]
}

#define SY_INSTANTIATE(T)                                                                       \
  template void swiglu_ffn_forward<T>(T*, T, T*, T*, const T*, const T*, const T*, int64_t,     \
                                      int64_t, int64_t, const Bf16Gemm*);                       \
  template void swiglu_ffn_backward<T>(T*, T, T*, T*, T, T*, T*, const T*, const T*, const T*,  \
                                       const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                       const Bf16Gemm*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy
