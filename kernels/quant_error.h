// The quality figure kvq samples: how far a block served back (y) is from the
// block that was put (x), as the relative L2 error ||x - y||_2 / ||x||_2.
//
// The error comes as its two sums of squares so that a device can compute
// them where the block is (kernels/cuda/quant_error_cuda.h) and the host
// only divides. Sums are in double. The CPU sums run on the worker pool in
// fixed ranges added in order, so a given input always gives the same sums.

#ifndef KVQ_KERNELS_QUANT_ERROR_H_
#define KVQ_KERNELS_QUANT_ERROR_H_

#include <cstddef>
#include <span>

#include "kernels/format.h"

namespace kvq {

struct ErrorSums {
  double diff = 0;  // sum of (x_i - y_i)^2
  double norm = 0;  // sum of x_i^2

  // sqrt(diff / norm); 0 when x is all zeros and y equals it, infinity when
  // x is all zeros and y is not.
  double RelativeL2() const;
};

// The sums over `n` values of `dtype` at x and y (host memory).
ErrorSums SumSquaredError(DType dtype, const void* x, const void* y, size_t n);

// SumSquaredError(...).RelativeL2() over two blocks of equal size in `dtype`.
double RelativeL2Error(DType dtype, std::span<const std::byte> x,
                       std::span<const std::byte> y);

}  // namespace kvq

#endif  // KVQ_KERNELS_QUANT_ERROR_H_
