// CUDA plumbing for kvq-bench-kernels: fatal error checks (a benchmark has no
// caller to hand an error to), owned device and pinned buffers, the GPU's
// identity, and a timer that reports the median of many CUDA-event-timed
// repetitions.
//
// Timing method (see bench/results/README.md): every repetition is bracketed
// by its own pair of events; all repetitions are enqueued behind a short
// spin kernel, so the host is ahead of the GPU and no launch gap of the host
// is counted; inputs rotate over enough buffer sets that a set is evicted
// from L2 before it is used again (when one set is smaller than the cache).

#ifndef KVQ_BENCH_KERNELS_DEVICE_UTIL_H_
#define KVQ_BENCH_KERNELS_DEVICE_UTIL_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kvq::bench {

// Exits with a message naming `what` if `err` is not success.
void CheckCuda(cudaError_t err, const char* what);
// Exits with a message naming `what` if `s` is not OK.
void CheckOk(const absl::Status& s, const char* what);

// A cudaMalloc allocation (moved, never copied).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(uint64_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  uint64_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  uint64_t bytes_ = 0;
};

struct GpuInfo {
  std::string name;
  std::string driver;        // e.g. "580.159.04 (CUDA 13.0)"
  std::string runtime;       // e.g. "13.0"
  int sms = 0;
  int compute_capability = 0;  // e.g. 90
  uint64_t l2_bytes = 0;
  uint64_t memory_bytes = 0;
};
GpuInfo QueryGpu();

// Times `op(slot)` (which enqueues work on `stream`) `repeats` times after
// `warmup` untimed runs; slot goes first_slot, first_slot + 1, ... modulo
// `slots`. Returns every repetition's time in milliseconds.
std::vector<double> TimeOp(const std::function<void(int slot)>& op, int slots,
                           int first_slot, int repeats, int warmup,
                           cudaStream_t stream);

double Median(std::vector<double> v);

// How many buffer sets of `set_bytes` to rotate through so that a set has
// left a cache of `l2_bytes` before its next use: 1 when a set is already
// much bigger than the cache, otherwise enough sets to span 4 caches (>= 2).
int RotationSlots(uint64_t set_bytes, uint64_t l2_bytes);

// Median time of a device-to-device cudaMemcpyAsync that moves `traffic`
// bytes counting read + write (so it copies traffic / 2 bytes), with the
// same rotation rule. Cached per size within a run.
double CopyMs(uint64_t traffic, const GpuInfo& gpu, int repeats,
              cudaStream_t stream);

// A streaming mix: every `read_words` 32-bit words read become `write_words`
// written (each 1, 2 or 4), the shape of a kernel's traffic: 2:1 is FP16 ->
// INT8 quantize, 1:2 its dequantize, 4:1 and 1:4 FP32's, 4:4 a copy; 0:4 is
// writing only.
struct TrafficMix {
  int read_words;
  int write_words;
};

// How a mix kernel writes its results.
enum class MixStores {
  kPlain,    // each thread stores its own, coalesced
  kTmaBulk,  // staged in shared memory, one TMA bulk store per tile
};

// Median time of the simplest kernel with that mix moving `traffic` bytes
// (read + written): each thread loads 8 items of read_words words (one
// vector access each) before it writes their write_words words, a
// persistent grid, the same rotation rule as CopyMs: the ceiling of a mix
// that is not the copy's. 0:4 (kPlain only) is a cudaMemsetAsync; kTmaBulk
// needs compute capability 9.0 or later. Cached per (mix, stores, size)
// within a run.
double MixMs(TrafficMix mix, MixStores stores, uint64_t traffic,
             const GpuInfo& gpu, int repeats, cudaStream_t stream);

// traffic bytes / ms -> GB/s (10^9 bytes per second).
inline double GBps(uint64_t traffic, double ms) {
  return ms > 0 ? static_cast<double>(traffic) / (ms * 1e6) : 0;
}

}  // namespace kvq::bench

#endif  // KVQ_BENCH_KERNELS_DEVICE_UTIL_H_
