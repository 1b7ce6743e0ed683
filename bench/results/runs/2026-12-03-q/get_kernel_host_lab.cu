// A stand-alone lab (not part of the build), run once on the lent H200: why
// does the server's get kernel take 0.04 ms to write a 1 MiB block into
// page-locked host memory, where the sixteenth session's lab kernel wrote
// 1 MiB there in 0.025 ms? Call 1 of this session ruled out the page ids
// (read from a device slot instead of host memory: no change). Here the
// real kernels (kvq's DequantizeFromPages and the contiguous Dequantize),
// linked from the build, against a plain copy kernel, 256 KiB .. 4 MiB,
// FP16 and FP32, into device memory and into host memory; for each, the
// host's time from the call to the end of cudaStreamSynchronize (what the
// server waits), the host's time in the launching call alone, and the
// kernel's event time, medians of kRepeats. If the time is a + b * size with
// a large a, it is a fixed cost (launch, first-touch latency), not
// bandwidth.
//
// Built here against the build tree (see call2's script for the line):
//   nvcc -O3 -std=c++20 -arch=sm_90 -I. get_kernel_host_lab.cu
//     build/kernels/cuda/libkvq_kernels_cuda.a build/kernels/libkvq_kernels.a
//     -labsl_status -labsl_strings ... -o get_kernel_host_lab
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/paged_kernels.h"
#include "kernels/cuda/quantize_cuda.h"
#include "kernels/format.h"

#define CHECK(x)                                                   \
  do {                                                             \
    cudaError_t e = (x);                                           \
    if (e != cudaSuccess) {                                        \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e)); \
      std::exit(1);                                                \
    }                                                              \
  } while (0)
