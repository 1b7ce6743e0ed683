// Section 2 of kvq-bench-kernels (--shapes=all): kvq's production kernels
// (kernels/cuda/quantize_cuda.h) over sizes 1 Mi..1 Gi elements, every dtype
// and granularity, and head_dim 64..8192; each against a same-run device
// copy of the bytes it must move and kvq's multi-threaded CPU fast path on
// the same input, with the bytes checked against the CPU's.

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "bench/common/random_fill.h"
#include "bench/kernels/bench_context.h"
#include "kernels/cuda/quantize_cuda.h"
#include "kernels/float_convert.h"
#include "kernels/parallel.h"
#include "kernels/quantize.h"

namespace kvq::bench {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr DType kDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};
constexpr uint32_t kGroupSize = 32;

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::vector<QuantSpec> Specs() {
  return {{Granularity::kPerTokenHead, 0},
          {Granularity::kPerChannel, 0},
          {Granularity::kPerTensor, 0},
          {Granularity::kGroup, kGroupSize}};
}

std::string SpecName(const QuantSpec& s) {
  std::string name(GranularityName(s.granularity));
  if (s.granularity == Granularity::kGroup) name += std::to_string(s.group_size);
  return name;
}

// 1 x T x H x D holding n values: 8 heads, more when T would pass kMaxTokens.
BlockShape SweepShape(uint64_t n, uint32_t head_dim) {
  uint32_t heads = 8;
  while (n / (uint64_t{heads} * head_dim) > kMaxTokens) heads *= 2;
  return BlockShape{1, static_cast<uint32_t>(n / (uint64_t{heads} * head_dim)),
                    heads, head_dim};
}

// Device copies of one input, `slots` sets for L2 rotation.
struct DeviceSet {
  uint64_t in_bytes = 0, payload_stride = 0;
  int slots = 1;
  DeviceBuffer in, payload, out;
  const void* In(int s) const { return in.get<uint8_t>() + s * in_bytes; }
  uint8_t* P(int s) const { return payload.get<uint8_t>() + s * payload_stride; }
  void* Out(int s) const { return out.get<uint8_t>() + s * in_bytes; }
};

DeviceSet Upload(const std::vector<uint8_t>& host, uint64_t max_payload,
                 const GpuInfo& gpu) {
  DeviceSet d;
  d.in_bytes = host.size();
  d.payload_stride = RoundUp(max_payload, 256);
  d.slots = RotationSlots(2 * d.in_bytes + d.payload_stride, gpu.l2_bytes);
  d.in = DeviceBuffer(d.slots * d.in_bytes);
  d.payload = DeviceBuffer(d.slots * d.payload_stride);
  d.out = DeviceBuffer(d.slots * d.in_bytes);
  for (int s = 0; s < d.slots; ++s) {
    CheckCuda(cudaMemcpy(const_cast<void*>(d.In(s)), host.data(), d.in_bytes,
                         cudaMemcpyHostToDevice), "upload");
  }
  return d;
}

// The lowest fraction of copy bandwidth seen for big inputs, per dtype.
struct Worst {
  double fraction = std::numeric_limits<double>::infinity();
  std::string where;
  void See(double f, const std::string& w) {
    if (f < fraction) {
      fraction = f;
      where = w;
    }
  }
};

class ProductionRunner {
 public:
  explicit ProductionRunner(BenchContext& ctx)
      : ctx_(ctx),
        table_({"dtype", "granularity", "P x T x H x D", "input MiB",
                "passes", "quantize ms", "GB/s", "of copy", "dequantize ms",
                "GB/s", "of copy", "CPU quantize ms", "CPU dequantize ms",
                "speedup q", "speedup dq", "bytes equal"}) {}

