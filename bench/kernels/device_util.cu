#include "bench/kernels/device_util.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>
#include <type_traits>

namespace kvq::bench {
namespace {

// Holds the GPU for about `ns` nanoseconds (global timer), so that the
// host can enqueue the timed work before the GPU starts on it.
__global__ void SpinKernel(uint64_t ns) {
  uint64_t start, now;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < ns);
}

template <int kWords>
struct alignas(4 * kWords) Words {
  uint32_t w[kWords];
};

// Reads kIn words per item and writes kOut words derived from them (so the
// loads cannot be dropped), 8 items in flight per thread.
template <int kIn, int kOut>
__device__ __forceinline__ Words<kOut> MixConvert(const Words<kIn>& x) {
  Words<kOut> y;
#pragma unroll
  for (int k = 0; k < kOut; ++k) y.w[k] = x.w[k % kIn] ^ (k * 0x9e3779b9u);
  return y;
}

constexpr int kMixThreads = 256, kMixUnroll = 8;

template <int kIn, int kOut>
__global__ void __launch_bounds__(kMixThreads)
    MixKernel(const Words<kIn>* __restrict__ src, Words<kOut>* __restrict__ dst,
              uint64_t items) {
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  for (; i + (kMixUnroll - 1) * stride < items; i += kMixUnroll * stride) {
    Words<kIn> x[kMixUnroll];
#pragma unroll
    for (int u = 0; u < kMixUnroll; ++u) x[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kMixUnroll; ++u) {
      dst[i + u * stride] = MixConvert<kIn, kOut>(x[u]);
    }
  }
  for (; i < items; i += stride) dst[i] = MixConvert<kIn, kOut>(src[i]);
}

// MixKernel's loads, its results staged in shared memory and written by one
// TMA bulk store (cp.async.bulk) per tile of kMixThreads * kMixUnroll items,
// two tiles in flight per CTA: whether taking the stores off the threads
// moves a mix's ceiling. Items past the last whole tile are left alone (the
// caller counts only whole tiles).
constexpr int kMixTmaStages = 2;
constexpr uint64_t kMixTile = kMixThreads * kMixUnroll;

template <int kIn, int kOut>
__global__ void __launch_bounds__(kMixThreads)
    MixTmaKernel(const Words<kIn>* __restrict__ src,
                 Words<kOut>* __restrict__ dst, uint64_t tiles) {
#if __CUDA_ARCH__ >= 900  // TMA; the host runs this only on such GPUs
  extern __shared__ __align__(128) unsigned char mix_smem[];
  auto* stages = reinterpret_cast<Words<kOut>*>(mix_smem);
  int stage = 0;
  for (uint64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const uint64_t base = t * kMixTile;
    Words<kIn> x[kMixUnroll];
#pragma unroll
    for (int u = 0; u < kMixUnroll; ++u) {
      x[u] = src[base + u * kMixThreads + threadIdx.x];
    }
    // The stage's previous bulk store must have read its tile.
    if (threadIdx.x == 0) {
      asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(kMixTmaStages - 1)
                   : "memory");
    }
    __syncthreads();
    Words<kOut>* tile = stages + stage * kMixTile;
#pragma unroll
    for (int u = 0; u < kMixUnroll; ++u) {
      tile[u * kMixThreads + threadIdx.x] = MixConvert<kIn, kOut>(x[u]);
    }
    // Generic-proxy writes to shared memory, then the async proxy reads it.
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if (threadIdx.x == 0) {
      const uint32_t from =
          static_cast<uint32_t>(__cvta_generic_to_shared(tile));
      asm volatile(
          "cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n\t"
          "cp.async.bulk.commit_group;" ::"l"(dst + base),
          "r"(from), "r"(static_cast<uint32_t>(kMixTile * sizeof(Words<kOut>)))
          : "memory");
    }
    stage = (stage + 1) % kMixTmaStages;
  }
  if (threadIdx.x == 0) {
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
  }
#endif
}

// A persistent grid for a mix kernel: as many CTAs as fit at once, never
// more than `work` (CTA-sized pieces).
template <class Kernel>
unsigned MixGrid(Kernel kernel, int smem, uint64_t work, const GpuInfo& gpu) {
  int per_sm = 0;
  CheckCuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel,
                                                          kMixThreads, smem),
            "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  return static_cast<unsigned>(std::max<uint64_t>(
      1, std::min<uint64_t>(uint64_t(gpu.sms) * std::max(per_sm, 1), work)));
}

