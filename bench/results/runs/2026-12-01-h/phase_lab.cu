// A stand-alone lab (not part of the build), run once on the lent H200:
// does separating a write-heavy streaming kernel's reads from its writes in
// time lift dequantize's 1:4 and 1:2 read:write mixes toward the copy?
//   nvcc -O3 -std=c++20 -arch=sm_90 phase_lab.cu -o phase_lab && ./phase_lab
// (./phase_lab 2: the second call's sweep, around the first one's best)
//
// The interleaved kernels (MixKernel's shape) keep 132 SMs' reads and
// writes mixed in every microsecond, and DRAM pays a read/write turnaround
// for the mix: cudaMemset writes at ~109% of the copy, yet 1 byte read per
// 4 written runs at 84-86%. Here a persistent grid (every CTA resident)
// works in rounds: each CTA bulk-loads a slab of input into shared memory
// (cp.async.bulk on an mbarrier), then converts it and writes its 2x / 4x
// output from there. Optionally the whole grid meets at a barrier between
// the read and write phases and / or after the writes, so that the GPU as
// a whole reads, then writes. The L2 (write-back) may blur the phases
// (dirty lines leave when later reads allocate), which is what this
// measures.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

namespace cg = cooperative_groups;

#define CHECK(x)                                                   \
  do {                                                             \
    cudaError_t e = (x);                                           \
    if (e != cudaSuccess) {                                        \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e)); \
      std::exit(1);                                                \
    }                                                              \
  } while (0)

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ bool MbarTryWait(uint64_t* bar, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;"
      " selp.u32 %0, 1, 0, p; }"
      : "=r"(done)
      : "r"(SmemAddr(bar)), "r"(parity)
      : "memory");
  return done != 0;
}

// The 16 / kRatio input bytes that make 16 output bytes.
template <int kRatio>
using InWord = std::conditional_t<kRatio == 4, uint32_t, uint2>;

// 16 output bytes from 16 / kRatio input bytes.
template <int kRatio>
__device__ __forceinline__ uint4 Convert(InWord<kRatio> w, float scale) {
  uint4 out;
  if constexpr (kRatio == 4) {  // int8 -> float
    float f[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      f[k] = static_cast<float>(static_cast<int8_t>(w >> (8 * k))) * scale;
    }
    out = make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]),
                     __float_as_uint(f[2]), __float_as_uint(f[3]));
  } else {  // int8 -> half
    uint32_t h[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t word = k < 2 ? w.x : w.y;
      const int s = 16 * (k % 2);
      const __half2 v = __floats2half2_rn(
          static_cast<float>(static_cast<int8_t>(word >> s)) * scale,
          static_cast<float>(static_cast<int8_t>(word >> (s + 8))) * scale);
      h[k] = *reinterpret_cast<const uint32_t*>(&v);
    }
    out = make_uint4(h[0], h[1], h[2], h[3]);
  }
  return out;
}

enum Sync { kNone = 0, kAfterWrite = 1, kBoth = 2 };

constexpr uint32_t kPiece = 16384;  // bytes per cp.async.bulk

// in_bytes is a multiple of gridDim.x * slab.
template <int kRatio, Sync kSync, int kThreads = 512, int kSyncEvery = 1>
__global__ void __launch_bounds__(kThreads)
    Phased(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst,
           uint64_t in_bytes, uint32_t slab) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t bar;
  cg::grid_group grid = cg::this_grid();
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(SmemAddr(&bar)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  const uint64_t rounds = in_bytes / (uint64_t{gridDim.x} * slab);
  for (uint64_t r = 0; r < rounds; ++r) {
    const uint64_t item = r * gridDim.x + blockIdx.x;
    const uint8_t* in = src + item * slab;
    if (threadIdx.x == 0) {
      asm volatile(
          "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(
              SmemAddr(&bar)),
          "r"(slab)
          : "memory");
      for (uint32_t off = 0; off < slab; off += kPiece) {
        asm volatile(
            "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
            " [%0], [%1], %2, [%3];" ::"r"(SmemAddr(smem + off)),
            "l"(in + off), "r"(min(kPiece, slab - off)), "r"(SmemAddr(&bar))
            : "memory");
      }
    }
    while (!MbarTryWait(&bar, static_cast<uint32_t>(r & 1))) {
    }
    if constexpr (kSync == kBoth) grid.sync();
    uint4* out = reinterpret_cast<uint4*>(dst + item * slab * kRatio);
    const uint32_t pieces = slab * kRatio / 16;
    constexpr int kUnroll = 4;
    uint32_t p = threadIdx.x;
    for (; p + (kUnroll - 1) * kThreads < pieces; p += kUnroll * kThreads) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const uint32_t q = p + u * kThreads;
        out[q] = Convert<kRatio>(
            reinterpret_cast<const InWord<kRatio>*>(smem)[q], 0.01f);
      }
    }
    for (; p < pieces; p += kThreads) {
      out[p] = Convert<kRatio>(
          reinterpret_cast<const InWord<kRatio>*>(smem)[p], 0.01f);
    }
    // Shared memory is refilled next round; the async proxy writes it.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if constexpr (kSync != kNone) {
      if ((r + 1) % kSyncEvery == 0) grid.sync();
    }
  }
}

