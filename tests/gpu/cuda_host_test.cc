// The host side of the CUDA kernels, which needs no GPU and so runs
// everywhere: the fast division the kernels index with equals '/' and '%',
// the chunking of persistent kernels evens out their CTAs' shares (fixed
// lengths cut shorter, ChunkSteps; per-launch lengths for per-channel
// dequantize, EvenChunkUnits), and
// every entry point refuses bad arguments with INVALID_ARGUMENT naming
// the field, before it touches the device (the pointers below are never
// dereferenced; a launch would fail on a machine without a GPU).

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cuda/fast_divmod.h"
#include "kernels/cuda/paged_kernels.h"
#include "kernels/cuda/quantize_cuda.h"
#include "kernels/cuda/work_split.h"
#include "kernels/format.h"
#include "tests/unit/kernels_test_util.h"

namespace kvq::cuda {
namespace {

using kvq::testing::SeededTest;

class FastDivmodTest : public SeededTest {
 protected:
  void ExpectDivides(uint64_t d, uint32_t n) {
    const FastDivmod div(d);
    uint32_t q, r;
    div.DivMod(n, &q, &r);
    ASSERT_EQ(q, n / d) << n << " / " << d;
    ASSERT_EQ(r, n % d) << n << " % " << d;
    ASSERT_EQ(div.Div(n), n / d) << n << " / " << d;
  }
};

class ChunkStepsTest : public SeededTest {};

TEST_F(ChunkStepsTest, ShortensChunksWhereFixedOnesLeaveATail) {
  // 2048 steps on 396 CTAs: chunks of 4 give 116 CTAs a second chunk (8
  // steps); chunks of 3 leave the busiest 6, as do 2 and 1.
  EXPECT_EQ(BusiestCtaSteps(2048, 1, 4, 396), 8u);
  EXPECT_EQ(ChunkSteps(2048, 1, 4, 396), 3u);
  EXPECT_EQ(BusiestCtaSteps(2048, 1, 3, 396), 6u);
}

TEST_F(ChunkStepsTest, KeepsTheLongestChunksWhenShorterOnesGainNothing) {
  EXPECT_EQ(ChunkSteps(2048, 1, 4, 512), 4u);  // 512 chunks, one each
  // 4096 chunks of 2 take 8 rounds, 16 steps; 8192 of 1 take 16 as well.
  EXPECT_EQ(ChunkSteps(8192, 1, 2, 528), 2u);
}

TEST_F(ChunkStepsTest, SpreadsASmallBlockOverMoreCtas) {
  EXPECT_EQ(ChunkSteps(7, 1, 8, 132), 1u);  // 7 CTAs take a step each
  EXPECT_EQ(ChunkSteps(2, 100, 4, 528), 1u);
}

TEST_F(ChunkStepsTest, ChunksNeverSpanBlocks) {
  // One-step blocks: any chunk is the whole block.
  EXPECT_EQ(ChunkSteps(1, 4096, 4, 396), 1u);
  EXPECT_EQ(BusiestCtaSteps(1, 4096, 4, 396), 11u);
  // Two-step blocks: chunks of 2 at most (1000 of them, 8 rounds: 16 steps,
  // as 2000 chunks of 1 take).
  EXPECT_EQ(ChunkSteps(2, 1000, 4, 132), 2u);
}

TEST_F(ChunkStepsTest,
       PicksTheLongestOfTheChunkLengthsThatLeaveTheFewestSteps) {
  std::mt19937_64& rng = rng_;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t block_steps = 1 + rng() % 5000;
    const uint64_t blocks = 1 + rng() % (i % 2 == 0 ? 4 : 3000);
    const uint64_t max_steps = 1 + rng() % 16;
    const uint64_t ctas = 1 + rng() % 1100;
    const uint64_t chosen = ChunkSteps(block_steps, blocks, max_steps, ctas);
    ASSERT_GE(chosen, 1u);
    ASSERT_LE(chosen, std::max<uint64_t>(1, std::min(max_steps, block_steps)));
    const uint64_t busiest = BusiestCtaSteps(block_steps, blocks, chosen, ctas);
    // The busiest CTA runs at least its share, and never more than with
    // the longest chunks allowed.
    ASSERT_GE(busiest * ctas, block_steps * blocks);
    for (uint64_t s = 1; s <= std::min(max_steps, block_steps); ++s) {
      const uint64_t other = BusiestCtaSteps(block_steps, blocks, s, ctas);
      ASSERT_GE(other, busiest) << block_steps << " " << blocks << " " << s;
      if (s > chosen) {
        ASSERT_GT(other, busiest) << s << " vs " << chosen;
      }
    }
  }
}

TEST_F(ChunkStepsTest, AChunksOwnCostFavorsOneRoundOfLongChunks) {
  // A 256 MiB FP16 plane cut for per-channel quantize's reduce stage: 2048
  // steps in each of 8 strips, 660 CTAs. At 1.2 steps a chunk, one round of
  // 25-step chunks (656 of them) costs 26.2, four rounds of eight-step ones
  // 36.8; at most 16 steps, two rounds of 13 (28.4) beat two of 16 (34.4).
  EXPECT_EQ(ChunkSteps(2048, 8, 1024, 660), 25u);
  EXPECT_EQ(ChunkSteps(2048, 8, 1024, 660, 1.2), 25u);
  EXPECT_EQ(ChunkSteps(2048, 8, 16, 660, 1.2), 13u);
  // A 2 GiB one: free chunks would be one step long (199 rounds); costed,
  // 200-step ones in one round.
  EXPECT_EQ(ChunkSteps(8192, 16, 1024, 660), 1u);
  EXPECT_EQ(ChunkSteps(8192, 16, 1024, 660, 1.2), 200u);

  std::mt19937_64& rng = rng_;
  for (int i = 0; i < 5000; ++i) {
    const uint64_t block_steps = 1 + rng() % 3000;
    const uint64_t blocks = 1 + rng() % 3000;
    const uint64_t max_steps = 1 + rng() % 64;
    const uint64_t ctas = 1 + rng() % 1100;
    const double cost = static_cast<double>(rng() % 400) / 100;
    const uint64_t chosen =
        ChunkSteps(block_steps, blocks, max_steps, ctas, cost);
    auto total = [&](uint64_t s) {
      const uint64_t chunks = blocks * ((block_steps + s - 1) / s);
      return static_cast<double>(
                 BusiestCtaSteps(block_steps, blocks, s, ctas)) +
             cost * static_cast<double>((chunks + ctas - 1) / ctas);
    };
    for (uint64_t s = 1; s <= std::min(max_steps, block_steps); ++s) {
      ASSERT_GE(total(s), total(chosen)) << s << " vs " << chosen;
      if (s > chosen) {
        ASSERT_GT(total(s), total(chosen)) << s;
      }
    }
  }
}

class EvenChunkUnitsTest : public SeededTest {
 protected:
  static constexpr uint64_t kMiB = uint64_t{1} << 20;
  // Per-channel dequantize's rule counted in whole steps of 2048 vectors:
  // today's chunk 2 of them, at least 2, from 64 MiB and 4 rounds.
  static uint64_t PerChannel(uint64_t block_units, uint64_t blocks,
                             uint64_t ctas, uint64_t bytes) {
    return EvenChunkUnits(block_units, blocks, ctas, 2, 2, 4, bytes,
                          64 * kMiB);
  }
  // The rule elementwise.cuh uses: in vectors per thread (256 vectors),
  // today's chunk 16 of them, at least 16 (two steps of 8 loads).
  static uint64_t PerChannelPerThread(uint64_t block_units, uint64_t blocks,
                                      uint64_t ctas, uint64_t bytes) {
    return EvenChunkUnits(block_units, blocks, ctas, 16, 16, 4, bytes,
                          64 * kMiB);
  }
};

TEST_F(EvenChunkUnitsTest, SmallLaunchesKeepTheDefaultChunk) {
  // Under 64 MiB: today's chunks, however many there are.
  EXPECT_EQ(PerChannel(8192, 1, 528, 64 * kMiB - 1), 2u);
  // Fewer chunks than 4 per CTA (2048 on 528 CTAs, one 4096-step block,
  // or 1024 one-chunk blocks): today's chunks.
  EXPECT_EQ(PerChannel(4222, 1, 528, 256 * kMiB), 2u);
  EXPECT_EQ(PerChannel(2, 1024, 528, 256 * kMiB), 2u);
  // A 1 MiB get written to host memory: one block of 64 steps.
  EXPECT_EQ(PerChannel(64, 1, 528, kMiB), 2u);
  // Exactly 4 chunks per CTA: the rule applies.
  EXPECT_EQ(PerChannel(4224, 1, 528, 256 * kMiB), 8u);
}

TEST_F(EvenChunkUnitsTest, LongRowsTakeOneRoundOfEqualChunks) {
  // FP16 per-channel dequantize of 1 x 2048 x 8 x 8192 (256 MiB of
  // values, 8192 steps) on 528 CTAs: 512 chunks of 16 steps, one round,
  // where 4096 chunks of 2 take 8 (7.76 a CTA); the busiest CTA runs 16
  // steps either way, the least whole steps can give (8192 / 528 = 15.5).
  EXPECT_EQ(PerChannel(8192, 1, 528, 256 * kMiB), 16u);
  EXPECT_EQ(BusiestCtaSteps(8192, 1, 16, 528), 16u);
  EXPECT_EQ(BusiestCtaSteps(8192, 1, 2, 528), 16u);
  // 1 x 1048576 x 8 x 128 (2 GiB, 65536 steps): 525 chunks of 125, where
  // 32768 chunks of 2 take 63 rounds, 126 steps.
  EXPECT_EQ(PerChannel(65536, 1, 528, 2048 * kMiB), 125u);
  EXPECT_EQ(BusiestCtaSteps(65536, 1, 2, 528), 126u);
  // Chunks never span blocks: 8 blocks of 2048 steps on 528 CTAs (31.03
  // steps a CTA) take 512 chunks of 32, one round (1024 of 16 take two).
  EXPECT_EQ(PerChannel(2048, 8, 528, 256 * kMiB), 32u);
}

TEST_F(EvenChunkUnitsTest, VectorsPerThreadEvenOutWhatWholeStepsCannot) {
  // 1 x 2048 x 8 x 8192 FP16 (65536 vectors per thread, 124.1 a CTA of
  // 528): one round of 525 chunks of 125 (15 steps and 5 loads), where
  // 4096 chunks of 16 take 8 rounds (128) and whole steps 16 steps (128).
  EXPECT_EQ(PerChannelPerThread(65536, 1, 528, 256 * kMiB), 125u);
  EXPECT_EQ(BusiestCtaSteps(65536, 1, 125, 528), 125u);
  EXPECT_EQ(BusiestCtaSteps(65536, 1, 16, 528), 128u);
  // 1 x 1048576 x 8 x 128 (524288): 528 chunks of 993 against 1008.
  EXPECT_EQ(PerChannelPerThread(524288, 1, 528, 2048 * kMiB), 993u);
  EXPECT_EQ(BusiestCtaSteps(524288, 1, 16, 528), 1008u);
  // Small launches keep 16 (today's 4096 vectors).
  EXPECT_EQ(PerChannelPerThread(65536, 1, 528, 32 * kMiB), 16u);
  EXPECT_EQ(PerChannelPerThread(256, 1, 528, 256 * kMiB), 16u);
  EXPECT_FALSE(FillsTheGridSeveralTimes(65536, 1, 528, 16, 4, 32 * kMiB,
                                        64 * kMiB));
  EXPECT_FALSE(FillsTheGridSeveralTimes(256, 1, 528, 16, 4, 256 * kMiB,
                                        64 * kMiB));
  EXPECT_TRUE(FillsTheGridSeveralTimes(65536, 1, 528, 16, 4, 256 * kMiB,
                                       64 * kMiB));
  // The call-4 rule (elementwise.cuh's kPerChannelShortChunks), ChunkSteps
  // in vectors per thread up to 16: 5 a thread on the same case, 25
  // rounds, the busiest CTA the same 125.
  EXPECT_EQ(ChunkSteps(65536, 1, 16, 528), 5u);
  EXPECT_EQ(BusiestCtaSteps(65536, 1, 5, 528), 125u);
}

TEST_F(EvenChunkUnitsTest, NeverGoesBelowTheFloor) {
  // 4 blocks of 7 steps on 3 CTAs; the busiest CTA runs 10 steps with
  // chunks of 1, 12 with chunks of 2, 3 or 4, 15 with 5, 18 with 6 and 14
  // with whole blocks. At least 2 (or 4) a chunk: the longest of the 12s.
  EXPECT_EQ(EvenChunkUnits(7, 4, 3, 2, 2, 1, 1, 0), 4u);
  EXPECT_EQ(EvenChunkUnits(7, 4, 3, 2, 4, 1, 1, 0), 4u);
  // At least 5: whole blocks beat chunks of 5 and 6.
  EXPECT_EQ(EvenChunkUnits(7, 4, 3, 2, 5, 1, 1, 0), 7u);
  EXPECT_EQ(EvenChunkUnits(7, 4, 3, 2, 1, 1, 1, 0), 1u);
}

TEST_F(EvenChunkUnitsTest, PicksTheLongestOfTheLengthsThatLeaveTheLeast) {
  std::mt19937_64& rng = rng_;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t block_units = 1 + rng() % 5000;
    const uint64_t blocks = 1 + rng() % (i % 2 == 0 ? 4 : 3000);
    const uint64_t ctas = 1 + rng() % 1100;
    const uint64_t min_units = 1 + rng() % 8;
    const uint64_t chosen =
        EvenChunkUnits(block_units, blocks, ctas, 2, min_units, 0, 1, 0);
    ASSERT_GE(chosen, min_units);
    const uint64_t busiest =
        BusiestCtaSteps(block_units, blocks, chosen, ctas);
    ASSERT_GE(busiest * ctas, block_units * blocks);
    // Every length from the floor to past the whole block: none leaves
    // less, and none longer leaves as little.
    for (uint64_t u = min_units; u <= block_units + 1; ++u) {
      const uint64_t other = BusiestCtaSteps(block_units, blocks, u, ctas);
      ASSERT_GE(other, busiest)
          << block_units << " " << blocks << " " << ctas << " " << u;
      if (u > chosen && u <= block_units) {
        ASSERT_GT(other, busiest) << u << " vs " << chosen;
      }
    }
  }
}

