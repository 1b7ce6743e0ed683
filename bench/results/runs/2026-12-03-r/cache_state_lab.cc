// A stand-alone lab (not part of the build), run once on the lent H200.
// Call 1's get_fetch_lab found the get kernel's writes over PCIe into a
// 1 MiB page-locked buffer 27 us when no CPU cache holds its lines and 41 us
// after the CPU has read the buffer (as the socket send of the previous
// answer through the same staging buffer does); 4 MiB 86 -> 90 us. Here:
// does pushing the lines out of the CPU's caches before the GPU writes them
// win that back, and at what cost on the CPU? For gets (DequantizeFrom into
// the buffer) and for puts (QuantizeInto by DMA from a buffer the CPU has
// just written, as gRPC's receive does):
//   clflushopt  every line written back and evicted from every cache;
//   cldemote    every line moved from the core's caches to the shared L3
//               (a hint; a no-op where the CPU lacks it: see cpu flags);
//   flush-during  clflushopt on a second thread started just before the
//               backend call, so that the flush overlaps the GPU's work
//               (coherent either way: PCIe traffic to page-locked memory is
//               snooped; only the speed differs);
// and with the buffer touched on another core than the one that calls.
// Built here against the build tree (the line is in call2's script).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
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
    std::fprintf(stderr, "%s: %s\n", what,
                 std::string(v.status().message()).c_str());
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
double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * (v.size() - 1))];
}

void FlushLines(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    asm volatile("clflushopt %0" : : "m"(*(const volatile char*)(p + i)));
  }
  asm volatile("sfence" ::: "memory");
}
void DemoteLines(const std::byte* p, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    asm volatile("cldemote %0" : : "m"(*(const volatile char*)(p + i)));
  }
  asm volatile("sfence" ::: "memory");
}

volatile uint64_t g_sink = 0;

enum Mode {
  kUntouched,
  kTouched,
  kFlushed,
  kDemoted,
  kTouchedElsewhere,
  kFlushedDuring,
  kModes
};
const char* kModeNames[] = {"untouched",          "touched",
                            "touched+clflushopt", "touched+cldemote",
                            "touched-other-core", "touched+flush-during"};

}  // namespace

int main() {
  using namespace kvq;
  {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("model name", 0) == 0) {
        std::printf("%s\n", line.c_str());
      }
      if (line.rfind("flags", 0) == 0) {
        std::printf("cldemote %s, clflushopt %s\n",
                    line.find(" cldemote") != std::string::npos ? "yes" : "no",
                    line.find(" clflushopt") != std::string::npos ? "yes" : "no");
        break;
      }
    }
  }
  const ArenaOptions arena{uint64_t{512} << 20, kPageBytes};
  std::unique_ptr<Backend> backend =
      Need(MakeCudaBackend(arena, 0), "MakeCudaBackend");
  std::printf("%s\n", backend->device_name().c_str());
  std::mt19937 rng(12345);

  for (const uint64_t kib : {256, 1024, 4096}) {
    const DType dtype = DType::kFp16;
    const uint32_t tokens = static_cast<uint32_t>((kib << 10) / (8 * 128 * 2));
    const BlockLayout layout = Need(
        MakeLayout(BlockShape{1, tokens, 8, 128}, QuantSpec{}), "MakeLayout");
    const uint64_t size = layout.logical_bytes(dtype);
    std::vector<uint8_t> block(size);
    for (uint64_t i = 0; i < layout.elements; ++i) {
      const uint16_t h = static_cast<uint16_t>(0x3000 + (rng() & 0x3ff));
      std::memcpy(block.data() + 2 * i, &h, 2);
    }
    std::vector<uint32_t> pages((layout.payload_bytes + kPageBytes - 1) /
                                kPageBytes);
    std::iota(pages.begin(), pages.end(), 7);
    std::shuffle(pages.begin(), pages.end(), rng);
    HostBuffer buffer = Need(backend->AllocateHostBuffer(size), "buffer");
    std::byte* p = buffer.data();
    std::memcpy(p, block.data(), size);
    Need(backend->QuantizeInto(layout, dtype, BlockBytes(ConstBytes(p, size)),
                               pages, nullptr, nullptr)
             .status(),
         "QuantizeInto");
    std::vector<std::byte> scratch(size);

    // Gets: the CPU reads the buffer (a send), then the GPU writes it.
    // Puts: the CPU writes the buffer (a receive), then the GPU reads it.
    for (const bool get : {true, false}) {
      std::vector<double> host[kModes], gpu[kModes], cpu[kModes];
      for (int r = 0; r < kRepeats; ++r) {
        for (int m = 0; m < kModes; ++m) {
          const auto touch = [&] {
            if (get) {
              std::memcpy(scratch.data(), p, size);
              g_sink = g_sink + static_cast<uint64_t>(scratch[size / 2]);
            } else {
              std::memcpy(p, block.data(), size);
            }
          };
          if (m == kTouchedElsewhere) {
            std::thread(touch).join();
          } else if (m != kUntouched) {
            touch();
          }
          const auto cpu_start = Clock::now();
          if (m == kFlushed) FlushLines(p, size);
          if (m == kDemoted) DemoteLines(p, size);
          cpu[m].push_back(Us(Clock::now() - cpu_start));
          DataPathTimings t;
          std::thread flusher;
          if (m == kFlushedDuring) flusher = std::thread(FlushLines, p, size);
          const auto start = Clock::now();
          if (get) {
            Need(backend->DequantizeFrom(layout, pages, dtype,
                                         std::span<std::byte>(p, size), &t,
                                         nullptr),
                 "DequantizeFrom");
          } else {
            Need(backend
                     ->QuantizeInto(layout, dtype,
                                    BlockBytes(ConstBytes(p, size)), pages, &t,
                                    nullptr)
                     .status(),
                 "QuantizeInto");
          }
          host[m].push_back(Us(Clock::now() - start));
          if (flusher.joinable()) flusher.join();
          gpu[m].push_back(
              (t.host_to_device_seconds + t.kernel_seconds) * 1e6);
        }
      }
      for (int m = 0; m < kModes; ++m) {
        std::printf(
            "%5lu KiB %s %-20s cpu step p50 %6.1f us | backend call p50 %6.1f "
            "p90 %6.1f | %s p50 %6.1f p90 %6.1f\n",
            static_cast<unsigned long>(kib), get ? "get" : "put",
            kModeNames[m], Pct(cpu[m], 0.5), Pct(host[m], 0.5),
            Pct(host[m], 0.9), get ? "kernel events  " : "h2d+kernel evts",
            Pct(gpu[m], 0.5), Pct(gpu[m], 0.9));
      }
    }
  }
  return 0;
}
