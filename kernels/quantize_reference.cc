// The scalar reference: the definition of correct for every other path.
// Plain loops over elements in block order, grouping by BlockLayout::GroupOf
// and computing with quant_math.h, nothing else.

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/quant_math.h"
#include "kernels/quantize.h"
#include "kernels/quantize_internal.h"

namespace kvq {
namespace internal {

absl::Status NonFiniteError(uint64_t i, float x) {
  const char* what = std::isnan(x) ? "NaN" : (x > 0 ? "+Inf" : "-Inf");
  return absl::InvalidArgumentError(absl::StrCat(
      "data[", i, "] is ", what, ": blocks must hold finite values only"));
}

absl::Status CheckDType(DType dtype) {
  switch (dtype) {
    case DType::kFp16:
    case DType::kBf16:
    case DType::kFp32:
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype must be 1 (fp16), 2 (bf16) or 3 (fp32), got ",
                   static_cast<int>(dtype)));
}

}  // namespace internal

namespace {

float LoadScale(const uint8_t* payload, const BlockLayout& layout, uint64_t g) {
  float scale;
  std::memcpy(&scale, payload + layout.scales_offset + sizeof(float) * g,
              sizeof scale);
  return scale;
}

}  // namespace

absl::Status QuantizeReference(const BlockLayout& layout, DType dtype,
                               const void* src, uint8_t* payload) {
  if (absl::Status s = internal::CheckDType(dtype); !s.ok()) return s;
  return internal::VisitDType(dtype, [&](auto element) -> absl::Status {
    using E = decltype(element);
    const auto* in = static_cast<const typename E::Storage*>(src);

    std::vector<float> absmax(layout.groups, 0.0f);
    for (uint64_t i = 0; i < layout.elements; ++i) {
      const float x = E::ToFloat(in[i]);
      if (!std::isfinite(x)) return internal::NonFiniteError(i, x);
      float& m = absmax[layout.GroupOf(i)];
      m = std::max(m, std::fabs(x));
    }

    std::vector<float> scale(layout.groups), inv_scale(layout.groups);
    for (uint64_t g = 0; g < layout.groups; ++g) {
      scale[g] = ScaleFromAbsmax(absmax[g]);
      inv_scale[g] = InverseScale(scale[g]);
    }

    for (uint64_t i = 0; i < layout.elements; ++i) {
      const uint64_t g = layout.GroupOf(i);
      const int8_t q = QuantizeValue(E::ToFloat(in[i]), scale[g], inv_scale[g]);
      std::memcpy(payload + i, &q, 1);
    }
    for (uint64_t b = layout.elements; b < layout.scales_offset; ++b) {
      payload[b] = 0;
    }
    for (uint64_t g = 0; g < layout.groups; ++g) {
      std::memcpy(payload + layout.scales_offset + sizeof(float) * g, &scale[g],
                  sizeof(float));
    }
    return absl::OkStatus();
  });
}

void DequantizeReference(const BlockLayout& layout, const uint8_t* payload,
                         DType dtype, void* dst) {
  if (!internal::CheckDType(dtype).ok()) return;
  internal::VisitDType(dtype, [&](auto element) {
    using E = decltype(element);
    auto* out = static_cast<typename E::Storage*>(dst);
    for (uint64_t i = 0; i < layout.elements; ++i) {
      int8_t q;
      std::memcpy(&q, payload + i, 1);
      const float scale = LoadScale(payload, layout, layout.GroupOf(i));
      out[i] = E::FromFloat(DequantizeValue(q, scale));
    }
  });
}

float BlockAbsmax(const BlockLayout& layout, const uint8_t* payload) {
  float largest = 0.0f;
  for (uint64_t g = 0; g < layout.groups; ++g) {
    largest = std::max(largest, std::fabs(LoadScale(payload, layout, g)));
  }
  return DequantizeValue(static_cast<int8_t>(kQMax), largest);
}

float DTypeMaxFinite(DType dtype) {
  switch (dtype) {
    case DType::kFp16:
      return 65504.0f;
    case DType::kBf16:
      return 0x1.fep127f;
    case DType::kFp32:
      break;
  }
  return 3.40282347e38f;
}

}  // namespace kvq
