// A stand-alone lab (not part of the build), run once on the lent H200:
// which access pattern lifts a write-heavy streaming kernel (dequantize's
// 2:4 and 1:4 read:write mixes) toward cudaMemcpy's bandwidth.
//   nvcc -O3 -std=c++20 -arch=sm_90 mix_lab.cu -o mix_lab && ./mix_lab
// Variants: where a CTA's items lie (interleaved over the grid as
// kvq-bench-kernels' MixKernel does, in contiguous tiles, or one contiguous
// range per CTA), the load's cache hints (plain, or non-coherent with an L2
// 256-byte prefetch), the store's (plain, streaming .cs, L2 evict-first),
// unroll depth and CTAs per SM.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                        \
  do {                                                                  \
    cudaError_t e = (x);                                                \
    if (e != cudaSuccess) {                                             \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e));      \
      std::exit(1);                                                     \
    }                                                                   \
  } while (0)

template <int kWords>
struct alignas(4 * kWords) Words {
  uint32_t w[kWords];
};

enum Layout { kInterleaved = 0, kTiles = 1, kRanges = 2 };
enum Load { kPlainLoad = 0, kPrefetch256 = 1 };
enum Store { kPlainStore = 0, kStreaming = 1, kEvictFirst = 2 };

template <int kIn, Load kLoad>
__device__ __forceinline__ Words<kIn> LoadWords(const Words<kIn>* p) {
  Words<kIn> x;
  if constexpr (kLoad == kPlainLoad) {
    x = *p;
  } else if constexpr (kIn == 4) {
    asm volatile(
        "ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(x.w[0]), "=r"(x.w[1]), "=r"(x.w[2]), "=r"(x.w[3])
        : "l"(p));
  } else if constexpr (kIn == 2) {
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0,%1}, [%2];"
                 : "=r"(x.w[0]), "=r"(x.w[1])
                 : "l"(p));
  } else {
    asm volatile("ld.global.nc.L1::no_allocate.L2::256B.u32 %0, [%1];"
                 : "=r"(x.w[0])
                 : "l"(p));
  }
  return x;
}

template <Store kStore>
__device__ __forceinline__ void StoreWords(Words<4>* p, const Words<4>& y,
                                           uint64_t policy) {
  if constexpr (kStore == kPlainStore) {
    *p = y;
  } else if constexpr (kStore == kStreaming) {
    asm volatile("st.global.cs.v4.u32 [%0], {%1,%2,%3,%4};" ::"l"(p),
                 "r"(y.w[0]), "r"(y.w[1]), "r"(y.w[2]), "r"(y.w[3])
                 : "memory");
  } else {
    asm volatile(
        "st.global.L2::cache_hint.v4.u32 [%0], {%1,%2,%3,%4}, %5;" ::"l"(p),
        "r"(y.w[0]), "r"(y.w[1]), "r"(y.w[2]), "r"(y.w[3]), "l"(policy)
        : "memory");
  }
}

template <int kIn>
__device__ __forceinline__ Words<4> Convert(const Words<kIn>& x) {
  Words<4> y;
#pragma unroll
  for (int k = 0; k < 4; ++k) y.w[k] = x.w[k % kIn] ^ (k * 0x9e3779b9u);
  return y;
}

constexpr int kThreads = 256;

// items: kIn words read and 4 written each. Every layout touches every item
// exactly once; `items` is a multiple of kThreads * kUnroll * gridDim.x.
template <int kIn, int kUnroll, Layout kLayout, Load kLoad, Store kStore>
__global__ void __launch_bounds__(kThreads)
    Mix(const Words<kIn>* __restrict__ src, Words<4>* __restrict__ dst,
        uint64_t items) {
  uint64_t policy = 0;
  if constexpr (kStore == kEvictFirst) {
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;"
                 : "=l"(policy));
  }
  constexpr uint64_t kTile = uint64_t{kThreads} * kUnroll;
  const uint64_t tiles = items / kTile;
  uint64_t first, last, step;  // tiles this CTA walks
  if constexpr (kLayout == kRanges) {
    const uint64_t per = tiles / gridDim.x;
    first = blockIdx.x * per;
    last = first + per;
    step = 1;
  } else {
    first = blockIdx.x;
    last = tiles;
    step = gridDim.x;
  }
  if constexpr (kLayout == kInterleaved) {
    // MixKernel's: item i + u * stride, stride = the whole grid's threads.
    const uint64_t stride = uint64_t{gridDim.x} * kThreads;
    for (uint64_t i = uint64_t{blockIdx.x} * kThreads + threadIdx.x;
         i + (kUnroll - 1) * stride < items; i += kUnroll * stride) {
      Words<kIn> x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) x[u] = LoadWords<kIn, kLoad>(src + i + u * stride);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) StoreWords<kStore>(dst + i + u * stride, Convert<kIn>(x[u]), policy);
    }
  } else {
    for (uint64_t t = first; t < last; t += step) {
      const uint64_t base = t * kTile + threadIdx.x;
      Words<kIn> x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) x[u] = LoadWords<kIn, kLoad>(src + base + u * kThreads);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) StoreWords<kStore>(dst + base + u * kThreads, Convert<kIn>(x[u]), policy);
    }
  }
}

struct Timer {
  cudaEvent_t a, b;
  Timer() { CHECK(cudaEventCreate(&a)); CHECK(cudaEventCreate(&b)); }
};

