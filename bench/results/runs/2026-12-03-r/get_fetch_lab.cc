// A stand-alone lab (not part of the build), run once on the lent H200:
// where do a one-key 1 MiB get's 0.073-0.076 ms of fetch go, when the
// seventeenth session's lab timed the same kernel writing 1 MiB into
// page-locked memory in 0.035 ms from call to synchronize? This one drives
// the real CudaBackend (MakeCudaBackend, QuantizeInto, DequantizeFrom into
// an AllocateHostBuffer buffer, as BlockStore::Fetch does) and times each
// DequantizeFrom on the host and by the backend's own events, with the
// output buffer treated as the server treats it between gets:
//   untouched     nothing touches the buffer between gets (the old lab);
//   cpu-read      the CPU reads it all first (as the socket send of the
//                 previous answer does), so its lines sit in the CPU's
//                 caches when the GPU writes it over PCIe;
//   cpu-written   the CPU writes it all first (dirty lines);
//   4-buffers     cpu-read, over four buffers in turn (the staging pool's
//                 rotation);
// and the CUDA calls the backend makes around the kernel, one at a time.
//
// Built here against the build tree (the line is in call1's script).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/format.h"
#include "server/backend/backend.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRepeats = 300;
constexpr uint64_t kPageBytes = 64 << 10;

template <class T>
T Need(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(v.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(v);
}
void Need(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
    std::exit(1);
  }
}

double Us(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

volatile uint64_t g_sink = 0;
void ReadAll(const std::byte* p, size_t n, std::byte* scratch) {
  std::memcpy(scratch, p, n);  // as a socket send copies the answer out
  g_sink = g_sink + static_cast<uint64_t>(scratch[n / 2]);
}

}  // namespace

int main() {
  using namespace kvq;
  const ArenaOptions arena{uint64_t{512} << 20, kPageBytes};
  std::unique_ptr<Backend> backend =
      Need(MakeCudaBackend(arena, 0), "MakeCudaBackend");
  std::printf("%s\n", backend->device_name().c_str());
  std::mt19937 rng(12345);

  for (const uint64_t mib : {1, 4}) {
    for (const DType dtype : {DType::kFp16, DType::kFp32}) {
      const uint32_t bytes_per = dtype == DType::kFp32 ? 4 : 2;
      const uint32_t tokens =
          static_cast<uint32_t>((mib << 20) / (8 * 128 * bytes_per));
      const BlockLayout layout = Need(
          MakeLayout(BlockShape{1, tokens, 8, 128}, QuantSpec{}), "MakeLayout");
      const uint64_t size = layout.logical_bytes(dtype);
      std::vector<float> values(layout.elements);
      std::uniform_real_distribution<float> u(-1, 1);
      for (float& v : values) v = u(rng);
      std::vector<uint8_t> block(size);
      if (dtype == DType::kFp32) {
        std::memcpy(block.data(), values.data(), size);
      } else {
        // Any bit pattern of a finite FP16 works for timing: small halves.
        for (uint64_t i = 0; i < layout.elements; ++i) {
          const uint16_t h = static_cast<uint16_t>(0x3000 + (rng() & 0x3ff));
          std::memcpy(block.data() + 2 * i, &h, 2);
        }
      }
      const uint64_t pages_needed =
          (layout.payload_bytes + kPageBytes - 1) / kPageBytes;
      std::vector<uint32_t> pages(pages_needed);
      std::iota(pages.begin(), pages.end(), 7);
      std::shuffle(pages.begin(), pages.end(), rng);
      Need(backend
               ->QuantizeInto(layout, dtype,
                              BlockBytes(ConstBytes(
                                  reinterpret_cast<const std::byte*>(block.data()),
                                  size)),
                              pages, nullptr, nullptr)
               .status(),
           "QuantizeInto");
      std::vector<HostBuffer> outs;
      for (int i = 0; i < 4; ++i) {
        outs.push_back(Need(backend->AllocateHostBuffer(size), "AllocateHostBuffer"));
        std::memset(outs.back().data(), 0, size);
      }
      std::vector<std::byte> scratch(size);
      const char* kModes[] = {"untouched", "cpu-read", "cpu-written", "4-buffers"};
      std::vector<double> host[4], kernel[4];
      for (int r = 0; r < kRepeats; ++r) {
        for (int m = 0; m < 4; ++m) {
          HostBuffer& out = outs[m == 3 ? r % 4 : 0];
          auto* p = static_cast<std::byte*>(out.data());
          if (m == 1 || m == 3) ReadAll(p, size, scratch.data());
          if (m == 2) std::memset(p, r & 0xff, size);
          DataPathTimings t;
          const auto start = Clock::now();
          Need(backend->DequantizeFrom(layout, pages, dtype,
                                       std::span<std::byte>(p, size), &t, nullptr),
               "DequantizeFrom");
          host[m].push_back(Us(Clock::now() - start));
          kernel[m].push_back(t.kernel_seconds * 1e6);
        }
      }
      for (int m = 0; m < 4; ++m) {
        std::printf(
            "%2lu MiB %s %-12s DequantizeFrom host p50 %6.1f us p90 %6.1f  "
            "kernel events p50 %6.1f us p90 %6.1f\n",
            static_cast<unsigned long>(mib),
            dtype == DType::kFp32 ? "fp32" : "fp16", kModes[m],
            Median(host[m]), Pct(host[m], 0.9), Median(kernel[m]),
            Pct(kernel[m], 0.9));
      }
    }
  }

  // The CUDA calls around the kernel, one at a time (medians of 2000).
  HostBuffer probe = Need(backend->AllocateHostBuffer(1 << 20), "probe");
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaEvent_t e;
  cudaEventCreate(&e);
  auto time_call = [&](const char* name, auto&& call) {
    std::vector<double> t;
    for (int i = 0; i < 2000; ++i) {
      const auto start = Clock::now();
      call();
      t.push_back(Us(Clock::now() - start));
    }
    std::printf("%-44s p50 %6.2f us  p90 %6.2f\n", name, Median(t), Pct(t, 0.9));
  };
  time_call("cudaPointerGetAttributes (page-locked)", [&] {
    cudaPointerAttributes a{};
    cudaPointerGetAttributes(&a, probe.data());
  });
  std::vector<std::byte> plain(1 << 20);
  time_call("cudaPointerGetAttributes (plain heap)", [&] {
    cudaPointerAttributes a{};
    cudaPointerGetAttributes(&a, plain.data());
    cudaGetLastError();
  });
  time_call("cudaEventRecord", [&] { cudaEventRecord(e, s); });
  time_call("cudaStreamSynchronize (idle stream)", [&] { cudaStreamSynchronize(s); });
  time_call("cudaEventElapsedTime", [&] {
    float ms;
    cudaEventElapsedTime(&ms, e, e);
  });
  time_call("cudaSetDevice", [&] { cudaSetDevice(0); });
  return 0;
}