TEST_F(FastDivmodTest, EqualsDivisionForEdgeDivisorsAndNumerators) {
  const uint64_t kDivisors[] = {1,
                                2,
                                3,
                                7,
                                255,
                                256,
                                257,
                                768,
                                65535,
                                65536,
                                65537,
                                (1u << 31) - 1,
                                1u << 31,
                                (1u << 31) + 1,
                                0xfffffffeu,
                                0xffffffffu,
                                uint64_t{1} << 32};
  for (const uint64_t d : kDivisors) {
    for (uint32_t n = 0; n < 4096; ++n) ExpectDivides(d, n);
    for (uint32_t k = 0; k < 4096; ++k) ExpectDivides(d, 0xffffffffu - k);
    for (uint64_t m = d; m < (uint64_t{1} << 32); m += d) {  // multiples +-1
      ExpectDivides(d, static_cast<uint32_t>(m - 1));
      ExpectDivides(d, static_cast<uint32_t>(m));
      if (m + 1 < (uint64_t{1} << 32)) {
        ExpectDivides(d, static_cast<uint32_t>(m + 1));
      }
      if (m > (uint64_t{1} << 20)) m += d * (rng_() % 4096);  // thin out
    }
  }
}

TEST_F(FastDivmodTest, EqualsDivisionForRandomDivisorsAndNumerators) {
  for (int t = 0; t < 100000; ++t) {
    const uint64_t d = 1 + rng_() % 0xffffffffu;
    for (int k = 0; k < 16; ++k)
      ExpectDivides(d, static_cast<uint32_t>(rng_()));
  }
}