  // Measures one layout on the input already in `dev` (and `host`).
  void Run(const std::string& section, const BlockLayout& layout, DType dtype,
           const std::vector<uint8_t>& host, const DeviceSet& dev) {
    cudaStream_t stream = ctx_.stream();
    const std::string shape = ShapeName(layout.shape);
    const auto quantize = [&](int s) {
      CheckOk(kvq::cuda::Quantize(layout, dtype, dev.In(s), dev.P(s), nullptr,
                                  nullptr, stream), "kvq Quantize");
    };
    const auto q = ctx_.Time(quantize, dev.slots);
    ctx_.ForEachSlot(quantize, dev.slots);
    const auto dq = ctx_.Time([&](int s) {
      CheckOk(kvq::cuda::Dequantize(layout, dev.P(s), dtype, dev.Out(s),
                                    stream), "kvq Dequantize");
    }, dev.slots);

    // Bytes: slot 0 poisoned, quantized, dequantized, compared with the CPU.
    CheckCuda(cudaMemsetAsync(dev.P(0), 0xa5, layout.payload_bytes, stream),
              "memset");
    CheckCuda(cudaMemsetAsync(dev.Out(0), 0xff, dev.in_bytes, stream),
              "memset");
    quantize(0);
    CheckOk(kvq::cuda::Dequantize(layout, dev.P(0), dtype, dev.Out(0), stream),
            "kvq Dequantize");
    CheckCuda(cudaStreamSynchronize(stream), "sync");
    std::vector<uint8_t> gpu_payload(layout.payload_bytes);
    std::vector<uint8_t> gpu_out(dev.in_bytes);
    CheckCuda(cudaMemcpy(gpu_payload.data(), dev.P(0), gpu_payload.size(),
                         cudaMemcpyDeviceToHost), "download");
    CheckCuda(cudaMemcpy(gpu_out.data(), dev.Out(0), gpu_out.size(),
                         cudaMemcpyDeviceToHost), "download");

    std::vector<uint8_t> cpu_payload(layout.payload_bytes);
    std::vector<uint8_t> cpu_out(dev.in_bytes);
    const double cpu_q = TimeCpuMs([&] {
      CheckOk(Quantize(layout, dtype, host.data(), cpu_payload.data()),
              "CPU Quantize");
    });
    const double cpu_dq = TimeCpuMs(
        [&] { Dequantize(layout, cpu_payload.data(), dtype, cpu_out.data()); });
    const bool equal = gpu_payload == cpu_payload && gpu_out == cpu_out;

    const int passes = kvq::cuda::QuantizeInputReads(layout, dtype);
    const uint64_t q_traffic = QuantizeTraffic(layout, dtype);
    const uint64_t dq_traffic = DequantizeTraffic(layout, dtype);
    const double q_copy = ctx_.CopyMs(q_traffic);
    const double dq_copy = ctx_.CopyMs(dq_traffic);
    Measurement m;
    m.section = section;
    m.case_name = std::string(DTypeName(dtype)) + " " + SpecName(layout.spec) +
                  " " + shape;
    m.kernel = "kvq";
    m.dtype = std::string(DTypeName(dtype));
    m.granularity = SpecName(layout.spec);
    m.shape = shape;
    m.elements = layout.elements;
    m.bytes_equal = equal ? "yes" : "NO";
    m.op = "quantize_with_scales";
    m.ms = q.ms;
    m.min_ms = q.min_ms;
    m.traffic = q_traffic;
    m.copy_ms = q_copy;
    m.cpu_fast_ms = cpu_q;
    m.note = std::to_string(passes) + " pass(es)";
    ctx_.Record(m);
    m.op = "dequantize";
    m.ms = dq.ms;
    m.min_ms = dq.min_ms;
    m.traffic = dq_traffic;
    m.copy_ms = dq_copy;
    m.cpu_fast_ms = cpu_dq;
    m.note = "";
    ctx_.Record(m);

    const double q_frac = q_copy / q.ms, dq_frac = dq_copy / dq.ms;
    if (dev.in_bytes >= 64 * kMiB) {
      worst_q_[dtype].See(q_frac, m.granularity + " " + shape);
      worst_dq_[dtype].See(dq_frac, m.granularity + " " + shape);
    }
    table_.AddRow({m.dtype, m.granularity, shape,
                   Sig(static_cast<double>(dev.in_bytes) / kMiB, 4),
                   Int(passes), Ms(q.ms),
                   Sig(GBps(q_traffic, q.ms), 4), Percent(q_frac), Ms(dq.ms),
                   Sig(GBps(dq_traffic, dq.ms), 4), Percent(dq_frac),
                   Ms(cpu_q), Ms(cpu_dq), Sig(cpu_q / q.ms, 3) + "x",
                   Sig(cpu_dq / dq.ms, 3) + "x", equal ? "yes" : "NO"});
    all_equal_ = all_equal_ && equal;
  }

