// The seed paper's CPU baseline, written as a plain serial loop: FP32 K
// (tokens x dims, row-major), per-channel scales, then quantize, then
// dequantize, one thread. It uses kvq's arithmetic (quant_math.h) so its
// bytes equal the reference's; loops run row by row (cache-friendly) and the
// compiler may vectorize them, as it would any plain loop. The paper's own
// serial loop was much slower (its times are printed beside ours).

#ifndef KVQ_BENCH_KERNELS_SERIAL_BASELINE_H_
#define KVQ_BENCH_KERNELS_SERIAL_BASELINE_H_

#include <cstdint>

namespace kvq::bench {

// scales: float[dims]; q: int8[tokens * dims]; out: float[tokens * dims].
void SerialChannelScales(const float* k, uint32_t tokens, uint32_t dims,
                         float* scales);
void SerialQuantize(const float* k, uint32_t tokens, uint32_t dims,
                    const float* scales, int8_t* q);
void SerialDequantize(const int8_t* q, uint32_t tokens, uint32_t dims,
                      const float* scales, float* out);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_KERNELS_SERIAL_BASELINE_H_
