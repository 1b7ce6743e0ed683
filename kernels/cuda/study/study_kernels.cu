// Public entry points of the study kernels: argument checks, the one switch
// over variants, and the steps every variant shares (zeroing the per-channel
// absmax slots and turning them into scales).

#include "kernels/cuda/study/study_kernels.h"

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/study/study_internal.cuh"
#include "kernels/status_macros.h"

namespace kvq::cuda::study {
namespace internal {

absl::Status CheckCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(err),
                                          ": ", cudaGetErrorString(err)));
}

}  // namespace internal

namespace {

using internal::CheckCuda;
using internal::CheckLaunch;
using internal::VariantOps;

const VariantOps& OpsFor(Variant v) {
  switch (v) {
    case Variant::kNaive: return internal::kNaiveOps;
    case Variant::kTiled: return internal::kTiledOps;
    case Variant::kCoarsened: return internal::kCoarsenedOps;
    case Variant::kVectorized: return internal::kVectorizedOps;
  }
  return internal::kNaiveOps;  // unreachable: every enumerator is listed
}

// In place: absmax bits -> scale = absmax / 127 (quant_math.h).
__global__ void FinalizeScalesKernel(float* scales, uint32_t dims) {
  const uint32_t d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= dims) return;
  const unsigned bits = reinterpret_cast<const unsigned*>(scales)[d];
  scales[d] = ScaleFromAbsmax(__uint_as_float(bits));
}

absl::Status CheckShape(StudyShape shape) {
  if (shape.tokens == 0) {
    return absl::InvalidArgumentError("shape.tokens must be >= 1, got 0");
  }
  if (shape.dims == 0) {
    return absl::InvalidArgumentError("shape.dims must be >= 1, got 0");
  }
  return absl::OkStatus();
}

absl::Status CheckPointer(Variant v, const void* p, const char* name) {
  if (p == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must not be null"));
  }
  if (v == Variant::kVectorized && reinterpret_cast<uintptr_t>(p) % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " must be 16-byte aligned for the vectorized variant"));
  }
  return absl::OkStatus();
}

cudaStream_t AsCuda(Stream s) { return static_cast<cudaStream_t>(s); }

}  // namespace

std::string_view VariantName(Variant v) {
  switch (v) {
    case Variant::kNaive: return "naive";
    case Variant::kTiled: return "tiled";
    case Variant::kCoarsened: return "coarsened";
    case Variant::kVectorized: return "vectorized";
  }
  return "unknown";
}

absl::StatusOr<Variant> ParseVariant(std::string_view name) {
  for (Variant v : kAllVariants) {
    if (VariantName(v) == name) return v;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "variant must be naive, tiled, coarsened or vectorized, got \"",
      std::string(name),
      "\""));
}

absl::Status ComputeChannelScales(Variant v, StudyShape shape, const float* k,
                                  float* scales, Stream stream) {
  KVQ_RETURN_IF_ERROR(CheckShape(shape));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, k, "k"));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, scales, "scales"));
  const cudaStream_t cs = AsCuda(stream);
  KVQ_RETURN_IF_ERROR(CheckCuda(
      cudaMemsetAsync(scales, 0, sizeof(float) * shape.dims, cs),
      "cudaMemsetAsync(scales)"));
  KVQ_RETURN_IF_ERROR(OpsFor(v).absmax(
      shape, k, reinterpret_cast<unsigned*>(scales), cs));
  const unsigned threads = internal::kThreadsPerBlock;
  FinalizeScalesKernel<<<(shape.dims + threads - 1) / threads, threads, 0,
                         cs>>>(scales, shape.dims);
  return CheckLaunch("FinalizeScalesKernel");
}

absl::Status QuantizeWithScales(Variant v, StudyShape shape, const float* k,
                                const float* scales, int8_t* q,
                                Stream stream) {
  KVQ_RETURN_IF_ERROR(CheckShape(shape));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, k, "k"));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, scales, "scales"));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, q, "q"));
  return OpsFor(v).quantize(shape, k, scales, q, AsCuda(stream));
}

absl::Status Quantize(Variant v, StudyShape shape, const float* k,
                      float* scales, int8_t* q, Stream stream) {
  KVQ_RETURN_IF_ERROR(ComputeChannelScales(v, shape, k, scales, stream));
  return QuantizeWithScales(v, shape, k, scales, q, stream);
}

absl::Status Dequantize(Variant v, StudyShape shape, const int8_t* q,
                        const float* scales, float* out, Stream stream) {
  KVQ_RETURN_IF_ERROR(CheckShape(shape));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, q, "q"));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, scales, "scales"));
  KVQ_RETURN_IF_ERROR(CheckPointer(v, out, "out"));
  return OpsFor(v).dequantize(shape, q, scales, out, AsCuda(stream));
}

}  // namespace kvq::cuda::study