  // Writes the table (and clears it for the next one).
  void Flush(std::ostringstream& md) {
    table_.WriteMarkdown(md);
    table_ = Table(table_.columns());
  }

  void AddTargets() {
    for (DType t : kDTypes) {
      if (!worst_q_.count(t)) continue;
      const Worst& q = worst_q_[t];
      const Worst& dq = worst_dq_[t];
      ctx_.AddTarget(
          {std::string("every kvq kernel >= 90% of copy for inputs >= 64 MiB, ") +
               std::string(DTypeName(t)),
           "lowest quantize " + Percent(q.fraction) + " (" + q.where +
               "), lowest dequantize " + Percent(dq.fraction) + " (" +
               dq.where + ")",
           q.fraction >= 0.9 && dq.fraction >= 0.9});
    }
  }

  bool all_equal() const { return all_equal_; }

 private:
  BenchContext& ctx_;
  Table table_;
  std::map<DType, Worst> worst_q_, worst_dq_;
  bool all_equal_ = true;
};

// What a row of ProductionRunner's table measures, for the text above it.
std::string RowNotes() {
  std::ostringstream md;
  md << "`quantize` computes the scales on the GPU (kvq::cuda::Quantize). "
        "GB/s count the bytes each kernel must move, read + write: the input "
        "once, or twice when its groups cannot stay on chip (`passes` = 2: "
        "per-channel over more than 256 tokens, per-tensor over a large "
        "plane), plus the payload; `of copy` = same-run device-to-device copy "
        "time of the same bytes / kernel time. CPU: kvq's fast path "
        "(kvq::Quantize / Dequantize), "
     << WorkerPool::Default().concurrency()
     << " threads, same input. `bytes equal`: GPU payload and dequantized "
        "output equal the CPU's.\n\n";
  return md.str();
}

uint64_t MaxPayload(const std::vector<BlockLayout>& layouts) {
  uint64_t m = 0;
  for (const auto& l : layouts) m = std::max(m, l.payload_bytes);
  return m;
}

// text cut at every `sep`.
std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// A whole decimal uint32_t, nothing else.
bool ParseUint32(std::string_view text, uint32_t* value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return ec == std::errc() && ptr == end && !text.empty();
}

