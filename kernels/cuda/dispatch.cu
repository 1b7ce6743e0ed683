// Dispatch over dtype and granularity: the only switch over either in the
// CUDA kernels. It picks
//   - the element type T (FP16 / BF16 / FP32) and the vector width: 16-byte
//     accesses when the pointers are aligned and every run of values that
//     shares a scale is a whole number of vectors, else element-sized ones;
//   - the kernel family from the granularity and the size of a group:
//       per-token-head, group-wise, per-tensor:
//         group fits one CTA's registers -> GroupQuantize (one read)
//         otherwise                       -> two-pass with SegmentReduce
//       per-channel:
//         tokens <= kColumnMaxTokens      -> ColumnQuantize fused (one read)
//         otherwise                       -> two-pass: ColumnQuantize's
//                                            reduce, then apply stage
//   - for a quantize with the scales given (QuantizeWithScales), the pass
//     that follows a reduce: ColumnQuantize's apply stage or the
//     elementwise kernel;
//   - for dequantize, the elementwise kernel for every granularity.

#include "kernels/cuda/dispatch.cuh"

#include "absl/strings/str_cat.h"
#include "kernels/cuda/launch_util.cuh"
#include "kernels/cuda/launchers.cuh"
#include "kernels/status_macros.h"

namespace kvq::cuda::internal {
namespace {

// Calls fn(T{}) with the element type of `dtype`.
template <class Fn>
absl::Status WithElementType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFp16:
      return fn(Fp16{});
    case DType::kBf16:
      return fn(Bf16{});
    case DType::kFp32:
      return fn(Fp32{});
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype must be fp16, bf16 or fp32, got ",
                   static_cast<int>(dtype)));
}

// Values in a run that shares one scale along the fastest dimension.
uint64_t ScaleRun(const BlockLayout& layout) {
  switch (layout.spec.granularity) {
    case Granularity::kPerChannel:
      return uint64_t{layout.shape.heads} * layout.shape.head_dim;
    case Granularity::kPerTokenHead:
    case Granularity::kPerTensor:
    case Granularity::kGroup:
      return layout.group_values;
  }
  return 1;
}

// Calls fn(T{}, std::integral_constant<int, kVec>{}).
template <class Fn>
absl::Status WithTypeAndWidth(const BlockLayout& layout, DType dtype,
                              bool vector_aligned, Fn&& fn) {
  return WithElementType(dtype, [&](auto zero) -> absl::Status {
    using T = decltype(zero);
    constexpr int kVec = kFullVec<T>;
    if (vector_aligned && ScaleRun(layout) % kVec == 0) {
      return fn(zero, std::integral_constant<int, kVec>{});
    }
    return fn(zero, std::integral_constant<int, 1>{});
  });
}

// Whether quantizing with kVec-element vectors reads the input twice: the
// runs that share a scale do not fit on chip.
bool TwoPass(const BlockLayout& layout, int vec) {
  if (layout.spec.granularity == Granularity::kPerChannel) {
    return layout.shape.tokens > kColumnMaxTokens;
  }
  return layout.group_values / vec > kGroupCapacityVecs;
}

// The two-pass sequence: zeroed scale slots, `reduce` (which combines the
// scales into them), then `quantize` with them.
template <class Addr, class Reduce, class Quantize>
absl::Status TwoPassQuantize(const BlockLayout& layout,
                             const BlockList& blocks, const Addr& addr,
                             cudaStream_t stream, Reduce&& reduce,
                             Quantize&& quantize) {
  KVQ_RETURN_IF_ERROR(LaunchZeroScaleSlots(layout, blocks, addr, stream));
  KVQ_RETURN_IF_ERROR(reduce());
  return quantize();
}

// The pass that quantizes with the scales already in the payload: after a
// reduce, and for QuantizeWithScales.
template <typename T, int kVec, class Addr>
absl::Status QuantizeWithScalesAs(const BlockLayout& layout,
                                  const BlockList& blocks, const Addr& addr,
                                  cudaStream_t stream) {
  if (layout.spec.granularity == Granularity::kPerChannel) {
    return LaunchColumnQuantize<T, kVec, Addr>(
        layout, ColumnStage::kApply, blocks, addr, QuantizeOutputs{}, stream);
  }
  return LaunchElementwiseQuantize<T, kVec, Addr>(layout, blocks, addr,
                                                  stream);
}

