// Section 1 of kvq-bench-kernels: the seed paper's shapes (FP32 T x D,
// uniform [-1, 1], per-channel), its four kernel variants and kvq's
// production kernels, kernel-only (the paper's figure) and with the scales
// computed on the GPU, against a same-run device copy and two CPU baselines.

#include <algorithm>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "bench/common/paper_shapes.h"
#include "bench/common/random_fill.h"
#include "bench/kernels/bench_context.h"
#include "bench/kernels/serial_baseline.h"
#include "kernels/cuda/quantize_cuda.h"
#include "kernels/cuda/study/study_kernels.h"
#include "kernels/parallel.h"
#include "kernels/quantize.h"

namespace kvq::bench {
namespace {

namespace study = kvq::cuda::study;

constexpr uint64_t kAlign = 256;
uint64_t RoundUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

std::string ShapeText(const PaperShape& p) {
  return std::to_string(p.tokens) + "x" + std::to_string(p.dims);
}

bool SameBytes(const void* a, const void* b, uint64_t n) {
  return std::memcmp(a, b, n) == 0;
}

// Device buffers of one shape, `slots` sets of them for L2 rotation.
struct PaperBuffers {
  uint64_t n = 0, payload_stride = 0;
  int slots = 1;
  DeviceBuffer k, payload, out;
  float* K(int s) const { return k.get<float>() + s * n; }
  uint8_t* P(int s) const { return payload.get<uint8_t>() + s * payload_stride; }
  float* Out(int s) const { return out.get<float>() + s * n; }
};

struct VariantTimes {
  double scales = 0, quant = 0, quant_with_scales = 0, dequant = 0;
  bool equal = false;
};

}  // namespace

void RunPaperSection(BenchContext& ctx) {
  const Options& opt = ctx.options();
  cudaStream_t stream = ctx.stream();
  const int cpu_threads = WorkerPool::Default().concurrency();

  std::vector<std::string> kernel_only_cols = {"T x D", "paper vectorized"};
  for (study::Variant v : study::kAllVariants) {
    kernel_only_cols.push_back(std::string(study::VariantName(v)));
  }
  kernel_only_cols.insert(kernel_only_cols.end(),
                          {"kvq per-channel", "copy, same bytes",
                           "best study / copy"});
  Table kernel_only(kernel_only_cols);

  std::vector<std::string> with_scales_cols = {"T x D", "paper (no scales)"};
  for (study::Variant v : study::kAllVariants) {
    with_scales_cols.push_back(std::string(study::VariantName(v)));
  }
  with_scales_cols.insert(with_scales_cols.end(),
                          {"kvq per-channel", "kvq per-token-head",
                           "per-token-head / paper", "per-channel / paper"});
  Table with_scales(with_scales_cols);

  Table cpu({"T x D", "paper serial (s)", "serial loop (s)",
             "kvq CPU fast path (ms)", "GPU fastest (ms)",
             "speedup vs serial", "vs paper's serial", "vs CPU fast path",
             "bytes equal"});

  for (const PaperShape& p : kPaperShapes) {
    const std::string name = ShapeText(p);
    if (p.elements() > opt.max_elements) {
      std::cerr << "paper " << name << ": skipped (--max_elements)\n";
      kernel_only.AddRow({name, "skipped: over --max_elements"});
      continue;
    }
    std::cerr << "paper " << name << " ..." << std::flush;
    const uint64_t n = p.elements();
    const uint32_t T = p.tokens, D = p.dims;
    const study::StudyShape shape{T, D};
    const BlockShape block{1, T, 1, D};
    const BlockLayout pc = *MakeLayout(block, {Granularity::kPerChannel});
    const BlockLayout pth = *MakeLayout(block, {Granularity::kPerTokenHead});

    // Host input and the CPU fast path (kvq::Quantize, all threads).
    std::vector<float> x(n);
    FillUniform(x.data(), n, opt.seed ^ n);
    std::vector<uint8_t> cpu_pc(pc.payload_bytes), cpu_pth(pth.payload_bytes);
    std::vector<float> cpu_out(n), cpu_out_pth(n);
    const double cpu_q = TimeCpuMs([&] {
      CheckOk(Quantize(pc, DType::kFp32, x.data(), cpu_pc.data()),
              "CPU Quantize");
    });
    const double cpu_dq = TimeCpuMs(
        [&] { Dequantize(pc, cpu_pc.data(), DType::kFp32, cpu_out.data()); });
    CheckOk(Quantize(pth, DType::kFp32, x.data(), cpu_pth.data()),
            "CPU Quantize");
    Dequantize(pth, cpu_pth.data(), DType::kFp32, cpu_out_pth.data());

    // The serial loop (capped by size unless --full).
    double serial_ms = -1;
    bool serial_equal = true;
    if (n <= opt.serial_max_elements) {
      std::vector<float> scales(D), out(n);
      std::vector<int8_t> q(n);
      serial_ms = TimeCpuMs([&] {
        SerialChannelScales(x.data(), T, D, scales.data());
        SerialQuantize(x.data(), T, D, scales.data(), q.data());
        SerialDequantize(q.data(), T, D, scales.data(), out.data());
      });
      serial_equal = SameBytes(q.data(), cpu_pc.data(), n) &&
                     SameBytes(scales.data(), cpu_pc.data() + pc.scales_offset,
                               4 * D) &&
                     SameBytes(out.data(), cpu_out.data(), 4 * n);
    }

    // Device buffers, rotated when a set fits in L2.
    PaperBuffers b;
    b.n = n;
    b.payload_stride = RoundUp(std::max(pc.payload_bytes, pth.payload_bytes));
    b.slots = RotationSlots(8 * n + b.payload_stride, ctx.gpu().l2_bytes);
    b.k = DeviceBuffer(b.slots * 4 * n);
    b.payload = DeviceBuffer(b.slots * b.payload_stride);
    b.out = DeviceBuffer(b.slots * 4 * n);
    for (int s = 0; s < b.slots; ++s) {
      CheckCuda(cudaMemcpy(b.K(s), x.data(), 4 * n, cudaMemcpyHostToDevice),
                "upload");
    }
    auto scales_at = [&](int s) {
      return reinterpret_cast<float*>(b.P(s) + pc.scales_offset);
    };
    auto q_at = [&](int s) { return reinterpret_cast<int8_t*>(b.P(s)); };

    auto download_equal = [&](const std::vector<uint8_t>& want_payload,
                              uint64_t compare_bytes,
                              const std::vector<float>& want_out) {
      CheckCuda(cudaStreamSynchronize(stream), "sync");
      std::vector<uint8_t> got(compare_bytes);
      std::vector<float> got_out(n);
      CheckCuda(cudaMemcpy(got.data(), b.P(0), compare_bytes,
                           cudaMemcpyDeviceToHost), "download");
      CheckCuda(cudaMemcpy(got_out.data(), b.Out(0), 4 * n,
                           cudaMemcpyDeviceToHost), "download");
      return SameBytes(got.data(), want_payload.data(), compare_bytes) &&
             SameBytes(got_out.data(), want_out.data(), 4 * n);
    };

    Measurement base;
    base.section = "paper";
    base.case_name = name;
    base.dtype = "fp32";
    base.shape = ShapeName(block);
    base.elements = n;

    // The four study variants.
    const uint64_t t_scales = 4 * n + 4 * D;
    const uint64_t t_quant = 4 * n + 4 * D + n;
    const uint64_t t_quant_scales = 9 * n + 8 * D;
    const uint64_t t_dequant = n + 4 * D + 4 * n;
    std::vector<VariantTimes> vt;
    bool all_equal = serial_equal;
    for (study::Variant v : study::kAllVariants) {
      VariantTimes r;
      r.scales = ctx.Time([&](int s) {
        CheckOk(study::ComputeChannelScales(v, shape, b.K(s), scales_at(s),
                                            stream), "study scales");
      }, b.slots).ms;
      // Give every slot its scales, then time the elementwise kernel alone.
      ctx.ForEachSlot([&](int s) {
        CheckOk(study::ComputeChannelScales(v, shape, b.K(s), scales_at(s),
                                            stream), "study scales");
      }, b.slots);
      r.quant = ctx.Time([&](int s) {
        CheckOk(study::QuantizeWithScales(v, shape, b.K(s), scales_at(s),
                                          q_at(s), stream), "study quantize");
      }, b.slots).ms;
      r.quant_with_scales = ctx.Time([&](int s) {
        CheckOk(study::Quantize(v, shape, b.K(s), scales_at(s), q_at(s),
                                stream), "study quantize+scales");
      }, b.slots).ms;
      ctx.ForEachSlot([&](int s) {  // real int8 values in every slot
        CheckOk(study::Quantize(v, shape, b.K(s), scales_at(s), q_at(s),
                                stream), "study quantize+scales");
      }, b.slots);
      r.dequant = ctx.Time([&](int s) {
        CheckOk(study::Dequantize(v, shape, q_at(s), scales_at(s), b.Out(s),
                                  stream), "study dequantize");
      }, b.slots).ms;
      // Check on slot 0: padding zeroed as in the reference (the study
      // kernels write only values and scales), the rest poisoned.
      CheckCuda(cudaMemsetAsync(b.P(0), 0xa5, pc.payload_bytes, stream),
                "memset");
      CheckCuda(cudaMemsetAsync(b.P(0) + n, 0, pc.scales_offset - n, stream),
                "memset");
      CheckCuda(cudaMemsetAsync(b.Out(0), 0xff, 4 * n, stream), "memset");
      CheckOk(study::Quantize(v, shape, b.K(0), scales_at(0), q_at(0), stream),
              "study quantize");
      CheckOk(study::Dequantize(v, shape, q_at(0), scales_at(0), b.Out(0),
                                stream), "study dequantize");
      r.equal = download_equal(cpu_pc, pc.payload_bytes, cpu_out);
      all_equal = all_equal && r.equal;

      Measurement m = base;
      m.kernel = std::string(study::VariantName(v));
      m.granularity = "per_channel";
      m.bytes_equal = r.equal ? "yes" : "NO";
      auto rec = [&](const std::string& op, double ms, uint64_t traffic,
                     const std::string& note) {
        m.op = op;
        m.ms = m.min_ms = ms;
        m.traffic = traffic;
        m.copy_ms = ctx.CopyMs(traffic);
        m.note = note;
        ctx.Record(m);
      };
      rec("scales", r.scales, t_scales, "memset + absmax + finalize");
      rec("quantize_kernel_only", r.quant, t_quant, "scales precomputed");
      rec("quantize_with_scales", r.quant_with_scales, t_quant_scales,
          "input read twice");
      rec("dequantize", r.dequant, t_dequant, "");
      rec("quant+dequant_kernel_only", r.quant + r.dequant, t_quant + t_dequant,
          "the paper's figure");
      m.cpu_serial_ms = serial_ms;
      m.cpu_fast_ms = cpu_q + cpu_dq;
      rec("quant+dequant_with_scales", r.quant_with_scales + r.dequant,
          t_quant_scales + t_dequant, "");
      vt.push_back(r);
    }

    // kvq's production kernels (kvq::cuda), per-channel and per-token-head.
    auto prod_quant = [&](const BlockLayout& layout) {
      return ctx.Time([&](int s) {
        CheckOk(kvq::cuda::Quantize(layout, DType::kFp32, b.K(s), b.P(s),
                                    nullptr, nullptr, stream), "kvq Quantize");
      }, b.slots).ms;
    };
    auto prod_dequant = [&](const BlockLayout& layout) {
      return ctx.Time([&](int s) {
        CheckOk(kvq::cuda::Dequantize(layout, b.P(s), DType::kFp32, b.Out(s),
                                      stream), "kvq Dequantize");
      }, b.slots).ms;
    };
    const double pc_q = prod_quant(pc);
    ctx.ForEachSlot([&](int s) {  // every slot's scales, for the next timing
      CheckOk(kvq::cuda::Quantize(pc, DType::kFp32, b.K(s), b.P(s), nullptr,
                                  nullptr, stream), "kvq Quantize");
    }, b.slots);
    const double pc_qk = ctx.Time([&](int s) {
      CheckOk(kvq::cuda::QuantizeWithScales(pc, DType::kFp32, b.K(s), b.P(s),
                                            stream), "kvq QuantizeWithScales");
    }, b.slots).ms;
    const double pc_dq = prod_dequant(pc);
    // Checks run on slot 0, poisoned first: every payload byte is written.
    auto prod_equal = [&](const BlockLayout& layout,
                          const std::vector<uint8_t>& want_payload,
                          const std::vector<float>& want_out) {
      CheckCuda(cudaMemsetAsync(b.P(0), 0xa5, layout.payload_bytes, stream),
                "memset");
      CheckCuda(cudaMemsetAsync(b.Out(0), 0xff, 4 * n, stream), "memset");
      CheckOk(kvq::cuda::Quantize(layout, DType::kFp32, b.K(0), b.P(0),
                                  nullptr, nullptr, stream), "kvq Quantize");
      CheckOk(kvq::cuda::Dequantize(layout, b.P(0), DType::kFp32, b.Out(0),
                                    stream), "kvq Dequantize");
      return download_equal(want_payload, layout.payload_bytes, want_out);
    };
    const bool pc_equal = prod_equal(pc, cpu_pc, cpu_out);
    const double pth_q = prod_quant(pth);
    ctx.ForEachSlot([&](int s) {  // a whole payload in every slot
      CheckOk(kvq::cuda::Quantize(pth, DType::kFp32, b.K(s), b.P(s), nullptr,
                                  nullptr, stream), "kvq Quantize");
    }, b.slots);
    const double pth_dq = prod_dequant(pth);
    const bool pth_equal = prod_equal(pth, cpu_pth, cpu_out_pth);
    all_equal = all_equal && pc_equal && pth_equal;
    {
      Measurement m = base;
      m.kernel = "kvq";
      m.granularity = "per_channel";
      m.bytes_equal = pc_equal ? "yes" : "NO";
      auto rec = [&](const std::string& op, double ms, uint64_t traffic) {
        m.op = op;
        m.ms = m.min_ms = ms;
        m.traffic = traffic;
        m.copy_ms = ctx.CopyMs(traffic);
        ctx.Record(m);
      };
      const uint64_t q_traffic = QuantizeTraffic(pc, DType::kFp32);
      const uint64_t dq_traffic = DequantizeTraffic(pc, DType::kFp32);
      rec("quantize_with_scales", pc_q, q_traffic);
      rec("quantize_kernel_only", pc_qk, 4 * n + pc.payload_bytes);
      rec("dequantize", pc_dq, dq_traffic);
      rec("quant+dequant_kernel_only", pc_qk + pc_dq,
          4 * n + pc.payload_bytes + dq_traffic);
      m.cpu_serial_ms = serial_ms;
      m.cpu_fast_ms = cpu_q + cpu_dq;
      rec("quant+dequant_with_scales", pc_q + pc_dq, q_traffic + dq_traffic);
      m = base;
      m.kernel = "kvq";
      m.granularity = "per_token_head";
      m.bytes_equal = pth_equal ? "yes" : "NO";
      rec("quantize_with_scales", pth_q, QuantizeTraffic(pth, DType::kFp32));
      rec("dequantize", pth_dq, DequantizeTraffic(pth, DType::kFp32));
      rec("quant+dequant_with_scales", pth_q + pth_dq,
          QuantizeTraffic(pth, DType::kFp32) +
              DequantizeTraffic(pth, DType::kFp32));
    }

    // Table rows.
    const double copy_kernel_only = ctx.CopyMs(t_quant + t_dequant);
    double best_kernel_only = 1e30;
    std::vector<std::string> row = {
        name, p.paper_vectorized_ms > 0 ? Ms(p.paper_vectorized_ms) : "-"};
    for (const auto& r : vt) {
      row.push_back(Ms(r.quant + r.dequant));
      best_kernel_only = std::min(best_kernel_only, r.quant + r.dequant);
    }
    row.push_back(Ms(pc_qk + pc_dq));
    row.push_back(Ms(copy_kernel_only));
    row.push_back(Percent(copy_kernel_only / best_kernel_only));
    kernel_only.AddRow(row);

    row = {name, p.paper_vectorized_ms > 0 ? Ms(p.paper_vectorized_ms) : "-"};
    double gpu_best = pc_q + pc_dq;
    std::string gpu_best_name = "kvq per-channel";
    for (size_t i = 0; i < vt.size(); ++i) {
      const double ms = vt[i].quant_with_scales + vt[i].dequant;
      row.push_back(Ms(ms));
      if (ms < gpu_best) {
        gpu_best = ms;
        gpu_best_name = std::string(study::VariantName(study::kAllVariants[i]));
      }
    }
    row.push_back(Ms(pc_q + pc_dq));
    row.push_back(Ms(pth_q + pth_dq));
    const bool big = n >= uint64_t{131072} * 256 && p.paper_vectorized_ms > 0;
    if (p.paper_vectorized_ms > 0) {
      const double r_pth = (pth_q + pth_dq) / p.paper_vectorized_ms;
      const double r_pc = (pc_q + pc_dq) / p.paper_vectorized_ms;
      row.push_back(Sig(r_pth, 3) + "x");
      row.push_back(Sig(r_pc, 3) + "x");
      if (big) {
        ctx.AddTarget({"paper " + name +
                           ": kvq per-token-head quant (GPU scales) + dequant "
                           "<= 1.1x paper's " + Ms(p.paper_vectorized_ms) +
                           " ms",
                       Ms(pth_q + pth_dq) + " ms = " + Sig(r_pth, 3) + "x",
                       r_pth <= 1.1});
        ctx.AddTarget({"paper " + name +
                           ": kvq per-channel quant (GPU scales) + dequant "
                           "<= 1.5x paper's",
                       Ms(pc_q + pc_dq) + " ms = " + Sig(r_pc, 3) + "x",
                       r_pc <= 1.5});
      }
    } else {
      row.insert(row.end(), {"-", "-"});
    }
    with_scales.AddRow(row);

    cpu.AddRow({name, p.paper_serial_s > 0 ? Sig(p.paper_serial_s, 3) : "-",
                serial_ms >= 0 ? Sig(serial_ms / 1000, 3) : "not run (size cap)",
                Ms(cpu_q + cpu_dq), Ms(gpu_best) + " (" + gpu_best_name + ")",
                serial_ms >= 0 ? Sig(serial_ms / gpu_best, 3) + "x" : "-",
                p.paper_serial_s > 0
                    ? Sig(p.paper_serial_s * 1000 / gpu_best, 3) + "x"
                    : "-",
                Sig((cpu_q + cpu_dq) / gpu_best, 3) + "x",
                all_equal ? "yes" : "NO"});
    std::cerr << " done\n";
  }

  std::ostringstream md;
  md << "## 1. The paper's shapes (FP32, per-channel, uniform [-1, 1])\n\n"
     << "Times are medians in ms of quantize + dequantize (each timed on its "
        "own, then added). The paper's column is its vectorized kernel as "
        "re-run on the lent H100 (issue 3); the other three shapes are ours "
        "(4096x128, 65536x512, 32768x8192).\n\n"
     << "### Kernel only (scales precomputed and not timed: the paper's "
        "figure)\n\n";
  kernel_only.WriteMarkdown(md);
  md << "\n`copy, same bytes`: a device-to-device cudaMemcpy moving the same "
        "read + write bytes (10 bytes per element), measured in this run; "
        "`best study / copy`: copy time over the fastest variant's time "
        "(100% = at the copy limit).\n\n"
     << "### With the scales computed on the GPU (timed)\n\n";
  with_scales.WriteMarkdown(md);
  md << "\nStudy variants: memset + absmax kernel + finalize + quantize, "
        "then dequantize. kvq per-channel reads the matrix twice (absmax, "
        "then quantize); kvq per-token-head (one scale per row of D values) "
        "reads it once. Ratios compare with the paper's scales-excluded "
        "time; issue 3's targets are <= 1.1x (per-token-head) and <= 1.5x "
        "(per-channel) from 131072x256 up.\n\n"
     << "### CPU baselines (same inputs)\n\n";
  cpu.WriteMarkdown(md);
  md << "\n`serial loop`: the paper's kind of CPU code, one thread: "
        "per-channel scales, then quantize, then dequantize "
        "(bench/kernels/serial_baseline.cc), run only up to "
     << opt.serial_max_elements
     << " elements unless --full. `kvq CPU fast path`: kvq::Quantize + "
        "kvq::Dequantize (kernels/quantize.h), "
     << cpu_threads
     << " threads. `GPU fastest`: the fastest GPU quantize (scales on the "
        "GPU) + dequantize above. `bytes equal`: the serial loop, every "
        "study variant and kvq's kernels all produced the CPU reference's "
        "bytes (int8 values, scales and dequantized floats).\n\n";
  ctx.markdown() += md.str();
}

}  // namespace kvq::bench