// How fast the simplest kernel of each traffic mix runs against the copy,
// with its threads' own stores and with TMA bulk stores: what "of copy" can
// reach for a kernel whose reads and writes differ.
void WriteMixCeilings(BenchContext& ctx, std::ostringstream& md) {
  struct Row {
    TrafficMix mix;
    const char* like;
  };
  const Row rows[] = {
      {{4, 4}, "a copy (as cudaMemcpy, the 'of copy' reference)"},
      {{4, 2}, "FP16 / BF16 quantize (2 bytes in per byte out)"},
      {{4, 1}, "FP32 quantize (4 bytes in per byte out)"},
      {{2, 4}, "FP16 / BF16 dequantize (2 bytes out per byte in)"},
      {{1, 4}, "FP32 dequantize (4 bytes out per byte in)"},
      {{0, 4}, "writing only (cudaMemsetAsync)"},
  };
  md << "### Traffic-mix ceilings\n\n"
        "The simplest streaming kernel of each read:write mix (16-byte or "
        "narrower coalesced loads, 8 in flight a thread, a persistent grid, "
        "no arithmetic to speak of), timed like the rows below: how close to "
        "the copy a kernel of that mix can get on this GPU. `thread stores`: "
        "each thread stores its results (coalesced); `TMA stores`: they are "
        "staged in shared memory and written by one TMA bulk store "
        "(cp.async.bulk) per 2048 items, two in flight per CTA.\n\n";
  Table t({"words read:written", "like", "traffic MiB", "thread stores ms",
           "GB/s", "of copy", "TMA stores ms", "GB/s", "of copy"});
  for (uint64_t traffic : {uint64_t{3} << 30, uint64_t{192} << 20}) {
    const double copy = ctx.CopyMs(traffic);
    for (const Row& r : rows) {
      const std::string name =
          Int(r.mix.read_words) + ":" + Int(r.mix.write_words);
      std::vector<std::string> cells = {name, r.like, Int(traffic >> 20)};
      for (const MixStores stores : {MixStores::kPlain, MixStores::kTmaBulk}) {
        if (stores == MixStores::kTmaBulk &&
            (r.mix.read_words == 0 || ctx.gpu().compute_capability < 90)) {
          cells.insert(cells.end(), {"-", "-", "-"});
          continue;
        }
        const double ms = MixMs(r.mix, stores, traffic, ctx.gpu(),
                                ctx.options().repeats, ctx.stream());
        cells.insert(cells.end(), {Ms(ms), Sig(GBps(traffic, ms), 4),
                                   Percent(copy / ms)});
        Measurement m;
        m.section = "mix";
        m.case_name = name;
        m.kernel = r.mix.read_words == 0 ? "cudaMemsetAsync"
                   : stores == MixStores::kPlain ? "MixKernel"
                                                 : "MixTmaKernel";
        m.op = "stream";
        m.ms = ms;
        m.traffic = traffic;
        m.copy_ms = copy;
        m.note = r.like;
        ctx.Record(m);
      }
      t.AddRow(cells);
    }
  }
  t.WriteMarkdown(md);
  md << "\n";
}

}  // namespace

void RunProductionSection(BenchContext& ctx) {
  const Options& opt = ctx.options();
  ProductionRunner runner(ctx);
  std::ostringstream md;
  md << "## 2. kvq's production kernels: sizes x dtypes x granularities\n\n"
     << "Inputs uniform in [-1, 1], head_dim 128, 8 heads (more when tokens "
        "would pass 2^20), one plane. "
     << RowNotes();
  WriteMixCeilings(ctx, md);
  md << "### Sizes x dtypes x granularities\n\n";

  const std::vector<uint64_t> sizes = {uint64_t{1} << 20, uint64_t{1} << 24,
                                       uint64_t{1} << 27, uint64_t{1} << 30};
  for (uint64_t n : sizes) {
    if (n > opt.max_elements) continue;
    const BlockShape shape = SweepShape(n, 128);
    std::vector<BlockLayout> layouts;
    for (const QuantSpec& spec : Specs()) layouts.push_back(*MakeLayout(shape, spec));
    for (DType dtype : kDTypes) {
      std::cerr << "production " << n << " " << DTypeName(dtype) << " ..."
                << std::flush;
      const std::vector<uint8_t> host = HostInput(n, dtype, opt.seed ^ n);
      const DeviceSet dev = Upload(host, MaxPayload(layouts), ctx.gpu());
      for (const BlockLayout& layout : layouts) {
        runner.Run("production", layout, dtype, host, dev);
      }
      std::cerr << " done\n";
    }
  }
  runner.Flush(md);

  const uint64_t sweep_n = std::min<uint64_t>(uint64_t{1} << 27, opt.max_elements);
  md << "\n### head_dim 64..8192 (FP16, " << sweep_n << " elements)\n\n";
  {
    const DType dtype = DType::kFp16;
    const std::vector<uint8_t> host = HostInput(sweep_n, dtype, opt.seed ^ 7);
    std::vector<BlockLayout> layouts;
    for (uint32_t d = 64; d <= 8192; d *= 2) {
      for (Granularity g : {Granularity::kPerTokenHead, Granularity::kPerChannel}) {
        layouts.push_back(*MakeLayout(SweepShape(sweep_n, d), QuantSpec{g, 0}));
      }
    }
    const DeviceSet dev = Upload(host, MaxPayload(layouts), ctx.gpu());
    std::cerr << "production head_dim sweep ..." << std::flush;
    for (const BlockLayout& layout : layouts) {
      runner.Run("head_dim", layout, dtype, host, dev);
    }
    std::cerr << " done\n";
  }
  runner.Flush(md);
  runner.AddTargets();
  md << "\nAll GPU results byte-identical to the CPU fast path: "
     << (runner.all_equal() ? "**yes**" : "**NO**") << ".\n\n";
  ctx.markdown() += md.str();
}

