// Validation of what clients send, from wire types to kvq types.
//
// Every check returns INVALID_ARGUMENT with a message that names the field as
// the client wrote it ("header.shape.head_dim must be >= 1, got 0",
// "keys[3] must be 1 to 1024 bytes, got 0"), so that a person can fix the
// request without reading the server. Nothing here touches the pool.

#ifndef KVQ_SERVER_SERVICE_HEADER_VALIDATION_H_
#define KVQ_SERVER_SERVICE_HEADER_VALIDATION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/format.h"
#include "kvq/v1/kvcache.pb.h"

namespace kvq {

inline constexpr size_t kMaxNamespaceBytes = 128;
inline constexpr size_t kMaxKeyBytes = 1024;

// A Put header that passed every check.
struct PutHeader {
  std::string ns;
  std::string key;
  DType dtype = DType::kFp32;
  BlockLayout layout;

  // Bytes the client sends for this block: dtype x shape.
  uint64_t logical_bytes() const { return layout.logical_bytes(dtype); }
};

// At most 128 bytes of printable ASCII (0x20..0x7e); may be empty.
absl::Status ValidateNamespace(std::string_view ns, std::string_view field);

// 1 to 1024 bytes, any values.
absl::Status ValidateKey(std::string_view key, std::string_view field);

// The dtype of a Put: FP16, BF16 or FP32 (UNSPECIFIED is refused).
absl::StatusOr<DType> PutDTypeFromWire(int wire_value, std::string_view field);

// The dtype of a Get: nullopt for UNSPECIFIED ("as put").
absl::StatusOr<std::optional<DType>> GetDTypeFromWire(int wire_value,
                                                      std::string_view field);

// Checks namespace, key, dtype, shape and quantization of a Put header and
// computes the block's layout.
absl::StatusOr<PutHeader> ValidatePutHeader(const v1::BlockHeader& header);

// The wire form of a stored block's header, as a Get returns it.
v1::BlockHeader ToWireHeader(std::string_view ns, std::string_view key,
                             DType dtype, const BlockLayout& layout);

// A key as it may appear in a message or a log line: printable characters
// as they are, other bytes as \xNN escapes, cut after 64 bytes ("...").
std::string DescribeKey(std::string_view key);

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_HEADER_VALIDATION_H_
