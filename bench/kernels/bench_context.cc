#include "bench/kernels/bench_context.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "bench/common/random_fill.h"
#include "kernels/cuda/quantize_cuda.h"
#include "kernels/float_convert.h"

namespace kvq::bench {

BenchContext::BenchContext(Options options, GpuInfo gpu, cudaStream_t stream)
    : options_(options),
      gpu_(std::move(gpu)),
      stream_(stream),
      csv_({"section", "case", "kernel", "dtype", "granularity", "shape",
            "elements", "op", "median_ms", "min_ms", "traffic_bytes",
            "gb_per_s", "copy_gb_per_s", "fraction_of_copy", "cpu_serial_ms",
            "cpu_fast_ms", "speedup_vs_serial", "speedup_vs_cpu_fast",
            "bytes_equal", "note"}) {}

BenchContext::Timing BenchContext::Time(
    const std::function<void(int slot)>& op, int slots) {
  constexpr int kWarmup = 3;
  const int first = next_slot_ % slots;
  next_slot_ = (first + kWarmup + options_.repeats) % slots;
  const std::vector<double> ms =
      TimeOp(op, slots, first, options_.repeats, kWarmup, stream_);
  return {Median(ms), *std::min_element(ms.begin(), ms.end())};
}

void BenchContext::ForEachSlot(const std::function<void(int slot)>& op,
                               int slots) {
  for (int s = 0; s < slots; ++s) op(s);
  CheckCuda(cudaStreamSynchronize(stream_), "ForEachSlot");
  next_slot_ = 0;  // the slot touched longest ago
}

double BenchContext::CopyMs(uint64_t traffic) {
  return kvq::bench::CopyMs(traffic, gpu_, options_.repeats, stream_);
}

void BenchContext::Record(const Measurement& m) {
  const double gbps = GBps(m.traffic, m.ms);
  const double copy_gbps = m.copy_ms > 0 ? GBps(m.traffic, m.copy_ms) : 0;
  auto opt = [](double v, int digits) {
    return v < 0 ? std::string("-") : Sig(v, digits);
  };
  csv_.AddRow({m.section, m.case_name, m.kernel, m.dtype, m.granularity,
               m.shape, Int(m.elements), m.op, Sig(m.ms, 5), Sig(m.min_ms, 5),
               Int(m.traffic), Sig(gbps, 5), Sig(copy_gbps, 5),
               copy_gbps > 0 ? Sig(gbps / copy_gbps, 4) : "-",
               opt(m.cpu_serial_ms, 5), opt(m.cpu_fast_ms, 5),
               m.cpu_serial_ms > 0 ? Sig(m.cpu_serial_ms / m.ms, 4) : "-",
               m.cpu_fast_ms > 0 ? Sig(m.cpu_fast_ms / m.ms, 4) : "-",
               m.bytes_equal.empty() ? "-" : m.bytes_equal, m.note});
}

std::string BenchContext::Csv() const {
  std::ostringstream out;
  csv_.WriteCsv(out);
  return out.str();
}

double TimeCpuMs(const std::function<void()>& fn) {
  std::vector<double> ms;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(
                     std::chrono::steady_clock::now() - start)
                     .count());
    double total = 0;
    for (double m : ms) total += m;
    if (total > 200.0) break;  // long enough: one run of a big case
  }
  return Median(ms);
}

uint64_t QuantizeTraffic(const BlockLayout& layout, DType dtype) {
  return kvq::cuda::QuantizeInputReads(layout, dtype) *
             layout.logical_bytes(dtype) +
         layout.payload_bytes;
}

uint64_t DequantizeTraffic(const BlockLayout& layout, DType dtype) {
  return layout.payload_bytes + layout.logical_bytes(dtype);
}

std::vector<uint8_t> HostInput(uint64_t n, DType dtype, uint64_t seed) {
  std::vector<float> x(n);
  FillUniform(x.data(), n, seed);
  if (dtype == DType::kFp32) {
    std::vector<uint8_t> bytes(4 * n);
    std::memcpy(bytes.data(), x.data(), 4 * n);
    return bytes;
  }
  std::vector<uint8_t> bytes(2 * n);
  auto* bits = reinterpret_cast<uint16_t*>(bytes.data());
  const bool half = dtype == DType::kFp16;
  ParallelRanges(n, [&](uint64_t begin, uint64_t end) {
    for (uint64_t i = begin; i < end; ++i) {
      bits[i] = half ? FloatToHalf(x[i]) : FloatToBf16(x[i]);
    }
  });
  return bytes;
}

std::string ShapeName(const BlockShape& s) {
  return std::to_string(s.planes) + "x" + std::to_string(s.tokens) + "x" +
         std::to_string(s.heads) + "x" + std::to_string(s.head_dim);
}

std::string Percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f%%", 100.0 * fraction);
  return text;
}

std::string Ms(double ms) { return Sig(ms, 3); }

}  // namespace kvq::bench
