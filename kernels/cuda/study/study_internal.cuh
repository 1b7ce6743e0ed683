// Internal to kvq_kernels_study: what the four variant files share, and the
// table through which study_kernels.cu dispatches to them (the one place that
// switches on the variant). Not a public header.

#ifndef KVQ_KERNELS_CUDA_STUDY_STUDY_INTERNAL_CUH_
#define KVQ_KERNELS_CUDA_STUDY_STUDY_INTERNAL_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/study/study_kernels.h"
#include "kernels/quant_math.h"

namespace kvq::cuda::study::internal {

inline constexpr unsigned kThreadsPerBlock = 256;

// INTERNAL naming the step, if `err` (or the last launch error) is not success.
absl::Status CheckCuda(cudaError_t err, const char* what);
inline absl::Status CheckLaunch(const char* kernel) {
  return CheckCuda(cudaGetLastError(), kernel);
}

inline unsigned BlocksFor(uint64_t threads) {
  return static_cast<unsigned>((threads + kThreadsPerBlock - 1) /
                               kThreadsPerBlock);
}

// Max-accumulates |x| into a per-channel slot holding float bits. For
// non-negative floats the unsigned order of the bits is the float order, so
// an integer atomicMax is an exact float max; slots start at 0 (= +0.0f).
__device__ __forceinline__ void AtomicMaxAbs(unsigned* slot, float absval) {
  atomicMax(slot, __float_as_uint(absval));
}

// A variant's three kernels. `absmax_bits` (D slots, zeroed by the caller)
// receives max |k| per channel as float bits; study_kernels.cu turns it into
// scales in place.
struct VariantOps {
  absl::Status (*absmax)(StudyShape shape, const float* k,
                         unsigned* absmax_bits, cudaStream_t stream);
  absl::Status (*quantize)(StudyShape shape, const float* k,
                           const float* scales, int8_t* q,
                           cudaStream_t stream);
  absl::Status (*dequantize)(StudyShape shape, const int8_t* q,
                             const float* scales, float* out,
                             cudaStream_t stream);
};

extern const VariantOps kNaiveOps;
extern const VariantOps kTiledOps;
extern const VariantOps kCoarsenedOps;
extern const VariantOps kVectorizedOps;

}  // namespace kvq::cuda::study::internal

#endif  // KVQ_KERNELS_CUDA_STUDY_STUDY_INTERNAL_CUH_
