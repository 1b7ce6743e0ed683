// Write-path lab: how fast can a kernel that writes more than it reads go on
// this GPU, and do TMA bulk stores or streaming stores change it?
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                          \
  do {                                                                 \
    cudaError_t e = (x);                                               \
    if (e != cudaSuccess) {                                            \
      std::printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
      std::exit(1);                                                    \
    }                                                                  \
  } while (0)

template <int kW>
struct alignas(4 * kW) Words {
  uint32_t w[kW];
};

template <int kIn, int kOut>
__device__ __forceinline__ Words<kOut> Convert(const Words<kIn>& x) {
  Words<kOut> y;
#pragma unroll
  for (int k = 0; k < kOut; ++k) y.w[k] = x.w[k % kIn] ^ (k * 0x9e3779b9u);
  return y;
}

// kStore: 0 plain, 1 __stcs (streaming), 2 write-only (no loads).
template <int kIn, int kOut, int kStore>
__global__ void __launch_bounds__(256) Simple(const Words<kIn>* __restrict__ src,
                                              Words<kOut>* __restrict__ dst,
                                              uint64_t items) {
  constexpr int kUnroll = 8;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < items; i += kUnroll * stride) {
    Words<kIn> x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if constexpr (kStore == 2) {
        x[u].w[0] = static_cast<uint32_t>(i + u);
      } else {
        x[u] = src[i + u * stride];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      Words<kOut> y = Convert<kIn, kOut>(x[u]);
      if constexpr (kStore == 1 && kOut == 4) {
        __stcs(reinterpret_cast<uint4*>(dst + i + u * stride),
               *reinterpret_cast<uint4*>(&y));
      } else {
        dst[i + u * stride] = y;
      }
    }
  }
  for (; i < items; i += stride) {
    Words<kIn> x;
    if constexpr (kStore == 2) {
      x.w[0] = static_cast<uint32_t>(i);
    } else {
      x = src[i];
    }
    dst[i] = Convert<kIn, kOut>(x);
  }
}

// Contiguous chunks per CTA instead of a grid stride: CTA c takes items
// [c * tile, (c + 1) * tile) of each round.
template <int kIn, int kOut>
__global__ void __launch_bounds__(256) Chunked(const Words<kIn>* __restrict__ src,
                                               Words<kOut>* __restrict__ dst,
                                               uint64_t items) {
  constexpr int kUnroll = 8;
  constexpr uint64_t kTile = 256 * kUnroll;
  for (uint64_t t = blockIdx.x; t * kTile < items; t += gridDim.x) {
    const uint64_t base = t * kTile + threadIdx.x;
    if ((t + 1) * kTile <= items) {
      Words<kIn> x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) x[u] = src[base + u * 256];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) dst[base + u * 256] = Convert<kIn, kOut>(x[u]);
    }
  }
}

__device__ __forceinline__ void BulkStore(void* gdst, const void* ssrc,
                                          uint32_t bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(ssrc));
  asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;"
               ::"l"(gdst), "r"(s), "r"(bytes) : "memory");
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

// Outputs staged in shared memory and written by TMA bulk stores, kStages
// tiles in flight per CTA.
template <int kIn, int kOut, int kStages>
__global__ void __launch_bounds__(256) Tma(const Words<kIn>* __restrict__ src,
                                           Words<kOut>* __restrict__ dst,
                                           uint64_t items) {
  constexpr int kUnroll = 8;
  constexpr uint64_t kTile = 256 * kUnroll;  // items
  extern __shared__ __align__(128) unsigned char smem[];
  Words<kOut>* stage_buf = reinterpret_cast<Words<kOut>*>(smem);
  int stage = 0;
  for (uint64_t t = blockIdx.x; (t + 1) * kTile <= items; t += gridDim.x) {
    const uint64_t base = t * kTile;
    Words<kIn> x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) x[u] = src[base + u * 256 + threadIdx.x];
    // The stage's previous bulk store must have read its buffer.
    if (threadIdx.x == 0) {
      asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(kStages - 1)
                   : "memory");
    }
    __syncthreads();
    Words<kOut>* buf = stage_buf + stage * kTile;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) buf[u * 256 + threadIdx.x] = Convert<kIn, kOut>(x[u]);
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if (threadIdx.x == 0) {
      BulkStore(dst + base, buf, static_cast<uint32_t>(kTile * sizeof(Words<kOut>)));
    }
    stage = (stage + 1) % kStages;
  }
  if (threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

// Wide loads: each thread loads 16 bytes (4 / kIn items) per load, kLoads
// loads; outputs go through shared memory in global order, then either one
// TMA bulk store (kTmaOut) or coalesced 16-byte stores by all threads.
template <int kIn, int kOut, int kLoads, int kStages, bool kTmaOut>
__global__ void __launch_bounds__(256) WideTma(const Words<kIn>* __restrict__ src,
                                               Words<kOut>* __restrict__ dst,
                                               uint64_t items) {
  constexpr int kPer = 4 / kIn;  // items per 16-byte load
  constexpr uint64_t kTile = 256 * kLoads * kPer;  // items
  constexpr int kTileOutWords = kTile * kOut;
  extern __shared__ __align__(128) unsigned char smem[];
  uint32_t* stage_buf = reinterpret_cast<uint32_t*>(smem);
  const uint4* src4 = reinterpret_cast<const uint4*>(src);
  int stage = 0;
  for (uint64_t t = blockIdx.x; (t + 1) * kTile <= items; t += gridDim.x) {
    const uint64_t base = t * kTile;
    uint4 x[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) x[u] = src4[base / kPer + u * 256 + threadIdx.x];
    if (kTmaOut && threadIdx.x == 0) {
      asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(kStages - 1) : "memory");
    }
    __syncthreads();
    uint32_t* buf = stage_buf + stage * kTileOutWords;
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const uint32_t* xw = reinterpret_cast<const uint32_t*>(&x[u]);
#pragma unroll
      for (int p = 0; p < kPer; ++p) {
        Words<kIn> in;
#pragma unroll
        for (int k = 0; k < kIn; ++k) in.w[k] = xw[p * kIn + k];
        Words<kOut> y = Convert<kIn, kOut>(in);
        const uint64_t item = uint64_t(u * 256 + threadIdx.x) * kPer + p;
        *reinterpret_cast<Words<kOut>*>(buf + item * kOut) = y;
      }
    }
    if constexpr (kTmaOut) {
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      __syncthreads();
      if (threadIdx.x == 0) {
        BulkStore(dst + base, buf, kTileOutWords * 4);
      }
    } else {
      __syncthreads();
      const uint4* b4 = reinterpret_cast<const uint4*>(buf);
      uint4* d4 = reinterpret_cast<uint4*>(dst + base);
#pragma unroll
      for (int k = threadIdx.x; k < kTileOutWords / 4; k += 256) d4[k] = b4[k];
    }
    stage = (stage + 1) % kStages;
  }
  if (kTmaOut && threadIdx.x == 0) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