// The interleaved reference: MixKernel's shape (loads of 16 / kRatio bytes,
// 8 in flight per thread, grid-strided), full occupancy or `per_sm` CTAs.
template <int kRatio>
__global__ void __launch_bounds__(256)
    Interleaved(const uint8_t* __restrict__ src, uint8_t* __restrict__ dst,
                uint64_t pieces) {
  constexpr int kUnroll = 8;
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  uint4* out = reinterpret_cast<uint4*>(dst);
  for (; i + (kUnroll - 1) * stride < pieces; i += kUnroll * stride) {
    InWord<kRatio> x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      x[u] = reinterpret_cast<const InWord<kRatio>*>(src)[i + u * stride];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      out[i + u * stride] = Convert<kRatio>(x[u], 0.01f);
    }
  }
  for (; i < pieces; i += stride) {
    out[i] = Convert<kRatio>(
        reinterpret_cast<const InWord<kRatio>*>(src)[i], 0.01f);
  }
}

// Reads only: the other end of the mix.
__global__ void __launch_bounds__(256)
    ReadOnly(const uint4* __restrict__ src, uint64_t pieces, uint32_t* sink) {
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  uint32_t acc = 0;
  uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  for (; i + 7 * stride < pieces; i += 8 * stride) {
    uint4 x[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) x[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < 8; ++u) acc ^= x[u].x ^ x[u].y ^ x[u].z ^ x[u].w;
  }
  if (acc == 0x12345678u) *sink = acc;
}

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
  }
};

template <class F>
double MedianMs(F launch, int repeats = 25) {
  static Timer t;
  for (int i = 0; i < 3; ++i) launch();
  CHECK(cudaDeviceSynchronize());
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
uint8_t* g_src;
uint8_t* g_dst;
uint8_t* g_check;
int g_sms;

void Report(const char* what, double bytes, double ms) {
  const double copy_same = g_copy_ms * bytes / double(kTraffic);
  std::printf("%-52s %8.3f ms %6.0f GB/s %6.1f%% of copy\n", what, ms,
              bytes / ms / 1e6, 100.0 * copy_same / ms);
}

// Every output byte equal between the interleaved kernel and a phased one
// (both convert the same input the same way).
void CheckEqual(uint64_t out_bytes, const char* what) {
  std::vector<uint8_t> a(1 << 20), b(1 << 20);
  for (uint64_t off : {uint64_t{0}, out_bytes / 2, out_bytes - (1 << 20)}) {
    CHECK(cudaMemcpy(a.data(), g_dst + off, a.size(), cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(b.data(), g_check + off, b.size(), cudaMemcpyDeviceToHost));
    if (a != b) {
      std::printf("MISMATCH %s at %llu\n", what, (unsigned long long)off);
      std::exit(1);
    }
  }
}

template <int kRatio>
void RunInterleaved(int per_sm_cap, uint64_t in_bytes) {
  int per_sm = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, Interleaved<kRatio>, 256, 0));
  if (per_sm_cap > 0) per_sm = std::min(per_sm, per_sm_cap);
  const uint64_t pieces = in_bytes * kRatio / 16;
  const unsigned grid = g_sms * per_sm;
  const double ms = MedianMs([&] {
    Interleaved<kRatio><<<grid, 256>>>(g_src, g_check, pieces);
  });
  CHECK(cudaGetLastError());
  char what[96];
  std::snprintf(what, sizeof what, "1:%d interleaved, %d CTAs/SM", kRatio,
                per_sm);
  Report(what, double(in_bytes) * (1 + kRatio), ms);
}

template <int kRatio, Sync kSync, int kThreads = 512, int kSyncEvery = 1>
void RunPhased(uint32_t slab_kib, int per_sm_want, uint64_t in_bytes_max) {
  auto kernel = &Phased<kRatio, kSync, kThreads, kSyncEvery>;
  uint32_t slab = slab_kib * 1024;
  CHECK(cudaFuncSetAttribute(kernel,
                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(slab)));
  int per_sm = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel,
                                                      kThreads, slab));
  if (per_sm < per_sm_want) {
    std::printf("1:%d phased slab %u KiB x%d: does not fit (%d)\n", kRatio,
                slab_kib, per_sm_want, per_sm);
    return;
  }
  const unsigned grid = g_sms * per_sm_want;
  const uint64_t round = uint64_t{grid} * slab;
  const uint64_t in_bytes = in_bytes_max / round * round;
  const uint8_t* src = g_src;
  uint8_t* dst = g_dst;
  uint64_t n = in_bytes;
  void* args[] = {&src, &dst, &n, &slab};
  const double ms = MedianMs([&] {
    CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel), grid,
                                      kThreads, args, slab, nullptr));
  });
  CHECK(cudaGetLastError());
  // The reference output of the same bytes, then compare.
  Interleaved<kRatio><<<g_sms * 4, 256>>>(g_src, g_check, in_bytes * kRatio / 16);
  CHECK(cudaDeviceSynchronize());
  const char* sync = kSync == kNone ? "no grid sync"
                     : kSync == kAfterWrite ? "sync after writes"
                                            : "sync after reads and writes";
  char what[96];
  std::snprintf(what, sizeof what, "1:%d phased %3u KiB x%d/SM x%d thr, %s/%d",
                kRatio, slab_kib, per_sm_want, kThreads, sync, kSyncEvery);
  CheckEqual(in_bytes * kRatio, what);
  Report(what, double(in_bytes) * (1 + kRatio), ms);
}

