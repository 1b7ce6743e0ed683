// The CUDA kernels on contiguous payloads (kernels/cuda/quantize_cuda.h) are
// kernels/quantize.h's CPU reference, byte for byte: for every dtype and
// granularity, on shapes chosen to reach every kernel path (one-read group
// kernel, two-pass segment reduction, fused and two-pass per-channel,
// element-sized accesses) and sizes that are not multiples of any block or
// vector width. Outputs are poisoned first, twice with different bytes, so an
// element the kernels fail to write shows up.
//
// Needs a CUDA device; without one every test skips with one line.

#include "kernels/cuda/quantize_cuda.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
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

// planes x tokens x heads x head_dim. Together they take every path of
// dispatch.cu for every dtype: head_dim 1 / 7 / 13 / 100 (element-sized
// accesses for some dtypes), 520 / 1000 / 2048 (groups of 65 to 512
// vectors, on both sides of the wide arrangements' limits, not all a power
// of two), groups that fill exactly one CTA's registers (8192 FP32, 16384
// FP16) or exceed them (two-pass), per-channel blocks of
// up to 256 tokens (fused) and taller (two-pass), per-tensor planes on both
// sides of the on-chip limit.
const BlockShape kShapes[] = {
    {1, 1, 1, 1},     {1, 1, 1, 7},     {2, 3, 5, 13},   {2, 17, 3, 96},
    {1, 3, 2, 100},   {2, 16, 8, 128},  {1, 7, 9, 136},  {1, 5, 1, 8192},
    {1, 2, 1, 16384}, {1, 1, 1, 40000}, {2, 300, 2, 64}, {1, 1000, 1, 24},
    {2, 256, 3, 40},  {1, 257, 1, 8},   {3, 33, 1, 7},   {2, 64, 8, 128},
    {1, 4, 2, 520},   {1, 9, 2, 1000},  {2, 5, 3, 2048},
};

// Dequantizes `payload` (a block of `layout`, reference bytes) on the GPU
// into every dtype, each over two differently poisoned outputs, and expects
// the reference values every time: every element written.
void ExpectDequantizeWritesTheReference(const BlockLayout& layout,
                                        const std::vector<uint8_t>& payload) {
  DeviceBuffer device_payload(payload.size());
  device_payload.Upload(payload.data(), payload.size());
  for (const DType out : kvq::testing::kAllDTypes) {
    SCOPED_TRACE(std::string("to ") + std::string(DTypeName(out)));
    const std::vector<uint8_t> expected =
        ReferenceValues(layout, payload.data(), out);
    DeviceBuffer dst(expected.size());
    for (const uint8_t poison : {0xAB, 0x54}) {
      dst.Fill(poison);
      const absl::Status status =
          Dequantize(layout, device_payload.get(), out, dst.get(), nullptr);
      ASSERT_TRUE(status.ok()) << status;
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      ASSERT_EQ(ValuesDiff(expected, dst.Download().data(), out), "");
    }
  }
}

class QuantizeCudaTest : public gpu_testing::DtypeGranularityTest {};

TEST_P(QuantizeCudaTest, QuantizeWritesTheReferencePayloadByteForByte) {
  for (const BlockShape& shape : kShapes) {
    const BlockLayout layout = Layout(shape);
    SCOPED_TRACE(CaseName(layout, dtype()));
    const HostBlock block = RandomBlock(shape, dtype(), rng_);
    const std::vector<uint8_t> expected = ReferencePayload(layout, block);

    DeviceBuffer src(block.bytes().size());
    DeviceBuffer payload(layout.payload_bytes);
    DeviceBuffer flags(8);  // float absmax, uint32 nonfinite
    src.Upload(block.data(), block.bytes().size());
    for (const uint8_t poison : {0xAB, 0x54}) {
      payload.Fill(poison);
      flags.Fill(0xFF);
      ASSERT_CUDA_OK(cudaMemset(flags.get() + 4, 0, 4));
      const absl::Status status = Quantize(
          layout, dtype(), src.get(), payload.get(), flags.get<float>(),
          reinterpret_cast<uint32_t*>(flags.get() + 4), nullptr);
      ASSERT_TRUE(status.ok()) << status;
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      const std::vector<uint8_t> actual = payload.Download();
      ASSERT_EQ(PayloadDiff(layout, expected.data(), actual.data()), "");

      const std::vector<uint8_t> f = flags.Download();
      float absmax;
      uint32_t nonfinite;
      std::memcpy(&absmax, f.data(), 4);
      std::memcpy(&nonfinite, f.data() + 4, 4);
      EXPECT_EQ(absmax, HostAbsmax(block));
      EXPECT_EQ(nonfinite, 0u);
    }
  }
}

