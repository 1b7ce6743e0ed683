// Shared state of kvq-bench-kernels' sections: options, the GPU, the CSV and
// markdown being built, and the measurement helpers every section uses.

#ifndef KVQ_BENCH_KERNELS_BENCH_CONTEXT_H_
#define KVQ_BENCH_KERNELS_BENCH_CONTEXT_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/common/report.h"
#include "bench/kernels/device_util.h"
#include "kernels/format.h"

namespace kvq::bench {

struct Options {
  bool all_shapes = false;          // --shapes=all
  int repeats = 30;                 // timed repetitions per GPU measurement
  uint64_t max_elements = uint64_t{1} << 30;
  uint64_t serial_max_elements = uint64_t{131072} * 1024;  // unless --full
  uint64_t seed = 20261125;
};

// One CSV row per measurement (an operation of a kernel on a case).
struct Measurement {
  std::string section, case_name, kernel, dtype, granularity, shape;
  uint64_t elements = 0;
  std::string op;                   // e.g. "quantize", "quant+dequant"
  double ms = 0;                    // median
  double min_ms = 0;
  uint64_t traffic = 0;             // bytes read + written it must move
  double copy_ms = 0;               // D2D copy of the same traffic, same run
  double cpu_serial_ms = -1;        // < 0: not measured
  double cpu_fast_ms = -1;
  std::string bytes_equal;          // "yes", "NO", or "-"
  std::string note;
};

// One of issue 3's performance targets, checked against this run.
struct TargetCheck {
  std::string target;    // what was asked
  std::string measured;  // what this run got
  bool met = false;
};

class BenchContext {
 public:
  BenchContext(Options options, GpuInfo gpu, cudaStream_t stream);

  const Options& options() const { return options_; }
  const GpuInfo& gpu() const { return gpu_; }
  cudaStream_t stream() const { return stream_; }

  // Median (and min) ms of op(slot) over options().repeats repetitions.
  // Slots continue where the previous call left off, so that an operation
  // never starts on the buffers the one before it just pulled into L2.
  struct Timing {
    double ms, min_ms;
  };
  Timing Time(const std::function<void(int slot)>& op, int slots);
  // Runs op(slot) once for every slot (untimed), e.g. to give each slot its
  // scales before a kernel-only timing.
  void ForEachSlot(const std::function<void(int slot)>& op, int slots);
  // The same-run copy time for `traffic` bytes (read + write).
  double CopyMs(uint64_t traffic);

  void Record(const Measurement& m);
  void AddTarget(TargetCheck t) { targets_.push_back(std::move(t)); }
  const std::vector<TargetCheck>& targets() const { return targets_; }
  std::string& markdown() { return markdown_; }
  std::string Csv() const;

 private:
  Options options_;
  GpuInfo gpu_;
  cudaStream_t stream_;
  Table csv_;
  std::string markdown_;
  std::vector<TargetCheck> targets_;
  int next_slot_ = 0;
};

// Median wall time of fn() in ms: one run, and up to 5 when one run is short.
double TimeCpuMs(const std::function<void()>& fn);

// Bytes a quantize of `layout` must move: its input once or twice (groups too
// big to hold on chip are read twice: once for their scales, once to
// quantize; kvq::cuda::QuantizeInputReads says which) plus the payload
// written.
uint64_t QuantizeTraffic(const BlockLayout& layout, DType dtype);
// Bytes a dequantize moves: the payload read and the values written.
uint64_t DequantizeTraffic(const BlockLayout& layout, DType dtype);

// n values uniform in [-1, 1], encoded in `dtype` (round to nearest even).
std::vector<uint8_t> HostInput(uint64_t n, DType dtype, uint64_t seed);

// "2x16x8x128" (planes x tokens x heads x head_dim).
std::string ShapeName(const BlockShape& s);
std::string Percent(double fraction);  // 0.913 -> "91%"
std::string Ms(double ms);             // 3 significant digits

// The sections; each appends its markdown and records its rows.
void RunPaperSection(BenchContext& ctx);
void RunProductionSection(BenchContext& ctx);
void RunBatchSection(BenchContext& ctx);

// One case of section 2 (--case), e.g. "fp16:per_token_head:1x131072x8x128"
// or "bf16:group32:2x4096x8x128": the dtype, the granularity as section 2's
// tables name it, and the shape planes x tokens x heads x head_dim.
struct ProductionCase {
  DType dtype;
  BlockLayout layout;
};
// INVALID_ARGUMENT naming the part that is wrong.
absl::StatusOr<ProductionCase> ParseProductionCase(std::string_view text);
// Measures that case alone as section 2 measures each of its rows (quantize
// and dequantize timed, bytes checked against the CPU), on the input section
// 2's size sweep uses for that many elements, and appends the one-row table.
// Returns whether the GPU's bytes equal the CPU's.
bool RunProductionCase(BenchContext& ctx, const ProductionCase& c);

}  // namespace kvq::bench

#endif  // KVQ_BENCH_KERNELS_BENCH_CONTEXT_H_
