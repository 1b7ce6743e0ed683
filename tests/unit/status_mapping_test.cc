// Status mapping: absl::Status -> grpc::Status and per-item codes, with the
// request id in every error message.

#include "server/service/status_mapping.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/service/request_id.h"

namespace kvq {
namespace {

using ::testing::EndsWith;
using ::testing::MatchesRegex;

TEST(StatusMappingTest, EveryCodeKeepsItsValueAndTheMessageGetsTheRequestId) {
  const std::string id = NewRequestId();
  for (int code = 1; code <= 16; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code),
                              "shape.head_dim must be >= 1, got 0");
    const grpc::Status mapped = ToGrpcStatus(status, id);
    EXPECT_EQ(static_cast<int>(mapped.error_code()), code);
    EXPECT_EQ(mapped.error_message(),
              "shape.head_dim must be >= 1, got 0 [request " + id + "]");
    EXPECT_EQ(WireCode(status), code);
    EXPECT_EQ(ErrorMessage(status, id), mapped.error_message());
  }
}

TEST(StatusMappingTest, OkIsOkWithNoMessage) {
  const grpc::Status mapped = ToGrpcStatus(absl::OkStatus(), "0123456789abcdef");
  EXPECT_TRUE(mapped.ok());
  EXPECT_EQ(mapped.error_message(), "");
  EXPECT_EQ(WireCode(absl::OkStatus()), 0);
  EXPECT_EQ(ErrorMessage(absl::OkStatus(), "0123456789abcdef"), "");
}

TEST(StatusMappingTest, CodesOutsideTheStandardSetBecomeUnknown) {
  const absl::Status odd(static_cast<absl::StatusCode>(42), "odd");
  EXPECT_EQ(WireCode(odd), static_cast<int>(grpc::StatusCode::UNKNOWN));
  EXPECT_EQ(ToGrpcStatus(odd, "x").error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_THAT(ToGrpcStatus(odd, "x").error_message(), EndsWith("[request x]"));
}

TEST(StatusMappingTest, CodeNamesAreTheGrpcNames) {
  EXPECT_EQ(WireCodeName(0), "OK");
  EXPECT_EQ(WireCodeName(3), "INVALID_ARGUMENT");
  EXPECT_EQ(WireCodeName(5), "NOT_FOUND");
  EXPECT_EQ(WireCodeName(8), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(WireCodeName(11), "OUT_OF_RANGE");
  EXPECT_EQ(WireCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(WireCodeName(17), "UNKNOWN");
  EXPECT_EQ(WireCodeName(-1), "UNKNOWN");
}

TEST(RequestIdTest, IdsAreSixteenLowercaseHexCharactersAndDiffer) {
  const std::string a = NewRequestId();
  const std::string b = NewRequestId();
  EXPECT_THAT(a, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(b, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace kvq
