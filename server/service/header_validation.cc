#include "server/service/header_validation.h"
#include "server/service/string_views.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvq {
namespace {

constexpr size_t kDescribedKeyBytes = 64;

// kvq's enums carry the wire values (format.h); ToWireHeader casts.
static_assert(static_cast<int>(DType::kFp16) == v1::DTYPE_FP16);
static_assert(static_cast<int>(DType::kBf16) == v1::DTYPE_BF16);
static_assert(static_cast<int>(DType::kFp32) == v1::DTYPE_FP32);
static_assert(static_cast<int>(Granularity::kPerTokenHead) ==
              v1::GRANULARITY_PER_TOKEN_HEAD);
static_assert(static_cast<int>(Granularity::kPerChannel) ==
              v1::GRANULARITY_PER_CHANNEL);
static_assert(static_cast<int>(Granularity::kPerTensor) ==
              v1::GRANULARITY_PER_TENSOR);
static_assert(static_cast<int>(Granularity::kGroup) == v1::GRANULARITY_GROUP);
static_assert(static_cast<int>(Format::kInt8Symmetric) ==
              v1::FORMAT_INT8_SYMMETRIC);

absl::StatusOr<DType> DTypeFromWire(int wire_value, std::string_view field) {
  switch (wire_value) {
    case v1::DTYPE_FP16:
      return DType::kFp16;
    case v1::DTYPE_BF16:
      return DType::kBf16;
    case v1::DTYPE_FP32:
      return DType::kFp32;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          ToAbsl(field), " must be DTYPE_FP16 (1), DTYPE_BF16 (2) or DTYPE_FP32 (3), ",
          "got ", wire_value));
  }
}

absl::StatusOr<Granularity> GranularityFromWire(int wire_value) {
  switch (wire_value) {
    case v1::GRANULARITY_UNSPECIFIED:
    case v1::GRANULARITY_PER_TOKEN_HEAD:
      return Granularity::kPerTokenHead;
    case v1::GRANULARITY_PER_CHANNEL:
      return Granularity::kPerChannel;
    case v1::GRANULARITY_PER_TENSOR:
      return Granularity::kPerTensor;
    case v1::GRANULARITY_GROUP:
      return Granularity::kGroup;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "header.quantization.granularity must be GRANULARITY_PER_TOKEN_HEAD "
          "(1), GRANULARITY_PER_CHANNEL (2), GRANULARITY_PER_TENSOR (3) or "
          "GRANULARITY_GROUP (4), got ",
          wire_value));
  }
}

absl::StatusOr<Format> FormatFromWire(int wire_value) {
  switch (wire_value) {
    case v1::FORMAT_UNSPECIFIED:
    case v1::FORMAT_INT8_SYMMETRIC:
      return Format::kInt8Symmetric;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "header.quantization.format must be FORMAT_INT8_SYMMETRIC (1), got ",
          wire_value));
  }
}

// The quantization fields, named as on the wire. (ValidateBlock checks the
// same rules, but names kvq's own struct fields.)
absl::StatusOr<QuantSpec> QuantSpecFromWire(const v1::Quantization& wire,
                                            uint32_t head_dim) {
  QuantSpec spec;
  absl::StatusOr<Granularity> granularity =
      GranularityFromWire(wire.granularity());
  if (!granularity.ok()) return granularity.status();
  absl::StatusOr<Format> format = FormatFromWire(wire.format());
  if (!format.ok()) return format.status();
  spec.granularity = *granularity;
  spec.format = *format;
  spec.group_size = wire.group_size();
  if (spec.granularity != Granularity::kGroup) {
    if (spec.group_size != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "header.quantization.group_size must be 0 unless granularity is "
          "GRANULARITY_GROUP, got ",
          spec.group_size, " with ", ToAbsl(GranularityName(spec.granularity))));
    }
    return spec;
  }
  if (spec.group_size == 0 || head_dim % spec.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header.quantization.group_size must divide header.shape.head_dim (",
        head_dim, ") for GRANULARITY_GROUP, got ", spec.group_size));
  }
  return spec;
}

}  // namespace

