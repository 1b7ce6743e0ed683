// Lab (not part of the build): how fast can a put's bytes get from the
// heap buffers gRPC receives them in to the GPU on the H200 machine?
//
//   A. memcpy heap -> pinned (cudaHostAlloc), 1..8 threads
//   B. cudaHostRegister + cudaHostUnregister of heap memory
//   C. cudaMemcpyAsync H2D from pinned, from registered heap, from pageable
//   D. a kernel gathering 16 KiB pieces (with 9-byte gaps, like HTTP/2 DATA
//      frames) straight out of registered host memory into device memory
//
// nvcc -O2 -std=c++20 -arch=sm_90 host_path_lab.cu -o host_path_lab
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#define CHECK(x)                                                         \
  do {                                                                   \
    cudaError_t e = (x);                                                 \
    if (e != cudaSuccess) {                                              \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e));       \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A pool of spinning threads, so that a parallel copy pays no wake-up.
class Spinners {
 public:
  explicit Spinners(int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, i] {
        uint64_t seen = 0;
        for (;;) {
          uint64_t g;
          while ((g = gen_.load(std::memory_order_acquire)) == seen) {
          }
          seen = g;
          if (stop_) return;
          job_(i + 1);
          done_.fetch_add(1, std::memory_order_acq_rel);
        }
      });
    }
  }
  ~Spinners() {
    stop_ = true;
    gen_.fetch_add(1);
    for (auto& t : threads_) t.join();
  }
  // Runs job(0..n) with n = threads; job(0) on the caller.
  void Run(std::function<void(int)> job) {
    job_ = std::move(job);
    done_ = 0;
    gen_.fetch_add(1, std::memory_order_acq_rel);
    job_(0);
    while (done_.load(std::memory_order_acquire) != (int)threads_.size()) {
    }
  }

 private:
  std::vector<std::thread> threads_;
  std::function<void(int)> job_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> stop_{false};
};

__global__ void Gather(const char* const* src, const uint32_t* sizes,
                       const uint64_t* dst_at, int pieces, char* dst) {
  // One CTA per piece round-robin; 16-byte loads where aligned.
  for (int p = blockIdx.x; p < pieces; p += gridDim.x) {
    const char* s = src[p];
    char* d = dst + dst_at[p];
    const uint32_t n = sizes[p];
    // The gaps make sources 1-byte aligned; read 4 bytes at a time where the
    // source allows it, else bytes.
    if ((reinterpret_cast<uintptr_t>(s) & 15) == 0 &&
        (reinterpret_cast<uintptr_t>(d) & 15) == 0) {
      for (uint32_t i = threadIdx.x * 16; i + 16 <= n; i += blockDim.x * 16)
        *reinterpret_cast<int4*>(d + i) =
            *reinterpret_cast<const int4*>(s + i);
    } else {
      for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) d[i] = s[i];
    }
  }
}

