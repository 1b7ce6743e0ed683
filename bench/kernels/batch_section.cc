// Section 3 of kvq-bench-kernels: batches of many small blocks (vLLM-sized
// pages: 16 tokens x 8 heads x 128) quantized into, and dequantized out of, a
// paged pool through kvq's batch API (kernels/cuda/paged_kernels.h): one
// launch for the whole batch, page tables scattered at random. Also the same
// work as one launch per block, to show what batching saves.

#include <algorithm>
#include <cstring>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/kernels/bench_context.h"
#include "kernels/cuda/paged_kernels.h"
#include "kernels/parallel.h"
#include "kernels/quantize.h"

namespace kvq::bench {
namespace {

constexpr BlockShape kSmallBlock{1, 16, 8, 128};
constexpr uint64_t kPageBytes = 4096;
constexpr uint32_t kCounts[] = {1024, 4096, 16384, 65536};
constexpr uint32_t kMaxPerBlockLaunches = 4096;
constexpr DType kDTypes[] = {DType::kFp16, DType::kBf16, DType::kFp32};
constexpr uint64_t kMiB = uint64_t{1} << 20;

using kvq::cuda::BatchBlock;

}  // namespace

void RunBatchSection(BenchContext& ctx) {
  const Options& opt = ctx.options();
  cudaStream_t stream = ctx.stream();
  const BlockLayout layout =
      *MakeLayout(kSmallBlock, QuantSpec{Granularity::kPerTokenHead, 0});
  const uint64_t ppb = (layout.payload_bytes + kPageBytes - 1) / kPageBytes;
  Table table({"dtype", "blocks", "input MiB", "quantize ms", "GB/s",
               "of copy", "one launch per block ms", "dequantize ms", "GB/s",
               "of copy", "CPU quantize ms", "CPU dequantize ms", "speedup q",
               "speedup dq", "bytes equal"});
  bool all_equal = true;

  for (DType dtype : kDTypes) {
    for (uint32_t count : kCounts) {
      const uint64_t n = uint64_t{count} * layout.elements;
      if (n > opt.max_elements) continue;
      std::cerr << "batch " << DTypeName(dtype) << " x" << count << " ..."
                << std::flush;
      const uint64_t in_block = layout.logical_bytes(dtype);
      const uint64_t pages = uint64_t{count} * ppb;
      const uint64_t set_bytes = 2 * count * in_block + pages * kPageBytes;
      const int slots = RotationSlots(set_bytes, ctx.gpu().l2_bytes);

      const std::vector<uint8_t> host = HostInput(n, dtype, opt.seed ^ count);
      DeviceBuffer in(slots * count * in_block), out(slots * count * in_block);
      DeviceBuffer arena(slots * pages * kPageBytes);
      DeviceBuffer table_dev(slots * pages * sizeof(uint32_t));
      DeviceBuffer blocks_q(slots * count * sizeof(BatchBlock));
      DeviceBuffer blocks_dq(slots * count * sizeof(BatchBlock));
      auto in_at = [&](int s) { return in.get<uint8_t>() + s * count * in_block; };
      auto out_at = [&](int s) { return out.get<uint8_t>() + s * count * in_block; };
      auto arena_at = [&](int s) {
        return arena.get<uint8_t>() + s * pages * kPageBytes;
      };
      auto pages_at = [&](int s) { return table_dev.get<uint32_t>() + s * pages; };
      auto bq_at = [&](int s) { return blocks_q.get<BatchBlock>() + s * count; };
      auto bdq_at = [&](int s) { return blocks_dq.get<BatchBlock>() + s * count; };

      // Page ids: a random permutation of the slot's arena, so every block's
      // pages are scattered and out of order.
      std::vector<uint32_t> page_ids(pages);
      std::iota(page_ids.begin(), page_ids.end(), 0u);
      std::mt19937_64 rng(opt.seed ^ count);
      std::shuffle(page_ids.begin(), page_ids.end(), rng);
      for (int s = 0; s < slots; ++s) {
        CheckCuda(cudaMemcpy(in_at(s), host.data(), count * in_block,
                             cudaMemcpyHostToDevice), "upload");
        CheckCuda(cudaMemcpy(pages_at(s), page_ids.data(), pages * 4,
                             cudaMemcpyHostToDevice), "upload");
        std::vector<BatchBlock> bq(count), bdq(count);
        for (uint32_t i = 0; i < count; ++i) {
          bq[i].src = in_at(s) + i * in_block;
          bq[i].pages = pages_at(s) + i * ppb;
          bdq[i].dst = out_at(s) + i * in_block;
          bdq[i].pages = pages_at(s) + i * ppb;
        }
        CheckCuda(cudaMemcpy(bq_at(s), bq.data(), count * sizeof(BatchBlock),
                             cudaMemcpyHostToDevice), "upload");
        CheckCuda(cudaMemcpy(bdq_at(s), bdq.data(), count * sizeof(BatchBlock),
                             cudaMemcpyHostToDevice), "upload");
      }

      const auto quantize = [&](int s) {
        CheckOk(kvq::cuda::QuantizeBatchToPages(layout, dtype, bq_at(s), count,
                                                arena_at(s), kPageBytes,
                                                nullptr, nullptr, stream),
                "QuantizeBatchToPages");
      };
      const auto q = ctx.Time(quantize, slots);
      ctx.ForEachSlot(quantize, slots);
      const auto dq = ctx.Time([&](int s) {
        CheckOk(kvq::cuda::DequantizeBatchFromPages(layout, dtype, bdq_at(s),
                                                    count, arena_at(s),
                                                    kPageBytes, stream),
                "DequantizeBatchFromPages");
      }, slots);
      double per_block_ms = -1;
      if (count <= kMaxPerBlockLaunches) {
        per_block_ms = ctx.Time([&](int s) {
          for (uint32_t i = 0; i < count; ++i) {
            const kvq::cuda::DevicePages dst{arena_at(s), pages_at(s) + i * ppb,
                                             kPageBytes};
            CheckOk(kvq::cuda::QuantizeToPages(layout, dtype,
                                               in_at(s) + i * in_block, dst,
                                               nullptr, nullptr, stream),
                    "QuantizeToPages");
          }
        }, slots).ms;
      }

      // Bytes: slot 0 poisoned, run, gathered back page by page.
      CheckCuda(cudaMemsetAsync(arena_at(0), 0xa5, pages * kPageBytes, stream),
                "memset");
      CheckCuda(cudaMemsetAsync(out_at(0), 0xff, count * in_block, stream),
                "memset");
      quantize(0);
      CheckOk(kvq::cuda::DequantizeBatchFromPages(layout, dtype, bdq_at(0),
                                                  count, arena_at(0),
                                                  kPageBytes, stream),
              "DequantizeBatchFromPages");
      CheckCuda(cudaStreamSynchronize(stream), "sync");
      std::vector<uint8_t> gpu_arena(pages * kPageBytes), gpu_out(count * in_block);
      CheckCuda(cudaMemcpy(gpu_arena.data(), arena_at(0), gpu_arena.size(),
                           cudaMemcpyDeviceToHost), "download");
      CheckCuda(cudaMemcpy(gpu_out.data(), out_at(0), gpu_out.size(),
                           cudaMemcpyDeviceToHost), "download");

      // CPU fast path: every block through kvq::Quantize, blocks spread over
      // the worker pool (how the CPU backend handles many small blocks).
      const uint64_t pb = layout.payload_bytes;
      std::vector<uint8_t> cpu_payloads(count * pb), cpu_out(count * in_block);
      const double cpu_q = TimeCpuMs([&] {
        ParallelFor(count, 16, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) {
            CheckOk(Quantize(layout, dtype, host.data() + i * in_block,
                             cpu_payloads.data() + i * pb), "CPU Quantize");
          }
        });
      });
      const double cpu_dq = TimeCpuMs([&] {
        ParallelFor(count, 16, [&](size_t begin, size_t end) {
          for (size_t i = begin; i < end; ++i) {
            Dequantize(layout, cpu_payloads.data() + i * pb, dtype,
                       cpu_out.data() + i * in_block);
          }
        });
      });
      bool equal = gpu_out == cpu_out;
      for (uint32_t i = 0; i < count && equal; ++i) {
        for (uint64_t b = 0; b < pb; b += kPageBytes) {
          const uint64_t len = std::min(kPageBytes, pb - b);
          const uint64_t page = page_ids[i * ppb + b / kPageBytes];
          if (std::memcmp(gpu_arena.data() + page * kPageBytes,
                          cpu_payloads.data() + i * pb + b, len) != 0) {
            equal = false;
            break;
          }
        }
      }
      all_equal = all_equal && equal;

      const uint64_t descriptors = count * (sizeof(BatchBlock) + 4 * ppb);
      const uint64_t q_traffic = count * (in_block + pb) + descriptors;
      const uint64_t dq_traffic = count * (pb + in_block) + descriptors;
      const double q_copy = ctx.CopyMs(q_traffic);
      const double dq_copy = ctx.CopyMs(dq_traffic);
      Measurement m;
      m.section = "batch";
      m.case_name = std::string(DTypeName(dtype)) + " x" + std::to_string(count);
      m.kernel = "kvq batch";
      m.dtype = std::string(DTypeName(dtype));
      m.granularity = "per_token_head";
      m.shape = std::to_string(count) + " x " + ShapeName(kSmallBlock);
      m.elements = n;
      m.bytes_equal = equal ? "yes" : "NO";
      m.op = "quantize_to_pages";
      m.ms = q.ms;
      m.min_ms = q.min_ms;
      m.traffic = q_traffic;
      m.copy_ms = q_copy;
      m.cpu_fast_ms = cpu_q;
      m.note = "one launch, page size " + std::to_string(kPageBytes);
      ctx.Record(m);
      m.op = "dequantize_from_pages";
      m.ms = dq.ms;
      m.min_ms = dq.min_ms;
      m.traffic = dq_traffic;
      m.copy_ms = dq_copy;
      m.cpu_fast_ms = cpu_dq;
      ctx.Record(m);
      if (per_block_ms > 0) {
        m.kernel = "kvq per block";
        m.op = "quantize_to_pages";
        m.ms = m.min_ms = per_block_ms;
        m.traffic = q_traffic;
        m.copy_ms = q_copy;
        m.cpu_fast_ms = cpu_q;
        m.note = std::to_string(count) + " launches";
        ctx.Record(m);
      }

      const double q_frac = q_copy / q.ms, dq_frac = dq_copy / dq.ms;
      table.AddRow({m.dtype, Int(count),
                    Sig(static_cast<double>(count * in_block) / kMiB, 4),
                    Ms(q.ms), Sig(GBps(q_traffic, q.ms), 4), Percent(q_frac),
                    per_block_ms > 0 ? Ms(per_block_ms) : "-", Ms(dq.ms),
                    Sig(GBps(dq_traffic, dq.ms), 4), Percent(dq_frac),
                    Ms(cpu_q), Ms(cpu_dq), Sig(cpu_q / q.ms, 3) + "x",
                    Sig(cpu_dq / dq.ms, 3) + "x", equal ? "yes" : "NO"});
      if (count == 4096) {
        ctx.AddTarget({"batch of 4096 blocks 16x8x128 " +
                           std::string(DTypeName(dtype)) +
                           " in one launch >= 70% of copy",
                       "quantize " + Percent(q_frac) + ", dequantize " +
                           Percent(dq_frac),
                       q_frac >= 0.7 && dq_frac >= 0.7});
      }
      std::cerr << " done\n";
    }
  }

  std::ostringstream md;
  md << "## 3. Batches of small blocks into a paged pool\n\n"
     << "Blocks of " << ShapeName(kSmallBlock)
     << " (planes x tokens x heads x head_dim), per-token-head, payload "
     << layout.payload_bytes << " bytes = " << ppb << " pages of "
     << kPageBytes
     << " bytes each, page ids a random permutation of the arena. "
        "`quantize` / `dequantize`: one launch of "
        "QuantizeBatchToPages / DequantizeBatchFromPages for the whole batch; "
        "`one launch per block`: QuantizeToPages called once per block (up "
        "to "
     << kMaxPerBlockLaunches
     << " blocks). Traffic counts values, payloads and the block "
        "descriptors and page tables. CPU: kvq::Quantize per block, blocks "
        "spread over the worker pool. `bytes equal`: every page and every "
        "dequantized value equals the CPU's.\n\n";
  table.WriteMarkdown(md);
  md << "\nAll batches byte-identical to the CPU: "
     << (all_equal ? "**yes**" : "**NO**") << ".\n\n";
  ctx.markdown() += md.str();
}

}  // namespace kvq::bench
