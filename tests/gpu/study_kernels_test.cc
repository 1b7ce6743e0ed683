// The paper's four kernel variants (kernels/cuda/study/study_kernels.h) are
// kvq's per-channel quantization, byte for byte: for a T x D FP32 matrix, the
// scales, the INT8 values and the dequantized floats of every variant equal
// kernels/quantize.h's CPU reference for Granularity kPerChannel with
// planes = 1, heads = 1, tokens = T, head_dim = D. Shapes are deliberately not
// multiples of the tile (32), the coarsening run (16) or the vector width
// (16 elements); every output buffer is poisoned first, so an element a
// kernel forgets to write shows up as a mismatch.
//
// Needs a CUDA device; without one each GPU test skips with one line.

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/study/study_kernels.h"
#include "kernels/format.h"
#include "kernels/quantize.h"

namespace kvq::cuda::study {
namespace {

// Why no GPU test can run here, or "" when a device is present.
std::string NoDeviceReason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err);
  }
  if (count == 0) return "no CUDA device";
  return "";
}

#define SKIP_WITHOUT_CUDA_DEVICE()                                        \
  do {                                                                    \
    if (const std::string why = NoDeviceReason(); !why.empty()) {         \
      GTEST_SKIP() << "GPU test skipped: no usable CUDA device (" << why \
                   << ")";                                                \
    }                                                                     \
  } while (false)

#define ASSERT_CUDA_OK(expr)                                          \
  do {                                                                \
    const cudaError_t err_ = (expr);                                  \
    ASSERT_EQ(err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(err_); \
  } while (false)

// Owns a cudaMalloc allocation.
struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DevicePtr = std::unique_ptr<void, DeviceFree>;

DevicePtr DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes == 0 ? 1 : bytes) != cudaSuccess) return nullptr;
  return DevicePtr(p);
}

// A T x D matrix of random FP32 values whose channels have very different
// magnitudes (10^-3..10^3), plus the cases the arithmetic treats specially:
// an all-zero channel (scale 0) and a channel so small that its scale is
// subnormal (quantize divides instead of multiplying by the reciprocal).
std::vector<float> RandomMatrix(StudyShape shape, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-3.0f, 3.0f);
  std::vector<float> magnitude(shape.dims);
  for (float& m : magnitude) m = std::pow(10.0f, exponent(rng));
  if (shape.dims >= 3) {
    magnitude[shape.dims / 2] = 0.0f;
    magnitude[shape.dims - 1] = 1e-40f;  // 1e-40 / 127 is subnormal
  }
  std::vector<float> k(shape.elements());
  for (uint64_t i = 0; i < k.size(); ++i) {
    k[i] = unit(rng) * magnitude[i % shape.dims];
  }
  return k;
}

// kvq's CPU reference for the matrix: payload = int8 values, padding, scales.
struct Reference {
  BlockLayout layout;
  std::vector<uint8_t> payload;
  std::vector<float> dequantized;

  const uint8_t* q() const { return payload.data(); }
  const uint8_t* scales() const {
    return payload.data() + layout.scales_offset;
  }
};

Reference CpuReference(StudyShape shape, const std::vector<float>& k) {
  Reference ref;
  const BlockShape block{1, shape.tokens, 1, shape.dims};
  auto layout = MakeLayout(block, QuantSpec{Granularity::kPerChannel});
  EXPECT_TRUE(layout.ok()) << layout.status();
  ref.layout = *layout;
  ref.payload.assign(ref.layout.payload_bytes, 0);
  const absl::Status s =
      QuantizeReference(ref.layout, DType::kFp32, k.data(), ref.payload.data());
  EXPECT_TRUE(s.ok()) << s;
  ref.dequantized.resize(shape.elements());
  DequantizeReference(ref.layout, ref.payload.data(), DType::kFp32,
                      ref.dequantized.data());
  return ref;
}

// Index of the first differing byte, or -1.
int64_t FirstMismatch(const void* a, const void* b, size_t bytes) {
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < bytes; ++i) {
    if (x[i] != y[i]) return static_cast<int64_t>(i);
  }
  return -1;
}

