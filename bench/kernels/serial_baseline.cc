#include "bench/kernels/serial_baseline.h"

#include <cmath>
#include <vector>

#include "kernels/quant_math.h"

namespace kvq::bench {

void SerialChannelScales(const float* k, uint32_t tokens, uint32_t dims,
                         float* scales) {
  std::vector<float> absmax(dims, 0.0f);
  for (uint32_t t = 0; t < tokens; ++t) {
    const float* row = k + uint64_t{t} * dims;
    for (uint32_t d = 0; d < dims; ++d) {
      const float a = std::fabs(row[d]);
      if (a > absmax[d]) absmax[d] = a;
    }
  }
  for (uint32_t d = 0; d < dims; ++d) scales[d] = ScaleFromAbsmax(absmax[d]);
}

void SerialQuantize(const float* k, uint32_t tokens, uint32_t dims,
                    const float* scales, int8_t* q) {
  std::vector<float> inv(dims);
  for (uint32_t d = 0; d < dims; ++d) inv[d] = InverseScale(scales[d]);
  for (uint32_t t = 0; t < tokens; ++t) {
    const uint64_t row = uint64_t{t} * dims;
    for (uint32_t d = 0; d < dims; ++d) {
      q[row + d] = QuantizeValue(k[row + d], scales[d], inv[d]);
    }
  }
}

void SerialDequantize(const int8_t* q, uint32_t tokens, uint32_t dims,
                      const float* scales, float* out) {
  for (uint32_t t = 0; t < tokens; ++t) {
    const uint64_t row = uint64_t{t} * dims;
    for (uint32_t d = 0; d < dims; ++d) {
      out[row + d] = DequantizeValue(q[row + d], scales[d]);
    }
  }
}

}  // namespace kvq::bench
