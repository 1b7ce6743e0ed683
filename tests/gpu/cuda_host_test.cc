// The host side of the CUDA kernels, which needs no GPU and so runs
// everywhere: the fast division the kernels index with equals '/' and '%',
// the chunking of persistent kernels evens out their CTAs' shares (fixed
// lengths cut shorter, ChunkSteps; per-launch lengths for per-channel
// dequantize, PerChannelChunkUnits), and
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

// Per-channel dequantize's chunk (elementwise.cuh's launcher calls
// PerChannelChunkUnits with these arguments): units of 256 vectors (one
// vector per thread), the default 16 (4096 vectors), cut from 64 MiB of
// values and 4 default chunks per CTA.
class PerChannelChunkUnitsTest : public SeededTest {
 protected:
  static constexpr uint64_t kMiB = uint64_t{1} << 20;
  static constexpr uint64_t kUnitVecs = 256;
  static constexpr uint64_t kDefaultUnits = 16;
  // The launcher's block_units: a block's vectors in units, rounded up.
  static constexpr uint64_t BlockUnits(uint64_t vecs_per_block) {
    return (vecs_per_block + kUnitVecs - 1) / kUnitVecs;
  }
  static uint64_t Units(uint64_t block_units, uint64_t blocks, uint64_t ctas,
                        uint64_t bytes, uint64_t min_rounds = 4) {
    return PerChannelChunkUnits(block_units, blocks, ctas, kDefaultUnits,
                                min_rounds, bytes, 64 * kMiB);
  }
};

TEST_F(PerChannelChunkUnitsTest, SmallLaunchesKeepTheDefaultChunk) {
  // 65536 units, where ChunkSteps would pick 5, but under 64 MiB.
  EXPECT_EQ(Units(65536, 1, 528, 64 * kMiB - 1), kDefaultUnits);
  EXPECT_EQ(Units(65536, 1, 528, 32 * kMiB), kDefaultUnits);
  // A 1 MiB FP16 get written to host memory (64 Ki vectors, 256 units):
  // ChunkSteps would spread it over 256 CTAs of one unit each.
  EXPECT_EQ(ChunkSteps(256, 1, kDefaultUnits, 528), 1u);
  EXPECT_EQ(Units(256, 1, 528, kMiB), kDefaultUnits);
  EXPECT_EQ(Units(256, 1, 528, 256 * kMiB), kDefaultUnits);
  // Fewer than 4 default chunks per CTA: 8 blocks of 2600 units are 1304
  // chunks on 528 CTAs (ChunkSteps: 10), one block of 2111 chunks too.
  EXPECT_EQ(ChunkSteps(2600, 8, kDefaultUnits, 528), 10u);
  EXPECT_EQ(Units(2600, 8, 528, 256 * kMiB), kDefaultUnits);
  EXPECT_EQ(Units(2111 * 16, 1, 528, 256 * kMiB), kDefaultUnits);
  // At the thresholds: 2113 chunks of 33800 units (4 a CTA and one over)
  // from 64 MiB are cut (13 units: the busiest CTA 65, not 80); with 5
  // rounds required, or a byte short, they are not.
  EXPECT_EQ(Units(33800, 1, 528, 64 * kMiB), 13u);
  EXPECT_EQ(BusiestCtaSteps(33800, 1, 13, 528), 65u);
  EXPECT_EQ(BusiestCtaSteps(33800, 1, 16, 528), 80u);
  EXPECT_EQ(Units(33800, 1, 528, 64 * kMiB, 5), kDefaultUnits);
  EXPECT_EQ(Units(33800, 1, 528, 64 * kMiB - 1), kDefaultUnits);
}

TEST_F(PerChannelChunkUnitsTest, BigLaunchesTakeChunkSteps) {
  // FP16 per-channel dequantize of 1 x 2048 x 8 x 8192 (256 MiB of values,
  // 8 values a vector) on 528 CTAs (H200, 4 a SM): 65536 units, cut into
  // 13108 chunks of 5, 25 rounds, the busiest CTA 125 units where the
  // default's 4096 chunks (7.76 a CTA) give it 128.
  const uint64_t fp16_units = BlockUnits(uint64_t{2048} * 8 * 8192 / 8);
  EXPECT_EQ(fp16_units, 65536u);
  EXPECT_EQ(Units(fp16_units, 1, 528, 256 * kMiB),
            ChunkSteps(fp16_units, 1, kDefaultUnits, 528));
  EXPECT_EQ(Units(fp16_units, 1, 528, 256 * kMiB), 5u);
  EXPECT_EQ(BusiestCtaSteps(fp16_units, 1, 5, 528), 125u);
  EXPECT_EQ(BusiestCtaSteps(fp16_units, 1, kDefaultUnits, 528), 128u);
  // FP32 1 x 131072 x 8 x 128 (512 MiB, 4 values a vector) on 264 CTAs
  // (2 a SM): 131072 units in chunks of 7, the busiest CTA 497, not 512.
  const uint64_t fp32_units = BlockUnits(uint64_t{131072} * 8 * 128 / 4);
  EXPECT_EQ(Units(fp32_units, 1, 264, 512 * kMiB), 7u);
  EXPECT_EQ(BusiestCtaSteps(fp32_units, 1, 7, 264), 497u);
  EXPECT_EQ(BusiestCtaSteps(fp32_units, 1, kDefaultUnits, 264), 512u);
  // Blocks whose vectors are no whole number of units: one of 2 x 1025 x
  // 8 x 8200 FP16 values (65665 units), a batch of 3 of 1 x 1000 x 8 x
  // 4104 (16032 each), as quantize_cuda_test's big launches.
  EXPECT_EQ(BlockUnits(uint64_t{2} * 1025 * 8 * 8200 / 8), 65665u);
  EXPECT_EQ(Units(65665, 1, 528, uint64_t{2} * 1025 * 8 * 8200 * 2), 5u);
  EXPECT_EQ(BlockUnits(uint64_t{1000} * 8 * 4104 / 8), 16032u);
  EXPECT_EQ(Units(16032, 3, 528, uint64_t{3} * 1000 * 8 * 4104 * 2), 4u);
}

