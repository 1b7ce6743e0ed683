// A stand-alone lab (not part of the build), run once on the lent H200: how
// fast can a kernel write a block into page-locked host memory over PCIe,
// by how many CTAs and in what pattern? A one-key 1 MiB get's fetch is on
// its critical path (0.073-0.076 ms of a 0.65 ms round trip), the
// dequantize kernel writing the block over PCIe 0.044-0.048 ms of it, 16
// CTAs of 256 threads each writing a contiguous 64 KiB (the fourteenth
// session: 256 CTAs were 2-4x slower, ~22 GB/s where the DMA engine moved
// a block at ~32). Each case: the host's time from the launch to the end
// of cudaStreamSynchronize (what the server waits), median of kRepeats,
// and the kernel's event time.
//   nvcc -O3 -std=c++20 -arch=sm_90 host_write_lab.cu -o host_write_lab
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                   \
  do {                                                             \
    cudaError_t e = (x);                                           \
    if (e != cudaSuccess) {                                        \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e)); \
      std::exit(1);                                                \
    }                                                              \
  } while (0)

namespace {

constexpr int kRepeats = 200;

// Each CTA writes its own contiguous range of `bytes / gridDim.x` (a
// multiple of 16 * blockDim.x), kUnroll 16-byte stores in flight a thread,
// from int8 input read in device memory (as dequantize: 1 byte in per 4 out).
template <int kUnroll>
__global__ void ContiguousPerCta(const uint32_t* __restrict__ in,
                                 uint4* __restrict__ out, uint64_t bytes) {
  const uint64_t per_cta = bytes / 16 / gridDim.x;
  const uint64_t begin = per_cta * blockIdx.x;
  for (uint64_t i = threadIdx.x; i < per_cta;
       i += uint64_t{blockDim.x} * kUnroll) {
    uint32_t w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t k = i + static_cast<uint64_t>(u) * blockDim.x;
      w[u] = k < per_cta ? in[begin + k] : 0;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const uint64_t k = i + static_cast<uint64_t>(u) * blockDim.x;
      if (k < per_cta) {
        out[begin + k] = make_uint4(w[u] * 3u, w[u] ^ 5u, w[u] + 7u, w[u]);
      }
    }
  }
}

// The grid strides over 16-byte words: at any moment the grid writes one
// window of the block, in order.
__global__ void GridStride(const uint32_t* __restrict__ in,
                           uint4* __restrict__ out, uint64_t bytes) {
  const uint64_t words = bytes / 16;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
       i < words; i += uint64_t{gridDim.x} * blockDim.x) {
    const uint32_t w = in[i];
    out[i] = make_uint4(w * 3u, w ^ 5u, w + 7u, w);
  }
}

struct Timing {
  double host_us;    // median, launch to synchronize's return
  double kernel_us;  // median, event to event
};

template <class F>
Timing Measure(cudaStream_t s, F enqueue) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<double> host, kernel;
  for (int r = 0; r < kRepeats + 10; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(cudaEventRecord(a, s));
    enqueue();
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaStreamSynchronize(s));
    const auto t1 = std::chrono::steady_clock::now();
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    if (r >= 10) {
      host.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      kernel.push_back(ms * 1e3);
    }
  }
  std::sort(host.begin(), host.end());
  std::sort(kernel.begin(), kernel.end());
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return {host[host.size() / 2], kernel[kernel.size() / 2]};
}

void Report(const char* what, uint64_t bytes, Timing t) {
  std::printf("%5llu KiB  %-44s host %7.1f us  kernel %7.1f us  %5.1f GB/s\n",
              (unsigned long long)(bytes >> 10), what, t.host_us, t.kernel_us,
              bytes / t.kernel_us / 1e3);
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs; PCIe gen/width as the driver reports: see nvidia-smi\n",
              prop.name, prop.multiProcessorCount);
  constexpr uint64_t kMax = uint64_t{4} << 20;
  uint32_t* in;
  uint4* dev_out;
  CHECK(cudaMalloc(&in, kMax / 4));
  CHECK(cudaMalloc(&dev_out, kMax));
  CHECK(cudaMemset(in, 0x3c, kMax / 4));
  void* host = nullptr;
  CHECK(cudaHostAlloc(&host, kMax, cudaHostAllocMapped));
  uint4* host_out = nullptr;
  CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&host_out), host, 0));
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  for (uint64_t bytes : {uint64_t{256} << 10, uint64_t{1} << 20,
                         uint64_t{4} << 20}) {
    Report("cudaMemcpyAsync device -> host", bytes, Measure(s, [&] {
             CHECK(cudaMemcpyAsync(host, dev_out, bytes,
                                   cudaMemcpyDeviceToHost, s));
           }));
    Report("kernel to device, then cudaMemcpyAsync", bytes, Measure(s, [&] {
             ContiguousPerCta<8><<<16, 256, 0, s>>>(in, dev_out, bytes);
             CHECK(cudaMemcpyAsync(host, dev_out, bytes,
                                   cudaMemcpyDeviceToHost, s));
           }));
    for (int ctas : {2, 4, 8, 16, 32, 64}) {
      for (int threads : {128, 256, 512}) {
        if (bytes / 16 % (uint64_t(ctas) * threads) != 0) continue;
        char what[64];
        std::snprintf(what, sizeof what, "contiguous per CTA, %3d x %3d thr",
                      ctas, threads);
        Report(what, bytes, Measure(s, [&] {
                 ContiguousPerCta<8><<<ctas, threads, 0, s>>>(in, host_out,
                                                              bytes);
               }));
      }
    }
    for (int ctas : {4, 8, 16, 32, 132}) {
      char what[64];
      std::snprintf(what, sizeof what, "grid stride, %3d x 256 thr", ctas);
      Report(what, bytes, Measure(s, [&] {
               GridStride<<<ctas, 256, 0, s>>>(in, host_out, bytes);
             }));
    }
  }
  CHECK(cudaGetLastError());
  return 0;
}