#define CHECK_OK(x)                                                        \
  do {                                                                     \
    absl::Status st_ = (x);                                                \
    if (!st_.ok()) {                                                       \
      std::fprintf(stderr, "%s: %s\n", #x, std::string(st_.message()).c_str()); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRepeats = 200;
constexpr uint64_t kPageBytes = 64 << 10;

// 16-byte words from int8 input: one byte in per four out, as FP32
// dequantize; the sixteenth session's lab pattern (grid stride).
__global__ void CopyWords(const uint32_t* __restrict__ in,
                          uint4* __restrict__ out, uint64_t words) {
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
       i < words; i += uint64_t{gridDim.x} * blockDim.x) {
    const uint32_t w = in[i];
    out[i] = make_uint4(w * 3u, w ^ 5u, w + 7u, w);
  }
}

struct Timing {
  double host_us;    // call to synchronize's return
  double launch_us;  // in the launching call
  double kernel_us;  // event to event
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
Timing Time(cudaStream_t s, F launch) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<double> host, in_call, kernel;
  for (int r = 0; r < kRepeats + 10; ++r) {
    const Clock::time_point t0 = Clock::now();
    CHECK(cudaEventRecord(a, s));
    launch();
    const Clock::time_point t1 = Clock::now();
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaStreamSynchronize(s));
    const Clock::time_point t2 = Clock::now();
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    if (r < 10) continue;  // warm-up
    host.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
    in_call.push_back(
        std::chrono::duration<double, std::micro>(t1 - t0).count());
    kernel.push_back(ms * 1e3);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return {Median(host), Median(in_call), Median(kernel)};
}

void Report(uint64_t bytes, const char* what, const Timing& t) {
  std::printf("%5llu KiB  %-44s host %6.1f us  call %5.1f us  kernel %6.1f us"
              "  %5.1f GB/s\n",
              static_cast<unsigned long long>(bytes >> 10), what, t.host_us,
              t.launch_us, t.kernel_us, bytes / t.kernel_us / 1e3);
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs\n", prop.name, prop.multiProcessorCount);
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const uint64_t arena_pages = 1024;
  uint8_t* arena = nullptr;
  CHECK(cudaMalloc(&arena, arena_pages * kPageBytes));
  std::mt19937_64 rng(std::random_device{}());

  for (const kvq::DType dtype : {kvq::DType::kFp16, kvq::DType::kFp32}) {
    const char* name = dtype == kvq::DType::kFp16 ? "fp16" : "fp32";
    const uint64_t value_bytes = dtype == kvq::DType::kFp16 ? 2 : 4;
    for (const uint64_t bytes : {uint64_t{256} << 10, uint64_t{1} << 20,
                                 uint64_t{4} << 20}) {
      // The service benchmark's shape: 2 planes x T tokens x 8 heads x 128.
      const uint32_t tokens =
          static_cast<uint32_t>(bytes / (2 * 8 * 128 * value_bytes));
      absl::StatusOr<kvq::BlockLayout> layout =
          kvq::MakeLayout(kvq::BlockShape{2, tokens, 8, 128}, kvq::QuantSpec{});
      CHECK_OK(layout.status());
      // Random values in [-1, 1], quantized on the GPU into scattered pages.
      std::vector<float> values(layout->elements);
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (float& v : values) v = u(rng);
      std::vector<uint8_t> host_block(bytes);
      if (dtype == kvq::DType::kFp32) {
        std::memcpy(host_block.data(), values.data(), bytes);
      } else {
        for (size_t i = 0; i < values.size(); ++i) {
          const __half h = __float2half_rn(values[i]);
          std::memcpy(&host_block[2 * i], &h, 2);
        }
      }
      const uint64_t pages_needed =
          (layout->payload_bytes + kPageBytes - 1) / kPageBytes;
      std::vector<uint32_t> ids(arena_pages);
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);
      ids.resize(pages_needed);
      uint32_t* device_ids = nullptr;
      void* device_block = nullptr;
      uint8_t* payload = nullptr;
      void* host_out = nullptr;
      CHECK(cudaMalloc(&device_ids, ids.size() * 4));
      CHECK(cudaMalloc(&device_block, bytes));
      CHECK(cudaMalloc(&payload, layout->payload_bytes));
      CHECK(cudaHostAlloc(&host_out, bytes, cudaHostAllocPortable));
      CHECK(cudaMemcpy(device_ids, ids.data(), ids.size() * 4,
                       cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(device_block, host_block.data(), bytes,
                       cudaMemcpyHostToDevice));
      const kvq::cuda::DevicePages pages{arena, device_ids, kPageBytes};
      CHECK_OK(kvq::cuda::QuantizeToPages(*layout, dtype, device_block, pages,
                                          nullptr, nullptr, s));
      CHECK_OK(kvq::cuda::Quantize(*layout, dtype, device_block, payload,
                                   nullptr, nullptr, s));
      CHECK(cudaStreamSynchronize(s));

      char what[96];
      std::snprintf(what, sizeof what, "%s paged dequantize -> device", name);
      Report(bytes, what, Time(s, [&] {
               CHECK_OK(kvq::cuda::DequantizeFromPages(*layout, pages, dtype,
                                                       device_block, s));
             }));
      std::snprintf(what, sizeof what, "%s paged dequantize -> host", name);
      Report(bytes, what, Time(s, [&] {
               CHECK_OK(kvq::cuda::DequantizeFromPages(*layout, pages, dtype,
                                                       host_out, s));
             }));
      std::snprintf(what, sizeof what, "%s contiguous dequantize -> host",
                    name);
      Report(bytes, what, Time(s, [&] {
               CHECK_OK(kvq::cuda::Dequantize(*layout, payload, dtype,
                                              host_out, s));
             }));
      std::snprintf(what, sizeof what, "%s paged -> device, then DMA", name);
      Report(bytes, what, Time(s, [&] {
               CHECK_OK(kvq::cuda::DequantizeFromPages(*layout, pages, dtype,
                                                       device_block, s));
               CHECK(cudaMemcpyAsync(host_out, device_block, bytes,
                                     cudaMemcpyDeviceToHost, s));
             }));
      for (const int ctas : {16, 132}) {
        std::snprintf(what, sizeof what, "copy kernel -> host, %d x 256 thr",
                      ctas);
        Report(bytes, what, Time(s, [&] {
                 CopyWords<<<ctas, 256, 0, s>>>(
                     reinterpret_cast<const uint32_t*>(payload),
                     static_cast<uint4*>(host_out), bytes / 16);
                 CHECK(cudaGetLastError());
               }));
      }
      // Does the data check out? The host copy equals the device one.
      CHECK_OK(kvq::cuda::DequantizeFromPages(*layout, pages, dtype, host_out,
                                              s));
      CHECK_OK(kvq::cuda::DequantizeFromPages(*layout, pages, dtype,
                                              device_block, s));
      CHECK(cudaMemcpyAsync(host_block.data(), device_block, bytes,
                            cudaMemcpyDeviceToHost, s));
      CHECK(cudaStreamSynchronize(s));
      if (std::memcmp(host_block.data(), host_out, bytes) != 0) {
        std::printf("  MISMATCH between host and device results\n");
      }
      CHECK(cudaFree(device_ids));
      CHECK(cudaFree(device_block));
      CHECK(cudaFree(payload));
      CHECK(cudaFreeHost(host_out));
    }
  }
  return 0;
}