// T x D shapes, none a multiple of every tile: tails in tokens (tiles of 32,
// runs of 16), in channels (tiles of 32, quads, 16-wide vectors) and in the
// flat element count (16-element vectors).
const StudyShape kShapes[] = {
    {1, 1},     {1, 17},    {2, 3},     {5, 4},      {17, 16},
    {33, 31},   {31, 100},  {65, 128},  {100, 61},   {257, 96},
    {129, 1030}, {1000, 33}, {47, 4104}, {3, 8196},  {4099, 5},
};

class StudyKernelsTest : public ::testing::TestWithParam<Variant> {
 protected:
  StudyKernelsTest() : seed_(std::random_device{}()), rng_(seed_) {}

  Variant variant() const { return GetParam(); }

  // Runs `check` on every shape with fresh data and its reference.
  template <typename Check>
  void ForEachShape(Check check) {
    for (const StudyShape& shape : kShapes) {
      SCOPED_TRACE(::testing::Message()
                   << "variant " << VariantName(variant()) << ", T x D = "
                   << shape.tokens << " x " << shape.dims << ", seed "
                   << seed_);
      const std::vector<float> k = RandomMatrix(shape, rng_);
      const Reference ref = CpuReference(shape, k);
      check(shape, k, ref);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  uint32_t seed_;
  std::mt19937_64 rng_;
};

// Uploads k; allocates poisoned scales (NaN bytes) and q.
struct DeviceMatrix {
  DevicePtr k, scales, q, out;
};

void Upload(StudyShape shape, const std::vector<float>& k, DeviceMatrix* dev) {
  const uint64_t n = shape.elements();
  dev->k = DeviceAlloc(n * sizeof(float));
  dev->scales = DeviceAlloc(shape.dims * sizeof(float));
  dev->q = DeviceAlloc(n);
  dev->out = DeviceAlloc(n * sizeof(float));
  ASSERT_TRUE(dev->k && dev->scales && dev->q && dev->out);
  ASSERT_CUDA_OK(cudaMemcpy(dev->k.get(), k.data(), n * sizeof(float),
                            cudaMemcpyHostToDevice));
  ASSERT_CUDA_OK(cudaMemset(dev->scales.get(), 0xff, shape.dims * sizeof(float)));
  ASSERT_CUDA_OK(cudaMemset(dev->q.get(), 0x5a, n));
  ASSERT_CUDA_OK(cudaMemset(dev->out.get(), 0xff, n * sizeof(float)));
}

template <typename T>
std::vector<T> Download(const DevicePtr& p, uint64_t count) {
  std::vector<T> host(count);
  EXPECT_EQ(cudaMemcpy(host.data(), p.get(), count * sizeof(T),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  return host;
}

TEST_P(StudyKernelsTest, ScalesOnlyKernelEqualsCpuReferenceScales) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ForEachShape([&](StudyShape shape, const std::vector<float>& k,
                   const Reference& ref) {
    DeviceMatrix dev;
    Upload(shape, k, &dev);
    ASSERT_FALSE(HasFatalFailure());
    auto* scales = static_cast<float*>(dev.scales.get());
    ASSERT_TRUE(ComputeChannelScales(variant(), shape,
                                     static_cast<const float*>(dev.k.get()),
                                     scales, nullptr)
                    .ok());
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const auto got = Download<float>(dev.scales, shape.dims);
    EXPECT_EQ(FirstMismatch(got.data(), ref.scales(), 4 * shape.dims), -1);
  });
}

TEST_P(StudyKernelsTest, KernelOnlyQuantizeWithReferenceScalesEqualsCpuBytes) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ForEachShape([&](StudyShape shape, const std::vector<float>& k,
                   const Reference& ref) {
    DeviceMatrix dev;
    Upload(shape, k, &dev);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_CUDA_OK(cudaMemcpy(dev.scales.get(), ref.scales(), 4 * shape.dims,
                              cudaMemcpyHostToDevice));
    ASSERT_TRUE(QuantizeWithScales(variant(), shape,
                                   static_cast<const float*>(dev.k.get()),
                                   static_cast<const float*>(dev.scales.get()),
                                   static_cast<int8_t*>(dev.q.get()), nullptr)
                    .ok());
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const auto got = Download<uint8_t>(dev.q, shape.elements());
    EXPECT_EQ(FirstMismatch(got.data(), ref.q(), shape.elements()), -1);
  });
}

TEST_P(StudyKernelsTest, QuantizeWithOnGpuScalesEqualsCpuPayload) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ForEachShape([&](StudyShape shape, const std::vector<float>& k,
                   const Reference& ref) {
    DeviceMatrix dev;
    Upload(shape, k, &dev);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_TRUE(Quantize(variant(), shape,
                         static_cast<const float*>(dev.k.get()),
                         static_cast<float*>(dev.scales.get()),
                         static_cast<int8_t*>(dev.q.get()), nullptr)
                    .ok());
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const auto q = Download<uint8_t>(dev.q, shape.elements());
    const auto scales = Download<float>(dev.scales, shape.dims);
    EXPECT_EQ(FirstMismatch(q.data(), ref.q(), shape.elements()), -1);
    EXPECT_EQ(FirstMismatch(scales.data(), ref.scales(), 4 * shape.dims), -1);
  });
}

TEST_P(StudyKernelsTest, DequantizeEqualsCpuReferenceFloats) {
  SKIP_WITHOUT_CUDA_DEVICE();
  ForEachShape([&](StudyShape shape, const std::vector<float>& k,
                   const Reference& ref) {
    DeviceMatrix dev;
    Upload(shape, k, &dev);
    ASSERT_FALSE(HasFatalFailure());
    // The reference payload in, so dequantize is checked on its own.
    ASSERT_CUDA_OK(cudaMemcpy(dev.q.get(), ref.q(), shape.elements(),
                              cudaMemcpyHostToDevice));
    ASSERT_CUDA_OK(cudaMemcpy(dev.scales.get(), ref.scales(), 4 * shape.dims,
                              cudaMemcpyHostToDevice));
    ASSERT_TRUE(Dequantize(variant(), shape,
                           static_cast<const int8_t*>(dev.q.get()),
                           static_cast<const float*>(dev.scales.get()),
                           static_cast<float*>(dev.out.get()), nullptr)
                    .ok());
    ASSERT_CUDA_OK(cudaDeviceSynchronize());
    const auto out = Download<float>(dev.out, shape.elements());
    EXPECT_EQ(FirstMismatch(out.data(), ref.dequantized.data(),
                            4 * shape.elements()),
              -1);
  });
}

INSTANTIATE_TEST_SUITE_P(
    AllVariants, StudyKernelsTest, ::testing::ValuesIn(kAllVariants),
    [](const ::testing::TestParamInfo<Variant>& info) {
      return std::string(VariantName(info.param));
    });

// Argument checks happen before any CUDA call, so these run without a GPU.
TEST(StudyKernelsArgumentsTest, EmptyShapeIsInvalidArgumentNamingTheField) {
  float* fake = reinterpret_cast<float*>(uintptr_t{256});
  for (Variant v : kAllVariants) {
    const absl::Status s = ComputeChannelScales(v, StudyShape{0, 8}, fake,
                                                fake, nullptr);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("shape.tokens"), std::string::npos) << s;
    const absl::Status d = Dequantize(v, StudyShape{8, 0},
                                      reinterpret_cast<int8_t*>(fake), fake,
                                      fake, nullptr);
    EXPECT_EQ(d.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.message().find("shape.dims"), std::string::npos) << d;
  }
}

TEST(StudyKernelsArgumentsTest, VectorizedRefusesMisalignedPointers) {
  float* aligned = reinterpret_cast<float*>(uintptr_t{256});
  float* misaligned = reinterpret_cast<float*>(uintptr_t{260});
  const absl::Status s =
      QuantizeWithScales(Variant::kVectorized, StudyShape{4, 4}, misaligned,
                         aligned, reinterpret_cast<int8_t*>(aligned), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("16-byte aligned"), std::string::npos) << s;
}

TEST(StudyKernelsArgumentsTest, VariantNamesRoundTrip) {
  for (Variant v : kAllVariants) {
    auto parsed = ParseVariant(VariantName(v));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, v);
  }
  EXPECT_EQ(ParseVariant("fastest").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvq::cuda::study
