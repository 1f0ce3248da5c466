#include <type_traits>

#include "core/gemm.h"
#include "core/gemm_bf16.h"
#include "kernels/kernels.h"

namespace sy {

template <typename T>
void matmul_forward(T* out, const T* inp, const T* weight, int64_t N, int64_t IC, int64_t OC,
                    const Bf16Gemm* bf16) {
  // out[N,OC] = inp[N,IC] · weight[OC,IC]ᵀ
  gemm_at(bf16, false, true, N, OC, IC, T(1), inp, IC, weight, IC, T(0), out, OC);
}

void linear_backward(float* dinp, float dinp_beta, float* dweight, float dweight_beta,
                     const Bf16Gemm::Rounded& dout, const float* inp, const float* weight,
                     int64_t N, int64_t IC, int64_t OC, const Bf16Gemm& bf16, float alpha) {
  bf16.gemm(false, false, N, IC, OC, alpha, dout, weight, IC, dinp_beta, dinp, IC);    // [N,IC]
  bf16.gemm(true, false, OC, IC, N, alpha, dout, inp, IC, dweight_beta, dweight, IC);  // [OC,IC]
}

template <typename T>
void linear_backward(T* dinp, T dinp_beta, T* dweight, T dweight_beta, const T* dout, const T* inp,
                     const T* weight, int64_t N, int64_t IC, int64_t OC, const Bf16Gemm* bf16) {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16 != nullptr && dinp != nullptr && dweight != nullptr) {
      // The same bits as rounding dout in each GEMM, half the rounding passes.
      linear_backward(dinp, dinp_beta, dweight, dweight_beta, bf16->round_once(dout, N, OC, OC),
                      inp, weight, N, IC, OC, *bf16);
      return;
    }
  }
  if (dinp != nullptr) {
    gemm_at(bf16, false, false, N, IC, OC, T(1), dout, OC, weight, IC, dinp_beta, dinp,
            IC);  // [N,IC]
  }
  if (dweight != nullptr) {
    gemm_at(bf16, true, false, OC, IC, N, T(1), dout, OC, inp, IC, dweight_beta, dweight,
            IC);  // [OC,IC]
  }
}

template <typename T>
void matmul_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int64_t N,
                     int64_t IC, int64_t OC, const Bf16Gemm* bf16) {
  // dinp_beta = 1: gradients accumulate (over micro-batches, and where one activation feeds
  // several matmuls).
  linear_backward(dinp, T(1), dweight, T(1), dout, inp, weight, N, IC, OC, bf16);
}

template void matmul_forward<float>(float*, const float*, const float*, int64_t, int64_t, int64_t,
                                    const Bf16Gemm*);
template void matmul_forward<double>(double*, const double*, const double*, int64_t, int64_t,
                                     int64_t, const Bf16Gemm*);
template <typename T>
void linear_backward_fixed_shape(T* dinp, T dinp_beta, T* dweight, const T* dout, const T* inp,
                                 const T* weight, int64_t N, int64_t IC, int64_t OC,
                                 const Bf16Gemm* bf16) {
  if (bf16 != nullptr || dweight == nullptr) {
    linear_backward(dinp, dinp_beta, dweight, T(1), dout, inp, weight, N, IC, OC, bf16);
    return;
  }
  if (dinp != nullptr)
    gemm(false, false, N, IC, OC, T(1), dout, OC, weight, IC, dinp_beta, dinp, IC);      // [N,IC]
  gemm_fixed_shape(true, false, OC, IC, N, T(1), dout, OC, inp, IC, T(1), dweight, IC);  // [OC,IC]
}

template void linear_backward_fixed_shape<float>(float*, float, float*, const float*, const float*,
                                                 const float*, int64_t, int64_t, int64_t,
                                                 const Bf16Gemm*);
template void linear_backward_fixed_shape<double>(double*, double, double*, const double*,
                                                  const double*, const double*, int64_t, int64_t,
                                                  int64_t, const Bf16Gemm*);
template void linear_backward<float>(float*, float, float*, float, const float*, const float*,
                                     const float*, int64_t, int64_t, int64_t, const Bf16Gemm*);
template void linear_backward<double>(double*, double, double*, double, const double*,
                                      const double*, const double*, int64_t, int64_t, int64_t,
                                      const Bf16Gemm*);
template void matmul_backward<float>(float*, float*, const float*, const float*, const float*,
                                     int64_t, int64_t, int64_t, const Bf16Gemm*);
template void matmul_backward<double>(double*, double*, const double*, const double*, const double*,
                                      int64_t, int64_t, int64_t, const Bf16Gemm*);

}  // namespace sy
