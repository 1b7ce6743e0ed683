// A stand-alone lab (not part of the build), run once on the lent H200: does
// the eighth session's phase lab (../2026-12-01-h/phase_lab.cu, whose
// kernels this includes) hold its 92-95% for the 1:4 mix at every size, as
// it did at 3 GiB of traffic, where the phased dequantize kernel built from
// it (branches phased-dequant, phased-dequant-2) measured 93% at 640 MiB of
// traffic but 81-82% at 1.25 and 5 GiB? Two ways of timing each case:
//   synced:  one launch between two events, host waiting for each (the
//            lab's MedianMs)
//   queued:  kRepeats launches back to back between two events (as
//            kvq-bench-kernels times, no host gaps), the mean
// each against a same-size cudaMemcpy timed the same way.
//   nvcc -O3 -std=c++20 -arch=sm_90 phase_lab_sizes.cu -o phase_lab_sizes
#define main phase_lab_main
#include "../2026-12-01-h/phase_lab.cu"
#undef main

namespace {

constexpr int kRepeats = 20;

template <class F>
double QueuedMs(F launch) {
  static Timer t;
  for (int i = 0; i < 3; ++i) launch();
  CHECK(cudaDeviceSynchronize());
  CHECK(cudaEventRecord(t.a));
  for (int i = 0; i < kRepeats; ++i) launch();
  CHECK(cudaEventRecord(t.b));
  CHECK(cudaEventSynchronize(t.b));
  float ms;
  CHECK(cudaEventElapsedTime(&ms, t.a, t.b));
  return ms / kRepeats;
}

struct Case {
  const char* what;
  double synced_ms;
  double queued_ms;
};

template <class F>
Case Time(const char* what, F launch) {
  return {what, MedianMs(launch), QueuedMs(launch)};
}

// 1:kRatio with `traffic` bytes read + written: the copy of the same bytes,
// the interleaved kernel at 2 CTAs/SM and the lab's best phased shape (48
// KiB slabs, 4 CTAs of 512 threads per SM, a grid sync after each round's
// writes), each synced and queued.
template <int kRatio>
void Sizes(uint64_t traffic, uint8_t* src, uint8_t* dst, int sms) {
  auto kernel = &Phased<kRatio, kAfterWrite, 512, 1>;
  const uint32_t slab = 48 * 1024;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(slab)));
  const unsigned phased_grid = sms * 4;
  const uint64_t round = uint64_t{phased_grid} * slab;
  const uint64_t in_bytes = traffic / (1 + kRatio) / round * round;
  const uint64_t bytes = in_bytes * (1 + kRatio);
  uint64_t n = in_bytes;
  uint32_t slab_arg = slab;
  const uint8_t* src_arg = src;
  uint8_t* dst_arg = dst;
  void* args[] = {&src_arg, &dst_arg, &n, &slab_arg};
  Case cases[] = {
      Time("copy", [&] {
        CHECK(cudaMemcpyAsync(dst, src, bytes / 2, cudaMemcpyDeviceToDevice));
      }),
      Time("interleaved 2 CTAs/SM",
           [&] {
             Interleaved<kRatio><<<sms * 2, 256>>>(src, dst,
                                                   in_bytes * kRatio / 16);
           }),
      Time("phased 48 KiB x4/SM x512, sync after writes", [&] {
        CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(kernel),
                                          phased_grid, 512, args, slab,
                                          nullptr));
      }),
  };
  CHECK(cudaGetLastError());
  for (const Case& c : cases) {
    std::printf(
        "1:%d %6llu MiB  %-46s synced %7.3f ms %5.1f%%  queued %7.3f ms "
        "%5.1f%%\n",
        kRatio, (unsigned long long)(bytes >> 20), c.what, c.synced_ms,
        100.0 * cases[0].synced_ms / c.synced_ms, c.queued_ms,
        100.0 * cases[0].queued_ms / c.queued_ms);
  }
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  constexpr uint64_t kMax = uint64_t{5} << 30;
  uint8_t* src;
  uint8_t* dst;
  CHECK(cudaMalloc(&src, kMax));
  CHECK(cudaMalloc(&dst, kMax));
  std::vector<uint8_t> host(64 << 20);
  uint32_t s = 12345;
  for (auto& b : host) b = static_cast<uint8_t>((s = s * 1664525u + 1013904223u) >> 24);
  for (uint64_t off = 0; off < kMax; off += host.size()) {
    CHECK(cudaMemcpy(src + off, host.data(), host.size(), cudaMemcpyHostToDevice));
  }
  // kvq-bench-kernels' FP32 dequantize sizes (640 MiB, 1.25 GiB, 5 GiB of
  // traffic for 512 MiB, 1 GiB and 4 GiB of output) and the lab's 3 GiB.
  for (uint64_t mib : {640u, 1280u, 3072u, 5120u}) {
    Sizes<4>(mib << 20, src, dst, prop.multiProcessorCount);
  }
  for (uint64_t mib : {640u, 3072u}) {
    Sizes<2>(mib << 20, src, dst, prop.multiProcessorCount);
  }
  return 0;
}
