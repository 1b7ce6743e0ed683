// A stand-alone lab (not part of the build), run once on the lent H200: the
// sixteenth session's PhasedDequantize (kernels/cuda/dequantize_phased.cu)
// ran FP32 dequantize at 61-69% of the copy in kvq-bench-kernels, where the
// phase lab's kernel (../2026-12-01-h/phase_lab.cu) runs the same 1:4 mix
// at 93% (phase_lab_sizes.cu). Which of their differences costs it? Each
// case dequantizes (or converts) the same 1.25 GiB of traffic, timed queued
// (20 launches back to back) against a copy of the same bytes:
//   lab          the phase lab's Phased kernel (3 bulk copies of 16 KiB per
//                slab, a constant scale, no tail path)
//   knobs P/S/B  this lab's copy of PhasedDequantize's loop: P bulk copies
//                per slab (1 or 3), S: the slab's scales loaded into shared
//                memory and looked up per vector (else a constant), B:
//                __launch_bounds__(512, 4) (else (512))
//   kvq          kvq::cuda::Dequantize itself, per-tensor layout, as built
// Build (after scripts/build, in the repository root):
//   nvcc -O3 -std=c++20 -arch=sm_90 -I. bench/results/runs/2026-12-02-p/phased_knobs_lab.cu \
//     build/kernels/cuda/libkvq_kernels_cuda.a build/kernels/libkvq_kernels.a \
//     -labsl_status -labsl_strings -labsl_cord -labsl_str_format_internal ... -o phased_knobs_lab
#define main phase_lab_main
#include "../2026-12-01-h/phase_lab.cu"
#undef main

#include <cuda/ptx>

#include "kernels/cuda/quantize_cuda.h"
#include "kernels/format.h"

namespace {

namespace ptx = ::cuda::ptx;

constexpr uint32_t kSlab = 48 * 1024;  // int8 values (bytes) per slab
constexpr uint32_t kThreads = 512;

template <int kPieces, bool kScales>
__device__ __forceinline__ void KnobsBody(const int8_t* __restrict__ payload,
                                          const float* __restrict__ scales,
                                          float* __restrict__ dst,
                                          uint64_t elements,
                                          uint32_t group_values) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t bar;
  float* slab_scales = reinterpret_cast<float*>(smem + kSlab);
  if (threadIdx.x == 0) {
    ptx::mbarrier_init(&bar, 1);
    ptx::fence_mbarrier_init(ptx::sem_release, ptx::scope_cluster);
  }
  __syncthreads();
  cg::grid_group grid = cg::this_grid();
  const uint64_t slabs = (elements + kSlab - 1) / kSlab;
  const uint32_t rounds = static_cast<uint32_t>((slabs + gridDim.x - 1) / gridDim.x);
  uint32_t copies = 0;
  for (uint32_t r = 0; r < rounds; ++r) {
    const uint64_t slab = uint64_t{r} * gridDim.x + blockIdx.x;
    if (slab < slabs) {
      const uint64_t begin = slab * kSlab;
      const uint32_t n = static_cast<uint32_t>(min(uint64_t{kSlab}, elements - begin));
      const uint32_t bulk = n & ~15u;
      if (threadIdx.x == 0 && bulk > 0) {
        ptx::mbarrier_arrive_expect_tx(ptx::sem_release, ptx::scope_cta,
                                       ptx::space_shared, &bar, bulk);
        const uint32_t piece = kPieces == 1 ? bulk : 16384;
        for (uint32_t off = 0; off < bulk; off += piece) {
          ptx::cp_async_bulk(ptx::space_cluster, ptx::space_global, smem + off,
                             payload + begin + off, min(piece, bulk - off), &bar);
        }
      }
      uint32_t first_group = 0;
      if constexpr (kScales) {
        first_group = static_cast<uint32_t>(begin / group_values);
        const uint32_t groups =
            static_cast<uint32_t>((begin + n - 1) / group_values) - first_group + 1;
        for (uint32_t g = threadIdx.x; g < groups; g += kThreads) {
          slab_scales[g] = scales[first_group + g];
        }
        __syncthreads();
      }
      if (bulk > 0) {
        while (!ptx::mbarrier_try_wait_parity(&bar, copies & 1)) {
        }
        ++copies;
      }
      const uint32_t vecs = n / 4;
      for (uint32_t base = threadIdx.x; base < vecs; base += kThreads * 4) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const uint32_t v = base + u * kThreads;
          if (v < vecs) {
            const uint32_t w = reinterpret_cast<const uint32_t*>(smem)[v];
            const float s =
                kScales ? slab_scales[(begin + 4 * v) / group_values - first_group]
                        : 0.01f;
            float4 y;
            y.x = static_cast<float>(static_cast<int8_t>(w)) * s;
            y.y = static_cast<float>(static_cast<int8_t>(w >> 8)) * s;
            y.z = static_cast<float>(static_cast<int8_t>(w >> 16)) * s;
            y.w = static_cast<float>(static_cast<int8_t>(w >> 24)) * s;
            reinterpret_cast<float4*>(dst + begin)[v] = y;
          }
        }
      }
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    grid.sync();
  }
}