template <int kRatio>
void Sweep() {
  const uint64_t in_bytes = kTraffic / (1 + kRatio) / (1 << 20) * (1 << 20);
  RunInterleaved<kRatio>(0, in_bytes);
  RunInterleaved<kRatio>(2, in_bytes);
  for (uint32_t slab : {32u, 64u, 128u, 192u}) {
    RunPhased<kRatio, kNone>(slab, 1, in_bytes);
    RunPhased<kRatio, kAfterWrite>(slab, 1, in_bytes);
    RunPhased<kRatio, kBoth>(slab, 1, in_bytes);
  }
  for (uint32_t slab : {32u, 64u, 96u}) {
    RunPhased<kRatio, kNone>(slab, 2, in_bytes);
    RunPhased<kRatio, kAfterWrite>(slab, 2, in_bytes);
  }
  RunPhased<kRatio, kNone>(32, 4, in_bytes);
  RunPhased<kRatio, kAfterWrite>(32, 4, in_bytes);
}

// The second call's sweep: around the first call's best 1:4 rounds (about
// 16 MiB of input per round, a sync after the writes).
void Sweep2() {
  const uint64_t in4 = kTraffic / 5 / (1 << 20) * (1 << 20);
  RunInterleaved<4>(0, in4);
  RunInterleaved<4>(2, in4);
  RunPhased<4, kAfterWrite, 512>(128, 1, in4);
  RunPhased<4, kAfterWrite, 512>(32, 4, in4);
  RunPhased<4, kAfterWrite, 256>(32, 4, in4);
  RunPhased<4, kAfterWrite, 256>(16, 8, in4);
  RunPhased<4, kAfterWrite, 256>(24, 8, in4);
  RunPhased<4, kAfterWrite, 256>(24, 4, in4);
  RunPhased<4, kAfterWrite, 512>(48, 4, in4);
  RunPhased<4, kAfterWrite, 256>(48, 4, in4);
  RunPhased<4, kAfterWrite, 512>(40, 4, in4);
  RunPhased<4, kAfterWrite, 256>(16, 8, in4);
  RunPhased<4, kAfterWrite, 256, 2>(16, 8, in4);
  RunPhased<4, kAfterWrite, 512, 2>(32, 4, in4);
  RunPhased<4, kAfterWrite, 512, 2>(16, 4, in4);
  RunPhased<4, kAfterWrite, 256, 4>(8, 8, in4);
  const uint64_t in2 = kTraffic / 3 / (1 << 20) * (1 << 20);
  RunInterleaved<2>(0, in2);
  RunPhased<2, kAfterWrite, 256>(16, 8, in2);
  RunPhased<2, kAfterWrite, 512>(48, 4, in2);
  RunPhased<2, kAfterWrite, 256, 2>(16, 8, in2);
}

int main(int argc, char** argv) {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  g_sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs, L2 %d MiB, smem/SM %zu KiB\n", prop.name, g_sms,
              prop.l2CacheSize >> 20, prop.sharedMemPerMultiprocessor >> 10);
  CHECK(cudaMalloc(&g_src, kTraffic));
  CHECK(cudaMalloc(&g_dst, kTraffic));
  CHECK(cudaMalloc(&g_check, kTraffic));
  // Input bytes that vary (not one repeated value).
  std::vector<uint8_t> host(64 << 20);
  uint32_t s = 12345;
  for (auto& b : host) b = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  for (uint64_t off = 0; off < kTraffic; off += host.size()) {
    CHECK(cudaMemcpy(g_src + off, host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  g_copy_ms = MedianMs([] {
    CHECK(cudaMemcpyAsync(g_dst, g_src, kTraffic / 2, cudaMemcpyDeviceToDevice));
  });
  std::printf("cudaMemcpy %llu MiB: %.3f ms = %.0f GB/s read + write\n",
              (unsigned long long)(kTraffic >> 21), g_copy_ms,
              kTraffic / g_copy_ms / 1e6);
  Report("cudaMemsetAsync (writes only)", double(kTraffic),
         MedianMs([] { CHECK(cudaMemsetAsync(g_dst, 0x5a, kTraffic)); }));
  uint32_t* sink;
  CHECK(cudaMalloc(&sink, 4));
  Report("reads only (8 x 16 B in flight, 4 CTAs/SM)", double(kTraffic),
         MedianMs([&] {
           ReadOnly<<<g_sms * 4, 256>>>(reinterpret_cast<const uint4*>(g_src),
                                        kTraffic / 16, sink);
         }));
  if (argc > 1 && std::string(argv[1]) == "2") {
    Sweep2();
    return 0;
  }
  Sweep<4>();
  Sweep<2>();
  return 0;
}