int main() {
  CHECK(cudaSetDevice(0));
  int attr = 0;
  CHECK(cudaDeviceGetAttribute(
      &attr, cudaDevAttrCanUseHostPointerForRegisteredMem, 0));
  std::printf("canUseHostPointerForRegisteredMem %d\n", attr);
  CHECK(cudaDeviceGetAttribute(&attr, cudaDevAttrPageableMemoryAccess, 0));
  std::printf("pageableMemoryAccess %d\n", attr);
  CHECK(cudaDeviceGetAttribute(&attr, cudaDevAttrHostRegisterSupported, 0));
  std::printf("hostRegisterSupported %d\n", attr);
  std::printf("hardware threads %u\n", std::thread::hardware_concurrency());

  const size_t kMax = size_t{32} << 20;
  char* heap = static_cast<char*>(std::aligned_alloc(4096, kMax));
  std::memset(heap, 1, kMax);
  char* pinned = nullptr;
  CHECK(cudaHostAlloc(reinterpret_cast<void**>(&pinned), kMax,
                      cudaHostAllocPortable));
  std::memset(pinned, 2, kMax);
  char* dev = nullptr;
  CHECK(cudaMalloc(&dev, kMax));
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  const size_t sizes[] = {size_t{1} << 20, size_t{4} << 20, size_t{16} << 20};
  std::printf("\n# A. memcpy heap -> pinned, GB/s (median of 30)\n");
  for (int threads : {1, 2, 4, 8}) {
    Spinners pool(threads - 1);
    for (size_t n : sizes) {
      std::vector<double> t;
      for (int r = 0; r < 33; ++r) {
        auto a = Clock::now();
        pool.Run([&](int i) {
          const size_t per = n / threads;
          std::memcpy(pinned + i * per, heap + i * per, per);
        });
        if (r >= 3) t.push_back(Seconds(a));
      }
      std::printf("threads %d  %5zu KiB  %.1f GB/s\n", threads, n >> 10,
                  n / Median(t) / 1e9);
    }
  }
  std::printf("\n# A2. memcpy heap -> heap, GB/s\n");
  char* heap2 = static_cast<char*>(std::aligned_alloc(4096, kMax));
  std::memset(heap2, 3, kMax);
  for (int threads : {1, 4, 8}) {
    Spinners pool(threads - 1);
    for (size_t n : sizes) {
      std::vector<double> t;
      for (int r = 0; r < 33; ++r) {
        auto a = Clock::now();
        pool.Run([&](int i) {
          const size_t per = n / threads;
          std::memcpy(heap2 + i * per, heap + i * per, per);
        });
        if (r >= 3) t.push_back(Seconds(a));
      }
      std::printf("threads %d  %5zu KiB  %.1f GB/s\n", threads, n >> 10,
                  n / Median(t) / 1e9);
    }
  }

  std::printf("\n# B. cudaHostRegister / Unregister of heap memory, us\n");
  for (size_t n : {size_t{64} << 10, size_t{1} << 20, size_t{4} << 20,
                   size_t{16} << 20}) {
    std::vector<double> reg, unreg;
    for (int r = 0; r < 23; ++r) {
      auto a = Clock::now();
      CHECK(cudaHostRegister(heap, n, cudaHostRegisterDefault));
      const double ra = Seconds(a);
      a = Clock::now();
      CHECK(cudaHostUnregister(heap));
      const double ua = Seconds(a);
      if (r >= 3) {
        reg.push_back(ra);
        unreg.push_back(ua);
      }
    }
    std::printf("%6zu KiB  register %.1f us  unregister %.1f us\n", n >> 10,
                Median(reg) * 1e6, Median(unreg) * 1e6);
  }

  auto time_h2d = [&](const char* what, const char* src, size_t n) {
    std::vector<double> t;
    for (int r = 0; r < 23; ++r) {
      auto a = Clock::now();
      CHECK(cudaMemcpyAsync(dev, src, n, cudaMemcpyHostToDevice, s));
      CHECK(cudaStreamSynchronize(s));
      if (r >= 3) t.push_back(Seconds(a));
    }
    std::printf("%-22s %5zu KiB  %.3f ms  %.1f GB/s\n", what, n >> 10,
                Median(t) * 1e3, n / Median(t) / 1e9);
  };
  std::printf("\n# C. H2D cudaMemcpyAsync + sync\n");
  for (size_t n : sizes) time_h2d("pinned", pinned, n);
  for (size_t n : sizes) time_h2d("pageable heap", heap, n);
  CHECK(cudaHostRegister(heap, kMax, cudaHostRegisterDefault));
  for (size_t n : sizes) time_h2d("registered heap", heap, n);

  std::printf("\n# D. gather kernel from registered host memory\n");
  // Pieces of 16 KiB separated by 9-byte gaps, as HTTP/2 frames lie in a
  // TCP read buffer; the gaps leave most sources unaligned, so also a run
  // with 16-byte-aligned pieces (gap 16).
  for (int gap : {9, 16}) {
    for (size_t n : sizes) {
      const uint32_t piece = 16384;
      const int pieces = static_cast<int>(n / piece);
      std::vector<const char*> src(pieces);
      std::vector<uint32_t> len(pieces, piece);
      std::vector<uint64_t> at(pieces);
      for (int p = 0; p < pieces; ++p) {
        src[p] = heap + size_t(p) * (piece + gap);
        at[p] = size_t(p) * piece;
      }
      const char** d_src;
      uint32_t* d_len;
      uint64_t* d_at;
      CHECK(cudaMalloc(&d_src, pieces * sizeof(char*)));
      CHECK(cudaMalloc(&d_len, pieces * sizeof(uint32_t)));
      CHECK(cudaMalloc(&d_at, pieces * sizeof(uint64_t)));
      CHECK(cudaMemcpy(d_src, src.data(), pieces * sizeof(char*),
                       cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(d_len, len.data(), pieces * sizeof(uint32_t),
                       cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(d_at, at.data(), pieces * sizeof(uint64_t),
                       cudaMemcpyHostToDevice));
      for (int grid : {66, 132, 264}) {
        std::vector<double> t;
        for (int r = 0; r < 23; ++r) {
          auto a = Clock::now();
          Gather<<<grid, 512, 0, s>>>(d_src, d_len, d_at, pieces, dev);
          CHECK(cudaStreamSynchronize(s));
          if (r >= 3) t.push_back(Seconds(a));
        }
        CHECK(cudaGetLastError());
        std::printf("gap %2d grid %3d %5zu KiB  %.3f ms  %.1f GB/s\n", gap,
                    grid, n >> 10, Median(t) * 1e3, n / Median(t) / 1e9);
      }
      cudaFree(d_src);
      cudaFree(d_len);
      cudaFree(d_at);
    }
  }
  CHECK(cudaHostUnregister(heap));
  return 0;
}