TEST_F(PerChannelChunkUnitsTest, StaysBetweenOneAndTheDefault) {
  std::mt19937_64& rng = rng_;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t block_units = 1 + rng() % 200000;
    const uint64_t blocks = 1 + rng() % (i % 2 == 0 ? 4 : 3000);
    const uint64_t ctas = 1 + rng() % 1100;
    const uint64_t default_units = 1 + rng() % 32;
    const uint64_t min_rounds = rng() % 6;
    const uint64_t bytes = rng() % (512 * kMiB);
    const uint64_t min_bytes = rng() % (128 * kMiB);
    const uint64_t chosen =
        PerChannelChunkUnits(block_units, blocks, ctas, default_units,
                             min_rounds, bytes, min_bytes);
    ASSERT_GE(chosen, 1u);
    ASSERT_LE(chosen, default_units);
    if (FillsTheGridSeveralTimes(block_units, blocks, ctas, default_units,
                                 min_rounds, bytes, min_bytes)) {
      ASSERT_EQ(chosen,
                ChunkSteps(block_units, blocks, default_units, ctas));
    } else {
      ASSERT_EQ(chosen, default_units);
    }
  }
}

TEST(FillsTheGridSeveralTimesTest, NeedsTheBytesAndTheRounds) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  EXPECT_FALSE(FillsTheGridSeveralTimes(65536, 1, 528, 16, 4, 32 * kMiB,
                                        64 * kMiB));
  EXPECT_FALSE(FillsTheGridSeveralTimes(256, 1, 528, 16, 4, 256 * kMiB,
                                        64 * kMiB));
  EXPECT_TRUE(FillsTheGridSeveralTimes(65536, 1, 528, 16, 4, 256 * kMiB,
                                       64 * kMiB));
  // Exactly 4 chunks a CTA (2112 on 528) and exactly 64 MiB: enough; the
  // chunks are counted per block (a block's last chunk is whole).
  EXPECT_TRUE(FillsTheGridSeveralTimes(2112 * 16, 1, 528, 16, 4, 64 * kMiB,
                                       64 * kMiB));
  EXPECT_FALSE(FillsTheGridSeveralTimes(2111 * 16, 1, 528, 16, 4,
                                        64 * kMiB, 64 * kMiB));
  EXPECT_TRUE(FillsTheGridSeveralTimes(17, 1056, 528, 16, 4, 64 * kMiB,
                                       64 * kMiB));
}

TEST_F(ChunkStepsTest, EvenSlabsFillEveryRoundAndKeepTheFewestRounds) {
  // The H200's phased grid: 528 CTAs, at most 49152 values a slab, slabs
  // in multiples of 128 values. 2^24 values: 1 round; 2^25: 2; 2^28: 11;
  // 528 x 49152: 1, of full slabs.
  EXPECT_EQ(EvenSlabValues(uint64_t{1} << 24, 528, 49152, 128), 31872u);
  EXPECT_EQ(EvenSlabValues(uint64_t{1} << 25, 528, 49152, 128), 31872u);
  EXPECT_EQ(EvenSlabValues(uint64_t{1} << 28, 528, 49152, 128), 46336u);
  EXPECT_EQ(EvenSlabValues(uint64_t{1} << 28, 528, 49152, 16), 46224u);
  EXPECT_EQ(EvenSlabValues(528 * 49152, 528, 49152, 128), 49152u);
  for (int trial = 0; trial < 2000; ++trial) {
    const uint64_t values = Uniform(1, uint64_t{1} << 33);
    const uint64_t ctas = Uniform(1, 1024);
    const uint64_t align = uint64_t{1} << Uniform(0, 6);
    const uint64_t max_slab = align * Uniform(1, 4096);
    SCOPED_TRACE(::testing::Message() << values << " values, " << ctas
                                    << " CTAs, max " << max_slab << " / "
                                    << align);
    const uint64_t slab = EvenSlabValues(values, ctas, max_slab, align);
    ASSERT_GE(slab, 1u);
    EXPECT_LE(slab, max_slab);
    EXPECT_EQ(slab % align, 0u);
    const uint64_t rounds_at_max =
        (values + ctas * max_slab - 1) / (ctas * max_slab);
    const uint64_t slabs = (values + slab - 1) / slab;
    // As few rounds as the longest slabs need ...
    EXPECT_EQ((slabs + ctas - 1) / ctas, rounds_at_max);
    // ... and no slab shorter by `align` would still cover the values in
    // them.
    if (slab > align) {
      EXPECT_GT(values, (slab - align) * rounds_at_max * ctas);
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