template <typename T, int kVec, class Addr>
absl::Status QuantizeAs(const BlockLayout& layout, const BlockList& blocks,
                        const Addr& addr, QuantizeOutputs out,
                        cudaStream_t stream) {
  auto column = [&](ColumnStage stage) {
    return LaunchColumnQuantize<T, kVec, Addr>(layout, stage, blocks, addr,
                                               out, stream);
  };
  auto with_scales = [&] {
    return QuantizeWithScalesAs<T, kVec, Addr>(layout, blocks, addr, stream);
  };
  switch (layout.spec.granularity) {
    case Granularity::kPerChannel:
      if (!TwoPass(layout, kVec)) return column(ColumnStage::kFused);
      return TwoPassQuantize(layout, blocks, addr, stream,
                             [&] { return column(ColumnStage::kReduce); },
                             with_scales);
    case Granularity::kPerTokenHead:
    case Granularity::kPerTensor:
    case Granularity::kGroup:
      if (!TwoPass(layout, kVec)) {
        return LaunchGroupQuantize<T, kVec, Addr>(layout, blocks, addr, out,
                                                  stream);
      }
      return TwoPassQuantize(
          layout, blocks, addr, stream,
          [&] {
            return LaunchSegmentReduce<T, kVec, Addr>(layout, blocks, addr,
                                                      out, stream);
          },
          with_scales);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("spec.granularity must be 1..4, got ",
                   static_cast<int>(layout.spec.granularity)));
}

}  // namespace

absl::Status ValidateLayout(const BlockLayout& layout, DType dtype) {
  if (dtype != DType::kFp16 && dtype != DType::kBf16 &&
      dtype != DType::kFp32) {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype must be fp16, bf16 or fp32, got ",
                     static_cast<int>(dtype)));
  }
  absl::StatusOr<BlockLayout> expected = MakeLayout(layout.shape, layout.spec);
  if (!expected.ok()) return expected.status();
  if (expected->elements != layout.elements ||
      expected->groups != layout.groups ||
      expected->group_values != layout.group_values ||
      expected->scales_offset != layout.scales_offset ||
      expected->payload_bytes != layout.payload_bytes) {
    return absl::InvalidArgumentError(
        "layout does not match MakeLayout(layout.shape, layout.spec)");
  }
  return absl::OkStatus();
}

absl::Status ValidatePages(const uint8_t* arena, uint64_t page_bytes) {
  if (page_bytes == 0 || page_bytes % 256 != 0 ||
      page_bytes >= (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_bytes must be a positive multiple of 256 below 2^31, got ",
        page_bytes));
  }
  if (arena == nullptr || !Aligned16(arena)) {
    return absl::InvalidArgumentError(
        "arena must be a 16-byte aligned device pointer");
  }
  return absl::OkStatus();
}

absl::Status CheckPointer(const void* p, const char* name) {
  if (p == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a device pointer, got null"));
  }
  return absl::OkStatus();
}

int QuantizeInputReads(const BlockLayout& layout, DType dtype,
                       bool vector_aligned) {
  int reads = 1;
  const absl::Status known = WithTypeAndWidth(
      layout, dtype, vector_aligned, [&](auto, auto width) {
        reads = TwoPass(layout, decltype(width)::value) ? 2 : 1;
        return absl::OkStatus();
      });
  return known.ok() ? reads : 0;
}

template <class Addr>
absl::Status DispatchQuantize(const BlockLayout& layout, DType dtype,
                              const BlockList& blocks, bool vector_aligned,
                              const Addr& addr, QuantizeOutputs out,
                              cudaStream_t stream) {
  if (blocks.count == 0) return absl::OkStatus();
  return WithTypeAndWidth(
      layout, dtype, vector_aligned, [&](auto zero, auto width) {
        return QuantizeAs<decltype(zero), decltype(width)::value, Addr>(
            layout, blocks, addr, out, stream);
      });
}

template <class Addr>
absl::Status DispatchQuantizeWithScales(const BlockLayout& layout, DType dtype,
                                        const BlockList& blocks,
                                        bool vector_aligned, const Addr& addr,
                                        cudaStream_t stream) {
  if (blocks.count == 0) return absl::OkStatus();
  return WithTypeAndWidth(
      layout, dtype, vector_aligned, [&](auto zero, auto width) {
        return QuantizeWithScalesAs<decltype(zero), decltype(width)::value,
                                    Addr>(layout, blocks, addr, stream);
      });
}

template <class Addr>
absl::Status DispatchDequantize(const BlockLayout& layout, DType dtype,
                                const BlockList& blocks, bool vector_aligned,
                                const Addr& addr, cudaStream_t stream) {
  if (blocks.count == 0) return absl::OkStatus();
  return WithTypeAndWidth(
      layout, dtype, vector_aligned, [&](auto zero, auto width) {
        return LaunchElementwiseDequantize<decltype(zero),
                                           decltype(width)::value, Addr>(
            layout, blocks, addr, stream);
      });
}

#define KVQ_INSTANTIATE(A)                                                   \
  template absl::Status DispatchQuantize<A>(                                 \
      const BlockLayout&, DType, const BlockList&, bool, const A&,           \
      QuantizeOutputs, cudaStream_t);                                        \
  template absl::Status DispatchQuantizeWithScales<A>(                       \
      const BlockLayout&, DType, const BlockList&, bool, const A&,           \
      cudaStream_t);                                                         \
  template absl::Status DispatchDequantize<A>(                               \
      const BlockLayout&, DType, const BlockList&, bool, const A&,           \
      cudaStream_t);
KVQ_INSTANTIATE(ContiguousAddr)
KVQ_INSTANTIATE(PagedAddr)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
