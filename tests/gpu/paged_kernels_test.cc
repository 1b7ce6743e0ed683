// The fused paged kernels (kernels/cuda/paged_kernels.h) scatter exactly the
// CPU reference payload into a block's pages and gather it back:
//   - page tables are scattered over a larger arena and out of order, and
//     pages are small (256 B .. 4 KiB) so a payload spans many of them;
//   - the whole arena is compared after every quantize: the pages in the
//     table hold the reference payload, and every other byte (spare pages,
//     the tail of a block's last page) still holds the poison, so a stray
//     write fails the test as surely as a missing one;
//   - batches: many blocks in one call, each with its own page list and
//     absmax, and one large batch of 4096 vLLM-sized pages (2 x 16 x 8 x 128).
//
// Needs a CUDA device; without one every test skips with one line.

#include "kernels/cuda/paged_kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/format.h"
#include "kernels/quantize.h"
#include "tests/gpu/gpu_test_util.h"

namespace kvq::cuda {
namespace {

using gpu_testing::CaseName;
using gpu_testing::DeviceBuffer;
using gpu_testing::GpuTest;
using gpu_testing::HostAbsmax;
using gpu_testing::PayloadDiff;
using gpu_testing::RandomBlock;
using gpu_testing::ReferencePayload;
using gpu_testing::ReferenceValues;
using gpu_testing::kSmallGroupCases;
using gpu_testing::SmallGroupCase;
using gpu_testing::SpecFor;
using gpu_testing::ValuesDiff;
using kvq::testing::HostBlock;

constexpr uint8_t kPoison = 0xAB;

// Page tables for `count` blocks of `payload_bytes` each: distinct pages
// drawn in random order from an arena with spare pages nobody owns.
struct PageTables {
  uint64_t page_bytes = 0;
  uint32_t pages_per_block = 0;
  uint32_t arena_pages = 0;
  std::vector<uint32_t> ids;  // block i's pages at [i * pages_per_block, ...)

  PageTables(uint32_t count, uint64_t payload_bytes, uint64_t page,
             std::mt19937_64& rng)
      : page_bytes(page) {
    pages_per_block =
        static_cast<uint32_t>((payload_bytes + page_bytes - 1) / page_bytes);
    const uint32_t used = count * pages_per_block;
    arena_pages = used + used / 4 + 3;
    std::vector<uint32_t> all(arena_pages);
    std::iota(all.begin(), all.end(), 0u);
    std::shuffle(all.begin(), all.end(), rng);
    ids.assign(all.begin(), all.begin() + used);
  }

  const uint32_t* Of(uint32_t block) const {
    return ids.data() + uint64_t{block} * pages_per_block;
  }

  // Writes `payload` into `arena` (host) where block `block`'s pages are.
  void Scatter(uint32_t block, const std::vector<uint8_t>& payload,
               std::vector<uint8_t>& arena) const {
    for (uint64_t b = 0; b < payload.size(); ++b) {
      arena[uint64_t{Of(block)[b / page_bytes]} * page_bytes + b % page_bytes] =
          payload[b];
    }
  }