struct Result {
  const char* name;
  double ms;
  double traffic;
};

template <class Launch>
double TimeIt(Launch launch, int repeats = 20) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) launch();
  CK(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int r = 0; r < repeats; ++r) {
    CK(cudaEventRecord(a));
    launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int Grid(const void* kernel, int smem) {
  int per_sm = 0, sms = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 256, smem));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  return sms * std::max(per_sm, 1);
}

int main() {
  const uint64_t kTraffic = uint64_t{3} << 30;
  char *src, *dst;
  CK(cudaMalloc(&src, kTraffic));
  CK(cudaMalloc(&dst, kTraffic));
  CK(cudaMemset(src, 0x3c, kTraffic));
  CK(cudaMemset(dst, 0, kTraffic));
  std::vector<Result> results;
  auto report = [&](const char* name, double ms, double traffic) {
    results.push_back({name, ms, traffic});
    std::printf("%-44s %8.4f ms %7.0f GB/s\n", name, ms, traffic / ms / 1e6);
    std::fflush(stdout);
  };
  report("cudaMemcpy D2D (1.5 GiB)",
         TimeIt([&] { CK(cudaMemcpyAsync(dst, src, kTraffic / 2, cudaMemcpyDeviceToDevice)); }),
         kTraffic);
  report("cudaMemset (3 GiB written)",
         TimeIt([&] { CK(cudaMemsetAsync(dst, 1, kTraffic)); }), kTraffic);

  auto mix = [&](auto in_tag, auto out_tag, const char* label) {
    constexpr int kIn = decltype(in_tag)::value, kOut = decltype(out_tag)::value;
    const uint64_t items = kTraffic / (4 * (kIn + kOut)) / 2048 * 2048;
    const double traffic = double(items) * 4 * (kIn + kOut);
    auto* s = reinterpret_cast<const Words<kIn>*>(src);
    auto* d = reinterpret_cast<Words<kOut>*>(dst);
    char name[96];
    {
      auto k = &Simple<kIn, kOut, 0>;
      const int g = Grid((const void*)k, 0);
      std::snprintf(name, sizeof name, "%s simple", label);
      report(name, TimeIt([&] { k<<<g, 256>>>(s, d, items); }), traffic);
    }
    if constexpr (kOut == 4) {
      auto k = &Simple<kIn, kOut, 1>;
      const int g = Grid((const void*)k, 0);
      std::snprintf(name, sizeof name, "%s streaming stores (__stcs)", label);
      report(name, TimeIt([&] { k<<<g, 256>>>(s, d, items); }), traffic);
    }
    {
      auto k = &Chunked<kIn, kOut>;
      const int g = Grid((const void*)k, 0);
      std::snprintf(name, sizeof name, "%s chunked per CTA", label);
      report(name, TimeIt([&] { k<<<g, 256>>>(s, d, items); }), traffic);
    }
    auto tma = [&](auto stages_tag) {
      constexpr int kStages = decltype(stages_tag)::value;
      auto k = &Tma<kIn, kOut, kStages>;
      const int smem = kStages * 256 * 8 * 4 * kOut;
      CK(cudaFuncSetAttribute((const void*)k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      for (int per_sm_cap : {1, 2, 3, 4, 8}) {
        int per_sm = 0, sms = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, 256, smem));
        CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        if (per_sm_cap > per_sm) break;
        const int g = sms * per_sm_cap;
        std::snprintf(name, sizeof name, "%s TMA stores, %d stages, %d CTA/SM", label, kStages, per_sm_cap);
        report(name, TimeIt([&] { k<<<g, 256, smem>>>(s, d, items); }), traffic);
      }
    };
    tma(std::integral_constant<int, 2>{});
    tma(std::integral_constant<int, 3>{});
    if constexpr (kIn < 4) {
      auto wide = [&](auto loads_tag, auto stages_tag, auto tma_tag) {
        constexpr int kLoads = decltype(loads_tag)::value;
        constexpr int kStages = decltype(stages_tag)::value;
        constexpr bool kTmaOut = decltype(tma_tag)::value;
        auto k = &WideTma<kIn, kOut, kLoads, kStages, kTmaOut>;
        const int smem = kStages * 256 * kLoads * (4 / kIn) * 4 * kOut;
        CK(cudaFuncSetAttribute((const void*)k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        int per_sm = 0, sms = 0;
        CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, 256, smem));
        CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        const int g = sms * per_sm;
        std::snprintf(name, sizeof name, "%s 16B loads x%d, %s, %d stages, %d CTA/SM", label, kLoads,
                      kTmaOut ? "TMA stores" : "smem + st.global", kStages, per_sm);
        report(name, TimeIt([&] { k<<<g, 256, smem>>>(s, d, items); }), traffic);
      };
      using I1 = std::integral_constant<int, 1>;
      using I2 = std::integral_constant<int, 2>;
      using I4 = std::integral_constant<int, 4>;
      wide(I1{}, I2{}, std::true_type{});
      wide(I2{}, I2{}, std::true_type{});
      wide(I1{}, I1{}, std::false_type{});
      wide(I2{}, I1{}, std::false_type{});
      if constexpr (kIn == 2) wide(I4{}, I2{}, std::true_type{});
    }
  };
  using W1 = std::integral_constant<int, 1>;
  using W2 = std::integral_constant<int, 2>;
  using W4 = std::integral_constant<int, 4>;
  {
    auto k = &Simple<1, 4, 2>;
    const uint64_t items = kTraffic / 16 / 2048 * 2048;
    const int g = Grid((const void*)k, 0);
    report("write-only kernel, 16-byte stores",
           TimeIt([&] { k<<<g, 256>>>(nullptr, reinterpret_cast<Words<4>*>(dst), items); }),
           double(items) * 16);
  }
  mix(W4{}, W4{}, "4:4 copy");
  mix(W2{}, W4{}, "2:4");
  mix(W1{}, W4{}, "1:4");
  mix(W4{}, W2{}, "4:2");
  mix(W4{}, W1{}, "4:1");
  // Check the TMA path wrote what the plain one does.
  {
    const uint64_t items = 1 << 20;  // a multiple of every tile
    char* ref;
    CK(cudaMalloc(&ref, items * 16));
    Simple<1, 4, 0><<<264, 256>>>(reinterpret_cast<const Words<1>*>(src), reinterpret_cast<Words<4>*>(ref), items);
    CK(cudaFuncSetAttribute((const void*)&Tma<1, 4, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * 256 * 8 * 16));
    CK(cudaMemset(dst, 0, items * 16));
    Tma<1, 4, 2><<<264, 256, 2 * 256 * 8 * 16>>>(reinterpret_cast<const Words<1>*>(src), reinterpret_cast<Words<4>*>(dst), items);
    CK(cudaDeviceSynchronize());
    std::vector<char> a(items * 16), b(items * 16);
    CK(cudaMemcpy(a.data(), ref, a.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), dst, b.size(), cudaMemcpyDeviceToHost));
    std::printf("TMA output equals plain output: %s\n", a == b ? "yes" : "NO");
    auto kw = &WideTma<1, 4, 2, 2, true>;
    const int smem = 2 * 256 * 2 * 4 * 16;
    CK(cudaFuncSetAttribute((const void*)kw, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    CK(cudaMemset(dst, 0, items * 16));
    kw<<<264, 256, smem>>>(reinterpret_cast<const Words<1>*>(src), reinterpret_cast<Words<4>*>(dst), items);
    auto ks = &WideTma<1, 4, 2, 1, false>;
    CK(cudaFuncSetAttribute((const void*)ks, cudaFuncAttributeMaxDynamicSharedMemorySize, smem / 2));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(b.data(), dst, b.size(), cudaMemcpyDeviceToHost));
    std::printf("wide TMA output equals plain output: %s\n", a == b ? "yes" : "NO");
    CK(cudaMemset(dst, 0, items * 16));
    ks<<<264, 256, smem / 2>>>(reinterpret_cast<const Words<1>*>(src), reinterpret_cast<Words<4>*>(dst), items);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(b.data(), dst, b.size(), cudaMemcpyDeviceToHost));
    std::printf("wide smem output equals plain output: %s\n", a == b ? "yes" : "NO");
  }
  return 0;
}