template <class F>
double MedianMs(F launch, int repeats = 25) {
  static Timer t;
  for (int i = 0; i < 3; ++i) launch();
  std::vector<float> ms;
  for (int i = 0; i < repeats; ++i) {
    CHECK(cudaEventRecord(t.a));
    launch();
    CHECK(cudaEventRecord(t.b));
    CHECK(cudaEventSynchronize(t.b));
    float m;
    CHECK(cudaEventElapsedTime(&m, t.a, t.b));
    ms.push_back(m);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

constexpr uint64_t kTraffic = uint64_t{3} << 30;
double g_copy_ms = 0;
void* g_src;
void* g_dst;
int g_sms;

template <int kIn, int kUnroll, Layout kLayout, Load kLoad, Store kStore>
void Run(const char* name, int ctas_per_sm) {
  auto kernel = &Mix<kIn, kUnroll, kLayout, kLoad, kStore>;
  int max_per_sm = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&max_per_sm, kernel,
                                                      kThreads, 0));
  const int per_sm = ctas_per_sm > 0 ? std::min(ctas_per_sm, max_per_sm)
                                     : max_per_sm;
  const uint64_t grid = static_cast<uint64_t>(g_sms) * per_sm;
  const uint64_t unit = grid * kThreads * kUnroll;
  const uint64_t items = kTraffic / (4 * (kIn + 4)) / unit * unit;
  const double ms = MedianMs([&] {
    kernel<<<grid, kThreads>>>(static_cast<const Words<kIn>*>(g_src),
                               static_cast<Words<4>*>(g_dst), items);
  });
  CHECK(cudaGetLastError());
  const double bytes = double(items) * 4 * (kIn + 4);
  const double copy_same = g_copy_ms * bytes / double(kTraffic);
  std::printf("%d:4 %-34s unroll %2d ctas/sm %d  %.3f ms  %6.0f GB/s  %5.1f%% of copy\n",
              kIn, name, kUnroll, per_sm, ms, bytes / ms / 1e6,
              100.0 * copy_same / ms);
}

template <int kIn>
void Sweep() {
  Run<kIn, 8, kInterleaved, kPlainLoad, kPlainStore>("interleaved (MixKernel)", 0);
  Run<kIn, 8, kTiles, kPlainLoad, kPlainStore>("tiles", 0);
  Run<kIn, 8, kRanges, kPlainLoad, kPlainStore>("ranges", 0);
  Run<kIn, 8, kInterleaved, kPrefetch256, kPlainStore>("interleaved, ld L2::256B", 0);
  Run<kIn, 8, kTiles, kPrefetch256, kPlainStore>("tiles, ld L2::256B", 0);
  Run<kIn, 8, kRanges, kPrefetch256, kPlainStore>("ranges, ld L2::256B", 0);
  Run<kIn, 8, kInterleaved, kPlainLoad, kStreaming>("interleaved, st.cs", 0);
  Run<kIn, 8, kTiles, kPlainLoad, kStreaming>("tiles, st.cs", 0);
  Run<kIn, 8, kInterleaved, kPlainLoad, kEvictFirst>("interleaved, st evict_first", 0);
  Run<kIn, 8, kTiles, kPrefetch256, kStreaming>("tiles, ld 256B, st.cs", 0);
  Run<kIn, 8, kRanges, kPrefetch256, kStreaming>("ranges, ld 256B, st.cs", 0);
  Run<kIn, 4, kInterleaved, kPlainLoad, kPlainStore>("interleaved", 0);
  Run<kIn, 16, kInterleaved, kPlainLoad, kPlainStore>("interleaved", 0);
  Run<kIn, 16, kTiles, kPrefetch256, kPlainStore>("tiles, ld L2::256B", 0);
  Run<kIn, 8, kInterleaved, kPlainLoad, kPlainStore>("interleaved", 2);
  Run<kIn, 8, kInterleaved, kPlainLoad, kPlainStore>("interleaved", 4);
  Run<kIn, 16, kInterleaved, kPlainLoad, kPlainStore>("interleaved", 2);
  Run<kIn, 16, kTiles, kPlainLoad, kPlainStore>("tiles", 4);
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs, L2 %d MiB\n", prop.name, g_sms, prop.l2CacheSize >> 20);
  CHECK(cudaMalloc(&g_src, kTraffic));
  CHECK(cudaMalloc(&g_dst, kTraffic));
  CHECK(cudaMemset(g_src, 0x3c, kTraffic));
  CHECK(cudaMemset(g_dst, 0, kTraffic));
  g_copy_ms = MedianMs([] {
    CHECK(cudaMemcpyAsync(g_dst, g_src, kTraffic / 2, cudaMemcpyDeviceToDevice));
  });
  std::printf("cudaMemcpy %llu MiB: %.3f ms = %.0f GB/s read + write\n",
              (unsigned long long)(kTraffic >> 21), g_copy_ms,
              kTraffic / g_copy_ms / 1e6);
  const double memset_ms = MedianMs([] {
    CHECK(cudaMemsetAsync(g_dst, 0x5a, kTraffic));
  });
  std::printf("cudaMemset %llu MiB: %.3f ms = %.0f GB/s written (%.1f%% of copy)\n",
              (unsigned long long)(kTraffic >> 20), memset_ms,
              kTraffic / memset_ms / 1e6, 100.0 * g_copy_ms / memset_ms);
  Sweep<4>();
  Sweep<2>();
  Sweep<1>();
  return 0;
}