  // Reads block `block`'s payload out of `arena` (host).
  std::vector<uint8_t> Gather(uint32_t block, uint64_t payload_bytes,
                              const std::vector<uint8_t>& arena) const {
    std::vector<uint8_t> payload(payload_bytes);
    for (uint64_t b = 0; b < payload_bytes; ++b) {
      payload[b] = arena[uint64_t{Of(block)[b / page_bytes]} * page_bytes +
                         b % page_bytes];
    }
    return payload;
  }
};

// "" if the arenas are equal, else the first differing byte and its page.
std::string ArenaDiff(const std::vector<uint8_t>& expected,
                      const std::vector<uint8_t>& actual, uint64_t page_bytes) {
  for (size_t b = 0; b < expected.size(); ++b) {
    if (expected[b] == actual[b]) continue;
    return "arena byte " + std::to_string(b) + " (page " +
           std::to_string(b / page_bytes) + ", offset " +
           std::to_string(b % page_bytes) + "): expected " +
           std::to_string(int{expected[b]}) + " got " +
           std::to_string(int{actual[b]});
  }
  return "";
}

uint64_t RandomPageBytes(std::mt19937_64& rng) {
  const uint64_t kSizes[] = {256, 512, 768, 1280, 4096};
  return kSizes[rng() % std::size(kSizes)];
}

const BlockShape kShapes[] = {
    {1, 1, 1, 7},    {2, 3, 5, 13},   {2, 17, 3, 96},   {1, 3, 2, 100},
    {2, 16, 8, 128}, {1, 5, 1, 8192}, {1, 2, 1, 16384}, {2, 300, 2, 64},
    {2, 256, 3, 40}, {3, 33, 1, 7},   {2, 64, 8, 128},
};

class PagedKernelsTest : public gpu_testing::DtypeGranularityTest {};

TEST_P(PagedKernelsTest, QuantizeToPagesWritesTheReferenceAndNothingElse) {
  for (const BlockShape& shape : kShapes) {
    const BlockLayout layout = Layout(shape);
    const PageTables tables(1, layout.payload_bytes, RandomPageBytes(rng_),
                            rng_);
    SCOPED_TRACE(CaseName(layout, dtype()) + ", pages of " +
                 std::to_string(tables.page_bytes));
    const HostBlock block = RandomBlock(shape, dtype(), rng_);
    std::vector<uint8_t> expected_arena(
        uint64_t{tables.arena_pages} * tables.page_bytes, kPoison);
    tables.Scatter(0, ReferencePayload(layout, block), expected_arena);

    DeviceBuffer src(block.bytes().size());
    DeviceBuffer arena(expected_arena.size());
    DeviceBuffer pages(4 * tables.ids.size());
    DeviceBuffer flags(8);
    src.Upload(block.data(), block.bytes().size());
    pages.Upload(tables.ids.data(), 4 * tables.ids.size());
    arena.Fill(kPoison);
    flags.Fill(0);
    const absl::Status status = QuantizeToPages(
        layout, dtype(), src.get(),
        DevicePages{arena.get(), pages.get<uint32_t>(), tables.page_bytes},
        flags.get<float>(), reinterpret_cast<uint32_t*>(flags.get() + 4),
        nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> actual = arena.Download();
    const std::vector<uint8_t> expected_payload =
        tables.Gather(0, layout.payload_bytes, expected_arena);
    ASSERT_EQ(
        PayloadDiff(layout, expected_payload.data(),
                    tables.Gather(0, layout.payload_bytes, actual).data()),
        "");
    ASSERT_EQ(ArenaDiff(expected_arena, actual, tables.page_bytes), "");

    const std::vector<uint8_t> f = flags.Download();
    float absmax;
    uint32_t nonfinite;
    std::memcpy(&absmax, f.data(), 4);
    std::memcpy(&nonfinite, f.data() + 4, 4);
    EXPECT_EQ(absmax, HostAbsmax(block));
    EXPECT_EQ(nonfinite, 0u);
  }
}

TEST_P(PagedKernelsTest, DequantizeFromPagesGathersTheReferenceValues) {
  for (const BlockShape& shape : kShapes) {
    const BlockLayout layout = Layout(shape);
    const PageTables tables(1, layout.payload_bytes, RandomPageBytes(rng_),
                            rng_);
    SCOPED_TRACE(CaseName(layout, dtype()) + ", pages of " +
                 std::to_string(tables.page_bytes));
    const HostBlock block = RandomBlock(shape, dtype(), rng_);
    const std::vector<uint8_t> payload = ReferencePayload(layout, block);
    std::vector<uint8_t> host_arena(
        uint64_t{tables.arena_pages} * tables.page_bytes, kPoison);
    tables.Scatter(0, payload, host_arena);

    DeviceBuffer arena(host_arena.size());
    DeviceBuffer pages(4 * tables.ids.size());
    arena.Upload(host_arena.data(), host_arena.size());
    pages.Upload(tables.ids.data(), 4 * tables.ids.size());
    for (const DType out : kvq::testing::kAllDTypes) {
      SCOPED_TRACE(std::string("to ") + std::string(DTypeName(out)));
      const std::vector<uint8_t> expected =
          ReferenceValues(layout, payload.data(), out);
      DeviceBuffer dst(expected.size());
      dst.Fill(0x54);
      const absl::Status status = DequantizeFromPages(
          layout,
          DevicePages{arena.get(), pages.get<uint32_t>(), tables.page_bytes},
          out, dst.get(), nullptr);
      ASSERT_TRUE(status.ok()) << status;
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      ASSERT_EQ(ValuesDiff(expected, dst.Download().data(), out), "");
    }
  }
}

// Quantizes `blocks` as one batch into scattered pages and back, checking the
// whole arena, every block's absmax and every block's dequantized values.
void CheckBatchRoundTrip(const BlockLayout& layout, DType dtype,
                         const std::vector<HostBlock>& blocks,
                         const PageTables& tables, DType out,
                         bool expect_nonfinite) {
  const uint32_t count = static_cast<uint32_t>(blocks.size());
  const uint64_t in_bytes = layout.logical_bytes(dtype);
  const uint64_t out_bytes = layout.logical_bytes(out);
  std::vector<uint8_t> expected_arena(
      uint64_t{tables.arena_pages} * tables.page_bytes, kPoison);
  std::vector<std::vector<uint8_t>> payloads(count);
  for (uint32_t i = 0; i < count; ++i) {
    if (!expect_nonfinite) {
      payloads[i] = ReferencePayload(layout, blocks[i]);
      tables.Scatter(i, payloads[i], expected_arena);
    }
  }

  DeviceBuffer src(count * in_bytes);
  DeviceBuffer dst(count * out_bytes);
  DeviceBuffer arena(expected_arena.size());
  DeviceBuffer pages(4 * tables.ids.size());
  DeviceBuffer list(sizeof(BatchBlock) * count);
  DeviceBuffer absmax(4 * count);
  DeviceBuffer nonfinite(4);
  std::vector<BatchBlock> entries(count);
  // Blocks in reverse order in memory, so list order != address order.
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t slot = count - 1 - i;
    src.Upload(blocks[i].data(), in_bytes, slot * in_bytes);
    entries[i].src = src.get() + slot * in_bytes;
    entries[i].dst = dst.get() + slot * out_bytes;
    entries[i].pages =
        pages.get<uint32_t>() + uint64_t{i} * tables.pages_per_block;
  }
  pages.Upload(tables.ids.data(), 4 * tables.ids.size());
  list.Upload(entries.data(), sizeof(BatchBlock) * count);
  arena.Fill(kPoison);
  absmax.Fill(0xFF);
  nonfinite.Fill(0);
  dst.Fill(0x54);

  absl::Status status =
      QuantizeBatchToPages(layout, dtype, list.get<BatchBlock>(), count,
                           arena.get(), tables.page_bytes, absmax.get<float>(),
                           nonfinite.get<uint32_t>(), nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  uint32_t flag;
  std::memcpy(&flag, nonfinite.Download().data(), 4);
  if (expect_nonfinite) {
    EXPECT_NE(flag, 0u);
    return;
  }
  EXPECT_EQ(flag, 0u);
  const std::vector<uint8_t> actual = arena.Download();
  for (uint32_t i = 0; i < count; ++i) {
    SCOPED_TRACE("block " + std::to_string(i));
    ASSERT_EQ(
        PayloadDiff(layout, payloads[i].data(),
                    tables.Gather(i, layout.payload_bytes, actual).data()),
        "");
  }
  ASSERT_EQ(ArenaDiff(expected_arena, actual, tables.page_bytes), "");
  const std::vector<uint8_t> maxima = absmax.Download();
  for (uint32_t i = 0; i < count; ++i) {
    float m;
    std::memcpy(&m, maxima.data() + 4 * i, 4);
    ASSERT_EQ(m, HostAbsmax(blocks[i])) << "block " << i;
  }

  status = DequantizeBatchFromPages(layout, out, list.get<BatchBlock>(), count,
                                    arena.get(), tables.page_bytes, nullptr);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> values = dst.Download();
  for (uint32_t i = 0; i < count; ++i) {
    SCOPED_TRACE("block " + std::to_string(i) + " to " +
                 std::string(DTypeName(out)));
    const std::vector<uint8_t> expected =
        ReferenceValues(layout, payloads[i].data(), out);
    ASSERT_EQ(
        ValuesDiff(expected, values.data() + (count - 1 - i) * out_bytes, out),
        "");
  }
}

TEST_P(PagedKernelsTest, BatchesScatterEachBlockToItsOwnPages) {
  for (const BlockShape& shape :
       {BlockShape{2, 16, 8, 128}, BlockShape{2, 3, 5, 13},
        BlockShape{1, 260, 2, 16}, BlockShape{2, 16, 2, 4096}}) {
    const BlockLayout layout = Layout(shape);
    const uint32_t count = 2 + static_cast<uint32_t>(rng_() % 60);
    const PageTables tables(count, layout.payload_bytes, RandomPageBytes(rng_),
                            rng_);
    const DType out = kvq::testing::kAllDTypes[rng_() % 3];
    SCOPED_TRACE(CaseName(layout, dtype()) + " x" + std::to_string(count) +
                 ", pages of " + std::to_string(tables.page_bytes));
    std::vector<HostBlock> blocks;
    for (uint32_t i = 0; i < count; ++i) {
      blocks.push_back(RandomBlock(shape, dtype(), rng_));
    }
    CheckBatchRoundTrip(layout, dtype(), blocks, tables, out,
                        /*expect_nonfinite=*/false);
  }
}

TEST_P(PagedKernelsTest, NanOrInfInOneBlockOfABatchSetsTheFlag) {
  for (const BlockShape& shape :
       {BlockShape{2, 16, 8, 128}, BlockShape{1, 300, 1, 8},
        BlockShape{1, 2, 1, 40000}}) {
    const BlockLayout layout = Layout(shape);
    const uint32_t count = 2 + static_cast<uint32_t>(rng_() % 20);
    const PageTables tables(count, layout.payload_bytes, 4096, rng_);
    SCOPED_TRACE(CaseName(layout, dtype()) + " x" + std::to_string(count));
    std::vector<HostBlock> blocks;
    for (uint32_t i = 0; i < count; ++i) {
      blocks.push_back(RandomBlock(shape, dtype(), rng_));
    }
    HostBlock& bad = blocks[rng_() % count];
    bad.Set(rng_() % bad.size(), (rng_() & 1)
                                     ? std::numeric_limits<float>::quiet_NaN()
                                     : -std::numeric_limits<float>::infinity());
    CheckBatchRoundTrip(layout, dtype(), blocks, tables, dtype(),
                        /*expect_nonfinite=*/true);
  }
}

KVQ_INSTANTIATE_FOR_EVERY_DTYPE_AND_GRANULARITY(PagedKernelsTest);

// GroupQuantize's small-group arrangements (gpu_test_util.h's
// kSmallGroupCases) on scattered pages, in a batch whose blocks end
// mid-step, on pages that some groups straddle (40- and 24-byte groups of
// int8 on pages of 256 .. 4 KiB).
class SmallGroupPagesTest : public GpuTest {};

TEST_F(SmallGroupPagesTest, EveryArrangementScattersAndGathersTheReference) {
  for (const DType dtype : kvq::testing::kAllDTypes) {
    for (const SmallGroupCase& c : kSmallGroupCases) {
      const absl::StatusOr<BlockLayout> layout = c.Layout(2, 37, 3);
      ASSERT_TRUE(layout.ok()) << layout.status();
      const uint32_t count = 2 + static_cast<uint32_t>(rng_() % 5);
      const PageTables tables(count, layout->payload_bytes,
                              RandomPageBytes(rng_), rng_);
      SCOPED_TRACE(CaseName(*layout, dtype) + " x" + std::to_string(count) +
                   ", pages of " + std::to_string(tables.page_bytes));
      std::vector<HostBlock> blocks;
      for (uint32_t i = 0; i < count; ++i) {
        blocks.push_back(RandomBlock(layout->shape, dtype, rng_));
      }
      CheckBatchRoundTrip(*layout, dtype, blocks, tables, dtype,
                          /*expect_nonfinite=*/false);
    }
  }
}

class LargePagedBatchTest : public GpuTest {};

TEST_F(LargePagedBatchTest, FourThousandVllmPagesInOneCallMatchTheReference) {
  // A vLLM step's worth: 4096 blocks of 2 x 16 tokens x 8 heads x 128.
  const BlockShape shape{2, 16, 8, 128};
  for (const Granularity g :
       {Granularity::kPerTokenHead, Granularity::kPerChannel}) {
    const DType dtype =
        g == Granularity::kPerTokenHead ? DType::kFp16 : DType::kBf16;
    absl::StatusOr<BlockLayout> layout = MakeLayout(shape, QuantSpec{g});
    ASSERT_TRUE(layout.ok()) << layout.status();
    const uint32_t count = 4096;
    const PageTables tables(count, layout->payload_bytes, 4096, rng_);
    SCOPED_TRACE(CaseName(*layout, dtype) + " x4096");
    std::vector<HostBlock> blocks;
    blocks.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
      blocks.emplace_back(dtype, shape.elements());
      gpu_testing::FillUniformFast(blocks.back(), rng_);
    }
    CheckBatchRoundTrip(*layout, dtype, blocks, tables, dtype,
                        /*expect_nonfinite=*/false);
  }
}

}  // namespace
}  // namespace kvq::cuda