template <int kIn, int kOut>
double TimeMix(uint64_t traffic, MixStores stores, const GpuInfo& gpu,
               int repeats, cudaStream_t stream) {
  constexpr uint64_t kItemBytes = 4 * (kIn + kOut);
  // Whole tiles, so that both kernels move exactly `traffic` bytes.
  const uint64_t tiles = std::max<uint64_t>(traffic / kItemBytes / kMixTile, 1);
  const uint64_t items = tiles * kMixTile;
  const uint64_t in_bytes = items * 4 * kIn, out_bytes = items * 4 * kOut;
  const int slots = RotationSlots(in_bytes + out_bytes, gpu.l2_bytes);
  DeviceBuffer src(in_bytes * slots), dst(out_bytes * slots);
  CheckCuda(cudaMemsetAsync(src.get(), 0x3c, src.bytes(), stream), "memset");
  const auto* in = src.get<char>();
  auto* out = dst.get<char>();
  if (stores == MixStores::kTmaBulk) {
    constexpr auto kKernel = &MixTmaKernel<kIn, kOut>;
    constexpr int kSmem = kMixTmaStages * kMixTile * sizeof(Words<kOut>);
    CheckCuda(cudaFuncSetAttribute(kKernel,
                                   cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   kSmem),
              "cudaFuncSetAttribute");
    const unsigned grid = MixGrid(kKernel, kSmem, tiles, gpu);
    return Median(TimeOp(
        [&](int slot) {
          kKernel<<<grid, kMixThreads, kSmem, stream>>>(
              reinterpret_cast<const Words<kIn>*>(in + slot * in_bytes),
              reinterpret_cast<Words<kOut>*>(out + slot * out_bytes), tiles);
          CheckCuda(cudaGetLastError(), "MixTmaKernel");
        },
        slots, 0, repeats, 3, stream));
  }
  constexpr auto kKernel = &MixKernel<kIn, kOut>;
  const unsigned grid =
      MixGrid(kKernel, 0, (items + kMixThreads - 1) / kMixThreads, gpu);
  return Median(TimeOp(
      [&](int slot) {
        kKernel<<<grid, kMixThreads, 0, stream>>>(
            reinterpret_cast<const Words<kIn>*>(in + slot * in_bytes),
            reinterpret_cast<Words<kOut>*>(out + slot * out_bytes), items);
        CheckCuda(cudaGetLastError(), "MixKernel");
      },
      slots, 0, repeats, 3, stream));
}

// Writes `traffic` bytes with cudaMemsetAsync: the write-only ceiling.
double TimeMemset(uint64_t traffic, const GpuInfo& gpu, int repeats,
                  cudaStream_t stream) {
  const int slots = RotationSlots(traffic, gpu.l2_bytes);
  DeviceBuffer dst(traffic * slots);
  return Median(TimeOp(
      [&](int slot) {
        CheckCuda(cudaMemsetAsync(dst.get<char>() + slot * traffic, 0x5a,
                                  traffic, stream),
                  "cudaMemsetAsync");
      },
      slots, 0, repeats, 3, stream));
}

// The driver version from e.g. "NVRM version: NVIDIA UNIX Open Kernel Module
// for x86_64  580.159.04  Release Build ...": the first word after "Module"
// made of digits and dots.
std::string DriverFromProc() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(in, line)) return "";
  std::istringstream words(line);
  bool after_module = false;
  for (std::string w; words >> w;) {
    if (w == "Module") after_module = true;
    const bool version =
        !w.empty() && std::isdigit(static_cast<unsigned char>(w[0])) &&
        w.find_first_not_of("0123456789.") == std::string::npos;
    if (after_module && version) return w;
  }
  return "";
}

// NVML is part of the driver; load it at run time so that the binary has no
// link-time dependency on it (the build machine has no driver).
std::string DriverFromNvml() {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return "";
  using InitFn = int (*)();
  using VersionFn = int (*)(char*, unsigned);
  auto init = reinterpret_cast<InitFn>(dlsym(lib, "nvmlInit_v2"));
  auto version =
      reinterpret_cast<VersionFn>(dlsym(lib, "nvmlSystemGetDriverVersion"));
  std::string out;
  char text[96] = {0};
  if (init != nullptr && version != nullptr && init() == 0 &&
      version(text, sizeof text) == 0) {
    out = text;
  }
  dlclose(lib);
  return out;
}

std::string VersionText(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace

void CheckCuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  std::fprintf(stderr, "kvq-bench-kernels: %s: %s (%s)\n", what,
               cudaGetErrorName(err), cudaGetErrorString(err));
  std::exit(1);
}

void CheckOk(const absl::Status& s, const char* what) {
  if (s.ok()) return;
  std::fprintf(stderr, "kvq-bench-kernels: %s: %s\n", what,
               s.ToString().c_str());
  std::exit(1);
}

