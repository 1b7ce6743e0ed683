// ElementwiseDequantize: payload -> values of the requested dtype, for every
// granularity (the scale map is in elementwise.cuh). Reads 1 byte and writes
// 2 or 4 bytes per value; scales come from L1 (a group's scale is shared by
// neighbouring threads). One big FP32 block of contiguous payload goes to
// PhasedDequantize instead (dequantize_phased.cuh: its 1:4 read:write mix
// runs faster when the whole GPU reads, then writes).

#include <type_traits>

#include "kernels/cuda/dequantize_phased.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/launchers.cuh"

namespace kvq::cuda::internal {

template <typename T, int kVec, class Addr>
absl::Status LaunchElementwiseDequantize(const BlockLayout& layout,
                                         const BlockList& blocks,
                                         const Addr& addr,
                                         cudaStream_t stream) {
  if constexpr (std::is_same_v<T, Fp32> && kVec == kFullVec<Fp32> &&
                std::is_same_v<Addr, ContiguousAddr>) {
    absl::StatusOr<bool> phased = TakesPhasedDequantize(layout, blocks, addr);
    if (!phased.ok()) return phased.status();
    if (*phased) return LaunchPhasedDequantize<T>(layout, blocks, addr, stream);
  }
  return LaunchElementwise<T, kVec, Addr, /*kQuantize=*/false>(layout, blocks,
                                                               addr, stream);
}

#define KVQ_INSTANTIATE(T, V, A)                                       \
  template absl::Status LaunchElementwiseDequantize<T, V, A>(          \
      const BlockLayout&, const BlockList&, const A&, cudaStream_t);
KVQ_FOR_EACH_LAUNCH_CONFIG(KVQ_INSTANTIATE)
#undef KVQ_INSTANTIATE

}  // namespace kvq::cuda::internal