// Never dereferenced: every call below must fail its host-side checks.
uint8_t* const kAligned = reinterpret_cast<uint8_t*>(uintptr_t{1} << 20);
uint8_t* const kMisaligned = kAligned + 4;
const uint32_t* const kPages = reinterpret_cast<const uint32_t*>(kAligned);

BlockLayout ValidLayout() {
  return *MakeLayout(BlockShape{2, 16, 8, 128},
                     QuantSpec{Granularity::kPerTokenHead});
}

void ExpectInvalid(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(std::string(status.message()).find(field), std::string::npos)
      << "message should name " << field << ": " << status;
}

TEST(CudaArgumentsTest, PageSizeMustBeAPositiveMultipleOf256) {
  const BlockLayout layout = ValidLayout();
  for (const uint64_t page_bytes : {uint64_t{0}, uint64_t{100}, uint64_t{255},
                                    uint64_t{1000}, uint64_t{1} << 31}) {
    SCOPED_TRACE(page_bytes);
    ExpectInvalid(QuantizeToPages(layout, DType::kFp16, kAligned,
                                  DevicePages{kAligned, kPages, page_bytes},
                                  nullptr, nullptr, nullptr),
                  "page_bytes");
    ExpectInvalid(
        DequantizeFromPages(layout, DevicePages{kAligned, kPages, page_bytes},
                            DType::kFp16, kAligned, nullptr),
        "page_bytes");
    ExpectInvalid(
        QuantizeBatchToPages(layout, DType::kFp16, nullptr, 4, kAligned,
                             page_bytes, nullptr, nullptr, nullptr),
        "page_bytes");
  }
}