DeviceBuffer::DeviceBuffer(uint64_t bytes) : bytes_(bytes) {
  CheckCuda(cudaMalloc(&ptr_, std::max<uint64_t>(bytes, 256)), "cudaMalloc");
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

GpuInfo QueryGpu() {
  int device = 0;
  CheckCuda(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp prop{};
  CheckCuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  GpuInfo info;
  info.name = prop.name;
  info.sms = prop.multiProcessorCount;
  info.compute_capability = prop.major * 10 + prop.minor;
  info.l2_bytes = static_cast<uint64_t>(prop.l2CacheSize);
  info.memory_bytes = prop.totalGlobalMem;
  int driver_api = 0, runtime = 0;
  CheckCuda(cudaDriverGetVersion(&driver_api), "cudaDriverGetVersion");
  CheckCuda(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  std::string driver = DriverFromProc();
  if (driver.empty()) driver = DriverFromNvml();
  if (driver.empty()) driver = "unknown";
  info.driver = driver + " (CUDA " + VersionText(driver_api) + ")";
  info.runtime = VersionText(runtime);
  return info;
}

std::vector<double> TimeOp(const std::function<void(int slot)>& op, int slots,
                           int first_slot, int repeats, int warmup,
                           cudaStream_t stream) {
  for (int i = 0; i < warmup; ++i) op((first_slot + i) % slots);
  CheckCuda(cudaStreamSynchronize(stream), "warm-up");
  std::vector<cudaEvent_t> events(2 * repeats);
  for (auto& e : events) CheckCuda(cudaEventCreate(&e), "cudaEventCreate");
  // Enough spin for the host to enqueue everything (a few µs per item).
  const uint64_t spin_ns = std::min<uint64_t>(50'000'000, 200'000 + 20'000ull * repeats);
  SpinKernel<<<1, 1, 0, stream>>>(spin_ns);
  CheckCuda(cudaGetLastError(), "SpinKernel");
  for (int r = 0; r < repeats; ++r) {
    CheckCuda(cudaEventRecord(events[2 * r], stream), "cudaEventRecord");
    op((first_slot + warmup + r) % slots);
    CheckCuda(cudaEventRecord(events[2 * r + 1], stream), "cudaEventRecord");
  }
  CheckCuda(cudaStreamSynchronize(stream), "timed repetitions");
  std::vector<double> ms(repeats);
  for (int r = 0; r < repeats; ++r) {
    float t = 0;
    CheckCuda(cudaEventElapsedTime(&t, events[2 * r], events[2 * r + 1]),
              "cudaEventElapsedTime");
    ms[r] = t;
  }
  for (auto& e : events) cudaEventDestroy(e);
  return ms;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int RotationSlots(uint64_t set_bytes, uint64_t l2_bytes) {
  if (set_bytes >= 2 * l2_bytes) return 1;
  const uint64_t span = 4 * l2_bytes;
  return static_cast<int>(
      std::max<uint64_t>(2, (span + set_bytes - 1) / std::max<uint64_t>(set_bytes, 1)));
}

double CopyMs(uint64_t traffic, const GpuInfo& gpu, int repeats,
              cudaStream_t stream) {
  static std::map<uint64_t, double> cache;
  const uint64_t bytes = std::max<uint64_t>(traffic / 2, 16);
  if (auto it = cache.find(bytes); it != cache.end()) return it->second;
  const int slots = RotationSlots(2 * bytes, gpu.l2_bytes);
  DeviceBuffer src(bytes * slots), dst(bytes * slots);
  CheckCuda(cudaMemsetAsync(src.get(), 0x3c, src.bytes(), stream), "memset");
  const double ms = Median(TimeOp(
      [&](int slot) {
        CheckCuda(cudaMemcpyAsync(dst.get<char>() + slot * bytes,
                                  src.get<char>() + slot * bytes, bytes,
                                  cudaMemcpyDeviceToDevice, stream),
                  "cudaMemcpyAsync D2D");
      },
      slots, 0, repeats, 3, stream));
  cache[bytes] = ms;
  return ms;
}

double MixMs(TrafficMix mix, MixStores stores, uint64_t traffic,
             const GpuInfo& gpu, int repeats, cudaStream_t stream) {
  static std::map<std::tuple<int, int, MixStores, uint64_t>, double> cache;
  const auto key =
      std::make_tuple(mix.read_words, mix.write_words, stores, traffic);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  double ms = -1;
  if (stores == MixStores::kTmaBulk && gpu.compute_capability < 90) {
    std::fprintf(stderr, "kvq-bench-kernels: TMA stores need sm_90+\n");
    std::exit(1);
  }
  if (mix.read_words == 0 && stores == MixStores::kPlain) {
    ms = TimeMemset(traffic, gpu, repeats, stream);
  }
  // The mixes of kvq's kernels (and the copy's), each an instantiation.
  auto run = [&](auto in, auto out) {
    if (mix.read_words == decltype(in)::value &&
        mix.write_words == decltype(out)::value) {
      ms = TimeMix<decltype(in)::value, decltype(out)::value>(
          traffic, stores, gpu, repeats, stream);
    }
  };
  using W1 = std::integral_constant<int, 1>;
  using W2 = std::integral_constant<int, 2>;
  using W4 = std::integral_constant<int, 4>;
  run(W4{}, W4{});
  run(W2{}, W4{});
  run(W1{}, W4{});
  run(W4{}, W2{});
  run(W4{}, W1{});
  if (ms < 0) {
    std::fprintf(stderr, "kvq-bench-kernels: no mix kernel for %d:%d words\n",
                 mix.read_words, mix.write_words);
    std::exit(1);
  }
  cache[key] = ms;
  return ms;
}

}  // namespace kvq::bench