TEST_P(QuantizeCudaTest, DequantizeWritesTheReferenceValuesInEveryDtype) {
  for (const BlockShape& shape : kShapes) {
    const BlockLayout layout = Layout(shape);
    SCOPED_TRACE(CaseName(layout, dtype()));
    const HostBlock block = RandomBlock(shape, dtype(), rng_);
    ExpectDequantizeWritesTheReference(layout, ReferencePayload(layout, block));
  }
}

TEST_P(QuantizeCudaTest, QuantizeWithScalesWritesTheValuesOfThoseScales) {
  for (const BlockShape& shape : kShapes) {
    const BlockLayout layout = Layout(shape);
    SCOPED_TRACE(CaseName(layout, dtype()));
    const HostBlock block = RandomBlock(shape, dtype(), rng_);
    const std::vector<uint8_t> expected = ReferencePayload(layout, block);

    // Scales from the reference, values and padding poisoned.
    std::vector<uint8_t> start = expected;
    std::memset(start.data(), 0xAB, layout.scales_offset);
    DeviceBuffer src(block.bytes().size());
    DeviceBuffer payload(layout.payload_bytes);
    src.Upload(block.data(), block.bytes().size());
    payload.Upload(start.data(), start.size());
    const absl::Status status =
        QuantizeWithScales(layout, dtype(), src.get(), payload.get(), nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    ASSERT_EQ(PayloadDiff(layout, expected.data(), payload.Download().data()),
              "");
  }
}

TEST_P(QuantizeCudaTest, PointersNotSixteenByteAlignedStillGiveTheReference) {
  // Offsetting by one element forces element-sized accesses.
  const size_t width = DTypeBytes(dtype());
  for (const BlockShape& shape :
       {BlockShape{2, 16, 8, 128}, BlockShape{1, 300, 1, 32},
        BlockShape{1, 3, 1, 20000}}) {
    const BlockLayout layout = Layout(shape);
    SCOPED_TRACE(CaseName(layout, dtype()));
    const HostBlock block = RandomBlock(shape, dtype(), rng_);
    const std::vector<uint8_t> expected = ReferencePayload(layout, block);

    DeviceBuffer src(block.bytes().size() + width);
    DeviceBuffer payload(layout.payload_bytes);
    src.Upload(block.data(), block.bytes().size(), width);
    payload.Fill(0xAB);
    absl::Status status = Quantize(layout, dtype(), src.get() + width,
                                   payload.get(), nullptr, nullptr, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    ASSERT_EQ(PayloadDiff(layout, expected.data(), payload.Download().data()),
              "");

    const std::vector<uint8_t> values =
        ReferenceValues(layout, expected.data(), dtype());
    DeviceBuffer dst(values.size() + width);
    dst.Fill(0x54);
    status =
        Dequantize(layout, payload.get(), dtype(), dst.get() + width, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    ASSERT_EQ(ValuesDiff(values, dst.Download().data() + width, dtype()), "");
  }
}

TEST_P(QuantizeCudaTest, BatchesOfBlocksBackToBackMatchTheReferencePerBlock) {
  for (const BlockShape& shape :
       {BlockShape{2, 16, 8, 128}, BlockShape{2, 3, 5, 13},
        BlockShape{1, 260, 2, 16}, BlockShape{2, 16, 2, 4096}}) {
    const BlockLayout layout = Layout(shape);
    const uint32_t count = 1 + static_cast<uint32_t>(rng_() % 40);
    SCOPED_TRACE(CaseName(layout, dtype()) + " x" + std::to_string(count));
    const uint64_t in_bytes = layout.logical_bytes(dtype());
    const uint64_t stride = BatchPayloadStride(layout);

    std::vector<HostBlock> blocks;
    std::vector<uint8_t> input(count * in_bytes);
    DeviceBuffer src(count * in_bytes);
    DeviceBuffer payloads(count * stride);
    DeviceBuffer absmax(4 * count);
    DeviceBuffer nonfinite(4);
    for (uint32_t i = 0; i < count; ++i) {
      blocks.push_back(RandomBlock(shape, dtype(), rng_));
      std::memcpy(input.data() + i * in_bytes, blocks.back().data(), in_bytes);
    }
    src.Upload(input.data(), input.size());
    payloads.Fill(0xAB);
    absmax.Fill(0xFF);
    nonfinite.Fill(0);
    absl::Status status =
        QuantizeBatch(layout, dtype(), src.get(), count, payloads.get(),
                      absmax.get<float>(), nonfinite.get<uint32_t>(), nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> actual = payloads.Download();
    const std::vector<uint8_t> maxima = absmax.Download();
    for (uint32_t i = 0; i < count; ++i) {
      SCOPED_TRACE("block " + std::to_string(i));
      const std::vector<uint8_t> expected = ReferencePayload(layout, blocks[i]);
      ASSERT_EQ(
          PayloadDiff(layout, expected.data(), actual.data() + i * stride), "");
      float m;
      std::memcpy(&m, maxima.data() + 4 * i, 4);
      EXPECT_EQ(m, HostAbsmax(blocks[i]));
    }
    EXPECT_EQ(nonfinite.Download(), std::vector<uint8_t>(4, 0));

    // And back, to a dtype picked at random.
    const DType out = kvq::testing::kAllDTypes[rng_() % 3];
    const uint64_t out_bytes = layout.logical_bytes(out);
    DeviceBuffer dst(count * out_bytes);
    dst.Fill(0x54);
    status =
        DequantizeBatch(layout, payloads.get(), count, out, dst.get(), nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> values = dst.Download();
    for (uint32_t i = 0; i < count; ++i) {
      SCOPED_TRACE("block " + std::to_string(i) + " to " +
                   std::string(DTypeName(out)));
      const std::vector<uint8_t> expected =
          ReferenceValues(layout, actual.data() + i * stride, out);
      ASSERT_EQ(ValuesDiff(expected, values.data() + i * out_bytes, out), "");
    }
  }
}

// Channel c of every row in magnitude class c % 3: zeros, values whose
// per-channel scale is subnormal (fp32, bf16; fp16: its own subnormals), and
// normal values, so that one vector of channels mixes every kind of scale.
void FillMixedChannels(HostBlock& block, const BlockShape& shape,
                       std::mt19937_64& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const float tiny = block.dtype() == DType::kFp16 ? 6e-5f : 1e-37f;
  for (uint64_t i = 0; i < block.size(); ++i) {
    const uint32_t c = static_cast<uint32_t>(i % shape.head_dim);
    block.Set(i, c % 3 == 0 ? 0.0f : unit(rng) * (c % 3 == 1 ? tiny : 1.0f));
  }
}

// RandomBlock draws one distribution per block; this takes every one of
// them, halfway values and mixed channels, on shapes that reach every
// quantize kernel (one-read groups, fused per-channel, two-pass with the
// elementwise pass, element-sized accesses), so that each kind of scale
// (zero, subnormal: divided by, normal: multiplied by the reciprocal) meets
// each kernel on every run.
TEST_P(QuantizeCudaTest, EveryDistributionGivesTheReferencePayload) {
  constexpr size_t kDistributions = std::size(kvq::testing::kAllDistributions);
  for (const BlockShape& shape :
       {BlockShape{2, 16, 8, 128}, BlockShape{1, 3, 2, 100},
        BlockShape{2, 300, 2, 64}, BlockShape{1, 1, 1, 40000}}) {
    const BlockLayout layout = Layout(shape);
    for (size_t d = 0; d < kDistributions + 2; ++d) {
      SCOPED_TRACE(CaseName(layout, dtype()) + ", distribution " +
                   std::to_string(d));
      HostBlock block(dtype(), shape.elements());
      if (d < kDistributions) {
        kvq::testing::FillBlock(block, shape,
                                kvq::testing::kAllDistributions[d], rng_);
      } else if (d == kDistributions) {
        gpu_testing::FillHalfwayValues(block, shape, rng_);
      } else {
        FillMixedChannels(block, shape, rng_);
      }
      if (block.size() > shape.head_dim) {  // an all-zero run, not block
        for (uint32_t c = 0; c < shape.head_dim; ++c) block.Set(c, 0.0f);
      }
      const std::vector<uint8_t> expected = ReferencePayload(layout, block);

      DeviceBuffer src(block.bytes().size());
      DeviceBuffer payload(layout.payload_bytes);
      src.Upload(block.data(), block.bytes().size());
      payload.Fill(0xAB);
      const absl::Status status = Quantize(
          layout, dtype(), src.get(), payload.get(), nullptr, nullptr, nullptr);
      ASSERT_TRUE(status.ok()) << status;
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      ASSERT_EQ(PayloadDiff(layout, expected.data(), payload.Download().data()),
                "");
    }
  }
}

TEST_P(QuantizeCudaTest, NanOrInfSetsTheNonFiniteFlagWithoutFailing) {
  const float kBad[] = {std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()};
  for (const BlockShape& shape : kShapes) {
    const BlockLayout layout = Layout(shape);
    SCOPED_TRACE(CaseName(layout, dtype()));
    HostBlock block = RandomBlock(shape, dtype(), rng_);
    const float bad = kBad[rng_() % 3];
    block.Set(rng_() % block.size(), bad);

    DeviceBuffer src(block.bytes().size());
    DeviceBuffer payload(layout.payload_bytes);
    DeviceBuffer nonfinite(4);
    src.Upload(block.data(), block.bytes().size());
    nonfinite.Fill(0);
    const absl::Status status =
        Quantize(layout, dtype(), src.get(), payload.get(), nullptr,
                 nonfinite.get<uint32_t>(), nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    uint32_t flag;
    std::memcpy(&flag, nonfinite.Download().data(), 4);
    EXPECT_NE(flag, 0u) << "input held " << bad;
  }
}

KVQ_INSTANTIATE_FOR_EVERY_DTYPE_AND_GRANULARITY(QuantizeCudaTest);

// GroupQuantize's small-group arrangements (gpu_test_util.h's
// kSmallGroupCases), with token counts that end a block's last chunk in the
// middle of a step (37) or after several chunks (700).
class SmallGroupsTest : public GpuTest {
 protected:
  // A random block of planes x tokens x heads x c.head_dim values quantized
  // on the GPU, with the CPU reference's payload.
  struct Quantized {
    BlockLayout layout;
    std::vector<uint8_t> expected;
    std::unique_ptr<DeviceBuffer> payload;
  };

  // Quantizes a fresh random block into a poisoned payload and expects the
  // reference payload and the block's absmax.
  void QuantizeAndExpectTheReference(const SmallGroupCase& c, uint32_t planes,
                                     uint32_t tokens, uint32_t heads,
                                     DType dtype, Quantized* out) {
    const absl::StatusOr<BlockLayout> layout = c.Layout(planes, tokens, heads);
    ASSERT_TRUE(layout.ok()) << layout.status();
    out->layout = *layout;
    const HostBlock block =
        RandomBlock(BlockShape{planes, tokens, heads, c.head_dim}, dtype, rng_);
    out->expected = ReferencePayload(*layout, block);
    out->payload = std::make_unique<DeviceBuffer>(layout->payload_bytes);
    DeviceBuffer src(block.bytes().size());
    DeviceBuffer absmax(4);
    src.Upload(block.data(), block.bytes().size());
    out->payload->Fill(0xAB);
    absmax.Fill(0xFF);
    const absl::Status status =
        Quantize(*layout, dtype, src.get(), out->payload->get(),
                 absmax.get<float>(), nullptr, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    ASSERT_EQ(PayloadDiff(*layout, out->expected.data(),
                          out->payload->Download().data()),
              "");
    float m;
    std::memcpy(&m, absmax.Download().data(), 4);
    EXPECT_EQ(m, HostAbsmax(block));
  }
};

TEST_F(SmallGroupsTest, EveryArrangementQuantizesAndDequantizesAsTheReference) {
  for (const DType dtype : kvq::testing::kAllDTypes) {
    for (const SmallGroupCase& c : kSmallGroupCases) {
      for (const uint32_t tokens : {37u, 700u}) {
        SCOPED_TRACE(absl::StrCat(std::string(DTypeName(dtype)), " head_dim ", c.head_dim,
                                  " group ", c.group_size, " tokens ",
                                  tokens));
        Quantized q;
        QuantizeAndExpectTheReference(c, 2, tokens, 3, dtype, &q);
        if (HasFatalFailure()) return;

        const std::vector<uint8_t> values =
            ReferenceValues(q.layout, q.expected.data(), dtype);
        DeviceBuffer dst(values.size());
        dst.Fill(0x54);
        const absl::Status status = Dequantize(q.layout, q.payload->get(),
                                               dtype, dst.get(), nullptr);
        ASSERT_TRUE(status.ok()) << status;
        ASSERT_CUDA_OK(cudaDeviceSynchronize());
        ASSERT_EQ(ValuesDiff(values, dst.Download().data(), dtype), "");
      }
    }
  }
}

// Blocks of many more chunks than a launch has CTAs, so that each CTA takes
// chunk after chunk: big enough (about 64 Mi values) that FP16 / BF16
// launches of one-vector lanes take the staged kernel on an H200
// (quantize_groups.cu: at least 10 steps for the busiest CTA; FP16 group32
// there: 4096 steps of 16 Ki values on 396 CTAs, 11 for the busiest),
// whose copies run ahead across chunk ends while each slot's barrier goes
// through its phases. Token counts are odd, so that the last step is
// partial. The absmax is reduced over every chunk. (FP32 and wider lanes
// run direct; EveryArrangement above covers them.)
TEST_F(SmallGroupsTest, CtasThatTakeManyChunksQuantizeAsTheReference) {
  for (const DType dtype : {DType::kFp16, DType::kBf16}) {
    for (const SmallGroupCase c : {SmallGroupCase{128, 32},
                                   SmallGroupCase{64, 0},
                                   SmallGroupCase{24, 0}}) {
      const uint32_t tokens = ((uint32_t{64} << 20) / (8 * c.head_dim)) | 1u;
      SCOPED_TRACE(absl::StrCat(std::string(DTypeName(dtype)), " head_dim ", c.head_dim,
                                " group ", c.group_size, " tokens ", tokens));
      Quantized q;
      QuantizeAndExpectTheReference(c, 1, tokens, 8, dtype, &q);
      if (HasFatalFailure()) return;
    }
  }
}

// Dequantize of single FP32 blocks big enough (at least 2^24 values) for
// PhasedDequantize on GPUs of compute capability 9.0+ (dequantize_phased.cuh:
// rounds of slabs of up to 48 Ki values bulk-copied into shared memory, the
// grid meeting after each round; one slab length per launch, EvenSlabValues
// in multiples of 128 values). Blocks of one, two and three rounds; every
// block ends in a partial slab; head_dim 100 puts group ends
// (per-token-head) and columns (per-channel) across slab ends, and its odd
// token counts leave a tail of under 16 bytes that the kernel reads from
// global memory; group32 fills a slab's scale buffer; per-tensor has one
// scale for every slab; three planes of per-channel switch scale rows
// mid-slab. Every dtype is checked
// (FP16 / BF16 take ElementwiseKernel), over two poisoned outputs.
class PhasedDequantizeTest : public GpuTest {};

TEST_F(PhasedDequantizeTest, BigFp32BlocksWriteTheReferenceValues) {
  struct Case {
    BlockShape shape;
    Granularity granularity;
    uint32_t group_size;
  };
  const Case cases[] = {
      {{1, 671089, 1, 100}, Granularity::kPerTokenHead, 0},  // 3 rounds
      // Just over kPhasedMinValues, the smallest blocks that take it.
      {{1, 167773, 1, 100}, Granularity::kPerTokenHead, 0},  // 1 round
      {{1, 200003, 1, 100}, Granularity::kPerTokenHead, 0},  // 1 round
      {{1, 360001, 1, 96}, Granularity::kGroup, 48},         // 2 rounds
      {{1, 65537, 8, 128}, Granularity::kGroup, 32},
      {{1, 671089, 1, 100}, Granularity::kPerTensor, 0},
      {{1, 671089, 1, 100}, Granularity::kPerChannel, 0},
      {{3, 22371, 1, 1000}, Granularity::kPerChannel, 0},
  };
  for (const Case& c : cases) {
    QuantSpec spec;
    spec.granularity = c.granularity;
    if (c.group_size > 0) spec.group_size = c.group_size;
    const absl::StatusOr<BlockLayout> layout = MakeLayout(c.shape, spec);
    ASSERT_TRUE(layout.ok()) << layout.status();
    SCOPED_TRACE(CaseName(*layout, DType::kFp32));
    const HostBlock block = RandomBlock(c.shape, DType::kFp32, rng_);
    ExpectDequantizeWritesTheReference(*layout,
                                       ReferencePayload(*layout, block));
    if (HasFatalFailure()) return;
  }
}

// Per-channel dequantize of launches big enough for chunks chosen per
// launch (elementwise.cuh: PerChannelChunkUnits, from 64 MiB of values and 4
// chunks of 4096 vectors per CTA), to every dtype. One block of 2 x 1025 x
// 8 x 8200 (128 Mi values: 4105 default chunks of FP16 / BF16 vectors, 8209
// of FP32, at least 4 per CTA on GPUs of up to 1026 CTAs; H200: 528), and
// a batch of 3 blocks of 1 x 1000 x 8 x 4104 (3 x 1002 FP16 chunks, for up
// to 751 CTAs; a chunk never spans blocks). Neither is a multiple of any
// chunk or step (16 FP16 vectors past the big block's last 2048-vector
// step, 1856 past each batch block's), so every block ends in a partial
// step, as do the chunks themselves where their length is not a whole
// number of steps (on 528 CTAs, 5 FP16 vectors a thread for the big block,
// 4 for the batch); channel classes mix zero, subnormal and normal scales
// in each vector. Outputs are poisoned twice, as above.
class PerChannelDequantizeChunksTest : public GpuTest {
 protected:
  static BlockLayout PerChannelLayout(const BlockShape& shape) {
    QuantSpec spec;
    spec.granularity = Granularity::kPerChannel;
    const absl::StatusOr<BlockLayout> layout = MakeLayout(shape, spec);
    EXPECT_TRUE(layout.ok()) << layout.status();
    return layout.ok() ? *layout : BlockLayout{};
  }
};

TEST_F(PerChannelDequantizeChunksTest, BigLaunchesWriteTheReferenceValues) {
  const BlockShape shape{2, 1025, 8, 8200};
  const BlockLayout layout = PerChannelLayout(shape);
  HostBlock block(DType::kFp16, shape.elements());
  FillMixedChannels(block, shape, rng_);
  SCOPED_TRACE(CaseName(layout, DType::kFp16));
  ExpectDequantizeWritesTheReference(layout, ReferencePayload(layout, block));
}

TEST_F(PerChannelDequantizeChunksTest, BigBatchesWriteTheReferencePerBlock) {
  const BlockShape shape{1, 1000, 8, 4104};
  const BlockLayout layout = PerChannelLayout(shape);
  constexpr uint32_t kCount = 3;
  const uint64_t stride = BatchPayloadStride(layout);
  std::vector<uint8_t> payloads(kCount * stride, 0);
  for (uint32_t i = 0; i < kCount; ++i) {
    HostBlock block(DType::kBf16, shape.elements());
    FillMixedChannels(block, shape, rng_);
    const std::vector<uint8_t> p = ReferencePayload(layout, block);
    std::memcpy(payloads.data() + i * stride, p.data(), p.size());
  }
  DeviceBuffer device_payloads(payloads.size());
  device_payloads.Upload(payloads.data(), payloads.size());
  for (const DType out : kvq::testing::kAllDTypes) {
    SCOPED_TRACE(CaseName(layout, out) + " x3");
    const uint64_t out_bytes = layout.logical_bytes(out);
    DeviceBuffer dst(kCount * out_bytes);
    for (const uint8_t poison : {0xAB, 0x54}) {
      dst.Fill(poison);
      const absl::Status status = DequantizeBatch(
          layout, device_payloads.get(), kCount, out, dst.get(), nullptr);
      ASSERT_TRUE(status.ok()) << status;
      ASSERT_CUDA_OK(cudaDeviceSynchronize());
      const std::vector<uint8_t> values = dst.Download();
      for (uint32_t i = 0; i < kCount; ++i) {
        SCOPED_TRACE("block " + std::to_string(i));
        const std::vector<uint8_t> expected =
            ReferenceValues(layout, payloads.data() + i * stride, out);
        ASSERT_EQ(ValuesDiff(expected, values.data() + i * out_bytes, out),
                  "");
      }
    }
  }
}

}  // namespace
}  // namespace kvq::cuda
