// The quality figure kvq samples: how far a block served back is from the
// block that was put.

#ifndef KVQ_SERVER_SERVICE_QUANT_ERROR_H_
#define KVQ_SERVER_SERVICE_QUANT_ERROR_H_

#include <cstddef>
#include <span>

#include "kernels/format.h"

namespace kvq {

// ||x - y||_2 / ||x||_2 over two blocks of equal size in `dtype` (x: as put,
// y: as served back), computed in double; 0 when x is all zeros and y equals
// it, infinity when x is all zeros and y is not.
double RelativeL2Error(DType dtype, std::span<const std::byte> x,
                       std::span<const std::byte> y);

}  // namespace kvq

#endif  // KVQ_SERVER_SERVICE_QUANT_ERROR_H_