absl::StatusOr<ProductionCase> ParseProductionCase(std::string_view text) {
  const std::vector<std::string_view> parts = Split(text, ':');
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        "expected DTYPE:GRANULARITY:PxTxHxD (e.g. "
        "fp16:per_token_head:1x131072x8x128), got \"" +
        std::string(text) + "\"");
  }
  absl::StatusOr<DType> dtype = ParseDType(parts[0]);
  if (!dtype.ok()) return dtype.status();

  // Granularities as SpecName prints them: a group's size follows "group".
  QuantSpec spec;
  constexpr std::string_view kGroupPrefix = "group";
  if (parts[1].size() > kGroupPrefix.size() &&
      parts[1].substr(0, kGroupPrefix.size()) == kGroupPrefix) {
    spec.granularity = Granularity::kGroup;
    if (!ParseUint32(parts[1].substr(kGroupPrefix.size()), &spec.group_size)) {
      return absl::InvalidArgumentError(
          "a group granularity is \"group\" and its size, e.g. group" +
          std::to_string(kGroupSize) + ", got \"" + std::string(parts[1]) +
          "\"");
    }
  } else {
    absl::StatusOr<Granularity> g = ParseGranularity(parts[1]);
    if (!g.ok()) return g.status();
    if (*g == Granularity::kGroup) {
      return absl::InvalidArgumentError("group needs its size, e.g. group" +
                                        std::to_string(kGroupSize));
    }
    spec.granularity = *g;
  }

  const std::vector<std::string_view> dims = Split(parts[2], 'x');
  uint32_t d[4] = {};
  bool shape_ok = dims.size() == 4;
  for (size_t i = 0; shape_ok && i < 4; ++i) {
    shape_ok = ParseUint32(dims[i], &d[i]);
  }
  if (!shape_ok) {
    return absl::InvalidArgumentError(
        "shape must be PxTxHxD (planes x tokens x heads x head_dim, e.g. "
        "1x131072x8x128), got \"" +
        std::string(parts[2]) + "\"");
  }
  absl::StatusOr<BlockLayout> layout =
      MakeLayout(BlockShape{d[0], d[1], d[2], d[3]}, spec);
  if (!layout.ok()) return layout.status();
  return ProductionCase{*dtype, *layout};
}

bool RunProductionCase(BenchContext& ctx, const ProductionCase& c) {
  const uint64_t n = c.layout.elements;
  std::cerr << "production case " << DTypeName(c.dtype) << " "
            << SpecName(c.layout.spec) << " " << ShapeName(c.layout.shape)
            << " ..." << std::flush;
  const std::vector<uint8_t> host =
      HostInput(n, c.dtype, ctx.options().seed ^ n);
  const DeviceSet dev = Upload(host, c.layout.payload_bytes, ctx.gpu());
  ProductionRunner runner(ctx);
  runner.Run("case", c.layout, c.dtype, host, dev);
  std::cerr << " done\n";

  std::ostringstream md;
  md << "## 2. kvq's production kernels: one case (--case)\n\n"
     << "Input uniform in [-1, 1] (the size sweep's input for " << n
     << " elements). " << RowNotes();
  runner.Flush(md);
  md << "\n";
  ctx.markdown() += md.str();
  return runner.all_equal();
}

}  // namespace kvq::bench
