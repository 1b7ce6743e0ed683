// Request validation: wire headers become kvq types, and every refusal names
// the field as the client wrote it.

#include "server/service/header_validation.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/service_test_util.h"

namespace kvq {
namespace {

using ::kvq::service_testing::kAllDTypes;
using ::kvq::service_testing::kAllGranularities;
using ::kvq::service_testing::SeededTest;
using ::kvq::service_testing::WireHeader;
using ::testing::HasSubstr;

class HeaderValidationTest : public SeededTest {};

TEST_F(HeaderValidationTest, ValidHeaderBecomesKvqTypesWithItsLayout) {
  for (DType dtype : kAllDTypes) {
    for (Granularity granularity : kAllGranularities) {
      const BlockShape shape{static_cast<uint32_t>(Uniform(1, 8)),
                             static_cast<uint32_t>(Uniform(1, 64)),
                             static_cast<uint32_t>(Uniform(1, 8)),
                             8 * static_cast<uint32_t>(Uniform(1, 32))};
      const QuantSpec spec{granularity,
                           granularity == Granularity::kGroup ? 8u : 0u};
      absl::StatusOr<PutHeader> header =
          ValidatePutHeader(WireHeader("tenant/model-7", "k", dtype, shape, spec));
      ASSERT_TRUE(header.ok()) << header.status();
      EXPECT_EQ(header->ns, "tenant/model-7");
      EXPECT_EQ(header->key, "k");
      EXPECT_EQ(header->dtype, dtype);
      absl::StatusOr<BlockLayout> expected = MakeLayout(shape, spec);
      ASSERT_TRUE(expected.ok());
      EXPECT_EQ(header->layout.shape, shape);
      EXPECT_EQ(header->layout.spec, spec);
      EXPECT_EQ(header->layout.payload_bytes, expected->payload_bytes);
      EXPECT_EQ(header->logical_bytes(), shape.elements() * DTypeBytes(dtype));
    }
  }
}

TEST_F(HeaderValidationTest, UnspecifiedGranularityAndFormatMeanTheDefaults) {
  v1::BlockHeader wire = WireHeader("", "k", DType::kFp16, {2, 4, 2, 8});
  wire.clear_quantization();
  absl::StatusOr<PutHeader> header = ValidatePutHeader(wire);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->layout.spec.granularity, Granularity::kPerTokenHead);
  EXPECT_EQ(header->layout.spec.format, Format::kInt8Symmetric);
}

TEST_F(HeaderValidationTest, ToWireHeaderRoundTripsThroughValidation) {
  const BlockShape shape{3, 5, 2, 24};
  const QuantSpec spec{Granularity::kGroup, 6};
  absl::StatusOr<BlockLayout> layout = MakeLayout(shape, spec);
  ASSERT_TRUE(layout.ok());
  for (DType dtype : kAllDTypes) {
    absl::StatusOr<PutHeader> back =
        ValidatePutHeader(ToWireHeader("ns", "key", dtype, *layout));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->dtype, dtype);
    EXPECT_EQ(back->layout.shape, shape);
    EXPECT_EQ(back->layout.spec, spec);
  }
}

TEST_F(HeaderValidationTest, NamespaceIsAtMost128PrintableBytes) {
  EXPECT_TRUE(ValidateNamespace("", "namespace").ok());
  std::string printable(kMaxNamespaceBytes, ' ');
  for (char& c : printable) c = static_cast<char>(Uniform(0x20, 0x7e));
  EXPECT_TRUE(ValidateNamespace(printable, "namespace").ok());

  absl::Status too_long = ValidateNamespace(printable + "x", "namespace");
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.message(), HasSubstr("namespace must be at most 128"));

  std::string bad = printable.substr(0, 10);
  bad[Uniform(0, 9)] = static_cast<char>(Uniform(0, 1) ? Uniform(0, 0x1f)
                                                        : Uniform(0x7f, 0xff));
  absl::Status unprintable = ValidateNamespace(bad, "header.namespace");
  EXPECT_EQ(unprintable.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unprintable.message(),
              HasSubstr("header.namespace must be printable ASCII"));
}

TEST_F(HeaderValidationTest, KeyIsOneTo1024BytesAndTheMessageNamesTheField) {
  EXPECT_TRUE(ValidateKey(std::string(1, '\0'), "keys[0]").ok());
  EXPECT_TRUE(ValidateKey(std::string(kMaxKeyBytes, '\xff'), "keys[0]").ok());
  absl::Status empty = ValidateKey("", "keys[3]");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.message(), HasSubstr("keys[3] must be 1 to 1024 bytes, got 0"));
  absl::Status long_key =
      ValidateKey(std::string(kMaxKeyBytes + Uniform(1, 5000), 'k'), "header.key");
  EXPECT_EQ(long_key.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(long_key.message(), HasSubstr("header.key must be 1 to 1024"));
}

TEST_F(HeaderValidationTest, GetDtypeUnspecifiedMeansAsPutAndUnknownIsRefused) {
  absl::StatusOr<std::optional<DType>> as_put = GetDTypeFromWire(0, "dtype");
  ASSERT_TRUE(as_put.ok());
  EXPECT_FALSE(as_put->has_value());
  for (DType dtype : kAllDTypes) {
    absl::StatusOr<std::optional<DType>> d =
        GetDTypeFromWire(static_cast<int>(dtype), "dtype");
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->value(), dtype);
  }
  absl::StatusOr<std::optional<DType>> unknown =
      GetDTypeFromWire(static_cast<int>(Uniform(4, 1000)), "dtype");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("dtype must be DTYPE_FP16"));
}

TEST_F(HeaderValidationTest, PutDtypeIsRequired) {
  absl::StatusOr<DType> missing = PutDTypeFromWire(0, "header.dtype");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("header.dtype is required"));
}

TEST_F(HeaderValidationTest, ShapeErrorsNameTheWireField) {
  v1::BlockHeader wire = WireHeader("", "k", DType::kFp16, {2, 4, 2, 0});
  absl::StatusOr<PutHeader> header = ValidatePutHeader(wire);
  EXPECT_EQ(header.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(header.status().message(),
              HasSubstr("header.shape.head_dim must be >= 1, got 0"));
}

TEST_F(HeaderValidationTest, DescribeKeyEscapesBinaryAndCutsLongKeys) {
  EXPECT_EQ(DescribeKey("abc"), "\"abc\"");
  EXPECT_EQ(DescribeKey(std::string("a\0\n\xff", 4)), "\"a\\x00\\n\\xff\"");
  const std::string described = DescribeKey(std::string(1000, 'z'));
  EXPECT_EQ(described, "\"" + std::string(64, 'z') + "...\"");
}

}  // namespace
}  // namespace kvq
