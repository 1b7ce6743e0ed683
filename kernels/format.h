// Block format: what a KV block is and how its quantized payload is laid out.
//
// A block is planes x tokens x heads x head_dim values of one dtype, row-major
// with head_dim fastest. It is stored as symmetric INT8 with FP32 scales:
//
//   payload = int8 values, in the block's own order   (elements bytes)
//             zero padding up to a multiple of 16 bytes
//             float32 scales, in group order          (4 * groups bytes)
//
// A group is the set of values sharing one scale (see Granularity). For each
// group, scale = absmax / 127 and q = round-half-even(x / scale) clamped to
// [-127, 127]; an all-zero group has scale 0 and decodes to exact zeros. Every
// element then satisfies |x - q * scale| <= scale / 2 up to float rounding;
// DequantErrorBound() below is that bound, exactly as the tests check it.
//
// This header has no dependency on gRPC or CUDA: it is shared by the CPU and
// CUDA kernels, the pool and the service. The wire enums in
// proto/kvq/v1/kvcache.proto use the same numeric values.

#ifndef KVQ_KERNELS_FORMAT_H_
#define KVQ_KERNELS_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvq {

// Element type of a block as clients send and receive it. Values equal the
// wire enum kvq.v1.DType.
enum class DType : uint8_t { kFp16 = 1, kBf16 = 2, kFp32 = 3 };

// Which values share a scale. Values equal the wire enum kvq.v1.Granularity.
enum class Granularity : uint8_t {
  kPerTokenHead = 1,  // one scale per (plane, token, head): head_dim values
  kPerChannel = 2,    // one scale per (plane, head, channel), across tokens
  kPerTensor = 3,     // one scale per plane
  kGroup = 4,         // one scale per group_size consecutive channels
};

// Storage format of the payload. Values equal the wire enum kvq.v1.Format.
enum class Format : uint8_t { kInt8Symmetric = 1 };

// Bytes per element of `dtype`.
constexpr size_t DTypeBytes(DType dtype) {
  return dtype == DType::kFp32 ? 4 : 2;
}

std::string_view DTypeName(DType dtype);          // "fp16", "bf16", "fp32"
std::string_view GranularityName(Granularity g);  // "per_token_head", ...
absl::StatusOr<DType> ParseDType(std::string_view name);
absl::StatusOr<Granularity> ParseGranularity(std::string_view name);

// Extent of a block.
struct BlockShape {
  uint32_t planes = 0;
  uint32_t tokens = 0;
  uint32_t heads = 0;
  uint32_t head_dim = 0;

  uint64_t elements() const {
    return uint64_t{planes} * tokens * heads * head_dim;
  }
  friend bool operator==(const BlockShape&, const BlockShape&) = default;
};

// How a block is quantized.
struct QuantSpec {
  Granularity granularity = Granularity::kPerTokenHead;
  uint32_t group_size = 0;  // kGroup only; divides head_dim
  Format format = Format::kInt8Symmetric;
  friend bool operator==(const QuantSpec&, const QuantSpec&) = default;
};

// Limits on a single block. A dimension or total over these is refused as
// "absurd" before any memory is touched.
inline constexpr uint32_t kMaxPlanes = 1u << 12;  // 2 x 2048 layers
inline constexpr uint32_t kMaxTokens = 1u << 20;
inline constexpr uint32_t kMaxHeads = 1u << 12;
inline constexpr uint32_t kMaxHeadDim = 1u << 16;
// 4 Gi values (16 GiB of FP32).
inline constexpr uint64_t kMaxElements = 1ull << 32;

// Returns OK if `shape` and `spec` describe a block kvq can store; otherwise
// INVALID_ARGUMENT naming the offending field and value, e.g.
// "shape.head_dim must be >= 1, got 0", "spec.group_size must divide
// shape.head_dim (128), got 48". Rules: every dimension in [1, its kMax*];
// elements() <= kMaxElements; format is a known Format; granularity is a
// known Granularity; group_size > 0 and dividing head_dim for kGroup, and 0
// for every other granularity.
absl::Status ValidateBlock(const BlockShape& shape, const QuantSpec& spec);

// Where each part of a block's payload lives. Built only from a valid block.
struct BlockLayout {
  BlockShape shape;
  QuantSpec spec;
  uint64_t elements = 0;       // == shape.elements()
  uint64_t groups = 0;         // number of scales
  uint64_t group_values = 0;   // values per group
  uint64_t scales_offset = 0;  // elements rounded up to a multiple of 16
  uint64_t payload_bytes = 0;  // scales_offset + 4 * groups

  // Bytes of the block in `dtype` (what a client sends or receives).
  uint64_t logical_bytes(DType dtype) const {
    return elements * DTypeBytes(dtype);
  }

  // Index of the scale that element `i` (in block order) uses. The scalar
  // reference is written in terms of this; fast paths must agree with it.
  uint64_t GroupOf(uint64_t i) const;
};

// Validates and computes the layout of a block.
absl::StatusOr<BlockLayout> MakeLayout(const BlockShape& shape,
                                       const QuantSpec& spec);

// The largest |x - q * scale| the format allows for a value x quantized with
// `scale` and dequantized to float: scale / 2 plus the rounding of the float
// arithmetic (the reciprocal, the product, and subnormal scales), i.e.
// scale / 2 + 2^-22 (|x| + scale) + 2^-142, rounded up. The derivation is in
// format.cc. `scale` must be the scale of a group holding x.
float DequantErrorBound(float x, float scale);

// The same bound when the dequantized value is further rounded to `dtype`
// (adds half a unit in the last place of that dtype at the value). +Inf when
// the value could round past the dtype's largest finite number (e.g. an FP32
// block read back as FP16): no finite bound holds there.
float DequantErrorBound(float x, float scale, DType dtype);

}  // namespace kvq

#endif  // KVQ_KERNELS_FORMAT_H_