TEST(CudaArgumentsTest, ArenaMustBeSixteenByteAligned) {
  ExpectInvalid(QuantizeToPages(ValidLayout(), DType::kFp32, kAligned,
                                DevicePages{kMisaligned, kPages, 4096}, nullptr,
                                nullptr, nullptr),
                "arena");
  ExpectInvalid(DequantizeBatchFromPages(ValidLayout(), DType::kFp32, nullptr,
                                         1, nullptr, 4096, nullptr),
                "arena");
}

TEST(CudaArgumentsTest, NullPointersAreNamed) {
  const BlockLayout layout = ValidLayout();
  const DevicePages pages{kAligned, kPages, 4096};
  ExpectInvalid(QuantizeToPages(layout, DType::kBf16, nullptr, pages, nullptr,
                                nullptr, nullptr),
                "src");
  ExpectInvalid(QuantizeToPages(layout, DType::kBf16, kAligned,
                                DevicePages{kAligned, nullptr, 4096}, nullptr,
                                nullptr, nullptr),
                "dst.pages");
  ExpectInvalid(
      DequantizeFromPages(layout, pages, DType::kBf16, nullptr, nullptr),
      "dst");
  ExpectInvalid(QuantizeBatchToPages(layout, DType::kBf16, nullptr, 3, kAligned,
                                     4096, nullptr, nullptr, nullptr),
                "blocks");
  ExpectInvalid(Quantize(layout, DType::kBf16, kAligned, nullptr, nullptr,
                         nullptr, nullptr),
                "payload");
  ExpectInvalid(Dequantize(layout, kAligned, DType::kBf16, nullptr, nullptr),
                "dst");
}