absl::Status ValidateNamespace(std::string_view ns, std::string_view field) {
  if (ns.size() > kMaxNamespaceBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        ToAbsl(field), " must be at most ", kMaxNamespaceBytes, " bytes, got ",
        ns.size()));
  }
  for (size_t i = 0; i < ns.size(); ++i) {
    const auto c = static_cast<unsigned char>(ns[i]);
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s must be printable ASCII, got byte 0x%02x at offset %d", ToAbsl(field), c,
          i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(std::string_view key, std::string_view field) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        ToAbsl(field), " must be 1 to ", kMaxKeyBytes, " bytes, got ", key.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<DType> PutDTypeFromWire(int wire_value,
                                       std::string_view field) {
  if (wire_value == v1::DTYPE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat(
        ToAbsl(field), " is required: DTYPE_FP16 (1), DTYPE_BF16 (2) or DTYPE_FP32 (3)"));
  }
  return DTypeFromWire(wire_value, field);
}

absl::StatusOr<std::optional<DType>> GetDTypeFromWire(int wire_value,
                                                      std::string_view field) {
  if (wire_value == v1::DTYPE_UNSPECIFIED) return std::optional<DType>();
  absl::StatusOr<DType> dtype = DTypeFromWire(wire_value, field);
  if (!dtype.ok()) return dtype.status();
  return std::optional<DType>(*dtype);
}

absl::StatusOr<PutHeader> ValidatePutHeader(const v1::BlockHeader& header) {
  if (absl::Status s = ValidateNamespace(header.namespace_(), "header.namespace");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateKey(header.key(), "header.key"); !s.ok()) {
    return s;
  }
  absl::StatusOr<DType> dtype = PutDTypeFromWire(header.dtype(), "header.dtype");
  if (!dtype.ok()) return dtype.status();

  BlockShape shape;
  shape.planes = header.shape().planes();
  shape.tokens = header.shape().tokens();
  shape.heads = header.shape().heads();
  shape.head_dim = header.shape().head_dim();
  // Dimensions first, with the default quantization: its messages name
  // "shape.<dim>", which is "header.shape.<dim>" on the wire.
  if (absl::Status s = ValidateBlock(shape, QuantSpec{}); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("header.", s.message()));
  }
  absl::StatusOr<QuantSpec> spec =
      QuantSpecFromWire(header.quantization(), shape.head_dim);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<BlockLayout> layout = MakeLayout(shape, *spec);
  if (!layout.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("header: ", layout.status().message()));
  }

  PutHeader out;
  out.ns = header.namespace_();
  out.key = header.key();
  out.dtype = *dtype;
  out.layout = *layout;
  return out;
}

v1::BlockHeader ToWireHeader(std::string_view ns, std::string_view key,
                             DType dtype, const BlockLayout& layout) {
  v1::BlockHeader header;
  header.set_namespace_(std::string(ns));
  header.set_key(std::string(key));
  header.set_dtype(static_cast<v1::DType>(dtype));
  v1::BlockShape* shape = header.mutable_shape();
  shape->set_planes(layout.shape.planes);
  shape->set_tokens(layout.shape.tokens);
  shape->set_heads(layout.shape.heads);
  shape->set_head_dim(layout.shape.head_dim);
  v1::Quantization* quantization = header.mutable_quantization();
  quantization->set_granularity(
      static_cast<v1::Granularity>(layout.spec.granularity));
  quantization->set_group_size(layout.spec.group_size);
  quantization->set_format(static_cast<v1::Format>(layout.spec.format));
  return header;
}

std::string DescribeKey(std::string_view key) {
  const bool cut = key.size() > kDescribedKeyBytes;
  std::string out =
      absl::CHexEscape(ToAbsl(cut ? key.substr(0, kDescribedKeyBytes) : key));
  if (cut) absl::StrAppend(&out, "...");
  return absl::StrCat("\"", out, "\"");
}

}  // namespace kvq
