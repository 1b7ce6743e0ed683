// Element codecs for kvq block data: float <-> FP16 / BF16 / FP32 bytes.
//
// Contract: block data on the wire is little-endian elements of the block's
// dtype. EncodeFloats rounds each float to the dtype to nearest, ties to even
// (values beyond FP16's range become +-Inf, NaN stays NaN), exactly as IEEE
// 754 conversion does; DecodeFloats is exact. These are conveniences for
// callers that hold floats (kvqctl's random blocks, tests); a serving engine
// sends its own FP16/BF16 buffers as they are.
//
// Names live in kvq::wire so that they never meet the kernels' kvq::DType.

#ifndef KVQ_CLIENT_ELEMENT_CODEC_H_
#define KVQ_CLIENT_ELEMENT_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kvq/v1/kvcache.pb.h"

namespace kvq::wire {

// Bytes per element of `dtype`; 0 for DTYPE_UNSPECIFIED or unknown values.
size_t ElementBytes(v1::DType dtype);

// "fp16", "bf16", "fp32" (or "unspecified") and back.
std::string_view DTypeName(v1::DType dtype);
absl::StatusOr<v1::DType> ParseDType(std::string_view name);

uint16_t FloatToFp16Bits(float value);
float Fp16BitsToFloat(uint16_t bits);
uint16_t FloatToBf16Bits(float value);
float Bf16BitsToFloat(uint16_t bits);

// `values` as little-endian elements of `dtype` (which must have a size).
std::string EncodeFloats(v1::DType dtype, std::span<const float> values);
// INVALID_ARGUMENT if `dtype` has no size or `bytes` is not a whole number of
// elements.
absl::StatusOr<std::vector<float>> DecodeFloats(v1::DType dtype,
                                                std::string_view bytes);

}  // namespace kvq::wire

#endif  // KVQ_CLIENT_ELEMENT_CODEC_H_