template <int kPieces, bool kScales>
__global__ void __launch_bounds__(kThreads, 4)
    KnobsBounded(const int8_t* p, const float* s, float* d, uint64_t e, uint32_t g) {
  KnobsBody<kPieces, kScales>(p, s, d, e, g);
}

template <int kPieces, bool kScales>
__global__ void __launch_bounds__(kThreads)
    KnobsUnbounded(const int8_t* p, const float* s, float* d, uint64_t e, uint32_t g) {
  KnobsBody<kPieces, kScales>(p, s, d, e, g);
}

constexpr int kQueued = 20;

template <class F>
double Queued(F launch) {
  static Timer t;
  for (int i = 0; i < 3; ++i) launch();
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaEventRecord(t.a));
  for (int i = 0; i < kQueued; ++i) launch();
  CHECK(cudaEventRecord(t.b));
  CHECK(cudaEventSynchronize(t.b));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, t.a, t.b));
  return ms / kQueued;
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  // FP32 1 x 262144 x 8 x 128 (kvq-bench-kernels' 1 GiB case), per-tensor.
  const kvq::BlockShape shape{1, 262144, 8, 128};
  kvq::QuantSpec spec;
  spec.granularity = kvq::Granularity::kPerTensor;
  const kvq::BlockLayout layout = *kvq::MakeLayout(shape, spec);
  const uint64_t elements = layout.elements;
  uint8_t* payload;
  float* dst;
  CHECK(cudaMalloc(&payload, layout.payload_bytes));
  CHECK(cudaMalloc(&dst, elements * 4));
  CHECK(cudaMemset(payload, 0x3c, layout.payload_bytes));
  const float one = 0.01f;
  CHECK(cudaMemcpy(payload + layout.scales_offset, &one, 4, cudaMemcpyHostToDevice));
  const float* scales = reinterpret_cast<const float*>(payload + layout.scales_offset);
  const uint64_t traffic = elements * 5;
  uint8_t* copy_buf;
  CHECK(cudaMalloc(&copy_buf, traffic));
  const double copy_ms = Queued([&] {
    CHECK(cudaMemcpyAsync(copy_buf + traffic / 2, copy_buf, traffic / 2,
                          cudaMemcpyDeviceToDevice));
  });
  CHECK(cudaFree(copy_buf));
  std::printf("%s: FP32 %llu values, %llu MiB of traffic; copy %.3f ms\n", prop.name,
              (unsigned long long)elements, (unsigned long long)(traffic >> 20), copy_ms);
  auto report = [&](const char* what, double ms) {
    std::printf("%-40s %7.3f ms %5.1f%% of copy\n", what, ms, 100.0 * copy_ms / ms);
  };
  {
    auto kernel = &Phased<4, kAfterWrite, 512, 1>;
    uint32_t slab = kSlab;
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, slab));
    const uint64_t round = uint64_t(sms) * 4 * slab;
    uint64_t n = elements / round * round;  // whole rounds only, as in the lab
    const uint8_t* src = payload;
    uint8_t* out = reinterpret_cast<uint8_t*>(dst);
    void* args[] = {&src, &out, &n, &slab};
    const double ms = Queued([&] {
      CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel), sms * 4, 512,
                                        args, slab, nullptr));
    });
    report("lab (whole rounds only, scaled)", ms * double(elements) / double(n));
  }
  auto knobs = [&](const char* what, auto kernel) {
    const size_t smem = kSlab + 4 * (kSlab / 32 + 2);
    CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)));
    int per_sm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    per_sm = std::min(per_sm, 4);
    const int8_t* p = reinterpret_cast<const int8_t*>(payload);
    const float* s = scales;
    float* d = dst;
    uint64_t e = elements;
    uint32_t g = static_cast<uint32_t>(std::min<uint64_t>(layout.group_values, 1u << 31));
    void* args[] = {&p, &s, &d, &e, &g};
    const double ms = Queued([&] {
      CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel), sms * per_sm,
                                        kThreads, args, smem, nullptr));
    });
    char label[96];
    std::snprintf(label, sizeof label, "%s (%d CTAs/SM)", what, per_sm);
    report(label, ms);
  };
  knobs("knobs P1 S0 B1", &KnobsBounded<1, false>);
  knobs("knobs P3 S0 B1", &KnobsBounded<3, false>);
  knobs("knobs P1 S1 B1", &KnobsBounded<1, true>);
  knobs("knobs P3 S1 B1", &KnobsBounded<3, true>);
  knobs("knobs P1 S0 B0", &KnobsUnbounded<1, false>);
  knobs("knobs P3 S1 B0", &KnobsUnbounded<3, true>);
  report("kvq::cuda::Dequantize", Queued([&] {
           const absl::Status s =
               kvq::cuda::Dequantize(layout, payload, kvq::DType::kFp32, dst, nullptr);
           if (!s.ok()) {
             std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
             std::exit(1);
           }
         }));
  CHECK(cudaGetLastError());
  return 0;
}
