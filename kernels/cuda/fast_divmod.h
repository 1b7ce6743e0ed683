// Division of 32-bit unsigned integers by a divisor fixed at launch time,
// with one multiply-high, an add and a shift instead of a division (which a
// GPU emulates in ~20 instructions).
//
// Contract: FastDivmod(d) accepts any divisor 1 <= d <= 2^32; Div(n) equals
// n / d and DivMod(n) equals {n / d, n % d} for every 32-bit n. The method
// is Granlund and Montgomery's ("Division by invariant integers using
// multiplication", 1994, Fig. 4.1) with the sum taken in 64 bits, so there is
// no overflow case. Host and device compute the same; the host version exists
// so that tests can check it exhaustively on the CPU.

#ifndef KVQ_KERNELS_CUDA_FAST_DIVMOD_H_
#define KVQ_KERNELS_CUDA_FAST_DIVMOD_H_

#include <cstdint>

#if defined(__CUDACC__)
#define KVQ_DIVMOD_FN __host__ __device__ __forceinline__
#else
#define KVQ_DIVMOD_FN inline
#endif

namespace kvq::cuda {

struct FastDivmod {
  uint64_t divisor = 1;
  uint32_t multiplier = 0;
  uint32_t shift = 0;

  FastDivmod() = default;

  // 1 <= d <= 2^32.
  explicit FastDivmod(uint64_t d) : divisor(d) {
    // shift = ceil(log2(d)); multiplier = floor(2^32 (2^shift - d) / d) + 1,
    // which is < 2^32 for every d in range (and 1 for powers of two).
    while ((uint64_t{1} << shift) < d) ++shift;
    const uint64_t excess = (uint64_t{1} << shift) - d;  // < d <= 2^32
    // excess < 2^32, so (excess << 32) < 2^64: no overflow.
    multiplier = static_cast<uint32_t>((excess << 32) / d + 1);
  }

  KVQ_DIVMOD_FN uint32_t Div(uint32_t n) const {
    return Quotient(n, multiplier, shift);
  }

  // Div with the constants unpacked (PagedAddr keeps them apart to save
  // registers).
  KVQ_DIVMOD_FN static uint32_t Quotient(uint32_t n, uint32_t multiplier,
                                         uint32_t shift) {
#if defined(__CUDA_ARCH__)
    const uint32_t high = __umulhi(n, multiplier);
#else
    const uint32_t high =
        static_cast<uint32_t>((uint64_t{n} * multiplier) >> 32);
#endif
    // (high + n) >> shift with the 33-bit sum as carry:sum. Shifting the sum
    // widened to 64 bits is the same value, but the device compiler then
    // keeps the quotient in 64-bit registers and narrows it with masks at
    // every use (about 6 more instructions per index in the kernels).
    const uint32_t sum = high + n;
    const uint32_t carry = sum < n ? 1u : 0u;
#if defined(__CUDA_ARCH__)
    return __funnelshift_rc(sum, carry, shift);  // shift <= 32
#else
    return static_cast<uint32_t>((uint64_t{carry} << 32 | sum) >> shift);
#endif
  }

  // Quotient and remainder.
  KVQ_DIVMOD_FN void DivMod(uint32_t n, uint32_t* quotient,
                            uint32_t* remainder) const {
    const uint32_t q = Div(n);
    *quotient = q;
    *remainder = static_cast<uint32_t>(n - uint64_t{q} * divisor);
  }
};

}  // namespace kvq::cuda

#undef KVQ_DIVMOD_FN

#endif  // KVQ_KERNELS_CUDA_FAST_DIVMOD_H_