TEST(CudaArgumentsTest, ContiguousPayloadsMustBeSixteenByteAligned) {
  const BlockLayout layout = ValidLayout();
  ExpectInvalid(Quantize(layout, DType::kFp16, kAligned, kMisaligned, nullptr,
                         nullptr, nullptr),
                "payload");
  ExpectInvalid(
      QuantizeWithScales(layout, DType::kFp16, kAligned, kMisaligned, nullptr),
      "payload");
  ExpectInvalid(
      DequantizeBatch(layout, kMisaligned, 2, DType::kFp16, kAligned, nullptr),
      "payloads");
}

TEST(CudaArgumentsTest, LayoutMustBeWhatMakeLayoutReturns) {
  BlockLayout layout = ValidLayout();
  layout.groups += 1;
  ExpectInvalid(Quantize(layout, DType::kFp16, kAligned, kAligned, nullptr,
                         nullptr, nullptr),
                "layout");
  BlockLayout bad_shape = ValidLayout();
  bad_shape.shape.head_dim = 0;
  ExpectInvalid(
      DequantizeFromPages(bad_shape, DevicePages{kAligned, kPages, 4096},
                          DType::kFp16, kAligned, nullptr),
      "shape.head_dim");
}

TEST(CudaArgumentsTest, UnknownDtypeIsRefused) {
  ExpectInvalid(Quantize(ValidLayout(), static_cast<DType>(9), kAligned,
                         kAligned, nullptr, nullptr, nullptr),
                "dtype");
}

TEST(CudaArgumentsTest, EmptyBatchesAreNoOps) {
  const BlockLayout layout = ValidLayout();
  EXPECT_TRUE(QuantizeBatch(layout, DType::kFp16, nullptr, 0, nullptr, nullptr,
                            nullptr, nullptr)
                  .ok());
  EXPECT_TRUE(QuantizeBatchToPages(layout, DType::kFp16, nullptr, 0, kAligned,
                                   4096, nullptr, nullptr, nullptr)
                  .ok());
}

TEST(CudaArgumentsTest, BatchPayloadStrideIsPayloadBytesRoundedUpTo16) {
  for (const BlockShape& shape :
       {BlockShape{1, 1, 1, 1}, BlockShape{2, 3, 5, 13},
        BlockShape{2, 16, 8, 128}}) {
    const BlockLayout layout =
        *MakeLayout(shape, QuantSpec{Granularity::kPerTokenHead});
    const uint64_t stride = BatchPayloadStride(layout);
    EXPECT_EQ(stride % 16, 0u);
    EXPECT_GE(stride, layout.payload_bytes);
    EXPECT_LT(stride, layout.payload_bytes + 16);
  }
}

}  // namespace
}  // namespace kvq::cuda
