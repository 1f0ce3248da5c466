#include "core/gemm_bf16.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, int64_t N, int64_t IC, int64_t OC,
                    const Bf16Gemm* bf16) {
  // out[N,OC] = inp[N,IC] · weight[OC,IC]ᵀ
  gemm_at(bf16, false, true, N, OC, IC, T(1), inp, IC, weight, IC, T(0), out, OC);
}

template <typename T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t IC, int64_t OC, const Bf16Gemm* bf16) {
  // beta = 1: gradients accumulate (over micro-batches, and where one activation feeds several
  // matmuls).
  if (dinp != nullptr) {
    gemm_at(bf16, false, false, N, IC, OC, T(1), dout, OC, weight, IC, T(1), dinp, IC);  // [N,IC]
  }
  if (dweight != nullptr) {
    gemm_at(bf16, true, false, OC, IC, N, T(1), dout, OC, inp, IC, T(1), dweight, IC);  // [OC,IC]
  }
}

template void matmul_forward<float>(float*, const float*, const float*, int64_t, int64_t, int64_t,
                                    const Bf16Gemm*);
template void matmul_forward<double>(double*, const double*, const double*, int64_t, int64_t,
                                     int64_t, const Bf16Gemm*);
template void matmul_backward<float>(float*, float*, const float*, const float*, const float*,
                                     int64_t, int64_t, int64_t, const Bf16Gemm*);
template void matmul_backward<double>(double*, double*, const double*, const double*, const double*,
                                      int64_t, int64_t, int64_t, const Bf16Gemm*);

}  // namespace sy
